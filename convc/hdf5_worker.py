"""The process that parses untrusted HDF5 for ``convc.hdf5``: the only code that calls libhdf5
on a file convc is given.

``python -m convc.hdf5_worker`` is a small fork server, started once by a convc process, with
h5py loaded: for each file it is sent (a data socket and a status socket, passed as file
descriptors over its control socket) it forks a child that reads the file, reaps the child
when it ends and writes its exit status to the status socket; when the convc process closes a
status socket early (it gave up: a stall, a timeout, Ctrl-C), it kills that child. It never
reads a file itself, so a file cannot crash it.

A child opens the file, walks every object once and vets it (nothing may name another file or
device, nothing may be reached twice, the count is bounded) before anything is sent back, then
sends the tree: each object's path, kind, attributes (as plain JSON values) and, for a dataset,
its shape, its dtype and, when its bytes are stored as they are in data the parent can read
itself (a file, an uncompressed archive member), where they lie. After that it serves reads of
the other datasets, whole, one at a time, until the parent closes the pipe. Every message is
JSON or raw array bytes, never a pickle, so that a child subverted by a hostile file can send
the parent nothing but data. Its address space is capped (``RLIMIT_AS``) at what it held when
it started plus the budget the parent gives, and libhdf5's metadata cache is kept at a fixed
size.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import math
import os
import resource
import select
import signal
import socket
import sys
import time
import zipfile
import zlib
from multiprocessing.connection import Connection
from typing import Any

import h5py
import numpy as np

from convc.limits import MAX_HDF5_ATTRIBUTE_BYTES, MAX_HDF5_OBJECTS

HEARTBEAT_SECONDS = 0.5
"""How often the walk tells the parent it is alive; the parent gives up after a silence."""

BATCH_OBJECTS = 2000
"""Objects per message of the tree."""

DTYPES = frozenset(
    np.dtype(f"{order}{kind}{size}").str
    for order in "<>"
    for kind, sizes in (("f", (2, 4, 8)), ("i", (1, 2, 4, 8)), ("u", (1, 2, 4, 8)))
    for size in sizes
) | {"|b1", "|i1", "|u1"}
"""The dtypes a weight can have; any other dataset is described but never read."""


_CORRUPT_MEMBER = (
    zipfile.BadZipFile,
    zlib.error,
    OSError,
    EOFError,
    ValueError,
    NotImplementedError,
)

_OUT_OF_MEMORY = (
    "the HDF5 data needs more memory than the model's weights justify (a file crafted to "
    "exhaust memory?): refused"
)


class Refusal(Exception):
    """A file the child will not read: the message goes to the parent as a located error."""


def serve(connection: Any, source: tuple, allowance: int) -> None:
    """The child's whole life: open ``source`` (``("file", path)``, ``("window", path, offset,
    size)`` or ``("member", path, name, limit)``), send its tree, serve reads."""
    _cap_memory(allowance)
    try:
        handle = h5py.File(_open(source), "r")
        _fix_metadata_cache(handle)
    except Refusal as refusal:
        _send(connection, {"error": str(refusal)})
        return
    except MemoryError:
        _send(connection, {"error": _OUT_OF_MEMORY})
        return
    except Exception as error:  # noqa: BLE001 - libhdf5 raises many kinds for a corrupt file
        _send(connection, {"error": f"cannot read the HDF5 data (truncated or corrupt?): {error}"})
        return
    try:
        _send_tree(connection, handle, in_place=source[0] in ("file", "window"))
    except Refusal as refusal:
        _send(connection, {"error": str(refusal)})
        return
    except MemoryError:
        _send(connection, {"error": _OUT_OF_MEMORY})
        return
    except Exception as error:  # noqa: BLE001
        _send(connection, {"error": f"cannot read the HDF5 data (truncated or corrupt?): {error}"})
        return
    while True:
        try:
            request = json.loads(connection.recv_bytes())
        except (EOFError, OSError):
            return
        _serve_read(connection, handle, request["read"], allowance + int(request["bytes"]))


METADATA_CACHE_BYTES = 2 << 20
"""The size of libhdf5's cache of the file's metadata (object headers, B-trees, heaps): its
initial size, never grown. libhdf5 grows it (to 32 MiB of entries, 170 MB resident) when its
hit rate is low, and a walk that reads each object header once has a low one."""


def _fix_metadata_cache(handle: Any) -> None:
    config = handle.id.get_mdc_config()
    config.set_initial_size = True
    config.initial_size = config.max_size = METADATA_CACHE_BYTES
    config.min_size = min(config.min_size, METADATA_CACHE_BYTES)
    config.incr_mode = config.flash_incr_mode = config.decr_mode = 0  # off
    handle.id.set_mdc_config(config)


_base_size: list[int] = []
"""The address space the child had when it started, before it read anything."""


def _cap_memory(allowance: int) -> None:
    """Cap the address space at the child's starting size plus ``allowance`` bytes."""
    if not _base_size:
        with open("/proc/self/statm") as statm:
            _base_size.append(int(statm.read().split()[0]) * resource.getpagesize())
    size = _base_size[0] + allowance
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    if hard != resource.RLIM_INFINITY:
        size = min(size, hard)
    resource.setrlimit(resource.RLIMIT_AS, (size, hard))


