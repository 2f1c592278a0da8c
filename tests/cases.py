"""The per-layer case table: every layer and argument path, as .conv texts.

The Keras oracle (test_keras_oracle.py) runs each case against Keras 3, the runtime matrix
(test_runtime_matrix.py) in every runtime convc targets. The cases aim at the places where a naive
lowering goes wrong: 'same' with even kernels and strides, causal with dilation, groups,
depth_multiplier order, transposed-conv sizes with and without output_padding, bilinear factors,
channels_first and mixed data formats.
"""

from __future__ import annotations

import itertools
import os

import pytest

INPUTS = {1: "(9, 4)", 2: "(7, 8, 4)", 3: "(5, 6, 7, 4)"}
INPUTS_FIRST = {1: "(4, 9)", 2: "(4, 7, 8)", 3: "(4, 5, 6, 7)"}


def case(id_: str, *lines: str, input_shape: str | None = None):
    return pytest.param("\n".join(lines) + "\n", id=id_)


def _conv_cases():
    for rank in (1, 2, 3):
        kernels = (1, 2, 3, 4) if rank < 3 else (1, 2, 3)
        for k, s, d, padding in itertools.product(
            kernels, (1, 2, 3), (1, 2), ("valid", "same", "causal")
        ):
            if s > 1 and d > 1 or padding == "causal" and rank != 1:
                continue
            if rank == 3 and (s == 3 or k == 1 and d == 2):
                continue
            yield case(
                f"conv{rank}d-{padding}-k{k}-s{s}-d{d}",
                f"Input(shape={INPUTS[rank]})",
                f'Conv{rank}D(3, {k}, strides={s}, dilation_rate={d}, padding="{padding}")',
            )
    yield case("conv2d-groups2", "Input(shape=(7, 8, 4))", "Conv2D(6, 3, groups=2, padding='same')")
    yield case(
        "conv2d-groups4-stride2", "Input(shape=(7, 8, 4))", "Conv2D(4, 2, strides=2, groups=4)"
    )
    yield case(
        "conv1d-groups2-causal-d2",
        "Input(shape=(9, 4))",
        "Conv1D(2, 3, groups=2, dilation_rate=2, padding='causal')",
    )
    yield case("conv3d-groups2", "Input(shape=(5, 6, 7, 4))", "Conv3D(2, 2, groups=2)")
    yield case(
        "conv2d-nonsquare",
        "Input(shape=(7, 8, 4))",
        "Conv2D(3, (1, 3), strides=(2, 1), padding='same')",
    )
    yield case(
        "conv2d-nonsquare-dilation",
        "Input(shape=(9, 8, 4))",
        "Conv2D(3, (3, 2), dilation_rate=(2, 1), padding='same')",
    )
    yield case(
        "conv3d-nonsquare",
        "Input(shape=(5, 6, 7, 4))",
        "Conv3D(3, (1, 2, 3), strides=(1, 2, 1), padding='same')",
    )
    yield case("conv2d-no-bias", "Input(shape=(7, 8, 4))", "Conv2D(3, 3, use_bias=False)")
    yield case("conv2d-kernel-equals-input", "Input(shape=(3, 3, 2))", "Conv2D(5, 3)")
    yield case("conv1d-padding-uppercase", "Input(shape=(9, 4))", "Conv1D(2, 2, padding='SAME')")
    yield case("conv1d-causal-uppercase", "Input(shape=(9, 4))", "Conv1D(2, 2, padding='Causal')")
    # a ResNet projection shortcut: tract's optimizer needs the strided 1x1 Conv widened
    yield case(
        "conv2d-strided-pointwise-after-pointwise",
        "Input(shape=(7, 9, 4))",
        "Conv2D(4, 1, activation='relu')",
        "Conv2D(6, 1, strides=(2, 3))",
    )


def _transpose_cases():
    for rank in (1, 2, 3):
        kernels = (1, 2, 3, 4, 5) if rank == 1 else (1, 2, 3) if rank == 2 else (2, 3)
        strides = (1, 2, 3) if rank < 3 else (1, 2)
        for k, s, padding in itertools.product(kernels, strides, ("valid", "same")):
            for op in [None, *range(s)]:
                if rank > 1 and op not in (None, s - 1):
                    continue
                op_arg = "" if op is None else f", output_padding={op}"
                yield case(
                    f"conv{rank}d_transpose-{padding}-k{k}-s{s}-op{op}",
                    f"Input(shape={INPUTS[rank]})",
                    f'Conv{rank}DTranspose(3, {k}, strides={s}, padding="{padding}"{op_arg})',
                )
        for k, d, padding in itertools.product((2, 3), (2, 3), ("valid", "same")):
            if rank == 3 and d == 3:
                continue
            yield case(
                f"conv{rank}d_transpose-{padding}-k{k}-dilated{d}",
                f"Input(shape={INPUTS[rank]})",
                f'Conv{rank}DTranspose(2, {k}, dilation_rate={d}, padding="{padding}")',
            )
    yield case(
        "conv1d_transpose-k1-s2-short", "Input(shape=(3, 2))", "Conv1DTranspose(1, 1, strides=2)"
    )
    yield case(
        "conv2d_transpose-nonsquare-op",
        "Input(shape=(4, 5, 3))",
        "Conv2DTranspose(2, (3, 2), strides=(2, 3), padding='same', output_padding=(1, 0))",
    )
    yield case(
        "conv3d_transpose-positional-data_format",
        "Input(shape=(4, 5, 3, 2))",
        "Conv3DTranspose(2, 2, 2, 'same', 'channels_last', 1)",
    )
    yield case(
        "conv2d_transpose-no-bias",
        "Input(shape=(4, 5, 3))",
        "Conv2DTranspose(2, 3, strides=2, use_bias=False)",
    )


