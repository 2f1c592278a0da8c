"""Random layer stacks, drawn by hypothesis, against Keras: same verdict, same numbers.

Arguments are drawn over their whole range, invalid values included (kernels larger than the
input, strides with dilation, output_padding >= strides, groups that do not divide, pooling
windows larger than the input ...). Between the convolution-family layers come the
normalization, pooling, core, activation and no-op layers (rank-keeping: BatchNormalization on
any axis, LayerNormalization on the last axis only, GroupNormalization, UnitNormalization,
pooling, global pooling with keepdims, Dense on any rank, Permute, LeakyReLU, PReLU with
shared_axes, ELU, Softmax on one axis or two, Rescaling, Activation, Dropout and the noise
layers), and a stack may end in a classifier head (Flatten, Reshape((-1,)) or global pooling,
then Dense layers). For each stack, either Keras builds and runs it and convc agrees with its
output (ONNX Runtime and the NumPy reference, at batch 1: see TORCH_STRIDE_BUG in
test_random_graphs), or Keras rejects it (a ``ValueError``, how Keras refuses an argument; any other exception is
an oracle bug and fails) and convc reports a located error. Both outcomes are
counted: most stacks must compare numbers, every new layer must be in one that did, and the
refusals are checked to happen too.
"""

from __future__ import annotations

import re
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convc.compiler import compile_text, resolve_text
from convc.diagnostics import ConvcError, errors_of
from convc.reference import model_outputs, run_reference
from convc.weights import from_arrays

from jax_oracle import torch_padding
from oracle import input_for, keras_model, keras_output, onnx_output, random_weights

ACTIVATIONS = [
    "None",
    "'relu'",
    "'gelu'",
    "'softmax'",
    "'hard_sigmoid'",
    "'selu'",
    "'tanh'",
    "'mish'",
]


def _tuple_or_int(draw, rank, values):
    if draw(st.booleans()):
        return str(draw(st.sampled_from(values)))
    items = [str(draw(st.sampled_from(values))) for _ in range(rank)]
    return "(" + ", ".join(items) + ("," if rank == 1 else "") + ")"


@st.composite
def layer_call(draw, rank: int) -> str:
    kinds = ["Conv", "ConvTranspose", "Cropping", "ZeroPadding", "UpSampling"]
    if rank < 3:
        kinds += ["DepthwiseConv", "SeparableConv"]
    kind = draw(st.sampled_from(kinds))
    args: list[str] = []
    data_format = draw(st.sampled_from([None, None, None, "'channels_first'"]))
    if kind in ("Conv", "ConvTranspose", "DepthwiseConv", "SeparableConv"):
        if kind != "DepthwiseConv":
            args.append(str(draw(st.integers(1, 4))))
        args.append(_tuple_or_int(draw, rank, [1, 2, 3, 4]))
        args.append(f"strides={_tuple_or_int(draw, rank, [1, 1, 2, 3])}")
        paddings = ["'valid'", "'same'"] + (["'causal'"] if rank == 1 else [])
        args.append(f"padding={draw(st.sampled_from(paddings))}")
        args.append(f"dilation_rate={_tuple_or_int(draw, rank, [1, 1, 2])}")
        if kind == "Conv" and draw(st.booleans()):
            args.append(f"groups={draw(st.integers(1, 2))}")
        if kind == "ConvTranspose" and draw(st.booleans()):
            args.append(f"output_padding={_tuple_or_int(draw, rank, [0, 1, 2])}")
        if kind in ("DepthwiseConv", "SeparableConv"):
            args.append(f"depth_multiplier={draw(st.integers(1, 3))}")
        args.append(f"activation={draw(st.sampled_from(ACTIVATIONS))}")
        args.append(f"use_bias={draw(st.booleans())}")
        name = {"ConvTranspose": f"Conv{rank}DTranspose"}.get(kind, f"{kind}{rank}D")
    elif kind in ("Cropping", "ZeroPadding"):
        if rank == 1:
            args.append(_tuple_or_int(draw, 2, [0, 1, 2]))
        else:
            entry = st.one_of(
                st.integers(0, 2).map(str), st.tuples(st.integers(0, 2), st.integers(0, 2)).map(str)
            )
            args.append(
                "(" + ", ".join(draw(entry) for _ in range(rank)) + ")"
                if draw(st.booleans())
                else str(draw(st.integers(-1 if kind == "ZeroPadding" else 0, 2)))
            )
        name = f"{kind}{rank}D"
    else:
        args.append(
            str(draw(st.integers(1, 3))) if rank == 1 else _tuple_or_int(draw, rank, [1, 2, 3])
        )
        if rank == 2:
            args.append(f"interpolation={draw(st.sampled_from(['nearest', 'bilinear']))!r}")
        name = f"UpSampling{rank}D"
    has_format = not (rank == 1 and kind in ("Cropping", "UpSampling"))
    if data_format and has_format:
        args.append(f"data_format={data_format}")
    return f"{name}({', '.join(args)})"


