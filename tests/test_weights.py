"""Weights: .npz and Keras's .weights.h5 give Keras's numbers; initialized builds are
reproducible; every mismatch between a file and the model is a precise error."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from convc.compiler import compile_text, resolve_text
from convc.diagnostics import ConvcError
from convc.weights import initialize, load

from oracle import input_for, keras_model, keras_output, onnx_output, random_weights

TEXT = """Input(shape=(9, 8, 3))
Conv2D(4, 3, padding='same', name='c0')
SeparableConv2D(6, 3, depth_multiplier=2, name='s1')
DepthwiseConv2D(2, depth_multiplier=2)
Conv2DTranspose(3, 3, strides=2)
Conv2D(2, 1, use_bias=False)
UpSampling2D()
Conv2D(2, 1)
"""


def test_keras_weights_h5_gives_keras_numbers(tmp_path):
    model = keras_model(TEXT)
    random_weights(model, seed=3)
    path = tmp_path / "net.weights.h5"
    model.save_weights(path)
    x = input_for(model)
    np.testing.assert_allclose(
        onnx_output(compile_text(TEXT, path), x), keras_output(model, x), atol=1e-4, rtol=1e-4
    )


def test_npz_gives_keras_numbers(tmp_path):
    model = keras_model(TEXT)
    arrays = random_weights(model, seed=4)
    path = tmp_path / "net.npz"
    np.savez(path, **arrays)
    assert {
        "c0/kernel",
        "s1/depthwise_kernel",
        "s1/pointwise_kernel",
        "depthwise_conv2d/kernel",
    } <= set(arrays)
    x = input_for(model)
    np.testing.assert_allclose(
        onnx_output(compile_text(TEXT, path), x), keras_output(model, x), atol=1e-4, rtol=1e-4
    )


def test_float64_arrays_are_accepted_like_keras(tmp_path):
    model = keras_model(TEXT)
    arrays = {k: v.astype(np.float64) for k, v in random_weights(model).items()}
    x = input_for(model)
    np.testing.assert_allclose(
        onnx_output(compile_text(TEXT, arrays), x), keras_output(model, x), atol=1e-4, rtol=1e-4
    )


def test_lora_kernels_are_merged():
    text = "Input(shape=(6, 6, 3))\nConv2D(4, 3, lora_rank=2, lora_alpha=3, name='c')\n"
    model = keras_model(text)
    rng = np.random.default_rng(0)
    layer = model.layers[0]
    values = [rng.standard_normal(tuple(w.shape)).astype(np.float32) for w in layer.weights]
    for variable, value in zip(layer.weights, values, strict=True):
        variable.assign(value)
    arrays = {f"c/{w.name}": v for w, v in zip(layer.weights, values, strict=True)}
    assert set(arrays) == {"c/kernel", "c/bias", "c/lora_kernel_a", "c/lora_kernel_b"}
    x = input_for(model)
    np.testing.assert_allclose(
        onnx_output(compile_text(text, arrays), x), keras_output(model, x), atol=1e-4, rtol=1e-4
    )


def test_initialized_build_is_byte_identical():
    first = compile_text(TEXT, seed=7).SerializeToString()
    assert first == compile_text(TEXT, seed=7).SerializeToString()
    assert first != compile_text(TEXT, seed=8).SerializeToString()


def test_initializers_are_used():
    model = resolve_text(
        "Input(shape=(4, 3))\nConv1D(2, 1, kernel_initializer='ones', bias_initializer=keras.initializers.Constant(0.5))\n"
    )
    weights = initialize(model, seed=0)
    assert np.all(weights["conv1d"]["kernel"] == 1.0) and np.all(weights["conv1d"]["bias"] == 0.5)


def test_changing_one_layer_keeps_the_other_layers_weights():
    a = initialize(
        resolve_text("Input(shape=(8, 3))\nConv1D(4, 3, name='x')\nConv1D(2, 1, name='y')\n"), 0
    )
    b = initialize(
        resolve_text("Input(shape=(8, 3))\nConv1D(4, 3, name='x')\nConv1D(5, 1, name='y')\n"), 0
    )
    np.testing.assert_array_equal(a["x"]["kernel"], b["x"]["kernel"])


SMALL = "Input(shape=(8, 3))\nConv1D(4, 3, name='c')\n"
GOOD = {"c/kernel": np.zeros((3, 3, 4), np.float32), "c/bias": np.zeros(4, np.float32)}


@pytest.mark.parametrize(
    ("arrays", "fragment"),
    [
        pytest.param({"c/kernel": GOOD["c/kernel"]}, "missing c/bias", id="missing"),
        pytest.param(
            {**GOOD, "c/extra": GOOD["c/bias"]}, "c/extra is not a variable", id="extra-variable"
        ),
        pytest.param({**GOOD, "d/kernel": GOOD["c/bias"]}, "names no layer", id="extra-layer"),
        pytest.param({**GOOD, "kernel": GOOD["c/bias"]}, "not of the form", id="bad-key"),
        pytest.param(
            {**GOOD, "c/kernel": np.zeros((3, 4, 3), np.float32)},
            "c/kernel has shape (3, 4, 3), expected (3, 3, 4)",
            id="wrong-shape",
        ),
        pytest.param({**GOOD, "c/bias": np.zeros(4, np.int32)}, "dtype int32", id="wrong-dtype"),
    ],
)
def test_weights_errors(arrays, fragment, tmp_path):
    path = tmp_path / "w.npz"
    np.savez(path, **arrays)
    with pytest.raises(ConvcError) as caught:
        compile_text(SMALL, path)
    assert fragment in caught.value.message
    assert caught.value.path == str(path)


def test_pickled_npz_is_refused(tmp_path):
    path = tmp_path / "w.npz"
    np.savez(path, **{"c/kernel": np.array([object()], dtype=object), "c/bias": GOOD["c/bias"]})
    with pytest.raises(ConvcError, match="pickled"):
        compile_text(SMALL, path)


@pytest.mark.parametrize("name", ["w.npz", "w.weights.h5"])
def test_corrupt_weights_files(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"PK\x03\x04 this is not really a zip or an hdf5 file")
    with pytest.raises(ConvcError, match="corrupt or truncated|truncated or corrupt"):
        load(resolve_text(SMALL), path)


def test_h5_with_other_layers_is_refused(tmp_path):
    path = tmp_path / "w.weights.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("layers/conv2d/vars/0", data=np.zeros((3, 3, 3, 4), np.float32))
    with pytest.raises(ConvcError, match="layer 'conv2d' that the model does not have"):
        load(resolve_text(SMALL), path)


def test_h5_with_wrong_shape_names_the_variable(tmp_path):
    path = tmp_path / "w.weights.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("layers/conv1d/vars/0", data=np.zeros((3, 4, 3), np.float32))
        f.create_dataset("layers/conv1d/vars/1", data=np.zeros(4, np.float32))
    with pytest.raises(ConvcError, match=r"c/kernel has shape \(3, 4, 3\), expected \(3, 3, 4\)"):
        load(resolve_text(SMALL), path)


def test_unknown_weights_format(tmp_path):
    path = tmp_path / "w.pt"
    path.write_bytes(b"x")
    with pytest.raises(ConvcError, match="unknown weights format"):
        load(resolve_text(SMALL), path)


@pytest.mark.parametrize(
    ("layer", "variable", "fan_in"),
    [
        ("DepthwiseConv2D(3, depth_multiplier=2)", "kernel", 9),
        ("SeparableConv2D(5, 3)", "depthwise_kernel", 9),
        ("SeparableConv2D(5, 3)", "pointwise_kernel", 16),
        ("Conv2D(5, 3)", "kernel", 9 * 16),
        ("Conv2D(8, 3, groups=4)", "kernel", 9 * 4),
    ],
)
def test_exercise_scales_each_kernel_by_what_one_output_sums(layer, variable, fan_in):
    """N(0, 1/fan-in): a depthwise kernel's output reads one channel's taps, not all channels'
    (drawn with every channel, MobileNet-like samples' outputs ignored their input)."""
    from convc.compiler import resolve_text
    from convc.weights import exercise

    model = resolve_text(f"Input(shape=(40, 40, 16))\n{layer}\n")
    kernel = exercise(model, seed=3)[model.layers[0].name][variable]
    assert abs(float(np.std(kernel)) * np.sqrt(fan_in) - 1) < 0.2, (np.std(kernel), fan_in)
