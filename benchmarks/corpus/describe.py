"""What a Keras model file is, read from the file itself: its container format, the Keras version
that wrote it and so its generation, and the layer classes of its config.

The corpus scripts use it to label files (``sources.json`` records what it found when each file
was collected; ``run.py`` labels a file that ``sources.json`` does not list). It reads data only:
HDF5 attributes with h5py, a ``.keras`` archive's ``metadata.json`` and ``config.json``, a JSON
file; it never imports Keras.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


@dataclass(frozen=True)
class Description:
    format: str  # "h5", "h5-weights", "keras", "json", "json-string", "h5 named .keras", "unknown"
    keras_version: str | None
    backend: str | None
    generation: str
    classes: tuple[str, ...]  # the layer classes of the config, sorted, without duplicates

    def as_dict(self) -> dict:
        return {**asdict(self), "classes": list(self.classes)}


def generation(keras_version: str | None, container: str) -> str:
    """The Keras generation that a ``keras_version`` string names.

    Keras 2.0-2.3 was the multi-backend package; a version ending in ``-tf`` is the copy inside
    TensorFlow 1.x/2.0-2.3; from 2.4 on, ``keras`` and ``tf.keras`` were one package until 3.0.
    A ``.keras`` archive written before Keras 3 comes from tf.keras 2.13-2.15.
    """
    if not keras_version:
        return "unknown"
    text = keras_version.strip()
    head = text.split("-")[0]
    try:
        major, minor = (int(part) for part in head.split(".")[:2])
    except ValueError:
        return "unknown"
    if major == 1:
        return "Keras 1"
    if major == 2:
        if container == "keras":
            return "tf.keras 2.13-2.15 (.keras)"
        if text.endswith("-tf"):
            return "tf.keras 1.x-2.3"
        return "Keras 2.0-2.3" if minor <= 3 else "tf.keras 2.4+"
    if major >= 3:
        return "Keras 3"
    return "unknown"


def layer_classes(config) -> tuple[str, ...]:
    """Every ``class_name`` of an object that carries a ``config`` (layers, models, and the
    initializers and regularizers they hold), sorted, without duplicates."""
    found: set[str] = set()
    stack = [config]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("class_name"), str) and isinstance(
                item.get("config"), dict | list
            ):
                found.add(item["class_name"])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return tuple(sorted(found))


def _text(value) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def model_config(path: str | Path) -> dict | list | None:
    """The model config a file holds (a JSON text stored as a JSON string decoded once more), or
    None for a weights file or a file that is no model."""
    path = Path(path)
    head = path.read_bytes()[:8]
    if head.startswith(HDF5_SIGNATURE):
        import h5py

        with h5py.File(path, "r") as handle:
            config = handle.attrs.get("model_config")
        return None if config is None else json.loads(_text(config) or "{}")
    if head.startswith(b"PK"):
        with zipfile.ZipFile(path) as archive:
            if "config.json" not in archive.namelist():
                return None
            return json.loads(archive.read("config.json"))
    try:
        config = json.loads(path.read_text())
        if isinstance(config, str):
            config = json.loads(config)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return config if isinstance(config, dict | list) else None


def lambda_layers(config) -> list[str]:
    """The names of the config's ``Lambda`` layers, at any depth, in the order they are found
    (a layer without a name is listed as ``?``)."""
    names: list[str] = []
    stack = [config]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("class_name") == "Lambda":
                inner = item.get("config")
                name = inner.get("name") if isinstance(inner, dict) else None
                names.append(name if isinstance(name, str) else "?")
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, list):
            stack.extend(reversed(item))
    return names


def first_layer(config) -> str | None:
    """The name of a Sequential model's first layer after its input (Keras 1 and 2 keep the
    layers as the config's list, Keras 2.2+ and 3 under ``layers``), or None for any other
    model."""
    if not isinstance(config, dict) or config.get("class_name") != "Sequential":
        return None
    inner = config.get("config")
    layers = inner.get("layers") if isinstance(inner, dict) else inner
    for layer in layers if isinstance(layers, list) else []:
        if isinstance(layer, dict) and layer.get("class_name") != "InputLayer":
            name = (layer.get("config") or {}).get("name")
            return name if isinstance(name, str) else None
    return None


def describe(path: str | Path) -> Description:
    path = Path(path)
    head = path.read_bytes()[:8] if path.stat().st_size >= 8 else path.read_bytes()
    if head.startswith(HDF5_SIGNATURE):
        import h5py

        with h5py.File(path, "r") as handle:
            version = _text(handle.attrs.get("keras_version"))
            backend = _text(handle.attrs.get("backend"))
            config = handle.attrs.get("model_config")
            if config is None:
                return Description("h5-weights", version, backend, generation(version, "h5"), ())
            classes = layer_classes(json.loads(_text(config) or "{}"))
        container = "h5 named .keras" if path.suffix == ".keras" else "h5"
        return Description(container, version, backend, generation(version, "h5"), classes)
    if head.startswith(b"PK"):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            meta = json.loads(archive.read("metadata.json")) if "metadata.json" in names else {}
            config = json.loads(archive.read("config.json")) if "config.json" in names else {}
        version = meta.get("keras_version")
        return Description(
            "keras", version, None, generation(version, "keras"), layer_classes(config)
        )
    try:
        config = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError):
        return Description("unknown", None, None, "unknown", ())
    form = "json"
    if isinstance(config, str):  # json.dump(model.to_json()): the JSON text stored as a string
        form = "json-string"
        config = json.loads(config)
    if not isinstance(config, dict):
        return Description("unknown", None, None, "unknown", ())
    version = config.get("keras_version")
    label = generation(version, "json")
    if version is None and "module" in config:
        label = "Keras 3"  # Keras 3's to_json() records no version; its "module" keys say so
    return Description(form, version, config.get("backend"), label, layer_classes(config))
