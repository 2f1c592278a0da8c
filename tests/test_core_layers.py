"""The core layers, the activation layers with arguments, the inference no-ops and the
preprocessing layers, held against Keras 3 where tests/cases.py cannot: constructor checks
compared call by call, each no-op's inference behaviour in Keras itself, node counts, antialias
(opset 18), nearest-resize sizes against torch, and weights files Keras writes.
"""

from __future__ import annotations

import numpy as np
import pytest

from convc.compiler import compile_text, resolve_text
from convc.diagnostics import ConvcError, errors_of
from convc.layers import LAYER_TYPES
from convc.specs import PassThroughSpec
from convc.weights import load

from matrix import FAIL, evaluate
from oracle import (
    assert_keras_error,
    assert_matches_keras,
    input_for,
    keras,
    keras_error,
    keras_message,
    keras_model,
    keras_output,
    onnx_output,
    random_weights,
)

IMAGE = "(6, 7, 3)"


def _convc_fails(text: str) -> ConvcError | None:
    try:
        compile_text(text)
    except ConvcError as error:
        return error
    return None


# (id, input shape, call): Keras and convc must both accept or both refuse each call; a refusal
# by convc is located on the call's line.
CHECKS = [
    ("dense-zero", "(7,)", "Dense(0)"),
    ("dense-negative", "(7,)", "Dense(-2)"),
    ("dense-float", "(7,)", "Dense(2.0)"),
    ("dense-bool", "(7,)", "Dense(True)"),
    ("dense-bad-activation", "(7,)", "Dense(3, activation='relu7')"),
    ("dense-lora-with-constraint", "(7,)", "Dense(3, lora_rank=2, kernel_constraint='max_norm')"),
    ("dense-lora-zero", "(7,)", "Dense(3, lora_rank=0)"),
    ("dense-lora-negative", "(7,)", "Dense(3, lora_rank=-1)"),
    ("dense-quantization-none", "(7,)", "Dense(3, quantization_config=None)"),
    ("flatten-bad-format", IMAGE, "Flatten(data_format='NCHW')"),
    ("flatten-positional-format", IMAGE, "Flatten('channels_first')"),
    ("reshape-size", "(6, 4)", "Reshape((5, 5))"),
    ("reshape-two-unknowns", "(6, 4)", "Reshape((-1, -1))"),
    ("reshape-below-minus-one", "(6, 4)", "Reshape((-2, 12))"),
    ("reshape-not-divisible", "(6, 4)", "Reshape((7, -1))"),
    ("reshape-int", "(6, 4)", "Reshape(24)"),
    ("reshape-zero-and-unknown", "(6, 4)", "Reshape((0, -1))"),
    ("reshape-none", "(6, 4)", "Reshape((4, None))"),
    ("permute-repeated", "(6, 4)", "Permute((1, 1))"),
    ("permute-batch", "(6, 4)", "Permute((0, 1))"),
    ("permute-wrong-rank", "(6, 4)", "Permute((2, 3, 1))"),
    ("permute-list", "(6, 4)", "Permute([2, 1])"),
    ("leaky-negative", IMAGE, "LeakyReLU(-0.1)"),
    ("leaky-none", IMAGE, "LeakyReLU(None)"),
    ("leaky-string", IMAGE, "LeakyReLU('a')"),
    ("leaky-alpha-negative", IMAGE, "LeakyReLU(alpha=-1)"),
    ("leaky-alpha-wins", IMAGE, "LeakyReLU(negative_slope=-1, alpha=0.2)"),
    ("elu-string", IMAGE, "ELU('a')"),
    ("elu-negative", IMAGE, "ELU(-1.0)"),
    ("prelu-shared-too-far", IMAGE, "PReLU(shared_axes=[4])"),
    ("prelu-shared-negative-too-far", IMAGE, "PReLU(shared_axes=[-3])"),
    ("prelu-shared-negative", IMAGE, "PReLU(shared_axes=[-2])"),
    ("prelu-initializer", IMAGE, "PReLU(alpha_initializer='ones')"),
    ("prelu-bad-initializer", IMAGE, "PReLU(alpha_initializer='nope')"),
    ("softmax-axis-out-of-range", IMAGE, "Softmax(axis=4)"),
    ("softmax-axis-twice", IMAGE, "Softmax(axis=[1, 1])"),
    ("softmax-axis-twice-negative", IMAGE, "Softmax(axis=[1, -3])"),
    ("softmax-axis-string", IMAGE, "Softmax(axis='a')"),
    ("dropout-above-one", IMAGE, "Dropout(1.5)"),
    ("dropout-negative", IMAGE, "Dropout(-0.1)"),
    ("dropout-string", IMAGE, "Dropout('a')"),
    ("dropout-one", IMAGE, "Dropout(1)"),
    ("dropout-bool", IMAGE, "Dropout(True)"),
    ("dropout-noise-shape-string", IMAGE, "Dropout(0.5, noise_shape='ab')"),
    ("dropout-noise-shape-zero", IMAGE, "Dropout(0.5, noise_shape=(None, 0, 1, 3))"),
    ("dropout-seed-float", IMAGE, "Dropout(0.5, seed=1.5)"),
    ("dropout-zero-seed-unchecked", IMAGE, "Dropout(0.0, seed=1.5)"),
    ("spatial-dropout-trainable", IMAGE, "SpatialDropout2D(0.5, trainable=False)"),
    ("spatial-dropout-rank", "(6, 4)", "SpatialDropout2D(0.5)"),
    ("spatial-dropout1d-seed", "(6, 4)", "SpatialDropout1D(0.5, 'channels_first')"),
    ("spatial-dropout-format", IMAGE, "SpatialDropout2D(0.5, data_format='bad')"),
    ("spatial-dropout3d-rank", IMAGE, "SpatialDropout3D(0.5)"),
    ("gaussian-noise-above-one", IMAGE, "GaussianNoise(1.5)"),
    ("gaussian-noise-seed", IMAGE, "GaussianNoise(0.5, seed='x')"),
    ("gaussian-dropout-above-one", IMAGE, "GaussianDropout(2)"),
    ("alpha-dropout-noise-shape-unchecked", IMAGE, "AlphaDropout(0.5, noise_shape='junk')"),
    ("activity-regularization-negative", IMAGE, "ActivityRegularization(-1)"),
    ("activity-regularization-none", IMAGE, "ActivityRegularization(l1=None)"),
    ("activity-regularization-own-regularizer", IMAGE, "ActivityRegularization(activity_regularizer='l2')"),
    ("random-flip-factor", IMAGE, "RandomFlip(factor=0.5)"),
    ("random-flip-seed", IMAGE, "RandomFlip(seed='a')"),
    ("random-flip-any-mode", IMAGE, "RandomFlip(mode='bogus')"),
    ("random-flip-boxes", IMAGE, "RandomFlip(bounding_box_format='xyxy')"),
    ("random-flip-rank2", "(7,)", "RandomFlip()"),
    ("random-rotation-above-one", IMAGE, "RandomRotation(2)"),
    ("random-rotation-pair-loose", IMAGE, "RandomRotation((-2, 0.5))"),
    ("random-rotation-fill-mode", IMAGE, "RandomRotation(0.2, fill_mode='bad')"),
    ("random-rotation-interpolation", IMAGE, "RandomRotation(0.2, interpolation='bicubic')"),
    ("random-rotation-none", IMAGE, "RandomRotation(None)"),
    ("random-rotation-triple", IMAGE, "RandomRotation((1, 2, 3))"),
    ("random-zoom-minus-one", IMAGE, "RandomZoom(-1.0)"),
    ("random-zoom-one", IMAGE, "RandomZoom(1.0)"),
    ("random-zoom-width-range", IMAGE, "RandomZoom(0.2, (0.1, 2))"),
    ("random-zoom-factor", IMAGE, "RandomZoom(0.2, factor=0.1)"),
    ("random-translation-range", IMAGE, "RandomTranslation(1.5, 0.1)"),
    ("random-translation-ends", IMAGE, "RandomTranslation(-1, 1)"),
    ("random-contrast-range", IMAGE, "RandomContrast(1.5)"),
    ("random-contrast-pair-loose", IMAGE, "RandomContrast((-2, 0.5))"),
    ("random-contrast-value-range-unchecked", IMAGE, "RandomContrast(0.5, value_range='x')"),
    ("random-brightness-value-range", IMAGE, "RandomBrightness(0.5, value_range=(0, 1, 2))"),
    ("random-brightness-range", IMAGE, "RandomBrightness(2)"),
    ("random-color-degeneration-none", IMAGE, "RandomColorDegeneration(None)"),
    ("random-color-jitter-contrast", IMAGE, "RandomColorJitter(contrast_factor=2)"),
    ("random-color-jitter-factor", IMAGE, "RandomColorJitter(factor=0.5)"),
    ("random-color-jitter-value-range", IMAGE, "RandomColorJitter(brightness_factor=0.2, value_range=5)"),
    ("random-elastic-scale", IMAGE, "RandomElasticTransform(scale=2)"),
    ("random-elastic-mirror", IMAGE, "RandomElasticTransform(fill_mode='mirror')"),
    ("random-erasing-scale-pair", IMAGE, "RandomErasing(scale=(0.5, 2))"),
    ("random-erasing-scale", IMAGE, "RandomErasing(scale=1.5)"),
    ("random-blur-even-kernel", IMAGE, "RandomGaussianBlur(kernel_size=4)"),
    ("random-blur-even-pair", IMAGE, "RandomGaussianBlur(kernel_size=(3, 4))"),
    ("random-blur-sigma", IMAGE, "RandomGaussianBlur(sigma=2)"),
    ("random-grayscale-range", IMAGE, "RandomGrayscale(1.5)"),
    ("random-grayscale-string", IMAGE, "RandomGrayscale('a')"),
    ("random-hue-range", IMAGE, "RandomHue(1.5)"),
    ("random-invert-range", IMAGE, "RandomInvert(2)"),
    ("random-perspective-scale", IMAGE, "RandomPerspective(scale=2)"),
    ("random-perspective-interpolation", IMAGE, "RandomPerspective(interpolation='x')"),
    ("random-posterization-zero", IMAGE, "RandomPosterization(0)"),
    ("random-posterization-nine", IMAGE, "RandomPosterization(9)"),
    ("random-posterization-pair", IMAGE, "RandomPosterization((1, 8))"),
    ("random-saturation-negative", IMAGE, "RandomSaturation(-0.5)"),
    ("random-saturation-range", IMAGE, "RandomSaturation(2)"),
    ("random-sharpness-negative", IMAGE, "RandomSharpness(-0.5)"),
    ("random-shear-negative", IMAGE, "RandomShear(x_factor=-0.1)"),
    ("random-shear-pair", IMAGE, "RandomShear(x_factor=(0.1, 0.2))"),
    ("random-crop-target-size", IMAGE, "RandomCrop(6, 7)"),
    ("random-crop-seed", IMAGE, "RandomCrop(6, 7, seed='s')"),
    ("rescaling-string", IMAGE, "Rescaling('a')"),
    ("rescaling-broadcast", IMAGE, "Rescaling([1.0, 2.0])"),
    ("rescaling-per-channel", IMAGE, "Rescaling([1.0, 2.0, 3.0])"),
    ("normalization-mean-only", IMAGE, "Normalization(mean=1.0)"),
    ("normalization-shapes-differ", IMAGE, "Normalization(mean=[1.0, 2.0], variance=[1.0])"),
    ("normalization-axis-out-of-range", IMAGE, "Normalization(axis=5)"),
    (
        "normalization-mean-does-not-fit",
        IMAGE,
        "Normalization(axis=(1, 2), mean=[1.0, 2.0, 3.0, 4.0, 5.0], variance=[1.0, 2.0, 3.0, 4.0, 5.0])",
    ),
    ("normalization-mean-rank", IMAGE, "Normalization(axis=1, mean=[[1.0]], variance=[[1.0]])"),
    ("normalization-batch-axis", IMAGE, "Normalization(axis=0)"),
    ("resizing-area", IMAGE, "Resizing(4, 4, interpolation='area')"),
    ("resizing-crop-and-pad", IMAGE, "Resizing(4, 4, crop_to_aspect_ratio=True, pad_to_aspect_ratio=True)"),
    ("resizing-fill-mode", IMAGE, "Resizing(4, 4, fill_mode='reflect')"),
    ("resizing-zero", IMAGE, "Resizing(0, 4)"),
]  # fmt: skip


