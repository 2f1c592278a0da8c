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
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from convc import hdf5
from convc.diagnostics import ConvcError
from convc.importer import generations
from convc.limits import weights_file_bytes

MAX_CONFIG_BYTES = 64 << 20
"""A model's config JSON: ResNet152's is under 1 MiB."""

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
    depth = _json_depth(data)
    if depth > MAX_CONFIG_DEPTH:
        raise ConvcError(
            f"{what} nests {depth:,} levels deep; a Keras model's config needs far fewer "
            f"(convc reads at most {MAX_CONFIG_DEPTH})",
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


def _json_depth(data: bytes) -> int:
    """The deepest bracket nesting of a JSON text, strings skipped: a linear scan, no recursion."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x7B, 0x5B):  # { [
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x7D, 0x5D):
            depth -= 1
    return deepest


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
            by_name[member.filename] = member
        if "config.json" not in by_name:
            raise ConvcError(
                "not a Keras 3 .keras archive: it has no config.json",
                path=where,
                help="members found: " + (", ".join(sorted(by_name)[:10]) or "none"),
            )
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
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as error:
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
    (they may differ from the central directory's)."""
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
