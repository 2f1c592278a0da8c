"""A build holds each weight once (#27, item 5): a model file's weights come from the file
into their arrays directly (``convc.hdf5``).
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from convc import hdf5
from convc.diagnostics import ConvcError

# -- reading a model file's weights -------------------------------------------------------


@pytest.fixture
def weights_file(tmp_path) -> Path:
    path = tmp_path / "w.h5"
    rng = np.random.default_rng(5)
    with h5py.File(path, "w") as handle:
        handle.create_dataset("plain", data=rng.standard_normal((300, 70)).astype("<f4"))
        handle.create_dataset("big_endian", data=rng.standard_normal(50).astype(">f4"))
        handle.create_dataset(
            "chunked", data=rng.standard_normal((64, 64)).astype("<f4"), chunks=(8, 8)
        )
        handle.create_dataset(
            "compressed", data=rng.standard_normal(500).astype("<f4"), compression="gzip"
        )
        compact = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        compact.set_layout(h5py.h5d.COMPACT)
        space = h5py.h5s.create_simple((4,))
        made = h5py.h5d.create(
            handle.id, b"compact", h5py.h5t.py_create(np.dtype("<f4")), space, dcpl=compact
        )
        made.write(h5py.h5s.ALL, h5py.h5s.ALL, np.arange(4, dtype="<f4"))
        # an int32 whose 16 bits of value lie at bit 8 of its 4 bytes: libhdf5 converts it
        custom = h5py.h5t.STD_I32LE.copy()
        custom.set_precision(16)
        custom.set_offset(8)
        shifted = h5py.h5d.create(handle.id, b"shifted", custom, h5py.h5s.create_simple((5,)))
        shifted.write(h5py.h5s.ALL, h5py.h5s.ALL, np.arange(5, dtype="<i4") * 3)
        handle.create_dataset("scalar", data=np.float32(2.5))
        handle.create_dataset("empty", data=np.zeros((0, 3), "<f4"))
        handle.create_dataset("counter", data=np.int64(7))
    return path


def _expected(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as handle:
        return {name: np.asarray(handle[name][()]) for name in handle}


def test_datasets_stored_as_they_are_are_read_by_convc_and_others_sent(weights_file, monkeypatch):
    """Every dataset comes back as h5py reads it; those stored as they are (contiguous, in
    their own type) are read from the file by convc itself, the others sent by the reader."""
    read_in_place = []
    original = hdf5._Child._read_in_place

    def watched(self, into, offset, path):
        read_in_place.append(path)
        return original(self, into, offset, path)

    monkeypatch.setattr(hdf5._Child, "_read_in_place", watched)
    expected = _expected(weights_file)
    with hdf5.open_hdf5(weights_file, "w.h5") as handle:
        for name, array in expected.items():
            got = handle[name][()]
            assert got.dtype == array.dtype and got.shape == array.shape, name
            np.testing.assert_array_equal(got, array)
    # an empty dataset has no storage to point at; the chunked, compressed, compact and shifted
    # ones are not stored as they are
    assert sorted(read_in_place) == ["/big_endian", "/counter", "/plain", "/scalar"]


@pytest.mark.parametrize("compression", ["stored", "deflated"])
def test_a_keras_archives_weights_come_in_place_only_when_stored(
    weights_file, tmp_path, compression, monkeypatch
):
    """An uncompressed member is a window on the archive that convc reads itself; a compressed
    one is inflated by the reader, which sends every dataset."""
    import zipfile

    archive = tmp_path / "m.zip"
    method = zipfile.ZIP_STORED if compression == "stored" else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(archive, "w", method) as out:
        out.writestr("padding.txt", b"x" * 1000)
        out.write(weights_file, "model.weights.h5")
    with zipfile.ZipFile(archive) as opened:
        member = opened.getinfo("model.weights.h5")
    if compression == "stored":
        from convc.importer.files import _stored_window

        source = _stored_window(archive, member, "m.zip")
    else:
        source = ("member", str(archive), "model.weights.h5", 1 << 20)
    read_in_place = []
    original = hdf5._Child._read_in_place
    monkeypatch.setattr(
        hdf5._Child,
        "_read_in_place",
        lambda self, *args: read_in_place.append(args[2]) or original(self, *args),
    )
    with hdf5.open_hdf5(source, "m.zip") as handle:
        for name, array in _expected(weights_file).items():
            np.testing.assert_array_equal(handle[name][()], array)
    assert bool(read_in_place) == (compression == "stored")


@pytest.mark.parametrize("offset", [-1, 10**9, "12", 1.5, True])
def test_a_reader_that_points_outside_the_file_is_refused(weights_file, monkeypatch, offset):
    """A reader subverted by the file could name any offset: convc reads only inside the data
    it gave the reader (here the whole file), and refuses the rest."""
    original = hdf5._Child._receive

    def lying(self, seconds):
        message = original(self, seconds)
        if "offset" in message:
            message["offset"] = offset
        return message

    monkeypatch.setattr(hdf5._Child, "_receive", lying)
    with (
        hdf5.open_hdf5(weights_file, "w.h5") as handle,
        pytest.raises(ConvcError, match="placed /plain outside the file") as caught,
    ):
        handle["plain"][()]
    assert caught.value.path == "w.h5"


def test_a_reader_may_point_at_the_last_bytes_of_the_file_and_no_further(weights_file, monkeypatch):
    size = weights_file.stat().st_size
    moved = {}
    original = hdf5._Child._receive

    def at(offset):
        def receive(self, seconds):
            message = original(self, seconds)
            if "offset" in message:
                message["offset"] = moved["offset"] = offset
            return message

        return receive

    monkeypatch.setattr(hdf5._Child, "_receive", at(size - 300 * 70 * 4))
    with hdf5.open_hdf5(weights_file, "w.h5") as handle:
        tail = handle["plain"][()]
    raw = np.frombuffer(weights_file.read_bytes()[moved["offset"] :], "<f4").reshape(300, 70)
    np.testing.assert_array_equal(tail, raw)
    monkeypatch.setattr(hdf5._Child, "_receive", at(size - 300 * 70 * 4 + 1))
    with (
        hdf5.open_hdf5(weights_file, "w.h5") as handle,
        pytest.raises(ConvcError, match="placed /plain outside the file"),
    ):
        handle["plain"][()]


def test_a_reader_may_not_point_past_its_window_on_an_archive(weights_file, tmp_path, monkeypatch):
    """In a .keras archive the HDF5 data is a member: bytes after it (the archive's directory)
    are outside it."""
    import zipfile

    from convc.importer.files import _stored_window

    archive = tmp_path / "m.zip"
    with zipfile.ZipFile(archive, "w") as out:
        out.write(weights_file, "model.weights.h5")
        out.writestr("after.bin", b"y" * 100_000)
    with zipfile.ZipFile(archive) as opened:
        source = _stored_window(archive, opened.getinfo("model.weights.h5"), "m.zip")
    assert source is not None
    original = hdf5._Child._receive

    def past(self, seconds):
        message = original(self, seconds)
        if "offset" in message:
            message["offset"] = source[3] - 300 * 70 * 4 + 1
        return message

    monkeypatch.setattr(hdf5._Child, "_receive", past)
    with (
        hdf5.open_hdf5(source, "m.zip") as handle,
        pytest.raises(ConvcError, match="placed /plain outside the file"),
    ):
        handle["plain"][()]