def _conv_form_cases():
    """Where convc.lower.conv_forms replaces the plain op: convolutions with one or two output
    channels over several kernel axes, and 3-D transposed convolutions with strides."""
    forms = itertools.product(
        (2, 3), (1, 2), ((3, 2), (2, 3), (3, 1)), ("valid", "same"), ((1, 1), (1, 2), (2, 1))
    )
    for rank, filters, kernel, padding, (s, d) in forms:
        if rank == 3 and (kernel != (3, 2) or filters == 2 and padding == "valid"):
            continue
        k = (2, *kernel) if rank == 3 else kernel
        strides = (*[1] * (rank - 1), s)
        dilation = (d, *[1] * (rank - 1))
        yield case(
            f"conv{rank}d-few-out{filters}-{padding}-k{''.join(map(str, k))}-s{s}-d{d}",
            f"Input(shape={INPUTS[rank]})",
            f"Conv{rank}D({filters}, {k}, strides={strides}, dilation_rate={dilation}, "
            f"padding='{padding}', activation='relu')",
        )
    yield case(
        "conv2d-few-out-strided-leading",
        "Input(shape=(7, 8, 4))",
        "Conv2D(1, 3, strides=(2, 1))",
    )
    yield case(
        "conv2d-few-out-channels-first",
        "Input(shape=(4, 7, 8))",
        "Conv2D(2, (2, 3), padding='same', data_format='channels_first')",
    )
    for kernel, strides, padding, op in [
        ((2, 3, 4), (2, 1, 3), "valid", None),
        ((3, 2, 2), (2, 2, 2), "same", (1, 1, 1)),
        ((4, 3, 3), (3, 2, 2), "same", None),
        ((2, 2, 2), (2, 2, 2), "valid", (1, 0, 1)),
        ((1, 3, 3), (1, 2, 2), "valid", None),
    ]:
        op_arg = "" if op is None else f", output_padding={op}"
        yield case(
            f"conv3d_transpose-sub-pixel-k{''.join(map(str, kernel))}-s{''.join(map(str, strides))}"
            f"-{padding}-op{op is not None}",
            f"Input(shape={INPUTS[3]})",
            f"Conv3DTranspose(2, {kernel}, strides={strides}, padding='{padding}'{op_arg})",
        )
    yield case(
        "conv3d_transpose-sub-pixel-channels-first-no-bias",
        "Input(shape=(4, 5, 6, 7))",
        "Conv3DTranspose(3, 3, strides=2, padding='same', use_bias=False, "
        "data_format='channels_first')",
    )
    for rank in (1, 2, 3):
        yield case(
            f"zero_padding{rank}d-then-pointwise-conv",
            f"Input(shape={INPUTS[rank]})",
            f"ZeroPadding{rank}D(1)",
            f"Conv{rank}D(2, 1)",
        )


def _depthwise_separable_cases():
    for cls, rank in (
        ("DepthwiseConv", 1),
        ("DepthwiseConv", 2),
        ("SeparableConv", 1),
        ("SeparableConv", 2),
    ):
        head = "" if cls == "DepthwiseConv" else "3, "
        for k, s, d, m, padding in itertools.product(
            (1, 2, 3), (1, 2), (1, 2), (1, 2, 3), ("valid", "same")
        ):
            if m == 2 and (k, s, d) not in ((3, 1, 1), (2, 2, 2)):
                continue
            yield case(
                f"{cls.lower()}{rank}d-{padding}-k{k}-s{s}-d{d}-m{m}",
                f"Input(shape={INPUTS[rank]})",
                f'{cls}{rank}D({head}{k}, strides={s}, dilation_rate={d}, depth_multiplier={m}, padding="{padding}")',
            )
    yield case(
        "depthwise1d-positional-multiplier",
        "Input(shape=(9, 3))",
        "DepthwiseConv1D(3, 1, 'valid', 2)",
    )
    yield case(
        "separable2d-positional-multiplier",
        "Input(shape=(7, 8, 3))",
        "SeparableConv2D(4, 3, 1, 'same', None, 1, 2)",
    )
    yield case(
        "depthwise2d-no-bias",
        "Input(shape=(7, 8, 3))",
        "DepthwiseConv2D(3, use_bias=False, depth_multiplier=2)",
    )
    yield case(
        "separable1d-no-bias", "Input(shape=(9, 3))", "SeparableConv1D(4, 3, use_bias=False)"
    )


def _reshaping_cases():
    yield case("cropping1d-default", "Input(shape=(9, 4))", "Cropping1D()")
    yield case("cropping1d-int", "Input(shape=(9, 4))", "Cropping1D(3)")
    yield case("cropping1d-pair", "Input(shape=(9, 4))", "Cropping1D((0, 4))")
    for value in (
        "0",
        "1",
        "(1, 2)",
        "((1, 2), (3, 0))",
        "((1, 2), 3)",
        "(0, (2, 1))",
        "[[1, 1], [0, 2]]",
    ):
        yield case(f"cropping2d-{value}", "Input(shape=(7, 8, 4))", f"Cropping2D({value})")
        yield case(
            f"cropping2d-cf-{value}",
            "Input(shape=(4, 7, 8))",
            f"Cropping2D({value}, data_format='channels_first')",
        )
    for value in ("", "0", "1", "(1, 0, 2)", "((1, 0), (0, 2), 1)"):
        yield case(
            f"cropping3d-{value or 'default'}", "Input(shape=(5, 6, 7, 4))", f"Cropping3D({value})"
        )
    yield case("zero_padding1d-default", "Input(shape=(9, 4))", "ZeroPadding1D()")
    yield case("zero_padding1d-pair", "Input(shape=(9, 4))", "ZeroPadding1D((0, 3))")
    yield case(
        "zero_padding1d-cf", "Input(shape=(4, 9))", "ZeroPadding1D(2, data_format='channels_first')"
    )
    for value in ("", "0", "2", "-1", "(1, 2)", "((1, 2), (3, 0))", "((0, 2), 1)"):
        yield case(
            f"zero_padding2d-{value or 'default'}",
            "Input(shape=(7, 8, 4))",
            f"ZeroPadding2D({value})",
        )
    yield case(
        "zero_padding2d-cf",
        "Input(shape=(4, 7, 8))",
        "ZeroPadding2D(((1, 0), (0, 2)), data_format='channels_first')",
    )
    for value in ("", "1", "-1", "(1, 0, 2)", "((1, 0), (0, 2), (2, 1))"):
        yield case(
            f"zero_padding3d-{value or 'default'}",
            "Input(shape=(5, 6, 7, 4))",
            f"ZeroPadding3D({value})",
        )
    yield case("up_sampling1d-default", "Input(shape=(9, 4))", "UpSampling1D()")
    yield case("up_sampling1d-3", "Input(shape=(9, 4))", "UpSampling1D(3)")
    yield case("up_sampling1d-1", "Input(shape=(9, 4))", "UpSampling1D(1)")
    for interpolation in ("nearest", "bilinear", "bicubic"):
        for size in ("2", "3", "(2, 3)", "(1, 4)", "(4, 1)", "(3, 5)"):
            yield case(
                f"up_sampling2d-{interpolation}-{size}",
                "Input(shape=(4, 5, 3))",
                f"UpSampling2D({size}, interpolation='{interpolation}')",
            )
            yield case(
                f"up_sampling2d-cf-{interpolation}-{size}",
                "Input(shape=(3, 4, 5))",
                f"UpSampling2D({size}, data_format='channels_first', interpolation='{interpolation}')",
            )
    yield case(
        "up_sampling2d-bilinear-1x6",
        "Input(shape=(1, 6, 2))",
        "UpSampling2D((3, 2), interpolation='bilinear')",
    )
    yield case(
        "up_sampling2d-interpolation-uppercase",
        "Input(shape=(4, 5, 3))",
        "UpSampling2D(interpolation='BILINEAR')",
    )
    for size in ("", "2", "(1, 2, 3)"):
        yield case(
            f"up_sampling3d-{size or 'default'}",
            "Input(shape=(3, 4, 5, 2))",
            f"UpSampling3D({size})",
        )
    yield case(
        "up_sampling3d-cf",
        "Input(shape=(2, 3, 4, 5))",
        "UpSampling3D((2, 1, 3), data_format='channels_first')",
    )


