"""Opening untrusted HDF5: in a child process, so that nothing in a file can make convc read
another file, and a crash or a hang of libhdf5 is a located refusal rather than convc's end.

HDF5 can name other files and devices: a dataset's raw data may live in external files, a
virtual dataset maps other files' datasets, an external link opens another file when it is
followed. Keras writes none of these. And libhdf5 is a large C library that a crafted file can
crash or send into a loop. So convc never calls it in its own process on a file it is given:
``open_hdf5`` starts a child (``convc.hdf5_worker``) that opens the file, walks every object
once and vets it before anything is read (refusing external storage, virtual datasets, external
and soft links, objects reached twice, more objects than a model file holds), and sends back
the tree: groups, datasets' shapes and dtypes, attributes as plain values. A dataset the file
stores as it is (contiguous, unfiltered, all of it, in the array's own type: every Keras weight)
comes with the offset of its bytes, and the parent reads them from the file itself, with no
request: no libhdf5 runs in the parent, and it reads nothing outside the data it gave the
child. Reading any other dataset asks the child for it; its bytes come back raw, never pickled.

The child's memory is capped at what the parent budgets (its start plus the weights the model
needs); it must answer within ``STALL_SECONDS`` (the walk sends a heartbeat), and a read within
a time proportional to its size. A child that dies, overruns or stalls is killed and the file
refused, naming why.

``File``, ``Group`` and ``Dataset`` mirror the part of h5py's interface that the weight readers
use: iteration, ``get`` with ``/``-separated paths, ``attrs``, ``shape``, ``dtype`` and
``dataset[()]``.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from convc.diagnostics import ConvcError

STALL_SECONDS = 5.0
"""The longest the child may be silent: opening, walking (between heartbeats), or starting a
read. A file that sends libhdf5 into a loop (a global heap object whose size was changed, read
as an attribute: found by the fuzz) is refused after this long, so that convc ends within 10 s
of starting; opening a file and reading one object's attributes take milliseconds."""

READ_BYTES_PER_SECOND = 50 << 20
"""A read may take ``STALL_SECONDS`` plus its size at this (slow) rate."""

BASE_ALLOWANCE = 1 << 30
"""Memory the child may allocate beyond its start, besides the data it is asked to read: the
tree of a large file, and libhdf5's caches."""

_context: Any = None


def open_hdf5(source: Any, where: str, *, budget: int = 0) -> File:
    """Open ``source`` (a path, or a tuple that ``convc.hdf5_worker.serve`` takes: a window on
    an archive or a member to inflate) in a child process and vet it; ``budget`` is the bytes of
    data the caller expects to read (the child's memory is capped by it). A located
    ``ConvcError`` for a file that is not HDF5, is corrupt, names anything outside itself, or
    crashes or stalls the child."""
    if not isinstance(source, tuple):
        source = ("file", os.fspath(source))
    child = _Child(source, where, BASE_ALLOWANCE + budget)
    try:
        return File(child)
    except BaseException:
        child.close()
        raise


class Node:
    """An object in the file: its path and its attributes (plain JSON values)."""

    def __init__(self, name: str, attrs: dict[str, Any]):
        self.name = name
        self.attrs = attrs


class Group(Node):
    """A group: its members by name, in the order libhdf5 lists them."""

    def __init__(self, name: str, attrs: dict[str, Any]):
        super().__init__(name, attrs)
        self.members: dict[str, Group | Dataset] = {}

    def __iter__(self) -> Iterator[str]:
        return iter(self.members)

    def __len__(self) -> int:
        return len(self.members)

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and self.get(path) is not None

    def __getitem__(self, path: str) -> Group | Dataset:
        found = self.get(path)
        if found is None:
            raise KeyError(path)
        return found

    def keys(self) -> list[str]:
        return list(self.members)

    def get(self, path: str, default: Any = None) -> Any:
        """The object at ``path`` (``a/b/c``, relative to this group), or ``default``."""
        node: Group | Dataset = self
        for part in path.strip("/").split("/"):
            if not part:
                continue
            if not isinstance(node, Group) or part not in node.members:
                return default
            node = node.members[part]
        return node


class Dataset(Node):
    """A dataset: its shape and dtype, known without reading it; ``dataset[()]`` reads it."""

    def __init__(
        self, name: str, attrs: dict[str, Any], shape, dtype: str, child: _Child, offset=None
    ):
        super().__init__(name, attrs)
        self.shape: tuple[int, ...] = tuple(shape) if shape is not None else ()
        self.dtype: np.dtype | UnreadableDtype = (
            UnreadableDtype(dtype[1:] if shape is not None else "empty (no dataspace)")
            if dtype.startswith("?") or shape is None
            else np.dtype(dtype)
        )
        self._child = child
        self._offset = offset  # where its bytes lie, as the child says: checked when read

    def __getitem__(self, key: Any) -> np.ndarray:
        if key != ():
            raise TypeError("only whole datasets are read: dataset[()]")
        if isinstance(self.dtype, UnreadableDtype):
            raise ValueError(f"its dtype {self.dtype} is not a number")
        return self._child.read(self.name, self.shape, self.dtype, self._offset)


