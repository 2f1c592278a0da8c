"""Exact alternative forms of convolutions that onnxruntime runs faster than the plain op.

The lowering rules emit every convolution through ``conv`` or ``conv_transpose`` here. With the
emitter's ``optimize`` on (``convc build --no-optimize`` turns it off), each picks between the
plain ONNX op and an equivalent graph that computes the same sums in another order:

* **Kernel taps into channels** (``conv``). A Conv with one or two output channels runs as a
  matrix-vector product over an im2col buffer that holds every kernel tap of every input
  channel, which is memory-bound. Moving the taps of the leading spatial axes into the output
  channels (a Conv whose kernel spans only the innermost axis, with ``taps x out`` channels),
  then summing each output's taps, shifted, with a grouped one-hot Conv, computes the same
  values from much smaller buffers: 1.3 to 3 times faster in onnxruntime 1.32 on 2-D and 3-D
  kernels of 3 taps per axis (16 and 32 input channels; with 4 or more output channels the
  plain Conv is as fast or faster).
* **Sub-pixel transposed convolution** (``conv_transpose``). ConvTranspose with stride ``s``
  writes each output position from only the kernel taps congruent to it modulo ``s``. Output
  phase ``i`` is therefore an ordinary Conv of the input with the kernel's taps ``i, i+s, ...``
  flipped; the phases are then interleaved by Concat and Reshape, one spatial axis at a time.
  onnxruntime's ConvTranspose scatters its products through a generic col2im, which this
  avoids: a 3-D ConvTranspose of 32 to 16 channels from 32^3 to 64^3 takes 17 ms instead of
  21 to 24 ms. In 1-D and 2-D onnxruntime's own col2im is fast, and the plain op is kept.
  One Conv for all phases (a 2x2x2 kernel with 8 x 16 channels, zero where a phase has fewer
  taps) and a depth-to-space Reshape, Transpose, Reshape would take 4 nodes instead of 30, but
  it does 2.4 times the multiplications: 33.5 ms against 20.2 for the per-phase form and 28.7
  for ConvTranspose, measured side by side.

Both are sums of the same products in a different order, so they agree with the plain op to
float32 rounding; the oracle tests check every layer with and without them.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from convc.lower.emitter import Emitter

# Output channels up to which a Conv moves its leading kernel taps into channels.
_TAPS_INTO_CHANNELS_MAX_OUT = 2
# Spatial ranks at which a ConvTranspose runs as per-phase convolutions, and the most phases
# (the product of the strides): measured at stride 2, where 8 phases take 30 nodes.
_SUB_PIXEL_RANKS = (3,)
_SUB_PIXEL_MAX_PHASES = 8


def conv(
    em: Emitter,
    x: str,
    kernel: np.ndarray,
    bias: np.ndarray | None,
    attrs: dict,
    what: str = "conv",
) -> str:
    """``Conv(x, kernel, bias)`` with ONNX attributes ``attrs``; ``kernel`` in ONNX layout
    (out, in/group, k..)."""
    if em.optimize and _taps_into_channels_pays(kernel, attrs):
        return _taps_into_channels(em, x, kernel, bias, attrs, what)
    return em.conv(_plain_inputs(em, x, kernel, bias), what, **attrs)


def _taps_into_channels_pays(kernel: np.ndarray, attrs: dict) -> bool:
    leading = kernel.shape[2:-1]
    return (
        attrs["group"] == 1
        and kernel.shape[0] <= _TAPS_INTO_CHANNELS_MAX_OUT
        and math.prod(leading) > 1
        and all(s == 1 for s in attrs["strides"][:-1])  # else most of the products are wasted
    )


def _taps_into_channels(
    em: Emitter,
    x: str,
    kernel: np.ndarray,
    bias: np.ndarray | None,
    attrs: dict,
    what: str,
) -> str:
    out_channels, in_channels, *sizes = kernel.shape
    rank = len(sizes)
    leading, taps = sizes[:-1], math.prod(sizes[:-1])
    # (out, in, lead.., k) -> (out, lead.., in, 1.., k): channel o*taps + t is tap t of output o.
    moved = np.moveaxis(kernel, 1, rank).reshape(
        out_channels * taps, in_channels, *[1] * (rank - 1), sizes[-1]
    )
    products = em.conv(
        [x, em.weight("kernel", moved)],
        f"{what}_taps",
        kernel_shape=[*[1] * (rank - 1), sizes[-1]],
        strides=[*[1] * (rank - 1), attrs["strides"][-1]],
        dilations=[*[1] * (rank - 1), attrs["dilations"][-1]],
        pads=attrs["pads"],
        group=1,
    )
    # Each output sums its taps' channels, each shifted by its tap: a grouped Conv whose kernel
    # is one-hot. (Slices and a Sum do the same with one node per tap, and are no faster.)
    select = np.zeros((out_channels, taps, *leading, 1), kernel.dtype)
    for t, tap in enumerate(itertools.product(*map(range, leading))):
        index: tuple[slice | int, ...] = (slice(None), t, *tap, 0)
        select[index] = 1
    inputs = [products, em.weight("tap_sum", select)]
    if bias is not None:
        inputs.append(em.weight("bias", bias))
    return em.op(
        "Conv",
        inputs,
        what,
        kernel_shape=[*leading, 1],
        strides=[1] * rank,
        dilations=[*attrs["dilations"][:-1], 1],
        pads=[0] * (2 * rank),
        group=out_channels,
    )


def conv_transpose(
    em: Emitter,
    x: str,
    kernel: np.ndarray,
    bias: np.ndarray | None,
    attrs: dict,
    input_spatial: list[int],
    output_spatial: list[int],
    what: str = "conv_transpose",
) -> str:
    """``ConvTranspose(x, kernel, bias)`` with ONNX attributes ``attrs`` (explicit pads, no
    auto_pad); ``kernel`` in ONNX layout (in, out, k..)."""
    if em.optimize and _sub_pixel_pays(kernel, attrs):
        return _sub_pixel(em, x, kernel, bias, attrs, input_spatial, output_spatial, what)
    return em.op("ConvTranspose", _plain_inputs(em, x, kernel, bias), what, **attrs)


def _plain_inputs(em: Emitter, x: str, kernel: np.ndarray, bias: np.ndarray | None) -> list[str]:
    """The inputs of the plain op: x, the kernel and, if any, the bias."""
    return [
        x,
        em.weight("kernel", kernel),
        *([em.weight("bias", bias)] if bias is not None else []),
    ]


def _sub_pixel_pays(kernel: np.ndarray, attrs: dict) -> bool:
    sizes, strides = kernel.shape[2:], attrs["strides"]
    return (
        len(sizes) in _SUB_PIXEL_RANKS
        and attrs["group"] == 1
        and all(d == 1 for d in attrs["dilations"])
        and 1 < math.prod(strides) <= _SUB_PIXEL_MAX_PHASES
        and all(k >= s for k, s in zip(sizes, strides, strict=True))  # every phase has a tap
    )


def _sub_pixel(
    em: Emitter,
    x: str,
    kernel: np.ndarray,
    bias: np.ndarray | None,
    attrs: dict,
    input_spatial: list[int],
    output_spatial: list[int],
    what: str,
) -> str:
    sizes, strides = kernel.shape[2:], attrs["strides"]
    rank = len(sizes)
    pad_begins = attrs["pads"][:rank]
    # Every phase of an axis gets the same length, ceil(out / s); a final Slice trims the rest.
    phase_lengths = [-(-out // s) for out, s in zip(output_spatial, strides, strict=True)]
    bias_name = em.weight("bias", bias) if bias is not None else None

    phases: dict[tuple[int, ...], str] = {}
    for phase in itertools.product(*map(range, strides)):
        # Output position t*s + i of an axis is full-output position q*s + r, q = t + base.
        residues, bases = [], []
        for i, s, p in zip(phase, strides, pad_begins, strict=True):
            residues.append((i + p) % s)
            bases.append((i + p) // s)
        taps = tuple(slice(r, None, s) for r, s in zip(residues, strides, strict=True))
        phase_kernel = np.flip(
            kernel[(slice(None), slice(None), *taps)], axis=tuple(range(2, 2 + rank))
        )
        phase_kernel = np.ascontiguousarray(phase_kernel.swapaxes(0, 1))
        phase_sizes = phase_kernel.shape[2:]
        begins = [k - 1 - b for k, b in zip(phase_sizes, bases, strict=True)]
        ends = [
            t - n - p + k - 1
            for t, n, p, k in zip(phase_lengths, input_spatial, begins, phase_sizes, strict=True)
        ]
        inputs = [x, em.weight("kernel", phase_kernel)]
        if bias_name is not None:
            inputs.append(bias_name)
        out = em.conv(
            inputs,
            f"{what}_phase",
            kernel_shape=list(phase_sizes),
            strides=[1] * rank,
            dilations=[1] * rank,
            pads=[max(p, 0) for p in begins] + [max(p, 0) for p in ends],
            group=1,
        )
        if any(p < 0 for p in begins + ends):  # Conv cannot crop: slice off what it must not pad
            starts = [max(-p, 0) for p in begins]
            stops = [s + t for s, t in zip(starts, phase_lengths, strict=True)]
            out = em.slice(out, starts, stops, list(range(2, 2 + rank)), f"{what}_phase_crop")
        phases[phase] = out

    # Interleave, innermost axis first: phases that differ only in axis a's index are stacked
    # on a new axis after it and merged into it.
    lengths = list(phase_lengths)
    for a in reversed(range(rank)):
        s = strides[a]
        merged: dict[tuple[int, ...], str] = {}
        for outer in itertools.product(*map(range, strides[:a])):
            if s == 1:
                merged[outer] = phases[(*outer, 0)]
                continue
            parts = [phases[(*outer, i)] for i in range(s)]
            if a == rank - 1:  # the innermost axis has no axis after it to stack on: make one
                parts = [
                    em.op("Unsqueeze", [p, em.constant([a + 3])], f"{what}_stack") for p in parts
                ]
            # Stacked on the axis after a, (.., T, s*M, ..) is (.., T*s, M, ..) in memory.
            stacked = em.op("Concat", parts, f"{what}_interleave", axis=a + 3)
            merged_lengths = [*lengths[:a], lengths[a] * s, *lengths[a + 1 :]]
            merged[outer] = em.reshape(
                stacked, [0, kernel.shape[1], *merged_lengths], f"{what}_merge"
            )
        lengths[a] *= s
        phases = merged
    result = phases[()]
    if lengths != list(output_spatial):
        result = em.slice(
            result, [0] * rank, list(output_spatial), list(range(2, 2 + rank)), f"{what}_trim"
        )
    return result
