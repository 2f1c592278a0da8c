"""Pooling: the ONNX forms each argument path takes, per target, and random pooling stacks
against Keras.

The per-case table (tests/cases.py, ``_pooling_cases``) holds every layer and argument path to
Keras and runs it in every runtime; this file holds what those cannot see: how many nodes of
which kind a pooling becomes, where a Transpose is (not) needed, which target takes which
workaround, the Reduce ops' form at each opset, and random stacks over every argument, invalid
values included.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convc.compiler import compile_text, resolve_text
from convc.diagnostics import ConvcError, errors_of
from convc.reference import model_outputs, run_reference
from convc.weights import from_arrays

from jax_oracle import torch_padding
from oracle import (
    assert_matches_keras,
    input_for,
    keras_model,
    keras_output,
    onnx_output,
    random_weights,
)


def _ops(proto: onnx.ModelProto) -> list[str]:
    return [node.op_type for node in proto.graph.node]


def _node(proto: onnx.ModelProto, op_type: str) -> onnx.NodeProto:
    return next(node for node in proto.graph.node if node.op_type == op_type)


def _attributes(node: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _workarounds(proto: onnx.ModelProto) -> str:
    return "".join(p.value for p in proto.metadata_props if p.key == "convc.workarounds")


FIRST2 = "Input(shape=(4, 7, 8))\n"
"""A channels_first input: the pools need no Transpose, so the node lists are the pools'."""

FORMS = [
    # (id, layer, target, ops, attributes of the pool)
    (
        "max-same-stride2-asymmetric",
        "MaxPooling2D(3, 2, 'same', 'channels_first')",
        "portable",
        ["MaxPool"],
        {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 0, 1, 1]},
    ),
    (
        "max-same-stride1-ort",
        "MaxPooling2D(3, 1, 'same', 'channels_first')",
        "ort",
        ["MaxPool"],
        {"kernel_shape": [3, 3], "strides": [1, 1], "pads": [1, 1, 1, 1]},
    ),
    (
        "max-same-stride1-portable",
        "MaxPooling2D(3, 1, 'same', 'channels_first')",
        "portable",
        ["Pad", "MaxPool"],
        {"kernel_shape": [3, 3], "strides": [1, 1], "pads": [0, 0, 0, 0]},
    ),
    (
        "max-same-stride1-onnx-reference",
        "MaxPooling2D(2, 1, 'same', 'channels_first')",
        "onnx-reference",
        ["Pad", "MaxPool"],
        {"kernel_shape": [2, 2], "strides": [1, 1], "pads": [0, 0, 0, 0]},
    ),
    (
        "max-same-unpadded-stride1",
        "MaxPooling2D(1, 1, 'same', 'channels_first')",
        "portable",
        [],
        None,
    ),
    (
        "max-valid",
        "MaxPooling2D((3, 2), (2, 3), data_format='channels_first')",
        "portable",
        ["MaxPool"],
        {"kernel_shape": [3, 2], "strides": [2, 3], "pads": [0, 0, 0, 0]},
    ),
    (
        "average-same-symmetric",
        "AveragePooling2D(3, 1, 'same', 'channels_first')",
        "portable",
        ["AveragePool"],
        {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 0},
    ),
    (
        "average-same-asymmetric",
        "AveragePooling2D(3, 2, 'same', 'channels_first')",
        "ort",
        ["AveragePool"],
        {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 0, 1, 1], "count_include_pad": 0},
    ),
    (
        "average-same-torch-asymmetric",
        "AveragePooling2D(3, 2, 'same_torch', 'channels_first')",
        "ort",
        ["Pad", "AveragePool"],
        {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [0, 0, 0, 0]},
    ),
    (
        "average-same-torch-symmetric",
        "AveragePooling2D(3, 1, 'same_torch', 'channels_first')",
        "portable",
        ["AveragePool"],
        {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 0},
    ),
    (
        "average-same-unpadded",
        "AveragePooling2D((1, 2), (1, 2), 'same', 'channels_first')",
        "ort",
        ["AveragePool"],
        {"kernel_shape": [1, 2], "strides": [1, 2], "pads": [0, 0, 0, 0]},
    ),
    (
        "average-valid",
        "AveragePooling2D(2, data_format='channels_first')",
        "ort",
        ["AveragePool"],
        {"kernel_shape": [2, 2], "strides": [2, 2], "pads": [0, 0, 0, 0]},
    ),
    (
        "average-pool1-stride1",
        "AveragePooling2D(1, data_format='channels_first')",
        "ort",
        [],
        None,
    ),
]


