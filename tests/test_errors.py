"""Bad input gives one located, precise error: the line, the column and the words are asserted.

The table covers syntax (parser states mapped to words), the statement structure of a model,
argument binding and normalization, and shape checks. The command line renders them as
``FILE:LINE:COL: error: ...`` with the source line and carets, exits 1, prints no traceback and
writes nothing.
"""

from __future__ import annotations

import pytest

from convc.cli import main
from convc.compiler import compile_text
from convc.diagnostics import ConvcError, errors_of

I2 = "Input(shape=(8, 8, 3))\n"

BAD = [
    # syntax
    ("missing-comma", "Input(shape=(8, 8, 3))\nConv2D(8 3)\n", 2, 10, "expected ',' or ')'"),
    (
        "unclosed-paren-next-line",
        "Input(shape=(8, 8, 3))\nConv2D(8, 3\nConv2D(4, 3)\n",
        2,
        7,
        "'(' is never closed",
    ),
    ("unclosed-paren-eof", "Input(shape=(8, 8, 3))\nConv2D(8, 3", 2, 7, "'(' is never closed"),
    ("double-comma", I2 + "Conv2D(8,, 3)\n", 2, 10, "expected a value"),
    ("extra-paren", I2 + "Conv2D(8, 3))\n", 2, 13, "unmatched ')'"),
    (
        "two-statements-one-line",
        I2 + "Conv2D(8, 3) Conv2D(4, 3)\n",
        2,
        14,
        "expected the end of the statement",
    ),
    ("name-without-call", I2 + "Conv2D\n", 2, 7, "expected '(' after the layer name"),
    ("unterminated-string", I2 + 'Conv2D(8, 3, padding="same)\n', 2, 22, "unterminated string"),
    (
        "positional-after-keyword",
        I2 + "Conv2D(filters=8, 3)\n",
        2,
        19,
        "positional argument cannot follow",
    ),
    ("keyword-twice", I2 + "Conv2D(8, 3, strides=1, strides=2)\n", 2, 25, "given twice"),
    ("bad-character", I2 + "Conv2D(8, 3, padding=@)\n", 2, 22, "unexpected character '@'"),
    ("missing-value", I2 + "Conv2D(8, 3, padding=)\n", 2, 22, "expected a value"),
    ("mismatched-bracket", I2 + "Conv2D(8, [3, 3))\n", 2, 16, "unmatched ')'; expected ']'"),
    ("statement-is-number", I2 + "3\n", 1, 1, "the model has no layers"),
    ("deep-nesting", I2 + "Conv2D(8, " + "(" * 40 + "\n", 2, 42, "nest more than"),
    # structure
    ("no-input", "Conv2D(8, 3)\n", 1, 1, "input shape is not declared"),
    ("input-twice", I2 + I2 + "Conv2D(8, 3)\n", 2, 1, "must be the first statement"),
    (
        "input-after-layer",
        "Conv2D(8, 3, input_shape=(8, 8, 3))\nInput(shape=(8, 8, 3))\n",
        2,
        1,
        "must be the first",
    ),
    ("no-layers", I2, 1, 1, "the model has no layers"),
    ("input-without-shape", "Input()\nConv2D(8, 3)\n", 1, 1, "needs a shape"),
    ("input-none-dim", "Input(shape=(None, 8, 3))\nConv2D(8, 3)\n", 1, 14, "unknown dimension"),
    ("input-zero-dim", "Input(shape=(0, 8, 3))\nConv2D(8, 3)\n", 1, 14, "positive integer"),
    (
        "input-bad-batch",
        "Input(shape=(8, 8, 3), batch_size=0)\nConv2D(8, 3)\n",
        1,
        35,
        "'batch_size' must be",
    ),
    (
        "input-bad-dtype",
        'Input(shape=(8, 8, 3), dtype="int7")\nConv2D(8, 3)\n',
        1,
        30,
        "unsupported input dtype",
    ),
    ("input-sparse", "Input(shape=(8, 8, 3), sparse=True)\nConv2D(8, 3)\n", 1, 31, "sparse=True"),
    ("unknown-layer", I2 + "Conv2d(8, 3)\n", 2, 1, "unknown layer 'Conv2d'"),
    ("unsupported-keras-layer", I2 + "LSTM(8)\n", 2, 1, "does not support"),
    ("not-a-layers-module", I2 + "keras.ops.Conv2D(8, 3)\n", 2, 1, "does not name a Keras layer"),
    (
        "duplicate-name",
        I2 + "Conv2D(8, 3, name='a')\nConv2D(8, 3, name='a')\n",
        3,
        19,
        "already used",
    ),
    (
        "auto-name-collides",
        I2 + "Conv2D(8, 3, name='conv2d')\nConv2D(8, 3)\n",
        3,
        1,
        "already used",
    ),
    ("unknown-directive", "modle x\n" + I2 + "Conv2D(8, 3)\n", 1, 1, "unknown directive 'modle'"),
    (
        "bad-data-format-directive",
        "data_format NHWC\n" + I2 + "Conv2D(8, 3)\n",
        1,
        13,
        "data_format must be",
    ),
    ("model-named-twice", "model a\nmodel b\n" + I2 + "Conv2D(8, 3)\n", 2, 1, "named twice"),
    ("layer-dtype", I2 + "Conv2D(8, 3, dtype='float16')\n", 2, 20, "compute in float32"),
    # arguments
    (
        "unknown-keyword-suggestion",
        I2 + "Conv2D(8, 3, stride=2)\n",
        2,
        14,
        "has no argument 'stride'",
    ),
    ("too-many-positional", I2 + "ZeroPadding2D(1, None, 3)\n", 2, 24, "at most 2 positional"),
    ("missing-required", I2 + "Conv2D()\n", 2, 1, "missing its required argument 'filters'"),
    ("string-filters", I2 + "Conv2D('8', 3)\n", 2, 8, "'filters' must be an integer"),
    ("float-kernel", I2 + "Conv2D(8, 2.5)\n", 2, 11, "'kernel_size' must be"),
    ("bool-use_bias", I2 + "Conv2D(8, 3, use_bias='yes')\n", 2, 23, "True or False"),
    ("call-as-literal", I2 + "Conv2D(8, foo(3))\n", 2, 11, "unknown name 'foo'"),
    ("padding-typo", I2 + "Conv2D(8, 3, padding='smae')\n", 2, 22, "did you mean 'same'"),
    (
        "strides-dilation",
        I2 + "Conv2D(8, 3, strides=2, dilation_rate=2)\n",
        2,
        22,
        "cannot be combined",
    ),
    # shapes
    ("kernel-too-large", "Input(shape=(4, 4, 3))\nConv2D(8, 5)\n", 2, 11, "output of length 0"),
    ("crop-too-large", "Input(shape=(4, 4, 3))\nCropping2D(2)\n", 2, 12, "leaving nothing"),
    ("rank-mismatch", I2 + "Conv1D(8, 3)\n", 2, 1, "expects a 3-D input"),
    (
        "shape-error-later-layer",
        I2 + "Conv2D(8, 3)\nConv2D(8, 3)\nConv2D(8, 3)\nConv2D(8, 3)\n",
        5,
        11,
        "output of length 0",
    ),
    # more structure and arguments
    (
        "keras2-both-input-shapes",
        "Conv2D(8, 3, input_shape=(8, 8, 3), batch_input_shape=(1, 8, 8, 3))\n",
        1,
        55,
        "not both",
    ),
    (
        "keras2-input_shape-not-tuple",
        "Conv2D(8, 3, input_shape='8x8')\n",
        1,
        26,
        "must be a tuple of dimensions",
    ),
    (
        "inputlayer-input_tensor",
        "InputLayer(shape=(8, 8, 3), input_tensor=1)\nConv2D(8, 3)\n",
        1,
        42,
        "'input_tensor' cannot be used",
    ),
    (
        "input-shape-and-batch_shape",
        "Input(shape=(8, 8, 3), batch_shape=(1, 8, 8, 3))\nConv2D(8, 3)\n",
        1,
        36,
        "not both",
    ),
    (
        "set_image_data_format-bad",
        I2 + "keras.config.set_image_data_format('NCHW')\nConv2D(8, 3)\n",
        2,
        36,
        "data_format must be",
    ),
    (
        "data_format-call-extra-arg",
        I2 + "set_image_data_format('channels_last', 1)\nConv2D(8, 3)\n",
        2,
        40,
        "at most 1 positional argument,",
    ),
    (
        "cropping2d-wrong-pair",
        I2 + "Cropping2D(((1, 2, 3), 0))\n",
        2,
        12,
        "1st entry of cropping must be",
    ),
    (
        "zero_padding3d-wrong-length",
        "Input(shape=(4, 4, 4, 1))\nZeroPadding3D((1, 1))\n",
        2,
        15,
        "must have 3 entries",
    ),
    (
        "initializer-misspelt",
        I2 + "Conv2D(8, 3, kernel_initializer='he_normall')\n",
        2,
        33,
        "unknown initializer 'he_normall'",
    ),
    (
        "initializer-bad-arg",
        I2 + "Conv2D(8, 3, kernel_initializer=VarianceScaling(mode='fan_middle'))\n",
        2,
        54,
        "'mode' must be one of",
    ),
    (
        "initializer-unknown-kwarg",
        I2 + "Conv2D(8, 3, kernel_initializer=HeNormal(sed=1))\n",
        2,
        42,
        "HeNormal has no argument 'sed'",
    ),
    (
        "initializer-dict-no-class",
        I2 + "Conv2D(8, 3, kernel_initializer={'config': {}})\n",
        2,
        33,
        "needs a 'class_name'",
    ),
    (
        "initializer-dict-bad-key",
        I2 + "Conv2D(8, 3, kernel_initializer={[1]: 2})\n",
        2,
        34,
        "unhashable type: 'list'",
    ),
    (
        "regularizer-unknown",
        I2 + "Conv2D(8, 3, kernel_regularizer='l3')\n",
        2,
        33,
        "unknown regularizer 'l3'",
    ),
    (
        "constraint-bad-arg",
        I2 + "Conv2D(8, 3, kernel_constraint=MaxNorm('x'))\n",
        2,
        40,
        "'max_value' must be a number",
    ),
    ("name-not-string", I2 + "Conv2D(8, 3, name=5)\n", 2, 19, "'name' must be a string"),
    ("empty-name", I2 + "Conv2D(8, 3, name='')\n", 2, 19, "must be non-empty"),
    ("trainable-not-bool", I2 + "Conv2D(8, 3, trainable=1)\n", 2, 24, "True or False"),
    (
        "upsampling1d-float",
        "Input(shape=(8, 3))\nUpSampling1D(2.0)\n",
        2,
        14,
        "'size' must be an integer",
    ),
    (
        "interpolation-not-string",
        I2 + "UpSampling2D(interpolation=1)\n",
        2,
        28,
        "'interpolation' must be one of",
    ),
    (
        "output_padding-wrong-length",
        I2 + "Conv2DTranspose(4, 3, strides=2, output_padding=(1, 1, 1))\n",
        2,
        49,
        "tuple of 2 integers",
    ),
    (
        "depth_multiplier-float",
        I2 + "DepthwiseConv2D(3, depth_multiplier=1.5)\n",
        2,
        37,
        "must be an integer",
    ),
    ("activation-number", I2 + "Conv2D(8, 3, activation=1)\n", 2, 25, "name of a Keras activation"),
    (
        "activation-reference-unknown",
        I2 + "Conv2D(8, 3, activation=keras.activations.relu7)\n",
        2,
        25,
        "unknown activation",
    ),
    (
        "activation-wrong-case",
        I2 + "Conv2D(8, 3, activation='Relu')\n",
        2,
        25,
        "did you mean 'relu'",
    ),
    (
        "threshold-activation",
        I2 + "Conv2D(8, 3, activation='threshold')\n",
        2,
        25,
        "Keras fails at call time",
    ),
    ("layer-in-other-module", I2 + "torch.nn.Conv2d(3, 8, 3)\n", 2, 1, "keras.layers.Conv2D"),
    (
        "channels-first-rank",
        "data_format channels_first\nInput(shape=(3, 8))\nConv2D(8, 3)\n",
        3,
        1,
        "expects a 4-D input (batch, channels, height, width)",
    ),
    ("empty-model-name", "model ''\n" + I2 + "Conv2D(8, 3)\n", 1, 7, "cannot be empty"),
    (
        "transpose-groups",
        I2 + "Conv2DTranspose(4, 3, groups=2)\n",
        2,
        23,
        "has no argument 'groups'",
    ),
    (
        "groups-channels-names-layer",
        "Input(shape=(8, 8, 3))\nConv2D(4, 3, groups=2, name='g')\n",
        2,
        21,
        "Conv2D 'g' gets 3 input channels",
    ),
    (
        "shape-error-names-layer",
        I2 + "Conv2D(8, 3)\nConv2D(8, 7)\n",
        3,
        11,
        "Conv2D 'conv2d_1' with padding='valid' would give an output of length 0",
    ),
    (
        "transpose-same-empty-output",
        "Input(shape=(1, 4, 3))\nConv2DTranspose(2, 2, padding='same', output_padding=0)\n",
        2,
        54,
        "Conv2DTranspose 'conv2d_transpose' with padding='same' and output_padding=0 would give "
        "an output of length 0 on spatial axis 0",
    ),
    # functional graphs
    ("unknown-name", "x = Input(shape=(8, 8, 3))\ny = Conv2D(4, 3)(z)\n", 2, 18, "unknown name 'z'"),
    ("misspelt-name", "inputs = Input(shape=(8, 8, 3))\ny = Conv2D(4, 3)(input)\n", 2, 18,
     "did you mean 'inputs'?"),
    ("name-used-before-assignment",
     "x = Input(shape=(8, 8, 3))\ny = Conv2D(4, 3)(w)\nw = Conv2D(4, 3)(x)\n", 2, 18,
     "'w' is used before it is assigned (at line 3)"),
    ("tensor-called-as-layer", "x = Input(shape=(8, 8, 3))\ny = x(x)\n", 2, 5,
     "a tensor cannot be called"),
    ("layer-given-two-tensors", "x = Input(shape=(8, 8, 3))\nc = Conv2D(4, 3)\ny = c(x, x)\n", 3, 5,
     "is called on one tensor, got 2 arguments"),
    ("layer-given-a-list", "x = Input(shape=(8, 8, 3))\ny = Conv2D(4, 3)([x, x])\n", 2, 18,
     "takes one tensor, got a list of 2"),
    ("merge-given-a-tensor", "x = Input(shape=(8, 8, 3))\ny = Add()(x)\n", 2, 11,
     "is called on a list of tensors"),
    ("layer-applied-to-a-layer", "x = Input(shape=(8, 8, 3))\nc = Conv2D(4, 3)\nd = Conv2D(4, 3)(c)\n",
     3, 18, "is applied to the layer 'conv2d', not a tensor"),
    ("subtract-three-inputs",
     "x = Input(shape=(8, 8, 3))\ny = Subtract()([x, x, x])\n", 2, 5, "takes exactly 2 inputs, got 3"),
    ("add-shape-mismatch",
     "x = Input(shape=(8, 8, 3))\ny = Conv2D(4, 3)(x)\nz = Add()([x, y])\n", 3, 5,
     "cannot merge 'x' of shape (None, 8, 8, 3) with 'y' of shape (None, 6, 6, 4): axis 1 has 8 and 6"),
    ("unet-odd-size-concat",
     "x = Input(shape=(9, 9, 3))\na = Conv2D(4, 3, strides=2, padding='same')(x)\n"
     "b = Conv2DTranspose(4, 3, strides=2, padding='same')(a)\nc = Concatenate()([b, x])\n",
     4, 5, "'b' has shape (None, 10, 10, 4) and 'x' has shape (None, 9, 9, 3): axis 1 has 10 and 9"),
    ("unet-odd-size-help",
     "x = Input(shape=(9, 9, 3))\na = Conv2D(4, 3, strides=2, padding='same')(x)\n"
     "b = Conv2DTranspose(4, 3, strides=2, padding='same')(a)\nc = Concatenate()([b, x])\n",
     4, 5, "crop the larger with a Cropping layer or pad the smaller with a ZeroPadding layer"),
    ("concat-rank-mismatch",
     "x = Input(shape=(8, 8, 3))\ny = Input(shape=(8, 3))\nz = Concatenate()([x, y])\n", 3, 5,
     "joins tensors of one rank"),
    ("concat-axis-out-of-range",
     "x = Input(shape=(8, 8, 3))\nz = Concatenate(axis=4)([x, x])\n", 2, 22, "axis=4 is out of range"),
    ("concat-batch-axis", "x = Input(shape=(8, 8, 3))\nz = Concatenate(axis=0)([x, x])\n", 2, 22,
     "along axis 0 would join batches"),
    ("merge-batch-mismatch",
     "a = Input(shape=(4,), batch_size=2)\nb = Input(shape=(4,), batch_size=3)\nc = Add()([a, b])\n",
     3, 5, "different batch sizes"),
    ("model-input-not-an-input",
     "x = Input(shape=(8, 8, 3))\ny = Conv2D(4, 3)(x)\nmodel = keras.Model(y, y)\n", 3, 21,
     "a model's inputs must be tensors made by Input"),
    ("model-missing-input",
     "x = Input(shape=(8, 8, 3))\ny = Input(shape=(8, 8, 3))\na = Conv2D(4, 3)(x)\n"
     "model = keras.Model(y, a)\n", 4, 9,
     "the outputs depend on the input 'input_layer', which is not among the model's inputs"),
    ("model-output-twice",
     "x = Input(shape=(8, 8, 3))\ny = Conv2D(4, 3)(x)\nmodel = keras.Model(x, [y, y])\n", 3, 9,
     "the output 'conv2d' is listed twice"),
    ("model-input-as-output",
     "x = Input(shape=(8, 8, 3))\ny = Conv2D(4, 3)(x)\nmodel = keras.Model(x, [y, x])\n", 3, 9,
     "the input 'input_layer' is also an output"),
    ("model-name-positional",
     "x = Input(shape=(8, 8, 3))\nmodel = keras.Model(x, Conv2D(1, 1)(x), 'm')\n", 2, 41,
     "takes at most 2 positional arguments"),
    ("second-model",
     "x = Input(shape=(8, 8, 3))\ny = Conv2D(1, 1)(x)\nm = keras.Model(x, y)\nn = keras.Model(x, y)\n",
     4, 5, "the file defines a second model"),
    ("shared-layer-other-channels",
     "x = Input(shape=(8, 8, 3))\nc = Conv2D(4, 3)\na = c(x)\nz = Input(shape=(8, 8, 5))\nb = c(z)\n",
     5, 7, "the shared layer 'conv2d' was built for input shape (None, 8, 8, 3)"),
    ("duplicate-layer-name-in-graph",
     "x = Input(shape=(8, 8, 3))\na = Conv2D(4, 3, name='c')(x)\nb = Conv2D(4, 3, name='c')(x)\n",
     3, 23, "the name 'c' is already used"),
    ("attribute-of-a-tensor", "x = Input(shape=(8, 8, 3))\ny = Conv2D(4, 3)(x.shape)\n", 2, 18,
     "is applied to a tuple, not a tensor"),
    ("merge-function-without-inputs", "x = Input(shape=(8, 8, 3))\ny = layers.add()\n", 2, 5,
     "add() takes the list of tensors to merge first"),
    ("layer-call-unknown-keyword", "x = Input(shape=(8, 8, 3))\ny = Conv2D(4, 3)(x, mask_zero=True)\n",
     2, 21, "a layer call takes its input tensors and 'training', not 'mask_zero'"),
    ("nested-model",
     "x = Input(shape=(8, 8, 3))\nm = keras.Sequential([Input(shape=(8, 8, 3)), Conv2D(4, 1)])\n"
     "y = m(x)\n",
     3, 5, "a nested model"),
    ("relu-negative-max", I2 + "ReLU(max_value=-1)\n", 2, 16, "cannot be negative, got max_value=-1"),
    ("relu-string-slope", I2 + "ReLU(negative_slope='a')\n", 2, 21, "must be a number"),
    ("activation-unknown", I2 + "Activation('RELU')\n", 2, 12, "unknown activation 'RELU'"),
    ("activation-missing", I2 + "Activation()\n", 2, 1, "missing its required argument 'activation'"),
    # core layers, activation layers, no-ops, preprocessing
    ("dense-units-zero", I2 + "Dense(0)\n", 2, 7, "'units' must be a positive integer, got units=0"),
    ("dense-quantized", I2 + "Dense(4, quantization_config='int8')\n", 2, 30, "quantized Dense"),
    ("reshape-size", I2 + "Reshape((5, 5))\n", 2, 9, "cannot reshape an input of shape (None, 8, 8, 3)"),
    ("reshape-two-unknowns", I2 + "Reshape((-1, None))\n", 2, 9, "at most one unknown dimension"),
    ("permute-not-a-permutation", I2 + "Permute((1, 3))\n", 2, 9, "must be a permutation of 1 .. n"),
    ("permute-rank", I2 + "Permute((2, 1))\n", 2, 9, "expects an input of rank 3"),
    ("softmax-batch-axis", I2 + "Softmax(axis=0)\n", 2, 14, "would normalize across the batch"),
    ("softmax-axis-none", I2 + "Softmax(axis=None)\n", 2, 14, "the batch axis included"),
    ("softmax-axis-twice", I2 + "Softmax(axis=[1, -3])\n", 2, 14, "appears more than once"),
    ("softmax-mask",
     "x = Input(shape=(8, 8, 3))\nm = Input(shape=(8, 8, 3))\ny = Softmax()(x, mask=m)\n", 3, 18,
     "a Softmax with a mask is not supported"),
    ("leaky-relu-negative", I2 + "LeakyReLU(-0.5)\n", 2, 11, "cannot be None or negative, got negative_slope=-0.5"),
    ("prelu-shared-axis", I2 + "PReLU(shared_axes=[4])\n", 2, 19, "cannot share axis 4"),
    ("dropout-rate", I2 + "Dropout(1.5)\n", 2, 9, "'rate' must be a number between 0 and 1, got rate=1.5"),
    ("dropout-noise-shape", I2 + "Dropout(0.5, noise_shape='ab')\n", 2, 26, "'noise_shape' must be a tuple"),
    ("spatial-dropout-rank", I2 + "SpatialDropout1D(0.5)\n", 2, 1, "expects an input of rank 3"),
    ("spatial-dropout-kwargs", I2 + "SpatialDropout2D(0.5, trainable=False)\n", 2, 33, "takes only rate"),
    ("random-crop-size", I2 + "RandomCrop(4, 4)\n", 2, 1, "returns its input uncropped at inference"),
    ("random-rotation-fill", I2 + "RandomRotation(0.1, fill_mode='mirror')\n", 2, 31, "'fill_mode' must be one of"),
    ("random-flip-factor", I2 + "RandomFlip(factor=0.5)\n", 2, 19, "takes no 'factor' argument"),
    ("resizing-area", I2 + "Resizing(4, 4, interpolation='area')\n", 2, 30, "only on Keras's TensorFlow backend"),
    ("resizing-rank", "Input(shape=(8, 8))\nResizing(4, 4)\n", 2, 1, "expects a batch of images, a 4-D input"),
    ("resizing-nearest-tie", "Input(shape=(2, 8, 3))\nResizing(41, 8, 'nearest')\n", 2, 17, "rounds in float32"),
    ("normalization-mean-only", I2 + "Normalization(mean=[1.0, 2.0, 3.0])\n", 2, 20, "both 'mean' and 'variance'"),
    ("normalization-batch-axis", I2 + "Normalization(axis=0)\n", 2, 20, "keeps the batch axis"),
    ("rescaling-broadcast", I2 + "Rescaling([1.0, 2.0])\n", 2, 11, "does not broadcast onto its input"),
    ("sequential-input-not-first",
     "model = keras.Sequential()\nmodel.add(Conv2D(4, 1, input_shape=(4, 4, 1)))\n"
     "model.add(Input(shape=(4, 4, 1)))\n", 3, 11, "Input must come before its layers"),
    ("sequential-not-a-list", "model = keras.Sequential(Conv2D(4, 1))\n", 1, 26,
     "Sequential takes a list of layers"),
    ("batch_norm-axis-list", I2 + "BatchNormalization(axis=[1, 2])\n", 2, 25,
     "'axis' of a BatchNormalization layer must be an integer, got axis=[1, 2]"),
    ("batch_norm-axis-out-of-range", I2 + "BatchNormalization(axis=4)\n", 2, 25,
     "axis=4 is out of bounds for the input shape (None, 8, 8, 3)"),
    ("batch_norm-axis-batch", I2 + "BatchNormalization(axis=-4)\n", 2, 25,
     "axis=-4 would normalize along axis 0, the batch axis"),
    ("batch_norm-epsilon-string", I2 + "BatchNormalization(epsilon='small')\n", 2, 28,
     "'epsilon' must be a number, got epsilon='small'"),
    ("batch_norm-center-not-bool", I2 + "BatchNormalization(center=1)\n", 2, 27,
     "'center' must be True or False, got center=1"),
    ("batch_norm-renorm-clipping-key",
     I2 + "BatchNormalization(renorm=True, renorm_clipping={'rmax': 2.0, 'r': 1})\n", 2, 49,
     "invalid keys for 'renorm_clipping': {'rmax': 2.0, 'r': 1}"),
    ("batch_norm-renorm-rmax-below-rmin",
     I2 + "BatchNormalization(renorm=True, renorm_clipping={'rmax': 1.0, 'rmin': 2.0})\n", 2, 49,
     "rmax should be greater than rmin in 'renorm_clipping', got rmax=1.0, rmin=2.0"),
    ("batch_norm-renorm-negative-dmax",
     I2 + "BatchNormalization(renorm=True, renorm_clipping={'dmax': -1})\n", 2, 49,
     "dmax should be non-negative in 'renorm_clipping', got dmax=-1"),
    ("batch_norm-bad-initializer", I2 + "BatchNormalization(moving_variance_initializer='onez')\n",
     2, 48, "unknown initializer 'onez'"),
    ("layer_norm-axis-twice", I2 + "LayerNormalization(axis=[1, -3])\n", 2, 25,
     "axis=[1, -3] names axis 1 twice"),
    ("layer_norm-axis-empty", I2 + "LayerNormalization(axis=[])\n", 2, 25, "names no axis"),
    ("layer_norm-axis-float", I2 + "LayerNormalization(axis=1.0)\n", 2, 25,
     "must be an int or a list/tuple of ints, got axis=1.0"),
    ("layer_norm-rms_scaling-is-keyword-only",
     I2 + "LayerNormalization(-1, 0.001, True, True, 'zeros', 'ones', None, None, None, None, True)\n",
     2, 84, "at most 10 positional arguments, got 11"),
    ("group_norm-groups-zero", I2 + "GroupNormalization(0)\n", 2, 20,
     "'groups' must be a positive integer (or -1 for instance normalization), got groups=0"),
    ("group_norm-more-groups-than-channels", I2 + "GroupNormalization(4)\n", 2, 20,
     "groups=4 cannot be more than the number of channels (3"),
    ("group_norm-groups-not-dividing", I2 + "Conv2D(6, 1)\nGroupNormalization(4)\n", 3, 20,
     "groups=4 must divide the number of channels (6, axis -1 of input shape (None, 8, 8, 6))"),
    ("group_norm-axis-list", I2 + "GroupNormalization(3, axis=[1])\n", 2, 28,
     "'axis' of a GroupNormalization layer must be an integer, got axis=[1]"),
    ("group_norm-epsilon-none", I2 + "GroupNormalization(3, epsilon=None)\n", 2, 31,
     "'epsilon' must be a number, got epsilon=None"),
    ("unit_norm-axis-string", I2 + "UnitNormalization('channels')\n", 2, 19,
     "must be an int or a list/tuple of ints, got axis='channels'"),
    ("unit_norm-axis-out-of-range", I2 + "UnitNormalization([1, 5])\n", 2, 19,
     "axis=[1, 5] is out of bounds"),
    # pooling
    ("pool_size-zero", I2 + "MaxPooling2D(0)\n", 2, 14, "'pool_size' must be > 0, got pool_size=0"),
    ("pool-strides-zero", I2 + "MaxPooling2D(2, 0)\n", 2, 17, "must be > 0, got strides=0"),
    ("pool-strides-negative", I2 + "AveragePooling1D(2, -1)\n", 2, 21, "got strides=-1"),
    ("pool-padding-causal", I2 + "MaxPooling2D(2, padding='causal')\n", 2, 25,
     "'padding' must be one of 'valid', 'same', got padding='causal'"),
    ("pool-padding-uppercase", I2 + "MaxPooling2D(2, padding='SAME')\n", 2, 25,
     "padding='SAME' must be written in lower case"),
    ("pool-padding-typo", I2 + "AveragePooling2D(2, padding='vaild')\n", 2, 29,
     "did you mean 'valid'?"),
    ("pool-larger-than-input", "Input(shape=(3, 8, 3))\nMaxPooling2D(4)\n", 2, 14,
     "MaxPooling2D 'max_pooling2d' with padding='valid' would give an output of length 0 on "
     "spatial axis 0: the input has length 3 and pool_size=4"),
    ("pool-larger-than-input-later", I2 + "MaxPooling2D(3)\nAveragePooling2D(3, strides=1)\n",
     3, 18, "output length = floor((2 - 3) / 1) + 1 = 0"),
    ("average-pool-size-required", I2 + "AveragePooling2D()\n", 2, 1,
     "missing its required argument 'pool_size'"),
    ("pool_size-wrong-length", I2 + "MaxPooling2D((2, 2, 2))\n", 2, 14, "tuple of 2 integers"),
    ("pool_size-bool", I2 + "MaxPool2D(True)\n", 2, 11, "fails when the layer runs"),
    ("pool_size-float", I2 + "MaxPooling2D(2.0)\n", 2, 14, "got pool_size=2.0"),
    ("keepdims-not-bool", I2 + "GlobalAveragePooling2D(keepdims=1)\n", 2, 33,
     "'keepdims' must be True or False, got keepdims=1"),
    ("global-pool-bad-data_format", I2 + "GlobalMaxPooling2D('NCHW')\n", 2, 20,
     "got data_format='NCHW'"),
    ("pool-rank-mismatch", I2 + "MaxPooling1D()\n", 2, 1,
     "MaxPooling1D 'max_pooling1d' expects a 3-D input (batch, steps, channels)"),
    ("global-pool-too-many-positional", I2 + "GlobalMaxPooling2D('channels_last', False, 1)\n",
     2, 44, "positional order: data_format, keepdims"),
    ("pool-too-many-positional", I2 + "MaxPooling2D(2, None, 'valid', None, 'p', 3)\n", 2, 43,
     "positional order: pool_size, strides, padding, data_format, name"),
    ("pool-after-global-pool", I2 + "GlobalAveragePooling2D()\nMaxPooling2D()\n", 3, 1,
     "expects a 4-D input (batch, height, width, channels), got shape (None, 3)"),
    ("pool-unknown-keyword", I2 + "MaxPooling2D(2, stride=2)\n", 2, 17, "did you mean 'strides'?"),
    # a model with no layers points at its Input, else its Sequential, else the last statement
    ("no-layers-functional-input", "x = keras.Input(shape=(8,))\n", 1, 5, "the model has no layers"),
    ("no-layers-empty-sequential", "model = keras.Sequential()\n", 1, 9, "the model has no layers"),
    ("no-layers-empty-list", "model = keras.Sequential([])\n", 1, 9, "the model has no layers"),
    ("no-layers-empty-file", "# nothing yet\n", None, None, "the file has no Input and no layer"),
    # Keras 3 refuses a number as a shape: ValueError "Cannot convert '8' to a shape."
    ("input-shape-int", "Input(shape=8)\nDense(3)\n", 1, 13, "Cannot convert '8' to a shape"),
    ("input-shape-parenthesized-int", "keras.Input(shape=(8))\nDense(3)\n", 1, 20, "write shape=(8,)"),
    ("inputlayer-shape-int", "InputLayer(shape=8)\nDense(3)\n", 1, 18, "Cannot convert '8' to a shape"),
    ("inputlayer-input_shape-int", "InputLayer(input_shape=8)\nDense(3)\n", 1, 24, "'input_shape' must be a tuple"),
    ("input-batch_shape-int", "Input(batch_shape=8)\nDense(3)\n", 1, 19, "write batch_shape=(None, 8)"),
    ("input-shape-float", "Input(shape=8.0)\nDense(3)\n", 1, 13, "Cannot convert '8.0' to a shape"),
    ("keras2-input_shape-int", "Dense(3, input_shape=8)\n", 1, 22, "Cannot convert '8' to a shape"),
    ("keras2-batch_input_shape-int", "Dense(3, batch_input_shape=8)\n", 1, 28, "Cannot convert '8'"),
    (
        "rms_normalization-not-the-last-axes",
        "Input(shape=(7, 8, 4))\nRMSNormalization(axis=1)\n",
        2,
        23,
        "convc compiles it over the last axes only",
    ),
    (
        "rms_normalization-last-axes-out-of-keras-order",
        "Input(shape=(7, 8, 4))\nRMSNormalization(axis=[-1, 2])\n",
        2,
        23,
        "over the last axes only",
    ),
    (
        "initializer-is-a-layer-call",
        "inputs = keras.Input(shape=(4,))\n"
        "x = layers.Dense(4, kernel_initializer=layers.Dense(3)(inputs))(inputs)\n"
        "model = keras.Model(inputs, x)\n",
        2,
        40,
        "must name a Keras initializer: a string such as 'he_normal', a call such as "
        "HeNormal(seed=1) or a config dict; got a layer call",
    ),
]  # fmt: skip

