"""Build an ONNX graph node by node, knowing each value's physical layout and the opset.

Lowering rules talk to an ``Emitter``: they ask for a value in a layout (``in_layout``), add nodes
through opset-aware helpers (``pad``, ``resize``, ``clip``, ``gelu`` ...) and never test an opset
number themselves. What a runtime cannot take is a question to ``emitter.target``
(``convc.targets``); a rule that picks another form because of it says so with ``workaround``.
Every value carries a permutation: physical axis ``i`` of the tensor holds the
Keras logical axis ``perm[i]``. A Transpose is emitted only when a rule needs a different order,
and at most once per value and order.

Names are stable and readable: a node is named ``<layer>/<what>`` and its output value the same,
so two builds of one file give byte-identical models.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from convc.names import UniqueNames
from convc.onnxfile import SMALL_TENSOR_BYTES, DetachedModel, detached_array, raw_data_field
from convc.targets import TARGETS, Target


@dataclass(frozen=True)
class Value:
    """A tensor in the graph: its name, its physical layout and its logical (Keras) shape."""

    name: str
    perm: tuple[int, ...]
    shape: tuple[int | None, ...]  # logical, batch first

    @property
    def rank(self) -> int:
        return len(self.perm)

    def physical_axis(self, logical_axis: int) -> int:
        """Where logical axis ``logical_axis`` (negative counts from the end) is stored."""
        return self.perm.index(logical_axis % self.rank)

    def physical_shape(self) -> list[int]:
        """The physical shape as a Reshape target takes it: 0 (copy the input's) for an axis of
        unknown size, which only the (symbolic) batch axis can be."""
        return [0 if d is None else d for d in (self.shape[a] for a in self.perm)]


def known(dim: int | None) -> int:
    """A dimension other than the batch: resolve gives each one a size (it refuses an unknown
    one), so only the batch axis of a shape may be None."""
    assert dim is not None, "only the batch axis may have an unknown size"
    return dim


def identity(rank: int) -> tuple[int, ...]:
    return tuple(range(rank))


def channels_first(rank: int) -> tuple[int, ...]:
    """The physical order ONNX convolutions need for a channels_last Keras tensor of this rank."""
    return (0, rank - 1, *range(1, rank - 1))


KERAS_INTERPOLATIONS: dict[str, dict[str, Any]] = {
    "bilinear": {"mode": "linear", "coordinate_transformation_mode": "half_pixel"},
    "bicubic": {
        "mode": "cubic",
        "coordinate_transformation_mode": "half_pixel",
        "cubic_coeff_a": -0.5,
        "exclude_outside": 1,
    },
    "bicubic_torch": {
        "mode": "cubic",
        "coordinate_transformation_mode": "half_pixel",
        "cubic_coeff_a": -0.75,
        "exclude_outside": 0,
    },
    "bilinear_keras2": {"mode": "linear", "coordinate_transformation_mode": "asymmetric"},
}
"""Resize's attributes for Keras's bilinear and bicubic interpolation (half-pixel centres;
UpSampling2D and Resizing): bicubic as JAX and TensorFlow compute it (Keys's cubic with a = -0.5,
the samples outside the image left out and the rest renormalized), ``bicubic_torch`` as Keras's
torch backend does (a = -0.75, edge samples repeated); and for Keras 2.2/2.3's bilinear
(TensorFlow 1's resize_bilinear: source ``i / scale``)."""


class Emitter:
    def __init__(self, opset: int, target: Target = TARGETS["ort"], optimize: bool = True):
        self.opset = opset
        self.target = target
        self.optimize = optimize  # pick the faster exact forms of convc.lower.conv_forms
        self.workarounds: list[tuple[str, str]] = []  # (layer, what was done and why)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[tuple[str, np.ndarray]] = []  # turned into tensors in model()
        self._names = UniqueNames()
        self._transposed: dict[tuple[str, tuple[int, ...]], str] = {}  # (value, perm) -> copy
        self._constants: dict[tuple, str] = {}
        self.constant_values: dict[str, np.ndarray] = {}  # for rewrites that read them
        self.value_shapes: dict[str, tuple[int, ...]] = {}  # physical shapes of layer outputs
        self.scope = ""
        self.layer = ""  # the shared layer whose node is being lowered, if it is shared
        self._weights: dict[tuple[str, str, tuple[int, ...]], tuple[str, np.ndarray]] = {}
        # Whether the arrays lowering is given belong to this build (loaded or drawn for it, or
        # handed over): then a rewrite may overwrite one instead of making a changed copy.
        self.owns_arrays = False

    # -- naming -----------------------------------------------------------------------------

    def fresh(self, what: str) -> str:
        return self._names.unique(f"{self.scope}/{what}" if self.scope else what)

    # -- primitives -------------------------------------------------------------------------

    def node(
        self, op: str, inputs: list[str], what: str, *, outputs: int = 1, **attrs
    ) -> list[str]:
        name = self.fresh(what)
        names = [name] if outputs == 1 else [f"{name}:{i}" for i in range(outputs)]
        self.nodes.append(helper.make_node(op, inputs, names, name=name, **attrs))
        return names

    def op(self, op: str, inputs: list[str], what: str, **attrs) -> str:
        return self.node(op, inputs, what, **attrs)[0]

    def weight(self, what: str, array: np.ndarray) -> str:
        """An initializer of the current layer. A shared layer's later applications reuse the
        first one's tensor when it is the same array (they take the same weights, unless a
        faster form for another input size rearranges them)."""
        key = (self.layer, what, array.shape)
        if key in self._weights and np.array_equal(self._weights[key][1], array):
            return self._weights[key][0]
        name = self.fresh(what)
        array = np.ascontiguousarray(array)
        self.initializers.append((name, array))
        if self.layer:
            self._weights[key] = (name, array)
        return name

    def constant(self, values, dtype=np.int64) -> str:
        """A small shared constant (pads, axes, scales), named by its content."""
        array = np.asarray(values, dtype=dtype)
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self._constants:
            kind = "i" if array.dtype.kind in "iu" else "f"
            text = "_".join(str(v) for v in array.ravel().tolist()).replace("-", "m")
            name = (
                f"const/{kind}{text}"
                if len(text) < 40 and array.ndim <= 1
                else f"const/{len(self._constants)}"
            )
            name = name.replace(".", "p")
            while name in self._names:
                name += "_"
            self._names.add(name)
            self.initializers.append((name, array))
            self._constants[key] = name
            self.constant_values[name] = array
        return self._constants[key]

    def workaround(self, text: str) -> None:
        """Record that the current layer took another form for the target's sake."""
        if (self.scope, text) not in self.workarounds:
            self.workarounds.append((self.scope, text))

    # -- layout -----------------------------------------------------------------------------

    def in_layout(self, value: Value, perm: tuple[int, ...]) -> Value:
        """``value`` stored in physical order ``perm``; a Transpose only if it is not already.

        Transposes are remembered by the physical permutation they apply, not by logical
        orders: two values may share one tensor under different logical axes (a Permute layer
        only relabels its input's axes), and a Transpose of that tensor serves both."""
        if value.perm == perm:
            return value
        to = tuple(value.perm.index(axis) for axis in perm)
        key = (value.name, to)
        if key not in self._transposed:
            self._transposed[key] = self.op("Transpose", [value.name], "transpose", perm=list(to))
        return Value(self._transposed[key], perm, value.shape)

    def existing_layout(self, value: Value) -> Value:
        """``value`` in an order a Transpose already gave it, if one did: a layout-free rule
        (padding, cropping, activations, merges) then works on that copy, so that the order
        it passes on is the one its neighbours use, and no second Transpose is needed."""
        for (name, to), copy in self._transposed.items():
            if name == value.name:
                return Value(copy, tuple(value.perm[i] for i in to), value.shape)
        return value

    # -- opset-aware helpers ----------------------------------------------------------------

    def pad(self, x: str, pads: list[int], what: str = "pad") -> str:
        """Constant zero padding; ``pads`` is ONNX's [begins..., ends...] over every axis."""
        return self.op("Pad", [x, self.constant(pads)], what, mode="constant")

    def slice(
        self, x: str, starts: list[int], ends: list[int], axes: list[int], what: str = "slice"
    ) -> str:
        inputs = [x, self.constant(starts), self.constant(ends), self.constant(axes)]
        return self.op("Slice", inputs, what)

    def conv(self, inputs: list[str], what: str, **attrs) -> str:
        """A Conv; one with a one-element kernel pads with a Pad node first where the target
        cannot pad it (``Target.pointwise_conv_pads``)."""
        pads = attrs["pads"]
        if any(pads) and set(attrs["kernel_shape"]) == {1} and not self.target.pointwise_conv_pads:
            self.workaround("padded by a Pad node: a 1x1 Conv does not pad correctly in the target")
            rank = len(pads) // 2
            padded = self.pad(inputs[0], [0, 0, *pads[:rank], 0, 0, *pads[rank:]])
            inputs = [padded, *inputs[1:]]
            attrs = {**attrs, "pads": [0] * len(pads)}
        strides = attrs.get("strides", [])
        strided = set(attrs["kernel_shape"]) == {1} and any(s > 1 for s in strides)
        if strided and not self.target.strided_pointwise_conv:
            self.workaround(
                "a strided 1x1 Conv subsamples by a 1x1 MaxPool first: the target's optimizer "
                "fails on the strided Conv"
            )
            rank = len(strides)
            pads = attrs["pads"]
            if any(pads):  # Conv pads before it strides: so must the subsampling
                inputs = [
                    self.pad(inputs[0], [0, 0, *pads[:rank], 0, 0, *pads[rank:]]),
                    *inputs[1:],
                ]
            sampled = self.op(
                "MaxPool", [inputs[0]], "subsample", kernel_shape=[1] * rank, strides=strides
            )
            inputs = [sampled, *inputs[1:]]
            attrs = {**attrs, "strides": [1] * rank, "pads": [0] * (2 * rank)}
        return self.op("Conv", inputs, what, **attrs)

    def resize(self, x: str, scales: list[float], mode: str, what: str = "resize", **attrs) -> str:
        scales_name = self.constant(scales, dtype=np.float32)
        return self.op("Resize", [x, "", scales_name], what, mode=mode, **attrs)

    def reshape(self, x: str, shape: list[int], what: str = "reshape") -> str:
        """Reshape; a 0 copies the input's dimension (the batch, which is symbolic)."""
        return self.op("Reshape", [x, self.constant(shape)], what)

    def clip(self, x: str, low: float | None, high: float | None, what: str = "clip") -> str:
        inputs = [
            x,
            self.scalar(low) if low is not None else "",
            self.scalar(high) if high is not None else "",
        ]
        while inputs[-1] == "":
            inputs.pop()
        return self.op("Clip", inputs, what)

    def scalar(self, value: float) -> str:
        return self.constant(np.float32(value), dtype=np.float32)

    def gelu(self, x: str) -> str:
        """Exact (erf) GELU: the Gelu op from opset 20, its definition before."""
        if self.opset >= 20:
            return self.op("Gelu", [x], "gelu")
        scaled = self.op("Div", [x, self.scalar(np.sqrt(2.0))], "gelu_scaled")
        erf = self.op("Erf", [scaled], "gelu_erf")
        one_plus = self.op("Add", [erf, self.scalar(1.0)], "gelu_add")
        half_x = self.op("Mul", [x, self.scalar(0.5)], "gelu_half")
        return self.op("Mul", [half_x, one_plus], "gelu")

    def hard_swish(self, x: str) -> str:
        if self.opset >= 14:
            return self.op("HardSwish", [x], "hard_silu")
        gate = self.op("HardSigmoid", [x], "hard_silu_gate", alpha=1.0 / 6.0, beta=0.5)
        return self.op("Mul", [x, gate], "hard_silu")

    def mish(self, x: str) -> str:
        if self.opset >= 18:
            return self.op("Mish", [x], "mish")
        soft = self.op("Softplus", [x], "mish_softplus")
        return self.op("Mul", [x, self.op("Tanh", [soft], "mish_tanh")], "mish")

    def reduce_sum(self, x: str, axis: int, what: str) -> str:
        return self.op("ReduceSum", [x, self.constant([axis])], what, keepdims=1)

    _SINCE = {"LayerNormalization": 17}

    def has(self, op: str) -> bool:
        """Whether the opset has ``op``, for a rule that composes it otherwise."""
        return self.opset >= self._SINCE[op]

    def reduce(self, op: str, x: str, axes: list[int], what: str, *, keepdims: bool) -> str:
        """ReduceMean, ReduceMax (or any Reduce op) over ``axes``: given as an input from opset
        18 (ReduceSum from 13), as an attribute before."""
        if op == "ReduceSum" or self.opset >= 18:
            return self.op(op, [x, self.constant(axes)], what, keepdims=int(keepdims))
        return self.op(op, [x], what, axes=axes, keepdims=int(keepdims))

    # -- the model --------------------------------------------------------------------------

    def model(
        self, name: str, inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto]
    ) -> DetachedModel:
        """The model, its weights beyond ``SMALL_TENSOR_BYTES`` kept apart as arrays (then each
        weight is held once until it is written: building is bounded by memory, #6). Built in
        place: onnx.helper copies tensors by serializing them, which fails for a tensor beyond
        protobuf's 2 GiB. Takes the emitter's arrays: call it once."""
        # The oldest IR version the opset allows: runtimes that predate newer IR versions
        # refuse the model otherwise.
        opset = helper.make_opsetid("", self.opset)
        model = onnx.ModelProto(
            ir_version=helper.find_min_ir_version_for([opset]), producer_name="convc"
        )
        model.opset_import.append(opset)
        graph = model.graph
        graph.name = name
        graph.node.extend(self.nodes)
        graph.input.extend(inputs)
        graph.output.extend(outputs)
        used = {name for node in self.nodes for name in node.input}
        self._weights.clear()
        detached: dict[str, np.ndarray] = {}
        initializers, self.initializers = self.initializers, []
        for tensor_name, array in initializers:
            if tensor_name not in used:  # a constant that a rewrite made redundant
                continue
            tensor = graph.initializer.add()
            tensor.name = tensor_name
            tensor.data_type = helper.np_dtype_to_tensor_dtype(array.dtype)
            tensor.dims.extend(array.shape)
            if array.nbytes > SMALL_TENSOR_BYTES:
                detached[tensor_name] = detached_array(array)
            else:
                tensor.MergeFromString(raw_data_field(array))
        return DetachedModel(model, detached)

    def rename(self, names: dict[str, str]) -> None:
        """Give values new names (graph outputs take their layers' names), everywhere they are
        used, in one pass over the nodes."""
        renamed = names.keys()
        for node in self.nodes:
            # Only the nodes that read or write a renamed value are rewritten: assigning a
            # protobuf field costs more than testing it (100,000 nodes, a few outputs).
            if not renamed.isdisjoint(node.output):
                node.output[:] = [names.get(o, o) for o in node.output]
            if not renamed.isdisjoint(node.input):
                node.input[:] = [names.get(i, i) for i in node.input]


def tensor_info(
    name: str, dtype: str, shape: Sequence[int | None], batch_name: str = "batch"
) -> onnx.ValueInfoProto:
    dims = [batch_name if d is None else d for d in shape]
    return helper.make_tensor_value_info(name, _ONNX_TYPES[dtype], dims)


_ONNX_TYPES = {
    "float32": TensorProto.FLOAT,
    "float16": TensorProto.FLOAT16,
    "float64": TensorProto.DOUBLE,
    "bfloat16": TensorProto.BFLOAT16,
}


def onnx_type(dtype: str) -> int:
    return _ONNX_TYPES[dtype]
