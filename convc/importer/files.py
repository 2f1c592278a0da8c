"""Reading a Keras model file as untrusted input: its config and a handle on its weights.

Three formats, told apart by their first bytes, not their names:

* Keras 3 ``.keras``: a zip of ``config.json``, ``metadata.json`` and ``model.weights.h5``;
* Keras 2 / tf.keras full-model ``.h5``: an HDF5 file whose root attribute ``model_config`` holds
  the config as JSON and whose ``model_weights`` group holds the weights;
* architecture-only JSON, as ``model.to_json()`` writes it.

Nothing here imports Keras, unpickles or executes anything from the file, and HDF5 is parsed
only by ``convc.hdf5``'s child process. A zip member is read through a reader that stops at the
limit whatever the archive declares, so a zip bomb costs at most the limit; a compressed
``model.weights.h5`` is inflated (by that child) only when the model is known, and only as far as
that model's weights file can be. JSON is checked for nesting depth before it is parsed, so a
config that nests 10,000 deep is refused without recursing.
"""

from __future__ import annotations

import io
import json
import lzma
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from convc import hdf5
from convc.diagnostics import ConvcError
from convc.importer import generations
from convc.limits import MAX_CONFIG_VALUES, MAX_LAYERS, weights_file_bytes

MAX_CONFIG_BYTES = 128 << 20
"""A model's config JSON: ResNet152's is under 1 MiB. Keras spends 15 to 18 bytes a value of
its layers' configs (``convc.limits.MAX_CONFIG_VALUES``), so a real config meets the limit on
values first: the config of a Sequential of 100,000 Dense layers is 76 MB (64 MiB refused it)."""

MAX_CONFIG_DEPTH = 200
"""JSON nesting: a layer's config nests about 8 deep, each nested model adds about 6."""

MAX_ZIP_MEMBERS = 1000
"""Members of a .keras archive: Keras writes three, plus assets for a few layer types."""

_ZIP_MAGIC = b"PK\x03\x04"
_EMPTY_ZIP_MAGIC = b"PK\x05\x06"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


@dataclass
class ModelFile:
    """A Keras model file, opened: its config (a plain JSON value) and where its weights are."""

    path: Path
    format: str
    """``keras`` (Keras 3 zip), ``h5`` (Keras 2 full-model HDF5) or ``json`` (architecture)."""
    config: dict[str, Any]
    weights: hdf5.File | None = None
    """The open HDF5 file of an ``h5`` model (its weights are in it), or ``None``."""
    keras_version: str | None = None
    weights_source: tuple | None = None
    """Where a ``keras`` archive keeps its model.weights.h5, for ``open_hdf5``."""

    @property
    def has_weights(self) -> bool:
        return self.weights is not None or self.weights_source is not None

    def open_weights(self, parameters: int, arrays: int) -> hdf5.File:
        """The weights' HDF5 file, for a model of ``parameters`` numbers in ``arrays`` arrays:
        a compressed member is inflated only as far as such a model's weights file can be
        (``weights_file_bytes``)."""
        if self.weights is None:
            assert self.weights_source is not None, "a file with weights has a source"
            source = self.weights_source
            budget = 0
            if source[0] == "member":
                budget = weights_file_bytes(parameters, arrays)
                source = (*source, budget)
            self.weights = hdf5.open_hdf5(source, f"{self.path}:model.weights.h5", budget=budget)
        return self.weights

    def attach_legacy_weights(self, path: str | Path) -> bool:
        """Take ``path`` as the weights of this architecture-only JSON when it is an HDF5 file
        of Keras 1 or 2's ``save_weights`` (``layer_names`` at its root; read by layer, as a
        full-model ``.h5`` is); False, and nothing kept, for any other file."""
        if self.format != "json" or self.weights is not None:
            return False
        path = Path(path)
        try:
            with path.open("rb") as handle:
                if handle.read(8) != _HDF5_MAGIC:
                    return False
        except OSError:
            return False
        weights = hdf5.open_hdf5(path, str(path))
        if "layer_names" not in weights.attrs and "model_weights" not in weights:
            weights.close()
            return False
        self.weights = weights
        return True

    def close(self) -> None:
        if self.weights is not None:
            self.weights.close()
            self.weights = None

    def __enter__(self) -> ModelFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