# Keras 3's layers take no batch_input_shape at all (convc reads it, Keras 2 style)
NUMBER_SHAPES = [
    row
    for row in BAD
    if ("Cannot convert" in row[4] or "shape=(" in row[4]) and "batch_input_shape" not in row[1]
]


@pytest.mark.parametrize(
    ("text", "line", "column", "fragment"), [pytest.param(*row[1:], id=row[0]) for row in BAD]
)
def test_error_is_located(text, line, column, fragment):
    """Each row: the input, the line and column of the first error, and a fragment of its words."""
    with pytest.raises(ConvcError) as caught:
        compile_text(text)
    error = errors_of(caught.value)[0]
    assert fragment in error.message + " " + (error.help or ""), error.message
    if line is None:
        assert error.span is None
    else:
        assert (error.span.line, error.span.column) == (line, column)


def test_the_corpus_is_large():
    assert len(BAD) >= 60


def test_several_errors_are_reported_together():
    text = (
        I2
        + "Conv2D(0, 3)\nConv2D(8, 3, padding='bad')\nConv2D(8, 3, activation='nope')\nConv2D(8, 3)\n"
    )
    with pytest.raises(ConvcError) as caught:
        compile_text(text)
    lines = [e.span.line for e in errors_of(caught.value)]
    assert lines == [2, 3, 4]