TENSORFLOWS_ONLY = "AveragePooling2D(3, 2, 'same', 'channels_first')"
"""The form whose numbers Keras on torch computes otherwise (unequal pads)."""


@pytest.mark.parametrize(
    ("layer", "target", "ops", "attributes"),
    [pytest.param(*row[1:], id=row[0]) for row in FORMS],
)
def test_pooling_form(layer, target, ops, attributes):
    """One node per pooling, and a Pad first only where torch repeats edge entries (a
    ``same_torch`` average with pads that differ at the ends) or the target's MaxPool cannot
    pad. Compared with Keras on torch where the backends agree or the form is torch's (the
    asymmetric 'same' average is compared with Keras on JAX in tests/test_keras_backends.py)."""
    text = FIRST2 + layer + "\n"
    proto = compile_text(text, target=target)
    assert _ops(proto) == (ops or ["Identity"])
    if attributes:
        pool = _node(proto, ops[-1])
        found = _attributes(pool)
        assert {key: found.get(key) for key in attributes} == attributes
    if "Pad" in ops:
        assert _attributes(_node(proto, "Pad"))["mode"] == b"edge"
    assert ("MaxPool with unit strides" in _workarounds(proto)) == (ops == ["Pad", "MaxPool"])
    if layer != TENSORFLOWS_ONLY:
        assert_matches_keras(text)


# -- layouts ------------------------------------------------------------------------------------


def test_channels_last_classifier_transposes_once():
    """conv -> pool -> GlobalAveragePooling2D: one Transpose in, none out ((batch, channels)
    has one order), the global pooling reduces the channels-first axes where they are."""
    text = (
        "Input(shape=(9, 10, 3))\nConv2D(4, 3, padding='same')\nMaxPooling2D()\n"
        "AveragePooling2D(3, 1, 'same')\nGlobalAveragePooling2D()\n"
    )
    proto = compile_text(text)
    assert _ops(proto) == ["Transpose", "Conv", "MaxPool", "AveragePool", "ReduceMean"]
    reduce = _node(proto, "ReduceMean")
    assert _attributes(reduce)["keepdims"] == 0
    assert proto.graph.output[0].type.tensor_type.shape.dim[1].dim_value == 4
    assert_matches_keras(text)


@pytest.mark.parametrize(
    ("head", "ops"),
    [
        pytest.param(
            "GlobalAveragePooling2D()\nDense(5, activation='softmax')\n",
            ["ReduceMean", "Gemm", "Softmax"],
            id="global-average-dense",
        ),
        pytest.param(
            "Flatten()\nDense(6, activation='relu')\nDropout(0.5)\nDense(5)\n",
            ["Reshape", "Gemm", "Relu", "Gemm"],
            id="flatten-dense",
        ),
    ],
)
def test_channels_last_classifier_with_dense_transposes_once(head, ops):
    """The issue's classifier: convolutions, BatchNormalization, pooling, then a global pooling or
    a Flatten and Dense layers. Its only Transpose is at the input: the global pooling reduces
    the axes where they are, Flatten's (height, width, channels) order becomes the order of the
    Dense kernel's rows, and the BatchNormalization folds into the convolution before it."""
    text = (
        "Input(shape=(12, 10, 3))\nConv2D(8, 3, padding='same', use_bias=False)\n"
        "BatchNormalization()\nReLU()\nMaxPooling2D()\nConv2D(8, 3, activation='relu')\n"
        "AveragePooling2D(3, 1, 'same')\n" + head
    )
    _, proto = assert_matches_keras(text)
    body = ["Transpose", "Conv", "Relu", "MaxPool", "Conv", "Relu", "AveragePool"]
    assert _ops(proto) == body + ops


@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pooling_of_a_channels_last_input_needs_no_transpose(keepdims):
    text = f"Input(shape=(6, 7, 3))\nGlobalMaxPooling2D(keepdims={keepdims})\n"
    proto = compile_text(text, target="ort")
    assert _ops(proto) == ["ReduceMax"]
    assert list(onnx.numpy_helper.to_array(next(iter(proto.graph.initializer)))) == [1, 2]
    assert_matches_keras(text)