NOOPS = [
    "Dropout(0.5)",
    "GaussianNoise(0.1)",
    "GaussianDropout(0.2)",
    "AlphaDropout(0.1)",
    "ActivityRegularization(l1=0.01)",
    "Identity()",
]
LAYER_ACTIVATIONS = ["'relu'", "'sigmoid'", "'gelu'", "'swish'", "'elu'", "'softplus'", "'tanh'"]


NEW_KINDS = [
    "batch_norm",
    "layer_norm",
    "group_norm",
    "unit_norm",
    "pool",
    "pool",
    "global_pool",
    "dense",
    "permute",
    "leaky_relu",
    "prelu",
    "elu",
    "softmax",
    "rescaling",
    "noop",
    "activation",
]
NEW_LAYERS = [
    "BatchNormalization",
    "LayerNormalization",
    "GroupNormalization",
    "UnitNormalization",
    "MaxPooling",
    "AveragePooling",
    "GlobalMaxPooling",
    "GlobalAveragePooling",
    "Dense",
    "Flatten",
    "Reshape",
    "Permute",
    "LeakyReLU",
    "PReLU",
    "ELU",
    "Softmax",
    "Rescaling",
    "Activation",
    "Dropout",
]
"""Each must appear in a stack that compared numbers with Keras."""


def _spread(draw, choices: list, salt: str):
    """One of ``choices``, spread over the examples: hypothesis's own choices (and its seeds for
    st.randoms) repeat, and in a derandomized run some kinds were never drawn. A drawn integer
    plus a checksum of the text so far (``salt``) is a function of the draws, so hypothesis
    replays and shrinks it, that varies as the texts vary."""
    return choices[(draw(st.integers(0, 2**16)) + zlib.crc32(salt.encode())) % len(choices)]


def _axis(draw, rank: int) -> int:
    """A non-batch axis of a rank-``rank`` + 2 tensor, positive or counted from the end."""
    axis = draw(st.integers(1, rank + 1))
    return axis - rank - 2 if draw(st.booleans()) else axis