# What Keras raises for each CHECKS row: (exception class, a fragment of its message), or None
# where Keras accepts it; so that an oracle bug is not taken for Keras's rejection.
KERAS_ERRORS = {
    "dense-zero": ("ValueError", "Received an invalid value for `units`, expected a positive"),
    "dense-negative": ("ValueError", "Received an invalid value for `units`, expected a positive"),
    "dense-float": ("ValueError", "Received an invalid value for `units`, expected a positive"),
    "dense-bool": None,
    "dense-bad-activation": (
        "ValueError",
        "Could not interpret activation function identifier: relu7",
    ),
    "dense-lora-with-constraint": (
        "ValueError",
        "Lora is incompatible with kernel constraints. In order to",
    ),
    "dense-lora-zero": None,
    "dense-lora-negative": (
        "ValueError",
        "Cannot convert '(7, -1)' to a shape. Negative dimensions",
    ),
    "dense-quantization-none": None,
    "flatten-bad-format": ("ValueError", "The `data_format` argument must be one of"),
    "flatten-positional-format": None,
    "reshape-size": ("ValueError", "The total size of the tensor must be unchanged. Received:"),
    "reshape-two-unknowns": ("ValueError", "There must be at most one unknown dimension (-1) in"),
    "reshape-below-minus-one": (
        "ValueError",
        "Each dimension in `target_shape` must be a non-negative",
    ),
    "reshape-not-divisible": (
        "ValueError",
        "The total size of the tensor must be unchanged, however,",
    ),
    "reshape-int": ("TypeError", "'int' object is not iterable"),
    "reshape-zero-and-unknown": (
        "ValueError",
        "The total size of the tensor must be unchanged, however,",
    ),
    "reshape-none": None,
    "permute-repeated": (
        "ValueError",
        "Invalid permutation argument `dims` for Permute Layer. The",
    ),
    "permute-batch": ("ValueError", "Invalid permutation argument `dims` for Permute Layer. The"),
    "permute-wrong-rank": (
        "ValueError",
        "Input 0 with name 'None' of layer 'permute' is incompatible",
    ),
    "permute-list": None,
    "leaky-negative": ("ValueError", "The negative_slope value of a Leaky ReLU layer cannot be"),
    "leaky-none": ("ValueError", "The negative_slope value of a Leaky ReLU layer cannot be"),
    "leaky-string": ("TypeError", "'<' not supported between instances of 'str' and 'int'"),
    "leaky-alpha-negative": (
        "ValueError",
        "The negative_slope value of a Leaky ReLU layer cannot be",
    ),
    "leaky-alpha-wins": None,
    "elu-string": ("TypeError", "elu(): argument 'alpha' (position 2) must be Number, not str"),
    "elu-negative": None,
    "prelu-shared-too-far": ("IndexError", "list assignment index out of range"),
    "prelu-shared-negative-too-far": ("IndexError", "list assignment index out of range"),
    "prelu-shared-negative": None,
    "prelu-initializer": None,
    "prelu-bad-initializer": ("ValueError", "Could not interpret initializer identifier: nope"),
    "softmax-axis-out-of-range": (
        "IndexError",
        "Dimension out of range (expected to be in range of [-4, 3],",
    ),
    "softmax-axis-twice": ("RuntimeError", "dim 1 appears multiple times in the list of dims"),
    "softmax-axis-twice-negative": (
        "RuntimeError",
        "dim 1 appears multiple times in the list of dims",
    ),
    "softmax-axis-string": (
        "TypeError",
        "softmax(): argument 'dim' (position 1) must be int, not str",
    ),
    "dropout-above-one": ("ValueError", "Invalid value received for argument `rate`. Expected a"),
    "dropout-negative": ("ValueError", "Invalid value received for argument `rate`. Expected a"),
    "dropout-string": ("TypeError", "'<=' not supported between instances of 'int' and 'str'"),
    "dropout-one": None,
    "dropout-bool": None,
    "dropout-noise-shape-string": (
        "ValueError",
        "Invalid value received for argument `noise_shape`. Expected",
    ),
    "dropout-noise-shape-zero": (
        "ValueError",
        "Invalid value received for argument `noise_shape`. Expected",
    ),
    "dropout-seed-float": ("ValueError", "Argument `seed` must be an integer. Received: seed=1.5"),
    "dropout-zero-seed-unchecked": None,
    "spatial-dropout-trainable": (
        "TypeError",
        "SpatialDropout2D.__init__() got an unexpected keyword",
    ),
    "spatial-dropout-rank": (
        "ValueError",
        "Input 0 with name 'None' of layer 'spatial_dropout2d' is",
    ),
    "spatial-dropout1d-seed": ("ValueError", "Argument `seed` must be an integer. Received:"),
    "spatial-dropout-format": ("ValueError", "The `data_format` argument must be one of"),
    "spatial-dropout3d-rank": (
        "ValueError",
        "Input 0 with name 'None' of layer 'spatial_dropout3d' is",
    ),
    "gaussian-noise-above-one": (
        "ValueError",
        "Invalid value received for argument `stddev`. Expected a",
    ),
    "gaussian-noise-seed": ("ValueError", "Argument `seed` must be an integer. Received: seed=x"),
    "gaussian-dropout-above-one": (
        "ValueError",
        "Invalid value received for argument `rate`. Expected a",
    ),
    "alpha-dropout-noise-shape-unchecked": None,
    "activity-regularization-negative": (
        "ValueError",
        "Invalid value for argument l1: expected a non-negative",
    ),
    "activity-regularization-none": None,
    "activity-regularization-own-regularizer": (
        "TypeError",
        "keras.src.layers.layer.Layer.__init__() got multiple values",
    ),
    "random-flip-factor": ("ValueError", "Layer RandomFlip does not take a `factor` argument."),
    "random-flip-seed": ("ValueError", "Argument `seed` must be an integer. Received: seed=a"),
    "random-flip-any-mode": None,
    "random-flip-boxes": None,
    "random-flip-rank2": ("ValueError", "Expected image tensor to have rank 3 (single image) or 4"),
    "random-rotation-above-one": (
        "ValueError",
        "The `factor` argument should be a number (or a list of two",
    ),
    "random-rotation-pair-loose": None,
    "random-rotation-fill-mode": (
        "NotImplementedError",
        "Unknown `fill_mode` bad. Expected of one ('reflect',",
    ),
    "random-rotation-interpolation": (
        "NotImplementedError",
        "Unknown `interpolation` bicubic. Expected of one",
    ),
    "random-rotation-none": None,
    "random-rotation-triple": (
        "ValueError",
        "The `factor` argument should be a number (or a list of two",
    ),
    "random-zoom-minus-one": (
        "ValueError",
        "The `height_factor` and `width_factor` arguments should be",
    ),
    "random-zoom-one": None,
    "random-zoom-width-range": (
        "ValueError",
        "The `height_factor` and `width_factor` arguments should be",
    ),
    "random-zoom-factor": ("ValueError", "Layer RandomZoom does not take a `factor` argument."),
    "random-translation-range": (
        "ValueError",
        "The `factor` argument should be a number (or a list of two",
    ),
    "random-translation-ends": None,
    "random-contrast-range": (
        "ValueError",
        "The `factor` argument should be a number (or a list of two",
    ),
    "random-contrast-pair-loose": None,
    "random-contrast-value-range-unchecked": None,
    "random-brightness-value-range": (
        "ValueError",
        "The `value_range` argument should be a list of two numbers.",
    ),
    "random-brightness-range": (
        "ValueError",
        "The `factor` argument should be a number (or a list of two",
    ),
    "random-color-degeneration-none": (
        "ValueError",
        "The `factor` argument should be a number (or a list of two",
    ),
    "random-color-jitter-contrast": (
        "ValueError",
        "The `factor` argument should be a number (or a list of two",
    ),
    "random-color-jitter-factor": None,
    "random-color-jitter-value-range": (
        "ValueError",
        "The `value_range` argument should be a list of two numbers.",
    ),
    "random-elastic-scale": (
        "ValueError",
        "The `scale` argument should be a number (or a list of two",
    ),
    "random-elastic-mirror": None,
    "random-erasing-scale-pair": None,
    "random-erasing-scale": (
        "ValueError",
        "The `scale` argument should be a number (or a list of two",
    ),
    "random-blur-even-kernel": (
        "ValueError",
        "kernel_size must be an odd number. Received: kernel_size=4",
    ),
    "random-blur-even-pair": ("ValueError", "kernel_size must be an odd number. Received:"),
    "random-blur-sigma": (
        "ValueError",
        "The `sigma` argument should be a number (or a list of two",
    ),
    "random-grayscale-range": (
        "ValueError",
        "`factor` should be between 0 and 1. Received: factor=1.5",
    ),
    "random-grayscale-string": (
        "TypeError",
        "'<' not supported between instances of 'str' and 'int'",
    ),
    "random-hue-range": (
        "ValueError",
        "The `factor` argument should be a number (or a list of two",
    ),
    "random-invert-range": (
        "ValueError",
        "The `factor` argument should be a number (or a list of two",
    ),
    "random-perspective-scale": (
        "ValueError",
        "The `scale` argument should be a number in the range [0,1].",
    ),
    "random-perspective-interpolation": (
        "NotImplementedError",
        "Unknown `interpolation` x. Expected of one ('nearest',",
    ),
    "random-posterization-zero": (
        "ValueError",
        "The `factor` argument should be a number (or a list of two",
    ),
    "random-posterization-nine": (
        "ValueError",
        "The `factor` argument should be a number (or a list of two",
    ),
    "random-posterization-pair": None,
    "random-saturation-negative": None,
    "random-saturation-range": (
        "ValueError",
        "The `factor` argument should be a number (or a list of two",
    ),
    "random-sharpness-negative": (
        "ValueError",
        "The `factor` argument should be a number (or a list of two",
    ),
    "random-shear-negative": (
        "ValueError",
        "The `factor` argument should be a number (or a list of two",
    ),
    "random-shear-pair": None,
    "random-crop-target-size": None,
    "random-crop-seed": ("ValueError", "Argument `seed` must be an integer. Received: seed=s"),
    "rescaling-string": ("ValueError", "Invalid dtype: str32"),
    "rescaling-broadcast": (
        "RuntimeError",
        "The size of tensor a (3) must match the size of tensor b",
    ),
    "rescaling-per-channel": None,
    "normalization-mean-only": (
        "ValueError",
        "When setting values directly, both `mean` and `variance`",
    ),
    "normalization-shapes-differ": (
        "ValueError",
        "When setting values directly, `mean` and `variance` must",
    ),
    "normalization-axis-out-of-range": (
        "ValueError",
        "All `axis` values must be in the range [-ndim, ndim).",
    ),
    "normalization-mean-does-not-fit": (
        "RuntimeError",
        "The expanded size of the tensor (7) must match the existing",
    ),
    "normalization-mean-rank": (
        "ValueError",
        "The rank of `mean` must be less than or equal to the number",
    ),
    "normalization-batch-axis": (
        "ValueError",
        "All `axis` values to be kept must have a known shape.",
    ),
    "resizing-area": ("ValueError", "Invalid value for argument `interpolation`. Expected of one"),
    "resizing-crop-and-pad": (
        "ValueError",
        "Only one of `pad_to_aspect_ratio` & `crop_to_aspect_ratio`",
    ),
    "resizing-fill-mode": (
        "ValueError",
        "Invalid value for argument `fill_mode`. Only `'constant'`",
    ),
    "resizing-zero": ("RuntimeError", "Input and output sizes should be greater than 0, but got"),
}


