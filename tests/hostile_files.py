"""The hostile-file corpus: scripts that write Keras model files crafted as an attacker would
craft them, one function per attack, for ``tests/test_hostile_files.py`` (#23).

Every file is made here from a small model written in the formats Keras writes (a Keras 3
``.keras`` archive, a tf.keras full-model ``.h5``, ``model.to_json()`` JSON with a Keras 3
``.weights.h5``), without importing Keras, so the corpus is quick to write and the same on every
machine. ``CASES`` lists the attacks by the classes of issue #23:

* ``outside``: reading other files (HDF5 external storage, to a file, a FIFO or
  ``/proc/self/environ``; external links; soft links; virtual datasets);
* ``injection``: a string field of the file crafted to change the model written as text;
* ``time``: unbounded time (models nested in models, each calling the next 4 times; two shared
  layers whose calls alternate; a hard-link cycle in the weights; 100,000 layers);
* ``memory``: unbounded memory (a zip bomb of ``model.weights.h5``; a small file declaring a
  1 GiB dataset it never wrote, or chunks it never wrote; a config of 60 MiB of ``[]``;
  activations of 49 GB);
* ``libhdf5``: a file that crashes libhdf5 (``tests/fixtures/libhdf5-sigsegv.h5``) and one that
  sends it into a loop;
* ``smaller``: the issue's smaller findings (names Keras accepts that broke the import, an ESC
  sequence in a name, a missing weights member, an output folder that does not exist);
* ``malformed``: what the mutation fuzz (``tests/fuzz_files.py``) found, each as the smallest
  file that shows it (an encrypted member, compressed data that is not, a weight changed in a
  stored member without its CRC).

A case says the command to run and what must happen: a refusal whose message contains a
fragment, or the model of the unedited file (same outputs). ``run_convc`` runs a command as a
user would and measures it. ``python tests/hostile_files.py FOLDER`` writes the whole corpus
into a folder.
"""

from __future__ import annotations

import copy
import io
import json
import math
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import h5py
import numpy as np

FIXTURES = Path(__file__).parent / "fixtures"

SHAPE = (6, 6, 2)
"""The baseline model's input: image (6, 6, 2) -> Conv2D conv (4, 3x3) -> BatchNormalization bn
-> Dense dense (3)."""


# --- the baseline model, in Keras's formats --------------------------------------------------


def _initializer(name: str, config: dict | None = None) -> dict:
    return {
        "module": "keras.initializers",
        "class_name": name,
        "config": config if config is not None else {},
        "registered_name": None,
    }


_POLICY = {
    "module": "keras",
    "class_name": "DTypePolicy",
    "config": {"name": "float32"},
    "registered_name": None,
}


def _tensor(layer: str, shape: list, node: int = 0) -> dict:
    """A Keras 3 node argument: the output of application ``node`` of ``layer``."""
    return {
        "class_name": "__keras_tensor__",
        "config": {"shape": shape, "dtype": "float32", "keras_history": [layer, node, 0]},
    }


def _layer(class_name: str, config: dict, inbound: list[dict], input_shape: list | None) -> dict:
    layer = {
        "module": "keras.layers",
        "class_name": class_name,
        "config": config,
        "registered_name": None,
        "name": config["name"],
        "inbound_nodes": [{"args": inbound, "kwargs": {}}] if inbound else [],
    }
    if input_shape is not None:
        layer["build_config"] = {"input_shape": input_shape}
    return layer


def keras3_config(name: str = "net") -> dict:
    """The baseline's config.json, as Keras 3.15 writes it."""
    glorot = _initializer("GlorotUniform", {"seed": None})
    conv = {
        "name": "conv",
        "trainable": True,
        "dtype": _POLICY,
        "filters": 4,
        "kernel_size": [3, 3],
        "strides": [1, 1],
        "padding": "valid",
        "data_format": "channels_last",
        "dilation_rate": [1, 1],
        "groups": 1,
        "activation": "relu",
        "use_bias": True,
        "kernel_initializer": glorot,
        "bias_initializer": _initializer("Zeros"),
        "kernel_regularizer": None,
        "bias_regularizer": None,
        "activity_regularizer": None,
        "kernel_constraint": None,
        "bias_constraint": None,
    }
    bn = {
        "name": "bn",
        "trainable": True,
        "dtype": _POLICY,
        "axis": -1,
        "momentum": 0.99,
        "epsilon": 0.001,
        "center": True,
        "scale": True,
        "beta_initializer": _initializer("Zeros"),
        "gamma_initializer": _initializer("Ones"),
        "moving_mean_initializer": _initializer("Zeros"),
        "moving_variance_initializer": _initializer("Ones"),
        "beta_regularizer": None,
        "gamma_regularizer": None,
        "beta_constraint": None,
        "gamma_constraint": None,
        "synchronized": False,
    }
    dense = {
        "name": "dense",
        "trainable": True,
        "dtype": _POLICY,
        "units": 3,
        "activation": "linear",
        "use_bias": True,
        "kernel_initializer": glorot,
        "bias_initializer": _initializer("Zeros"),
        "kernel_regularizer": None,
        "bias_regularizer": None,
        "kernel_constraint": None,
        "bias_constraint": None,
    }
    image = {
        "module": "keras.layers",
        "class_name": "InputLayer",
        "config": {
            "batch_shape": [None, *SHAPE],
            "dtype": "float32",
            "sparse": False,
            "ragged": False,
            "name": "image",
            "optional": False,
        },
        "registered_name": None,
        "name": "image",
        "inbound_nodes": [],
    }
    config = {
        "module": "keras.src.models.functional",
        "class_name": "Functional",
        "config": {
            "name": name,
            "trainable": True,
            "layers": [
                image,
                _layer("Conv2D", conv, [_tensor("image", [None, *SHAPE])], [None, *SHAPE]),
                _layer(
                    "BatchNormalization", bn, [_tensor("conv", [None, 4, 4, 4])], [None, 4, 4, 4]
                ),
                _layer("Dense", dense, [_tensor("bn", [None, 4, 4, 4])], [None, 4, 4, 4]),
            ],
            "input_layers": ["image", 0, 0],
            "output_layers": ["dense", 0, 0],
        },
        "registered_name": "Functional",
        "build_config": {"input_shape": None},
        "compile_config": {},
    }
    return copy.deepcopy(config)  # no two places share a dict: an edit changes one


