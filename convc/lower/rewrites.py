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

import heapq
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
    """Apply the rewrites to the emitter's nodes until none fires; what fired, in order.

    The batch-norm fold is one sweep (``_fold_batch_norms_into_convs``). The others fire one
    at a time, always the first rewrite of ``_PATTERNS`` that applies anywhere, at the first
    node where it applies (a firing can make another apply, earlier in the graph or of an
    earlier rewrite). Found without rescanning the graph: each rewrite keeps a heap of the
    places of the nodes that might start its pattern, and a firing puts back only the nodes
    whose patterns it can have completed (``_Graph.disturbed``), so the work is n log n in the
    number of nodes, not a walk of every node per firing (a 100,000-layer chain of
    ZeroPadding2D and Conv2D pairs took hours)."""
    done = _fold_batch_norms_into_convs(em, graph_outputs)
    graph = _Graph(em, graph_outputs)
    heaps: list[list[int]] = [[] for _ in _PATTERNS]
    for slot, node in enumerate(em.nodes):
        for index in _STARTS.get(node.op_type, ()):
            heaps[index].append(slot)  # in order: already a heap
    while True:
        for heap, (_, fire) in zip(heaps, _PATTERNS, strict=True):
            fired = None
            while heap and fired is None:
                start = graph.slots[heapq.heappop(heap)]
                fired = None if start is None else fire(graph, start)
            if fired is not None:
                done.append(fired)
                for slot, node in graph.disturbed():
                    for index in _STARTS.get(node.op_type, ()):
                        heapq.heappush(heaps[index], slot)
                break
        else:
            break
    if graph.changed:
        em.nodes[:] = [node for node in graph.slots if node is not None]
    return done