def _open(source: tuple) -> Any:
    kind, path = source[0], source[1]
    if kind == "file":
        return path
    if kind == "window":
        return _Window(path, source[2], source[3])
    name, limit = source[2], source[3]
    try:
        with zipfile.ZipFile(path) as archive, archive.open(name) as stream:
            data = stream.read(limit + 1)
    except _CORRUPT_MEMBER as error:
        raise Refusal(
            f"cannot read {name} from the archive (truncated or corrupt?): {error}"
        ) from None
    if len(data) > limit:
        raise Refusal(
            f"{name} expands past {limit:,} bytes, more than the model's weights need (a zip bomb?)"
        )
    return io.BytesIO(data)


class _Window(io.RawIOBase):
    """A read-only, seekable view of ``size`` bytes of a file from ``offset``: an uncompressed
    zip member, which libhdf5 then reads in place."""

    def __init__(self, path: str, offset: int, size: int):
        self._file = open(path, "rb")  # noqa: SIM115 - closed with the window
        self._offset, self._size, self._position = offset, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, position: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + position)
        return self._position

    def readinto(self, buffer) -> int:
        count = max(0, min(len(buffer), self._size - self._position))
        self._file.seek(self._offset + self._position)
        read = self._file.readinto(memoryview(buffer)[:count])
        self._position += read
        return read

    def close(self) -> None:
        self._file.close()
        super().close()


