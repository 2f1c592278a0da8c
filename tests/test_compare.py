"""The one comparator (``convc.compare``) of ``convc check`` and golden verification: NaN and
infinity rules, float32 range, the worst element, and chunking."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import convc.layer_check as check_module
from convc import golden
from convc.compare import _CHUNK, compare

F = np.float32


def _plain(actual, expected, rtol, atol):
    """What the chunked comparison must give, computed whole and in float64 (NumPy's isclose
    with equal_nan decides agreement)."""
    a, e = actual.astype(np.float64), expected.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        ok = bool(np.all(np.isclose(a, e, rtol=rtol, atol=atol, equal_nan=True)))
    same = (a == e) | (np.isnan(a) & np.isnan(e))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        error = np.where(same, 0.0, np.abs(a - e))
        relative = np.where(error == 0, 0.0, error / np.fmax(np.abs(e), atol))
        relative[np.isinf(error)] = np.inf
    return ok, float(np.max(error, initial=0.0)), float(np.max(relative, initial=0.0))


SPECIALS = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-30, 1e30, 3e38, -3e38], F)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    size=st.sampled_from([0, 1, 7, _CHUNK - 1, _CHUNK + 3]),
    seed=st.integers(0, 2**31),
    specials=st.integers(0, 6),
    rtol=st.sampled_from([0.0, 1e-4, 0.5]),
    atol=st.sampled_from([0.0, 1e-4, 1.0]),
)
@example(size=_CHUNK - 1, seed=9864390, specials=1, rtol=0.0, atol=0.0)
def test_chunked_comparison_matches_a_whole_array_one(size, seed, specials, rtol, atol):
    rng = np.random.default_rng(seed)
    expected = rng.standard_normal(size).astype(F)
    actual = expected + rng.standard_normal(size).astype(F) * F(1e-4)
    for _ in range(specials if size else 0):  # NaN, infinities and zeros on either or both sides
        i, j = rng.integers(size), rng.integers(len(SPECIALS))
        if rng.random() < 0.5:
            actual[i] = SPECIALS[j]
        if rng.random() < 0.5:
            expected[i] = SPECIALS[j if rng.random() < 0.5 else rng.integers(len(SPECIALS))]
    got = compare(actual, expected, rtol, atol)
    ok, max_abs, max_rel = _plain(actual, expected, rtol, atol)
    assert got.ok == ok
    assert got.mismatched == int(
        np.sum(
            ~np.isclose(
                actual.astype(np.float64),
                expected.astype(np.float64),
                rtol=rtol,
                atol=atol,
                equal_nan=True,
            )
        )
    )
    np.testing.assert_allclose(got.max_abs, max_abs, rtol=1e-9, equal_nan=True)
    np.testing.assert_allclose(got.max_rel, max_rel, rtol=1e-9, equal_nan=True)


NAN, INF = math.nan, math.inf

# (actual, expected, agrees, max_abs): element rules, with rtol = atol = 1e-4
RULES = [
    pytest.param([NAN], [NAN], True, 0.0, id="nan-both"),
    pytest.param([NAN], [1.0], False, NAN, id="nan-actual-only"),
    pytest.param([1.0], [NAN], False, NAN, id="nan-expected-only"),
    pytest.param([INF], [INF], True, 0.0, id="same-infinity"),
    pytest.param([-INF], [-INF], True, 0.0, id="same-negative-infinity"),
    pytest.param([INF], [-INF], False, INF, id="opposite-infinities"),
    pytest.param([INF], [1.0], False, INF, id="inf-actual-only"),
    # |1 - inf| <= atol + rtol * inf holds arithmetically; an infinity agrees only with itself
    pytest.param([1.0], [INF], False, INF, id="inf-expected-only"),
    pytest.param([0.0], [1e-4], True, 1e-4, id="atol-boundary"),
    pytest.param([-0.0], [0.0], True, 0.0, id="signed-zeros"),
]


@pytest.mark.parametrize(("actual", "expected", "agrees", "max_abs"), RULES)
def test_element_rules(actual, expected, agrees, max_abs):
    got = compare(np.array(actual, F), np.array(expected, F), 1e-4, 1e-4)
    assert got.ok == agrees
    assert got.mismatched == (0 if agrees else 1)
    np.testing.assert_allclose(got.max_abs, max_abs, rtol=1e-6, equal_nan=True)
    assert (got.worst is None) == agrees


def test_float32_differences_do_not_overflow():
    # the difference of two large float32 numbers is beyond float32's range, not infinite
    got = compare(np.array([3e38], F), np.array([-3e38], F), 1e-4, 1e-4)
    assert not got.ok and math.isfinite(got.max_abs)
    assert got.max_abs == pytest.approx(6e38, rel=1e-6)
    assert got.worst.abs_error == pytest.approx(6e38, rel=1e-6)


def test_float32_relative_errors_do_not_overflow():
    # 1e30 / 1e-30 is 1e60: beyond float32, finite in float64
    got = compare(np.array([1e30], F), np.array([1e-30], F), 0.0, 0.0)
    assert not got.ok and got.max_rel == pytest.approx(1e60, rel=1e-6)
    assert got.worst.rel_error == pytest.approx(1e60, rel=1e-6)


def test_relative_error_base_is_at_least_atol():
    got = compare(np.array([1e-3], F), np.array([0.0], F), 0.0, 1e-4)
    assert got.max_rel == pytest.approx(10.0, rel=1e-5)
    assert compare(np.array([0.0], F), np.array([0.0], F), 0.0, 0.0).max_rel == 0.0
    assert compare(np.array([1.0], F), np.array([0.0], F), 0.0, 0.0).max_rel == INF


@pytest.mark.parametrize(
    ("actual", "expected", "index"),
    [
        ([1000.11, 0.05], [1000.0, 0.0], (1,)),  # the larger excess, not the larger abs error
        ([1000.3, 0.0002], [1000.0, 0.0], (0,)),
        ([0.5, np.nan, 1.0], [0.0, 1.0, 1.0], (1,)),
        ([1.0, 1e6, np.inf], [1.0, 1.0, 2.0], (2,)),
    ],
    ids=["worst-by-excess", "worst-large-value", "nan-first", "inf-first"],
)
def test_worst_element(actual, expected, index):
    got = compare(np.array(actual), np.array(expected), 1e-4, 1e-4)
    assert got.worst is not None and got.worst.index == index


def test_worst_element_across_chunks_keeps_its_index():
    expected = np.zeros((3, _CHUNK), F)
    actual = expected.copy()
    actual[0, 5] = 0.5
    actual[2, 7] = 2.0
    got = compare(actual, expected, 1e-4, 1e-4)
    assert got.worst.index == (2, 7) and got.mismatched == 2 and got.size == 3 * _CHUNK


def test_reads_non_contiguous_arrays():
    expected = np.arange(24, dtype=F).reshape(2, 3, 4).transpose(2, 0, 1)
    actual = np.ascontiguousarray(expected)
    actual[3, 1, 2] += 1
    got = compare(actual, expected, 0.0, 0.5)
    assert not got.ok and got.max_abs == 1.0 and got.worst.index == (3, 1, 2)


@pytest.mark.parametrize(("actual", "expected", "agrees", "max_abs"), RULES)
def test_check_and_golden_give_the_same_verdict(actual, expected, agrees, max_abs):
    a, e = np.array(actual, F), np.array(expected, F)
    layer = check_module._compare("l", "Dense", 1, a, e, 1e-4, 1e-4)
    failure = golden.compare(0, "y", a, e, 1e-4, 1e-4)
    assert layer.ok == agrees == (failure is None)
    np.testing.assert_allclose(layer.max_abs, max_abs, rtol=1e-6, equal_nan=True)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    size=st.sampled_from([1, 7, _CHUNK - 1, 3 * _CHUNK + 5]),
    seed=st.integers(0, 2**31),
    noise=st.sampled_from([0.0, 1e-7, 1e-6, 2e-5]),
    scale=st.sampled_from([1e-6, 1e-3, 1.0, 1e3]),
    rtol=st.sampled_from([1e-4, 1e-2]),
    atol=st.sampled_from([1e-4, 1e-6]),
)
def test_clear_agreement_is_decided_in_float32_with_float64s_exact_errors(
    size, seed, noise, scale, rtol, atol
):
    """Arrays that agree clearly take the float32 path, and it reports exactly the worst
    errors float64 gives (rounding is monotonic); anything less clear takes the exact path."""
    from convc.compare import _clear_agreement

    rng = np.random.default_rng(seed)
    expected = (rng.standard_normal(size) * scale).astype(F)
    actual = (expected + rng.standard_normal(size) * noise * np.abs(expected)).astype(F)
    # Errors within atol of values far smaller: their float32 difference is not exact.
    actual += (rng.uniform(-0.4, 0.4, size) * atol * (noise > 0)).astype(F)
    ok, max_abs, max_rel = _plain(actual, expected, rtol, atol)
    fast = _clear_agreement(actual, expected, rtol, atol)
    if fast is not None:
        assert ok and fast == (max_abs, max_rel)
    got = compare(actual, expected, rtol, atol)
    assert (got.ok, got.max_abs, got.max_rel) == (ok, max_abs, max_rel)
    if noise <= 1e-6:
        assert fast is not None  # these agree by far: the float32 path must take them