class _Graph:
    """The emitter's nodes while the one-at-a-time rewrites run, indexed for them.

    Each node keeps its place (``slots``; None where one was removed): a rewrite removes nodes,
    rewires their readers and replaces a node in its place, and never inserts one, so the order
    of the places is the order of ``em.nodes``. Which places read each value (and at which
    input positions), which place writes it, and where each initializer lies are indexed when
    a pattern first needs them, and kept current, so that a rewrite looks at a node's
    neighbours instead of walking every node. What a firing changed is noted for
    ``disturbed``."""

    def __init__(self, em: Emitter, graph_outputs: set[str]) -> None:
        self.em = em
        self.graph_outputs = graph_outputs
        self.slots: list[onnx.NodeProto | None] = list(em.nodes)
        self.changed = False
        self._readers: dict[str, dict[int, list[int]]] = {}  # value -> {place: input positions}
        self._writers: dict[str, int] = {}  # value -> place of the node that outputs it
        self._places: dict[int, int] = {}  # id(node) -> place
        self._indexed = False
        self._initializers: dict[str, list[int]] | None = None  # name -> where in initializers
        self._touched_nodes: list[int] = []  # places of nodes a firing changed or put in
        self._touched_values: list[str] = []  # values whose readers a firing changed

    def _index(self) -> None:
        if self._indexed:
            return
        self._indexed = True
        for place, node in enumerate(self.slots):
            assert node is not None  # nothing is removed before the first index
            self._add(place, node)

    def _add(self, place: int, node: onnx.NodeProto) -> None:
        self._places[id(node)] = place
        for position, name in enumerate(node.input):
            self._readers.setdefault(name, {}).setdefault(place, []).append(position)
        for name in node.output:
            self._writers[name] = place

    def _drop(self, place: int, node: onnx.NodeProto) -> None:
        del self._places[id(node)]
        for name in dict.fromkeys(node.input):
            self._readers[name].pop(place, None)
            self._touched_values.append(name)
        for name in node.output:
            if self._writers.get(name) == place:
                del self._writers[name]

    # -- looking ----------------------------------------------------------------------------

    def only_reader(self, value: str) -> onnx.NodeProto | None:
        """The one node that reads ``value`` (at one or more inputs); None if not exactly one."""
        self._index()
        readers = self._readers.get(value)
        if not readers or len(readers) != 1:
            return None
        return self.slots[next(iter(readers))]

    def writer(self, value: str) -> onnx.NodeProto | None:
        """The node that outputs ``value``; None for a graph input or an initializer."""
        self._index()
        place = self._writers.get(value)
        return None if place is None else self.slots[place]

    def initializer_places(self, name: str) -> list[int]:
        """Where in ``em.initializers`` arrays of that name lie (one, or none)."""
        if self._initializers is None:
            self._initializers = {}
            for index, (each, _) in enumerate(self.em.initializers):
                self._initializers.setdefault(each, []).append(index)
        return self._initializers.get(name, [])

    # -- changing ---------------------------------------------------------------------------

    def remove(self, node: onnx.NodeProto) -> None:
        self._index()
        place = self._places[id(node)]
        self._drop(place, node)
        self.slots[place] = None
        self.changed = True

    def replace(self, old: onnx.NodeProto, new: onnx.NodeProto) -> None:
        """Put ``new`` in ``old``'s place."""
        self._index()
        place = self._places[id(old)]
        self._drop(place, old)
        self.slots[place] = new
        self._add(place, new)
        self._touched_nodes.append(place)
        self._touched_values += new.input
        self.changed = True

    def rewire(self, node: onnx.NodeProto, inputs: list[str]) -> None:
        """Give ``node`` these inputs instead of its own."""
        self._index()
        place = self._places[id(node)]
        for name in dict.fromkeys(node.input):
            self._readers[name].pop(place, None)
            self._touched_values.append(name)
        node.input[:] = inputs
        for position, name in enumerate(inputs):
            self._readers.setdefault(name, {}).setdefault(place, []).append(position)
        self._touched_values += inputs
        self._touched_nodes.append(place)
        self.changed = True

    def set_input(self, node: onnx.NodeProto, position: int, name: str) -> None:
        """Make ``node`` read ``name`` at input ``position``."""
        self._index()
        place = self._places[id(node)]
        old = node.input[position]
        positions = self._readers[old][place]
        positions.remove(position)
        if not positions:
            del self._readers[old][place]
        self._readers.setdefault(name, {}).setdefault(place, []).append(position)
        node.input[position] = name
        self._touched_values += [old, name]
        self._touched_nodes.append(place)
        self.changed = True

    def rename_readers(self, old: str, new: str) -> None:
        """Make every node that reads ``old`` read ``new`` there (``old``'s writer is gone)."""
        self._index()
        for place, positions in list(self._readers.get(old, {}).items()):
            node = self.slots[place]
            assert node is not None
            for position in list(positions):
                self.set_input(node, position, new)

    def touch(self, node: onnx.NodeProto) -> None:
        """Note that ``node``'s attributes changed."""
        self._index()
        self._touched_nodes.append(self._places[id(node)])

    def constant(self, values) -> str:
        """``em.constant``, its array indexed where it is new."""
        count = len(self.em.initializers)
        name = self.em.constant(values)
        if self._initializers is not None and len(self.em.initializers) > count:
            self._initializers.setdefault(name, []).append(count)
        return name

    def disturbed(self) -> list[tuple[int, onnx.NodeProto]]:
        """The nodes (and their places) whose patterns the changes since the last call may have
        completed, and forget the changes. A pattern starts at a node and reads at most two
        nodes downstream and what each of those reads (its constants, its readers' count), and
        the writer of its start's input (a MaxPool's Pad reads whether it is a Relu's output),
        so a firing can complete only the patterns that start at a node it changed, at the
        writer of a value whose readers it changed, or up to two writers upstream of either
        (a Flatten's Transpose, two steps above the Dense it reads). A Dense whose kernel lost
        its other readers may complete the pattern of the Transpose two steps above it."""
        places: list[int] = []

        def upstream(node: onnx.NodeProto | None, steps: int) -> None:
            for _ in range(steps):
                if node is None or not node.input:
                    return
                node = self.writer(node.input[0])
                if node is not None:
                    places.append(self._places[id(node)])

        for place in self._touched_nodes:
            node = self.slots[place]
            if node is not None:
                places.append(place)
                upstream(node, 2)
        for value in self._touched_values:
            writer = self.writer(value)
            if writer is not None:
                places.append(self._places[id(writer)])
                upstream(writer, 1)
            dense = self.only_reader(value)
            if dense is not None and dense.op_type in _DENSE and dense.input[1:2] == [value]:
                upstream(dense, 2)
        self._touched_nodes.clear()
        self._touched_values.clear()
        return [(place, node) for place in set(places) if (node := self.slots[place]) is not None]