def _send_tree(connection: Any, handle: Any, *, in_place: bool = False) -> None:
    """Walk and vet every object, then send the tree in batches: ``{"objects": [[path, kind,
    attributes, shape, dtype, offset], ...]}``, then ``{"done": count}``. Nothing is sent before
    the whole file is vetted. With ``in_place`` (the parent can read the HDF5 data itself), a
    dataset's ``offset`` says where its bytes lie when they are stored as they are
    (``_stored_as_is``), so that the parent reads it with no request; else it is ``None``.

    The walk works on libhdf5's identifiers, not on h5py's objects: a group's links, with their
    kinds, come in one iteration, and an object's attributes are read only when it has some (a
    Keras file of 100,000 layers holds 400,000 objects)."""
    objects: list[list] = [["/", "g", _attributes(handle, "/"), None, None, None]]
    seen: set[Any] = set()
    # each group to walk: its path, its identifier, and whether every name on its path is text
    # (h5py shows a name that is not UTF-8 as bytes, a path no read can name)
    groups: list[tuple[str, Any, bool]] = [("/", handle.id, True)]
    attribute_bytes = 0
    last_beat = time.monotonic()
    while groups:
        path, group, named = groups.pop()
        for raw_name, link_type in _links(group):
            name = _member_name(raw_name)
            place = f"{path}{name}"
            if link_type != h5py.h5l.TYPE_HARD:
                _refuse_link(group, raw_name, link_type, place)
            child = h5py.h5o.open(group, raw_name)
            kind = h5py.h5i.get_type(child)
            if kind not in _KINDS:
                raise TypeError("Unknown object type")  # as h5py's Group.get says it
            info = h5py.h5o.get_info(child)
            if info.addr in seen:
                raise _outside(place, "is an object the file reaches twice")
            seen.add(info.addr)
            if len(seen) > MAX_HDF5_OBJECTS:
                raise Refusal(
                    f"the HDF5 data holds more than {MAX_HDF5_OBJECTS:,} objects, more than a "
                    "Keras model file does"
                )
            if info.num_attrs:
                attributes = _attributes(_KINDS[kind](child), place)
                attribute_bytes += len(json.dumps(attributes))
            else:
                attributes = {}
                attribute_bytes += len("{}")
            if attribute_bytes > MAX_HDF5_ATTRIBUTE_BYTES:
                raise Refusal(
                    f"the HDF5 data's attributes hold more than {MAX_HDF5_ATTRIBUTE_BYTES:,} "
                    "bytes, more than a Keras model file's"
                )
            if kind == h5py.h5i.GROUP:
                groups.append((place + "/", child, named and isinstance(name, str)))
                objects.append([place, "g", attributes, None, None, None])
            elif kind == h5py.h5i.DATASET:
                properties = child.get_create_plist()
                _vet_storage(properties, place)
                shape = child.shape
                stored = child.get_type()
                dtype = stored.dtype
                offset = (
                    _placed(child, properties, shape, stored, dtype)
                    if in_place and named and isinstance(name, str)
                    else None
                )
                shape = None if shape is None else list(shape)
                objects.append([place, "d", attributes, shape, _dtype(dtype), offset])
            if time.monotonic() - last_beat > HEARTBEAT_SECONDS:
                _send(connection, {"beat": len(seen)})
                last_beat = time.monotonic()
    for start in range(0, len(objects), BATCH_OBJECTS):
        _send(connection, {"objects": objects[start : start + BATCH_OBJECTS]})
    _send(connection, {"done": len(objects)})


def _links(group: Any) -> list[tuple[bytes, int]]:
    """A group's links, each its name and its type, in the order h5py lists them (by name)."""
    links: list[tuple[bytes, int]] = []
    group.links.iterate(lambda name, info: links.append((name, info.type)), info=True)
    return links


_KINDS: dict[int, Any] = {
    h5py.h5i.GROUP: h5py.Group,
    h5py.h5i.DATASET: h5py.Dataset,
    h5py.h5i.DATATYPE: h5py.Datatype,
}
"""The kinds of object a hard link can reach, and h5py's class of each (for its attributes)."""