@pytest.mark.parametrize(("shape", "call"), [pytest.param(*row[1:], id=row[0]) for row in CHECKS])
def test_constructor_checks_like_keras(request, shape, call):
    text = f"Input(shape={shape})\n{call}\n"
    expected = KERAS_ERRORS.get(request.node.callspec.id, "unrecorded")
    found = keras_error(text)
    if expected is None:
        assert found is None, f"Keras raises {type(found).__name__}: {keras_message(found)}"
    else:
        assert_keras_error(found, None if expected == "unrecorded" else expected)
    keras_refuses = found is not None
    error = _convc_fails(text)
    assert (error is not None) == keras_refuses, (
        f"Keras {'refuses' if keras_refuses else 'accepts'} {call}, convc "
        + ("refuses: " + error.message if error else "accepts")
    )
    if error is not None:
        first = errors_of(error)[0]
        assert first.span is not None and first.span.line == 2, first.message


# -- the inference no-ops, in Keras itself -----------------------------------------------------

REQUIRED_ARGUMENTS = {
    "Dropout": "0.5",
    "SpatialDropout1D": "0.5",
    "SpatialDropout2D": "0.5",
    "SpatialDropout3D": "0.5",
    "GaussianNoise": "0.5",
    "GaussianDropout": "0.5",
    "AlphaDropout": "0.5",
    "RandomRotation": "0.3",
    "RandomZoom": "0.3",
    "RandomTranslation": "0.2, 0.2",
    "RandomContrast": "0.5",
    "RandomBrightness": "0.5",
    "RandomColorDegeneration": "0.5",
    "RandomColorJitter": "brightness_factor=0.5, contrast_factor=0.5, saturation_factor=0.5, "
    "hue_factor=0.5",
    "RandomHue": "0.5",
    "RandomPosterization": "(1, 4)",
    "RandomSaturation": "0.5",
    "RandomSharpness": "0.5",
    "RandomShear": "0.5, 0.5",
    "RandomCrop": "6, 7",
    "RandomGrayscale": "1.0",
}
INPUT_OF = {"SpatialDropout1D": "(6, 7)", "SpatialDropout3D": "(4, 6, 7, 3)"}
NO_OPS = sorted({t.class_name for t in LAYER_TYPES.values() if t.spec_class is PassThroughSpec})