def _keras_activation_names() -> list:
    """Every string name Keras's activations.get accepts (threshold needs extra arguments)."""
    os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is imported
    from keras.src.activations import ALL_OBJECTS_DICT

    return sorted(name for name in ALL_OBJECTS_DICT if name != "threshold") + [None]


ACTIVATIONS = _keras_activation_names()


def _activation_cases():
    for name in ACTIVATIONS:
        arg = "None" if name is None else f"'{name}'"
        yield case(f"activation-{name}", "Input(shape=(9, 4))", f"Conv1D(6, 2, activation={arg})")
        yield case(
            f"activation-{name}-channels_first",
            "Input(shape=(4, 6, 8))",
            f"Conv2D(6, 1, data_format='channels_first', activation={arg})",
        )
    yield case(
        "activation-reference",
        "Input(shape=(9, 4))",
        "Conv1D(6, 2, activation=keras.activations.gelu)",
    )


def _data_format_cases():
    classes = {
        1: [
            "Conv1D(3, 3, padding='same')",
            "Conv1DTranspose(3, 3, strides=2)",
            "DepthwiseConv1D(3, depth_multiplier=2)",
            "SeparableConv1D(3, 2, strides=2, padding='same')",
            "ZeroPadding1D((1, 2))",
        ],
        2: [
            "Conv2D(3, 3, strides=2, padding='same')",
            "Conv2DTranspose(3, 3, strides=2, padding='same', output_padding=1)",
            "DepthwiseConv2D(2, padding='same')",
            "SeparableConv2D(3, 3)",
            "Cropping2D(((1, 0), (0, 2)))",
            "ZeroPadding2D((1, 2))",
            "UpSampling2D((2, 3), interpolation='bilinear')",
        ],
        3: [
            "Conv3D(3, 2, padding='same')",
            "Conv3DTranspose(3, 2, strides=2)",
            "Cropping3D(1)",
            "ZeroPadding3D(1)",
            "UpSampling3D()",
        ],
    }
    for rank, calls in classes.items():
        for call in calls:
            name = call.split("(")[0]
            with_format = call[:-1] + ", data_format='channels_first')"
            with_format = with_format.replace("(, ", "(")
            yield case(f"{name}-channels_first", f"Input(shape={INPUTS_FIRST[rank]})", with_format)
    yield case(
        "directive-channels_first",
        "data_format channels_first",
        "Input(shape=(4, 7, 8))",
        "Conv2D(3, 3, padding='same')",
        "SeparableConv2D(3, 3)",
        "UpSampling2D()",
    )
    yield case(
        "set_image_data_format-midway",
        "Input(shape=(7, 8, 4))",
        "Conv2D(3, 3)",
        "keras.config.set_image_data_format('channels_first')",
        "Conv2D(2, 2)",
    )
    yield case(
        "mixed-last-then-first",
        "Input(shape=(7, 8, 4))",
        "Conv2D(5, 3, padding='same')",
        "Conv2D(3, 2, data_format='channels_first')",
        "Conv2D(2, 1)",
    )
    yield case(
        "mixed-first-then-last",
        "Input(shape=(4, 7, 8))",
        "Conv2D(5, 3, data_format='channels_first')",
        "Cropping2D(1)",
        "UpSampling2D((1, 2), data_format='channels_first')",
        "Conv2D(2, 2)",
    )
    yield case(
        "softmax-channels_first-after-last",
        "Input(shape=(7, 8, 4))",
        "Conv2D(5, 3)",
        "Conv2D(3, 1, data_format='channels_first', activation='softmax')",
    )
    yield case(
        "bilinear-channels_first-after-last",
        "Input(shape=(5, 6, 3))",
        "Conv2D(4, 1)",
        "UpSampling2D(2, data_format='channels_first', interpolation='bilinear')",
    )
    yield case(
        "bilinear-last-after-first",
        "Input(shape=(4, 5, 6))",
        "Conv2D(4, 1, data_format='channels_first')",
        "UpSampling2D(2, interpolation='bilinear')",
    )
    yield case(
        "bicubic-last-after-first",
        "Input(shape=(4, 5, 6))",
        "Conv2D(4, 1, data_format='channels_first')",
        "UpSampling2D(2, interpolation='bicubic')",
    )


