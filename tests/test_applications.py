"""Keras's own architectures (``keras.applications``) as the real-world yardstick.

Each is built with ``weights=None`` and given random weights, BatchNormalization statistics
included (``oracle.random_weights``), saved by Keras as ``.keras`` and as ``.h5``, imported by
convc from each file, built, and run on two random inputs; the outputs (logits:
``classifier_activation=None``, so that a thousand tiny softmax values do not hide an error) must
match Keras within 1e-4 + 1e-4 relative. MobileNetV2 and ResNet50 run in the default suite; the
whole corpus, at each architecture's default input size and at 128x128, in every runtime
installed, runs with ``python -m pytest -m applications``.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from oracle import ATOL, RTOL, keras_outputs, random_weights

os.environ.setdefault("KERAS_BACKEND", "torch")
import keras  # noqa: E402

from convc.compiler import compile_model  # noqa: E402
from convc.importer import import_file  # noqa: E402
from convc.runners import available, open_runner  # noqa: E402

CORPUS = {
    # name: (default input size, whether the model scales 0..255 pixels itself)
    "VGG16": (224, False),
    "VGG19": (224, False),
    "ResNet50": (224, False),
    "ResNet50V2": (224, False),
    "ResNet101": (224, False),
    "InceptionV3": (299, False),
    "InceptionResNetV2": (299, False),
    "Xception": (299, False),
    "MobileNet": (224, False),
    "MobileNetV2": (224, False),
    "MobileNetV3Small": (224, True),
    "MobileNetV3Large": (224, True),
    "DenseNet121": (224, False),
    "EfficientNetB0": (224, True),
    "EfficientNetV2B0": (224, True),
    "ConvNeXtTiny": (224, True),
}
DEFAULT_SUITE = {"MobileNetV2", "ResNet50"}
OTHER_SIZE = 128
RUNTIMES = ("ort", "openvino", "opencv", "tract")
"""onnx-reference is left out: its pure-Python Conv takes minutes on a ResNet."""


def _cases():
    for name, (size, _) in CORPUS.items():
        for input_size in (size, OTHER_SIZE):
            default = name in DEFAULT_SUITE and input_size == size
            marks = [] if default else [pytest.mark.applications]
            yield pytest.param(name, input_size, id=f"{name}-{input_size}", marks=marks)


def _keras_model(name: str, size: int) -> keras.Model:
    keras.backend.clear_session()
    constructor = getattr(keras.applications, name)
    model = constructor(weights=None, input_shape=(size, size, 3), classifier_activation=None)
    random_weights(model, seed=7)
    return model


def _inputs(name: str, size: int) -> np.ndarray:
    rng = np.random.default_rng(11)
    shape = (2, size, size, 3)
    if CORPUS[name][1]:  # models with their own preprocessing take pixels
        return rng.uniform(0, 255, shape).astype(np.float32)
    return rng.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize(("name", "size"), list(_cases()))
def test_application_imports_and_matches_keras(name, size, tmp_path, request):
    model = _keras_model(name, size)
    x = _inputs(name, size)
    (expected,) = keras_outputs(model, [x])
    assert np.std(expected) > 1e-3, "the random weights leave the logits nearly constant"
    everywhere = request.node.get_closest_marker("applications") is not None
    runtimes = [r for r in RUNTIMES if r == "ort" or (everywhere and available(r))]
    compared = 0
    for fmt in ("keras", "h5"):
        path = tmp_path / f"{name}.{fmt}"
        model.save(path)
        imported = import_file(path)
        for runtime in runtimes if fmt == "keras" else ["ort"]:
            target = {"ort": "portable"}.get(runtime, runtime)
            proto = compile_model(imported.model, imported.weights, target=target)
            session = open_runner(proto, runtime)
            (actual,) = session.run({imported.model.inputs[0].name: x}).values()
            np.testing.assert_allclose(
                actual, expected, atol=ATOL, rtol=RTOL, err_msg=f"{name} {fmt} in {runtime}"
            )
            compared += 1
        path.unlink()
    assert compared == len(runtimes) + 1