def test_command_line_renders_the_error_and_writes_nothing(tmp_path, capsys):
    source = tmp_path / "net.conv"
    source.write_text("Input(shape=(8, 8, 3))\nConv2D(8, 3, strides=2, dilation_rate=2)\n")
    output = tmp_path / "net.onnx"
    output.write_bytes(b"previous build")
    assert main(["build", str(source), "-o", str(output)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        f"{source}:2:22: error: strides=(2, 2) cannot be combined with dilation_rate=(2, 2)"
    )
    assert "  2 | Conv2D(8, 3, strides=2, dilation_rate=2)" in err
    assert "^" in err and "Traceback" not in err
    assert output.read_bytes() == b"previous build"
    assert [p.name for p in tmp_path.iterdir()] == sorted(["net.conv", "net.onnx"]) or set(
        p.name for p in tmp_path.iterdir()
    ) == {"net.conv", "net.onnx"}


def test_command_line_missing_file(tmp_path, capsys):
    assert main(["build", str(tmp_path / "absent.conv")]) == 1
    assert "absent.conv: error: no such file" in capsys.readouterr().err


def test_command_line_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["build"])
    assert exit_.value.code == 2


def test_internal_error_is_reported_without_traceback(tmp_path, capsys, monkeypatch):
    source = tmp_path / "net.conv"
    source.write_text(I2 + "Conv2D(8, 3)\n")

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("convc.compiler.lower_detached", broken)
    assert main(["build", str(source)]) == 3
    err = capsys.readouterr().err
    assert "internal error" in err and "Traceback" not in err and "report" in err
    assert not (tmp_path / "net.onnx").exists()


