"""Graph rewrites after lowering: exact simplifications that per-layer rules cannot see.

Each rewrite is a pattern, a condition that says why it may fire, and a replacement; all are
exact (the same numbers, not approximately). They run until none applies. ``convc build
--no-optimize`` skips them, for debugging.

* **Pad into Conv.** A zero Pad of only the spatial axes, by non-negative amounts, whose output
  feeds only a Conv: the Conv pads with zeros itself, so its pads grow instead (ZeroPadding2D
  before a 'valid' Conv2D becomes one node, and no padded copy of the tensor is made), unless
  the Conv's kernel is 1x1 and the target cannot pad those (``Target.pointwise_conv_pads``).
* **Pad then Slice.** A zero Pad whose output feeds only a Slice: their net effect per axis is
  one pad or one crop, so they become one Pad, one Slice, or nothing (ZeroPadding2D(1) then
  Cropping2D(1) cancel).

* **Flatten's Transpose into Dense.** A Transpose whose output only a flattening Reshape reads,
  whose output only a Dense (Gemm or MatMul with a weight of its own) reads: the Dense takes the
  untransposed elements, its kernel's rows permuted to match. A channels_last classifier then
  carries one Transpose (at its input) instead of two: the Transpose back to Keras's
  (height, width, channels) order that Flatten owes becomes an order of the kernel's rows.

A value that is a graph output is never folded away.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from convc.lower.emitter import Emitter


def optimize(em: Emitter, graph_outputs: set[str]) -> None:
    """Apply the rewrites to the emitter's nodes until none fires."""
    while (
        _fold_pad_into_conv(em, graph_outputs)
        or _merge_pad_and_slice(em, graph_outputs)
        or _fold_flatten_transpose_into_dense(em, graph_outputs)
    ):
        pass


def _consumers(em: Emitter, value: str) -> list[onnx.NodeProto]:
    return [node for node in em.nodes if value in node.input]


def _zero_pad_amounts(em: Emitter, node: onnx.NodeProto) -> np.ndarray | None:
    """The [begins..., ends...] of a constant zero Pad, or None for any other Pad."""
    mode = next((a.s for a in node.attribute if a.name == "mode"), b"constant")
    if node.op_type != "Pad" or mode != b"constant" or len(node.input) > 2:
        return None  # a third input would be a non-zero fill value; a fourth, axes
    return em.constant_values.get(node.input[1])


def _fold_pad_into_conv(em: Emitter, graph_outputs: set[str]) -> bool:
    for pad in em.nodes:
        amounts = _zero_pad_amounts(em, pad)
        if amounts is None or pad.output[0] in graph_outputs:
            continue
        consumers = _consumers(em, pad.output[0])
        if len(consumers) != 1 or consumers[0].op_type != "Conv":
            continue
        conv = consumers[0]
        kernel_shape = next(a.ints for a in conv.attribute if a.name == "kernel_shape")
        if set(kernel_shape) == {1} and not em.target.pointwise_conv_pads:
            continue
        rank = len(amounts) // 2
        begins, ends = amounts[:rank], amounts[rank:]
        # Conv pads only the spatial axes (2..), never batch or channels; crops it cannot do.
        if (
            any(begins[:2])
            or any(ends[:2])
            or (amounts < 0).any()
            or conv.input[0] != pad.output[0]
        ):
            continue
        attribute = next(a for a in conv.attribute if a.name == "pads")
        spatial = rank - 2
        merged = [
            int(p) + int(b) for p, b in zip(attribute.ints[:spatial], begins[2:], strict=True)
        ]
        merged += [int(p) + int(e) for p, e in zip(attribute.ints[spatial:], ends[2:], strict=True)]
        conv.attribute.remove(attribute)
        conv.attribute.append(helper.make_attribute("pads", merged))
        conv.input[0] = pad.input[0]
        em.nodes.remove(pad)
        return True
    return False