def baseline_weights() -> dict[str, list[np.ndarray]]:
    """The baseline's weights by layer name, in Keras's order; biases and statistics nonzero so
    that every variable matters."""
    rng = np.random.default_rng(23)

    def draw(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype("<f4")

    return {
        "conv": [draw(3, 3, 2, 4), draw(4)],
        "bn": [1 + 0.1 * draw(4), draw(4), draw(4), 1 + np.abs(draw(4))],
        "dense": [draw(4, 3), draw(3)],
    }


_KERAS3_KEYS = {
    "image": "input_layer",
    "conv": "conv2d",
    "bn": "batch_normalization",
    "dense": "dense",
}


def keras3_weights(handle: h5py.File | h5py.Group, model_name: str = "net") -> None:
    """The baseline's model.weights.h5 (or .weights.h5), as Keras 3 writes it."""
    weights = baseline_weights()
    for name, key in _KERAS3_KEYS.items():
        group = handle.create_group(f"layers/{key}/vars")
        group.attrs["name"] = name
        for index, array in enumerate(weights.get(name, [])):
            group.create_dataset(str(index), data=array)
    handle.create_group("vars").attrs["name"] = model_name


def keras3_weights_bytes(edit: Callable[[h5py.File], Any] | None = None) -> bytes:
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as handle:
        keras3_weights(handle)
        if edit is not None:
            edit(handle)
    return buffer.getvalue()


def metadata(keras_version: str = "3.15.1") -> bytes:
    return json.dumps(
        {"keras_version": keras_version, "date_saved": "2026-01-01@00:00:00"}
    ).encode()


def write_keras(
    path: Path,
    config: dict | bytes | None = None,
    weights: bytes | None = None,
    meta: bytes | None = None,
    compression: int = zipfile.ZIP_STORED,
) -> Path:
    """A .keras archive of the three members Keras writes; ``config`` as JSON or raw bytes."""
    members = {
        "metadata.json": meta if meta is not None else metadata(),
        "config.json": config
        if isinstance(config, bytes)
        else json.dumps(config if config is not None else keras3_config()).encode(),
        "model.weights.h5": weights if weights is not None else keras3_weights_bytes(),
    }
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            info.compress_type = compression
            archive.writestr(info, data)
    return path


def keras2_config() -> dict:
    """The baseline's model_config, as tf.keras 2.15 writes it in a full-model .h5."""
    config = keras3_config()
    layers = []
    previous = None
    for layer in config["config"]["layers"]:
        layer_config = dict(layer["config"])
        if layer_config.get("dtype") == _POLICY:
            layer_config["dtype"] = "float32"
        for key, value in list(layer_config.items()):
            if isinstance(value, dict) and value.get("module") == "keras.initializers":
                layer_config[key] = {"class_name": value["class_name"], "config": value["config"]}
        if layer["class_name"] == "InputLayer":
            layer_config = {
                "batch_input_shape": layer_config["batch_shape"],
                "dtype": "float32",
                "sparse": False,
                "ragged": False,
                "name": layer_config["name"],
            }
        layers.append(
            {
                "class_name": layer["class_name"],
                "config": layer_config,
                "name": layer["name"],
                "inbound_nodes": [] if previous is None else [[[previous, 0, 0, {}]]],
            }
        )
        previous = layer["name"]
    return {
        "class_name": "Functional",
        "config": {
            "name": "net",
            "layers": layers,
            "input_layers": [["image", 0, 0]],
            "output_layers": [["dense", 0, 0]],
        },
        "keras_version": "2.15.0",
        "backend": "tensorflow",
    }


def write_keras2_h5(
    path: Path,
    config: dict | None = None,
    edit: Callable[[h5py.File], Any] | None = None,
) -> Path:
    """A tf.keras full-model .h5: ``model_config`` and ``model_weights`` as tf.keras writes
    them; ``edit`` may change the open file before it is closed."""
    weights = baseline_weights()
    variables = {
        "conv": ["kernel", "bias"],
        "bn": ["gamma", "beta", "moving_mean", "moving_variance"],
        "dense": ["kernel", "bias"],
    }
    with h5py.File(path, "w") as handle:
        handle.attrs["keras_version"] = "2.15.0"
        handle.attrs["backend"] = "tensorflow"
        handle.attrs["model_config"] = json.dumps(config if config is not None else keras2_config())
        group = handle.create_group("model_weights")
        names = ["image", "conv", "bn", "dense"]
        group.attrs["layer_names"] = [name.encode() for name in names]
        for name in names:
            layer = group.create_group(name)
            keys = [f"{name}/{variable}:0" for variable in variables.get(name, [])]
            layer.attrs["weight_names"] = [key.encode() for key in keys]
            for key, array in zip(keys, weights.get(name, []), strict=True):
                layer.create_dataset(key, data=array)
        if edit is not None:
            edit(handle)
    return path


def write_json(path: Path, config: dict | None = None) -> Path:
    path.write_text(json.dumps(config if config is not None else keras3_config()))
    return path


def write_weights_h5(path: Path, edit: Callable[[h5py.File], Any] | None = None) -> Path:
    path.write_bytes(keras3_weights_bytes(edit))
    return path


# --- reading other files ---------------------------------------------------------------------

_KERNEL = "layers/conv2d/vars/0"
_LEGACY_KERNEL = "model_weights/conv/conv/kernel:0"


def _external(name: str, target: str) -> Callable[[h5py.File], None]:
    """Replace dataset ``name`` by one whose raw data is stored in the file ``target``."""

    def edit(handle: h5py.File) -> None:
        dataset = handle[name]
        shape, dtype = dataset.shape, dataset.dtype
        del handle[name]
        size = int(np.prod(shape)) * dtype.itemsize
        handle.create_dataset(name, shape, dtype, external=[(target, 0, size)])

    return edit


def external_storage_relative(folder: Path) -> Path:
    """A tf.keras .h5 whose kernel's data is ``secret.bin`` in the working directory (the test
    runs convc in ``folder``)."""
    (folder / "secret.bin").write_bytes(np.arange(1000, 1000 + 72, dtype="<f4").tobytes())
    return write_keras2_h5(folder / "m.h5", edit=_external(_LEGACY_KERNEL, "secret.bin"))


def external_storage_fifo(folder: Path) -> Path:
    """A .keras whose weights' kernel is stored in a FIFO that nothing writes: reading it would
    block forever."""
    os.mkfifo(folder / "pipe")
    return write_keras(
        folder / "m.keras", weights=keras3_weights_bytes(_external(_KERNEL, str(folder / "pipe")))
    )


def external_storage_environ(folder: Path) -> Path:
    """A .weights.h5 (given with --weights) whose kernel is the process's own environment."""
    write_weights_h5(folder / "m.weights.h5", _external(_KERNEL, "/proc/self/environ"))
    return write_json(folder / "m.json")


def external_link(folder: Path) -> Path:
    with h5py.File(folder / "other.h5", "w") as other:
        other.create_dataset("kernel", data=np.ones((3, 3, 2, 4), "<f4"))

    def edit(handle: h5py.File) -> None:
        del handle[_LEGACY_KERNEL]
        handle[_LEGACY_KERNEL] = h5py.ExternalLink(str(folder / "other.h5"), "/kernel")

    return write_keras2_h5(folder / "m.h5", edit=edit)


def soft_link(folder: Path) -> Path:
    def edit(handle: h5py.File) -> None:
        handle.move(_KERNEL, "layers/conv2d/kernel")
        handle[_KERNEL] = h5py.SoftLink("/layers/conv2d/kernel")

    return write_keras(folder / "m.keras", weights=keras3_weights_bytes(edit))


def virtual_dataset(folder: Path) -> Path:
    with h5py.File(folder / "source.h5", "w") as other:
        other.create_dataset("kernel", data=np.ones((3, 3, 2, 4), "<f4"))

    def edit(handle: h5py.File) -> None:
        del handle[_KERNEL]
        layout = h5py.VirtualLayout(shape=(3, 3, 2, 4), dtype="<f4")
        layout[...] = h5py.VirtualSource(str(folder / "source.h5"), "kernel", shape=(3, 3, 2, 4))
        handle.create_virtual_dataset(_KERNEL, layout)

    write_weights_h5(folder / "m.weights.h5", edit)
    return write_json(folder / "m.json")


# --- injection through the file's strings ----------------------------------------------------

PAYLOAD = 'x", activation="relu")\nDense(7)(\'# \\\x00(é'
"""Quotes of both kinds that try to close a literal and add an argument, a newline and a
statement, a comment, a backslash, a NUL, an open parenthesis and a non-ASCII letter."""


def _rename_layer(config: dict, old: str, new: str) -> None:
    """Rename layer ``old`` everywhere a Keras 3 config names it."""

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("name") == old:
                node["name"] = new
            for key, value in node.items():
                if key == "keras_history" and isinstance(value, list) and value[:1] == [old]:
                    value[0] = new
                else:
                    walk(value)
        elif isinstance(node, list):
            if node[:1] == [old] and len(node) in (3, 4):  # a tensor: Keras 3's, or Keras 2's
                node[0] = new
            for item in node:
                walk(item)

    walk(config)


# --- unbounded time --------------------------------------------------------------------------


def nested_calls(folder: Path, depth: int = 16, calls: int = 4) -> Path:
    """Models nested ``depth`` deep, each calling the next ``calls`` times in a chain (a 14 KB
    JSON whose flattened graph has calls**depth applications)."""
    inner: dict = {
        "module": "keras.layers",
        "class_name": "ReLU",
        "config": {"name": "relu", "trainable": True, "dtype": "float32"},
        "registered_name": None,
    }
    input_ = _tensor("input", [None, 4])
    for level in range(depth):
        name = f"m{level}"
        child = copy.deepcopy(inner)
        child_name = child["config"]["name"]
        child["name"] = child_name
        child["inbound_nodes"] = [
            {"args": [_tensor(child_name, [None, 4], call - 1) if call else input_], "kwargs": {}}
            for call in range(calls)
        ]
        inner = {
            "module": "keras.src.models.functional",
            "class_name": "Functional",
            "config": {
                "name": name,
                "trainable": True,
                "layers": [
                    {
                        "module": "keras.layers",
                        "class_name": "InputLayer",
                        "config": {"batch_shape": [None, 4], "dtype": "float32", "name": "input"},
                        "name": "input",
                        "inbound_nodes": [],
                    },
                    child,
                ],
                "input_layers": [["input", 0, 0]],
                "output_layers": [[child_name, calls - 1, 0]],
            },
            "registered_name": "Functional",
        }
    return write_json(folder / "m.json", inner)


def alternating_shared(folder: Path, nodes: int = 4000) -> Path:
    """Two Dense layers a and b whose calls alternate, a(b(a(b(...)))): ``nodes`` applications."""
    layers: list[dict] = [
        {
            "module": "keras.layers",
            "class_name": "InputLayer",
            "config": {"batch_shape": [None, 4], "dtype": "float32", "name": "x"},
            "name": "x",
            "inbound_nodes": [],
        }
    ]
    inbound: dict[str, list] = {"a": [], "b": []}
    previous = ["x", 0, 0]
    for index in range(nodes):
        name = "ab"[index % 2]
        tensor = _tensor(previous[0], [None, 4], previous[1])
        inbound[name].append({"args": [tensor], "kwargs": {}})
        previous = [name, len(inbound[name]) - 1, 0]
    for name in "ab":
        layers.append(
            {
                "module": "keras.layers",
                "class_name": "Dense",
                "config": {"name": name, "trainable": True, "dtype": "float32", "units": 4},
                "name": name,
                "inbound_nodes": inbound[name],
            }
        )
    config = {
        "module": "keras.src.models.functional",
        "class_name": "Functional",
        "config": {
            "name": "alternating",
            "layers": layers,
            "input_layers": [["x", 0, 0]],
            "output_layers": [previous],
        },
    }
    return write_json(folder / "m.json", config)


def hard_link_cycle(folder: Path) -> Path:
    def edit(handle: h5py.File) -> None:
        handle["layers/conv2d/vars/again"] = handle["layers/conv2d"]

    return write_keras(folder / "m.keras", weights=keras3_weights_bytes(edit))


def long_sequential(folder: Path, layers: int = 100_000, padding: int = 0) -> Path:
    """A Keras 3 Sequential of 100,000 ReLU layers: a legitimate, large model. With
    ``padding``, each layer's ``max_value`` is a list of that many zeros: a crafted file whose
    arguments make the imported text hold as many values as convc writes for 100,000 layers
    (8 zeros), or more (30), so that writing it and its syntax costs all that the limits allow
    (``limits.imported_syntax_values``; the 300 KB file of 30 zeros took 1.4 GB and 18 s before
    the writer stopped at them)."""
    padded = {"max_value": [0] * padding} if padding else {}
    config = {
        "module": "keras",
        "class_name": "Sequential",
        "config": {
            "name": "long",
            "trainable": True,
            "layers": [
                {
                    "module": "keras.layers",
                    "class_name": "InputLayer",
                    "config": {"batch_shape": [None, 4], "dtype": "float32", "name": "x"},
                    "registered_name": None,
                }
            ]
            + [
                {
                    "module": "keras.layers",
                    "class_name": "ReLU",
                    "config": {
                        "name": f"relu_{i}",
                        "trainable": True,
                        "dtype": _POLICY,
                        **padded,
                    },
                    "registered_name": None,
                    "build_config": {"input_shape": [None, 4]},
                }
                for i in range(layers)
            ],
        },
        "registered_name": None,
    }
    return write_keras(
        folder / "m.keras", config, keras3_weights_bytes(), compression=zipfile.ZIP_DEFLATED
    )


# --- unbounded memory ------------------------------------------------------------------------


def weights_zip_bomb(folder: Path) -> Path:
    """A 4 MB .keras whose deflated model.weights.h5 inflates to almost 4 GiB: the baseline's
    weights file, then zeros. The deflate stream is made of one compressed block of 64 MiB of
    zeros repeated (a full flush makes each block independent), so writing it is quick."""
    weights = keras3_weights_bytes()
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = compressor.compress(weights) + compressor.flush(zlib.Z_FULL_FLUSH)
    zeros = bytes(64 << 20)
    block = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    blocks = 63
    stream = head + block * blocks + compressor.flush()
    crc = zlib.crc32(weights)
    for _ in range(blocks):
        crc = zlib.crc32(zeros, crc)
    size = len(weights) + blocks * len(zeros)
    members = [
        _RawMember("metadata.json", metadata()),
        _RawMember("config.json", json.dumps(keras3_config()).encode()),
        _RawMember("model.weights.h5", stream, method=zipfile.ZIP_DEFLATED, crc=crc, size=size),
    ]
    return _write_raw_zip(folder / "m.keras", members)


@dataclass
class _RawMember:
    """A zip member whose bytes are given as stored in the archive (compressed or not)."""

    name: str
    data: bytes
    method: int = zipfile.ZIP_STORED
    crc: int | None = None
    size: int | None = None
    flags: int = 0


def _write_raw_zip(path: Path, members: list[_RawMember]) -> Path:
    """A zip archive written by hand (no zip64: every size below 4 GiB), so that a member can
    be given already compressed."""
    out = bytearray()
    central = bytearray()
    for member in members:
        name = member.name.encode()
        crc = member.crc if member.crc is not None else zlib.crc32(member.data)
        size = member.size if member.size is not None else len(member.data)
        fields = struct.pack(
            "<HHHHHIIIH",
            20,
            member.flags,
            member.method,
            0,
            0x5C21,
            crc,
            len(member.data),
            size,
            len(name),
        )
        central += b"PK\x01\x02" + struct.pack("<H", 20) + fields
        central += struct.pack("<HHHHII", 0, 0, 0, 0, 0, len(out)) + name
        out += b"PK\x03\x04" + fields + struct.pack("<H", 0) + name + member.data
    end = struct.pack(
        "<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central), len(out), 0
    )
    path.write_bytes(bytes(out + central + end))
    return path


def unwritten_gigabyte(folder: Path) -> Path:
    """An 11 KB tf.keras .h5 whose Dense kernel is declared (1024, 262144) float32, 1 GiB, and
    never written; the config asks for exactly that kernel."""
    config = keras2_config()
    layers = config["config"]["layers"]
    layers[0]["config"]["batch_input_shape"] = [None, 1024]
    config["config"]["layers"] = [layers[0], layers[3]]
    dense = layers[3]
    dense["config"]["units"] = 262144
    dense["inbound_nodes"] = [[["image", 0, 0, {}]]]
    with h5py.File(folder / "m.h5", "w") as handle:
        handle.attrs["keras_version"] = "2.15.0"
        handle.attrs["backend"] = "tensorflow"
        handle.attrs["model_config"] = json.dumps(config)
        group = handle.create_group("model_weights")
        group.attrs["layer_names"] = [b"image", b"dense"]
        group.create_group("image").attrs["weight_names"] = []
        layer = group.create_group("dense")
        layer.attrs["weight_names"] = [b"dense/kernel:0", b"dense/bias:0"]
        layer.create_dataset("dense/kernel:0", (1024, 262144), "<f4")
        layer.create_dataset("dense/bias:0", (262144,), "<f4")
    return folder / "m.h5"


def encrypted_member(folder: Path) -> Path:
    """A .keras whose config.json says it is encrypted (flag bit 0): Python's zipfile raised a
    RuntimeError, and convc exited 3 (found by the fuzz)."""
    members = [
        _RawMember("metadata.json", metadata()),
        _RawMember("config.json", json.dumps(keras3_config()).encode(), flags=0x1),
        _RawMember("model.weights.h5", keras3_weights_bytes()),
    ]
    return _write_raw_zip(folder / "m.keras", members)


def _wrong_method(method: int) -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        """A .keras whose config.json is stored but declared compressed with ``method``: zlib
        raised zlib.error (8, deflate) and lzma LZMAError (14), and convc exited 3 (found by
        the fuzz, as a method patched in a central header)."""
        members = [
            _RawMember("metadata.json", metadata()),
            _RawMember("config.json", json.dumps(keras3_config()).encode(), method=method),
            _RawMember("model.weights.h5", keras3_weights_bytes()),
        ]
        return _write_raw_zip(folder / "m.keras", members)

    return write


def weights_changed_in_place(folder: Path) -> Path:
    """A .keras whose stored model.weights.h5 has a bit of the conv kernel flipped and its
    CRC-32 left as it was: Keras refuses it (zipfile checks the CRC); convc read the member in
    place and built the changed weight (found by the fuzz)."""
    weights = keras3_weights_bytes()
    with h5py.File(io.BytesIO(weights), "r") as handle:
        offset = handle[_KERNEL].id.get_offset()
    path = write_keras(folder / "m.keras", weights=weights)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("model.weights.h5")
    name, extra = struct.unpack_from("<HH", data, info.header_offset + 26)
    data[info.header_offset + 30 + name + extra + offset + 3] ^= 0x40
    path.write_bytes(bytes(data))
    return path


def libhdf5_loop(folder: Path) -> Path:
    """A .keras whose weights file has the size of the global heap object that holds a vars
    group's name (the string "conv", 4 bytes) made 260: libhdf5 loops, in C, when the attribute
    is read (found by the fuzz, as one bit flipped in a seed's weights)."""
    weights = bytearray(keras3_weights_bytes())
    place = weights.index(b"\x04\x00\x00\x00\x00\x00\x00\x00conv")
    weights[place + 1] = 0x01
    return write_keras(folder / "m.keras", weights=bytes(weights))


def libhdf5_crash(folder: Path) -> Path:
    """tests/fixtures/libhdf5-sigsegv.h5: the fuzz's tf_keras_functional.h5 seed with one bit
    flipped (bit 1 of byte 16337, in the datatype of a layer group's ``weight_names``
    attribute), which crashes libhdf5 with SIGSEGV when the attribute is read."""
    path = folder / "m.h5"
    path.write_bytes((FIXTURES / "libhdf5-sigsegv.h5").read_bytes())
    return path


def partly_written(folder: Path) -> Path:
    """A tf.keras .h5 whose conv kernel is stored in 3 chunks, of which one was written."""

    def edit(handle: h5py.File) -> None:
        kernel = handle[_LEGACY_KERNEL][()]
        del handle[_LEGACY_KERNEL]
        handle.create_dataset(_LEGACY_KERNEL, kernel.shape, kernel.dtype, chunks=(1, 3, 2, 4))
        handle[_LEGACY_KERNEL][0] = kernel[0]

    return write_keras2_h5(folder / "m.h5", edit=edit)


def empty_lists_config(folder: Path) -> Path:
    """A 63 KB .keras whose config.json is 60 MiB of ``[]`` inside a model config."""
    count = (60 << 20) // 3
    config = (
        b'{"class_name": "Functional", "config": {"name": "net", "layers": ['
        + b"[]," * count
        + b"[]]}}"
    )
    return write_keras(folder / "m.keras", config, compression=zipfile.ZIP_DEFLATED)


def huge_activations(folder: Path) -> Path:
    """A 200-byte JSON whose activations total 49 GB: UpSampling2D of a large image."""
    config = {
        "class_name": "Sequential",
        "config": {
            "name": "s",
            "layers": [
                {
                    "class_name": "InputLayer",
                    "config": {"batch_shape": [None, 4096, 4096, 3], "name": "x"},
                },
                {"class_name": "UpSampling2D", "config": {"name": "up", "size": [32, 32]}},
            ],
        },
    }
    return write_json(folder / "m.json", config)


# --- the smaller findings --------------------------------------------------------------------


def no_weights_member(folder: Path) -> Path:
    path = folder / "m.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", metadata())
        archive.writestr("config.json", json.dumps(keras3_config()))
    return path


