"""convc's layer signatures and argument checks, held against Keras 3 itself.

* Signatures: every registered class takes the parameters of the Keras class, in Keras's
  positional order, with Keras's defaults (read with ``inspect``).
* Rejections: each bad call in the table makes Keras fail (when the model is built or first run)
  and makes convc fail with a located error whose message contains the given fragment.
* Acceptance: each unusual-but-valid call builds in both.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from convc.compiler import compile_text
from convc.diagnostics import ConvcError, errors_of
from convc.layers import LAYER_TYPES
from convc.layers.args import REQUIRED

from oracle import (
    assert_keras_error,
    keras_class,
    keras_error,
    keras_message,
    keras_model,
)


@pytest.mark.parametrize("name", sorted(LAYER_TYPES))
def test_signature_matches_keras(name):
    ours = LAYER_TYPES[name]
    theirs = inspect.signature(keras_class(ours).__init__).parameters
    expected = [
        (p.name, p.default)
        for p in theirs.values()
        if p.name != "self" and p.kind is not inspect.Parameter.VAR_KEYWORD
    ]
    own = [
        (p.name, inspect.Parameter.empty if p.default is REQUIRED else p.default)
        for p in ours.own_params
        if not p.keyword_only
    ]
    rank = ours.rank

    def same(ours_default, keras_default):  # Keras writes 2-D/3-D defaults as tuples
        return ours_default == keras_default or (
            isinstance(keras_default, tuple)
            and ours_default == keras_default[0]
            and keras_default == (keras_default[0],) * rank
        )

    assert [n for n, _ in own] == [n for n, _ in expected]
    for (name_, default), (_, keras_default) in zip(own, expected, strict=True):
        assert same(default, keras_default), (name_, default, keras_default)
    keyword_only = {p.name for p in ours.signature if p.keyword_only}
    named = keyword_only | {n for n, _ in own}  # SpatialDropout, RandomCrop: name positional
    assert named >= {"name", "dtype", "trainable", "autocast", "input_shape", "input_dim"}


REJECTED = [
    # (id, layer call on the given input, expected fragment of convc's message)
    ("filters-zero", "(8, 8, 3)", "Conv2D(0, 3)", "'filters' must be a positive integer"),
    (
        "filters-negative",
        "(8, 8, 3)",
        "Conv2DTranspose(-1, 3)",
        "'filters' must be a positive integer",
    ),
    ("groups-zero", "(8, 8, 4)", "Conv2D(4, 3, groups=0)", "'groups' must be a positive integer"),
    ("groups-not-dividing-filters", "(8, 8, 4)", "Conv2D(3, 3, groups=2)", "divisible by groups=2"),
    (
        "groups-not-dividing-channels",
        "(8, 8, 3)",
        "Conv2D(4, 3, groups=2)",
        "which groups=2 does not divide",
    ),
    ("kernel-zero", "(8, 8, 3)", "Conv2D(4, 0)", "'kernel_size'"),
    ("kernel-wrong-length", "(8, 8, 3)", "Conv2D(4, (3, 3, 3))", "'kernel_size' must be"),
    ("kernel-float", "(8, 8, 3)", "Conv2D(4, 3.0)", "'kernel_size' must be"),
    ("strides-zero", "(8, 8, 3)", "Conv2D(4, 3, strides=0)", "'strides'"),
    ("dilation-zero", "(9, 3)", "Conv1D(4, 3, dilation_rate=0)", "'dilation_rate'"),
    (
        "strides-with-dilation",
        "(8, 8, 3)",
        "Conv2D(4, 3, strides=2, dilation_rate=2)",
        "cannot be combined",
    ),
    (
        "strides-with-dilation-mixed-axes",
        "(8, 8, 3)",
        "Conv2D(4, 3, strides=(2, 1), dilation_rate=(1, 2))",
        "cannot be combined",
    ),
    (
        "transpose-strides-with-dilation",
        "(8, 8, 3)",
        "Conv2DTranspose(4, 3, strides=2, dilation_rate=2)",
        "cannot be combined",
    ),
    ("padding-unknown", "(8, 8, 3)", "Conv2D(4, 3, padding='full')", "'padding' must be one of"),
    (
        "padding-causal-conv2d",
        "(8, 8, 3)",
        "Conv2D(4, 3, padding='causal')",
        "only supported by Conv1D",
    ),
    (
        "padding-causal-transpose",
        "(9, 3)",
        "Conv1DTranspose(4, 3, padding='causal')",
        "only supported by Conv1D",
    ),
    (
        "padding-causal-depthwise",
        "(9, 3)",
        "DepthwiseConv1D(3, padding='causal')",
        "only supported by Conv1D",
    ),
    (
        "padding-causal-separable",
        "(9, 3)",
        "SeparableConv1D(4, 3, padding='causal')",
        "only supported by Conv1D",
    ),
    (
        "data_format-unknown",
        "(8, 8, 3)",
        "Conv2D(4, 3, data_format='NHWC')",
        "'data_format' must be one of",
    ),
    (
        "output_padding-equals-stride",
        "(8, 8, 3)",
        "Conv2DTranspose(4, 3, strides=2, output_padding=2)",
        "must be smaller than",
    ),
    (
        "output_padding-stride1",
        "(9, 3)",
        "Conv1DTranspose(4, 3, output_padding=1)",
        "must be smaller than",
    ),
    (
        "depth_multiplier-zero",
        "(8, 8, 3)",
        "DepthwiseConv2D(3, depth_multiplier=0)",
        "'depth_multiplier'",
    ),
    ("activation-unknown", "(8, 8, 3)", "Conv2D(4, 3, activation='relu7')", "unknown activation"),
    ("activation-wrong-case", "(8, 8, 3)", "Conv2D(4, 3, activation='ReLU')", "unknown activation"),
    (
        "initializer-unknown",
        "(8, 8, 3)",
        "Conv2D(4, 3, kernel_initializer='glorot')",
        "initializer",
    ),
    ("unknown-keyword", "(8, 8, 3)", "Conv2D(4, 3, paddings='same')", "has no argument 'paddings'"),
    ("too-many-positional", "(9, 3)", "Cropping1D(1, 2)", "at most 1 positional"),
    (
        "missing-filters",
        "(8, 8, 3)",
        "Conv2D(kernel_size=3)",
        "missing its required argument 'filters'",
    ),
    ("valid-kernel-too-large", "(4, 4, 3)", "Conv2D(4, 5)", "would give an output of length 0"),
    ("valid-dilated-kernel-too-large", "(6, 3)", "Conv1D(4, 3, dilation_rate=3)", "spans 7"),
    ("depthwise-kernel-too-large", "(4, 4, 3)", "DepthwiseConv2D(5)", "would give an output"),
    ("separable-kernel-too-large", "(4, 3)", "SeparableConv1D(2, 5)", "would give an output"),
    ("wrong-rank", "(8, 8, 3)", "Conv1D(4, 3)", "expects a 3-D input"),
    ("wrong-rank-3d", "(8, 8, 3)", "Conv3D(4, 3)", "expects a 5-D input"),
    ("cropping-too-large", "(6, 6, 3)", "Cropping2D(3)", "leaving nothing"),
    ("cropping1d-too-large", "(4, 3)", "Cropping1D((2, 2))", "leaving nothing"),
    ("cropping-negative", "(6, 6, 3)", "Cropping2D(-1)", "cannot be negative"),
    ("cropping1d-negative", "(6, 3)", "Cropping1D(-1)", "cannot be negative"),
    ("cropping-wrong-length", "(6, 6, 3)", "Cropping2D((1, 2, 3))", "must have 2 entries"),
    ("cropping-negative-entry", "(6, 6, 3)", "Cropping2D(((1, -1), 0))", "cannot be negative"),
    (
        "zero_padding-negative-entry",
        "(6, 6, 3)",
        "ZeroPadding2D(((1, -1), 0))",
        "cannot be negative",
    ),
    ("zero_padding1d-negative", "(6, 3)", "ZeroPadding1D(-1)", "cannot be negative"),
    ("zero_padding-float", "(6, 6, 3)", "ZeroPadding2D(1.5)", "'padding' must be an int"),
    ("up_sampling1d-tuple", "(6, 3)", "UpSampling1D((2,))", "'size' must be an integer"),
    ("up_sampling1d-zero", "(6, 3)", "UpSampling1D(0)", "'size' must be"),
    ("up_sampling2d-zero", "(6, 6, 3)", "UpSampling2D((0, 2))", "'size' must be"),
    (
        "up_sampling2d-interpolation-unknown",
        "(6, 6, 3)",
        "UpSampling2D(interpolation='cubic')",
        "'interpolation' must be one of",
    ),
    (
        "up_sampling2d-interpolation-area",
        "(6, 6, 3)",
        "UpSampling2D(interpolation='area')",
        "only on the TensorFlow backend",
    ),
    ("glu-odd", "(9, 3)", "Conv1D(5, 3, activation='glu')", "splits the last axis in halves"),
    ("name-with-slash", "(9, 3)", "Conv1D(4, 3, name='a/b')", "cannot contain '/'"),
    (
        "lora-with-constraint",
        "(8, 8, 3)",
        "Conv2D(4, 3, lora_rank=2, kernel_constraint='max_norm')",
        "lora_rank",
    ),
    # pooling
    ("pool_size-zero", "(8, 8, 3)", "MaxPooling2D(0)", "'pool_size' must be > 0"),
    ("pool-strides-zero", "(8, 8, 3)", "MaxPooling2D(2, strides=0)", "'strides' must be > 0"),
    ("pool-strides-negative", "(9, 3)", "AveragePooling1D(2, -1)", "'strides' must be > 0"),
    ("pool-padding-upper", "(8, 8, 3)", "MaxPooling2D(padding='SAME')", "lower case"),
    ("pool-padding-mixed-case", "(8, 8, 3)", "AvgPool2D(2, padding='Valid')", "lower case"),
    ("pool-padding-causal", "(9, 3)", "MaxPooling1D(padding='causal')", "must be one of"),
    ("pool-too-large", "(3, 8, 3)", "MaxPooling2D(4)", "would give an output of length 0"),
    ("pool-too-large-strided", "(2, 3)", "AveragePooling1D(3, 1)", "output of length 0"),
    ("average-pool-size-missing", "(8, 8, 3)", "AveragePooling2D()", "'pool_size'"),
    ("pool_size-bool", "(8, 8, 3)", "MaxPooling2D(True)", "fails when the layer runs"),
    ("pool_size-wrong-length", "(5, 6, 7, 3)", "MaxPooling3D((2, 2))", "tuple of 3 integers"),
    ("pool-wrong-rank", "(8, 8, 3)", "MaxPooling3D()", "expects a 5-D input"),
    ("pool-data_format-unknown", "(8, 8, 3)", "MaxPooling2D(data_format='NHWC')", "must be one"),
    ("global-keepdims-int", "(8, 8, 3)", "GlobalAveragePooling2D(keepdims=1)", "True or False"),
    ("global-keepdims-string", "(9, 3)", "GlobalMaxPool1D(keepdims='yes')", "True or False"),
    ("global-wrong-rank", "(8, 8, 3)", "GlobalMaxPooling1D()", "expects a 3-D input"),
]


# What Keras raises for each REJECTED row: (exception class, a fragment of its message), so that
# an oracle bug is not taken for Keras's rejection. A new row prints what to add here.
KERAS_ERRORS = {
    "filters-zero": ("ValueError", "Invalid value for argument `filters`. Expected a strictly"),
    "filters-negative": ("ValueError", "Invalid value for argument `filters`. Expected a strictly"),
    "groups-zero": ("ValueError", "The number of groups must be a positive integer. Received:"),
    "groups-not-dividing-filters": (
        "ValueError",
        "The number of filters must be evenly divisible by the",
    ),
    "groups-not-dividing-channels": (
        "ValueError",
        "The number of input channels must be evenly divisible by",
    ),
    "kernel-zero": ("ValueError", "The `kernel_size` argument must be a tuple of 2 integers."),
    "kernel-wrong-length": (
        "ValueError",
        "The `kernel_size` argument must be a tuple of 2 integers.",
    ),
    "kernel-float": ("ValueError", "The `kernel_size` argument must be a tuple of 2 integers."),
    "strides-zero": ("ValueError", "The `strides` argument must be a tuple of 2 integers."),
    "dilation-zero": ("ValueError", "The `dilation_rate` argument must be a tuple of 1 integers."),
    "strides-with-dilation": ("ValueError", "`strides > 1` not supported in conjunction with"),
    "strides-with-dilation-mixed-axes": (
        "ValueError",
        "`strides > 1` not supported in conjunction with",
    ),
    "transpose-strides-with-dilation": (
        "ValueError",
        "`strides > 1` not supported in conjunction with",
    ),
    "padding-unknown": ("ValueError", "The `padding` argument must be a list/tuple or one of"),
    "padding-causal-conv2d": (
        "ValueError",
        "The `padding` argument must be a list/tuple or one of",
    ),
    "padding-causal-transpose": (
        "ValueError",
        "The `padding` argument must be a list/tuple or one of",
    ),
    "padding-causal-depthwise": (
        "ValueError",
        "The `padding` argument must be a list/tuple or one of",
    ),
    "padding-causal-separable": (
        "ValueError",
        "The `padding` argument must be a list/tuple or one of",
    ),
    "data_format-unknown": ("ValueError", "The `data_format` argument must be one of"),
    "output_padding-equals-stride": (
        "ValueError",
        "`output_padding` must be strictly less than `strides` for",
    ),
    "output_padding-stride1": (
        "ValueError",
        "`output_padding` must be strictly less than `strides` for",
    ),
    "depth_multiplier-zero": (
        "ValueError",
        "Invalid value for argument `depth_multiplier`. Expected a",
    ),
    "activation-unknown": (
        "ValueError",
        "Could not interpret activation function identifier: relu7",
    ),
    "activation-wrong-case": (
        "ValueError",
        "Could not interpret activation function identifier: ReLU",
    ),
    "initializer-unknown": ("ValueError", "Could not interpret initializer identifier: glorot"),
    "unknown-keyword": ("ValueError", "Unrecognized keyword arguments passed to Conv2D:"),
    "too-many-positional": ("TypeError", "Cropping1D.__init__() takes from 1 to 2 positional"),
    "missing-filters": ("TypeError", "Conv2D.__init__() missing 1 required positional argument:"),
    "valid-kernel-too-large": (
        "ValueError",
        "Computed output size would be zero or negative. Received",
    ),
    "valid-dilated-kernel-too-large": (
        "ValueError",
        "Computed output size would be zero or negative. Received",
    ),
    "depthwise-kernel-too-large": (
        "ValueError",
        "Computed output size would be zero or negative. Received",
    ),
    "separable-kernel-too-large": (
        "ValueError",
        "Computed output size would be zero or negative. Received",
    ),
    "wrong-rank": ("ValueError", "Kernel shape must have the same length as input, but"),
    "wrong-rank-3d": ("ValueError", "Input 0 with name 'None' of layer 'conv3d' is incompatible"),
    "cropping-too-large": (
        "ValueError",
        "Values in `cropping` argument should be smaller than the",
    ),
    "cropping1d-too-large": (
        "ValueError",
        "`cropping` parameter of `Cropping1D` layer must be smaller",
    ),
    "cropping-negative": ("ValueError", "`cropping` cannot be negative. Received: cropping=-1."),
    "cropping1d-negative": ("ValueError", "The `cropping` argument must be a tuple of 2 integers."),
    "cropping-wrong-length": (
        "ValueError",
        "`cropping` should have two elements. Received: cropping=(1,",
    ),
    "cropping-negative-entry": (
        "ValueError",
        "The `1st entry of cropping` argument must be a tuple of 2",
    ),
    "zero_padding-negative-entry": (
        "ValueError",
        "The `1st entry of padding` argument must be a tuple of 2",
    ),
    "zero_padding1d-negative": (
        "ValueError",
        "The `padding` argument must be a tuple of 2 integers.",
    ),
    "zero_padding-float": ("ValueError", "`padding` should be either an int, a tuple of 2 ints"),
    "up_sampling1d-tuple": (
        "TypeError",
        "Expected an integer value for `size`, got <class 'tuple'>.",
    ),
    "up_sampling1d-zero": ("ValueError", "Argument `size` should be a positive integer. Received:"),
    "up_sampling2d-zero": (
        "ValueError",
        "The `size` argument must be a tuple of 2 integers. Received",
    ),
    "up_sampling2d-interpolation-unknown": (
        "ValueError",
        "Invalid value for argument `interpolation`. Expected of one",
    ),
    "up_sampling2d-interpolation-area": (
        "ValueError",
        "Invalid value for argument `interpolation`. Expected of one",
    ),
    "glu-odd": ("RuntimeError", "Halving dimension must be even, but dimension 2 is size 5"),
    "name-with-slash": ("ValueError", "Argument `name` must be a string and cannot contain"),
    "lora-with-constraint": (
        "ValueError",
        "Lora is incompatible with kernel constraints. In order to",
    ),
    "pool_size-zero": ("ValueError", "The `pool_size` argument must be a tuple of 2 integers."),
    "pool-strides-zero": ("ZeroDivisionError", "division by zero"),
    "pool-strides-negative": (
        "ValueError",
        "The `strides` argument must be a tuple of 1 integers.",
    ),
    "pool-padding-upper": ("ValueError", "Argument `padding` must be either 'valid' or 'same'."),
    "pool-padding-mixed-case": (
        "ValueError",
        "Argument `padding` must be either 'valid' or 'same'.",
    ),
    "pool-padding-causal": ("ValueError", "Argument `padding` must be either 'valid' or 'same'."),
    "pool-too-large": ("ValueError", "Computed output size would be zero or negative. Received:"),
    "pool-too-large-strided": (
        "ValueError",
        "Computed output size would be zero or negative. Received:",
    ),
    "average-pool-size-missing": (
        "TypeError",
        "AveragePooling2D.__init__() missing 1 required positional",
    ),
    "pool_size-bool": ("TypeError", "max_pool2d(): argument 'kernel_size' (position 2) must be"),
    "pool_size-wrong-length": (
        "ValueError",
        "The `pool_size` argument must be a tuple of 3 integers.",
    ),
    "pool-wrong-rank": ("ValueError", "Input 0 with name 'None' of layer 'max_pooling3d' is"),
    "pool-data_format-unknown": ("ValueError", "The `data_format` argument must be one of"),
    "global-keepdims-int": (
        "TypeError",
        "mean() received an invalid combination of arguments - got",
    ),
    "global-keepdims-string": ("TypeError", "amax(): argument 'keepdim' must be bool, not str"),
    "global-wrong-rank": (
        "ValueError",
        "Input 0 with name 'None' of layer 'global_max_pooling1d' is",
    ),
}


@pytest.mark.parametrize(
    ("shape", "call", "fragment"), [pytest.param(*row[1:], id=row[0]) for row in REJECTED]
)
def test_rejected_like_keras(request, shape, call, fragment):
    text = f"Input(shape={shape})\n{call}\n"
    assert_keras_error(keras_error(text), KERAS_ERRORS.get(request.node.callspec.id))
    with pytest.raises(ConvcError) as caught:
        compile_text(text)
    error = errors_of(caught.value)[0]
    assert fragment in error.message + (error.help or "")
    assert error.span is not None and error.span.line == 2


ACCEPTED = [
    ("zero_padding2d-negative-int-crops", "(6, 6, 3)", "ZeroPadding2D(-1)"),
    (
        "depthwise-strides-and-dilation",
        "(9, 9, 3)",
        "DepthwiseConv2D(3, strides=2, dilation_rate=2)",
    ),
    (
        "separable-strides-and-dilation",
        "(9, 3)",
        "SeparableConv1D(2, 3, strides=2, dilation_rate=2, padding='same')",
    ),
    ("kernel-size-bool", "(8, 8, 3)", "Conv2D(2, True)"),
    ("kernel-size-list", "(8, 8, 3)", "Conv2D(2, [3, 1])"),
    ("padding-mixed-case", "(8, 8, 3)", "Conv2D(2, 3, padding='Same')"),
    ("data_format-upper", "(3, 8, 8)", "Conv2D(2, 3, data_format='CHANNELS_FIRST')"),
    ("transpose-valid-kernel-larger-than-input", "(1, 3)", "Conv1DTranspose(2, 5)"),
    ("same-kernel-larger-than-input", "(2, 2, 3)", "Conv2D(2, 5, padding='same')"),
    (
        "initializer-by-call",
        "(8, 8, 3)",
        "Conv2D(2, 3, kernel_initializer=keras.initializers.HeNormal(seed=1))",
    ),
    (
        "trainable-false",
        "(8, 8, 3)",
        "Conv2D(2, 3, trainable=False, dtype='float32', autocast=False)",
    ),
    ("activity-regularizer", "(8, 8, 3)", "Conv2D(2, 3, activity_regularizer='l2')"),
    ("pool_size-list", "(8, 8, 3)", "MaxPooling2D([3, 1])"),
    ("pool-strides-larger-than-pool", "(9, 8, 3)", "AveragePooling2D(2, 3)"),
    ("pool-same-larger-than-input", "(2, 3, 3)", "AveragePooling2D(5, padding='same')"),
    ("pool-valid-equals-input", "(3, 3, 3)", "MaxPooling2D(3)"),
    ("pool-data_format-upper", "(3, 8, 8)", "MaxPooling2D(data_format='CHANNELS_FIRST')"),
    ("pool-name-positional", "(9, 3)", "MaxPooling1D(2, None, 'same', None, 'p')"),
    ("global-keepdims-positional", "(3, 8, 8)", "GlobalAvgPool2D('channels_first', True)"),
]


@pytest.mark.parametrize(("shape", "call"), [pytest.param(*row[1:], id=row[0]) for row in ACCEPTED])
def test_accepted_like_keras(shape, call):
    text = f"Input(shape={shape})\n{call}\n"
    error = keras_error(text)
    assert error is None, f"Keras raises {type(error).__name__}: {keras_message(error)}"
    model = keras_model(text)
    proto = compile_text(text)
    assert [d.dim_value for d in proto.graph.output[0].type.tensor_type.shape.dim[1:]] == list(
        np.array(model.outputs[0].shape[1:])
    )