def _member_name(raw: bytes) -> Any:
    """A link's name as h5py gives it: text when it is UTF-8, else the bytes."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


def _refuse_link(group: Any, raw_name: bytes, link_type: int, place: str) -> None:
    """Refuse a link that is not a hard link: it names a path, maybe in another file."""
    if link_type == h5py.h5l.TYPE_EXTERNAL:
        filename, _ = group.links.get_val(raw_name)
        raise _outside(place, f"is a link to another file ({os.fsdecode(filename)!r})")
    if link_type == h5py.h5l.TYPE_SOFT:
        target = _member_name(group.links.get_val(raw_name))
        raise _outside(place, f"is a soft link (to {target!r})")
    raise TypeError("Unknown link type")  # a user-defined link, as h5py's Group.get says it


def _placed(dataset: Any, properties: Any, shape: Any, stored: Any, dtype: np.dtype) -> int | None:
    """``_stored_as_is`` for a dataset being walked, or None when libhdf5 cannot say: a read
    of it then asks the child, which refuses it as it always has."""
    try:
        return _stored_as_is(dataset, properties, shape, stored, dtype)
    except Exception:  # noqa: BLE001 - a corrupt header raises many kinds
        return None


def _vet_storage(properties: Any, place: str) -> None:
    """A dataset's data must be stored in this file (``properties``: its creation property
    list): not in external files, not virtual."""
    if properties.get_external_count():
        names = [properties.get_external(i)[0] for i in range(properties.get_external_count())]
        shown = ", ".join(repr(_text(name)) for name in names)
        raise _outside(place, f"keeps its data in other files ({shown})")
    if properties.get_layout() == h5py.h5d.VIRTUAL:
        raise _outside(place, "is a virtual dataset (its data is in other datasets)")


def _outside(place: str, what: str) -> Refusal:
    return Refusal(
        f"the HDF5 object {place!r} {what}: convc reads nothing outside the file it is given"
    )


def _attributes(node: Any, place: str) -> dict[str, Any]:
    """An object's attributes as JSON values: text as ``str``, numbers and arrays of them as
    numbers and lists; anything else (references, compound types) as ``None``."""
    values = {}
    for name in node.attrs:
        try:
            values[_text(name)] = _plain(node.attrs[name])
        except (OSError, TypeError, ValueError, KeyError):
            values[_text(name)] = None
    return values


def _plain(value: Any) -> Any:
    if isinstance(value, bytes | str):
        return _text(value)
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "SUO":
            return [_plain(item) for item in value.reshape(-1).tolist()]
        if value.dtype.kind in "biuf":
            return value.tolist()
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool | int | float):
        return value
    return None


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return value if isinstance(value, str) else str(value)


def _dtype(dtype: np.dtype) -> str:
    """The dtype as NumPy spells it (``<f4``) when a weight can have it; else a description
    prefixed with ``?``."""
    return dtype.str if dtype.str in DTYPES else f"?{dtype}"


def _serve_read(connection: Any, handle: Any, path: str, allowance: int) -> None:
    """Send ``{"shape", "dtype"}`` and then the dataset's bytes, or ``{"error"}``."""
    _cap_memory(allowance)
    try:
        dataset = handle[path]
        unwritten = _unwritten(dataset)
        if unwritten:
            _send(connection, {"error": f"the HDF5 dataset {path!r} {unwritten}"})
            return
        array = np.asarray(dataset[()])  # ascontiguousarray would make a scalar 1-D
        if not array.flags.c_contiguous:
            array = array.copy(order="C")
    except MemoryError:
        _send(connection, {"error": f"reading {path}: " + _OUT_OF_MEMORY})
        return
    except Exception as error:  # noqa: BLE001 - a corrupt chunk raises many kinds
        _send(connection, {"error": f"cannot read {path}: {error}"})
        return
    _send(connection, {"shape": list(array.shape), "dtype": array.dtype.str})
    _send_raw(connection, array.reshape(-1).view(np.uint8).data)


def _send_raw(connection: Any, data: memoryview) -> None:
    """``data``, unframed: the parent knows its length from the header before it, and reads it
    straight into its array (a framed message would be gathered into a buffer first, holding
    the weight twice)."""
    descriptor = connection.fileno()
    while data:
        data = data[os.write(descriptor, data) :]


def _stored_as_is(
    dataset: Any, properties: Any, shape: Any, stored: Any, dtype: np.dtype
) -> int | None:
    """The offset in the HDF5 data of a dataset's bytes when they are its array's bytes
    exactly (stored contiguously, unfiltered, all of them, in the very type NumPy reads it as,
    byte order and bit layout included), else None. Keras writes every weight so. ``dataset``
    is its identifier, ``properties`` its creation property list, ``shape`` its shape,
    ``stored`` its HDF5 type and ``dtype`` NumPy's for it. All of its bytes being stored, such a
    dataset is never ``_unwritten``."""
    if dtype.str not in DTYPES or shape is None:
        return None
    if properties.get_layout() != h5py.h5d.CONTIGUOUS:
        return None
    offset = dataset.get_offset()
    if offset is None or dataset.get_storage_size() != math.prod(shape) * dtype.itemsize:
        return None
    native = _native_type(dtype.str) if dtype.metadata is None else h5py.h5t.py_create(dtype)
    if not stored.equal(native):
        return None
    return int(offset)