# --- running convc as a user would ---------------------------------------------------------

TIME_LIMIT = 10.0
"""Seconds a command may take on a hostile file, from its start to its end."""

MEMORY_LIMIT = 1536 << 20
"""The peak resident memory a command may reach on a hostile file (convc and the processes it
waited for, the HDF5 reader among them)."""

SAFETY_ADDRESS_SPACE = 8 << 30
"""The address space each run is allowed (RLIMIT_AS), so that a case that regresses cannot take
the machine's memory; the bound asserted is MEMORY_LIMIT, on the resident size."""

ROOT = Path(__file__).parent.parent


class Ran:
    def __init__(
        self, code: int | None, out: str, err: str, seconds: float, memory: int, cpu: float = 0.0
    ):
        self.code, self.out, self.err, self.seconds, self.memory = code, out, err, seconds, memory
        self.cpu = cpu
        """CPU seconds, user and system, of convc and the processes it waited for."""


def run_convc(argv: list[str], cwd: Path, limit: float = TIME_LIMIT) -> Ran:
    """``python -m convc ARGV`` in ``cwd``, killed past 1.5 times ``limit`` seconds. Its peak
    resident size is what ``wait4`` reports, which covers the processes it waited for: the HDF5
    reader's fork server, which waits for each reader."""
    return run_python(["-m", "convc", *argv], cwd, limit)


