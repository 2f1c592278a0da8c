"""A deterministic mutation fuzz of Keras model files (#23): each seed in
``tests/fixtures/fuzz/`` (written by ``tests/fuzz_seeds.py``) is mutated again and again, and
``convc build`` must end every mutant in one of two ways, within 10 s:

* a correct build: exit 0 and an ONNX model that onnxruntime loads; when the mutation left the
  file's config and weights as Keras reads them (an independent reader decides: the standard
  library's zipfile, which checks CRCs, and h5py in a separate process), the ONNX model is the
  one the unmutated seed gives, byte for byte;
* a located refusal: exit 1, a message that names the file, no traceback, nothing written.

Every other outcome is a failure: exit 3 (an internal error), another status, a traceback, a
message that does not name the file, a file left behind, more than 10 s. (``convc import`` of a
file that build refuses may also exit 4, having written placeholder lines for layers it cannot
compile, as docs/cli.md says.)

Mutants are drawn from a ``random.Random`` seeded by the seed's name and the mutant's number,
so mutant ``N`` of a seed is the same file on every machine. The mutations:

* ``bytes``: bit flips, bytes set to 0x00/0xff/0x7f/0x80, truncation, insertion, deletion or
  duplication of a run, anywhere in the file; ``hdf5-bytes`` aims the same edits at the HDF5
  bookkeeping (superblock, object headers, B-trees, heaps) rather than the arrays' data;
* ``member``: the same byte edits inside one member of a ``.keras`` archive, rezipped with a
  correct CRC, so that the member's parser sees them;
* ``zip``: member names (renamed, traversal, case, prefix), declared sizes, compression method
  and flags patched in the headers, duplicate members, missing members, extra members, a member
  swapped for another seed's, recompression (deflate, bzip2, lzma);
* ``json``: a structural mutator of the config (``config.json``, or an ``.h5`` file's
  ``model_config`` attribute): values of the wrong type, missing keys, huge, negative and
  non-finite numbers, deep nesting, long lists, names swapped for other names of the file,
  subtrees copied elsewhere, list items duplicated or reordered;
* ``hdf5``: structural edits with h5py: attributes changed, datasets with other shapes, dtypes,
  layouts or filters, datasets never written, groups removed, renamed or duplicated.

    python tests/fuzz_files.py                  # 1,000 mutants of every seed, counts by class
    python tests/fuzz_files.py --count 200 --seed nested_shared.keras
    python tests/fuzz_files.py --write 123 --seed volume_3d.keras --to mutant.keras

``tests/test_fuzz_files.py`` runs a few hundred of them in the default test run.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import copy
import io
import json
import random
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from hostile_files import TIME_LIMIT

SEEDS = Path(__file__).parent / "fixtures" / "fuzz"


# --- byte edits -------------------------------------------------------------------------------


def edit_bytes(
    rng: random.Random, data: bytes, positions: list[int] | None = None
) -> tuple[str, bytes]:
    """One byte-level edit of ``data``; ``positions``, if given, are where to aim it."""

    def where() -> int:
        if positions and rng.random() < 0.85:
            return rng.choice(positions)
        return rng.randrange(max(1, len(data)))

    buffer = bytearray(data)
    kind = rng.choice(["flip", "flip", "set", "truncate", "insert", "delete", "duplicate"])
    if not buffer:
        return "empty", b"\x00"
    if kind == "flip":
        places = sorted(where() for _ in range(rng.choice([1, 1, 2, 4, 8])))
        for place in places:
            buffer[place] ^= 1 << rng.randrange(8)
        return f"flip bits at {places}", bytes(buffer)
    if kind == "set":
        place, run = where(), rng.choice([1, 2, 4, 8])
        value = rng.choice([0x00, 0xFF, 0x7F, 0x80, 0x01])
        buffer[place : place + run] = bytes([value]) * len(buffer[place : place + run])
        return f"set {run} bytes at {place} to {value:#x}", bytes(buffer)
    if kind == "truncate":
        place = where()
        return f"truncate at {place}", bytes(buffer[:place])
    place, run = where(), rng.choice([1, 3, 8, 64, 1000])
    if kind == "insert":
        junk = rng.randbytes(run) if rng.random() < 0.5 else bytes(run)
        return f"insert {run} bytes at {place}", bytes(buffer[:place] + junk + buffer[place:])
    if kind == "delete":
        return f"delete {run} bytes at {place}", bytes(buffer[:place] + buffer[place + run :])
    return f"duplicate {run} bytes at {place}", bytes(
        buffer[: place + run] + buffer[place : place + run] + buffer[place + run :]
    )


def hdf5_bookkeeping(data: bytes) -> list[int]:
    """The offsets of an HDF5 file's bytes that are not arrays' raw data: the superblock, object
    headers, B-trees, heaps and attribute storage (read from a valid seed, in this process)."""
    raw = np.zeros(len(data), bool)
    with h5py.File(io.BytesIO(data), "r") as handle:

        def mark(name: str, node: Any) -> None:
            if isinstance(node, h5py.Dataset):
                offset = node.id.get_offset()
                if offset is not None:
                    raw[offset : offset + node.id.get_storage_size()] = True

        handle.visititems(mark)
    return [int(i) for i in np.flatnonzero(~raw)]


# --- JSON --------------------------------------------------------------------------------------


def _places(value: Any, path: tuple = ()) -> Iterator[tuple]:
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _places(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _places(item, (*path, index))


def _strings(value: Any) -> list[str]:
    return sorted({item for item in _leaves(value) if isinstance(item, str)})


def _leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


def _deep(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


_ODD = [
    None, True, False, 0, 1, -1, 2, 3, 7, -7, 0.5, -0.0, 1e-30, 1e308, -1e308,
    2**31 - 1, 2**31, -(2**31), 2**63, 10**30, float("nan"), float("inf"), float("-inf"),
    "", "x", "same", "valid", "relu", "channels_first", "float16", "Functional", "Sequential",
    "InputLayer", "__keras_tensor__", [], {}, [None], [1], [1, 2], [3, 3], [-1, 2], [None, 4],
    [[1, 2], [3, 4]], {"class_name": "Dense", "config": {}}, {"a": 1},
]  # fmt: skip


def mutate_json(rng: random.Random, value: Any) -> tuple[str, Any]:
    """One structural edit of a JSON value (a copy)."""
    value = copy.deepcopy(value)
    places = list(_places(value))[1:]
    if not places:
        return "replaced the whole value", rng.choice(_ODD)
    path = rng.choice(places)
    parent: Any = value
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    old = parent[key]
    kind = rng.choice(
        ["odd", "odd", "odd", "delete", "string", "number", "copy", "duplicate", "swap", "rename",
         "deep", "long"]
    )  # fmt: skip
    if kind == "number" and isinstance(old, int | float) and not isinstance(old, bool):
        new = rng.choice([-old, 0, old + 1, old - 1, old * 1000, old * 2**20, -(2**31), float(old)])
        parent[key] = new
        return f"{list(path)}: number {old!r} -> {new!r}", value
    if kind == "string" or (kind == "number" and isinstance(old, str)):
        new = rng.choice([*_strings(value), "", old + "_x" if isinstance(old, str) else "x"])
        parent[key] = new
        return f"{list(path)}: {old!r:.40} -> string {new!r:.40}", value
    if kind == "delete":
        del parent[key]
        return f"{list(path)}: deleted", value
    if kind == "copy":
        donor = rng.choice(places)
        source: Any = value
        for part in donor:
            source = source[part]
        parent[key] = copy.deepcopy(source)
        return f"{list(path)}: replaced by a copy of {list(donor)}", value
    if kind in ("duplicate", "swap") and isinstance(parent, list) and len(parent) > 0:
        if kind == "duplicate":
            parent.insert(key, copy.deepcopy(old))
            return f"{list(path)}: duplicated", value
        other = rng.randrange(len(parent))
        parent[key], parent[other] = parent[other], parent[key]
        return f"{list(path)}: swapped with item {other}", value
    if kind == "rename" and isinstance(parent, dict):
        new_key = rng.choice([key.upper(), key + "_", "", "name", "config", "class_name"])
        parent[new_key] = parent.pop(key)
        return f"{list(path)}: key renamed {new_key!r}", value
    if kind == "deep":
        parent[key] = _deep(rng.choice([50, 150, 250]))
        return f"{list(path)}: deeply nested list", value
    if kind == "long":
        parent[key] = list(range(rng.choice([1000, 10_000])))
        return f"{list(path)}: long list", value
    new = rng.choice(_ODD)
    parent[key] = copy.deepcopy(new)
    return f"{list(path)}: {old!r:.40} -> {new!r:.40}", value


def json_text(rng: random.Random, text: bytes) -> tuple[str, bytes]:
    """A structural edit of a JSON text, or (sometimes) a duplicated key written into it."""
    value = json.loads(text)
    if rng.random() < 0.1:
        marker = b'"name": '
        place = text.find(marker, rng.randrange(len(text)))
        if place >= 0:
            return f"duplicate key at {place}", text[:place] + b'"name": "dup", ' + text[place:]
    description, mutated = mutate_json(rng, value)
    return description, json.dumps(mutated).encode()


# --- zip ---------------------------------------------------------------------------------------


def read_members(data: bytes) -> list[tuple[zipfile.ZipInfo, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return [(info, archive.read(info)) for info in archive.infolist()]


def write_members(members: list[tuple[str, bytes]], method: int = zipfile.ZIP_STORED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            info.compress_type = method
            with warnings_silenced():
                archive.writestr(info, data)
    return out.getvalue()


@contextlib.contextmanager
def warnings_silenced() -> Iterator[None]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Duplicate name": that is the point
        yield


def _headers(data: bytes) -> list[tuple[str, int]]:
    """The offsets of every local (``local``) and central (``central``) header."""
    found = []
    for signature, kind in ((b"PK\x03\x04", "local"), (b"PK\x01\x02", "central")):
        start = data.find(signature)
        while start >= 0:
            found.append((kind, start))
            start = data.find(signature, start + 1)
    return found


def zip_structure(rng: random.Random, data: bytes, others: list[bytes]) -> tuple[str, bytes]:
    members = [(info.filename, content) for info, content in read_members(data)]
    kind = rng.choice(
        ["rename", "drop", "duplicate", "swap", "extra", "method", "recompress", "sizes", "flags",
         "reorder", "patch-header"]
    )  # fmt: skip
    index = rng.randrange(len(members))
    name, content = members[index]
    if kind == "rename":
        new = rng.choice(
            [name.upper(), "/" + name, "../" + name, "dir/" + name, name + " ", name[:-1], "x",
             name.replace(".", "_"), "C:" + name, name + "\x00"]
        )  # fmt: skip
        members[index] = (new, content)
        return f"renamed {name} to {new!r}", write_members(members)
    if kind == "drop":
        del members[index]
        return f"dropped {name}", write_members(members)
    if kind == "duplicate":
        if rng.random() < 0.5:
            other = rng.choice(others)
            replacement = dict((i.filename, c) for i, c in read_members(other)).get(name, b"{}")
        else:
            replacement = content[: len(content) // 2]
        position = rng.choice([index, index + 1, len(members)])
        members.insert(position, (name, replacement))
        return f"a second {name} at {position}", write_members(members)
    if kind == "swap":
        other = rng.choice(others)
        other_members = dict((i.filename, c) for i, c in read_members(other))
        if name in other_members:
            members[index] = (name, other_members[name])
            return f"{name} swapped for another seed's", write_members(members)
        return "unchanged", data
    if kind == "extra":
        count = rng.choice([1, 5, 1001])
        extra = [(f"assets/{i}", b"x") for i in range(count)]
        return f"{count} extra members", write_members(members + extra)
    if kind == "recompress":
        method = rng.choice([zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
        return f"recompressed with method {method}", write_members(members, method)
    if kind == "reorder":
        rng.shuffle(members)
        return f"members reordered: {[n for n, _ in members]}", write_members(members)
    # header patches, on the bytes of a stored archive
    headers = _headers(data)
    kind_, offset = rng.choice(headers)
    buffer = bytearray(data)
    if kind == "method":
        field_at = offset + (8 if kind_ == "local" else 10)
        method = rng.choice([8, 12, 14, 99, 1, 0xFFFF])
        buffer[field_at : field_at + 2] = struct.pack("<H", method)
        return f"{kind_} header at {offset}: method {method}", bytes(buffer)
    if kind == "flags":
        field_at = offset + (6 if kind_ == "local" else 8)
        flags = rng.choice([1, 8, 0x800, 0x41, 0xFFFF])
        buffer[field_at : field_at + 2] = struct.pack("<H", flags)
        return f"{kind_} header at {offset}: flags {flags:#x}", bytes(buffer)
    if kind == "sizes":
        field_at = offset + (18 if kind_ == "local" else 20) + rng.choice([0, 4])
        old = struct.unpack_from("<I", buffer, field_at)[0]
        new = rng.choice([0, 1, old - 1, old + 1, old * 2, 0xFFFFFFFF, 0x7FFFFFFF])
        struct.pack_into("<I", buffer, field_at, max(0, min(new, 0xFFFFFFFF)))
        return f"{kind_} header at {offset}: size at +{field_at - offset} {old} -> {new}", bytes(
            buffer
        )
    # patch-header: a name length or extra length
    field_at = offset + (26 if kind_ == "local" else 28) + rng.choice([0, 2])
    new = rng.choice([0, 1, 200, 0xFFFF])
    struct.pack_into("<H", buffer, field_at, new)
    return f"{kind_} header at {offset}: length at +{field_at - offset} -> {new}", bytes(buffer)


# --- HDF5 --------------------------------------------------------------------------------------


def _objects(handle: h5py.File) -> tuple[list[str], list[str]]:
    groups: list[str] = []
    datasets: list[str] = []
    handle.visititems(
        lambda name, node: (datasets if isinstance(node, h5py.Dataset) else groups).append(name)
    )
    return groups, datasets


def hdf5_structure(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    """One structural edit of an HDF5 file with h5py (on a valid seed, in this process); an
    edit that h5py cannot make leaves the file unchanged."""
    try:
        return _hdf5_structure(rng, data)
    except (ValueError, TypeError, KeyError, OSError, RuntimeError) as error:
        return f"unchanged ({error})", data


def _hdf5_structure(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    buffer = io.BytesIO(data)
    with h5py.File(buffer, "r+") as handle:
        groups, datasets = _objects(handle)
        kind = rng.choice(
            ["attribute", "attribute", "config", "shape", "dtype", "layout", "unwritten",
             "delete", "rename", "duplicate", "dataset-to-group", "add"]
        )  # fmt: skip
        if kind == "config" and "model_config" in handle.attrs:
            text = handle.attrs["model_config"]
            description, mutated = json_text(
                rng, text if isinstance(text, bytes) else text.encode()
            )
            handle.attrs["model_config"] = mutated.decode("utf-8", "surrogateescape")
            description = f"model_config: {description}"
        elif kind in ("attribute", "config"):
            holders = [
                (name, attr) for name in ["/", *groups, *datasets] for attr in handle[name].attrs
            ]
            if not holders:
                return "unchanged", data
            name, attr = rng.choice(holders)
            old = handle[name].attrs[attr]
            new = rng.choice(
                [
                    "", "x", "conv2d", "dense", "../x", "a/b", 7, -1, 2**40, 1.5,
                    np.array([1, 2, 3]), np.array([b"a", b"b"]), np.array([], dtype="S1"),
                    np.bytes_(b"a\x00b"), "é" * 3, "x" * 100_000,
                ]
            )  # fmt: skip
            if (
                isinstance(old, np.ndarray)
                and old.dtype.kind in "SOU"
                and len(old)
                and rng.random() < 0.5
            ):
                items = list(old)
                rng.shuffle(items)
                new = np.array(
                    items[: rng.randrange(len(items) + 1)]
                    + ([b"ghost:0"] if rng.random() < 0.3 else []),
                    dtype="S",
                )
            handle[name].attrs[attr] = new
            description = f"attribute {name}@{attr} -> {str(new)[:40]!r}"
        elif kind in ("shape", "dtype", "layout", "unwritten") and datasets:
            name = rng.choice(datasets)
            array = handle[name][()]
            del handle[name]
            if kind == "shape":
                options = [
                    np.zeros((0,), array.dtype),
                    np.float32(1.0),
                    array.reshape(-1),
                    array[..., None],
                    array.T,
                    np.concatenate([array.reshape(-1), array.reshape(-1)]),
                ]
                new_array = rng.choice(options)
                handle.create_dataset(name, data=new_array)
                description = f"{name}: shape {array.shape} -> {np.shape(new_array)}"
            elif kind == "dtype":
                dtype = rng.choice(["<f2", "<f8", ">f4", "<i4", "<u1", "|b1", "S4", "c8"])
                converted = array.astype(dtype) if dtype != "S4" else np.zeros(array.shape, "S4")
                handle.create_dataset(name, data=converted)
                description = f"{name}: dtype {array.dtype} -> {dtype}"
            elif kind == "layout":
                options = {
                    "gzip": {"compression": "gzip", "chunks": True},
                    "shuffle-lzf": {"compression": "lzf", "shuffle": True, "chunks": True},
                    "fletcher32": {"fletcher32": True, "chunks": True},
                    "scaleoffset": {"scaleoffset": 3, "chunks": True}
                    if array.dtype.kind == "f" and array.ndim
                    else {},
                    "compact": {},
                }
                chosen = rng.choice(sorted(options))
                if chosen == "compact":
                    space = h5py.h5s.create_simple(array.shape or (1,))
                    plist = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
                    plist.set_layout(h5py.h5d.COMPACT)
                    if array.nbytes < 60_000:
                        dataset = h5py.h5d.create(
                            handle.id, name.encode(), h5py.h5t.py_create(array.dtype), space, plist
                        )
                        dataset.write(
                            h5py.h5s.ALL,
                            h5py.h5s.ALL,
                            np.ascontiguousarray(array).reshape(array.shape or (1,)),
                        )
                    else:
                        handle.create_dataset(name, data=array)
                else:
                    handle.create_dataset(name, data=array, **options[chosen])
                description = f"{name}: stored {chosen} (same values)"
            else:
                handle.create_dataset(name, array.shape, array.dtype)
                description = f"{name}: declared, never written"
        elif kind == "delete" and (groups or datasets):
            name = rng.choice(groups + datasets)
            del handle[name]
            description = f"deleted {name}"
        elif kind == "rename" and (groups or datasets):
            name = rng.choice(groups + datasets)
            new = (
                name + rng.choice(["_", "x"])
                if rng.random() < 0.5
                else name.rsplit("/", 1)[0] + "/0"
            )
            if new in handle:
                return "unchanged", data
            handle.move(name, new)
            description = f"renamed {name} to {new}"
        elif kind == "duplicate" and groups:
            name = rng.choice(groups)
            new = name + "_copy"
            handle.copy(name, new)
            description = f"copied {name} to {new}"
        elif kind == "dataset-to-group" and datasets:
            name = rng.choice(datasets)
            del handle[name]
            handle.create_group(name)
            description = f"{name} is now a group"
        else:
            parent = rng.choice(["/", *groups])
            new = f"{parent.rstrip('/')}/{rng.choice(['0', '9', 'extra', 'vars', 'layers'])}"
            if new in handle:
                return "unchanged", data
            handle.create_dataset(new, data=np.ones(rng.choice([(), (3,), (2, 2)]), "f4"))
            description = f"added dataset {new}"
    return description, buffer.getvalue()


# --- mutants -----------------------------------------------------------------------------------


@dataclass
class Seed:
    name: str
    data: bytes
    bookkeeping: list[int] = field(default_factory=list)
    weights_bookkeeping: list[int] = field(default_factory=list)

    @property
    def is_archive(self) -> bool:
        return self.name.endswith(".keras")


def load_seeds(names: list[str] | None = None) -> list[Seed]:
    seeds = []
    for path in sorted(SEEDS.iterdir()):
        if names and path.name not in names:
            continue
        seed = Seed(path.name, path.read_bytes())
        if seed.is_archive:
            weights = dict((i.filename, c) for i, c in read_members(seed.data))["model.weights.h5"]
            seed.weights_bookkeeping = hdf5_bookkeeping(weights)
        else:
            seed.bookkeeping = hdf5_bookkeeping(seed.data)
        seeds.append(seed)
    return seeds


def mutant(seed: Seed, number: int, others: list[Seed]) -> tuple[str, bytes]:
    """Mutant ``number`` of ``seed``: a description and the file's bytes."""
    rng = random.Random(f"{seed.name}:{number}")
    donors = [other.data for other in others if other.is_archive and other.name != seed.name]
    if seed.is_archive:
        family = rng.choice(
            ["bytes", "member", "member", "zip", "json", "json", "hdf5", "hdf5", "hdf5-bytes"]
        )
    else:
        family = rng.choice(
            ["bytes", "hdf5-bytes", "hdf5-bytes", "json", "json", "hdf5", "hdf5", "hdf5"]
        )
    if family == "bytes":
        description, data = edit_bytes(rng, seed.data)
    elif family == "zip":
        description, data = zip_structure(rng, seed.data, donors or [seed.data])
    elif not seed.is_archive:
        if family == "hdf5-bytes":
            description, data = edit_bytes(rng, seed.data, seed.bookkeeping)
        elif family == "json":
            description, data = hdf5_structure_config(rng, seed.data)
        else:
            description, data = hdf5_structure(rng, seed.data)
    else:
        members = [(info.filename, content) for info, content in read_members(seed.data)]
        by_name = dict(members)
        if family == "member":
            target = rng.choice(
                ["config.json", "metadata.json", "model.weights.h5", "model.weights.h5"]
            )
            description, by_name[target] = edit_bytes(rng, by_name[target])
            description = f"{target}: {description}"
        elif family == "hdf5-bytes":
            target = "model.weights.h5"
            description, by_name[target] = edit_bytes(
                rng, by_name[target], seed.weights_bookkeeping
            )
            description = f"{target}: {description}"
        elif family == "json":
            target = "config.json" if rng.random() < 0.9 else "metadata.json"
            description, by_name[target] = json_text(rng, by_name[target])
            description = f"{target}: {description}"
        else:
            description, by_name["model.weights.h5"] = hdf5_structure(
                rng, by_name["model.weights.h5"]
            )
            description = f"model.weights.h5: {description}"
        data = write_members([(name, by_name[name]) for name, _ in members])
    return f"{family}: {description}", data