@st.composite
def new_layer_call(draw, rank: int, salt: str) -> str:
    """A layer of the normalization, pooling, core, activation-layer or no-op families that keeps
    the tensor's rank: valid for any shape, or refused by Keras and convc alike (a pooling window
    larger than a 'valid' input, groups that do not divide the channels)."""
    kind = _spread(draw, NEW_KINDS, salt)
    data_format = draw(st.sampled_from(["", "", ", data_format='channels_first'"]))
    if kind == "batch_norm":
        args = [f"axis={_axis(draw, rank)}"] if draw(st.booleans()) else []
        args += [f"epsilon={draw(st.sampled_from([1e-3, 0.01, 0.5]))}"]
        args += [f"center={draw(st.booleans())}", f"scale={draw(st.booleans())}"]
        if draw(st.booleans()):
            args.append("momentum=0.9")
        return f"BatchNormalization({', '.join(args)})"
    if kind == "layer_norm":  # the last axis only: see README on inner axes in Keras-torch
        extra = draw(st.sampled_from(["", ", center=False", ", scale=False", ", rms_scaling=True"]))
        return f"LayerNormalization(axis=-1, epsilon={draw(st.sampled_from([1e-3, 0.1]))}{extra})"
    if kind == "group_norm":
        groups = draw(st.sampled_from([1, 2, -1]))
        axis = draw(st.sampled_from([-1, -1, 1]))
        return f"GroupNormalization(groups={groups}, axis={axis}, epsilon=0.01)"
    if kind == "unit_norm":
        if draw(st.booleans()):
            return "UnitNormalization()"
        axes = sorted(draw(st.sets(st.integers(1, rank + 1), min_size=1, max_size=2)))
        return f"UnitNormalization(axis={axes})"
    if kind == "pool":
        name = draw(st.sampled_from(["MaxPooling", "AveragePooling"])) + f"{rank}D"
        args = [_tuple_or_int(draw, rank, [1, 2, 3])]
        if draw(st.booleans()):
            args.append(f"strides={_tuple_or_int(draw, rank, [1, 2, 3])}")
        padding = torch_padding(name, draw(st.sampled_from(["valid", "same"])))
        args.append(f"padding={padding!r}")
        return f"{name}({', '.join(args)}{data_format})"
    if kind == "global_pool":
        name = draw(st.sampled_from(["GlobalMaxPooling", "GlobalAveragePooling"])) + f"{rank}D"
        return f"{name}(keepdims=True{data_format})"
    if kind == "dense":
        activation = draw(st.sampled_from(["None", *LAYER_ACTIVATIONS]))
        return f"Dense({draw(st.integers(1, 5))}, activation={activation})"
    if kind == "permute":
        dims = list(draw(st.permutations(range(1, rank + 2))))
        return f"Permute({tuple(dims)})"
    if kind == "leaky_relu":
        return f"LeakyReLU({draw(st.sampled_from(['', '0.1', 'negative_slope=0.5']))})"
    if kind == "prelu":
        if draw(st.booleans()):
            return "PReLU()"
        axes = sorted(draw(st.sets(st.integers(1, rank + 1), min_size=1, max_size=rank)))
        return f"PReLU(shared_axes={axes})"
    if kind == "elu":
        return f"ELU({draw(st.sampled_from(['', '0.5', 'alpha=2.0']))})"
    if kind == "softmax":
        if draw(st.booleans()):
            return "Softmax()"
        axes = sorted(draw(st.sets(st.integers(1, rank + 1), min_size=1, max_size=2)))
        return f"Softmax(axis={axes[0] if len(axes) == 1 else axes})"
    if kind == "rescaling":
        return f"Rescaling({draw(st.sampled_from(['0.004', '2.0', '0.5']))}, offset=-0.5)"
    if kind == "noop":
        return draw(st.sampled_from([*NOOPS, f"SpatialDropout{rank}D(0.3)"]))
    return f"Activation({draw(st.sampled_from(LAYER_ACTIVATIONS))})"


@st.composite
def head(draw, rank: int, salt: str) -> list[str]:
    """A classifier's end: Flatten, Reshape((-1,)) or a global pooling to (batch, features),
    then Dense layers, with a no-op or an activation layer between them."""
    kind = _spread(draw, ["flatten", "flatten", "reshape", "global"], salt)
    if kind == "flatten":
        layers = [draw(st.sampled_from(["Flatten()", "Flatten(data_format='channels_first')"]))]
    elif kind == "reshape":
        layers = ["Reshape((-1,))"]
    else:
        name = draw(st.sampled_from(["GlobalMaxPooling", "GlobalAveragePooling"]))
        layers = [f"{name}{rank}D()"]
    layers.append(f"Dense({draw(st.integers(2, 6))}, activation='relu')")
    if draw(st.booleans()):
        layers.append(draw(st.sampled_from(["Dropout(0.5)", "BatchNormalization()", "PReLU()"])))
    layers.append(f"Dense({draw(st.integers(2, 4))}, activation='softmax')")
    return layers