_MEASURE = """
import json, os, resource, subprocess, sys
report, limit, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def cap():
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
process = subprocess.Popen([sys.executable, *argv], preexec_fn=cap)
_, status, usage = os.wait4(process.pid, 0)
with open(report, "w") as out:
    json.dump({
        "code": os.waitstatus_to_exitcode(status),
        "memory": usage.ru_maxrss * 1024,
        "cpu": usage.ru_utime + usage.ru_stime,
    }, out)
"""
"""Runs ``python ARGV`` and reports its exit status and peak resident size. A process's peak
counts what it shared with its parent when it was forked, so convc is started by this small
process, not by the test's (which holds Keras and more)."""


def run_python(argv: list[str], cwd: Path, limit: float = TIME_LIMIT) -> Ran:
    """``python ARGV`` in ``cwd`` (see ``run_convc``)."""
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report.json"
        out, err = Path(scratch) / "out", Path(scratch) / "err"
        start = time.monotonic()
        with out.open("wb") as stdout, err.open("wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-c", _MEASURE, str(report), str(SAFETY_ADDRESS_SPACE), *argv],
                cwd=cwd,
                stdout=stdout,
                stderr=stderr,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                start_new_session=True,
            )
            try:
                process.wait(timeout=1.5 * limit)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        seconds = time.monotonic() - start
        # killed before it reported: no exit status, and no CPU time under any limit
        killed = {"code": None, "memory": 0, "cpu": math.inf}
        measured = json.loads(report.read_text()) if report.exists() else killed
        return Ran(
            measured["code"],
            out.read_bytes().decode(errors="replace"),
            err.read_bytes().decode(errors="replace"),
            seconds,
            measured["memory"],
            measured["cpu"],
        )


