"""Resampling as products with constant matrices, one (out, in) matrix per spatial axis.

Where an ONNX Resize cannot say what Keras computed, or a runtime's Resize computes it otherwise,
an image of shape (N, C, H, W) is multiplied by the width's matrix (transposed) on the right and
by the height's on the left: two MatMuls that every runtime reads, exact up to float32 sums.
``Resizing`` uses them for antialiased filters a target's Resize computes otherwise and for a
shrinking bicubic resize (``convc.lower.core``); ``Resizing`` and ``UpSampling2D``
(``convc.lower.resize``) for the Lanczos kernels and ``bicubic_keras2``, TensorFlow's bicubic,
which no Resize computes: TensorFlow rounds each
source position's fraction to 1/1024 (for a factor of 3 this moves the output by about 1.5e-3
against a Resize with ``cubic_coeff_a=-0.5`` and ``exclude_outside=1``), so the matrices hold
TensorFlow's own float32 weights.
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


MATRIX_INTERPOLATIONS = ("bicubic_keras2", "lanczos3", "lanczos5")
"""Interpolations that no ONNX Resize computes, built from matrices wherever they appear."""


def only_by_matrices(em: Emitter, interpolation: str) -> bool:
    """Whether this interpolation is products with constant matrices in ``em``'s target: one
    that no Resize computes, or bicubic where the target's cubic Resize does not leave the
    samples outside the image out (noted as a workaround)."""
    if interpolation in MATRIX_INTERPOLATIONS:
        return True
    if interpolation == "bicubic" and not em.target.resize_cubic_exclude_outside:
        em.workaround("bicubic by constant matrices (the target's cubic Resize differs)")
        return True
    return False


_RADIUS = {"bilinear": 1.0, "bicubic": 2.0, "bicubic_torch": 2.0, "lanczos3": 3.0, "lanczos5": 5.0}


def resize_matrix(n: int, m: int, interpolation: str, antialias: bool) -> np.ndarray:
    """An interpolation from n to m samples (half-pixel centres) as an (m, n) matrix.
    ``bicubic_keras2`` is TensorFlow's; ``bicubic_torch`` without antialias is Keys's a = -0.75
    with edge samples repeated (torch's). Every other is a kernel over a window, as JAX and
    TensorFlow's ``scale_and_translate`` and torch's antialiased filters compute it: the triangle
    (bilinear), Keys's cubic with a = -0.5 (bicubic; torch's antialiased bicubic too), or
    Lanczos's windowed sinc, at the samples' distances from the output's centre, stretched by
    the downscale when antialiased; the weights normalized to sum to one."""
    if interpolation == "bicubic_keras2":
        return tensorflow_bicubic_matrix(n, m)
    matrix = np.zeros((m, n), dtype=np.float64)
    scale = n / m
    if interpolation == "bicubic_torch" and not antialias:
        for i in range(m):
            position = (i + 0.5) * scale - 0.5
            base = math.floor(position)
            for tap in range(-1, 3):
                weight = _cubic(abs(position - base - tap), -0.75)
                matrix[i, min(max(base + tap, 0), n - 1)] += weight
        return matrix.astype(np.float32)
    widen = max(scale, 1.0) if antialias else 1.0
    half = _RADIUS[interpolation] * widen
    for i in range(m):
        centre = (i + 0.5) * scale
        low, high = max(int(centre - half + 0.5), 0), min(int(centre + half + 0.5), n)
        taps = np.arange(low, high)
        distance = np.abs((taps - centre + 0.5) / widen)
        if interpolation == "bilinear":
            weights = np.maximum(0.0, 1.0 - distance)
        elif interpolation.startswith("lanczos"):
            weights = np.array([_lanczos(d, _RADIUS[interpolation]) for d in distance])
        else:
            weights = np.array([_cubic(d, -0.5) for d in distance])
        total = weights.sum()
        matrix[i, low:high] = weights / total if total else weights
    return matrix.astype(np.float32)


def _lanczos(d: float, radius: float) -> float:
    """Lanczos's kernel of this radius at distance d >= 0: sinc(d) sinc(d / radius)."""
    if d == 0:
        return 1.0
    if d >= radius:
        return 0.0
    x = math.pi * d
    return radius * math.sin(x) * math.sin(x / radius) / (x * x)


def _cubic(d: float, a: float) -> float:
    """Keys's cubic convolution kernel at distance d >= 0."""
    if d <= 1:
        return ((a + 2) * d - (a + 3)) * d * d + 1
    if d < 2:
        return a * (d - 1) * (d - 2) ** 2
    return 0.0


TABLE_SIZE = 1024
"""TensorFlow's bicubic resize reads its weights from a table of Keys's kernel at multiples of
1 / 1024 (``kTableSize`` in tensorflow/core/kernels/image/resize_bicubic_op.cc)."""


def _tensorflow_cubic_table() -> tuple[np.ndarray, np.ndarray]:
    """TensorFlow's coefficient table for Keys's a = -0.5: at ``x = i / 1024``, the weight of a
    sample at distance ``x`` and of one at ``x + 1``, computed in double and stored as float32."""
    a = -0.5
    x = np.arange(TABLE_SIZE + 1, dtype=np.float64) / TABLE_SIZE
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    x = x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return near.astype(np.float32), far.astype(np.float32)


def tensorflow_bicubic_matrix(n: int, m: int) -> np.ndarray:
    """TensorFlow's ``ResizeBicubic`` with half-pixel centres, what ``tf.image.resize(method=
    "bicubic")`` computes without antialias (tf.keras's UpSampling2D and Resizing), from n to m
    samples as an (m, n) float32 matrix, in TensorFlow's float32 arithmetic: output ``i`` reads
    position ``(i + 0.5) * (n / m) - 0.5``; its fractional part, rounded half to even to a
    multiple of 1/1024, picks the table's weights for the four samples ``floor - 1`` to
    ``floor + 2``; the weights of samples outside the image are zero, and the rest are scaled
    by the reciprocal of their sum. Equal, entry for entry, to TensorFlow 2.21's own."""
    near, far = _tensorflow_cubic_table()
    scale = np.float32(n) / np.float32(m)
    positions = (np.arange(m, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    floors = np.floor(positions)
    offsets = np.rint((positions - floors) * np.float32(TABLE_SIZE)).astype(np.int64)
    rest = TABLE_SIZE - offsets
    weights = np.stack([far[offsets], near[offsets], near[rest], far[rest]], axis=1)
    taps = floors.astype(np.int64)[:, None] + np.arange(-1, 3)
    inside = (taps >= 0) & (taps < n)
    weights = np.where(inside, weights, np.float32(0))
    total = ((weights[:, 0] + weights[:, 1]) + weights[:, 2]) + weights[:, 3]
    weights = weights * (np.float32(1) / total)[:, None]  # TensorFlow's order, in float32
    matrix = np.zeros((m, n), dtype=np.float32)
    rows = np.broadcast_to(np.arange(m)[:, None], taps.shape)
    matrix[rows[inside], taps[inside]] = weights[inside]
    return matrix
