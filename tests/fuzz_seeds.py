"""Write the seed files of the mutation fuzz (``tests/fuzz_files.py``) into
``tests/fixtures/fuzz/``: small models covering convc's layer vocabulary, saved by Keras 3 as
``.keras`` and as its legacy ``.h5``, and two full-model ``.h5`` files in the shape tf.keras 2
writes (built with h5py: TensorFlow is not installed). Each seed is checked before it is
written: convc builds it, and the ONNX model's outputs equal Keras's.

    python tests/fuzz_seeds.py

The seeds are committed, so that a fuzz failure reproduces on any machine, whatever Keras is
installed; archives are rewritten with fixed dates so that running this again changes a seed
only when Keras writes something different.
"""

from __future__ import annotations

import io
import json
import os
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("KERAS_TORCH_DEVICE", "cpu")

sys.path[:0] = [str(Path(__file__).parent), str(Path(__file__).parent.parent)]

import hostile_files  # noqa: E402
import keras  # noqa: E402
from keras import layers  # noqa: E402

from oracle import ATOL, RTOL, keras_outputs, onnx_outputs, random_weights  # noqa: E402

SEEDS = Path(__file__).parent / "fixtures" / "fuzz"


def sequential_conv2d() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((12, 12, 3), name="image"),
            layers.Conv2D(6, 3, padding="same", activation="relu"),
            layers.BatchNormalization(),
            layers.MaxPooling2D(2),
            layers.DepthwiseConv2D(3, padding="same"),
            layers.SeparableConv2D(8, 3),
            layers.Conv2DTranspose(4, 3, strides=2),
            layers.ZeroPadding2D(1),
            layers.Cropping2D(((1, 0), (0, 1))),
            layers.AveragePooling2D(2),
            layers.UpSampling2D(2),
            layers.GlobalAveragePooling2D(),
            layers.Dense(5, activation="softmax"),
        ],
        name="sequential_conv2d",
    )


def functional_merge() -> keras.Model:
    a = keras.Input((4, 4, 3), name="left")
    b = keras.Input((4, 4, 3), name="right")
    x = layers.Conv2D(4, 3, padding="same", name="conv_a")(a)
    y = layers.Conv2D(4, 3, padding="same", name="conv_b")(b)
    merged = [
        layers.Add()([x, y]),
        layers.Subtract()([x, y]),
        layers.Multiply()([x, y]),
        layers.Average()([x, y]),
        layers.Maximum()([x, y]),
        layers.Minimum()([x, y]),
    ]
    z = layers.Concatenate(axis=-1)(merged)
    z = layers.LayerNormalization()(z)
    z = layers.PReLU()(z)
    z = z * 0.5 + 1.0
    z = layers.LeakyReLU(negative_slope=0.2)(z)
    z = layers.Permute((2, 1, 3))(z)
    z = layers.Reshape((16, 24))(z)
    z = layers.Activation("tanh")(z)
    z = layers.Flatten()(z)
    out = layers.Dense(6)(z)
    return keras.Model([a, b], layers.Softmax()(out), name="functional_merge")


def nested_shared() -> keras.Model:
    block = keras.Sequential(
        [keras.Input((10, 10, 2)), layers.Conv2D(3, 3, activation="relu"), layers.ReLU()],
        name="block",
    )
    a = keras.Input((10, 10, 2), name="a")
    b = keras.Input((10, 10, 2), name="b")
    head = layers.Dense(4, name="head")
    pool = layers.GlobalMaxPooling2D(name="pool")
    left = head(pool(block(a)))
    right = head(pool(block(b)))
    return keras.Model([a, b], [left, layers.Add(name="sum")([left, right])], name="nested_shared")


def sequence_1d() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((24, 4), name="signal"),
            layers.Conv1D(6, 3, padding="causal", dilation_rate=2),
            layers.GroupNormalization(groups=2),
            layers.Conv1DTranspose(4, 3, strides=2),
            layers.SeparableConv1D(6, 3, padding="same"),
            layers.DepthwiseConv1D(3),
            layers.ZeroPadding1D(2),
            layers.Cropping1D((1, 2)),
            layers.UpSampling1D(2),
            layers.MaxPooling1D(3),
            layers.SpatialDropout1D(0.1),
            layers.GlobalMaxPooling1D(),
            layers.Dense(3, activation="sigmoid"),
        ],
        name="sequence_1d",
    )


def volume_3d() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((6, 6, 6, 2), name="volume"),
            layers.Conv3D(3, 2, activation="elu"),
            layers.MaxPooling3D(1),
            layers.Conv3DTranspose(2, 2, strides=(1, 2, 1)),
            layers.ZeroPadding3D(1),
            layers.UpSampling3D((1, 1, 2)),
            layers.Cropping3D(1),
            layers.UnitNormalization(),
            layers.GlobalAveragePooling3D(),
            layers.Dense(2),
        ],
        name="volume_3d",
    )