# --- the table -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One hostile file and what convc must do with it."""

    name: str
    kind: str
    """The issue's class: outside, injection, time, memory, libhdf5 or smaller."""
    write: Callable[[Path], Path]
    """Writes the file (and anything beside it) into a folder; returns the model file."""
    refusal: str | None
    """A fragment of the refusal's message, or ``None``: the file builds the baseline model
    (the same outputs as the unedited file)."""
    command: str = "build"
    weights: str | None = None
    """A file beside the model, given with --weights; the refusal names it."""
    cpu_limit: float | None = None
    """A limit on CPU time, in seconds, instead of ``TIME_LIMIT`` on wall time: for a file whose
    work is large (a model of 100,000 layers), whose wall time beside a parallel test suite is
    the machine's load as much as convc's (it is still killed past 1.5 times this limit of wall
    time)."""
    memory_limit: int = MEMORY_LIMIT
    """The peak resident memory it may reach: lower than ``MEMORY_LIMIT`` for a case whose
    memory a fix bounded more tightly."""
    extra: tuple[str, ...] = ()
    """More arguments, ``{folder}`` standing for the case's folder."""
    located: str | None = None
    """The file the refusal names, in the case's folder, when it is not the model file."""


def _keras_with(
    edit: Callable[[dict], Any] | None = None,
    weights_edit: Callable[[h5py.File], Any] | None = None,
    meta: bytes | None = None,
) -> Callable[[Path], Path]:
    """A writer of the baseline .keras with its config, weights or metadata edited."""

    def write(folder: Path) -> Path:
        config = keras3_config()
        if edit is not None:
            edit(config)
        weights = keras3_weights_bytes(weights_edit) if weights_edit else None
        return write_keras(folder / "m.keras", config, weights, meta)

    return write