class UnreadableDtype:
    """The dtype of a dataset that is not an array of numbers (strings, compounds, references):
    described, never read."""

    kind = "?"

    def __init__(self, text: str):
        self.text = text

    def __str__(self) -> str:
        return self.text


class File(Group):
    """An HDF5 file parsed in a child process; close it (or use ``with``) to end the child."""

    def __init__(self, child: _Child):
        super().__init__("/", {})
        self._child = child
        for path, kind, attrs, shape, dtype, offset in child.objects():
            if path == "/":
                self.attrs = attrs
                continue
            parent_path, _, name = path.rpartition("/")
            parent = self.get(parent_path)
            if not isinstance(parent, Group):
                raise child.failure("the child process sent an object without its group")
            node = (
                Group(path, attrs)
                if kind == "g"
                else Dataset(path, attrs, shape, dtype, child, offset)
            )
            parent.members[name] = node

    def close(self) -> None:
        self._child.close()

    def __enter__(self) -> File:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Child:
    """A child of the fork server reading one file, and the parent's ends of its sockets."""

    def __init__(self, source: tuple, where: str, allowance: int):
        self.where = where
        self._pipe, self._status = _server().launch(source, allowance)
        self._exit: int | None = None
        # The HDF5 data as the parent can read it itself (path, start, length or None for the
        # whole file): a file, or an uncompressed member of an archive; not an inflated one.
        self._in_place: tuple[str, int, int | None] | None = (
            (source[1], 0, None)
            if source[0] == "file"
            else (source[1], int(source[2]), int(source[3]))
            if source[0] == "window"
            else None
        )
        self._data: int | None = None  # the descriptor the parent reads it through

    def objects(self) -> Iterator[list]:
        """The tree's objects, as the child sends them after vetting the whole file."""
        while True:
            message = self._receive(STALL_SECONDS)
            if "objects" in message:
                yield from message["objects"]
            elif "done" in message:
                return
            elif "beat" not in message:
                raise self.failure("the child process sent an unexpected message")

    def read(
        self, path: str, shape: tuple[int, ...], dtype: np.dtype, offset: object = None
    ) -> np.ndarray:
        """The dataset at ``path``, which the tree says has ``shape`` and ``dtype`` and, when
        stored as it is, its bytes at ``offset``: read from the file, else received from the
        child, straight into the array that is returned (no other copy of it is made here)."""
        if offset is not None:
            array = np.empty(shape, dtype)
            self._read_in_place(array.reshape(-1).view(np.uint8).data, offset, path)
            return array
        size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        seconds = STALL_SECONDS + size / READ_BYTES_PER_SECOND
        deadline = time.monotonic() + seconds
        self._send({"read": path, "bytes": size})
        header = self._receive(seconds)
        if tuple(header.get("shape", ())) != shape or header.get("dtype") != dtype.str:
            raise self.failure(f"the child process read {path} as something else")
        array = np.empty(shape, dtype)
        self._receive_raw(array.reshape(-1).view(np.uint8).data, deadline, seconds, path)
        return array

    def _read_in_place(self, into: memoryview, offset: object, path: str) -> None:
        """Fill ``into`` from the HDF5 data at ``offset``, where the child found the dataset's
        bytes stored as they are (``convc.hdf5_worker``): the parent reads them itself, once,
        rather than the child reading them and sending them through a socket. Only bytes
        inside the data the child was given are read: a child subverted by the file can point
        at no more than it could have sent (and at nothing when the data is not the parent's
        to read: an inflated archive member)."""
        if self._in_place is None:
            raise self.failure(f"the child process placed {path} outside the file")
        name, start, length = self._in_place
        try:
            if self._data is None:
                # non-blocking: a FIFO put in the file's place since the child opened it must
                # not hang convc; it is refused as not a regular file
                self._data = os.open(name, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
                if not stat.S_ISREG(os.fstat(self._data).st_mode):
                    raise ConvcError("is not a regular file", path=self.where)
            if length is None:
                length = os.fstat(self._data).st_size
            if (
                not isinstance(offset, int)
                or isinstance(offset, bool)
                or not 0 <= offset <= length - len(into)
            ):
                raise self.failure(f"the child process placed {path} outside the file")
            done = 0
            while done < len(into):
                count = os.preadv(self._data, [into[done:]], start + offset + done)
                if count == 0:
                    raise ConvcError(
                        f"the file ends inside the HDF5 dataset {path!r} (truncated?)",
                        path=self.where,
                    )
                done += count
        except OSError as error:
            raise ConvcError(f"cannot read the file: {error.strerror}", path=self.where) from None

    def _receive_raw(self, into: memoryview, deadline: float, seconds: float, path: str) -> None:
        """Fill ``into`` with the bytes the child sends after a read's header (unframed: the
        header said how many), all of them by ``deadline``: a child that sends them slowly
        is refused as one that sends nothing."""
        descriptor = self._pipe.fileno()
        done = 0
        while done < len(into):
            if not self._pipe.poll(max(0.0, deadline - time.monotonic())):
                self.close()
                raise ConvcError(
                    f"libhdf5 did not send {path} within {seconds:.0f} s (a file crafted to "
                    "make it loop?): refused",
                    path=self.where,
                )
            try:
                count = os.readv(descriptor, [into[done:]])
            except OSError:
                raise self.failure(f"reading {path}") from None
            if count == 0:
                raise self.failure(f"the child process sent {path} short")
            done += count

    def close(self) -> None:
        """End the child: closing the status socket makes the fork server kill it if it has
        not ended."""
        if not self._pipe.closed:
            self._pipe.close()
        self._status.close()
        if self._data is not None:
            os.close(self._data)
            self._data = None

    def _send(self, message: dict) -> None:
        try:
            self._pipe.send_bytes(json.dumps(message).encode())
        except (OSError, ValueError):
            raise self.failure("sending it a request") from None

    def _receive(self, seconds: float) -> dict:
        self._wait(seconds)
        try:
            message = json.loads(self._pipe.recv_bytes(MAX_MESSAGE_BYTES))
        except (EOFError, OSError):
            raise self.failure("reading the file") from None
        except ValueError:
            raise self.failure("the child process sent something that is not JSON") from None
        if not isinstance(message, dict):
            raise self.failure("the child process sent something that is not an object")
        if "error" in message:
            self.close()
            raise ConvcError(str(message["error"]), path=self.where)
        return message

    def _wait(self, seconds: float) -> None:
        if not self._pipe.poll(seconds):
            self.close()
            raise ConvcError(
                f"libhdf5 did not answer within {seconds:.0f} s reading this file (a file "
                "crafted to make it loop?): refused",
                path=self.where,
            )

    def failure(self, what: str) -> ConvcError:
        """The located refusal for a child that died or misbehaved; ends the child."""
        code = self._exit_code()
        self.close()
        if code is not None and code < 0:
            reason = f"libhdf5 crashed ({_signal_name(-code)})"
        elif code:
            reason = f"the HDF5 reader failed (exit status {code})"
        else:
            reason = "the HDF5 reader failed"
        return ConvcError(f"{reason} {what}: the file is corrupt or crafted", path=self.where)

    def _exit_code(self) -> int | None:
        """The child's exit status, as the fork server reports it once it has reaped the child
        (waiting a moment for a child that is ending)."""
        self._pipe.close()
        self._status.settimeout(1.0)
        try:
            report = json.loads(self._status.recv(256))
            return int(report["exit"])
        except (OSError, ValueError, KeyError, TypeError):
            return None


MAX_MESSAGE_BYTES = 64 << 20
"""The largest JSON message a child may send (a batch of the tree); a dataset's bytes come
unframed after the message that announces them."""


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class _ForkServer:
    """``python -m convc.hdf5_worker``, started once per convc process (again after a fork or
    if it died), in its own session so that a Ctrl-C meant for convc does not reach it."""

    def __init__(self) -> None:
        import convc

        self._lock = threading.Lock()
        self._control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        root = os.path.dirname(os.path.dirname(os.path.abspath(convc.__file__)))
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(
            [root, *filter(None, [environment.get("PYTHONPATH")])]
        )
        self._process = subprocess.Popen(
            [sys.executable, "-m", "convc.hdf5_worker"],
            stdin=theirs.fileno(),
            stdout=subprocess.DEVNULL,
            env=environment,
            start_new_session=True,
        )
        theirs.close()
        self.pid = os.getpid()

    def alive(self) -> bool:
        return self.pid == os.getpid() and self._process.poll() is None

    def launch(self, source: tuple, allowance: int) -> tuple[Connection, socket.socket]:
        """A new child reading ``source``: its data connection and status socket."""
        data, data_theirs = socket.socketpair()
        status, status_theirs = socket.socketpair()
        request = json.dumps({"source": list(source), "allowance": allowance}).encode()
        try:
            with self._lock:
                socket.send_fds(
                    self._control, [request], [data_theirs.fileno(), status_theirs.fileno()]
                )
        finally:
            data_theirs.close()
            status_theirs.close()
        return Connection(data.detach()), status

    def close(self) -> None:
        self._control.close()


_fork_server: _ForkServer | None = None


def _server() -> _ForkServer:
    global _fork_server
    if _fork_server is None or not _fork_server.alive():
        if _fork_server is not None and _fork_server.pid == os.getpid():
            _fork_server.close()
        _fork_server = _ForkServer()
    return _fork_server


def start_reader() -> None:
    """Start the fork server now, when a file will be read later: its start (a Python process
    that imports h5py) then overlaps the caller's own work, parsing and resolving a config."""
    _server()


def shutdown() -> None:
    """End the fork server and wait for it (it waits for its readers), so that no reader
    outlives convc and their memory and time count as convc's own (``wait4``, ``time -v``,
    what a conversion service bills or limits). Run at exit; a later ``open_hdf5`` starts a
    new server."""
    global _fork_server
    server, _fork_server = _fork_server, None
    if server is None or server.pid != os.getpid():
        return
    server.close()
    try:
        server._process.wait(timeout=STALL_SECONDS)
    except subprocess.TimeoutExpired:
        server._process.kill()
        server._process.wait()


atexit.register(shutdown)