_DENSE = ("Gemm", "MatMul")


def _zero_pad_amounts(em: Emitter, node: onnx.NodeProto) -> np.ndarray | None:
    """The [begins..., ends...] of a constant zero Pad, or None for any other Pad."""
    if node.op_type != "Pad":
        return None
    mode = next((a.s for a in node.attribute if a.name == "mode"), b"constant")
    if mode != b"constant" or len(node.input) > 2:
        return None  # a third input would be a non-zero fill value; a fourth, axes
    return em.constant_values.get(node.input[1])


def _fold_pad_into_conv(graph: _Graph, pad: onnx.NodeProto) -> Rewrite | None:
    found = _spatial_pad_into(graph, pad, "Conv")
    if found is None:
        return None
    conv, merged = found
    kernel_shape = next(a.ints for a in conv.attribute if a.name == "kernel_shape")
    if set(kernel_shape) == {1} and not graph.em.target.pointwise_conv_pads:
        return None
    _absorb_pad(graph, pad, conv, merged)
    return Rewrite("pad_into_conv", (pad.name, conv.name))


def _fold_pad_into_max_pool(graph: _Graph, pad: onnx.NodeProto) -> Rewrite | None:
    found = _spatial_pad_into(graph, pad, "MaxPool")
    if found is None or not _non_negative(graph.em, graph.writer(pad.input[0])):
        return None
    pool, merged = found
    kernel = list(next(a.ints for a in pool.attribute if a.name == "kernel_shape"))
    strides = next((list(a.ints) for a in pool.attribute if a.name == "strides"), [1])
    if any(a.name == "auto_pad" and a.s not in (b"", b"NOTSET") for a in pool.attribute) or any(
        p >= k for p, k in zip(merged, kernel + kernel, strict=True)
    ):
        return None
    if set(strides) == {1} and not graph.em.target.unit_stride_max_pool_pads:
        return None
    _absorb_pad(graph, pad, pool, merged)
    return Rewrite("pad_into_max_pool", (pad.name, pool.name))


def _spatial_pad_into(
    graph: _Graph, pad: onnx.NodeProto, op: str
) -> tuple[onnx.NodeProto, list[int]] | None:
    """The one ``op`` node that reads a zero Pad of only the spatial axes (2..) by non-negative
    amounts (what Conv's and MaxPool's own pads can do: no batch or channels, no crops), and
    its pads grown by the Pad's; None when ``pad`` is no such Pad."""
    amounts = _zero_pad_amounts(graph.em, pad)
    if amounts is None or pad.output[0] in graph.graph_outputs or (amounts < 0).any():
        return None
    node = graph.only_reader(pad.output[0])
    if node is None or node.op_type != op or node.input[0] != pad.output[0]:
        return None
    rank = len(amounts) // 2
    begins, ends = amounts[:rank], amounts[rank:]
    if any(begins[:2]) or any(ends[:2]):
        return None
    spatial = rank - 2
    old = next((list(a.ints) for a in node.attribute if a.name == "pads"), [0] * (2 * spatial))
    merged = [int(p) + int(b) for p, b in zip(old[:spatial], begins[2:], strict=True)]
    merged += [int(p) + int(e) for p, e in zip(old[spatial:], ends[2:], strict=True)]
    return node, merged


