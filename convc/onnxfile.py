"""ONNX models on disk: atomic writes, and external data for weights beyond protobuf's 2 GiB.

``save`` writes the weights to ``NET.onnx.data`` beside the model when they are too large to be
embedded (``external_skeleton`` gives the model that points its tensors at that file).
``skeleton`` gives a weight-less copy of a model for the checker and shape inference, which then
work whatever the model's size.

A build keeps its large weights as NumPy arrays beside the ``ModelProto`` until they are written
(``DetachedModel``): each is then held once, as an array, and its bytes go from the array to the
file; ``DetachedModel.attach`` makes the whole ``ModelProto`` for those who want it in memory.

A weight's bytes are read out of a ``TensorProto`` only to be written: with protobuf's upb
runtime, reading ``raw_data`` copies the bytes (0.4 GB for VGG16's first Dense kernel), and so
does ``ByteSize``, which encodes the message to measure it. Sizes come from ``raw_data_bytes``,
which reads a tensor's type and shape instead.

Every file is written atomically: to a temporary file in the target directory, then renamed. On
any failure nothing is left behind and an existing file is untouched.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from convc.diagnostics import ConvcError
from convc.limits import EXTERNAL_DATA_BYTES
from convc.progress import Bar, bar

SMALL_TENSOR_BYTES = 1024
"""Constants up to this size (pads, axes, scales) stay in a skeleton: shape inference reads them."""


_ITEM_BYTES = {
    data_type: onnx.helper.tensor_dtype_to_np_dtype(data_type).itemsize
    for data_type in (*range(1, 8), *range(9, 21), onnx.TensorProto.FLOAT8E8M0)
}
"""Bytes per element of the data types whose ``raw_data`` holds whole bytes per element (not
strings, and not the 2-, 4- and 6-bit types, which are packed)."""


def raw_data_bytes(tensor: onnx.TensorProto) -> int:
    """The length of ``tensor.raw_data``, from its data type and dims, without copying the bytes
    out; read from the bytes only for a packed or string type. A tensor whose ``raw_data`` does
    not match its shape is invalid ONNX; ``serialized_pieces`` notices it."""
    if not tensor.HasField("raw_data"):
        return 0
    item = _ITEM_BYTES.get(tensor.data_type)
    if item is None:
        return len(tensor.raw_data)
    return item * math.prod(tensor.dims)


def weight_bytes(proto: onnx.ModelProto, arrays: Mapping[str, np.ndarray] | None = None) -> int:
    """The bytes of the model's weights: its tensors' ``raw_data``, and ``arrays`` (a
    ``DetachedModel``'s)."""
    detached = sum(array.nbytes for array in arrays.values()) if arrays else 0
    return detached + sum(raw_data_bytes(t) for t in proto.graph.initializer)


@dataclass
class DetachedModel:
    """An ONNX model whose large weights are NumPy arrays beside its ``ModelProto`` instead of
    bytes inside it: each such initializer of ``proto`` has its name, data type and dims and
    no data, and ``arrays`` has its values (C-contiguous, little-endian) under its name.

    With protobuf's upb runtime, a weight put into a ``TensorProto`` is copied, and copied
    again each time its ``raw_data`` is read to be written; kept apart, a weight is held once
    from the moment it is lowered to the moment ``save`` writes it, which writes the same bytes
    as for the attached model."""

    proto: onnx.ModelProto
    arrays: dict[str, np.ndarray]

    def attach(self) -> onnx.ModelProto:
        """``proto`` with every array's bytes in its initializer. Takes the arrays: each is let
        go once its bytes are in the model, so that the weights are held about once."""
        arrays, self.arrays = self.arrays, {}
        for tensor in self.proto.graph.initializer:
            array = arrays.pop(tensor.name, None)
            if array is None:
                continue
            encoded = raw_data_field(array)
            del array  # before protobuf copies the encoding: two copies of it at once, not three
            tensor.MergeFromString(encoded)
            del encoded
        return self.proto

    def skeleton(self) -> onnx.ModelProto:
        return skeleton(self.proto, self.arrays)


def detached_array(array: np.ndarray) -> np.ndarray:
    """``array`` as a ``DetachedModel`` holds it (and ``raw_data`` stores it): C-contiguous,
    little-endian; copied only when it is not already."""
    little = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
    return np.ascontiguousarray(array, dtype=little)


def raw_data_field(array: np.ndarray) -> bytearray:
    """``array``'s bytes (little-endian) encoded as a TensorProto's ``raw_data`` field (key,
    length, bytes), for ``MergeFromString``: setting ``raw_data`` takes a ``bytes`` object, which
    protobuf copies again, so that array, bytes and the message's copy would be alive at once."""
    key_and_length = length_delimited(RAW_DATA_FIELD, array.nbytes)
    encoded = bytearray(len(key_and_length) + array.nbytes)
    encoded[: len(key_and_length)] = key_and_length
    little = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
    destination = np.frombuffer(encoded, little, offset=len(key_and_length))
    destination.reshape(array.shape)[...] = array
    return encoded


def _bytes_of(array: np.ndarray) -> memoryview:
    """The bytes of a ``DetachedModel``'s array, without a copy."""
    return array.reshape(-1).view(np.uint8).data


def skeleton(proto: onnx.ModelProto, detached: Collection[str] = ()) -> onnx.ModelProto:
    """The model with its large weights declared as graph inputs instead of stored;
    ``detached`` names the initializers whose values are kept apart (``DetachedModel``)."""
    copy = onnx.ModelProto()
    copy.ir_version = proto.ir_version
    copy.opset_import.extend(proto.opset_import)
    graph = copy.graph
    graph.name = proto.graph.name
    graph.node.extend(proto.graph.node)
    graph.input.extend(proto.graph.input)
    graph.output.extend(proto.graph.output)
    for tensor in proto.graph.initializer:
        if tensor.name not in detached and raw_data_bytes(tensor) <= SMALL_TENSOR_BYTES:
            graph.initializer.append(tensor)
        else:
            graph.input.append(
                onnx.helper.make_tensor_value_info(tensor.name, tensor.data_type, tensor.dims)
            )
    return copy


class InvalidModel(Exception):
    """ONNX's checker or its strict shape inference refused a model convc made."""


def check_and_infer(proto: onnx.ModelProto, detached: Collection[str] = ()) -> onnx.ModelProto:
    """ONNX's checker, then strict, type-checked shape inference, of ``proto`` without its
    large weights (so that models past protobuf's 2 GiB are checked too; ``detached`` as for
    ``skeleton``): the inferred model, whose ``graph.value_info`` holds every intermediate
    value's shape. ``InvalidModel`` when either refuses; the caller says whose fault that is."""
    # Together, the checker's full check: ``check_model(full_check=True)`` is the check and
    # then this very inference (type-checked, strict) on a copy, so asking for both inferred
    # every shape twice and serialized the model twice (about a second for 100,000 nodes).
    bare = skeleton(proto, detached).SerializeToString()
    try:
        onnx.checker.check_model(bare)
        return onnx.shape_inference.infer_shapes(bare, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        raise InvalidModel(str(error)) from error


def external_skeleton(
    proto: onnx.ModelProto, location: str, arrays: Mapping[str, np.ndarray] | None = None
) -> tuple[onnx.ModelProto, list[int]]:
    """A copy of ``proto`` whose initializers with ``raw_data`` (or an array in ``arrays``, a
    ``DetachedModel``'s) reference ``location`` instead of holding their bytes (as
    ``onnx.external_data_helper.set_external_data`` marks them: in initializer order, one after
    another), and the lengths of those bytes. ``proto`` is not changed and no weight is
    copied."""
    arrays = arrays or {}
    copy = copy_without(proto, "graph")
    copy.graph.CopyFrom(copy_without(proto.graph, "initializer"))
    lengths = []
    offset = 0
    for tensor in proto.graph.initializer:
        array = arrays.get(tensor.name)
        if array is None and not tensor.HasField("raw_data"):
            copy.graph.initializer.append(tensor)
            continue
        length = raw_data_bytes(tensor) if array is None else array.nbytes
        external = copy.graph.initializer.add()
        external.CopyFrom(tensor_without_raw_data(tensor))
        del external.external_data[:]
        external.data_location = onnx.TensorProto.EXTERNAL
        for key, value in (("location", location), ("offset", offset), ("length", length)):
            external.external_data.add(key=key, value=str(value))
        lengths.append(length)
        offset += length
    return copy, lengths


def save(model: onnx.ModelProto | DetachedModel, path: str | os.PathLike) -> list[Path]:
    """Write a model; weights too large to embed go to ``<name>.data`` beside it.
    Returns the files written. At most one weight's bytes are copied at a time, and a
    ``DetachedModel``'s not at all."""
    path = Path(path)
    proto, arrays = (model.proto, model.arrays) if isinstance(model, DetachedModel) else (model, {})
    total = weight_bytes(proto, arrays)
    with bar("writing weights", total, "bytes") as shown:
        if total <= EXTERNAL_DATA_BYTES:
            write_files([(path, _counted(serialized_pieces(proto, arrays), shown))])
            return [path]
        data_path = path.with_name(path.name + ".data")
        external, lengths = external_skeleton(proto, data_path.name, arrays)
        blobs = _raw_data_pieces(proto, lengths, arrays)
        write_files([(data_path, _counted(blobs, shown)), (path, [external.SerializeToString()])])
        return [data_path, path]


def _raw_data_pieces(
    proto: onnx.ModelProto, lengths: list[int], arrays: Mapping[str, np.ndarray]
) -> Iterator[bytes | memoryview]:
    """The bytes of each initializer that has them (its ``raw_data``, or its array in
    ``arrays``), one at a time, each checked to have the length its shape gives (the offsets
    written before it assumed so)."""
    tensors = (t for t in proto.graph.initializer if t.name in arrays or t.HasField("raw_data"))
    for tensor, length in zip(tensors, lengths, strict=True):
        array = arrays.get(tensor.name)
        if array is not None:
            _check_length(tensor, array.nbytes, _shape_bytes(tensor))
            yield _bytes_of(array)
            continue
        blob = tensor.raw_data
        _check_length(tensor, len(blob), length)
        yield blob


def _shape_bytes(tensor: onnx.TensorProto) -> int:
    """The bytes a tensor of a whole-byte data type holds, from its type and dims."""
    return _ITEM_BYTES[tensor.data_type] * math.prod(tensor.dims)


def _check_length(tensor: onnx.TensorProto, actual: int, expected: int) -> None:
    if actual != expected:
        raise ConvcError(
            f"tensor {tensor.name!r} holds {actual:,} bytes where its data type and shape "
            f"{list(tensor.dims)} say {expected:,}: it is not a valid ONNX tensor"
        )


def _counted(chunks: Iterable[bytes | memoryview], shown: Bar) -> Iterator[bytes | memoryview]:
    for chunk in chunks:
        yield chunk
        shown.advance(len(chunk))


def serialized_pieces(
    proto: onnx.ModelProto, arrays: Mapping[str, np.ndarray] | None = None
) -> Iterator[bytes | memoryview]:
    """The model's protobuf encoding in pieces: a header, then each initializer's key, length
    and fields, its weight's bytes a piece of their own. ``arrays`` (a ``DetachedModel``'s)
    give the bytes of the initializers they name, which are encoded as if they held them in
    ``raw_data``: the pieces are those of the attached model.

    ``SerializeToString`` of a whole model holds its encoding twice while it runs, on top of the
    model itself, and so does that of one tensor (protobuf encodes it, then copies the encoding
    into a ``bytes``); here a weight's bytes are copied out once, and only its other fields are
    encoded. The bytes parse to the same model: the graph comes last instead of in field order,
    and its initializers after its other fields, which protobuf allows; a tensor's own fields
    are in field order, as protobuf writes them."""
    arrays = arrays or {}
    graph = proto.graph
    header = copy_without(proto, "graph").SerializeToString()
    graph_header = copy_without(graph, "initializer").SerializeToString()
    encodings = [_TensorEncoding.of(t, arrays.get(t.name)) for t in graph.initializer]
    graph_size = len(graph_header) + sum(
        len(length_delimited(_INITIALIZER_FIELD, encoding.size)) + encoding.size
        for encoding in encodings
    )
    yield header + length_delimited(_GRAPH_FIELD, graph_size) + graph_header
    for tensor, encoding in zip(graph.initializer, encodings, strict=True):
        yield length_delimited(_INITIALIZER_FIELD, encoding.size) + encoding.before
        array = arrays.get(tensor.name)
        if array is not None:
            _check_length(tensor, array.nbytes, _shape_bytes(tensor))
            yield _bytes_of(array)
            if encoding.after:
                yield encoding.after
        elif encoding.raw_data is not None:
            blob = tensor.raw_data
            _check_length(tensor, len(blob), encoding.raw_data)  # the lengths written assume it
            yield blob
            del blob
            if encoding.after:
                yield encoding.after


RAW_DATA_FIELD = 9  # TensorProto.raw_data


@dataclass(frozen=True)
class _TensorEncoding:
    """A tensor's encoding around its ``raw_data``: the fields numbered below it (the whole
    encoding when it has none), the length of its bytes, the fields numbered above it."""

    before: bytes
    raw_data: int | None
    after: bytes = b""

    @classmethod
    def of(cls, tensor: onnx.TensorProto, array: np.ndarray | None = None) -> _TensorEncoding:
        """The encoding of ``tensor``, or with ``array``'s bytes as its ``raw_data``."""
        if array is None and not tensor.HasField("raw_data"):
            return cls(tensor.SerializeToString(), None)
        length = raw_data_bytes(tensor) if array is None else array.nbytes
        below = _copy_fields(tensor, lambda number: number < RAW_DATA_FIELD).SerializeToString()
        above = _copy_fields(tensor, lambda number: number > RAW_DATA_FIELD).SerializeToString()
        return cls(below + length_delimited(RAW_DATA_FIELD, length), length, above)

    @property
    def size(self) -> int:
        return len(self.before) + (self.raw_data or 0) + len(self.after)


def tensor_without_raw_data(tensor: onnx.TensorProto) -> onnx.TensorProto:
    """A copy of ``tensor`` but its ``raw_data``, which is never read."""
    return _copy_fields(tensor, lambda number: number != RAW_DATA_FIELD)


def _copy_fields(tensor: onnx.TensorProto, wanted: Callable[[int], bool]) -> onnx.TensorProto:
    """A copy of the fields of ``tensor`` whose numbers are ``wanted``; the others are not read
    (``copy_without`` reads every field's value, and reading ``raw_data`` copies the bytes)."""
    copy = onnx.TensorProto()
    for field in tensor.DESCRIPTOR.fields:
        name = field.name
        if not wanted(field.number):
            continue
        if field.is_repeated:
            values = getattr(tensor, name)
            if len(values):
                getattr(copy, name).extend(values)
        elif tensor.HasField(name):
            if field.message_type is not None:
                getattr(copy, name).CopyFrom(getattr(tensor, name))
            else:
                setattr(copy, name, getattr(tensor, name))
    return copy


_GRAPH_FIELD = 7  # ModelProto.graph
_INITIALIZER_FIELD = 5  # GraphProto.initializer


def length_delimited(field: int, length: int) -> bytes:
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


def write_files(files: Sequence[tuple[Path, Iterable[bytes | memoryview]]]) -> None:
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