def hdf5_structure_config(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    buffer = io.BytesIO(data)
    with h5py.File(buffer, "r+") as handle:
        text = handle.attrs["model_config"]
        description, mutated = json_text(rng, text if isinstance(text, bytes) else text.encode())
        handle.attrs["model_config"] = mutated.decode("utf-8", "surrogateescape")
    return f"model_config: {description}", buffer.getvalue()


# --- running convc on a mutant ------------------------------------------------------------------


class _Overtime(BaseException):
    """Raised by the alarm in a run that passed twice the time limit (not an ``Exception``, so
    that convc's own handlers cannot take it for an error of the file)."""


@dataclass
class Run:
    code: int | None
    out: str
    err: str
    seconds: float
    written: list[str]


def run_cli(argv: list[str], folder: Path, keep: set[str]) -> Run:
    """``convc ARGV`` in this process, its output captured; ``written`` are the files in
    ``folder`` besides ``keep`` afterwards."""
    from convc.cli import main

    out, err = io.StringIO(), io.StringIO()

    def overtime(signum: int, frame: object) -> None:
        raise _Overtime

    previous = signal.signal(signal.SIGALRM, overtime)
    signal.setitimer(signal.ITIMER_REAL, 2 * TIME_LIMIT)
    start = time.monotonic()
    code: int | None
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
    except _Overtime:
        code = None
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 2
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    if code in (130, 143):  # convc turned Ctrl-C or SIGTERM into its exit status: stop the fuzz
        raise KeyboardInterrupt(f"convc {' '.join(argv)} exited {code}: {err.getvalue()[-300:]}")
    seconds = time.monotonic() - start
    written = sorted(p.name for p in folder.iterdir() if p.name not in keep)
    return Run(code, out.getvalue(), err.getvalue(), seconds, written)


def onnx_problem(path: Path) -> str | None:
    """Why onnxruntime does not load (or run) the model at ``path``, or ``None``."""
    import onnx
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as error:  # noqa: BLE001 - any refusal of onnxruntime is the finding
        return f"onnxruntime does not load it: {error}"
    inferred = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    elements = 0
    for value in [*inferred.graph.value_info, *inferred.graph.output]:
        dims = [d.dim_value or 1 for d in value.type.tensor_type.shape.dim]
        elements += int(np.prod(dims, dtype=np.int64))
    if elements > 20_000_000:
        return None  # loaded; too large to run here
    feeds = {
        item.name: np.random.default_rng(0)
        .standard_normal([d if isinstance(d, int) else 1 for d in item.shape])
        .astype(np.float16 if "float16" in item.type else np.float32)
        for item in session.get_inputs()
    }
    try:
        session.run(None, feeds)
    except Exception as error:  # noqa: BLE001
        return f"onnxruntime does not run it: {error}"
    return None


# --- what Keras would read: an independent digest ------------------------------------------------


def digest(path: str) -> str:
    """A hash of the config and the weights of a model file as Keras reads them: zipfile (which
    checks each member's CRC) for a .keras archive, h5py for HDF5. Run in a separate process
    (``_Digests``): h5py may crash on a mutant."""
    import hashlib

    hasher = hashlib.sha256()

    def add(*parts: Any) -> None:
        for part in parts:
            hasher.update(part if isinstance(part, bytes) else repr(part).encode())
            hasher.update(b"\x00")

    def plain(value: Any) -> Any:
        if isinstance(value, np.ndarray):
            return (
                [plain(item) for item in value.tolist()] if value.dtype.kind != "V" else repr(value)
            )
        if isinstance(value, bytes):
            return value.decode("utf-8", "surrogateescape")
        if isinstance(value, np.generic):
            return value.item()
        return value

    def hdf5(handle: h5py.File) -> None:
        items: list[tuple[str, Any]] = [("/", handle)]
        handle.visititems(lambda name, node: items.append((name, node)))
        for name, node in sorted(items, key=lambda item: item[0]):
            attributes = {key: plain(node.attrs[key]) for key in sorted(node.attrs)}
            if "model_config" in attributes:
                attributes["model_config"] = json.loads(attributes["model_config"])
            add(name, type(node).__name__, json.dumps(attributes, sort_keys=True, default=repr))
            if isinstance(node, h5py.Dataset):
                array = node[()]
                add(array.shape, array.dtype.str, np.ascontiguousarray(array).tobytes())

    data = Path(path).read_bytes()
    if data[:2] == b"PK":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            add(json.dumps(json.loads(archive.read("config.json")), sort_keys=True))
            with contextlib.suppress(KeyError):
                add(archive.read("metadata.json"))
            with h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as handle:
                hdf5(handle)
    else:
        with h5py.File(io.BytesIO(data), "r") as handle:
            hdf5(handle)
    return hasher.hexdigest()


def _serve_digests() -> None:
    for line in sys.stdin:
        try:
            answer = {"digest": digest(line.rstrip("\n"))}
        except Exception as error:  # noqa: BLE001 - unreadable is an answer
            answer = {"error": f"{type(error).__name__}: {error}"}
        print(json.dumps(answer), flush=True)


class Digests:
    """A process that computes ``digest``; started again if a file crashes it."""

    def __init__(self) -> None:
        self._process: subprocess.Popen | None = None

    def __call__(self, path: Path) -> str:
        if self._process is None or self._process.poll() is not None:
            self._process = subprocess.Popen(
                [sys.executable, __file__, "--digest-server"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        assert self._process.stdin and self._process.stdout
        self._process.stdin.write(f"{path}\n")
        self._process.stdin.flush()
        line = self._process.stdout.readline()
        if not line:
            self._process.wait()
            return "unreadable: the reader crashed"
        answer = json.loads(line)
        return answer.get("digest") or "unreadable: " + answer["error"]

    def close(self) -> None:
        if self._process is not None:
            self._process.stdin.close()  # type: ignore[union-attr]
            self._process.wait(timeout=30)


# --- the fuzz ------------------------------------------------------------------------------------

OUTCOMES = (
    "built-identical",
    "built-different",
    "refused",
    "refused: libhdf5 crashed",
    "refused: libhdf5 stalled",
)
"""What may become of a mutant: built (the seed's ONNX model, or another that onnxruntime
loads), or refused with its location; refusals where libhdf5 crashed or stopped answering in
the reader process are counted apart."""


def _refusal_kind(err: str) -> str:
    if "libhdf5 crashed" in err:
        return "refused: libhdf5 crashed"
    if "libhdf5 did not answer" in err:
        return "refused: libhdf5 stalled"
    return "refused"


PLACEHOLDERS = 4
"""convc import's exit status when it wrote placeholder lines for layers that are code
(docs/cli.md): allowed where build refuses the file."""

FAILURES = (
    "internal error",
    "other status",
    "traceback",
    "not located",
    "left files",
    "overtime",
    "slow",
    "intact but different",
    "onnxruntime",
    "import disagrees",
)


@dataclass
class Outcome:
    seed: str
    number: int
    mutation: str
    kind: str
    """built-identical, built-different, refused, or a failure (``FAILURES``)."""
    detail: str = ""


class Fuzz:
    """Builds mutants of the seeds in a scratch folder and classifies each outcome."""

    def __init__(self, seeds: list[Seed], folder: Path, import_every: int = 4):
        self.seeds = seeds
        self.folder = folder
        self.import_every = import_every
        self.digests = Digests()
        self.last_path: Path | None = None
        """The last mutant's file (the next run overwrites it)."""
        self.reference: dict[str, tuple[bytes, str]] = {}
        for seed in seeds:
            path = self._place(seed.name, seed.data)
            run = run_cli(
                ["build", str(path), "-o", str(path.with_suffix(".onnx"))], path.parent, {path.name}
            )
            assert run.code == 0, f"the seed {seed.name} does not build: {run.err}"
            self.reference[seed.name] = (path.with_suffix(".onnx").read_bytes(), self.digests(path))

    def _place(self, name: str, data: bytes) -> Path:
        folder = self.folder / "work"
        if folder.exists():
            for item in folder.iterdir():
                item.unlink()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / ("m" + Path(name).suffix)
        path.write_bytes(data)
        return path

    def run(self, seed: Seed, number: int) -> Outcome:
        mutation, data = mutant(seed, number, self.seeds)
        path = self.last_path = self._place(seed.name, data)
        output = path.with_suffix(".onnx")
        outcome = self._judge(seed, path, ["build", str(path), "-o", str(output)], output)
        outcome = Outcome(seed.name, number, mutation, *outcome)
        if number % self.import_every == 0 and outcome.kind in OUTCOMES:
            for item in path.parent.iterdir():
                if item != path:
                    item.unlink()
            conv = path.with_suffix(".conv")
            run = run_cli(["import", str(path), "-o", str(conv)], path.parent, {path.name})
            built = outcome.kind.startswith("built")
            if run.code == PLACEHOLDERS and not built:
                # a layer that is code (or what the mutation made look like one): the text is
                # written with a placeholder line, the weights where they fit
                if (
                    "Traceback" in run.err
                    or "m.conv" not in run.written
                    or set(run.written)
                    - {
                        "m.conv",
                        "m.npz",
                    }
                ):
                    outcome.kind, outcome.detail = "import disagrees", f"{run.written}: {run.err}"
            elif (run.code == 0) != built or (run.code == 0 and run.written != ["m.conv", "m.npz"]):
                outcome.kind, outcome.detail = (
                    "import disagrees",
                    f"build {'built' if built else 'refused'}, import exit {run.code}: "
                    f"{run.err.strip()[-300:]} {run.written}",
                )
            elif run.code != 0:
                problem = self._refusal_problem(run, path)
                if problem:
                    outcome.kind, outcome.detail = problem
        return outcome

    def _refusal_problem(self, run: Run, path: Path) -> tuple[str, str] | None:
        if run.code is None:
            return "overtime", f"still running after {2 * TIME_LIMIT:.0f} s"
        if run.code == 3:
            return "internal error", run.err.strip()[-500:]
        if run.code != 1:
            return "other status", f"exit {run.code}: {run.err.strip()[-300:]}"
        if "Traceback" in run.err:
            return "traceback", run.err[-500:]
        if str(path) not in run.err:
            return "not located", run.err.strip()[-300:]
        if run.written:
            return "left files", f"{run.written}: {run.err.strip()[-200:]}"
        if run.seconds > TIME_LIMIT:
            return "slow", f"{run.seconds:.1f} s: {run.err.strip()[-200:]}"
        return None

    def _judge(self, seed: Seed, path: Path, argv: list[str], output: Path) -> tuple[str, str]:
        run = run_cli(argv, path.parent, {path.name})
        if run.code != 0:
            return self._refusal_problem(run, path) or (_refusal_kind(run.err), run.err[:300])
        if run.seconds > TIME_LIMIT:
            return "slow", f"built in {run.seconds:.1f} s"
        if "Traceback" in run.err:
            return "traceback", run.err[-500:]
        expected, seed_digest = self.reference[seed.name]
        if output.read_bytes() == expected:
            return "built-identical", ""
        if self.digests(path) == seed_digest:
            return (
                "intact but different",
                "the file's config and weights are the seed's, the ONNX is not",
            )
        problem = onnx_problem(output)
        if problem:
            return "onnxruntime", problem
        return "built-different", ""

    def close(self) -> None:
        self.digests.close()


def fuzz(
    seeds: list[Seed], count: int, first: int = 0, report: Callable[[Outcome], None] | None = None
) -> list[Outcome]:
    outcomes = []
    with tempfile.TemporaryDirectory() as scratch:
        runner = Fuzz(seeds, Path(scratch))
        try:
            for seed in seeds:
                for number in range(first, first + count):
                    outcome = runner.run(seed, number)
                    outcomes.append(outcome)
                    if report:
                        report(outcome)
        finally:
            runner.close()
    return outcomes


def summarize(outcomes: list[Outcome]) -> str:
    """Counts of outcomes by seed and by family of mutation, as Markdown tables."""
    kinds = [*OUTCOMES, *FAILURES]
    kinds = [kind for kind in kinds if any(o.kind == kind for o in outcomes)]
    tables = []
    for label, key in (
        ("seed", lambda o: o.seed),
        ("mutation", lambda o: o.mutation.split(":")[0]),
    ):
        counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        for outcome in outcomes:
            counts[key(outcome)][outcome.kind] += 1
            counts["all"][outcome.kind] += 1
        rows = sorted(counts, key=lambda name: (name == "all", name))
        lines = [f"| {label} | " + " | ".join(kinds) + " |", "|---" * (len(kinds) + 1) + "|"]
        for row in rows:
            lines.append(f"| {row} | " + " | ".join(f"{counts[row][k]:,}" for k in kinds) + " |")
        tables.append("\n".join(lines))
    return "\n\n".join(tables)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000, help="mutants of each seed")
    parser.add_argument("--first", type=int, default=0, help="number of the first mutant")
    parser.add_argument("--seed", action="append", help="only this seed (repeatable)")
    parser.add_argument("--write", type=int, metavar="N", help="write mutant N (of one --seed)")
    parser.add_argument("--to", help="where --write writes")
    parser.add_argument("--digest-server", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.digest_server:
        _serve_digests()
        return 0
    seeds = load_seeds()
    chosen = [seed for seed in seeds if not args.seed or seed.name in args.seed]
    if args.write is not None:
        (seed,) = chosen
        description, data = mutant(seed, args.write, seeds)
        Path(args.to or f"mutant{Path(seed.name).suffix}").write_bytes(data)
        print(description)
        return 0
    failures = []

    def report(outcome: Outcome) -> None:
        if outcome.kind in FAILURES:
            failures.append(outcome)
            print(
                f"FAIL {outcome.seed} #{outcome.number} {outcome.kind}: {outcome.mutation}\n    {outcome.detail}",
                flush=True,
            )

    outcomes = fuzz(chosen, args.count, args.first, report)
    print(summarize(outcomes))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent.parent))
    sys.exit(main())