@functools.cache
def _native_type(dtype: str) -> Any:
    """The HDF5 type NumPy's ``dtype`` is read through (a weight's dtype: a dozen of them; an
    enum's dtype carries its members as metadata, and is not cached)."""
    return h5py.h5t.py_create(np.dtype(dtype))


def _unwritten(dataset: Any) -> str | None:
    """Why the file does not hold all of a dataset's data, or ``None``. libhdf5 reads a dataset
    that was declared and never written (wholly, or some of its chunks) as its fill value, so
    an 11 KB file could make convc read, and write into an ONNX model, a gigabyte of zeros;
    Keras writes every array it declares."""
    layout = dataset.id.get_create_plist().get_layout()
    if layout == h5py.h5d.CONTIGUOUS and dataset.id.get_storage_size() < dataset.nbytes:
        return (
            f"declares {dataset.nbytes:,} bytes of data and the file holds "
            f"{dataset.id.get_storage_size():,} of them (never written)"
        )
    if layout == h5py.h5d.CHUNKED and dataset.size:
        chunks = math.prod(
            -(-extent // chunk) for extent, chunk in zip(dataset.shape, dataset.chunks, strict=True)
        )
        if dataset.id.get_num_chunks() < chunks:
            return (
                f"is stored in {chunks:,} chunks and the file holds "
                f"{dataset.id.get_num_chunks():,} of them (never written)"
            )
    return None


def _send(connection: Any, message: dict) -> None:
    connection.send_bytes(json.dumps(message).encode())


def main() -> None:
    """The fork server's loop: its standard input is the control socket (SOCK_SEQPACKET), each
    message a JSON request ``{"source", "allowance"}`` carrying two descriptors."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the convc process handles Ctrl-C
    control = socket.socket(fileno=sys.stdin.fileno())
    poller = select.epoll()
    poller.register(control.fileno(), select.EPOLLIN)
    by_pidfd: dict[int, tuple[int, int]] = {}  # pidfd -> (pid, status descriptor)
    by_status: dict[int, int] = {}  # status descriptor -> pid
    while True:
        for descriptor, events in poller.poll():
            if descriptor == control.fileno():
                try:
                    message, descriptors, _, _ = socket.recv_fds(control, 1 << 16, 2)
                except OSError:
                    message, descriptors = b"", []
                if not message or len(descriptors) != 2:  # the convc process closed it
                    for pid, _ in by_pidfd.values():
                        _kill(pid)
                        os.waitpid(pid, 0)  # so that its usage counts in the server's
                    return
                data, status = descriptors
                request = json.loads(message)
                pid = os.fork()
                if pid == 0:
                    os.close(status)
                    poller.close()
                    control.close()
                    for other in by_status:
                        os.close(other)
                    for other in by_pidfd:
                        os.close(other)
                    _child(data, tuple(request["source"]), int(request["allowance"]))
                os.close(data)
                pidfd = os.pidfd_open(pid)
                by_pidfd[pidfd] = (pid, status)
                by_status[status] = pid
                poller.register(pidfd, select.EPOLLIN)
                poller.register(status, select.EPOLLRDHUP | select.EPOLLHUP)
            elif descriptor in by_pidfd:
                pid, status = by_pidfd.pop(descriptor)
                code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
                with contextlib.suppress(OSError):  # the convc process may have given up on it
                    os.write(status, json.dumps({"exit": code}).encode())
                for closing in (descriptor, status):
                    poller.unregister(closing)
                    os.close(closing)
                del by_status[status]
            elif descriptor in by_status and events & (select.EPOLLRDHUP | select.EPOLLHUP):
                _kill(by_status[descriptor])
                poller.modify(descriptor, 0)  # reaped (and closed) when its pidfd fires


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _child(data: int, source: tuple, allowance: int) -> None:
    """A forked child's whole life; it never returns to the server's loop."""
    code = 0
    try:
        serve(Connection(data), source, allowance)
    except BaseException:  # noqa: BLE001 - nothing may escape into the server's loop
        code = 1
    finally:
        os._exit(code)


if __name__ == "__main__":
    main()
