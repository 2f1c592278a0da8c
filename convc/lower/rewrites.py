"""Graph rewrites after lowering: exact simplifications that per-layer rules cannot see.

Each rewrite is a pattern, a condition that says why it may fire, and a replacement; all are
exact (the same numbers, not approximately). They run until none applies. ``convc build
--no-optimize`` skips them, for debugging.

* **Pad into Conv.** A zero Pad of only the spatial axes, by non-negative amounts, whose output
  feeds only a Conv: the Conv pads with zeros itself, so its pads grow instead (ZeroPadding2D
  before a 'valid' Conv2D becomes one node, and no padded copy of the tensor is made), unless
  the Conv's kernel is 1x1 and the target cannot pad those (``Target.pointwise_conv_pads``).
* **Pad into MaxPool.** The same Pad feeding only a MaxPool, when what it pads is non-negative
  (a Relu's output, or a Clip's from 0): MaxPool ignores its own padding, and a zero can win
  no window that holds a number >= 0, so the MaxPool's pads grow instead (ResNet's and
  DenseNet's ZeroPadding2D(1) before MaxPooling2D(3, 2)), as long as each pad stays smaller
  than the window (then every window holds a number of the input), and not when the MaxPool's
  strides are all 1 and the target's runtimes read such a MaxPool's pads wrongly
  (``Target.unit_stride_max_pool_pads``: onnx.reference, and so the portable target).
* **Global pooling.** A ReduceMean or ReduceMax over both spatial axes of a channels-first
  image tensor that keeps its dims, or whose one reader is a Reshape that restores them as ones (a
  squeeze-and-excitation block's GlobalAveragePooling2D then Reshape((1, 1, C))), becomes a
  GlobalAveragePool or GlobalMaxPool: onnxruntime keeps those in its blocked channel layout,
  where a reduction makes it reorder the tensor out and back (EfficientNetB0: 16 nodes fewer,
  1.4 % faster).
* **Pad then Slice.** A zero Pad whose output feeds only a Slice: their net effect per axis is
  one pad or one crop, so they become one Pad, one Slice, or nothing (ZeroPadding2D(1) then
  Cropping2D(1) cancel).

* **BatchNormalization into Conv.** A BatchNormalization whose input is a Conv's or a
  ConvTranspose's output, read by nothing else: inference batch normalization is a per-channel
  ``x * scale + shift``, so the convolution's kernel is scaled per output channel and its bias
  becomes ``bias * scale + shift`` (a bias is added where it had none). ``Conv2D(use_bias=False),
  BatchNormalization(), ReLU()`` becomes one Conv and one Relu. A convolution with a non-linear
  activation is followed by that activation, not by the BatchNormalization, so it never folds.
  Exact up to float32 rounding (the new weights are computed in float64). It is a rewrite of
  the emitted graph rather than a choice made while lowering the convolution: here every
  consumer is visible (a merge, a graph output, ``convc check``'s per-layer outputs), so is
  whichever form the convolution took (its last node is the one that folds), and
  ``--no-optimize`` turns it off with the others.
* **Flatten's Transpose into Dense.** A Transpose whose output only a flattening Reshape reads,
  whose output only a Dense (Gemm or MatMul with a weight of its own) reads: the Dense takes the
  untransposed elements, its kernel's rows permuted to match. A channels_last classifier then
  carries one Transpose (at its input) instead of two: the Transpose back to Keras's
  (height, width, channels) order that Flatten owes becomes an order of the kernel's rows.

A value that is a graph output is never folded away.

``optimize`` says what it did: one ``Rewrite`` per firing, naming the rewrite (``REWRITES``)
and the nodes its pattern matched, so that a test can count how often each rewrite fired and
see what followed it, and a tool can explain a build.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper

from convc.lower.emitter import Emitter

REWRITES = (
    "batch_norm_into_conv",
    "global_pool",
    "pad_into_conv",
    "pad_into_max_pool",
    "pad_and_slice",
    "flatten_transpose_into_dense",
)
"""The rewrites' names, in the order the module's docstring describes them."""


@dataclass(frozen=True)
class Rewrite:
    """One firing of a rewrite: its name (one of ``REWRITES``) and the names of the nodes its
    pattern matched, in the order data flows through them (the last is the pattern's end)."""

    rewrite: str
    matched: tuple[str, ...]


def optimize(em: Emitter, graph_outputs: set[str]) -> list[Rewrite]:
    """Apply the rewrites to the emitter's nodes until none fires; what fired, in order."""
    done: list[Rewrite] = []
    while fired := _fold_batch_norms_into_convs(em, graph_outputs):
        done += fired
    while fired := (
        _global_pool_for_reduce(em, graph_outputs)
        or _fold_pad_into_conv(em, graph_outputs)
        or _fold_pad_into_max_pool(em, graph_outputs)
        or _merge_pad_and_slice(em, graph_outputs)
        or _fold_flatten_transpose_into_dense(em, graph_outputs)
    ):
        done += fired
    return done


def _consumers(em: Emitter, value: str) -> list[onnx.NodeProto]:
    return [node for node in em.nodes if value in node.input]


def _zero_pad_amounts(em: Emitter, node: onnx.NodeProto) -> np.ndarray | None:
    """The [begins..., ends...] of a constant zero Pad, or None for any other Pad."""
    if node.op_type != "Pad":
        return None
    mode = next((a.s for a in node.attribute if a.name == "mode"), b"constant")
    if mode != b"constant" or len(node.input) > 2:
        return None  # a third input would be a non-zero fill value; a fourth, axes
    return em.constant_values.get(node.input[1])


def _fold_pad_into_conv(em: Emitter, graph_outputs: set[str]) -> list[Rewrite]:
    for pad in em.nodes:
        found = _spatial_pad_into(em, pad, "Conv", graph_outputs)
        if found is None:
            continue
        conv, merged = found
        kernel_shape = next(a.ints for a in conv.attribute if a.name == "kernel_shape")
        if set(kernel_shape) == {1} and not em.target.pointwise_conv_pads:
            continue
        _absorb_pad(em, pad, conv, merged)
        return [Rewrite("pad_into_conv", (pad.name, conv.name))]
    return []


def _fold_pad_into_max_pool(em: Emitter, graph_outputs: set[str]) -> list[Rewrite]:
    producers: dict[str, onnx.NodeProto] | None = None  # made when a Pad is found
    for pad in em.nodes:
        found = _spatial_pad_into(em, pad, "MaxPool", graph_outputs)
        if found is None:
            continue
        if producers is None:
            producers = {name: node for node in em.nodes for name in node.output}
        if not _non_negative(em, producers.get(pad.input[0])):
            continue
        pool, merged = found
        kernel = list(next(a.ints for a in pool.attribute if a.name == "kernel_shape"))
        strides = next((list(a.ints) for a in pool.attribute if a.name == "strides"), [1])
        if any(a.name == "auto_pad" and a.s not in (b"", b"NOTSET") for a in pool.attribute) or any(
            p >= k for p, k in zip(merged, kernel + kernel, strict=True)
        ):
            continue
        if set(strides) == {1} and not em.target.unit_stride_max_pool_pads:
            continue
        _absorb_pad(em, pad, pool, merged)
        return [Rewrite("pad_into_max_pool", (pad.name, pool.name))]
    return []


def _spatial_pad_into(
    em: Emitter, pad: onnx.NodeProto, op: str, graph_outputs: set[str]
) -> tuple[onnx.NodeProto, list[int]] | None:
    """The one ``op`` node that reads a zero Pad of only the spatial axes (2..) by non-negative
    amounts (what Conv's and MaxPool's own pads can do: no batch or channels, no crops), and
    its pads grown by the Pad's; None when ``pad`` is no such Pad."""
    amounts = _zero_pad_amounts(em, pad)
    if amounts is None or pad.output[0] in graph_outputs or (amounts < 0).any():
        return None
    consumers = _consumers(em, pad.output[0])
    if len(consumers) != 1 or consumers[0].op_type != op or consumers[0].input[0] != pad.output[0]:
        return None
    rank = len(amounts) // 2
    begins, ends = amounts[:rank], amounts[rank:]
    if any(begins[:2]) or any(ends[:2]):
        return None
    spatial = rank - 2
    node = consumers[0]
    old = next((list(a.ints) for a in node.attribute if a.name == "pads"), [0] * (2 * spatial))
    merged = [int(p) + int(b) for p, b in zip(old[:spatial], begins[2:], strict=True)]
    merged += [int(p) + int(e) for p, e in zip(old[spatial:], ends[2:], strict=True)]
    return node, merged


def _absorb_pad(em: Emitter, pad: onnx.NodeProto, node: onnx.NodeProto, pads: list[int]) -> None:
    """``node`` pads by ``pads`` itself and reads what ``pad`` padded; ``pad`` is gone."""
    for attribute in [a for a in node.attribute if a.name == "pads"]:
        node.attribute.remove(attribute)
    node.attribute.append(helper.make_attribute("pads", pads))
    node.input[0] = pad.input[0]
    em.nodes.remove(pad)


def _non_negative(em: Emitter, node: onnx.NodeProto | None) -> bool:
    """Whether every value ``node`` outputs is >= 0 (a Relu, or a Clip from 0 or more)."""
    if node is None:
        return False
    if node.op_type == "Relu":
        return True
    if node.op_type != "Clip":
        return False
    low = next((a.f for a in node.attribute if a.name == "min"), None)  # opsets before 11
    if len(node.input) > 1 and node.input[1]:
        value = em.constant_values.get(node.input[1])
        low = None if value is None else float(value)
    return low is not None and low >= 0


_GLOBAL_POOLS = {"ReduceMean": "GlobalAveragePool", "ReduceMax": "GlobalMaxPool"}


def _global_pool_for_reduce(em: Emitter, graph_outputs: set[str]) -> list[Rewrite]:
    for reduce in em.nodes:
        if reduce.op_type not in _GLOBAL_POOLS:
            continue
        shape = em.value_shapes.get(reduce.input[0])
        axes = next((list(a.ints) for a in reduce.attribute if a.name == "axes"), None)
        if axes is None and len(reduce.input) > 1:
            found = em.constant_values.get(reduce.input[1])
            axes = None if found is None else [int(a) for a in found.ravel()]
        # Images only: onnxruntime blocks only 4-D tensors, and OpenCV's and onnx.reference's
        # global pools of 1-D or 3-D tensors are wrong (the runtime matrix's cases).
        if shape is None or len(shape) != 4 or axes is None:
            continue
        if sorted(a % len(shape) for a in axes) != list(range(2, len(shape))):
            continue
        keepdims = next((a.i for a in reduce.attribute if a.name == "keepdims"), 1)
        output = reduce.output[0]
        replaced = [reduce]
        if not keepdims:
            # Only a Reshape that restores the reduced axes makes the pair a global pool; any
            # other reader (an activation, a Dense's MatMul) takes the reduced shape.
            readers = _consumers(em, output)
            reshape = readers[0] if len(readers) == 1 and readers[0].op_type == "Reshape" else None
            target = None if reshape is None else em.constant_values.get(reshape.input[1])
            restored = [shape[1]] + [1] * (len(shape) - 2)
            if (
                output in graph_outputs
                or reshape is None
                or target is None
                or [int(d) for d in target.ravel()[1:]] != restored
                or int(target.ravel()[0]) not in (0, -1, shape[0])
            ):
                continue
            output = reshape.output[0]
            replaced.append(reshape)
        pool = helper.make_node(
            _GLOBAL_POOLS[reduce.op_type], [reduce.input[0]], [output], name=reduce.name
        )
        em.nodes[em.nodes.index(reduce)] = pool
        for node in replaced[1:]:
            em.nodes.remove(node)
        return [Rewrite("global_pool", tuple(node.name for node in replaced))]
    return []


def _merge_pad_and_slice(em: Emitter, graph_outputs: set[str]) -> list[Rewrite]:
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
        return [Rewrite("pad_and_slice", (pad.name, crop.name))]
    return []


def _fold_batch_norms_into_convs(em: Emitter, graph_outputs: set[str]) -> list[Rewrite]:
    """Fold every BatchNormalization that reads a Conv or ConvTranspose output alone into that
    convolution, in one sweep; one ``Rewrite`` for each (a second BatchNormalization may follow:
    the caller sweeps again while any folded)."""
    if not any(node.op_type == "BatchNormalization" for node in em.nodes):
        return []  # the indexes below cost a walk of every node (100,000 of them, at times)
    producers = {name: node for node in em.nodes for name in node.output}
    uses: dict[str, int] = {}
    for node in em.nodes:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    where = {name: index for index, (name, _) in enumerate(em.initializers)}
    folded: list[onnx.NodeProto] = []
    done = []
    for norm in em.nodes:
        if norm.op_type != "BatchNormalization" or len(norm.output) != 1:
            continue
        conv = producers.get(norm.input[0])
        if (
            conv is None
            or conv.op_type not in ("Conv", "ConvTranspose")
            or conv.output[0] in graph_outputs  # the convolution's own output is wanted
            or uses[conv.output[0]] != 1  # another node reads the unnormalized values
            or any(name not in where for name in [*conv.input[1:], *norm.input[1:]])
        ):
            continue
        gamma, beta, mean, variance = (
            em.initializers[where[name]][1].astype(np.float64) for name in norm.input[1:5]
        )
        epsilon = next((a.f for a in norm.attribute if a.name == "epsilon"), 1e-5)
        scale = gamma / np.sqrt(variance + np.float32(epsilon))
        shift = beta - mean * scale
        kernel = em.initializers[where[conv.input[1]]][1]
        group = next((a.i for a in conv.attribute if a.name == "group"), 1)
        scope, em.scope = em.scope, conv.name.rpartition("/")[0]
        in_place = (
            em.owns_arrays
            and uses[conv.input[1]] == 1
            and kernel.dtype == np.float32
            and kernel.flags.writeable
            and kernel.flags.c_contiguous
        )
        out = kernel if in_place else np.empty(kernel.shape, np.float32)
        _replace(em, conv, 1, _scaled_kernel(kernel, scale, conv.op_type, group, out), uses, where)
        bias = em.initializers[where[conv.input[2]]][1] if len(conv.input) > 2 else 0.0
        _replace(em, conv, 2, (bias * scale + shift).astype(np.float32), uses, where)
        em.scope = scope
        conv.output[0] = norm.output[0]
        folded.append(norm)
        done.append(Rewrite("batch_norm_into_conv", (conv.name, norm.name)))
    if folded:
        gone = {id(norm) for norm in folded}
        em.nodes[:] = [node for node in em.nodes if id(node) not in gone]
    return done


def _scaled_kernel(
    kernel: np.ndarray, scale: np.ndarray, op: str, group: int, out: np.ndarray
) -> np.ndarray:
    """``out`` (float32, ``kernel``'s shape; ``kernel`` itself to scale it in place) filled with
    the kernel with output channel ``o`` scaled by ``scale[o]``: Conv's kernel is (out, in /
    group, k..); ConvTranspose's (in, out / group, k..), output channel ``j * out / group + o``
    of group ``j`` in column ``o`` of that group's rows. Each product is taken in float64 and
    rounded once to float32, a buffer at a time: no float64 copy of the kernel is made."""
    spatial = (1,) * (kernel.ndim - 2)
    if op == "Conv":
        np.multiply(kernel, scale.reshape(-1, 1, *spatial), out=out, casting="same_kind")
        return out
    rows, columns = kernel.shape[:2]
    grouped = kernel.reshape(group, rows // group, columns, *kernel.shape[2:])
    np.multiply(
        grouped,
        scale.reshape(group, 1, columns, *spatial),
        out=out.reshape(grouped.shape),
        casting="same_kind",
    )
    return out


def _replace(
    em: Emitter,
    node: onnx.NodeProto,
    position: int,
    array: np.ndarray,
    uses: dict[str, int],
    where: dict[str, int],
) -> None:
    """Give ``node`` ``array`` as its input ``position``: in place when only it reads the
    initializer there, else as a new one (a shared layer's kernel, or a bias it lacked)."""
    if position < len(node.input) and uses[node.input[position]] == 1:
        em.initializers[where[node.input[position]]] = (node.input[position], array)
        return
    name = em.fresh("bias" if position == 2 else "kernel")
    em.initializers.append((name, array))
    where[name] = len(em.initializers) - 1
    uses[name] = 1
    if position < len(node.input):
        uses[node.input[position]] -= 1
        node.input[position] = name
    else:
        node.input.append(name)


def _fold_flatten_transpose_into_dense(em: Emitter, graph_outputs: set[str]) -> list[Rewrite]:
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
        if em.owns_arrays and weight.flags.writeable and weight.flags.c_contiguous:
            permute_rows_in_place(weight, order)
        else:  # a caller's array: left as it was given
            permuted = np.empty_like(weight)
            permuted[order] = weight
            em.initializers[arrays[0]] = (name, permuted)
        flatten.input[0] = transpose.input[0]
        em.nodes.remove(transpose)
        return [Rewrite("flatten_transpose_into_dense", (transpose.name, flatten.name, gemm.name))]
    return []


PERMUTE_BLOCK_BYTES = 16 << 20
"""The scratch space ``permute_rows_in_place`` uses for narrow rows: one block of columns of
every row."""

WIDE_ROW_BYTES = 4096
"""Rows at least this long are moved one by one along the permutation's cycles (a Python step
per row is then cheap beside the row's copy); shorter ones a block of columns at a time."""


def permute_rows_in_place(matrix: np.ndarray, order: np.ndarray) -> None:
    """Move row ``j`` of ``matrix`` to row ``order[j]`` (the same numbers as ``permuted[order] =
    matrix``), overwriting it, so that a Dense kernel of hundreds of megabytes (VGG16's first:
    392 MiB) is not held twice: wide rows along the permutation's cycles through one row of
    scratch space, narrow ones a block of columns at a time through ``PERMUTE_BLOCK_BYTES``
    (or one column, if a column is larger)."""
    rows = matrix.shape[0]
    columns = matrix.reshape(rows, -1)
    if columns.shape[1] * matrix.itemsize >= WIDE_ROW_BYTES:
        _follow_cycles(columns, order)
        return
    width = columns.shape[1]
    step = max(1, min(width, PERMUTE_BLOCK_BYTES // max(1, rows * matrix.itemsize)))
    scratch = np.empty((rows, step), matrix.dtype)
    for start in range(0, width, step):
        block = columns[:, start : start + step]
        moved = scratch[:, : block.shape[1]]
        moved[order] = block
        block[...] = moved


def _follow_cycles(rows: np.ndarray, order: np.ndarray) -> None:
    """``permute_rows_in_place`` for a 2-D ``rows``: each cycle of the permutation is walked
    once, a row saved at its start and every other row copied into its place."""
    source = np.empty_like(order)
    source[order] = np.arange(len(order))  # row i takes old row source[i]
    takes = source.tolist()
    done = bytearray(len(takes))
    saved = np.empty(rows.shape[1], rows.dtype)
    for start, first in enumerate(takes):
        if done[start] or first == start:
            continue
        saved[...] = rows[start]
        place = start
        while takes[place] != start:
            done[place] = 1
            rows[place] = rows[takes[place]]
            place = takes[place]
        done[place] = 1
        rows[place] = saved