MODEL_SUFFIXES = (".keras", ".h5", ".hdf5", ".json")


def is_model_file(path: str | Path) -> bool:
    """Whether ``path`` names a Keras model file (by suffix) rather than ``.conv`` text."""
    name = str(path).lower()
    return name.endswith(MODEL_SUFFIXES) and not name.endswith(".weights.h5")


def open_model_file(path: str | Path) -> ModelFile:
    path = Path(path)
    try:
        with path.open("rb") as handle:
            head = handle.read(8)
    except FileNotFoundError:
        raise ConvcError("no such file", path=str(path)) from None
    except IsADirectoryError:
        raise ConvcError("is a directory, not a Keras model file", path=str(path)) from None
    except OSError as error:
        raise ConvcError(f"cannot read the file: {error.strerror}", path=str(path)) from None
    if head.startswith((_ZIP_MAGIC, _EMPTY_ZIP_MAGIC)):
        return _open_keras_zip(path)
    if head.startswith(_HDF5_MAGIC):
        return _open_legacy_h5(path)
    if head.lstrip()[:1] in (b"{", b'"', b""):
        return _open_json(path)
    raise ConvcError(
        "not a Keras model file: it is neither a .keras zip, an HDF5 file nor JSON",
        path=str(path),
        help="give a file saved by model.save('m.keras') or model.save('m.h5'), "
        "or the JSON of model.to_json()",
    )