def _absorb_pad(graph: _Graph, pad: onnx.NodeProto, node: onnx.NodeProto, pads: list[int]) -> None:
    """``node`` pads by ``pads`` itself and reads what ``pad`` padded; ``pad`` is gone."""
    for attribute in [a for a in node.attribute if a.name == "pads"]:
        node.attribute.remove(attribute)
    node.attribute.append(helper.make_attribute("pads", pads))
    graph.set_input(node, 0, pad.input[0])
    graph.remove(pad)


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


def _global_pool_for_reduce(graph: _Graph, reduce: onnx.NodeProto) -> Rewrite | None:
    em = graph.em
    if reduce.op_type not in _GLOBAL_POOLS:
        return None
    shape = em.value_shapes.get(reduce.input[0])
    axes = next((list(a.ints) for a in reduce.attribute if a.name == "axes"), None)
    if axes is None and len(reduce.input) > 1:
        found = em.constant_values.get(reduce.input[1])
        axes = None if found is None else [int(a) for a in found.ravel()]
    # Images only: onnxruntime blocks only 4-D tensors, and OpenCV's and onnx.reference's
    # global pools of 1-D or 3-D tensors are wrong (the runtime matrix's cases).
    if shape is None or len(shape) != 4 or axes is None:
        return None
    if sorted(a % len(shape) for a in axes) != list(range(2, len(shape))):
        return None
    keepdims = next((a.i for a in reduce.attribute if a.name == "keepdims"), 1)
    output = reduce.output[0]
    replaced = [reduce]
    if not keepdims:
        # Only a Reshape that restores the reduced axes makes the pair a global pool; any
        # other reader (an activation, a Dense's MatMul) takes the reduced shape.
        reader = graph.only_reader(output)
        reshape = reader if reader is not None and reader.op_type == "Reshape" else None
        target = None if reshape is None else em.constant_values.get(reshape.input[1])
        restored = [shape[1]] + [1] * (len(shape) - 2)
        if (
            output in graph.graph_outputs
            or reshape is None
            or target is None
            or [int(d) for d in target.ravel()[1:]] != restored
            or int(target.ravel()[0]) not in (0, -1, shape[0])
        ):
            return None
        output = reshape.output[0]
        replaced.append(reshape)
    pool = helper.make_node(
        _GLOBAL_POOLS[reduce.op_type], [reduce.input[0]], [output], name=reduce.name
    )
    graph.replace(reduce, pool)
    for node in replaced[1:]:
        graph.remove(node)
    return Rewrite("global_pool", tuple(node.name for node in replaced))


def _merge_pad_and_slice(graph: _Graph, pad: onnx.NodeProto) -> Rewrite | None:
    em, graph_outputs = graph.em, graph.graph_outputs
    amounts = _zero_pad_amounts(em, pad)
    if amounts is None or pad.output[0] in graph_outputs or (amounts < 0).any():
        return None
    crop = graph.only_reader(pad.output[0])
    if crop is None or crop.op_type != "Slice" or len(crop.input) != 4:
        return None
    starts, ends, axes = (em.constant_values.get(name) for name in crop.input[1:4])
    if starts is None or ends is None or axes is None:
        return None
    rank = len(amounts) // 2
    shape = em.value_shapes.get(pad.output[0])
    if shape is None:
        return None
    net = amounts.astype(np.int64).copy()  # begins then ends, positive: pad, negative: crop
    for axis, start, stop in zip(axes, starts, ends, strict=True):
        net[axis] -= start
        net[rank + axis] -= shape[axis] - stop
    if (net > 0).any() and (net < 0).any():
        return None  # one op cannot both pad and crop
    if not net.any() and crop.output[0] in graph_outputs:
        return None  # cancelling would leave the graph output without a producer
    source = pad.input[0]
    graph.remove(pad)
    if not net.any():
        graph.remove(crop)
        graph.rename_readers(crop.output[0], source)
    elif (net >= 0).all():
        pads = graph.constant(net.tolist())
        crop.op_type = "Pad"
        graph.rewire(crop, [source, pads])
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
        inputs = [source, graph.constant(starts_), graph.constant(stops_), graph.constant(axes_)]
        graph.rewire(crop, inputs)
    return Rewrite("pad_and_slice", (pad.name, crop.name))