def test_every_random_layer_of_keras_is_known():
    """Every keras.layers.Random* class is compiled as a no-op (RandomCrop at its size)."""
    randoms = {name for name in dir(keras.layers) if name.startswith("Random")}
    assert randoms <= set(NO_OPS)


@pytest.mark.parametrize("name", NO_OPS)
def test_no_op_is_identity_in_keras_and_compiles_to_nothing(name):
    shape = INPUT_OF.get(name, "(6, 7, 3)")
    text = f"Input(shape={shape})\n{name}({REQUIRED_ARGUMENTS.get(name, '')})\n"
    model = keras_model(text)
    x = (np.random.default_rng(0).random((2, *model.inputs[0].shape[1:])) * 255).astype(np.float32)
    np.testing.assert_array_equal(keras_output(model, x), x)  # model(x, training=False)
    np.testing.assert_array_equal(model.predict(x, verbose=0), x)
    assert not any(name == layer.__class__.__name__ and layer.weights for layer in model.layers)
    proto = compile_text(text)
    assert [node.op_type for node in proto.graph.node] == ["Identity"]  # the output's own value
    np.testing.assert_array_equal(onnx_output(proto, x), x)


def test_random_crop_is_refused_off_its_size():
    """Keras's RandomCrop returns its input uncropped at inference yet declares (4, 4)."""
    text = "Input(shape=(6, 7, 3))\nRandomCrop(4, 4)\n"
    model = keras_model(text)
    x = np.random.default_rng(0).random((2, 6, 7, 3)).astype(np.float32)
    assert model.layers[0].compute_output_shape((None, 6, 7, 3)) == (None, 4, 4, 3)
    np.testing.assert_array_equal(keras_output(model, x), x)
    with pytest.raises(ConvcError, match="returns its input uncropped"):
        compile_text(text)


