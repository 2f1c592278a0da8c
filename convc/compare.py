"""The one way convc compares tensors: ``convc check`` (layer by layer against the reference) and
golden verification (outputs against recorded ones) both use it.

An element agrees when ``|actual - expected| <= atol + rtol * |expected|`` (NumPy's ``isclose``),
with NaN in both, or the same infinity in both, agreeing (``equal_nan``). A NaN on one side only,
or an infinity against anything else, disagrees. Errors are computed in float64, so that neither
the difference of two large float32 numbers nor a relative error overflows to infinity.

The worst absolute error is NaN once one side only is NaN; the relative error of an element is
its absolute error over ``max(|expected|, atol)`` (0 / 0 counts as no error). The worst element
is the one furthest beyond its tolerance (a NaN or infinite disagreement first).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DEFAULT_RTOL = 1e-4
DEFAULT_ATOL = 1e-4

_CHUNK = 1 << 16
"""Elements compared at a time: a chunk's buffers stay in the cache and are reused, where
whole-array temporaries would each cost a pass through memory (3 to 6 times slower on large
layer outputs)."""


@dataclass(frozen=True)
class Worst:
    """The element furthest beyond its tolerance."""

    index: tuple[int, ...]
    actual: float
    expected: float
    abs_error: float
    rel_error: float


@dataclass(frozen=True)
class Comparison:
    ok: bool
    max_abs: float
    max_rel: float
    mismatched: int
    size: int
    worst: Worst | None  # None when every element agrees


def agreement(actual: np.ndarray, expected: np.ndarray, rtol: float, atol: float) -> np.ndarray:
    """The rule itself, element by element, in float64: True where an element agrees."""
    a = np.asarray(actual, np.float64)
    e = np.asarray(expected, np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        return _agrees(a, e, np.abs(a - e), atol + rtol * np.abs(e))


def _agrees(a: np.ndarray, e: np.ndarray, error: np.ndarray, bound: np.ndarray) -> np.ndarray:
    """``agreement`` given the float64 arrays, their absolute error and its bound (``compare``
    has them in its buffers already)."""
    within = (error <= bound) & np.isfinite(a) & np.isfinite(e)
    if within.all():
        return within
    return within | (a == e) | (np.isnan(a) & np.isnan(e))


def check_tolerances(rtol: float, atol: float) -> None:
    from convc.diagnostics import ConvcError

    for name, value in (("rtol", rtol), ("atol", atol)):
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not 0 <= value < float("inf")
        ):
            raise ConvcError(f"{name} must be a finite number >= 0, got {value!r}")


def compare(
    actual: np.ndarray,
    expected: np.ndarray,
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
) -> Comparison:
    """Compare two arrays of the same shape element by element (see the module's rules)."""
    if actual.shape != expected.shape:
        raise ValueError(f"shapes differ: {actual.shape} and {expected.shape}")
    flat_actual = np.ascontiguousarray(actual).reshape(-1)
    flat_expected = np.ascontiguousarray(expected).reshape(-1)
    size = flat_actual.size
    agreed = _clear_agreement(flat_actual, flat_expected, rtol, atol)
    if agreed is not None:
        return Comparison(True, *agreed, 0, size, None)
    ok, max_abs, max_rel, mismatched = True, 0.0, 0.0, 0
    worst_excess, worst_at = -math.inf, -1
    a = np.empty(min(size, _CHUNK), np.float64)
    e = np.empty_like(a)
    error = np.empty_like(a)
    scale = np.empty_like(a)
    for start in range(0, size, _CHUNK):
        n = min(_CHUNK, size - start)
        ca, ce, err, sc = a[:n], e[:n], error[:n], scale[:n]
        ca[...] = flat_actual[start : start + n]
        ce[...] = flat_expected[start : start + n]
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            np.subtract(ca, ce, out=err)
            np.abs(err, out=err)
            np.abs(ce, out=sc)
            bound = sc * rtol + atol
            within = _agrees(ca, ce, err, bound)
            if not np.isfinite(err).all():  # NaN with NaN, an infinity with itself: no error
                err[within & ~np.isfinite(err)] = 0.0
            if not within.all():
                bad = ~within
                ok = False
                mismatched += int(bad.sum())
                excess = np.where(bad, err - bound, -np.inf)
                # NaN on one side, or an infinity against anything else: beyond any excess
                excess[bad & ~(np.isfinite(err) & np.isfinite(bound))] = np.inf
                at = int(np.argmax(excess))
                if excess[at] > worst_excess:
                    worst_excess, worst_at = float(excess[at]), start + at
            max_abs = _worst(max_abs, float(np.max(err)))
            np.fmax(sc, atol, out=sc)
            np.divide(err, sc, out=sc)
            sc[err == 0] = 0.0  # 0 / 0 where atol is 0 is no error; x / 0 is infinite
            sc[np.isinf(err)] = np.inf  # inf / inf: against an infinity, infinitely off
            max_rel = _worst(max_rel, float(np.max(sc)))
    worst = None
    if worst_at >= 0:
        x, y = float(flat_actual[worst_at]), float(flat_expected[worst_at])
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            abs_error = abs(x - y) if not (x == y or math.isnan(x) and math.isnan(y)) else 0.0
            base = max(abs(y), atol)
            rel_error = abs_error / base if base else (math.inf if abs_error else 0.0)
            if math.isinf(abs_error):
                rel_error = math.inf
        index = tuple(int(i) for i in np.unravel_index(worst_at, actual.shape))
        worst = Worst(index, x, y, abs_error, rel_error)
    return Comparison(ok, max_abs, max_rel, mismatched, size, worst)


_MARGIN = 1e-5
"""How far inside its tolerance, relatively, a float32 error must be for ``_clear_agreement``
to trust it: float32 rounds the error and the bound by a few parts in 10^8."""


def _clear_agreement(
    actual: np.ndarray, expected: np.ndarray, rtol: float, atol: float
) -> tuple[float, float] | None:
    """``(max_abs, max_rel)`` when two float32 arrays agree everywhere, clearly: every element
    finite and inside its tolerance by more than float32's rounding could hide; else None, and
    ``compare`` decides element by element in float64. A model that agrees, the usual case,
    is thus compared in float32, in fewer passes over half the bytes. The worst errors are
    still float64's exactly: rounding is monotonic, so the largest float64 error lies in a
    chunk whose largest float32 error is the largest (or, relative, nearly so), and only those
    chunks are computed again in float64."""
    if (
        actual.dtype != np.float32
        or expected.dtype != np.float32
        or not actual.size
        or not np.float32(atol)
    ):
        return None
    rtol32, atol32, inside = np.float32(rtol), np.float32(atol), np.float32(1 - _MARGIN)
    n = min(actual.size, _CHUNK)
    error, scale, bound = (np.empty(n, np.float32) for _ in range(3))
    within = np.empty(n, np.bool_)
    chunk_abs, chunk_rel = [], []
    with np.errstate(invalid="ignore", over="ignore"):
        for start in range(0, actual.size, _CHUNK):
            m = min(_CHUNK, actual.size - start)
            a, e = actual[start : start + m], expected[start : start + m]
            err, sc, bd, ok = error[:m], scale[:m], bound[:m], within[:m]
            np.subtract(a, e, out=err)
            np.abs(err, out=err)
            np.abs(e, out=sc)
            np.multiply(sc, rtol32 * inside, out=bd)
            np.add(bd, atol32 * inside, out=bd)
            # False for a NaN error; an infinite expected value is no clear agreement either.
            if not np.less_equal(err, bd, out=ok).all() or not np.isfinite(sc).all():
                return None
            chunk_abs.append(err.max())
            np.maximum(sc, atol32, out=sc)
            np.divide(err, sc, out=sc)
            chunk_rel.append(sc.max())
    top_abs, top_rel = max(chunk_abs), max(chunk_rel)
    if top_abs == 0:
        return 0.0, 0.0  # two float32 numbers that differ differ by a float32 number
    max_abs = max_rel = 0.0
    for i, (worst_abs, worst_rel) in enumerate(zip(chunk_abs, chunk_rel, strict=True)):
        if worst_abs < top_abs and worst_rel < top_rel * np.float32(1 - 8 * _MARGIN):
            continue
        a = actual[i * _CHUNK : (i + 1) * _CHUNK].astype(np.float64)
        e = expected[i * _CHUNK : (i + 1) * _CHUNK].astype(np.float64)
        err = np.abs(a - e)
        max_abs = max(max_abs, float(err.max()))
        max_rel = max(max_rel, float((err / np.maximum(np.abs(e), atol)).max()))
    return max_abs, max_rel


def _worst(so_far: float, value: float) -> float:
    """The larger of two errors, NaN once either is."""
    return math.nan if math.isnan(so_far) or math.isnan(value) else max(so_far, value)
