"""Where Keras 3's backends disagree, convc computes what JAX and TensorFlow compute, and its torch
names what the torch backend computes.

Keras 3.15.1's backends compute three layers differently: a 'same' average pooling whose pads
are unequal (torch counts repeated edge entries; TensorFlow and JAX leave the pads out), bicubic
resampling (torch: Keys's a = -0.75 with the edges repeated; JAX and TensorFlow: a = -0.5,
renormalized at the borders) and the Lanczos kernels (JAX and TensorFlow only). convc's
``same``, ``bicubic``, ``lanczos3`` and ``lanczos5`` are compared here with Keras on JAX
(``tests/jax_oracle.py``), over a table and random draws; ``same_torch`` and ``bicubic_torch`` with
Keras on torch (``tests/oracle.py``); and the two are shown to differ where the backends do, so that
neither comparison can pass by computing the other's.
"""

from __future__ import annotations

import numpy as np
import pytest

from convc.compiler import compile_text, resolve_text
from convc.reference import model_outputs, run_reference

from jax_oracle import keras_outputs_on_jax
from oracle import assert_matches_keras, onnx_output

ATOL = 2e-5
"""Keras on JAX computes its weights in float32; convc's are float64 rounded once."""

TABLE = [
    # 'same' average pooling with unequal pads, every rank and both layouts
    ("Input(shape=(5, 3))", "AveragePooling1D(3, 2, 'same')"),
    ("Input(shape=(6, 3))", "AveragePooling1D(2, 1, 'same')"),
    ("Input(shape=(7, 9, 3))", "AveragePooling2D(2, 2, 'same')"),
    ("Input(shape=(7, 9, 3))", "AveragePooling2D((3, 2), (2, 3), 'same')"),
    ("Input(shape=(3, 7, 9))", "AveragePooling2D(2, 1, 'same', 'channels_first')"),
    ("Input(shape=(4, 7, 8))", "AveragePooling2D(3, 2, 'same', 'channels_first')"),
    ("Input(shape=(5, 6, 7, 2))", "AveragePooling3D((2, 3, 2), (2, 2, 3), 'same')"),
    ("Input(shape=(2, 5, 6, 7))", "AveragePooling3D(2, 2, 'same', 'channels_first')"),
    # bicubic and Lanczos upsampling
    ("Input(shape=(5, 6, 3))", "UpSampling2D((3, 2), interpolation='bicubic')"),
    ("Input(shape=(3, 5, 6))", "UpSampling2D(2, 'channels_first', 'bicubic')"),
    ("Input(shape=(1, 6, 3))", "UpSampling2D((3, 2), interpolation='bicubic')"),
    ("Input(shape=(5, 6, 3))", "UpSampling2D((3, 2), interpolation='lanczos3')"),
    ("Input(shape=(2, 7, 3))", "UpSampling2D(4, interpolation='lanczos5')"),
    ("Input(shape=(3, 5, 6))", "UpSampling2D((1, 3), 'channels_first', 'lanczos3')"),
    # Resizing: enlarging, shrinking, antialiased, cropped or padded to the aspect ratio
    ("Input(shape=(9, 11, 3))", "Resizing(4, 5, 'bicubic')"),
    ("Input(shape=(9, 11, 3))", "Resizing(14, 23, 'bicubic')"),
    ("Input(shape=(9, 11, 3))", "Resizing(4, 5, 'bicubic', antialias=True)"),
    ("Input(shape=(9, 11, 3))", "Resizing(14, 5, 'bicubic', antialias=True)"),
    ("Input(shape=(9, 11, 3))", "Resizing(4, 17, 'lanczos3')"),
    ("Input(shape=(9, 11, 3))", "Resizing(4, 17, 'lanczos3', antialias=True)"),
    ("Input(shape=(9, 11, 3))", "Resizing(20, 3, 'lanczos5', antialias=True)"),
    ("Input(shape=(9, 11, 3))", "Resizing(6, 6, 'bicubic', crop_to_aspect_ratio=True)"),
    ("Input(shape=(9, 11, 3))", "Resizing(6, 12, 'lanczos5', pad_to_aspect_ratio=True)"),
    ("Input(shape=(3, 9, 11))", "Resizing(5, 7, 'bicubic', data_format='channels_first')"),
    # the layers the backends agree on, so that the oracle is seen to agree where it should
    ("Input(shape=(9, 11, 3))", "Resizing(4, 17, 'bilinear', antialias=True)"),
    ("Input(shape=(9, 11, 3))", "Resizing(4, 17, 'nearest')"),
    ("Input(shape=(7, 9, 3))", "AveragePooling2D(3, 2, 'same')"),
    ("Input(shape=(7, 9, 3))", "MaxPooling2D(2, 2, 'same')"),
]