def _stack_cases():
    yield case(
        "stack-tiny-sample",
        "model tiny",
        'Input(shape=(32, 32, 3), batch_size=None, dtype="float32", name="image")',
        'Conv2D(8, 3, padding="same", activation="relu", name="enc1")',
        'Conv2DTranspose(4, (3, 3), strides=2, padding="same", output_padding=1)',
        'UpSampling2D(size=(2, 3), interpolation="bilinear")',
        "Cropping2D(((1, 0), (2, 2)))",
    )
    yield case(
        "stack-autonames",
        "Input(shape=(16, 4))",
        "Conv1D(4, 2, padding='causal')",
        "Conv1D(4, 2, padding='causal', dilation_rate=2)",
        "Conv1D(4, 2, name='named')",
        "Conv1D(4, 2)",
        "Convolution1D(4, 1)",
        "UpSampling1D()",
        "ZeroPadding1D()",
        "Cropping1D()",
        "UpSampling1D()",
    )
    yield case(
        "stack-keras2-input_shape",
        "Conv2D(4, 3, input_shape=(8, 8, 3))",
        "Conv2D(2, 3)",
    )
    yield case(
        "stack-dotted-prefixes",
        "keras.Input(shape=(8, 8, 3))",
        "keras.layers.Conv2D(4, 3)",
        "layers.Conv2D(2, 1)",
        "tf.keras.layers.Conv2D(2, 1)",
    )
    yield case(
        "stack-aliases",
        "Input(shape=(8, 8, 3))",
        "Convolution2D(4, 3)",
        "Convolution2DTranspose(2, 2, strides=2)",
        "SeparableConvolution2D(3, 3)",
    )
    yield case("stack-fixed-batch", "Input(shape=(8, 8, 3), batch_size=2)", "Conv2D(4, 3)")
    yield case(
        "stack-mobilenet-block",
        "Input(shape=(16, 16, 3))",
        "Conv2D(8, 3, strides=2, padding='same', activation='relu6')",
        "DepthwiseConv2D(3, padding='same', activation='relu6')",
        "Conv2D(16, 1, activation='relu6')",
        "DepthwiseConv2D(3, strides=2, padding='same', depth_multiplier=2)",
        "SeparableConv2D(8, 3, padding='same', activation='swish')",
    )
    yield case(
        "stack-volume",
        "Input(shape=(6, 8, 8, 2))",
        "Conv3D(4, 3, padding='same', activation='relu')",
        "Conv3D(4, 2, strides=2)",
        "Conv3DTranspose(4, 2, strides=2)",
        "Cropping3D(((0, 1), 0, 1))",
        "Conv3D(1, 1, activation='sigmoid')",
    )
    yield case(
        "stack-zero-pad-then-conv",
        "Input(shape=(8, 8, 3))",
        "ZeroPadding2D(((1, 2), (0, 1)))",
        "Conv2D(4, 3)",
    )
    yield case(
        "stack-noop-layers",
        "Input(shape=(8, 8, 3))",
        "UpSampling2D(1)",
        "ZeroPadding2D(0)",
        "Cropping2D(0)",
        "Conv2D(2, 1)",
    )
    yield case(
        "stack-regularizers-recorded",
        "Input(shape=(8, 8, 3))",
        "Conv2D(4, 3, kernel_regularizer=keras.regularizers.l2(1e-4), kernel_constraint=keras.constraints.MaxNorm(2), trainable=False)",
    )
    yield case("stack-lora", "Input(shape=(8, 8, 3))", "Conv2D(4, 3, lora_rank=2)")


