"""A build holds each weight once (#27, item 5): its large weights stay NumPy arrays from
lowering to the file (``convc.onnxfile.DetachedModel``), written as the same bytes as the
attached model's; a model file's weights come from the file into their arrays directly
(``convc.hdf5``); and the rewrites that change a kernel change the build's own array in place.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import onnx
import pytest

import convc
from convc import hdf5, onnxfile
from convc.compiler import compile_detached, compile_model, model_weights, resolve_text
from convc.diagnostics import ConvcError
from convc.layers import initializers
from convc.layers.initializers import Initializer, parse_initializer
from convc.lower import rewrites
from convc.options import BuildOptions
from convc.syntax import parse

MIB = 1 << 20

TEXTS = {
    "conv": "Input(shape=(8, 8, 3))\nConv2D(4, 3, name='only')\n",
    "transpose": "Input(shape=(6, 6, 6, 2))\nConv3DTranspose(2, 3, strides=2)\nUpSampling3D(1)\n",
    "no weights": "Input(shape=(9, 2))\nCropping1D(1)\n",
    # a BatchNormalization folded into the convolution; a Flatten folded into the Dense
    "folds": (
        "Input(shape=(12, 12, 3))\nConv2D(16, 3, use_bias=False)\nBatchNormalization()\n"
        "ReLU()\nConv2DTranspose(8, 3, strides=2)\nBatchNormalization()\n"
        "Flatten()\nDense(300)\n"
    ),
    "shared": (
        "x = Input(shape=(64,))\nshared = Dense(64, name='shared')\n"
        "y = shared(shared(x))\nModel(x, y)\n"
    ),
}


def _detached_and_attached(text: str, **options) -> tuple[onnxfile.DetachedModel, onnx.ModelProto]:
    model = resolve_text(text)
    return compile_detached(model, None, **options), compile_model(model, None, **options)


@pytest.mark.parametrize("name", TEXTS)
def test_a_detached_model_is_written_as_the_same_bytes_as_the_attached_one(name, tmp_path):
    detached, attached = _detached_and_attached(TEXTS[name])
    large = [
        t.name for t in attached.graph.initializer if len(t.raw_data) > onnxfile.SMALL_TENSOR_BYTES
    ]
    assert list(detached.arrays) == large
    pieces = [bytes(p) for p in onnxfile.serialized_pieces(detached.proto, detached.arrays)]
    assert pieces == list(onnxfile.serialized_pieces(attached))
    parsed = onnx.ModelProto()
    parsed.ParseFromString(b"".join(pieces))
    assert parsed == attached
    (ours,) = onnxfile.save(detached, tmp_path / "detached.onnx")
    (theirs,) = onnxfile.save(attached, tmp_path / "attached.onnx")
    assert ours.read_bytes() == theirs.read_bytes()
    assert onnx.load(ours) == attached
    assert detached.attach() == attached and detached.arrays == {}


def test_detached_tensors_hold_no_bytes_and_check_as_inputs():
    detached, attached = _detached_and_attached(TEXTS["folds"])
    by_name = {t.name: t for t in detached.proto.graph.initializer}
    for name, array in detached.arrays.items():
        tensor = by_name[name]
        assert not tensor.HasField("raw_data") and list(tensor.dims) == list(array.shape)
        assert array.flags.c_contiguous and array.dtype == np.dtype("<f4")
    bare = detached.skeleton()
    assert {i.name for i in bare.graph.input} >= set(detached.arrays)
    assert not {t.name for t in bare.graph.initializer} & set(detached.arrays)
    onnx.checker.check_model(bare, full_check=True)
    # the value shapes the check inferred are the attached model's
    assert list(detached.proto.graph.value_info) == list(attached.graph.value_info)


@pytest.mark.parametrize("io_dtype", ["float32", "float16"])
def test_a_float16_build_keeps_its_weights_apart_too(io_dtype, tmp_path):
    """Each array is rounded to float16 in turn; the bytes written are those of to_float16 of
    the attached float32 model."""
    from convc.precision import to_float16

    model = resolve_text(TEXTS["folds"])
    detached = compile_detached(model, None, precision="float16", io_dtype=io_dtype)
    attached = to_float16(compile_model(model, None), io_dtype=io_dtype)  # the whole proto's
    assert detached.arrays and all(a.dtype == np.dtype("<f2") for a in detached.arrays.values())
    pieces = [bytes(p) for p in onnxfile.serialized_pieces(detached.proto, detached.arrays)]
    assert pieces == list(onnxfile.serialized_pieces(attached))
    (ours,) = onnxfile.save(detached, tmp_path / "detached.onnx")
    (theirs,) = onnxfile.save(attached, tmp_path / "attached.onnx")
    assert ours.read_bytes() == theirs.read_bytes()
    assert detached.attach() == attached


def test_detached_external_data_is_the_attached_models(tmp_path, monkeypatch):
    """Past the limit (2 GiB less a margin, made small here), the weights go to a data file
    beside the model, from the arrays, as they would from the attached model."""
    monkeypatch.setattr(onnxfile, "EXTERNAL_DATA_BYTES", 1000)
    detached, attached = _detached_and_attached(TEXTS["folds"])
    (tmp_path / "a").mkdir()
    (tmp_path / "d").mkdir()
    theirs = onnxfile.save(attached, tmp_path / "a" / "m.onnx")
    ours = onnxfile.save(detached, tmp_path / "d" / "m.onnx")
    assert [p.name for p in ours] == ["m.onnx.data", "m.onnx"]
    for mine, other in zip(ours, theirs, strict=True):
        assert mine.read_bytes() == other.read_bytes()
    loaded = onnx.load(ours[1])  # with its external data
    assert [(t.name, t.raw_data) for t in loaded.graph.initializer] == [
        (t.name, t.raw_data) for t in attached.graph.initializer
    ]


def test_a_model_past_2_gib_goes_to_external_data(tmp_path):
    """The real limit: a 2.1 GB kernel (of zeros, which the machine lends without holding them)
    cannot be a protobuf field, and goes to the data file."""
    units = 23_000  # 23,000 x 23,000 float32: 2.116 GB, past EXTERNAL_DATA_BYTES
    assert 4 * units * units > onnxfile.EXTERNAL_DATA_BYTES
    model = resolve_text(f"Input(shape=({units},))\nDense({units}, name='huge')\n")
    kernel = np.zeros((units, units), np.float32)
    kernel[0, :4] = [1, 2, 3, 4]
    kernel[-1, -1] = 5
    weights = {"huge/kernel": kernel, "huge/bias": np.zeros(units, np.float32)}
    saved = convc.build_and_save(model, tmp_path / "huge.onnx", weights, consume_weights=True)
    data, path = saved.files
    assert (data.name, path.name) == ("huge.onnx.data", "huge.onnx")
    assert path.stat().st_size < MIB
    assert data.stat().st_size == 4 * (units * units + units)
    loaded = onnx.load(path, load_external_data=False)
    places = {t.name: {e.key: e.value for e in t.external_data} for t in loaded.graph.initializer}
    offset = int(places["huge/kernel"]["offset"])
    assert places["huge/kernel"]["location"] == "huge.onnx.data"
    assert int(places["huge/kernel"]["length"]) == 4 * units * units
    written = np.memmap(data, np.float32, "r", offset, (units, units))
    assert written[0, :5].tolist() == [1, 2, 3, 4, 0] and written[-1, -1] == 5


# -- the Flatten and BatchNormalization folds, in place -----------------------------------


@pytest.mark.parametrize(
    ("rows", "width"), [(2048, 1024), (3, 4096), (1000, 3), (5000, 7), (1, 10), (49 * 4, 2000)]
)
def test_rows_are_permuted_in_place_as_by_a_copy(rows, width, monkeypatch):
    """Both ways: along the cycles (wide rows) and a block of columns at a time (narrow ones,
    in several blocks here)."""
    monkeypatch.setattr(rewrites, "PERMUTE_BLOCK_BYTES", 4096)
    rng = np.random.default_rng(rows)
    matrix = rng.standard_normal((rows, width)).astype(np.float32)
    order = rng.permutation(rows)
    expected = np.empty_like(matrix)
    expected[order] = matrix
    rewrites.permute_rows_in_place(matrix, order)
    np.testing.assert_array_equal(matrix, expected)


def test_a_build_that_owns_its_arrays_folds_into_them_and_a_callers_are_left_alone():
    text = TEXTS["folds"]
    model = resolve_text(text)
    mine = {
        f"{layer}/{name}": array
        for layer, variables in model_weights(model, None, 0).items()
        for name, array in variables.items()
    }
    kept = {name: array.copy() for name, array in mine.items()}
    expected = compile_model(model, mine)
    assert all(np.array_equal(mine[name], kept[name]) for name in kept)  # untouched
    given = {name: array.copy() for name, array in kept.items()}
    dense = given["dense/kernel"]
    assert compile_model(model, given, consume_weights=True) == expected
    assert not np.array_equal(dense, kept["dense/kernel"]), "its rows were permuted in place"
    assert sorted(dense.ravel().tolist()) == sorted(kept["dense/kernel"].ravel().tolist())


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


def _placing(monkeypatch, path: str, offset) -> dict:
    """Make the reader's tree place the dataset at ``path`` at ``offset`` (a function of its
    true offset), as a reader subverted by the file could; what it placed is returned."""
    original = hdf5._Child.objects
    placed: dict = {}

    def lying(self):
        for entry in original(self):
            if entry[0] == path:
                assert entry[5] is not None, "the dataset was placed by the tree"
                entry = [*entry[:5], offset(entry[5])]
                placed["offset"] = entry[5]
            yield entry

    monkeypatch.setattr(hdf5._Child, "objects", lying)
    return placed


@pytest.mark.parametrize("offset", [-1, 10**9, "12", 1.5, True, [0]])
def test_a_reader_that_points_outside_the_file_is_refused(weights_file, monkeypatch, offset):
    """A reader subverted by the file could name any offset in its tree: convc reads only
    inside the data it gave the reader (here the whole file), and refuses the rest."""
    _placing(monkeypatch, "/plain", lambda _: offset)
    with (
        hdf5.open_hdf5(weights_file, "w.h5") as handle,
        pytest.raises(ConvcError, match="placed /plain outside the file") as caught,
    ):
        handle["plain"][()]
    assert caught.value.path == "w.h5"


def test_a_reader_may_point_at_the_last_bytes_of_the_file_and_no_further(weights_file, monkeypatch):
    size = weights_file.stat().st_size
    moved = _placing(monkeypatch, "/plain", lambda _: size - 300 * 70 * 4)
    with hdf5.open_hdf5(weights_file, "w.h5") as handle:
        tail = handle["plain"][()]
    raw = np.frombuffer(weights_file.read_bytes()[moved["offset"] :], "<f4").reshape(300, 70)
    np.testing.assert_array_equal(tail, raw)
    _placing(monkeypatch, "/plain", lambda _: size - 300 * 70 * 4 + 1)
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
    _placing(monkeypatch, "/plain", lambda _: source[3] - 300 * 70 * 4 + 1)
    with (
        hdf5.open_hdf5(source, "m.zip") as handle,
        pytest.raises(ConvcError, match="placed /plain outside the file"),
    ):
        handle["plain"][()]


def test_a_reader_may_not_place_a_dataset_in_an_inflated_member(
    weights_file, tmp_path, monkeypatch
):
    """A compressed member is inflated in the reader: there is nothing the parent could read
    in place, and a tree that places a dataset anyway is refused."""
    import zipfile

    archive = tmp_path / "m.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as out:
        out.write(weights_file, "model.weights.h5")
    original = hdf5._Child.objects

    def placing(self):
        for entry in original(self):
            assert entry[5] is None, "an inflated member's datasets are sent, never placed"
            yield [*entry[:5], 0] if entry[0] == "/plain" else entry

    monkeypatch.setattr(hdf5._Child, "objects", placing)
    source = ("member", str(archive), "model.weights.h5", 1 << 20)
    with (
        hdf5.open_hdf5(source, "m.zip") as handle,
        pytest.raises(ConvcError, match="placed /plain outside the file"),
    ):
        handle["plain"][()]


# -- the peak, measured --------------------------------------------------------------------


def _peak_kib(argv: list[str], cwd: Path) -> int:
    """The largest resident size (KiB) of ``python -m convc ARGV`` or of a process it waited
    for, as ``time -f %M`` reports it."""
    script = textwrap.dedent(
        f"""
        import resource, subprocess, sys
        done = subprocess.run([sys.executable, "-m", "convc", *{argv!r}], capture_output=True)
        sys.stderr.write(done.stderr.decode())
        assert done.returncode == 0, done.returncode
        print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
        """
    )
    environment = dict(os.environ)
    root = str(Path(convc.__file__).resolve().parents[1])
    environment["PYTHONPATH"] = os.pathsep.join([root, environment.get("PYTHONPATH", "")])
    ran = subprocess.run(
        [sys.executable, "-c", script], cwd=cwd, env=environment, capture_output=True, text=True
    )
    assert ran.returncode == 0, ran.stderr
    return int(ran.stdout.strip())


def test_building_from_a_weights_file_holds_its_weights_once(tmp_path):
    """``convc build`` of a 128 MiB Dense kernel from a Keras .weights.h5 peaks at about the
    start-up's memory plus the weights once (before: the model's copy and the bytes read out
    of it came on top, about three times the weights)."""
    units, width = 2048, 16384
    weights = units * width * 4
    (tmp_path / "small.conv").write_text("Input(shape=(4,))\nDense(2)\n")
    (tmp_path / "wide.conv").write_text(f"Input(shape=({units},))\nDense({width})\n")
    with h5py.File(tmp_path / "wide.weights.h5", "w") as handle:
        kernel = handle.create_dataset("layers/dense/vars/0", (units, width), "<f4")
        for start in range(0, units, 256):  # written in slices: this process stays small
            kernel[start : start + 256] = np.float32(start)
        handle.create_dataset("layers/dense/vars/1", data=np.ones(width, "<f4"))
    start_up = _peak_kib(["build", "small.conv", "-o", "small.onnx"], tmp_path)
    peak = _peak_kib(
        ["build", "wide.conv", "--weights", "wide.weights.h5", "-o", "wide.onnx"], tmp_path
    )
    assert (peak - start_up) * 1024 < 1.2 * weights, (peak, start_up)
    loaded = onnx.load(tmp_path / "wide.onnx")
    kernel = onnx.numpy_helper.to_array(loaded.graph.initializer[0])
    assert kernel.shape == (units, width) and kernel[300, 5] == 256 and kernel[-1, -1] == 1792


def test_build_and_save_writes_what_build_then_save_write(tmp_path):
    source = tmp_path / "net.conv"
    source.write_text(TEXTS["folds"])
    options = BuildOptions(target="ort", seed=3)
    saved = convc.build_and_save(source, tmp_path / "one.onnx", options=options)
    (other,) = convc.save(convc.build(source, options=options), tmp_path / "two.onnx")
    assert saved.files == [tmp_path / "one.onnx"]
    assert saved.files[0].read_bytes() == other.read_bytes()
    assert convc.workarounds(saved.model) == convc.workarounds(convc.build(source, options=options))
    assert len(saved.model.graph.node) == len(onnx.load(other).graph.node)


@pytest.mark.parametrize(("op", "group"), [("Conv", 1), ("ConvTranspose", 1), ("ConvTranspose", 3)])
def test_a_folded_kernel_is_the_float64_product_rounded_once(op, group):
    """Scaling a kernel by a BatchNormalization's float64 scale, a buffer at a time and into the
    kernel itself, gives the numbers of the float64 product rounded to float32."""
    rng = np.random.default_rng(group)
    kernel = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
    channels = 6 if op == "Conv" else 4 * group
    scale = rng.uniform(0.1, 3, channels)
    if op == "Conv":
        expected = (kernel * scale.reshape(-1, 1, 1, 1)).astype(np.float32)
    else:
        grouped = kernel.reshape(group, 6 // group, 4, 3, 3).astype(np.float64)
        expected = (grouped * scale.reshape(group, 1, 4, 1, 1)).reshape(kernel.shape)
        expected = expected.astype(np.float32)
    if op == "Conv":  # products of float32 numbers would differ somewhere
        assert not np.array_equal(expected, kernel * scale.astype(np.float32).reshape(-1, 1, 1, 1))
    separate = rewrites._scaled_kernel(kernel, scale, op, group, np.empty_like(kernel))
    np.testing.assert_array_equal(separate, expected)
    in_place = rewrites._scaled_kernel(kernel, scale, op, group, kernel)
    assert in_place is kernel
    np.testing.assert_array_equal(kernel, expected)


def test_a_fifo_put_in_the_files_place_is_refused_not_waited_on(weights_file):
    """Between the reader's opening the file and convc's, the path may come to name something
    else: a FIFO would block an open for reading until a writer came; it is refused."""
    import threading

    outcome: list[BaseException | None] = []
    with hdf5.open_hdf5(weights_file, "w.h5") as handle:
        weights_file.rename(weights_file.with_name("moved.h5"))
        os.mkfifo(weights_file)

        def read() -> None:
            try:
                handle["plain"][()]
                outcome.append(None)
            except BaseException as error:  # noqa: BLE001 - reported below
                outcome.append(error)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(10)
        assert not reader.is_alive(), "convc waited on the FIFO"
    assert isinstance(outcome[0], ConvcError) and "not a regular file" in str(outcome[0])


def test_building_with_drawn_initializers_holds_the_weights_once(tmp_path):
    """``convc build`` of a 128 MiB Dense kernel drawn from its initializer (glorot_uniform)
    peaks at about the start-up's memory plus the weights once: the draw is made a chunk at a
    time into the float32 kernel (before: the whole float64 draw beside it, three times the
    weights; VGG16's build peaked at 1.34 GB for 528 MiB of weights)."""
    units, width = 2048, 16384
    weights = units * width * 4
    (tmp_path / "small.conv").write_text("Input(shape=(4,))\nDense(2)\n")
    (tmp_path / "wide.conv").write_text(f"Input(shape=({units},))\nDense({width})\n")
    start_up = _peak_kib(["build", "small.conv", "-o", "small.onnx"], tmp_path)
    peak = _peak_kib(["build", "wide.conv", "-o", "wide.onnx"], tmp_path)
    assert (peak - start_up) * 1024 < 1.3 * weights, (peak, start_up)


# -- drawn weights, a chunk at a time -------------------------------------------------------

STREAMED = {
    "glorot_uniform": lambda rng, shape, fans: rng.uniform(
        -math.sqrt(6 / sum(fans)), math.sqrt(6 / sum(fans)), shape
    ),
    "he_normal": lambda rng, shape, fans: (
        math.sqrt(2 / fans[0]) / initializers.TRUNCATION_STDDEV * _truncated(rng, shape)
    ),
    "VarianceScaling(distribution='untruncated_normal', mode='fan_out')": (
        lambda rng, shape, fans: rng.normal(0.0, math.sqrt(1 / fans[1]), shape)
    ),
    "RandomNormal(0.5, 0.25)": lambda rng, shape, fans: rng.normal(0.5, 0.25, shape),
    "TruncatedNormal(-1.0, 0.5)": lambda rng, shape, fans: -1.0 + 0.5 * _truncated(rng, shape),
    "RandomUniform(0.5, -0.25)": lambda rng, shape, fans: 0.5 - 0.75 * rng.random(shape),
    "Constant(0.1)": lambda rng, shape, fans: np.full(shape, 0.1),
}
"""Each initializer drawn in chunks, and its numbers drawn whole in float64, as convc drew
them before (and as goldens of drawn weights record them)."""


def _initializer(text: str) -> Initializer:
    call = parse(f"Dense(8, kernel_initializer={text})\n").statements[0]
    return parse_initializer(call.kwargs[0].value, "kernel_initializer")


def _truncated(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    count = math.prod(shape)
    kept = np.empty(0)
    while kept.size < count:
        sample = rng.standard_normal((count - kept.size) * 11 // 10 + 16)
        kept = np.concatenate([kept, sample[np.abs(sample) < 2.0]])
    return kept[:count].reshape(shape)


@pytest.mark.parametrize("chunk", [7, 4096, 1 << 20])
@pytest.mark.parametrize("text", STREAMED)
def test_a_weight_drawn_in_chunks_is_the_whole_float64_draw_rounded(text, chunk, monkeypatch):
    monkeypatch.setattr(initializers, "DRAW_CHUNK", chunk)
    shape = (3, 3, 37, 29)  # 9,657 numbers: a chunk of 7 and one of 4,096 end mid-way
    fans = initializers.compute_fans(shape)
    drawn = _initializer(text).draw(shape, np.random.default_rng([0, 4, 1]))
    whole = STREAMED[text](np.random.default_rng([0, 4, 1]), shape, fans)
    assert drawn.dtype == np.float32 and drawn.shape == shape
    assert drawn.tobytes() == whole.astype(np.float32).tobytes()


@pytest.mark.parametrize("text", STREAMED)
def test_drawing_a_weight_holds_it_once_in_float32(text, monkeypatch):
    import tracemalloc

    monkeypatch.setattr(initializers, "DRAW_CHUNK", 1 << 16)
    initializer = _initializer(text)
    shape = (2048, 2048)  # 16 MiB in float32, 32 MiB in float64
    tracemalloc.start()
    try:
        drawn = initializer.draw(shape, np.random.default_rng(0))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1.25 * drawn.nbytes, peak