def preprocessing() -> keras.Model:
    x = keras.Input((10, 10, 3), name="pixels")
    y = layers.Rescaling(1 / 255.0, offset=-0.5)(x)
    y = layers.Normalization(mean=[0.1, 0.2, 0.3], variance=[1.0, 2.0, 0.5])(y)
    y = layers.Cropping2D(1)(y)
    y = layers.Conv2D(4, 1)(y)
    y = layers.RMSNormalization()(y)
    y = layers.Dropout(0.5)(y)
    y = layers.GaussianNoise(0.1)(y)
    y = layers.Identity()(y)
    y = layers.GlobalAveragePooling2D()(y)
    return keras.Model(x, layers.Dense(3, activation="gelu")(y), name="preprocessing")


KERAS_MODELS = {
    "sequential_conv2d": (sequential_conv2d, (".keras", ".h5")),
    "functional_merge": (functional_merge, (".keras", ".h5")),
    "nested_shared": (nested_shared, (".keras",)),
    "sequence_1d": (sequence_1d, (".keras",)),
    "volume_3d": (volume_3d, (".keras",)),
    "preprocessing": (preprocessing, (".keras",)),
}


def _deterministic_archive(data: bytes) -> bytes:
    """The archive rewritten with a fixed date in every member and in metadata.json."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = [(info, archive.read(info)) for info in archive.infolist()]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for info, content in members:
            if info.filename == "metadata.json":
                meta = json.loads(content)
                meta["date_saved"] = "2026-01-01@00:00:00"
                content = json.dumps(meta).encode()
            if info.filename == "config.json":
                content = json.dumps(_numbered_shared_objects(json.loads(content))).encode()
            fixed = zipfile.ZipInfo(info.filename, date_time=(2026, 1, 1, 0, 0, 0))
            fixed.compress_type = info.compress_type
            fixed.external_attr = info.external_attr
            archive.writestr(fixed, content)
    return out.getvalue()


def _numbered_shared_objects(config):
    """Keras marks objects used in several places with ``shared_object_id``, an address in
    memory; the ids are renumbered 1, 2, ... in order of appearance."""
    numbers: dict[int, int] = {}

    def walk(node):
        if isinstance(node, dict):
            return {
                key: numbers.setdefault(value, len(numbers) + 1)
                if key == "shared_object_id"
                else walk(value)
                for key, value in node.items()
            }
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    return walk(config)


def _check(path: Path, model: keras.Model | None, expected: list[np.ndarray], xs) -> None:
    from convc.compiler import compile_model
    from convc.importer import import_file

    imported = import_file(path)
    actual = onnx_outputs(compile_model(imported.model, imported.weights), xs)
    assert len(actual) == len(expected), path
    for got, want in zip(actual, expected, strict=True):
        np.testing.assert_allclose(got, want, atol=ATOL, rtol=RTOL, err_msg=str(path))


def _inputs(model: keras.Model) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [
        rng.standard_normal((2, *tensor.shape[1:])).astype(np.float32) for tensor in model.inputs
    ]


def write_seeds(folder: Path = SEEDS) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (make, suffixes) in KERAS_MODELS.items():
        keras.backend.clear_session()
        model = make()
        random_weights(model, seed=len(written))
        xs = _inputs(model)
        expected = keras_outputs(model, xs)
        for suffix in suffixes:
            path = folder / f"{name}{suffix}"
            with tempfile.TemporaryDirectory() as scratch:
                saved = Path(scratch) / path.name
                model.save(saved)
                data = saved.read_bytes()
            path.write_bytes(_deterministic_archive(data) if suffix == ".keras" else data)
            _check(path, model, expected, xs)
            written.append(path)
    written += _tf_keras_seeds(folder)
    return written


def _tf_keras_seeds(folder: Path) -> list[Path]:
    """Two full-model .h5 files as tf.keras 2.15 writes them: the corpus's functional baseline,
    and a Sequential without an InputLayer (its first layer declares ``batch_input_shape``)."""
    functional = hostile_files.write_keras2_h5(folder / "tf_keras_functional.h5")
    keras.backend.clear_session()
    twin = keras.Sequential(
        [
            keras.Input(hostile_files.SHAPE),
            layers.Conv2D(4, 3, activation="relu", name="conv"),
            layers.BatchNormalization(epsilon=0.001, name="bn"),
            layers.Dense(3, name="dense"),
        ]
    )
    weights = hostile_files.baseline_weights()
    twin.set_weights([array for name in ("conv", "bn", "dense") for array in weights[name]])
    xs = _inputs(twin)
    _check(functional, twin, keras_outputs(twin, xs), xs)

    sequential = folder / "tf_keras_sequential.h5"
    config = hostile_files.keras2_config()
    layers_config = config["config"]["layers"]
    layers_config[1]["config"]["batch_input_shape"] = [None, *hostile_files.SHAPE]
    for layer in layers_config:
        layer.pop("inbound_nodes")
        layer.pop("name")
    config = {
        "class_name": "Sequential",
        "config": {"name": "sequential", "layers": layers_config[1:]},
        "keras_version": "2.15.0",
        "backend": "tensorflow",
    }
    hostile_files.write_keras2_h5(sequential, config)
    _check(sequential, twin, keras_outputs(twin, xs), xs)
    return [functional, sequential]


if __name__ == "__main__":
    for path in write_seeds():
        print(
            f"{path.stat().st_size:>8,}  {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}"
        )