def test_keepdims_keeps_the_layout_for_the_next_convolution():
    """GlobalAveragePooling2D(keepdims=True) between two convolutions: the (N, C, 1, 1) value
    goes on to the next Conv as it is; the only Transposes are the model's input and output."""
    text = (
        "Input(shape=(6, 7, 3))\nConv2D(4, 3)\nGlobalAveragePooling2D(keepdims=True)\n"
        "Conv2D(2, 1)\n"
    )
    proto = compile_text(text)
    assert _ops(proto) == ["Transpose", "Conv", "GlobalAveragePool", "Conv", "Transpose"]
    assert_matches_keras(text)


def test_squeeze_excite_graph_transposes_only_for_its_image_output():
    from graph_cases import GRAPH_CASES

    text = next(p.values[0] for p in GRAPH_CASES if p.id == "squeeze-excite-pooling")
    proto = compile_text(text)
    assert _ops(proto).count("Transpose") == 2  # the input, and the one rank-4 output
    ranks = [len(o.type.tensor_type.shape.dim) for o in proto.graph.output]
    assert ranks == [2, 2, 4]


def test_pooling_follows_a_channels_first_value_without_transposing():
    text = (
        "Input(shape=(4, 9, 8))\nConv2D(3, 3, data_format='channels_first')\n"
        "MaxPooling2D(data_format='channels_first')\nGlobalAveragePooling2D('channels_first')\n"
    )
    assert _ops(compile_text(text)) == ["Conv", "MaxPool", "ReduceMean"]


@pytest.mark.parametrize("rank", [1, 3])
def test_one_and_three_d_pools_keep_their_rank(rank):
    """ONNX pools are rank-generic: no 4-D view around a 1-D or 3-D pool in any target."""
    shape = "(9, 4)" if rank == 1 else "(5, 6, 7, 4)"
    text = f"Input(shape={shape})\nConv{rank}D(2, 1)\nMaxPooling{rank}D(2, padding='same')\n"
    for target in ("portable", "opencv", "ort"):
        proto = compile_text(text, target=target)
        assert "Reshape" not in _ops(proto)
        assert _attributes(_node(proto, "MaxPool"))["kernel_shape"] == [2] * rank


@pytest.mark.parametrize("keepdims", [False, True])
def test_three_middle_axes_are_reduced_as_one_where_opencv_needs_it(keepdims):
    text = f"Input(shape=(4, 5, 6, 3))\nGlobalAveragePooling3D(keepdims={keepdims})\n"
    assert _ops(compile_text(text, target="ort")) == ["ReduceMean"]
    for target in ("opencv", "portable"):
        proto = compile_text(text, target=target)
        assert _ops(proto) == ["Reshape", "ReduceMean"] + ["Reshape"] * keepdims
        assert "three middle axes" in _workarounds(proto)
    # after a convolution the spatial axes are the last three: no workaround
    after_conv = "Input(shape=(4, 5, 6, 3))\nConv3D(2, 1)\nGlobalMaxPooling3D()\n"
    assert _ops(compile_text(after_conv, target="opencv")) == ["Transpose", "Conv", "ReduceMax"]
    assert_matches_keras(text)


# -- opsets ------------------------------------------------------------------------------------

EVERY_POOLING = """\
Input(shape=(9, 10, 3))
Conv2D(4, 2, padding='same')
MaxPooling2D(3, 1, 'same')
MaxPooling2D(3, 2, 'same')
AveragePooling2D(3, 1, 'same')
AveragePooling2D(2, 1, 'same')
GlobalMaxPooling2D(keepdims=True)
GlobalAveragePooling2D()
"""


@pytest.mark.parametrize("opset", range(13, 29))
def test_every_opset_matches_keras(opset):
    """ReduceMean and ReduceMax take their axes as an attribute up to opset 17 and as an input
    from 18; the pools' attributes are the same at every opset."""
    _, proto = assert_matches_keras(EVERY_POOLING, opset=opset)
    for node in proto.graph.node:
        if node.op_type in ("ReduceMean", "ReduceMax"):
            assert ("axes" in _attributes(node)) == (opset < 18)
            assert len(node.input) == (1 if opset < 18 else 2)