@st.composite
def stack(draw) -> str:
    rank = draw(st.sampled_from([1, 1, 2, 2, 2, 3]))
    high = 9 if rank < 3 else 6
    dims = [draw(st.integers(2, high)) for _ in range(rank)] + [draw(st.integers(1, 4))]
    lines = [f"Input(shape=({', '.join(map(str, dims))}))"]
    for _ in range(draw(st.integers(1, 4))):
        salt = "\n".join(lines)
        lines.append(draw(layer_call(rank) if draw(st.booleans()) else new_layer_call(rank, salt)))
    if draw(st.integers(0, 2)) == 0:
        lines += draw(head(rank, "\n".join(lines)))
    return "\n".join(lines) + "\n"


COUNTS = {"run": 0, "compared": 0, "refused": 0}
COMPARED_LAYERS: set[str] = set()
"""Stacks drawn, stacks compared with Keras's numbers, stacks Keras and convc both refused."""
KERAS_REJECTS = (ValueError,)  # how Keras refuses an argument or a shape


def _keras(text: str):
    """Keras's model, weights, input and output; None when Keras rejects the stack or any layer
    computes an empty tensor (convc refuses zero-size outputs when it builds, where Keras runs
    on). Any exception but ``KERAS_REJECTS`` propagates."""
    try:
        model = keras_model(text)
        if any(0 in layer.output.shape for layer in model.layers):
            return None
        arrays = random_weights(model)
        x = input_for(model, batch=1)
        output = keras_output(model, x)
    except KERAS_REJECTS:
        return None
    return None if output.size == 0 else (model, arrays, x, output)


@settings(
    max_examples=180, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
@given(stack())
def _stack_agrees_with_keras(text):
    COUNTS["run"] += 1
    keras_result = _keras(text)
    if keras_result is None:
        with pytest.raises(ConvcError) as caught:
            compile_text(text)
        assert all(e.span is not None for e in errors_of(caught.value))
        COUNTS["refused"] += 1
        return
    model, arrays, x, expected = keras_result
    actual = onnx_output(compile_text(text, arrays), x)
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, atol=1e-4, rtol=1e-4, err_msg=text)
    ours = resolve_text(text)
    (reference,) = model_outputs(
        ours, run_reference(ours, from_arrays(ours, arrays), {ours.inputs[0].name: x})
    ).values()
    np.testing.assert_allclose(reference, expected, atol=1e-4, rtol=1e-4, err_msg=text)
    COUNTS["compared"] += 1
    COMPARED_LAYERS.update(re.findall(r"^([A-Za-z]+?)(?:[123]D)?\(", text, re.MULTILINE))


def test_random_stack_agrees_with_keras():
    """Every drawn stack either matches Keras (ONNX Runtime and the NumPy reference) or is refused
    by both; most must really compare numbers, and the refusals must be a minority."""
    COUNTS.update(run=0, compared=0, refused=0)
    COMPARED_LAYERS.clear()
    _stack_agrees_with_keras()
    assert COUNTS["compared"] + COUNTS["refused"] == COUNTS["run"], COUNTS
    assert COUNTS["compared"] >= 100, COUNTS
    assert COUNTS["compared"] >= 0.6 * COUNTS["run"], COUNTS
    assert COUNTS["refused"] >= 20, COUNTS
    assert not set(NEW_LAYERS) - COMPARED_LAYERS, sorted(set(NEW_LAYERS) - COMPARED_LAYERS)


def test_an_oracle_bug_is_not_a_rejection(monkeypatch):
    def broken(text):
        raise AttributeError("an oracle bug")

    monkeypatch.setattr("test_random_stacks.keras_model", broken)
    with pytest.raises(AttributeError, match="an oracle bug"):
        _keras("Input(shape=(4, 1))\nConv1D(1, 1)\n")