@pytest.mark.parametrize("text", [pytest.param(row[1], id=row[0]) for row in NUMBER_SHAPES])
def test_keras_refuses_a_number_as_a_shape(text):
    """The oracle for the rows above: Keras 3 itself raises ValueError "Cannot convert '8' to a
    shape." for each (Input, InputLayer and a Keras 2 first layer's input_shape alike)."""
    from oracle import keras_model

    with pytest.raises(ValueError, match=r"Cannot convert '8(\.0)?' to a shape"):
        keras_model(text).summary()


@pytest.mark.parametrize(
    ("data", "line", "column", "byte"),
    [
        (b"Input(shape=(8,))\n# caf\xe9\nDense(3)\n", 2, 6, "e9"),
        ("Input(shape=(8,))\nDense(3, name='é".encode() + b"\xff')\n", 2, 17, "ff"),
        (b"\xef\xbb\xbfInput(shape=(8,)) \x80\n", 1, 19, "80"),  # after a byte-order mark
        (b"\xff\xfe junk", 1, 1, "ff"),
    ],
    ids=["latin-1-comment", "after-a-two-byte-character", "after-a-bom", "utf-16-mark"],
)
def test_a_file_that_is_not_utf8_names_the_line_and_column(
    tmp_path, capsys, data, line, column, byte
):
    source = tmp_path / "net.conv"
    source.write_bytes(data)
    assert main(["build", str(source)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        f"{source}:{line}:{column}: error: the file is not UTF-8 text: byte 0x{byte} cannot be decoded"
    ), err
    assert f"  {line} | " in err and "help: save the file as UTF-8" in err
    assert not (tmp_path / "net.onnx").exists()