# -- random stacks -------------------------------------------------------------------------------


def _rarely(draw, good: list, bad: list):
    """One of ``good``, or now and then one of ``bad``."""
    return draw(st.sampled_from(bad if draw(st.integers(0, 9)) == 9 else good))


def _window(draw, rank: int, good: list[int]) -> str:
    if draw(st.booleans()):
        return str(_rarely(draw, good, [0]))
    items = [str(_rarely(draw, good, [0])) for _ in range(rank)]
    return "(" + ", ".join(items) + ("," if rank == 1 else "") + ")"


@st.composite
def pooling_call(draw, rank: int, kind: str) -> str:
    """A pooling layer's call, its arguments drawn over their whole range: invalid values
    (0, 'SAME', keepdims=1) now and then."""
    data_format = draw(st.sampled_from([None, None, None, "'channels_first'"]))
    args = []
    if kind.startswith("Global"):
        if data_format:
            args.append(f"data_format={data_format}")
        if draw(st.booleans()):
            args.append(f"keepdims={_rarely(draw, ['True', 'False'], ['1'])}")
        return f"{kind}Pooling{rank}D({', '.join(args)})"
    args.append(_window(draw, rank, [1, 2, 3, 4, 5] if rank < 3 else [1, 2, 3]))
    if draw(st.booleans()):
        args.append(f"strides={_window(draw, rank, [1, 2, 3])}")
    same = repr(torch_padding(kind, "same"))
    padding = _rarely(draw, ["'valid'", same, same, None], ["'SAME'", "'causal'"])
    if padding:
        args.append(f"padding={padding}")
    if data_format:
        args.append(f"data_format={data_format}")
    return f"{kind}Pooling{rank}D({', '.join(args)})"


@st.composite
def pooling_stack(draw) -> str:
    """An input (an axis may be short), perhaps a convolution, one or two poolings, perhaps a
    global pooling."""
    rank = draw(st.sampled_from([1, 2, 2, 3]))
    high = 9 if rank < 3 else 6
    dims = [_rarely(draw, list(range(3, high + 1)), [1, 2]) for _ in range(rank)]
    lines = [f"Input(shape=({', '.join(map(str, [*dims, draw(st.integers(1, 3))]))}))"]
    if draw(st.booleans()):
        lines.append(f"Conv{rank}D(3, 1)")
    for _ in range(draw(st.integers(1, 2))):
        lines.append(draw(pooling_call(rank, draw(st.sampled_from(["Max", "Average"])))))
    if draw(st.booleans()):
        lines.append(
            draw(pooling_call(rank, draw(st.sampled_from(["GlobalMax", "GlobalAverage"]))))
        )
    return "\n".join(lines) + "\n"


# How Keras refuses a pool size or a shape: ValueError, or torch's TypeError (keepdims=1) and
# ZeroDivisionError (strides=0) at call. Any other exception is an oracle bug and fails.
KERAS_REJECTS = (ValueError, TypeError, ZeroDivisionError)


def _keras(text: str):
    """Keras's model, input and output, or None when Keras rejects it (at build or at run)."""
    try:
        model = keras_model(text)
        arrays = random_weights(model)
        x = input_for(model, batch=2)
        return model, arrays, x, keras_output(model, x)
    except KERAS_REJECTS:
        return None


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
@given(pooling_stack())
def test_random_pooling_stack_agrees_with_keras(text):
    """Either Keras builds and runs the stack and convc's model (for the portable target and
    for onnxruntime's own) and its NumPy reference agree with Keras, or Keras fails and convc
    reports a located error."""
    keras_result = _keras(text)
    if keras_result is None:
        with pytest.raises(ConvcError) as caught:
            compile_text(text)
        assert all(e.span is not None for e in errors_of(caught.value))
        return
    _, arrays, x, expected = keras_result
    for target in ("portable", "ort"):
        actual = onnx_output(compile_text(text, arrays, target=target), x)
        assert actual.shape == expected.shape
        np.testing.assert_allclose(actual, expected, atol=1e-4, rtol=1e-4, err_msg=target)
    model = resolve_text(text)
    reference = model_outputs(model, run_reference(model, from_arrays(model, arrays), x))
    np.testing.assert_allclose(
        next(iter(reference.values())), expected, atol=1e-4, rtol=1e-4, err_msg="reference"
    )
