"""Random layer stacks, drawn by hypothesis, against Keras: same verdict, same numbers.

Arguments are drawn over their whole range, invalid values included (kernels larger than the
input, strides with dilation, output_padding >= strides, groups that do not divide ...). For each
stack, either Keras builds and runs it and convc's model agrees with its output, or Keras rejects
it (a ``ValueError``, how Keras refuses an argument) and convc reports a located error. Any other
exception of Keras's is an oracle bug and fails. The examples that compared numbers are counted:
too few fails, since a stack that both refuse is no evidence of agreement.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convc.compiler import compile_text
from convc.diagnostics import ConvcError, errors_of

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


@st.composite
def stack(draw) -> str:
    rank = draw(st.sampled_from([1, 1, 2, 2, 2, 3]))
    high = 9 if rank < 3 else 6
    dims = [draw(st.integers(2, high)) for _ in range(rank)] + [draw(st.integers(1, 4))]
    lines = [f"Input(shape=({', '.join(map(str, dims))}))"]
    lines += [draw(layer_call(rank)) for _ in range(draw(st.integers(1, 3)))]
    return "\n".join(lines) + "\n"


KERAS_REJECTS = (ValueError,)  # how Keras refuses an argument or a shape
EXAMPLES = 60
MIN_COMPARED = EXAMPLES // 2  # 33 of the 60 derandomized examples compare numbers
COUNTS = {"run": 0, "compared": 0, "rejected": 0}


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
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
@given(stack())
def _random_stack_agrees_with_keras(text):
    COUNTS["run"] += 1
    keras_result = _keras(text)
    if keras_result is None:
        COUNTS["rejected"] += 1
        with pytest.raises(ConvcError) as caught:
            compile_text(text)
        assert all(e.span is not None for e in errors_of(caught.value))
        return
    model, arrays, x, expected = keras_result
    actual = onnx_output(compile_text(text, arrays), x)
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, atol=1e-4, rtol=1e-4)
    COUNTS["compared"] += 1


def test_random_stack_agrees_with_keras():
    """Every example agrees, and enough of them compared numbers (counted in this process, so
    that it holds under pytest-xdist too)."""
    COUNTS.update(run=0, compared=0, rejected=0)
    _random_stack_agrees_with_keras()
    assert COUNTS["compared"] >= MIN_COMPARED, COUNTS


def test_an_oracle_bug_is_not_a_rejection(monkeypatch):
    def broken(text):
        raise AttributeError("an oracle bug")

    monkeypatch.setattr("test_random_stacks.keras_model", broken)
    with pytest.raises(AttributeError, match="an oracle bug"):
        _keras("Input(shape=(4, 1))\nConv1D(1, 1)\n")