_X2, _X4, _CF = "Input(shape=(7, 8, 4))", "Input(shape=(4, 7, 8))", "data_format='channels_first'"
_NORMALIZATION = [
    ("batch_normalization-after-conv2d-no-bias-relu", _X2, "Conv2D(6, 3, use_bias=False)",
     "BatchNormalization()", "ReLU()"),
    ("batch_normalization-after-conv2d-activation-layer", _X2, "Conv2D(6, 3, activation=None)",
     "BatchNormalization()", "Activation('relu')"),
    ("batch_normalization-after-conv2d-relu", _X2, "Conv2D(6, 3, activation='relu')",
     "BatchNormalization()"),
    ("batch_normalization-cf-after-conv2d", _X4, f"Conv2D(6, 3, padding='same', {_CF})",
     "BatchNormalization(axis=1)", "ReLU(6)"),
    ("batch_normalization-cf-input", _X4, "BatchNormalization(1)"),
    ("batch_normalization-input", _X2, "BatchNormalization()"),
    ("batch_normalization-axis1-after-conv2d", _X2, "Conv2D(6, 1)", "BatchNormalization(axis=1)"),
    ("batch_normalization-axis-2-input", _X2, "BatchNormalization(axis=-2)"),
    ("batch_normalization-no-center", _X2, "Conv2D(6, 1)", "BatchNormalization(center=False)"),
    ("batch_normalization-no-scale", _X2, "Conv2D(6, 1)", "BatchNormalization(scale=False)"),
    ("batch_normalization-no-center-no-scale", _X2,
     "BatchNormalization(center=False, scale=False)"),
    ("batch_normalization-positional", _X2, "Conv2D(6, 1)",
     "BatchNormalization(-1, 0.9, 0.1, True, False)"),
    ("batch_normalization-renorm", _X2, "Conv2D(6, 1)",
     "BatchNormalization(renorm=True, renorm_clipping={'rmax': 3.0, 'dmax': 1.0})"),
    ("batch_normalization-rank2", "Input(shape=(6,))", "BatchNormalization()"),
    ("batch_normalization-after-conv1d", "Input(shape=(9, 4))", "Conv1D(5, 3)",
     "BatchNormalization()"),
    ("batch_normalization-after-conv3d", "Input(shape=(5, 6, 7, 4))",
     "Conv3D(3, 2, use_bias=False)", "BatchNormalization()", "ReLU()"),
    ("batch_normalization-cf-after-conv3d", "Input(shape=(4, 5, 6, 7))", f"Conv3D(3, 2, {_CF})",
     "BatchNormalization(axis=1)"),
    ("batch_normalization-after-conv2d-groups", _X2, "Conv2D(6, 3, groups=2)",
     "BatchNormalization()"),
    ("batch_normalization-after-conv2d-few-out", _X2, "Conv2D(2, 3, padding='same')",
     "BatchNormalization()"),
    ("batch_normalization-after-conv2d_transpose", _X2,
     "Conv2DTranspose(5, 3, strides=2, padding='same', use_bias=False)", "BatchNormalization()"),
    ("batch_normalization-after-conv1d_transpose", "Input(shape=(9, 4))",
     "Conv1DTranspose(3, 2, strides=2)", "BatchNormalization()"),
    ("batch_normalization-after-conv3d_transpose-sub-pixel", "Input(shape=(4, 5, 6, 3))",
     "Conv3DTranspose(2, 3, strides=2, padding='same')", "BatchNormalization()"),
    ("batch_normalization-after-depthwise2d", _X2, "DepthwiseConv2D(3, depth_multiplier=2)",
     "BatchNormalization()", "ReLU()"),
    ("batch_normalization-after-depthwise1d-no-bias", "Input(shape=(9, 4))",
     "DepthwiseConv1D(3, use_bias=False)", "BatchNormalization()"),
    ("batch_normalization-after-separable2d", _X2, "SeparableConv2D(5, 3, depth_multiplier=2)",
     "BatchNormalization()"),
    ("batch_normalization-twice", _X2, "Conv2D(6, 1)", "BatchNormalization()",
     "BatchNormalization(epsilon=0.5)"),
    ("layer_normalization-after-conv2d", _X2, "Conv2D(6, 3)", "LayerNormalization()"),
    ("layer_normalization-input", _X2, "LayerNormalization()"),
    ("layer_normalization-rank2", "Input(shape=(6,))", "LayerNormalization()"),
    ("layer_normalization-rank3", "Input(shape=(9, 4))", "LayerNormalization(epsilon=0.1)"),
    ("layer_normalization-rank5", "Input(shape=(3, 4, 5, 2))", "Conv3D(4, 1)",
     "LayerNormalization(axis=[-3, -2, -1])"),
    ("layer_normalization-all-axes", _X2, "Conv2D(6, 1)", "LayerNormalization(axis=[1, 2, 3])"),
    ("layer_normalization-last-two", _X2, "Conv2D(6, 1)", "LayerNormalization(axis=(-2, -1))"),
    ("layer_normalization-mixed-signs", _X2, "Conv2D(6, 1)", "LayerNormalization(axis=[3, -3])"),
    ("layer_normalization-no-center", _X2, "Conv2D(6, 1)", "LayerNormalization(center=False)"),
    ("layer_normalization-no-scale", _X2, "LayerNormalization(scale=False)"),
    ("layer_normalization-no-center-no-scale", _X2,
     "LayerNormalization(center=False, scale=False)"),
    ("layer_normalization-epsilon-none", _X2, "LayerNormalization(epsilon=None)"),
    ("layer_normalization-rms_scaling", _X2, "Conv2D(6, 1)",
     "LayerNormalization(rms_scaling=True)"),
    ("layer_normalization-rms_scaling-no-scale", "Input(shape=(9, 4))",
     "LayerNormalization(scale=False, rms_scaling=True, epsilon=0.5)"),
    ("layer_normalization-cf-rms_scaling-axis1", _X4, f"Conv2D(6, 1, {_CF})",
     "LayerNormalization(axis=1, rms_scaling=True)"),
    ("layer_normalization-cf-all-axes", _X4, f"Conv2D(6, 1, {_CF})",
     "LayerNormalization(axis=[1, 2, 3])"),
    ("group_normalization-after-conv2d", _X2, "Conv2D(8, 3)", "GroupNormalization(4)"),
    ("group_normalization-input", "Input(shape=(7, 8, 6))", "GroupNormalization(groups=3)"),
    ("group_normalization-instance", _X2, "Conv2D(6, 1)", "GroupNormalization(-1)"),
    ("group_normalization-one-group", _X2, "Conv2D(6, 1)", "GroupNormalization(1, epsilon=0.1)"),
    ("group_normalization-rank2", "Input(shape=(6,))", "GroupNormalization(3)"),
    ("group_normalization-rank3", "Input(shape=(9, 4))", "Conv1D(6, 2)",
     "GroupNormalization(2, center=False)"),
    ("group_normalization-rank5", "Input(shape=(3, 4, 5, 4))", "Conv3D(4, 1)",
     "GroupNormalization(2, scale=False)"),
    ("group_normalization-cf-after-conv2d", _X4, f"Conv2D(8, 3, {_CF})",
     "GroupNormalization(2, axis=1)"),
    ("group_normalization-axis-2", _X2, "Conv2D(6, 1)",
     "GroupNormalization(4, axis=-2, center=False, scale=False)"),
    ("unit_normalization-after-conv2d", _X2, "Conv2D(6, 3)", "UnitNormalization()"),
    ("unit_normalization-input", _X2, "UnitNormalization()"),
    ("unit_normalization-rank2", "Input(shape=(6,))", "UnitNormalization()"),
    ("unit_normalization-spatial", _X2, "Conv2D(6, 1)", "UnitNormalization([1, 2])"),
    ("unit_normalization-cf", _X4, f"Conv2D(6, 1, {_CF})", "UnitNormalization(axis=1)"),
    ("unit_normalization-rank5-mixed", "Input(shape=(3, 4, 5, 2))", "UnitNormalization((-1, 1))"),
    ("unit_normalization-rank5-three-inner", "Input(shape=(3, 4, 5, 2))",
     "UnitNormalization([1, 2, 3])"),
    ("layer_normalization-rank5-rms_scaling-three-inner", "Input(shape=(3, 4, 5, 2))",
     "LayerNormalization(axis=[1, 2, 3], rms_scaling=True)"),
    ("batch_normalization-random-initializers", _X2, "Conv2D(6, 3, use_bias=False)",
     "BatchNormalization(gamma_initializer=keras.initializers.RandomNormal(1.0, 0.5), "
     "beta_initializer=keras.initializers.RandomNormal(stddev=1.0), "
     "moving_mean_initializer=keras.initializers.RandomNormal(stddev=1.0), "
     "moving_variance_initializer=keras.initializers.RandomUniform(0.5, 1.5))", "ReLU()"),
    ("layer_normalization-random-initializers", _X2, "Conv2D(6, 1)",
     "LayerNormalization(axis=[-1, 1], gamma_initializer='random_normal', "
     "beta_initializer='random_uniform')"),
    ("rms_normalization-after-conv2d", _X2, "Conv2D(6, 1)", "RMSNormalization()"),
    ("rms_normalization-last-two-axes", _X2, "RMSNormalization(axis=[-2, -1], epsilon=1e-3)"),
    ("rms_normalization-positional-epsilon-none", _X2, "Conv2D(6, 1)", "RMSNormalization(-1, None)"),
    ("rms_normalization-cf-all-axes", _X4, f"Conv2D(6, 3, padding='same', {_CF})",
     "RMSNormalization(axis=[1, 2, 3])", "ReLU()"),
    ("rms_normalization-dense-rank2", "Input(shape=(12,))", "Dense(5)", "RMSNormalization(epsilon=0.5)"),
    ("group_normalization-random-initializers", _X2, "Conv2D(6, 1)",
     "GroupNormalization(3, gamma_initializer='random_normal', beta_initializer='random_uniform')"),
]  # fmt: skip