def _merge_pad_and_slice(em: Emitter, graph_outputs: set[str]) -> bool:
    for pad in em.nodes:
        amounts = _zero_pad_amounts(em, pad)
        if amounts is None or pad.output[0] in graph_outputs or (amounts < 0).any():
            continue
        consumers = _consumers(em, pad.output[0])
        if len(consumers) != 1 or consumers[0].op_type != "Slice" or len(consumers[0].input) != 4:
            continue
        crop = consumers[0]
        starts, ends, axes = (em.constant_values.get(name) for name in crop.input[1:4])
        if starts is None or ends is None or axes is None:
            continue
        rank = len(amounts) // 2
        shape = em.value_shapes.get(pad.output[0])
        if shape is None:
            continue
        net = amounts.astype(np.int64).copy()  # begins then ends, positive: pad, negative: crop
        for axis, start, stop in zip(axes, starts, ends, strict=True):
            net[axis] -= start
            net[rank + axis] -= shape[axis] - stop
        if (net > 0).any() and (net < 0).any():
            continue  # one op cannot both pad and crop
        if not net.any() and crop.output[0] in graph_outputs:
            continue  # cancelling would leave the graph output without a producer
        source = pad.input[0]
        em.nodes.remove(pad)
        if not net.any():
            em.nodes.remove(crop)
            em.rename({crop.output[0]: source})
        elif (net >= 0).all():
            crop.op_type, crop.input[:] = "Pad", [source, em.constant(net.tolist())]
            crop.attribute.append(helper.make_attribute("mode", "constant"))
        else:
            axes_, starts_, stops_ = [], [], []
            input_shape = [
                n - a - b for n, a, b in zip(shape, amounts[:rank], amounts[rank:], strict=True)
            ]
            for axis in range(rank):
                if net[axis] or net[rank + axis]:
                    axes_.append(axis)
                    starts_.append(int(-net[axis]))
                    stops_.append(int(input_shape[axis] + net[rank + axis]))
            crop.input[:] = [source, em.constant(starts_), em.constant(stops_), em.constant(axes_)]
        return True
    return False


def _fold_flatten_transpose_into_dense(em: Emitter, graph_outputs: set[str]) -> bool:
    for transpose in em.nodes:
        if transpose.op_type != "Transpose" or transpose.output[0] in graph_outputs:
            continue
        perm = list(next(a.ints for a in transpose.attribute if a.name == "perm"))
        shape = em.value_shapes.get(transpose.input[0])
        readers = _consumers(em, transpose.output[0])
        if perm[0] != 0 or shape is None or len(readers) != 1 or readers[0].op_type != "Reshape":
            continue
        flatten = readers[0]
        size = int(np.prod(shape[1:]))
        target = em.constant_values.get(flatten.input[1])
        if target is None or target.tolist() not in ([0, size], [0, -1]):
            continue
        dense = _consumers(em, flatten.output[0])
        if flatten.output[0] in graph_outputs or len(dense) != 1:
            continue
        gemm = dense[0]
        transposed_b = any(a.name == "transB" and a.i for a in gemm.attribute)
        if gemm.op_type not in ("Gemm", "MatMul") or gemm.input[0] != flatten.output[0]:
            continue
        kernel = gemm.input[1]
        arrays = [i for i, (name, _) in enumerate(em.initializers) if name == kernel]
        if transposed_b or len(arrays) != 1 or len(_consumers(em, kernel)) != 1:
            continue
        # Flattened element j of the transposed tensor is element order[j] of the original.
        order = np.arange(size).reshape(shape[1:]).transpose([p - 1 for p in perm[1:]]).ravel()
        name, weight = em.initializers[arrays[0]]
        permuted = np.empty_like(weight)
        permuted[order] = weight
        em.initializers[arrays[0]] = (name, permuted)
        flatten.input[0] = transpose.input[0]
        em.nodes.remove(transpose)
        return True
    return False
