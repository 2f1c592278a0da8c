"""The faster exact forms of convolutions (convc.lower.conv_forms): when each fires, and that it
computes what the plain op and Keras compute, over drawn shapes and arguments."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from convc.compiler import compile_text, resolve_text
from convc.diagnostics import ConvcError

from oracle import assert_matches_keras, onnx_output


def _ops(proto) -> Counter:
    return Counter(node.op_type for node in proto.graph.node)


@pytest.mark.parametrize(
    ("text", "fires"),
    [
        ("Input(shape=(6, 7, 5))\nConv2D(1, 3)\n", True),
        ("Input(shape=(6, 7, 5))\nConv2D(2, (3, 1), padding='same')\n", True),
        ("Input(shape=(5, 6, 7, 3))\nConv3D(1, 3)\n", True),
        ("Input(shape=(6, 7, 5))\nConv2D(3, 3)\n", False),  # three outputs: plain is faster
        ("Input(shape=(6, 7, 5))\nConv2D(1, (1, 3))\n", False),  # no leading taps to move
        ("Input(shape=(9, 5))\nConv1D(1, 3)\n", False),
        ("Input(shape=(6, 7, 4))\nConv2D(2, 3, groups=2)\n", False),
        ("Input(shape=(6, 7, 5))\nConv2D(1, 3, strides=(2, 1))\n", False),
    ],
)
def test_taps_into_channels_fires_where_it_pays(text, fires):
    proto = compile_text(text)
    assert (_ops(proto)["Conv"] == 2) is fires
    assert _ops(compile_text(text, optimize=False))["Conv"] == 1
    assert_matches_keras(text)


@pytest.mark.parametrize(
    ("text", "fires"),
    [
        ("Input(shape=(4, 5, 6, 3))\nConv3DTranspose(2, 3, strides=2, padding='same')\n", True),
        ("Input(shape=(4, 5, 6, 3))\nConv3DTranspose(2, 3, strides=(1, 1, 2))\n", True),
        ("Input(shape=(4, 5, 6, 3))\nConv3DTranspose(2, 3)\n", False),  # no stride: no phases
        ("Input(shape=(4, 5, 6, 3))\nConv3DTranspose(2, 3, strides=(3, 3, 1))\n", False),  # 9
        ("Input(shape=(4, 5, 6, 3))\nConv3DTranspose(2, 1, strides=2)\n", False),  # tapless phases
        ("Input(shape=(4, 5, 6, 3))\nConv3DTranspose(2, 2, dilation_rate=2)\n", False),
        ("Input(shape=(7, 8, 3))\nConv2DTranspose(2, 3, strides=2)\n", False),  # 2-D col2im is fast
    ],
)
def test_sub_pixel_fires_where_it_pays(text, fires):
    proto = compile_text(text)
    assert ("ConvTranspose" not in _ops(proto)) is fires
    assert "ConvTranspose" in _ops(compile_text(text, optimize=False))
    assert_matches_keras(text)


def test_sub_pixel_phases_are_convolutions_of_their_own_taps():
    # Stride 2 on every axis: 8 phases; kernel 3 gives each axis phases of 2 and 1 taps.
    proto = compile_text("Input(shape=(4, 5, 6, 3))\nConv3DTranspose(2, 3, strides=2)\n")
    kernels = sorted(
        tuple(next(a.ints for a in node.attribute if a.name == "kernel_shape"))
        for node in proto.graph.node
        if node.op_type == "Conv"
    )
    assert kernels == sorted((a, b, c) for a in (1, 2) for b in (1, 2) for c in (1, 2))


def _agrees_with_plain(text: str, x: np.ndarray) -> None:
    fast = onnx_output(compile_text(text, seed=3), x)
    plain = onnx_output(compile_text(text, seed=3, optimize=False), x)
    np.testing.assert_allclose(fast, plain, atol=1e-5, rtol=1e-5)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lengths=st.tuples(*[st.integers(1, 6)] * 3),
    kernel=st.tuples(*[st.integers(1, 4)] * 3),
    strides=st.tuples(*[st.integers(1, 3)] * 3),
    padding=st.sampled_from(["valid", "same"]),
    with_output_padding=st.booleans(),
    data=st.data(),
)
def test_sub_pixel_equals_conv_transpose(
    lengths, kernel, strides, padding, with_output_padding, data
):
    output_padding = ""
    if with_output_padding:
        pads = tuple(data.draw(st.integers(0, s - 1)) for s in strides)
        output_padding = f", output_padding={pads}"
    text = (
        f"Input(shape=({', '.join(map(str, lengths))}, 2), batch_size=2)\n"
        f"Conv3DTranspose(3, {kernel}, strides={strides}, padding='{padding}'{output_padding})\n"
    )
    try:
        resolve_text(text)
    except ConvcError:
        reject()  # 'same' with output_padding 0 and an even kernel empties a length-1 axis
    x = np.random.default_rng(0).standard_normal((2, *lengths, 2)).astype(np.float32)
    _agrees_with_plain(text, x)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rank=st.sampled_from([2, 3]),
    filters=st.integers(1, 2),
    kernel=st.lists(st.integers(1, 4), min_size=3, max_size=3),
    inner_stride=st.integers(1, 3),
    dilation=st.integers(1, 2),
    padding=st.sampled_from(["valid", "same"]),
)
def test_taps_into_channels_equals_conv(rank, filters, kernel, inner_stride, dilation, padding):
    kernel = kernel[:rank]
    # Keras refuses strides and dilation above 1 together, even on different axes.
    strides = (*[1] * (rank - 1), inner_stride if dilation == 1 else 1)
    lengths = [k * dilation + 3 for k in kernel]
    text = (
        f"Input(shape=({', '.join(map(str, lengths))}, 3), batch_size=2)\n"
        f"Conv{rank}D({filters}, {tuple(kernel)}, strides={strides}, "
        f"dilation_rate={(dilation, *[1] * (rank - 1))}, padding='{padding}')\n"
    )
    x = np.random.default_rng(0).standard_normal((2, *lengths, 3)).astype(np.float32)
    _agrees_with_plain(text, x)