def _normalization_cases():
    """BatchNormalization (alone, and folded into each kind of convolution before it),
    LayerNormalization, GroupNormalization and UnitNormalization: every axis form, rank 2 to 5,
    both data formats, center/scale off, epsilon. The oracle gives BatchNormalization random
    moving statistics. LayerNormalization over inner axes is in test_normalization.py (Keras's
    torch backend computes it wrongly)."""
    for id_, *lines in _NORMALIZATION:
        yield case(id_, *lines)


def _pooling_cases():
    """MaxPooling and AveragePooling: 'valid' with sizes the strides do not divide, 'same' with
    even pools, pools larger than their strides and than their input, pads that are symmetric on
    every axis (torch pads by itself) or not (torch repeats the edge entries, which an average
    counts); the global poolings with and without keepdims. Max pools of all-negative values
    (after log_sigmoid) tell padding with -inf from padding with 0."""
    windows = {
        "valid": [(2, None), (3, None), (3, 2), (2, 3), (3, 1), (1, 2), (1, 1)],
        "same": [(2, 1), (3, 1), (4, 1), (2, 2), (3, 2), (4, 2), (5, 3), (1, 2)],
    }
    for rank, mode, padding in itertools.product((1, 2, 3), ("max", "average"), windows):
        cls = f"{mode.capitalize()}Pooling{rank}D"
        for k, s in windows[padding]:
            if rank == 3 and (k, s) in ((3, 1), (1, 2), (1, 1), (5, 3)):
                continue
            strides = "" if s is None else f", strides={s}"
            yield case(
                f"{mode}_pooling{rank}d-{padding}-k{k}-s{s or k}",
                f"Input(shape={INPUTS[rank]})",
                f"{cls}({k}{strides}, padding='{padding}')",
            )
        for k, s in ((3, 2), (2, 1)):
            yield case(
                f"{mode}_pooling{rank}d-cf-{padding}-k{k}-s{s}",
                f"Input(shape={INPUTS_FIRST[rank]})",
                f"{cls}({k}, {s}, '{padding}', 'channels_first')",
            )
        if mode == "max" and padding == "same":
            for k, s in ((3, 1), (4, 1), (4, 2)):
                yield case(
                    f"max_pooling{rank}d-same-k{k}-s{s}-all-negative",
                    f"Input(shape={INPUTS[rank]})",
                    "Activation('log_sigmoid')",
                    f"{cls}({k}, {s}, 'same')",
                )
    nonsquare = {
        2: ("(3, 2)", "(2, 1)", "(2, 3)", "(1, 2)"),
        3: ("(2, 3, 4)", "(1, 2, 3)", "(3, 1, 2)", "(2, 2, 1)"),
    }
    for (rank, (k1, s1, k2, s2)), mode in itertools.product(nonsquare.items(), ("max", "average")):
        cls = f"{mode.capitalize()}Pooling{rank}D"
        for padding in ("valid", "same"):
            yield case(
                f"{mode}_pooling{rank}d-{padding}-nonsquare",
                f"Input(shape={INPUTS[rank]})",
                f"{cls}({k1}, {s1}, '{padding}')",
                f"{cls}({k2}, {s2}, '{padding}')",
            )
    for mode in ("max", "average"):
        cls = f"{mode.capitalize()}Pooling2D"
        short = "MaxPool2D" if mode == "max" else "AvgPool2D"
        for shape, k, s in (("(2, 3, 2)", 4, 4), ("(2, 3, 2)", 5, 1), ("(3, 3, 2)", 3, 3)):
            padding = "valid" if shape == "(3, 3, 2)" else "same"
            yield case(
                f"{mode}_pooling2d-{padding}-pool-{'equals' if k == 3 else 'exceeds'}-input-k{k}",
                f"Input(shape={shape})",
                f"{cls}({k}, {s}, '{padding}')",
            )
        yield case(
            f"{mode}_pooling2d-keywords-alias-name",
            "Input(shape=(7, 8, 4))",
            f"{short}(pool_size=(3, 2), strides=(1, 2), padding='same', name='pool')",
        )
        yield case(
            f"{mode}_pooling2d-positional-name",
            "Input(shape=(7, 8, 4))",
            f"{cls}((2, 3), (2, 1), 'same', 'channels_last', 'p')",
        )
        yield case(
            f"{mode}_pooling2d-data_format-directive",
            "data_format channels_first",
            "Input(shape=(4, 7, 8))",
            f"{cls}(3, 2, 'same')",
        )
    yield case("max_pooling1d-default", "Input(shape=(9, 4))", "MaxPooling1D()")
    yield case("max_pooling2d-default", "Input(shape=(7, 8, 4))", "MaxPooling2D()")
    yield case("max_pooling3d-default", "Input(shape=(5, 6, 7, 4))", "MaxPool3D()")
    # ResNet's stem: the zero padding of ReLU outputs becomes the MaxPool's own pads
    yield case(
        "max_pooling2d-after-relu-and-zero-padding",
        "Input(shape=(7, 8, 4))",
        "Conv2D(4, 3, activation='relu')",
        "ZeroPadding2D(((1, 0), (1, 1)))",
        "MaxPooling2D(3, 2)",
    )
    yield case("average_pooling1d-alias", "Input(shape=(9, 4))", "AvgPool1D(3, padding='same')")
    yield case("average_pooling3d-alias", "Input(shape=(5, 6, 7, 4))", "AvgPool3D(2)")
    for rank, mode in itertools.product((1, 2, 3), ("max", "average")):
        cls = f"Global{mode.capitalize()}Pooling{rank}D"
        short = f"Global{'Max' if mode == 'max' else 'Avg'}Pool{rank}D"
        prefix = f"global_{mode}_pooling{rank}d"
        yield case(f"{prefix}-channels_last", f"Input(shape={INPUTS[rank]})", f"{cls}()")
        yield case(
            f"{prefix}-cf", f"Input(shape={INPUTS_FIRST[rank]})", f"{short}('channels_first')"
        )
        yield case(
            f"{prefix}-keepdims",
            f"Input(shape={INPUTS[rank]})",
            f"Conv{rank}D(3, 2)",
            f"{cls}(keepdims=True)",
            f"Conv{rank}D(2, 1)",
        )
        yield case(
            f"{prefix}-keepdims-cf",
            f"Input(shape={INPUTS_FIRST[rank]})",
            f"{cls}('channels_first', True)",
        )
        yield case(
            f"{prefix}-channels_last-after-conv",
            f"Input(shape={INPUTS[rank]})",
            f"Conv{rank}D(3, 2, padding='same')",
            f"{short}()",
        )
    yield case(
        "stack-vgg-block-classifier",
        "Input(shape=(12, 12, 3))",
        "Conv2D(8, 3, padding='same', activation='relu')",
        "Conv2D(8, 3, padding='same', activation='relu')",
        "MaxPooling2D()",
        "Conv2D(16, 3, padding='same', activation='relu')",
        "AveragePooling2D(3, 2, 'same')",
        "Conv2D(10, 1)",
        "GlobalAveragePooling2D()",
    )
    yield case(
        "stack-pool-mixed-formats",
        "Input(shape=(8, 9, 3))",
        "Conv2D(4, 3, padding='same')",
        "MaxPooling2D(2, data_format='channels_first')",
        "AveragePooling2D(3, 1, 'same')",
        "GlobalMaxPooling2D(keepdims=True)",
        "GlobalAveragePooling2D('channels_first')",
    )
    yield case(
        "stack-volume-pool",
        "Input(shape=(6, 8, 8, 2))",
        "Conv3D(4, 3, padding='same', activation='relu')",
        "MaxPooling3D((1, 2, 2))",
        "AveragePooling3D(3, 2, 'same')",
        "GlobalMaxPooling3D()",
    )
    yield case(
        "stack-temporal-pool",
        "Input(shape=(16, 3))",
        "Conv1D(8, 3, padding='causal', activation='relu')",
        "MaxPooling1D(3, 2, 'same')",
        "Conv1D(8, 3)",
        "GlobalAveragePooling1D(keepdims=True)",
    )