def _legacy_with(
    edit: Callable[[dict], Any] | None = None, h5_edit: Callable[[h5py.File], Any] | None = None
) -> Callable[[Path], Path]:
    """A writer of the baseline tf.keras .h5 with its model_config or its HDF5 edited."""

    def write(folder: Path) -> Path:
        config = keras2_config()
        if edit is not None:
            edit(config)
        return write_keras2_h5(folder / "m.h5", config, h5_edit)

    return write


def _layer_config(config: dict, name: str) -> dict:
    for layer in config["config"]["layers"]:
        if layer["name"] == name:
            return layer
    raise KeyError(name)


def _update(layer: str, *path: str, **values: Any) -> Callable[[dict], None]:
    """An edit that updates the dict at ``path`` in layer ``layer``'s entry with ``values``."""

    def edit(config: dict) -> None:
        holder: Any = _layer_config(config, layer)
        for key in path:
            holder = holder[key]
        holder.update(values)

    return edit


def _rename(old: str) -> Callable[[dict], None]:
    return lambda config: _rename_layer(config, old, old + PAYLOAD)


def _model_name(config: dict) -> None:
    config["config"]["name"] = PAYLOAD


def _output_key(config: dict) -> None:
    config["config"]["output_layers"] = {"out" + PAYLOAD: ["dense", 0, 0]}


