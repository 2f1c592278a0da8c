"""Reading .npy and .npz files safely (no pickles, no allocation a file cannot back), and
writing .npz archives.

NumPy allocates what an array header declares before it reads the data, so a tiny file that
claims a shape of 10**11 elements would exhaust memory. These readers parse each header first
and refuse an array that claims more bytes than the file (or the archive member) holds.
"""

from __future__ import annotations

import io
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
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                where = f"{path}:{info.filename}"
                with archive.open(info) as member:
                    _check_header(member, info.file_size, where)
                with archive.open(info) as member:
                    arrays[info.filename[: -len(".npy")]] = np.lib.format.read_array(
                        member, allow_pickle=False
                    )
    except ConvcError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise ConvcError(
            f"cannot read the .npz file (corrupt or truncated?): {error}", path=str(path)
        ) from None
    return arrays


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An .npz archive of named arrays. (``np.savez(f, **arrays)`` would take arrays named
    ``file`` or ``allow_pickle`` for its own arguments.)"""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)
    return buffer.getvalue()


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
