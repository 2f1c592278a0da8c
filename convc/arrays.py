"""Reading .npy and .npz files safely (no pickles, no allocation a file cannot back), and
writing .npz archives.

NumPy allocates what an array header declares before it reads the data, so a tiny file that
claims a shape of 10**11 elements would exhaust memory. These readers parse each header first
and refuse an array that claims more bytes than the file (or the archive member) holds.

An array's key is its member's name, ``.npy`` added, as NumPy writes and reads it; but a zip
member's name cannot hold every key a Keras name can make: a NUL ends it (readers cut it there),
it has at most 65,535 bytes, and it must be UTF-8. Such a key is written under another name and
recorded in a ``keys.json`` member, which ``read_npz`` reads back, so that the weights of
``convc import`` round-trip every layer name Keras accepts; an archive of ordinary keys has no
such member and is exactly what ``numpy.savez`` writes.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import zipfile
from pathlib import Path

import numpy as np

from convc.diagnostics import ConvcError


def read_npy(path: Path) -> np.ndarray:
    try:
        with open(path, "rb") as handle:
            _check_header(handle, path.stat().st_size, str(path))
            handle.seek(0)
            return np.load(handle, allow_pickle=False)
    except FileNotFoundError:
        raise ConvcError("no such file", path=str(path)) from None
    except IsADirectoryError:
        raise ConvcError("is a directory, not an .npy file", path=str(path)) from None
    except (ValueError, OSError, EOFError) as error:
        raise ConvcError(f"cannot read the array: {error}", path=str(path)) from None


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an .npz archive, by name."""
    if not path.is_file():
        raise ConvcError("no such file", path=str(path))
    if not zipfile.is_zipfile(path):
        raise ConvcError(
            "not an .npz archive (a zip of .npy arrays); corrupt or truncated?", path=str(path)
        )
    arrays = {}
    try:
        with zipfile.ZipFile(path) as archive:
            keys = _recorded_keys(archive, path)
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                where = f"{path}:{info.filename}"
                with archive.open(info) as member:
                    _check_header(member, info.file_size, where)
                with archive.open(info) as member:
                    key = keys.get(info.filename, info.filename[: -len(".npy")])
                    arrays[key] = np.lib.format.read_array(member, allow_pickle=False)
    except ConvcError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise ConvcError(
            f"cannot read the .npz file (corrupt or truncated?): {error}", path=str(path)
        ) from None
    return arrays


KEYS_MEMBER = "keys.json"
"""The member of an .npz that maps member names to the keys they stand for (see above)."""

MAX_KEYS_BYTES = 64 << 20
"""The largest ``keys.json`` read: a key per array, each at most a config's worth of name."""


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An .npz archive of named arrays. (``np.savez(f, **arrays)`` would take arrays named
    ``file`` or ``allow_pickle`` for its own arguments.)"""
    plain = {key: _member_name(key) for key in arrays}
    used = {name for name in plain.values() if name is not None}
    names: dict[str, str] = {}
    recorded: dict[str, str] = {}  # member name -> key, for the keys that cannot be names
    spare = (f"array{i}.npy" for i in itertools.count() if f"array{i}.npy" not in used)
    for key, name in plain.items():
        if name is None:
            name = next(spare)
            recorded[name] = key
        names[key] = name
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for key, array in arrays.items():
            with archive.open(names[key], "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)
        if recorded:
            # dated as the arrays are (the zip epoch), not now: the same weights, the same bytes
            archive.writestr(zipfile.ZipInfo(KEYS_MEMBER), json.dumps(recorded))
    return buffer.getvalue()


def _member_name(key: str) -> str | None:
    """``KEY.npy``, or ``None`` if a zip member's name cannot be that."""
    try:
        encoded = key.encode("utf-8")
    except UnicodeEncodeError:
        return None
    if "\x00" in key or len(encoded) + len(".npy") > 0xFFFF:
        return None
    return f"{key}.npy"


def _recorded_keys(archive: zipfile.ZipFile, path: Path) -> dict[str, str]:
    """The keys that ``keys.json`` records, by member name (none if it is absent)."""
    try:
        info = archive.getinfo(KEYS_MEMBER)
    except KeyError:
        return {}
    where = f"{path}:{KEYS_MEMBER}"
    if info.file_size > MAX_KEYS_BYTES:
        raise ConvcError(
            f"{KEYS_MEMBER} is {info.file_size:,} bytes; convc reads at most {MAX_KEYS_BYTES:,}",
            path=where,
        )
    with archive.open(info) as member:
        data = member.read(MAX_KEYS_BYTES + 1)
    try:
        keys = json.loads(data)
    except ValueError as error:
        raise ConvcError(f"{KEYS_MEMBER} is not JSON: {error}", path=where) from None
    if not isinstance(keys, dict) or not all(
        isinstance(name, str) and isinstance(key, str) for name, key in keys.items()
    ):
        raise ConvcError(f"{KEYS_MEMBER} is not an object of member names and keys", path=where)
    return keys


def _check_header(handle, available: int, where: str) -> None:
    try:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
    except (ValueError, OSError, EOFError) as error:
        raise ConvcError(f"not an .npy array: {error}", path=where) from None
    if dtype.hasobject:
        raise ConvcError(
            "the array holds pickled Python objects, which convc never loads", path=where
        )
    declared = math.prod(shape) * dtype.itemsize
    if declared > available - handle.tell():
        raise ConvcError(
            f"the array declares shape {shape} ({declared:,} bytes), more than the file holds",
            path=where,
        )
