"""The hostile-file corpus (``tests/hostile_files.py``, issue #23), each file given to the
``convc`` command line in a process of its own: a refusal must be exit status 1 with a message
that names the file and what was refused, no traceback and nothing written; a file whose
strings are only names must build the model of the unedited file. Every run must end within
10 s and stay under 1.5 GB of memory (the largest resident size of convc and of the processes
it waited for), and must print no control character from the file.

The same property for the whole variety of broken files is the mutation fuzz's
(``tests/test_fuzz_files.py``); ``tests/test_hdf5_outside.py`` makes each outside reference in
each of the three forms of HDF5, ``tests/test_import_hostile.py`` and
``tests/test_import_injection.py`` hold more broken and renamed files.
"""

from __future__ import annotations

import io
import json
import warnings
import zipfile
from pathlib import Path

import hostile_files
import numpy as np
import pytest
from hostile_files import CASES, SHAPE, TIME_LIMIT, Case, run_convc, run_python
from hypothesis import given, settings
from hypothesis import strategies as st

from convc.arrays import npz_bytes, read_npz
from convc.compiler import compile_model
from convc.diagnostics import ConvcError
from convc.importer import files, import_file
from convc.limits import MAX_ERRORS
from convc.runtime import open_session


def _outputs(onnx) -> list[np.ndarray]:
    x = np.random.default_rng(0).standard_normal((2, *SHAPE)).astype(np.float32)
    session = open_session(onnx)
    return list(session.run({session.input_names[0]: x}).values())


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> list[np.ndarray]:
    """The outputs of the unedited model, built in this process."""
    path = hostile_files.write_keras(tmp_path_factory.mktemp("baseline") / "m.keras")
    imported = import_file(path)
    return _outputs(compile_model(imported.model, imported.weights))


def _argv(case: Case, path: Path, folder: Path) -> list[str]:
    argv = [case.command, str(path)]
    if case.command == "build":
        argv += ["-o", str(folder / "out.onnx")]
    elif case.command == "import":
        argv += ["-o", str(folder / "out.conv")]
    if case.weights:
        argv += ["--weights", str(folder / case.weights)]
    return argv + [argument.replace("{folder}", str(folder)) for argument in case.extra]


def _listing(folder: Path) -> dict[str, int]:
    return {p.name: p.lstat().st_size for p in folder.iterdir()}


def _cases():
    for case in CASES:
        yield pytest.param(case, id=f"{case.kind}-{case.name}")


@pytest.mark.parametrize("case", list(_cases()))
def test_hostile_file(case: Case, tmp_path, baseline):
    folder = tmp_path / "case"
    folder.mkdir()
    path = case.write(folder)
    before = _listing(folder)
    ran = run_convc(_argv(case, path, folder), folder, case.cpu_limit or TIME_LIMIT)
    said = ran.out + ran.err
    assert "Traceback" not in said, said
    if case.cpu_limit is not None:
        assert ran.cpu < case.cpu_limit, f"{ran.cpu:.1f} s of CPU: {said[-500:]}"
    else:
        assert ran.seconds < TIME_LIMIT, f"{ran.seconds:.1f} s: {said[-500:]}"
    assert ran.memory < case.memory_limit, f"{ran.memory >> 20} MB: {said[-500:]}"
    assert not any(ord(c) < 32 and c not in "\n" for c in said), repr(said[-500:])
    forged = [line for line in said.splitlines() if line.startswith("Dense(7)")]
    assert not forged, f"a newline from the file began a line of convc's output: {forged}"
    if case.refusal is not None:
        located = folder / (case.located or case.weights or path.name)
        assert ran.code == 1, f"exit {ran.code}: {said[-500:]}"
        # a refusal quotes what it refuses, cut short: not a file's megabyte of numbers (each
        # line short, and at most MAX_ERRORS errors of a few lines each)
        longest = max(ran.err.splitlines(), key=len, default="")
        assert len(longest) < 1024, f"a line of {len(longest):,} characters: {longest[:500]}"
        assert len(ran.err) < MAX_ERRORS * 1024, f"a refusal of {len(ran.err):,} characters"
        assert f"{located}" in ran.err and case.refusal in ran.err, ran.err[-800:]
        assert _listing(folder) == before, "a refused file left something written"
        return
    assert ran.code == 0, f"exit {ran.code}: {said[-800:]}"
    if case.command == "build":
        actual = _outputs(folder / "out.onnx")
    elif case.command == "import":
        conv = folder / "out.conv"
        argv = [
            "build",
            str(conv),
            "--weights",
            str(conv.with_suffix(".npz")),
            "-o",
            str(folder / "out.onnx"),
        ]
        rebuilt = run_convc(argv, folder)
        assert rebuilt.code == 0, rebuilt.err
        actual = _outputs(folder / "out.onnx")
    else:
        return
    assert len(actual) == len(baseline)
    for got, want in zip(actual, baseline, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_every_class_of_the_issue_has_a_case():
    kinds = {case.kind for case in CASES}
    assert kinds >= {"outside", "injection", "time", "memory", "libhdf5", "smaller"}, kinds


def test_the_baselines_build(tmp_path):
    """The unedited files of each format build: each case's refusal is its edit's."""
    for write, extra in [
        (lambda f: hostile_files.write_keras(f / "m.keras"), []),
        (lambda f: hostile_files.write_keras2_h5(f / "m.h5"), []),
        (lambda f: hostile_files.write_json(f / "m.json"), ["--weights", "m.weights.h5"]),
    ]:
        folder = tmp_path / f"f{len(list(tmp_path.iterdir()))}"
        folder.mkdir()
        path = write(folder)
        hostile_files.write_weights_h5(folder / "m.weights.h5")
        ran = run_convc(["build", str(path), "-o", str(folder / "out.onnx"), *extra], folder)
        assert ran.code == 0, ran.err


def test_the_memory_of_the_hdf5_reader_counts_as_convcs(tmp_path):
    """convc waits for the HDF5 reader's fork server when it exits, and the server for its
    readers, so what a reader allocates shows in convc's own usage (and no reader outlives
    it): here a reader inflates 300 MB that convc itself never holds."""
    hostile_files.write_weights_h5(tmp_path / "m.weights.h5")
    padded = (tmp_path / "m.weights.h5").read_bytes() + bytes(300 << 20)
    with zipfile.ZipFile(tmp_path / "m.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("model.weights.h5", padded)
    script = (
        "from convc import hdf5\n"
        "source = ('member', 'm.zip', 'model.weights.h5', 400 << 20)\n"
        "hdf5.open_hdf5(source, 'm.zip', budget=400 << 20).close()\n"
    )
    ran = run_python(["-c", script], tmp_path)
    assert ran.code == 0, ran.err
    assert ran.memory > 300 << 20, f"{ran.memory >> 20} MB"


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(alphabet='ab"\\[]{},: \n\x00é', max_size=6),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(alphabet='k"\\[,', max_size=3), inner, max_size=4)
    ),
    max_leaves=30,
)