H5_PAYLOAD = PAYLOAD.replace("\x00", "")
"""The payload as an HDF5 attribute can hold it (h5py writes no NUL in a variable-length string,
and so Keras cannot write one there)."""


def _vars_name(handle: h5py.File) -> None:
    handle["layers/conv2d/vars"].attrs["name"] = "conv" + H5_PAYLOAD


def _legacy_rename(handle: h5py.File) -> None:
    """The legacy .h5's layer group and weight names of conv renamed as its config's are."""
    old, new = "conv", "conv" + H5_PAYLOAD
    group = handle["model_weights"]
    group.move(old, new)
    text = [n.decode() if isinstance(n, bytes) else n for n in group.attrs["layer_names"]]
    group.attrs["layer_names"] = [(new if n == old else n).encode() for n in text]
    layer = group[new]
    names = [n.decode() if isinstance(n, bytes) else n for n in layer.attrs["weight_names"]]
    layer.move(old, new)
    layer.attrs["weight_names"] = [n.replace(old, new, 1).encode() for n in names]


def _escape_sequence_name(config: dict) -> None:
    _rename_layer(config, "bn", "bn\x1b[2J\x1b]0;owned\x07")


def _legit_names(config: dict) -> None:
    """Names Keras accepts that broke the import: a hyphen, a non-ASCII letter, a NUL (which
    cut the .npz's keys), 70,000 characters (more than a zip member's name holds)."""
    config["config"]["name"] = "my-model"
    _rename_layer(config, "conv", "café")
    _rename_layer(config, "bn", "b\x00n")
    _rename_layer(config, "dense", "d" * 70_000)


def _missing_output_folder(folder: Path) -> Path:
    return write_keras(folder / "m.keras")


