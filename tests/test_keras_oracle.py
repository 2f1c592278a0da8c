"""Every layer and argument path, compiled by convc and run in ONNX Runtime, against Keras 3.

Each case of ``cases.ALL_CASES`` is .conv text; ``oracle.assert_matches_keras`` builds the same
text in Keras, gives both the same random weights (biases included) and compares outputs
(atol = rtol = 1e-4) and layer names. A case that Keras's backends compute differently (a 'same'
average pooling, bicubic resampling: ``jax_oracle.BACKENDS_DISAGREE``) has its numbers compared
with Keras on JAX, whose definitions convc follows, all such cases in one process.
"""

from __future__ import annotations

import numpy as np
import pytest

from convc.compiler import resolve_text
from convc.specs import ActivationSpec, ConvSpec, DenseSpec

from cases import ALL_CASES
from jax_oracle import BACKENDS_DISAGREE, assert_matches, keras_on_jax
from oracle import assert_matches_keras, keras_model

JAX_CASES = [p.values[0] for p in ALL_CASES if BACKENDS_DISAGREE.search(p.values[0])]


@pytest.fixture(scope="module")
def on_jax(tmp_path_factory):
    """Keras on JAX's output for every case of ``JAX_CASES``."""
    return keras_on_jax(JAX_CASES, tmp_path_factory.mktemp("jax"))


def test_cases_compared_on_jax_are_the_ones_whose_backends_disagree():
    """So that a change of the pattern cannot quietly move every case to one oracle."""
    assert 30 <= len(JAX_CASES) <= 80, len(JAX_CASES)


@pytest.mark.parametrize("text", ALL_CASES)
def test_matches_keras(text, request):
    if text in JAX_CASES:
        assert_matches(text, request.getfixturevalue("on_jax")[text])
        model = keras_model(text)
    else:
        model, _ = assert_matches_keras(text)
    resolved = resolve_text(text)
    ours = resolved.layers
    assert [layer.name for layer in ours] == [layer.name for layer in model.layers]
    assert [layer.parameter_count for layer in ours] == [
        layer.count_params() for layer in model.layers
    ]
    assert [layer.trainable_parameter_count for layer in ours] == [
        sum(int(np.prod(w.shape)) for w in layer.trainable_weights) for layer in model.layers
    ]
    first_nodes = {node.name: node for node in resolved.nodes}  # named as their layers
    for mine, theirs in zip(ours, model.layers, strict=True):
        glu = isinstance(mine.spec, ConvSpec | ActivationSpec | DenseSpec) and (
            mine.spec.activation == "glu"
        )
        if not glu:  # Keras's symbolic glu shape is wrong
            assert first_nodes[mine.name].output_shape == tuple(theirs.output.shape), mine.name


@pytest.mark.parametrize("opset", range(13, 29))
def test_every_opset_matches_keras(opset):
    text = (
        "\n".join(
            [
                "Input(shape=(6, 7, 3))",
                "Conv2D(4, 2, padding='same', activation='gelu')",
                "SeparableConv2D(6, 3, padding='same', activation='hard_silu')",
                "Conv2DTranspose(4, 3, strides=2, padding='same', activation='mish')",
                "UpSampling2D((2, 1), interpolation='bilinear')",
                "ZeroPadding2D(1)",
                "Cropping2D((1, 2))",
                "Conv2D(4, 1, activation='softmax')",
                "Conv2D(4, 1, activation='sparsemax')",
                "Conv2D(6, 1, activation='glu')",  # last: Keras's own glu shape breaks a following layer
            ]
        )
        + "\n"
    )
    assert_matches_keras(text, opset=opset)


def test_keras_builds_the_same_models():
    """A sanity check of the oracle itself: it sees the classes and names we expect."""
    model = keras_model("Input(shape=(8, 8, 3))\nConv2D(2, 3)\nConv2D(2, 3)\n")
    assert [layer.name for layer in model.layers] == ["conv2d", "conv2d_1"]