def _values(value) -> int:
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    return 1 + sum(_values(item) for item in items)


def _depth(value) -> int:
    items = (
        value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
    )
    return 0 if items is None else 1 + max((_depth(item) for item in items), default=0)


@settings(max_examples=300, deadline=None)
@given(_JSON, st.sampled_from([1, 2, 5, 1 << 20]), st.sampled_from([None, 1, "\t"]))
def test_the_config_scan_counts_what_json_parses(value, piece, indent):
    """The nesting and the number of values that convc counts before it parses a config are
    those of the parsed value, wherever the scan's pieces end (inside a string, an escape, a
    run of backslashes, between two brackets)."""
    text = json.dumps(value, indent=indent, ensure_ascii=False).encode()
    saved = files._SCAN_PIECE
    files._SCAN_PIECE = piece
    try:
        assert files._json_shape(text) == (_depth(value), _values(value)), text
    finally:
        files._SCAN_PIECE = saved


def test_an_npz_that_convc_writes_round_trips_every_key(tmp_path):
    """Keys that a zip member's name cannot hold (a NUL, 70,000 characters) come back whole;
    ordinary keys are members as numpy.savez names them, and no keys.json is written for them."""
    arrays = {
        "b\x00n/gamma": np.ones(2, "f4"),
        "d" * 70_000 + "/kernel": np.zeros(3, "f4"),
        "array0/bias": np.arange(3),
        "café/kernel": np.ones(4, "f4"),
    }
    path = tmp_path / "w.npz"
    path.write_bytes(npz_bytes(arrays))
    back = read_npz(path)
    assert set(back) == set(arrays)
    for key, array in arrays.items():
        np.testing.assert_array_equal(back[key], array)
    assert {"array0/bias", "café/kernel"} <= set(np.load(path).files)
    path.write_bytes(npz_bytes({"conv/kernel": np.ones(2)}))
    assert np.load(path).files == ["conv/kernel"]


def test_an_npz_is_the_same_bytes_whenever_it_is_written():
    """Every member, keys.json too, is dated as the zip format's epoch, not when it was written:
    the same weights give the same file (a golden's, a build's inputs)."""
    written = npz_bytes({"b\x00n/gamma": np.ones(2, "f4"), "conv/kernel": np.zeros(3, "f4")})
    with zipfile.ZipFile(io.BytesIO(written)) as archive:
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_a_broken_keys_member_is_a_located_refusal(tmp_path):
    path = tmp_path / "w.npz"
    path.write_bytes(npz_bytes({"b\x00n/gamma": np.ones(2, "f4")}))
    with zipfile.ZipFile(path, "a") as archive, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        archive.writestr("keys.json", b"[1, 2")
    with pytest.raises(ConvcError, match="keys.json is not JSON") as caught:
        read_npz(path)
    assert str(path) in caught.value.path