def _random_cases(count: int, seed: int) -> list[tuple[str, str]]:
    """Random pooling and resampling layers over the arguments where the backends differ."""
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < count:
        kind = rng.integers(3)
        layout = "channels_first" if rng.random() < 0.3 else "channels_last"
        if kind == 0:
            rank = int(rng.integers(1, 4))
            lengths = [int(n) for n in rng.integers(2, 9, rank)]
            pool = tuple(
                int(min(k, n)) for k, n in zip(rng.integers(1, 5, rank), lengths, strict=True)
            )
            strides = tuple(int(s) for s in rng.integers(1, 4, rank))
            shape = (2, *lengths) if layout == "channels_first" else (*lengths, 2)
            layer = f"AveragePooling{rank}D({pool}, {strides}, 'same', '{layout}')"
        elif kind == 1:
            interpolation = rng.choice(["bicubic", "lanczos3", "lanczos5"])
            lengths = [int(n) for n in rng.integers(1, 8, 2)]
            size = tuple(int(f) for f in rng.integers(1, 5, 2))
            shape = (2, *lengths) if layout == "channels_first" else (*lengths, 2)
            layer = f"UpSampling2D({size}, '{layout}', '{interpolation}')"
        else:
            interpolation = rng.choice(["bicubic", "lanczos3", "lanczos5"])
            lengths = [int(n) for n in rng.integers(2, 14, 2)]
            height, width = (int(n) for n in rng.integers(1, 20, 2))
            antialias = bool(rng.random() < 0.5)
            shape = (2, *lengths) if layout == "channels_first" else (*lengths, 2)
            layer = (
                f"Resizing({height}, {width}, '{interpolation}', antialias={antialias}, "
                f"data_format='{layout}')"
            )
        cases.append((f"Input(shape={shape})", layer))
    return cases


CASES = TABLE + _random_cases(60, seed=24)


@pytest.fixture(scope="module")
def jax_results(tmp_path_factory):
    """Keras on JAX's output for every case, and the inputs it was given."""
    texts = [f"{head}\n{layer}\n" for head, layer in CASES]
    rng = np.random.default_rng(7)
    inputs = [
        rng.standard_normal((2, *resolve_text(text).inputs[0].shape[1:])).astype(np.float32)
        for text in texts
    ]
    outputs = keras_outputs_on_jax(texts, inputs, tmp_path_factory.mktemp("jax"))
    return dict(zip(texts, zip(inputs, outputs, strict=True), strict=True))


def test_convc_computes_what_keras_on_jax_computes(jax_results):
    """Every case, in onnxruntime and in the NumPy reference, against Keras on JAX; every one
    compares numbers (a refusal fails). onnxruntime runs the portable model (constant matrices
    for bicubic) and its own (cubic Resize with exclude_outside, antialiased Resize)."""
    compared = 0
    for text, (x, expected) in jax_results.items():
        actual = onnx_output(compile_text(text), x)
        own = onnx_output(compile_text(text, target="ort"), x)
        np.testing.assert_allclose(own, expected, atol=ATOL, rtol=ATOL, err_msg=f"ort: {text}")
        model = resolve_text(text)
        (reference,) = model_outputs(model, run_reference(model, {}, x)).values()
        assert actual.shape == expected.shape, text
        np.testing.assert_allclose(actual, expected, atol=ATOL, rtol=ATOL, err_msg=text)
        np.testing.assert_allclose(reference, expected, atol=ATOL, rtol=ATOL, err_msg=text)
        compared += 1
    assert compared == len(CASES)


def test_the_torch_backend_computes_otherwise_on_these_cases(jax_results):
    """The torch forms differ from JAX's by far more than the tolerance on most cases where
    they differ at all: the JAX comparison could not pass with torch's definitions."""
    differing = 0
    for head, layer in CASES:
        x, expected = jax_results[f"{head}\n{layer}\n"]
        torch_layer = layer.replace("'bicubic'", "'bicubic_torch'")
        if layer.startswith("AveragePooling"):
            torch_layer = torch_layer.replace("'same'", "'same_torch'")
        if torch_layer == layer:
            continue
        actual = onnx_output(compile_text(f"{head}\n{torch_layer}\n"), x)
        differing += bool(np.abs(actual - expected).max() > 100 * ATOL)
    assert differing >= 20, differing


TORCH_CASES = [
    "Input(shape=(5, 3))\nAveragePooling1D(3, 2, 'same_torch')\n",
    "Input(shape=(7, 9, 3))\nAveragePooling2D((3, 2), (2, 3), 'same_torch')\n",
    "Input(shape=(2, 5, 6, 7))\nAveragePooling3D(2, 2, 'same_torch', 'channels_first')\n",
    "Input(shape=(5, 6, 3))\nUpSampling2D((3, 2), interpolation='bicubic_torch')\n",
    "Input(shape=(9, 11, 3))\nResizing(4, 5, 'bicubic_torch')\n",
    "Input(shape=(9, 11, 3))\nResizing(14, 23, 'bicubic_torch')\n",
    "Input(shape=(9, 11, 3))\nResizing(14, 5, 'bicubic_torch', antialias=True)\n",
]


@pytest.mark.parametrize("text", TORCH_CASES)
def test_torch_names_compute_what_keras_on_torch_computes(text):
    assert_matches_keras(text)


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        ("MaxPooling1D(3, 2, 'same_torch')", "padding='same_torch' is for an average pooling"),
        ("UpSampling2D(2, interpolation='area')", "only on the TensorFlow backend"),
        ("Resizing(4, 4, 'area')", "exists only on Keras's TensorFlow backend"),
    ],
)
def test_what_no_keras_backend_or_only_tensorflow_computes_is_refused(layer, message):
    shape = "(7, 2)" if "1D" in layer else "(7, 9, 2)"
    with pytest.raises(Exception, match=message.replace("(", r"\(")):
        resolve_text(f"Input(shape={shape})\n{layer}\n")