def _core_cases():
    """Dense, Flatten, Reshape, Permute, Identity, the activation layers with arguments, the
    inference no-ops and the preprocessing layers (convc.layers.core ... preprocessing)."""
    image, image_cf = "Input(shape=(6, 7, 3))", "Input(shape=(3, 6, 7))"
    conv, conv_cf = (
        "Conv2D(4, 3, strides=2)",
        "Conv2D(4, 3, strides=2, data_format='channels_first')",
    )
    # Dense on rank 2 (Gemm), 3 and 5 (MatMul), 4 held channels-first (a 1x1 Conv) or not
    yield case("dense-rank2", "Input(shape=(7,))", "Dense(5, activation='relu')", "Dense(3)")
    yield case("dense-rank3-softmax", "Input(shape=(9, 4))", "Dense(5, activation='softmax')")
    yield case("dense-rank4-after-conv", image, conv, "Dense(5, activation='softmax')")
    yield case("dense-rank4-after-conv-cf", image_cf, conv_cf, "Dense(5)")
    yield case("dense-rank3-after-conv1d", "Input(shape=(9, 4))", "Conv1D(3, 2)", "Dense(5)")
    yield case("dense-rank5-after-conv3d", "Input(shape=(4, 5, 6, 2))", "Conv3D(3, 2)", "Dense(4)")
    yield case("dense-rank4-input", image, "Dense(4)")
    yield case(
        "dense-no-bias-glu", "Input(shape=(7,))", "Dense(6, use_bias=False, activation='glu')"
    )
    yield case("dense-positional", "Input(shape=(7,))", "Dense(4, 'tanh', False, 'he_normal')")
    yield case("dense-lora", "Input(shape=(7,))", "Dense(4, lora_rank=2, lora_alpha=3.0)")
    yield case("dense-units-bool", "Input(shape=(7,))", "Dense(True)")
    # Flatten: Keras's order after channels_last and channels_first convolutions
    yield case("flatten-after-conv", image, conv, "Flatten()", "Dense(5)")
    yield case("flatten-after-conv-cf", image_cf, conv_cf, "Flatten(data_format='channels_last')")
    yield case(
        "flatten-cf-after-conv-cf", image_cf, conv_cf, "Flatten(data_format='channels_first')"
    )
    yield case("flatten-cf-after-conv", image, conv, "Flatten(data_format='channels_first')")
    yield case(
        "flatten-directive-channels_first",
        "data_format channels_first",
        image_cf,
        "Conv2D(4, 3)",
        "Flatten()",
        "Dense(3)",
    )
    yield case("flatten-after-conv1d", "Input(shape=(9, 4))", "Conv1D(3, 2)", "Flatten()")
    yield case("flatten-after-conv3d", "Input(shape=(4, 5, 6, 2))", "Conv3D(3, 2)", "Flatten()")
    yield case("flatten-unit-spatial", image, "Conv2D(5, (6, 7))", "Flatten()", "Dense(2)")
    yield case("flatten-rank2", "Input(shape=(7,))", "Dense(4)", "Flatten()")
    # Reshape, Permute, Identity
    yield case("reshape-after-conv", image, conv, "Reshape((-1, 4))", "Dense(3)")
    yield case("reshape-to-image", "Input(shape=(12,))", "Reshape((2, 3, 2))", "Conv2D(2, 2)")
    yield case("reshape-unchanged-shape", image, conv, "Reshape((2, 3, 4))", "Conv2D(2, 1)")
    yield case("reshape-list", "Input(shape=(6, 4))", "Reshape([4, -1, 2])")
    yield case("permute-after-conv", image, conv, "Permute((2, 1, 3))", "Conv2D(2, 1)")
    yield case("permute-then-flatten", image, conv, "Permute((3, 1, 2))", "Flatten()")
    yield case("permute-rank3", "Input(shape=(9, 4))", "Permute((2, 1))", "Dense(3)")
    yield case("permute-output", image, conv, "Permute((3, 2, 1))")
    yield case("identity", image, "Identity()", conv, "Identity()")
    # activation layers with arguments
    yield case("leaky_relu-default", image, conv, "LeakyReLU()")
    yield case("leaky_relu-slope", image, conv, "LeakyReLU(0.05)")
    yield case("leaky_relu-alpha-keyword", image, conv, "LeakyReLU(negative_slope=0.1, alpha=0.6)")
    yield case("elu-default", image, conv, "ELU()")
    yield case("elu-alpha", image_cf, conv_cf, "ELU(0.4)")
    for shared in ("None", "[1, 2]", "1", "(1, 3)", "[-1]", "0"):
        yield case(f"prelu-shared-{shared}", image, conv, f"PReLU(shared_axes={shared})")
    yield case("prelu-cf-shared-spatial", image_cf, conv_cf, "PReLU(shared_axes=[2, 3])")
    yield case("prelu-rank2", "Input(shape=(7,))", "Dense(5)", "PReLU()")
    for axis in ("-1", "1", "2", "[1, 2]", "(1, 3)", "[3, 1, 2]", "[-2]"):
        yield case(f"softmax-axis-{axis}", image, conv, f"Softmax(axis={axis})")
    yield case("softmax-cf", image_cf, conv_cf, "Softmax()")
    yield case("softmax-cf-channels", image_cf, conv_cf, "Softmax(axis=1)")
    # layers that do nothing at inference
    yield case(
        "noop-regularization",
        image,
        "Dropout(0.5)",
        conv,
        "Dropout(0.25, noise_shape=(None, 1, 1, 4), seed=3)",
        "SpatialDropout2D(0.2)",
        "GaussianNoise(0.1)",
        "GaussianDropout(0.3)",
        "AlphaDropout(0.1)",
        "ActivityRegularization(0.01, 0.02)",
        "Dropout(1.0)",
    )
    yield case(
        "noop-spatial-dropout-1d-3d",
        "Input(shape=(4, 5, 6, 2))",
        "SpatialDropout3D(0.5, 'channels_last', 1)",
        "Conv3D(2, 1)",
        "Reshape((20, 12))",
        "SpatialDropout1D(0.5)",
    )
    yield case(
        "noop-random-geometry",
        image,
        "RandomFlip('horizontal', seed=1)",
        "RandomRotation(0.2, fill_mode='nearest')",
        "RandomZoom((-0.2, 0.3), 0.1)",
        "RandomTranslation(0.1, (-0.2, 0.2))",
        "RandomShear(0.3, 0.2)",
        "RandomPerspective(0.5, 0.5)",
        "RandomElasticTransform(0.5, 0.2)",
        "RandomCrop(6, 7)",
        conv,
    )
    yield case(
        "noop-random-color",
        image,
        "RandomContrast(0.5)",
        "RandomBrightness((-0.2, 0.3), value_range=(0, 1))",
        "RandomColorDegeneration(0.5)",
        "RandomColorJitter(brightness_factor=0.2, contrast_factor=0.2, hue_factor=0.1)",
        "RandomGrayscale(0.3)",
        "RandomHue(0.2)",
        "RandomInvert(0.5)",
        "RandomPosterization((2, 4))",
        "RandomSaturation(0.4)",
        "RandomSharpness(0.4)",
        "RandomErasing(0.5)",
        "RandomGaussianBlur(0.5, (3, 5), 0.5)",
        conv,
    )
    # preprocessing that computes
    yield case("rescaling-scalar", image, "Rescaling(0.00392156862745098, offset=-0.5)", conv)
    yield case("rescaling-per-channel", image, "Rescaling([1.0, 2.0, 0.5], [0.1, 0.2, 0.3])", conv)
    yield case("rescaling-after-conv", image, conv, "Rescaling(2.0, [0.0, 1.0, 2.0, 3.0])")
    yield case("normalization-weights", image, "Normalization()", conv)
    yield case("normalization-axis-none", image, "Normalization(axis=None)", conv)
    yield case("normalization-two-axes", image, conv, "Normalization(axis=(1, -1))")
    yield case("normalization-cf", image_cf, "Normalization(axis=1)", conv_cf)
    yield case(
        "normalization-args",
        image,
        "Normalization(mean=[1.0, 2.0, 3.0], variance=[1.0, 4.0, 0.25])",
        conv,
    )
    yield case("normalization-scalar-args", image, "Normalization(None, 0.5, 2.0)", conv)
    yield case(
        "normalization-invert",
        image,
        conv,
        "Normalization(axis=(1, 2), mean=[1.0, 2.0, 3.0], variance=[2.0, 3.0, 4.0], invert=True)",
    )
    for interpolation in ("bilinear", "bicubic", "nearest"):
        for size in ((9, 14), (3, 4), (9, 4), (6, 7)):
            yield case(
                f"resizing-{interpolation}-{size[0]}x{size[1]}",
                image,
                f"Resizing({size[0]}, {size[1]}, interpolation='{interpolation}')",
            )
    yield case("resizing-after-conv", image, "Conv2D(4, 1)", "Resizing(5, 9)", "Conv2D(2, 1)")
    yield case("resizing-cf", image_cf, "Resizing(4, 9, 'bicubic', data_format='channels_first')")
    yield case(
        "resizing-crop-aspect",
        "Input(shape=(6, 9, 3))",
        "Resizing(4, 4, crop_to_aspect_ratio=True)",
    )
    yield case(
        "resizing-pad-aspect",
        "Input(shape=(5, 9, 3))",
        "Resizing(6, 6, pad_to_aspect_ratio=True, fill_value=1.5)",
    )
    yield case("resizing-one-row", "Input(shape=(1, 7, 3))", "Resizing(4, 5)")
    yield case("resizing-one-row-only-then-conv", "Input(shape=(1, 7, 3))", "Resizing(4, 7)", conv)
    yield case(
        "resizing-one-row-bicubic-shrink-then-conv",
        "Input(shape=(1, 7, 3))",
        "Conv2D(3, 1)",
        "Resizing(4, 5, 'bicubic')",
        "Conv2D(2, 3)",
    )
    yield case("resizing-antialias-enlarge", image, "Resizing(9, 14, antialias=True)")
    yield case("center_crop-slice", image, "CenterCrop(4, 5)")
    yield case("center_crop-resize", image, "CenterCrop(8, 5)")
    yield case("center_crop-cf", image_cf, "CenterCrop(3, 3, data_format='channels_first')")
    yield case(
        "classifier-head",
        "Input(shape=(16, 16, 3))",
        "Rescaling(0.00392156862745098)",
        "Conv2D(8, 3, strides=2, padding='same', activation='relu')",
        "Conv2D(16, 3, strides=2, padding='same', activation='relu')",
        "Flatten()",
        "Dense(32, activation='relu')",
        "Dropout(0.5)",
        "Dense(10, activation='softmax')",
    )


ALL_CASES = [
    *_conv_cases(),
    *_transpose_cases(),
    *_conv_form_cases(),
    *_depthwise_separable_cases(),
    *_reshaping_cases(),
    *_activation_cases(),
    *_data_format_cases(),
    *_stack_cases(),
    *_normalization_cases(),
    *_pooling_cases(),
    *_core_cases(),
]