def parse_config(data: bytes | str, where: str, what: str = "the model config") -> Any:
    """Parse JSON from the file, after checking its size and nesting depth."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    if len(data) > MAX_CONFIG_BYTES:
        raise ConvcError(
            f"{what} is {len(data):,} bytes; convc reads at most {MAX_CONFIG_BYTES:,}", path=where
        )
    depth, values = _json_shape(data)
    if depth > MAX_CONFIG_DEPTH:
        raise ConvcError(
            f"{what} nests {depth:,} levels deep; a Keras model's config needs far fewer "
            f"(convc reads at most {MAX_CONFIG_DEPTH})",
            path=where,
        )
    if values > MAX_CONFIG_VALUES:
        raise ConvcError(
            f"{what} holds {values:,} JSON values; the config of a model of "
            f"{MAX_LAYERS:,} layers holds fewer (convc reads at most {MAX_CONFIG_VALUES:,})",
            path=where,
        )
    try:
        return json.loads(data)
    except UnicodeDecodeError as error:
        raise ConvcError(f"{what} is not UTF-8 (byte {error.start})", path=where) from None
    except json.JSONDecodeError as error:
        raise ConvcError(
            f"{what} is not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}",
            path=where,
        ) from None


_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
_SCAN_PIECE = 1 << 20
"""Bytes of JSON scanned at a time by ``_json_shape`` (its arrays take about 30 times this)."""


def _json_shape(data: bytes) -> tuple[int, int]:
    """The deepest nesting of a JSON text and the number of values in it (keys not counted),
    without parsing it, in a few passes of NumPy over each megabyte (a loop in Python over
    64 MiB takes a minute, a regular expression over 20 million strings as long).

    A quote opens or closes a string unless an odd run of backslashes precedes it; what lies
    outside strings, whitespace left out, is the text's skeleton, in which each string is its
    closing quote. For valid JSON the count is exact: every value but the outermost is an item
    of an array or an object, and a container's items are its commas plus one unless it is
    empty."""
    codes = np.frombuffer(data, np.uint8)
    deepest = depth = 0
    values = 1
    inside = False  # whether the piece starts inside a string
    backslashes = 0  # the run of backslashes that ends the previous piece
    previous = 0  # the last byte of the previous piece's skeleton
    for start in range(0, len(codes), _SCAN_PIECE):
        piece = codes[start : start + _SCAN_PIECE]
        if backslashes or 0x5C in piece:
            index = np.arange(len(piece), dtype=np.int64)
            others = np.where(piece == 0x5C, -backslashes - 1, index)
            last_other = np.maximum.accumulate(others)
            run_before = np.empty(len(piece), np.int64)  # backslashes just before each byte
            run_before[0] = backslashes
            run_before[1:] = index[:-1] - last_other[:-1]
            quotes = (piece == 0x22) & (run_before % 2 == 0)
            backslashes = int(len(piece) - 1 - last_other[-1])
        else:
            quotes = piece == 0x22
        within = np.logical_xor.accumulate(quotes)  # inside a string, closing quotes not
        if inside:
            np.logical_not(within, out=within)
        inside = bool(within[-1])
        skeleton = piece[~within & (piece > 0x20)].tobytes()  # whitespace left out too
        if not skeleton:
            continue
        pair = bytes([previous, skeleton[0]])
        opened = skeleton.count(b"[") + skeleton.count(b"{")
        empty = skeleton.count(b"[]") + skeleton.count(b"{}") + (pair in (b"[]", b"{}"))
        values += skeleton.count(b",") + opened - empty
        brackets = np.frombuffer(skeleton.translate(None, _NOT_BRACKETS), np.int8)
        if len(brackets):  # [ and { have bit 1 set, ] and } do not: a step of +1 or -1
            levels = np.cumsum((brackets & 2) - 1, dtype=np.int32)
            deepest = max(deepest, depth + int(levels.max()))
            depth += int(levels[-1])
        previous = skeleton[-1]
    return deepest, values


def _open_json(path: Path) -> ModelFile:
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise ConvcError(
            f"the file is {size:,} bytes; convc reads a model config of at most "
            f"{MAX_CONFIG_BYTES:,}",
            path=str(path),
        )
    config = parse_config(path.read_bytes(), str(path))
    if isinstance(config, str):  # json.dump(model.to_json(), f) writes the JSON as a string
        config = parse_config(config, str(path))
    return ModelFile(path, "json", _model_config(config, str(path)))


def _open_keras_zip(path: Path) -> ModelFile:
    where = str(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise ConvcError(
            f"not a readable .keras archive (truncated or corrupt?): {error}", path=where
        ) from None
    with archive:
        members = archive.infolist()
        if len(members) > MAX_ZIP_MEMBERS:
            raise ConvcError(
                f"the archive has {len(members):,} members; a .keras file has a few "
                f"(convc reads at most {MAX_ZIP_MEMBERS})",
                path=where,
            )
        by_name: dict[str, zipfile.ZipInfo] = {}
        for member in members:
            name = PurePosixPath(member.filename.replace("\\", "/"))
            if name.is_absolute() or ".." in name.parts or ":" in member.filename:
                raise ConvcError(
                    f"the archive has a member whose path escapes it: {member.filename!r}",
                    path=where,
                    help="a .keras file written by Keras has only relative member names",
                )
            if member.flag_bits & 0x1:
                raise ConvcError(
                    f"the archive's member {member.filename!r} is encrypted; Keras writes none",
                    path=where,
                )
            by_name[member.filename] = member
        if "config.json" not in by_name:
            raise ConvcError(
                "not a Keras 3 .keras archive: it has no config.json",
                path=where,
                help="members found: " + (", ".join(sorted(by_name)[:10]) or "none"),
            )
        if "model.weights.h5" in by_name:
            hdf5.start_reader()  # it starts while the config is parsed and resolved
        config = _model_config(
            parse_config(
                _read_member(archive, by_name["config.json"], MAX_CONFIG_BYTES, where),
                f"{where}:config.json",
            ),
            f"{where}:config.json",
        )
        metadata: dict = {}
        if "metadata.json" in by_name:
            parsed = parse_config(
                _read_member(archive, by_name["metadata.json"], 1 << 20, where),
                f"{where}:metadata.json",
                "metadata.json",
            )
            metadata = parsed if isinstance(parsed, dict) else {}
        if "model.weights.h5" not in by_name:
            raise ConvcError(
                "the .keras archive has no model.weights.h5: Keras writes one in every .keras "
                "file, and refuses to load a file without it",
                path=where,
                help="save the model again; for an architecture alone, build the JSON of "
                "model.to_json() (with --weights, or its initializers' weights)",
            )
        member = by_name["model.weights.h5"]
        weights_source = _stored_window(path, member, where) or (
            "member",
            str(path),
            member.filename,
        )
    version = metadata.get("keras_version")
    return ModelFile(
        path,
        "keras",
        config,
        keras_version=version if isinstance(version, str) else None,
        weights_source=weights_source,
    )


def _read_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo, limit: int, where: str):
    """A member's bytes; refused as soon as more than ``limit`` come out, whatever the archive
    declares (a zip bomb declares small sizes)."""
    if member.file_size > limit:
        raise ConvcError(
            f"{member.filename} is {member.file_size:,} bytes; convc reads at most {limit:,}",
            path=where,
        )
    try:
        with archive.open(member) as stream:
            data = stream.read(limit + 1)
    except (
        zipfile.BadZipFile,
        zlib.error,  # deflate
        lzma.LZMAError,
        OSError,  # bzip2, reading
        EOFError,
        ValueError,
        NotImplementedError,  # a compression method zipfile lacks
    ) as error:
        raise ConvcError(
            f"cannot read {member.filename} from the archive (truncated or corrupt?): {error}",
            path=where,
        ) from None
    if len(data) > limit:
        raise ConvcError(
            f"{member.filename} expands past {limit:,} bytes", path=where, help="a zip bomb?"
        )
    return data


def _stored_window(path: Path, member: zipfile.ZipInfo, where: str) -> tuple | None:
    """A window (for ``open_hdf5``) on an uncompressed member's bytes in the archive, or None
    if it is compressed. The local header's name and extra lengths say where the data starts
    (they may differ from the central directory's). Its CRC-32 is checked, as zipfile checks
    it when Keras reads the member: a weight changed in place is refused, not built."""
    if member.compress_type != zipfile.ZIP_STORED or member.file_size != member.compress_size:
        return None
    with path.open("rb") as handle:
        handle.seek(member.header_offset)
        header = handle.read(30)
        total = handle.seek(0, io.SEEK_END)
    if len(header) != 30 or header[:4] != _ZIP_MAGIC:
        raise ConvcError(f"the archive's header of {member.filename} is corrupt", path=where)
    start = member.header_offset + 30 + int.from_bytes(header[26:28], "little")
    start += int.from_bytes(header[28:30], "little")
    if start + member.file_size > total:
        raise ConvcError(
            f"{member.filename} runs past the end of the archive (truncated?)", path=where
        )
    crc = 0
    with path.open("rb") as handle:
        handle.seek(start)
        for _ in range(0, member.file_size, 1 << 20):
            crc = zlib.crc32(
                handle.read(min(1 << 20, start + member.file_size - handle.tell())), crc
            )
    if crc != member.CRC:
        raise ConvcError(
            f"{member.filename} is corrupt: its CRC-32 is {crc:08x}, the archive says "
            f"{member.CRC:08x}",
            path=where,
            help="Keras refuses to load it too; save the model again",
        )
    return ("window", str(path), start, member.file_size)


def _open_legacy_h5(path: Path) -> ModelFile:
    where = str(path)
    handle = hdf5.open_hdf5(path, where)
    try:
        if "model_config" not in handle.attrs:
            hint = (
                "this looks like a weights file (model.save_weights): give it with --weights, "
                "beside the model's .conv or .json"
                if "layers" in handle or "layer_names" in handle.attrs
                else "save the model with model.save('m.h5') or model.save('m.keras')"
            )
            raise ConvcError("the HDF5 file holds no model config", path=where, help=hint)
        raw = handle.attrs["model_config"]
        if not isinstance(raw, bytes | str):
            raise ConvcError("the model_config attribute is not text", path=where)
        config = parse_config(raw, f"{where}:model_config")
        version = handle.attrs.get("keras_version")
        return ModelFile(
            path,
            "h5",
            _model_config(config, where),
            weights=handle,
            keras_version=version if isinstance(version, str) else None,
        )
    except BaseException:
        handle.close()
        raise


def _model_config(config: Any, where: str) -> dict[str, Any]:
    if (
        not isinstance(config, dict)
        or not isinstance(config.get("class_name"), str)
        or not isinstance(
            generations.model_config(config.get("class_name"), config.get("config")), dict
        )
    ):
        raise ConvcError(
            "the model config is not a serialized Keras model "
            "(expected an object with 'class_name' and 'config')",
            path=where,
        )
    return config
