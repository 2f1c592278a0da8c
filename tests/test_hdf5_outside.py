"""HDF5 that names other files: external raw storage, external links, soft links, virtual
datasets and hard-link cycles, in a legacy .h5 model, in a .keras file's weights member and in
a .weights.h5 given with --weights. Each is refused with a located message before any data is
read, the secret's bytes reach no output, and nothing is written (#23)."""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from oracle import random_weights

os.environ.setdefault("KERAS_BACKEND", "torch")
import keras  # noqa: E402
from keras import layers  # noqa: E402

from convc.cli import main  # noqa: E402

SECRET = np.arange(1000, 1000 + 4096, dtype="<f4")


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict[str, Path]:
    """A small model as Keras saves it: .keras, legacy .h5, .weights.h5 beside its JSON."""
    keras.backend.clear_session()
    x = keras.Input((6, 6, 2), name="image")
    y = layers.Conv2D(4, 3, name="conv")(x)
    model = keras.Model(x, layers.BatchNormalization(name="bn")(y))
    random_weights(model)
    folder = tmp_path_factory.mktemp("saved")
    model.save(folder / "m.keras")
    model.save(folder / "m.h5")
    model.save_weights(folder / "m.weights.h5")
    (folder / "m.json").write_text(model.to_json())
    secret = folder / "secret.bin"
    secret.write_bytes(SECRET.tobytes())
    return {"folder": folder, "secret": secret}


def _first_dataset(handle: h5py.File) -> str:
    found: list[str] = []
    handle.visititems(
        lambda name, obj: (
            found.append(name) if isinstance(obj, h5py.Dataset) and obj.size > 1 else None
        )
    )
    return found[0]


def _external_storage(handle: h5py.File, secret: Path) -> None:
    name = _first_dataset(handle)
    shape, dtype = handle[name].shape, handle[name].dtype
    del handle[name]
    size = int(np.prod(shape)) * dtype.itemsize
    handle.create_dataset(name, shape, dtype, external=[(str(secret), 0, size)])


def _external_link(handle: h5py.File, secret: Path) -> None:
    name = _first_dataset(handle)
    other = secret.with_name("other.h5")
    with h5py.File(other, "w") as target:
        target.create_dataset("a", data=np.zeros(handle[name].shape, handle[name].dtype))
    del handle[name]
    handle[name] = h5py.ExternalLink(str(other), "/a")


def _soft_link(handle: h5py.File, secret: Path) -> None:
    name = _first_dataset(handle)
    handle.move(name, name + "_moved")
    handle[name] = h5py.SoftLink("/" + name + "_moved")


def _virtual(handle: h5py.File, secret: Path) -> None:
    name = _first_dataset(handle)
    shape, dtype = handle[name].shape, handle[name].dtype
    other = secret.with_name("virtual_source.h5")
    with h5py.File(other, "w") as target:
        target.create_dataset("a", data=np.zeros(shape, dtype))
    del handle[name]
    layout = h5py.VirtualLayout(shape=shape, dtype=dtype)
    layout[...] = h5py.VirtualSource(str(other), "a", shape=shape)
    handle.create_virtual_dataset(name, layout)


def _cycle(handle: h5py.File, secret: Path) -> None:
    group = handle[_first_dataset(handle)].parent
    group["again"] = group


EDITS = {
    "external-storage": (_external_storage, "keeps its data in other files"),
    "external-link": (_external_link, "is a link to another file"),
    "soft-link": (_soft_link, "is a soft link"),
    "virtual-dataset": (_virtual, "is a virtual dataset"),
    "hard-link-cycle": (_cycle, "reaches twice"),
}


def _hostile(saved: dict[str, Path], form: str, edit, tmp_path: Path) -> list[str]:
    """The command line that reads the edited file, the file made in ``tmp_path``."""
    folder, secret = saved["folder"], saved["secret"]
    if form == "h5":
        path = tmp_path / "m.h5"
        shutil.copy(folder / "m.h5", path)
        with h5py.File(path, "r+") as handle:
            edit(handle, secret)
        return ["import", str(path), "-o", str(tmp_path / "out.conv")]
    if form == "weights.h5":
        path = tmp_path / "m.weights.h5"
        shutil.copy(folder / "m.weights.h5", path)
        with h5py.File(path, "r+") as handle:
            edit(handle, secret)
        shutil.copy(folder / "m.json", tmp_path / "m.json")
        return [
            "build",
            str(tmp_path / "m.json"),
            "--weights",
            str(path),
            "-o",
            str(tmp_path / "out.onnx"),
        ]
    with zipfile.ZipFile(folder / "m.keras") as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    inner = tmp_path / "model.weights.h5"
    inner.write_bytes(members["model.weights.h5"])
    with h5py.File(inner, "r+") as handle:
        edit(handle, secret)
    members["model.weights.h5"] = inner.read_bytes()
    path = tmp_path / "m.keras"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return ["build", str(path), "-o", str(tmp_path / "out.onnx")]


@pytest.mark.parametrize("form", ["h5", "keras", "weights.h5"])
@pytest.mark.parametrize("case", sorted(EDITS))
def test_hdf5_naming_another_file_is_refused(saved, case, form, tmp_path, capsys):
    edit, fragment = EDITS[case]
    work = tmp_path / "work"
    work.mkdir()
    argv = _hostile(saved, form, edit, work)
    before = set(work.iterdir())
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert fragment in err and "convc reads nothing outside the file" in err, err
    assert set(work.iterdir()) == before, "something was written"
    assert "1000" not in err


def test_the_unedited_files_build(saved, tmp_path):
    """The same commands on the files as Keras wrote them succeed: the refusals are the edits'."""
    folder = saved["folder"]
    assert main(["build", str(folder / "m.keras"), "-o", str(tmp_path / "a.onnx")]) == 0
    assert main(["import", str(folder / "m.h5"), "-o", str(tmp_path / "b.conv")]) == 0
    assert (
        main(
            [
                "build",
                str(folder / "m.json"),
                "--weights",
                str(folder / "m.weights.h5"),
                "-o",
                str(tmp_path / "c.onnx"),
            ]
        )
        == 0
    )
