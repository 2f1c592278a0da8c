"""Resampling as products with constant matrices, one (out, in) matrix per spatial axis.

Where an ONNX Resize cannot say what Keras computed, or a runtime's Resize computes it otherwise,
an image of shape (N, C, H, W) is multiplied by the width's matrix (transposed) on the right and
by the height's on the left: two MatMuls that every runtime reads, exact up to float32 sums.
``Resizing`` uses them for torch's antialiased filters and for a shrinking bicubic resize
(``convc.lower.core``).
"""

from __future__ import annotations

import math

import numpy as np

from convc.lower.emitter import Emitter


def resize_by_matrices(em: Emitter, x: str, source, target, interpolation, *, antialias) -> str:
    """A resize as a product with a constant (out, in) matrix per axis: exact, and read by
    every runtime (an (N, C, H, W) tensor times W's matrix, then H's matrix times that)."""
    (n, m), (p, q) = zip(source, target, strict=True)
    if p != q:
        width = resize_matrix(p, q, interpolation, antialias).T
        x = em.op("MatMul", [x, em.weight("width", width)], "resize_width")
    if n != m:
        height = resize_matrix(n, m, interpolation, antialias)
        x = em.op("MatMul", [em.weight("height", height), x], "resize")
    return x


def resize_matrix(n: int, m: int, interpolation: str, antialias: bool) -> np.ndarray:
    """torch's interpolation from n to m samples (half-pixel centres) as an (m, n) matrix:
    bicubic is Keys's a = -0.75 with edge samples repeated; antialiased, torch's separable
    filter (triangle, or cubic with a = -0.5) over a support widened by the downscale, its
    weights normalized to sum to one."""
    matrix = np.zeros((m, n), dtype=np.float64)
    scale = n / m
    if not antialias:
        for i in range(m):
            position = (i + 0.5) * scale - 0.5
            base = math.floor(position)
            for tap in range(-1, 3):
                weight = _cubic(abs(position - base - tap), -0.75)
                matrix[i, min(max(base + tap, 0), n - 1)] += weight
        return matrix.astype(np.float32)
    half = (1.0 if interpolation == "bilinear" else 2.0) * max(scale, 1.0)
    stretch = 1.0 / max(scale, 1.0)
    for i in range(m):
        centre = (i + 0.5) * scale
        low, high = max(int(centre - half + 0.5), 0), min(int(centre + half + 0.5), n)
        taps = np.arange(low, high)
        distance = np.abs((taps - centre + 0.5) * stretch)
        if interpolation == "bilinear":
            weights = np.maximum(0.0, 1.0 - distance)
        else:
            weights = np.array([_cubic(d, -0.5) for d in distance])
        total = weights.sum()
        matrix[i, low:high] = weights / total if total else weights
    return matrix.astype(np.float32)


def _cubic(d: float, a: float) -> float:
    """Keys's cubic convolution kernel at distance d >= 0."""
    if d <= 1:
        return ((a + 2) * d - (a + 3)) * d * d + 1
    if d < 2:
        return a * (d - 1) * (d - 2) ** 2
    return 0.0
