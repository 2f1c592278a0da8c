"""The reader's walk of an HDF5 file (``convc.hdf5_worker``) and what reading its datasets costs
(#23): the tree is what h5py shows of the file, attributes are read only where there are some,
and a dataset stored as it is (every Keras weight) is read by convc with no request to the
reader, so that a model of many layers costs no round trip per weight."""

from __future__ import annotations

import json
import zipfile

import h5py
import numpy as np
import pytest

from convc import hdf5, hdf5_worker
from convc.diagnostics import ConvcError
from convc.importer.files import _stored_window


@pytest.fixture
def varied_file(tmp_path):
    """Groups with and without attributes, datasets of every layout and a few dtypes, a named
    datatype, an empty dataspace, attributes kept in creation order."""
    path = tmp_path / "v.h5"
    with h5py.File(path, "w") as handle:
        handle.attrs["keras_version"] = "3.0.0"
        handle.attrs["layer_names"] = np.array([b"b", b"a"])
        layers = handle.create_group("layers")
        for name in ("b", "a", "c10", "c9"):
            group = layers.create_group(name)
            if name != "c9":
                group.attrs["name"] = name
            group.create_dataset("0", data=np.arange(6, dtype="<f4").reshape(2, 3))
        tracked = handle.create_group("tracked", track_order=True)
        tracked.attrs["z"] = 1
        tracked.attrs["a"] = np.float64(2.5)
        handle.create_dataset("big_endian", data=np.arange(5, dtype=">i2"))
        handle.create_dataset("scalar", data=np.int64(3))
        handle.create_dataset("chunked", data=np.ones((9, 9), "<f8"), chunks=(4, 4))
        handle.create_dataset("gzip", data=np.arange(40, dtype="<u1"), compression="gzip")
        handle.create_dataset("strings", data=np.array([b"x", b"yy"]))
        handle.create_dataset("bools", data=np.array([True, False]))
        handle.create_dataset("nothing", data=h5py.Empty("<f4"))
        handle["named"] = np.dtype("<f4")
        handle["named"].attrs["about"] = "a committed type"
        handle.create_dataset("with_attrs", data=np.zeros(2, "<f4")).attrs["unit"] = b"m"
    return path


def _h5py_view(path) -> dict:
    """Every group and dataset as h5py shows it: members in order (a named datatype is not one
    for convc), attributes, shape, dtype (a dataset without a dataspace has none)."""
    view = {}
    with h5py.File(path, "r") as handle:

        def add(name, node):
            attrs = {key: hdf5_worker._plain(node.attrs[key]) for key in node.attrs}
            if isinstance(node, h5py.Group):
                members = [key for key in node if not isinstance(node[key], h5py.Datatype)]
                view[name] = ("g", attrs, members)
            elif isinstance(node, h5py.Dataset):
                if node.shape is None:
                    view[name] = ("d", attrs, None, "?empty (no dataspace)")
                else:
                    view[name] = ("d", attrs, node.shape, hdf5_worker._dtype(node.dtype))

        add("/", handle)
        handle.visititems(lambda name, node: add("/" + name, node))
    return view


def _convc_view(handle: hdf5.Group) -> dict:
    view = {}

    def add(node):
        if isinstance(node, hdf5.Group):
            view[node.name] = ("g", node.attrs, list(node))
            for member in node.members.values():
                add(member)
        else:
            shape = None if str(node.dtype) == "empty (no dataspace)" else node.shape
            dtype = node.dtype.str if isinstance(node.dtype, np.dtype) else f"?{node.dtype}"
            view[node.name] = ("d", node.attrs, shape, dtype)

    add(handle)
    return view


def test_the_tree_is_what_h5py_shows_and_every_array_reads_as_h5py_reads_it(varied_file):
    expected = _h5py_view(varied_file)
    with hdf5.open_hdf5(varied_file, "v.h5") as handle:
        assert _convc_view(handle) == expected
        assert list(handle["tracked"].attrs) == ["z", "a"], "creation order is kept"
        with h5py.File(varied_file, "r") as reference:
            for name, entry in expected.items():
                if entry[0] == "d" and entry[3] in hdf5_worker.DTYPES:
                    got, want = handle[name][()], reference[name][()]
                    assert got.dtype == want.dtype and got.shape == want.shape, name
                    np.testing.assert_array_equal(got, want)


class _Messages:
    """The reader's end of its connection, in this process: the messages it sends."""

    def __init__(self):
        self.sent: list[dict] = []

    def send_bytes(self, data: bytes) -> None:
        self.sent.append(json.loads(data))

    def recv_bytes(self) -> bytes:
        raise EOFError  # convc asks for nothing: the reader ends