CASES = [
    # reading other files
    Case("external-storage-relative", "outside", external_storage_relative,
         "keeps its data in other files ('secret.bin')", "import"),
    Case("external-storage-fifo", "outside", external_storage_fifo,
         "keeps its data in other files", "build"),
    Case("external-storage-environ", "outside", external_storage_environ,
         "keeps its data in other files ('/proc/self/environ')", "check", weights="m.weights.h5"),
    Case("external-link", "outside", external_link, "is a link to another file", "summary"),
    Case("soft-link", "outside", soft_link, "is a soft link", "import"),
    Case("virtual-dataset", "outside", virtual_dataset, "is a virtual dataset", "build",
         weights="m.weights.h5"),
    # strings of the file: names build the file's model, anything else is refused
    Case("model-name", "injection", _keras_with(_model_name), None),
    Case("layer-name", "injection", _keras_with(_rename("conv")), None),
    Case("input-name", "injection", _keras_with(_rename("image")), None),
    Case("output-key", "injection", _keras_with(_output_key), None),
    Case("keras-version", "injection", _keras_with(meta=metadata(PAYLOAD)), None),
    Case("module", "injection", _keras_with(_update("conv", module="keras.layers" + PAYLOAD)), None),
    Case("registered-name", "injection",
         _keras_with(_update("conv", registered_name="Conv2D" + PAYLOAD)), None),
    Case("tensor-dtype", "injection",
         _keras_with(lambda c: _layer_config(c, "bn")["inbound_nodes"][0]["args"][0]["config"].update(dtype="float32" + PAYLOAD)), None),
    Case("weights-vars-name", "injection", _keras_with(weights_edit=_vars_name), None),
    Case("legacy-layer-and-weight-names", "injection",
         _legacy_with(lambda c: _rename_layer(c, "conv", "conv" + H5_PAYLOAD), _legacy_rename), None),
    Case("class-name", "injection",
         _keras_with(_update("bn", class_name="BatchNormalization" + PAYLOAD)),
         "convc does not support this layer"),
    Case("config-key", "injection", _keras_with(_update("conv", "config", **{"padding" + PAYLOAD: "same"})),
         "is unknown"),
    Case("padding", "injection", _keras_with(_update("conv", "config", padding="valid" + PAYLOAD)),
         "'padding' must be one of"),
    Case("data-format", "injection",
         _keras_with(_update("conv", "config", data_format="channels_last" + PAYLOAD)),
         "'data_format' must be one of"),
    Case("activation", "injection", _keras_with(_update("conv", "config", activation="relu" + PAYLOAD)),
         "unknown activation"),
    Case("activation-object", "injection",
         _keras_with(_update("conv", "config", activation={"module": "keras.activations", "class_name": "relu" + PAYLOAD, "config": {}})),
         "not a Python name"),
    Case("dtype-policy", "injection",
         _keras_with(_update("conv", "config", "dtype", "config", name="float32" + PAYLOAD)),
         "convc builds float32 models"),
    Case("input-dtype", "injection", _keras_with(_update("image", "config", dtype="float32" + PAYLOAD)),
         "unsupported input dtype"),
    Case("batch-shape", "injection",
         _keras_with(_update("image", "config", batch_shape=[None, 6, "6" + PAYLOAD, 2])),
         "must be a positive integer"),
    Case("initializer-argument", "injection",
         _keras_with(_update("conv", "config", "kernel_initializer", "config", seed="1" + PAYLOAD)),
         "'seed' must be an integer or None"),
    Case("initializer-key", "injection",
         _keras_with(_update("conv", "config", "kernel_initializer", "config", **{"seed" + PAYLOAD: 1})),
         "not a Python name"),
    Case("regularizer-key", "injection",
         _keras_with(_update("conv", "config", kernel_regularizer={"module": "keras.regularizers", "class_name": "L2", "config": {"l2" + PAYLOAD: 0.1}})),
         "not a Python name"),
    Case("call-argument", "injection",
         _keras_with(lambda c: _layer_config(c, "bn")["inbound_nodes"][0]["kwargs"].update(training="x" + PAYLOAD)),
         "which convc cannot compile"),
    Case("legacy-model-config", "injection",
         _legacy_with(lambda c: c["config"]["layers"][1]["config"].update(padding="same" + PAYLOAD)),
         "'padding' must be one of"),
    # unbounded time
    Case("nested-models-calling-the-next-4-times", "time", nested_calls,
         "calls of layers and nested models", "summary"),
    Case("alternating-shared-layers", "time", alternating_shared, None, "summary"),
    Case("hard-link-cycle", "time", hard_link_cycle, "is an object the file reaches twice", "build"),
    Case("argument-of-100000-numbers", "time",
         _keras_with(_update("bn", "config", momentum=list(range(100_000)))), "'momentum' must be a number", "build"),
    # Legitimate, and large: its bound is on CPU time, with room for a slow hour of a 2-core
    # machine (5 to 6 s of CPU, up to 10 s when the machine is slow; more than 120 s before
    # #23). How fast it imports is measured by benchmarks/import_scale.py, not here.
    Case("100000-layers", "time", long_sequential, None, "summary", cpu_limit=20.0),
    # 7 to 7.5 s of CPU and 720 to 770 MB each (17.7 s and 1.4 GB for the second before the
    # writer stopped at a limit on the values it writes)
    Case("100000-layers-padded-to-the-limit-on-values", "time", partial(long_sequential, padding=8),
         "'max_value' of a ReLU layer must be a number", "summary", cpu_limit=15.0,
         memory_limit=1000 << 20),
    Case("100000-layers-padded-past-the-limit-on-values", "time", partial(long_sequential, padding=30),
         "the imported text would hold more than 1,500,006 values", "summary", cpu_limit=15.0,
         memory_limit=1000 << 20),

    # unbounded memory
    Case("weights-zip-bomb", "memory", weights_zip_bomb, "expands past", "summary"),
    Case("unwritten-gigabyte", "memory", unwritten_gigabyte, "(never written)", "build"),
    Case("partly-written", "memory", partly_written, "the file holds 1 of them", "import"),
    Case("config-of-60-MiB-of-empty-lists", "memory", empty_lists_config, "JSON values", "import"),
    Case("no-weights-member", "smaller", no_weights_member, "has no model.weights.h5", "build"),
    Case("libhdf5-sigsegv", "libhdf5", libhdf5_crash, "libhdf5 crashed (SIGSEGV)", "import"),
    Case("libhdf5-loop", "libhdf5", libhdf5_loop, "did not answer within 5 s", "build"),
    Case("encrypted-member", "malformed", encrypted_member, "is encrypted", "summary"),
    Case("not-deflate-data", "malformed", _wrong_method(zipfile.ZIP_DEFLATED), "cannot read config.json", "build"),
    Case("not-lzma-data", "malformed", _wrong_method(zipfile.ZIP_LZMA), "cannot read config.json", "build"),
    Case("not-bzip2-data", "malformed", _wrong_method(zipfile.ZIP_BZIP2), "cannot read config.json", "build"),
    Case("weights-changed-in-place", "malformed", weights_changed_in_place, "is corrupt: its CRC-32", "build"),
    Case("huge-activations", "memory", huge_activations, "--max-memory", "check"),
    # the smaller findings
    Case("escape-sequence-name", "smaller", _keras_with(_escape_sequence_name), None, "summary"),
    Case("keras-legal-names", "smaller", _keras_with(_legit_names), None, "import"),
    Case("weights-out-into-a-missing-folder", "smaller", _keras_with(), "the output directory does not exist",
         "import", extra=("--weights-out", "{folder}/missing/w.npz"), located="missing/w.npz"),
]  # fmt: skip
"""Every case; ``tests/test_hostile_files.py`` runs each with its command."""


def main(folder: str) -> None:
    root = Path(folder)
    for case in CASES:
        target = root / case.name
        target.mkdir(parents=True, exist_ok=True)
        path = case.write(target)
        print(f"{case.kind:10} {case.name:40} {path}")


if __name__ == "__main__":
    main(sys.argv[1])
