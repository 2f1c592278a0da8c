"""The NumPy reference's convolution against a plain sliding-window one, on every path it takes.

Keras is the reference's oracle (tests/test_keras_oracle.py); this holds ``convolve``'s faster
paths (all taps at once, products first, grouped) to a naive definition on many more shapes.
"""

from __future__ import annotations

import contextlib
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import convc.reference as reference
from convc.reference import convolve

# Bounds that send every groups=1 convolution down one path: the shapes drawn here are small,
# so by default they would all take the one-product paths.
PATHS = {
    "default": {},
    "per-tap": {"_TAP_DEPTH": 0, "_IM2COL_ELEMENTS": 0, "_FEW_FILTERS": 10**9},
    "all-taps": {"_TAP_DEPTH": 10**9},
    "products-first": {"_TAP_DEPTH": 0, "_IM2COL_ELEMENTS": 0, "_FEW_FILTERS": 0},
}


def _naive(x, kernel, strides, dilation, pads, groups):
    rank = kernel.ndim - 2
    x = np.pad(x, [(0, 0), *pads, (0, 0)]).astype(np.float64)
    sizes, per_group_in, filters = kernel.shape[:rank], kernel.shape[-2], kernel.shape[-1]
    per_group_out = filters // groups
    out = [
        (n - d * (k - 1) - 1) // s + 1
        for n, k, s, d in zip(x.shape[1:-1], sizes, strides, dilation, strict=True)
    ]
    y = np.zeros((x.shape[0], *out, filters))
    for position in np.ndindex(*out):
        for tap in np.ndindex(*sizes):
            at = tuple(
                p * s + t * d for p, s, t, d in zip(position, strides, tap, dilation, strict=True)
            )
            inputs = x[(slice(None), *at)]  # (N, C)
            for g in range(groups):
                part = inputs[:, g * per_group_in : (g + 1) * per_group_in]
                weights = kernel[tap][:, g * per_group_out : (g + 1) * per_group_out]
                y[(slice(None), *position, slice(g * per_group_out, (g + 1) * per_group_out))] += (
                    part @ weights
                )
    return y


@st.composite
def convolutions(draw):
    rank = draw(st.integers(1, 3))
    groups = draw(st.sampled_from([1, 1, 2]))
    channels = groups * draw(st.sampled_from([1, 2, 4, 8]))
    filters = groups * draw(st.sampled_from([1, 2, 3, 8]))
    sizes = draw(st.lists(st.integers(1, 3), min_size=rank, max_size=rank))
    strides = draw(st.lists(st.integers(1, 2), min_size=rank, max_size=rank))
    dilation = draw(st.lists(st.integers(1, 2), min_size=rank, max_size=rank))
    pads = [tuple(draw(st.lists(st.integers(0, 2), min_size=2, max_size=2))) for _ in sizes]
    lengths = [
        draw(st.integers(max(1, d * (k - 1) + 1 - sum(p)), 6))
        for k, d, p in zip(sizes, dilation, pads, strict=True)
    ]
    seed = draw(st.integers(0, 2**31))
    return rank, groups, channels, filters, sizes, strides, dilation, pads, lengths, seed


@pytest.mark.parametrize("path", PATHS)
@settings(max_examples=80, deadline=None)
@given(drawn=convolutions())
def test_convolve_matches_the_definition(path, drawn):
    rank, groups, channels, filters, sizes, strides, dilation, pads, lengths, seed = drawn
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, *lengths, channels)).astype(np.float32)
    kernel = rng.standard_normal((*sizes, channels // groups, filters)).astype(np.float32)
    with contextlib.ExitStack() as bounds:
        for name, value in PATHS[path].items():
            bounds.enter_context(mock.patch.object(reference, name, value))
        got = convolve(x, kernel, tuple(strides), tuple(dilation), pads, groups)
    np.testing.assert_allclose(got, _naive(x, kernel, strides, dilation, pads, groups), atol=1e-4)