def test_attributes_are_read_only_where_there_are_some(varied_file, monkeypatch):
    """Most objects of a Keras file have no attributes; asking each for them cost as much as
    the rest of the walk."""
    read = []
    original = hdf5_worker._attributes
    monkeypatch.setattr(
        hdf5_worker, "_attributes", lambda node, place: read.append(place) or original(node, place)
    )
    with h5py.File(varied_file, "r") as handle:
        hdf5_worker._send_tree(_Messages(), handle)
    assert sorted(read) == [
        "/",
        "/layers/a",
        "/layers/b",
        "/layers/c10",
        "/named",
        "/tracked",
        "/with_attrs",
    ]


def test_a_hard_link_back_to_the_root_is_an_object_reached_twice(varied_file):
    with h5py.File(varied_file, "r+") as handle:
        handle["layers/a/up"] = handle
    with pytest.raises(ConvcError, match="is an object the file reaches twice"):
        hdf5.open_hdf5(varied_file, "v.h5")


def _dense_weights(path, layers: int) -> int:
    """A Keras 3 weights file of ``layers`` Dense layers, stored as Keras stores them; its
    number of datasets."""
    rng = np.random.default_rng(1)
    with h5py.File(path, "w") as handle:
        for index in range(layers):
            group = handle.create_group(f"layers/dense_{index}/vars")
            group.create_dataset("0", data=rng.standard_normal((4, 4)).astype("<f4"))
            group.create_dataset("1", data=rng.standard_normal(4).astype("<f4"))
    return 2 * layers


def _requests_to_read_all(source, monkeypatch) -> tuple[int, int]:
    """Requests the reader is sent to read every dataset of ``source``, and the datasets."""
    requests = []
    original = hdf5._Child._send
    monkeypatch.setattr(
        hdf5._Child,
        "_send",
        lambda self, message: requests.append(message) or original(self, message),
    )
    datasets = 0
    with hdf5.open_hdf5(source, "w.h5") as handle:
        for name in handle["layers"]:
            for key in ("0", "1"):
                assert handle[f"layers/{name}/vars/{key}"][()].dtype == np.float32
                datasets += 1
    monkeypatch.setattr(hdf5._Child, "_send", original)
    return len(requests), datasets


@pytest.mark.parametrize("form", ["file", "stored member", "deflated member"])
def test_reading_stored_weights_asks_the_reader_nothing(tmp_path, monkeypatch, form):
    """A request is a round trip to the reader (a millisecond): a .keras file or a weights file
    of a 100,000-layer model would spend minutes on them. A file, or a member of an archive
    stored uncompressed, needs none; a compressed member, inflated in the reader, one a
    dataset."""
    path = tmp_path / "w.h5"
    datasets = _dense_weights(path, 300)
    source: object = path
    if form != "file":
        archive = tmp_path / "m.keras"
        method = zipfile.ZIP_STORED if form == "stored member" else zipfile.ZIP_DEFLATED
        with zipfile.ZipFile(archive, "w", method) as out:
            out.write(path, "model.weights.h5")
        with zipfile.ZipFile(archive) as opened:
            member = opened.getinfo("model.weights.h5")
        source = (
            _stored_window(archive, member, "m.keras")
            if form == "stored member"
            else ("member", str(archive), "model.weights.h5", 1 << 24)
        )
    requests, read = _requests_to_read_all(source, monkeypatch)
    assert read == datasets
    assert requests == (datasets if form == "deflated member" else 0)


def test_the_metadata_cache_stays_at_its_fixed_size_through_a_long_walk(tmp_path, monkeypatch):
    """A walk reads each object header once, a low hit rate for libhdf5's metadata cache,
    which it answers by growing the cache: 170 MB resident for a 10,000-layer file, where
    the old walk (reading every header several times) kept it small. The reader fixes it."""
    path = tmp_path / "w.h5"
    _dense_weights(path, 2500)  # 10,000 objects: enough for libhdf5 to grow its cache 4 times
    sizes = []
    walk = hdf5_worker._send_tree

    def watched(connection, handle, **options):
        walk(connection, handle, **options)
        sizes.append(handle.id.get_mdc_size()[0])

    monkeypatch.setattr(hdf5_worker, "_send_tree", watched)
    monkeypatch.setattr(hdf5_worker, "_cap_memory", lambda allowance: None)  # not this process's
    messages = _Messages()
    hdf5_worker.serve(messages, ("file", str(path)), 0)
    assert "done" in messages.sent[-1], messages.sent[-1]
    assert sizes == [hdf5_worker.METADATA_CACHE_BYTES]