def _fold_batch_norms_into_convs(em: Emitter, graph_outputs: set[str]) -> list[Rewrite]:
    """Fold every BatchNormalization that reads a Conv or ConvTranspose output alone into that
    convolution, in one sweep; one ``Rewrite`` for each. The nodes are in the order they run, so
    a second BatchNormalization after the first comes later in the sweep, and finds the
    convolution as its input's writer (a chain of them folds in one sweep, not one sweep per
    link: 50,000 in a row took a walk of the graph each)."""
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
        producers[norm.output[0]] = conv
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


def _fold_flatten_transpose_into_dense(graph: _Graph, transpose: onnx.NodeProto) -> Rewrite | None:
    em = graph.em
    if transpose.op_type != "Transpose" or transpose.output[0] in graph.graph_outputs:
        return None
    perm = list(next(a.ints for a in transpose.attribute if a.name == "perm"))
    shape = em.value_shapes.get(transpose.input[0])
    flatten = graph.only_reader(transpose.output[0])
    if perm[0] != 0 or shape is None or flatten is None or flatten.op_type != "Reshape":
        return None
    size = int(np.prod(shape[1:]))
    target = em.constant_values.get(flatten.input[1])
    if target is None or target.tolist() not in ([0, size], [0, -1]):
        return None
    gemm = graph.only_reader(flatten.output[0])
    if flatten.output[0] in graph.graph_outputs or gemm is None:
        return None
    transposed_b = any(a.name == "transB" and a.i for a in gemm.attribute)
    if gemm.op_type not in _DENSE or gemm.input[0] != flatten.output[0]:
        return None
    kernel = gemm.input[1]
    arrays = graph.initializer_places(kernel)
    if transposed_b or len(arrays) != 1 or graph.only_reader(kernel) is None:
        return None
    # Flattened element j of the transposed tensor is element order[j] of the original.
    order = np.arange(size).reshape(shape[1:]).transpose([p - 1 for p in perm[1:]]).ravel()
    name, weight = em.initializers[arrays[0]]
    if em.owns_arrays and weight.flags.writeable and weight.flags.c_contiguous:
        permute_rows_in_place(weight, order)
    else:  # a caller's array: left as it was given
        permuted = np.empty_like(weight)
        permuted[order] = weight
        em.initializers[arrays[0]] = (name, permuted)
    graph.set_input(flatten, 0, transpose.input[0])
    graph.remove(transpose)
    return Rewrite("flatten_transpose_into_dense", (transpose.name, flatten.name, gemm.name))


_PATTERNS = (
    ("global_pool", _global_pool_for_reduce),
    ("pad_into_conv", _fold_pad_into_conv),
    ("pad_into_max_pool", _fold_pad_into_max_pool),
    ("pad_and_slice", _merge_pad_and_slice),
    ("flatten_transpose_into_dense", _fold_flatten_transpose_into_dense),
)
"""The rewrites that fire one at a time, in the order ``optimize`` tries them: each function
takes the node where its pattern would start, and fires and says so, or says None."""

_STARTS = {
    op: tuple(i for i, (name, _) in enumerate(_PATTERNS) if name in names)
    for op, names in {
        "ReduceMean": {"global_pool"},
        "ReduceMax": {"global_pool"},
        "Pad": {"pad_into_conv", "pad_into_max_pool", "pad_and_slice"},
        "Transpose": {"flatten_transpose_into_dense"},
    }.items()
}
"""Which of ``_PATTERNS`` a node of each op type can start."""


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
