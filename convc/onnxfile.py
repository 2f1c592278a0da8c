"""ONNX models on disk: atomic writes, and external data for weights beyond protobuf's 2 GiB.

``save`` writes the weights to ``NET.onnx.data`` beside the model when they are too large to be
embedded (``weights_set_aside`` points the tensors at that file while the model is serialized).
``skeleton`` gives a weight-less copy of a model for the checker and shape inference, which then
work whatever the model's size.

Every file is written atomically: to a temporary file in the target directory, then renamed. On
any failure nothing is left behind and an existing file is untouched.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import onnx
from onnx.external_data_helper import set_external_data

from convc.diagnostics import ConvcError
from convc.limits import EXTERNAL_DATA_BYTES
from convc.progress import Bar, bar

SMALL_TENSOR_BYTES = 1024
"""Constants up to this size (pads, axes, scales) stay in a skeleton: shape inference reads them."""


def weight_bytes(proto: onnx.ModelProto) -> int:
    return sum(len(t.raw_data) for t in proto.graph.initializer)


def skeleton(proto: onnx.ModelProto) -> onnx.ModelProto:
    """The model with its large weights declared as graph inputs instead of stored."""
    copy = onnx.ModelProto()
    copy.ir_version = proto.ir_version
    copy.opset_import.extend(proto.opset_import)
    graph = copy.graph
    graph.name = proto.graph.name
    graph.node.extend(proto.graph.node)
    graph.input.extend(proto.graph.input)
    graph.output.extend(proto.graph.output)
    for tensor in proto.graph.initializer:
        if len(tensor.raw_data) <= SMALL_TENSOR_BYTES:
            graph.initializer.append(tensor)
        else:
            graph.input.append(
                onnx.helper.make_tensor_value_info(tensor.name, tensor.data_type, tensor.dims)
            )
    return copy


class InvalidModel(Exception):
    """ONNX's checker or its strict shape inference refused a model convc made."""


def check_and_infer(proto: onnx.ModelProto) -> onnx.ModelProto:
    """ONNX's full check, then strict, type-checked shape inference, of ``proto`` without its
    large weights (so that models past protobuf's 2 GiB are checked too): the inferred model,
    whose ``graph.value_info`` holds every intermediate value's shape. ``InvalidModel`` when
    either refuses; the caller says whose fault that is."""
    bare = skeleton(proto)
    try:
        onnx.checker.check_model(bare, full_check=True)
        return onnx.shape_inference.infer_shapes(bare, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        raise InvalidModel(str(error)) from error


@contextlib.contextmanager
def weights_set_aside(
    proto: onnx.ModelProto, location: str = "weights.data"
) -> Iterator[list[bytes]]:
    """Within the block, initializers reference ``location`` instead of holding their bytes; the
    bytes are yielded in initializer order and restored afterwards."""
    tensors = [t for t in proto.graph.initializer if t.HasField("raw_data")]
    blobs: list[bytes] = []
    offset = 0
    for tensor in tensors:
        blob = tensor.raw_data
        blobs.append(blob)
        set_external_data(tensor, location, offset=offset, length=len(blob))
        tensor.ClearField("raw_data")
        tensor.data_location = onnx.TensorProto.EXTERNAL
        offset += len(blob)
    try:
        yield blobs
    finally:
        for tensor, blob in zip(tensors, blobs, strict=True):
            del tensor.external_data[:]
            tensor.data_location = onnx.TensorProto.DEFAULT
            tensor.raw_data = blob


def save(proto: onnx.ModelProto, path: str | os.PathLike) -> list[Path]:
    """Write a model; weights too large to embed go to ``<name>.data`` beside it.
    Returns the files written."""
    path = Path(path)
    total = weight_bytes(proto)
    with bar("writing weights", total, "bytes") as shown:
        if total <= EXTERNAL_DATA_BYTES:
            write_files([(path, _counted(serialized_pieces(proto), shown))])
            return [path]
        data_path = path.with_name(path.name + ".data")
        with weights_set_aside(proto, data_path.name) as blobs:
            skeleton = proto.SerializeToString()
            write_files([(data_path, _counted(blobs, shown)), (path, [skeleton])])
        return [data_path, path]


def _counted(chunks: Iterable[bytes], shown: Bar) -> Iterator[bytes]:
    for chunk in chunks:
        yield chunk
        shown.advance(len(chunk))


def serialized_pieces(proto: onnx.ModelProto) -> Iterator[bytes]:
    """The model's protobuf encoding in pieces, one weight tensor at a time.

    ``SerializeToString`` of a whole model holds its encoding twice while it runs, on top of the
    model itself; encoding each initializer on its own holds one tensor's. The bytes parse to
    the same model: the graph comes last instead of in field order, and its initializers after
    its other fields, which protobuf allows."""
    graph = proto.graph
    header = copy_without(proto, "graph").SerializeToString()
    graph_header = copy_without(graph, "initializer").SerializeToString()
    sizes = [tensor.ByteSize() for tensor in graph.initializer]
    graph_size = len(graph_header) + sum(
        len(_length_delimited(_INITIALIZER_FIELD, size)) + size for size in sizes
    )
    yield header + _length_delimited(_GRAPH_FIELD, graph_size) + graph_header
    for tensor, size in zip(graph.initializer, sizes, strict=True):
        yield _length_delimited(_INITIALIZER_FIELD, size) + tensor.SerializeToString()


_GRAPH_FIELD = 7  # ModelProto.graph
_INITIALIZER_FIELD = 5  # GraphProto.initializer


def _length_delimited(field: int, length: int) -> bytes:
    """The key and length that precede a length-delimited protobuf field's bytes."""
    return _varint(field << 3 | 2) + _varint(length)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def copy_without(message, skipped: str):
    """A copy of a protobuf message without one of its fields (which is never copied)."""
    copy = type(message)()
    for field, value in message.ListFields():
        if field.name == skipped:
            continue
        current = getattr(copy, field.name)
        if hasattr(current, "extend"):  # a repeated field
            current.extend(value)
        elif field.message_type is not None:
            current.CopyFrom(value)
        else:
            setattr(copy, field.name, value)
    return copy


def _file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _file_mode()


def write_bytes(data: bytes, path: str | os.PathLike) -> None:
    write_files([(Path(path), [data])])


def write_files(files: Sequence[tuple[Path, Iterable[bytes]]]) -> None:
    """Write each file to a temporary beside it, then rename them all (in order)."""
    temporaries: list[tuple[str, Path]] = []
    path = files[0][0]
    try:
        for path, chunks in files:
            directory = path.parent if str(path.parent) else Path(".")
            if not directory.is_dir():
                raise ConvcError("the output directory does not exist", path=str(path))
            handle, temporary = tempfile.mkstemp(
                dir=directory, prefix=f".{path.name}.", suffix=".tmp"
            )
            temporaries.append((temporary, path))
            os.chmod(temporary, _FILE_MODE)  # mkstemp makes 0600; give what open() would
            with os.fdopen(handle, "wb") as out:
                for chunk in chunks:
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
        for temporary, path in temporaries:
            os.replace(temporary, path)
    except OSError as error:
        _remove(temporaries)
        raise ConvcError(f"cannot write the file: {error.strerror}", path=str(path)) from None
    except BaseException:
        _remove(temporaries)
        raise


def _remove(temporaries: list[tuple[str, Path]]) -> None:
    for temporary, _ in temporaries:
        Path(temporary).unlink(missing_ok=True)