# -- node counts of typical blocks -------------------------------------------------------------

NODE_COUNTS = [
    ("dense-rank2", "Input(shape=(7,))\nDense(5)\n", ["Gemm"]),
    ("dense-relu", "Input(shape=(7,))\nDense(5, activation='relu')\n", ["Gemm", "Relu"]),
    ("dense-rank3", "Input(shape=(9, 4))\nDense(5)\n", ["MatMul", "Add"]),
    ("dense-after-conv-is-1x1-conv", "Input(shape=(6, 7, 3))\nConv2D(4, 3)\nDense(5)\n",
     ["Transpose", "Conv", "Conv", "Transpose"]),
    ("flatten-dense-one-transpose",
     "Input(shape=(8, 8, 3))\nConv2D(4, 3, strides=2, activation='relu')\nFlatten()\nDense(10, activation='softmax')\n",
     ["Transpose", "Conv", "Relu", "Reshape", "Gemm", "Softmax"]),
    ("flatten-channels-first-no-transpose",
     "Input(shape=(3, 8, 8))\nConv2D(4, 3, data_format='channels_first')\nFlatten(data_format='channels_last')\n",
     ["Conv", "Reshape"]),
    ("flatten-unit-spatial-no-transpose", "Input(shape=(6, 7, 3))\nConv2D(5, (6, 7))\nFlatten()\n",
     ["Transpose", "Conv", "Reshape"]),
    ("permute-is-free", "Input(shape=(6, 7, 3))\nConv2D(4, 1)\nPermute((2, 1, 3))\nConv2D(2, 1)\n",
     ["Transpose", "Conv", "Transpose", "Conv", "Transpose"]),
    ("permute-twice-cancels", "Input(shape=(6, 7, 3))\nConv2D(4, 1)\nPermute((2, 1, 3))\nPermute((2, 1, 3))\nConv2D(2, 1)\n",
     ["Transpose", "Conv", "Conv", "Transpose"]),
    ("squeeze-excite-reshape-is-free",
     "x = keras.Input((6, 7, 3))\ny = layers.Conv2D(4, 3)(x)\ns = layers.GlobalAveragePooling2D()(y)\n"
     "s = layers.Reshape((1, 1, 4))(s)\ns = layers.Conv2D(4, 1, activation='sigmoid')(s)\n"
     "model = keras.Model(x, layers.Multiply()([y, s]))\n",
     ["Transpose", "Conv", "GlobalAveragePool", "Conv", "Sigmoid", "Mul", "Transpose"]),
    ("dropout-is-free", "Input(shape=(7,))\nDense(5)\nDropout(0.5)\nDense(2)\n", ["Gemm", "Gemm"]),
    # preprocessing before convolutions runs channels-first: per-channel over whole planes
    ("normalization", "Input(shape=(6, 7, 3))\nNormalization()\nConv2D(2, 1)\n",
     ["Transpose", "Sub", "Div", "Conv", "Transpose"]),
    ("efficientnet-stem", "Input(shape=(6, 7, 3))\nRescaling(0.00392156862745098)\nNormalization()\n"
     "ZeroPadding2D(((0, 1), (0, 1)))\nConv2D(2, 3, strides=2)\n",
     ["Transpose", "Mul", "Sub", "Div", "Conv", "Transpose"]),
    ("normalization-before-a-dense-stays", "Input(shape=(6, 7, 3))\nNormalization()\nDense(2)\n",
     ["Sub", "Div", "MatMul", "Add"]),
    ("rescaling-scale-only", "Input(shape=(6, 7, 3))\nRescaling(0.5)\n", ["Mul"]),
    ("softmax-two-axes", "Input(shape=(6, 7, 3))\nSoftmax(axis=(1, 2))\n",
     ["Reshape", "Softmax", "Reshape"]),
    ("prelu", "Input(shape=(6, 7, 3))\nConv2D(4, 3)\nPReLU(shared_axes=[1, 2])\n",
     ["Transpose", "Conv", "PRelu", "Transpose"]),
    ("center-crop-slice", "Input(shape=(6, 7, 3))\nCenterCrop(4, 5)\n", ["Transpose", "Slice", "Transpose"]),
    ("resizing-bilinear", "Input(shape=(6, 7, 3))\nResizing(9, 14)\n", ["Transpose", "Resize", "Transpose"]),
    ("resizing-nearest", "Input(shape=(6, 7, 3))\nResizing(9, 14, interpolation='nearest')\n",
     ["Transpose", "Gather", "Gather", "Transpose"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "ops"), [pytest.param(*row[1:], id=row[0]) for row in NODE_COUNTS]
)
def test_node_counts(text, ops):
    _, proto = assert_matches_keras(text)
    assert [node.op_type for node in proto.graph.node] == ops


def test_channels_last_classifier_minimum_transposes():
    """An all-channels_last classifier: one Transpose in, none out; without the rewrites, the
    Transpose that Flatten owes (to Keras's height, width, channels order) is there too."""
    text = (
        "Input(shape=(16, 16, 3))\nConv2D(8, 3, strides=2, activation='relu')\n"
        "Conv2D(8, 3, strides=2, activation='relu')\nFlatten()\nDense(16, activation='relu')\n"
        "Dense(4, activation='softmax')\n"
    )
    assert_matches_keras(text)
    proto, plain = compile_text(text), compile_text(text, optimize=False)
    assert sum(n.op_type == "Transpose" for n in proto.graph.node) == 1
    assert sum(n.op_type == "Transpose" for n in plain.graph.node) == 2
    x = np.random.default_rng(4).standard_normal((2, 16, 16, 3)).astype(np.float32)
    np.testing.assert_allclose(onnx_output(proto, x), onnx_output(plain, x), atol=1e-6)


# -- antialias, nearest sizes, argument forms Keras's symbolic shapes do not show ------------


@pytest.mark.parametrize(
    "call",
    [
        "Resizing(3, 4, antialias=True)",
        "Resizing(9, 4, antialias=True)",
        "Resizing(3, 4, interpolation='bicubic', antialias=True)",
        "Resizing(9, 14, interpolation='bicubic_torch', antialias=True)",
        "Resizing(2, 3, interpolation='nearest', antialias=True)",
    ],
)
def test_antialias(call):
    text = f"Input(shape=(6, 7, 3))\n{call}\n"
    assert_matches_keras(text, opset=18)
    for runtime in ("ort", "onnx-reference", "openvino", "tract", "opencv"):
        for target in (runtime, "portable"):  # the runtime's own Resize (opset 28), matrices
            cell = evaluate(text, runtime, target)
            assert cell.status != FAIL, (runtime, target, cell.detail)


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_antialias_before_opset_18_by_matrices(interpolation):
    text = f"Input(shape=(6, 7, 3))\nResizing(3, 9, '{interpolation}', antialias=True)\n"
    _, proto = assert_matches_keras(text, opset=17)
    assert [n.op_type for n in proto.graph.node] == ["Transpose", "MatMul", "MatMul", "Transpose"]


def test_nearest_sizes_accepted_match_torch():
    """convc takes a nearest resize of n to m samples when torch's float32 source index agrees
    with the exact one everywhere; then Keras's output equals the exact gather."""
    rng = np.random.default_rng(0)
    accepted = refused = 0
    for n, m in [*((int(a), int(b)) for a, b in rng.integers(1, 160, (60, 2))), (2, 41), (4, 166)]:
        text = f"Input(shape=({n}, 1, 1))\nResizing({m}, 1, interpolation='nearest')\n"
        try:
            compile_text(text)
        except ConvcError as error:
            assert "rounds in float32" in error.message
            refused += 1
            continue
        accepted += 1
        x = np.arange(n, dtype=np.float32).reshape(1, n, 1, 1)
        got = keras_output(keras_model(text), x).ravel()
        np.testing.assert_array_equal(got, np.minimum((2 * np.arange(m) + 1) * n // (2 * m), n - 1))
    assert accepted > 40 and refused >= 2


def test_reshape_with_none_is_the_unknown_axis():
    """Keras computes Reshape((None, 8)) as -1 when called; its symbolic shape says None."""
    assert resolve_text("Input(shape=(6, 4))\nReshape((None, 8))\n").output_shape == (None, 3, 8)
    assert_matches_keras("Input(shape=(6, 4))\nReshape((None, 8))\n")


def test_rescaling_array_scale_channels_first():
    """Keras reshapes an array scale to (C, 1, 1) under channels_first (read when called)."""
    text = "data_format channels_first\nInput(shape=(3, 4, 5))\nRescaling([1.0, 2.0, 3.0], 0.5)\n"
    model = keras_model(text)
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(np.float32)
    keras.config.set_image_data_format("channels_first")
    try:
        expected = keras_output(model, x)
    finally:
        keras.config.set_image_data_format("channels_last")
    np.testing.assert_allclose(expected, x * np.array([1.0, 2, 3])[:, None, None] + 0.5, atol=1e-6)
    np.testing.assert_allclose(onnx_output(compile_text(text), x), expected, atol=1e-5)


def test_weights_file_from_keras(tmp_path):
    """Normalization's mean, variance and integer count, PReLU's alpha and a LoRA Dense's
    merged kernel load from the .weights.h5 Keras writes."""
    text = (
        "Input(shape=(6, 7, 3))\nNormalization(axis=(1, -1))\nConv2D(4, 3)\n"
        "PReLU(shared_axes=[1])\nFlatten()\nDense(5, lora_rank=2)\n"
    )
    model = keras_model(text)
    random_weights(model, seed=5)
    path = tmp_path / "model.weights.h5"
    model.save_weights(path)
    weights = load(resolve_text(text), path)
    assert weights["normalization"]["count"].dtype == np.int32
    x = input_for(model)
    np.testing.assert_allclose(
        onnx_output(compile_text(text, path), x), keras_output(model, x), atol=1e-4, rtol=1e-4
    )


def test_dense_lora_alpha_is_the_rank():
    """Keras 3.15.1's Dense.build enables LoRA without its lora_alpha: the rank scales."""
    text = "Input(shape=(7,))\nDense(4, lora_rank=2, lora_alpha=8.0)\n"
    model = keras_model(text)
    model.build((None, 7))
    assert model.layers[0].lora_alpha == 2
    assert_matches_keras(text)
