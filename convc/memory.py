"""How much memory running or checking a model will hold, estimated before anything runs.

A model file is untrusted input, and a few hundred bytes of it can declare activations that no
machine holds: an Input of (8192, 8192, 3) and three ``Conv2D(64, 3, padding="same")`` make
48 GiB of float32 tensors at batch 1. ``convc run``, ``convc check`` and ``convc golden``
therefore estimate, from the model's static shapes and the batch of the inputs they will use,
the bytes they would hold, and refuse beyond a limit (``--max-memory``, ``max_memory=``) before
allocating any of it.

The estimate counts what each executor keeps, as each one keeps it:

* **The NumPy reference** (``convc check``) keeps every layer's output until the comparison,
  a float32 copy of each input, and, while a layer runs, that layer's temporaries
  (``reference_workspace``: padded and gathered copies of a convolution's input, float64 copies
  in pooling and normalization).
* **onnxruntime** keeps a value from the node that makes it to the last node that reads it, and
  a graph output to the end (with ``convc check``'s per-layer outputs, every layer's output):
  the peak over the graph's nodes, in order, of the values alive (``live_peak``), Transposes
  into and out of channels-first included, as the graph has them. Its kernels' own scratch
  space (a convolution's blocked copy of its input) comes on top: ``RUNTIME_MARGIN``.
* **Weights** are held several times over: as loaded, in the ONNX model, and in the session
  (``WEIGHT_COPIES``).
* **The int8 check** (``convc check --precision int8``) holds its calibration samples and
  held-out inputs throughout, and the largest of its phases: calibration in onnxruntime's
  calibrator (``calibration_bytes``), the float32 and the int8 model run on the held-out inputs
  a chunk at a time, and the int8 reference recomputing one quantized group at a time
  (``int8_check_estimate``).
* **An int8 build** (``convc build``, ``run`` and ``golden`` with ``--precision int8``) holds its
  calibration samples and the calibrator, then what the command does with the model it built
  (``int8_build_estimate``, a ``Bound``'s ``running``): both are estimated from the float32
  model before a calibration sample is drawn.

Unknown dimensions take the batch, as convc's random inputs do. It is an estimate of the
tensors, not of the process: the interpreter, NumPy and onnxruntime themselves add about 100 MB,
and a runtime may round its buffers up. Measured peaks on the samples and larger stacks are in
docs/checking.md.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import onnx

from convc.diagnostics import ConvcError
from convc.model import Model, Node, Shape
from convc.specs import ConvSpec, GlobalPoolSpec, NormSpec, PoolSpec, RMSNormSpec

DEFAULT_MAX_MEMORY = 8 << 30
"""The limit when none is given: 8 GiB, or three quarters of the memory this process may use
where that is less (``default_max_memory``)."""

FLOAT32 = 4

WEIGHT_COPIES = {"check": 5, "run": 4, "int8 check": 5, "int8 build": 4}
"""How many times a command holds the weights at its peak, while onnxruntime's session starts:
the ONNX model's copy, the session's two (read out of the model, and packed for its kernels),
a weight's copies in passing (measured: 3.7 times a Dense-heavy net's weights for ``run``), and
for ``check`` the Keras-layout arrays the reference computes with (4.7 times). The int8 check
holds the Keras arrays, the float32 model and its session, and the int8 model (a quarter) and
its session while the float32 one starts (measured: 5.0 times). An int8 build holds the float32
model, the copy onnxruntime's calibrator loads and augments, and its session's two (measured:
3.9 times a Dense-heavy net's weights)."""

SMALL_ARRAY = 192
"""The bytes Python holds for a NumPy array of one number (its object and its data; measured
175 in onnxruntime's calibrator, which keeps two per value of every calibrating feed)."""

RUNTIME_MARGIN = 1.5
"""onnxruntime's values at their peak, times this: its kernels' scratch space and its blocked
channel layouts (a 3-channel image is padded to 8 channels in the layout its convolutions use)
come on top of the graph's own values."""


# -- sizes ------------------------------------------------------------------------------------

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(?:([kmgt])(ib?|b)?|(b)?)", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes from a size: ``512M``, ``8G``, ``1.5GiB``, ``50GB``, ``1048576``. K, M, G and T
    (alone, or as Ki, Mi, Gi, Ti with or without B) are powers of 1024, as in docker's and
    systemd's memory limits; KB, MB, GB and TB are powers of 1000; case does not matter."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ConvcError(
            f"{text!r} is not a size",
            help="give a number of bytes with an optional unit: 512M, 8G, 1.5GiB, 50GB",
        )
    number, prefix, suffix, _ = match.groups()
    prefix = (prefix or "").lower()
    unit = _UNITS[prefix]
    if prefix and suffix and suffix.lower() == "b":  # KB, MB, GB, TB: the SI units
        unit = 1000 ** ("kmgt".index(prefix) + 1)
    value = Fraction(number) * unit
    if value.denominator != 1 and not prefix:
        raise ConvcError(f"{text!r}: a number of bytes is a whole number")
    if value < 1:
        raise ConvcError(f"{text!r}: the size must be at least one byte")
    return int(value)


def format_size(size: float) -> str:
    """``size`` bytes in binary units, one decimal where it is not whole: ``48.8 GiB``."""
    for unit, name in ((1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if size >= unit:
            text = f"{size / unit:.1f}".removesuffix(".0")
            return f"{text} {name}"
    return f"{int(size)} B"


def option_value(size: int) -> str:
    """The smallest ``--max-memory`` in whole G (or M, below 1 GiB) that allows ``size``."""
    if size >= 1 << 30:
        return f"{math.ceil(size / (1 << 30))}G"
    return f"{max(1, math.ceil(size / (1 << 20)))}M"


def usable_memory() -> int | None:
    """The memory this process may use: the machine's physical memory, or its control group's
    limit where one is set and lower (a container's). None where neither can be read."""
    sizes = []
    with contextlib.suppress(ValueError, OSError, AttributeError):  # not a POSIX system
        sizes.append(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            sizes.append(int(text))
    return min(sizes) if sizes else None


def default_max_memory() -> int:
    """``DEFAULT_MAX_MEMORY``, or three quarters of ``usable_memory`` where that is less."""
    usable = usable_memory()
    return DEFAULT_MAX_MEMORY if usable is None else min(DEFAULT_MAX_MEMORY, usable * 3 // 4)


def max_memory_bytes(max_memory: int | str | None) -> int:
    """The limit in bytes: ``None`` for the default, a number of bytes, or a size string."""
    if max_memory is None:
        return default_max_memory()
    if isinstance(max_memory, str):
        return parse_size(max_memory)
    if isinstance(max_memory, bool) or not isinstance(max_memory, int):
        raise TypeError(f"max_memory: expected bytes (int) or a size (str), got {max_memory!r}")
    if max_memory < 1:
        raise ConvcError(f"max_memory={max_memory}: the limit must be at least one byte")
    return max_memory


# -- the estimate -----------------------------------------------------------------------------


class TooMuchMemory(ConvcError):
    """A refusal of ``Estimate.enforce``: the command would hold more than its limit. A caller
    that turns other errors into a report (``convc golden verify``'s recompilation) lets it
    through."""


@dataclass(frozen=True)
class Estimate:
    """What a command would hold: the tensors computed from its inputs (which grow with the
    batch and the input's size) and the copies of the weights."""

    command: str
    activations: int
    weights: int
    batch: int
    inputs: str | None = None
    """What the activations are of, where a batch alone does not say it (an int8 check's
    calibration samples and held-out inputs)."""
    smaller: str = "a smaller batch or input shape"
    """What the user may make smaller instead of raising the limit."""

    @property
    def total(self) -> int:
        return self.activations + self.weights

    def enforce(self, limit: int, *, path: str | None = None) -> None:
        """Refuse, with the figures and what to change, when the estimate exceeds ``limit``."""
        if self.total <= limit:
            return
        raise TooMuchMemory(
            f"{self.command} would hold about {format_size(self.total)}: "
            f"{format_size(self.activations)} of activations "
            f"({self.inputs or f'batch {self.batch:,}'}) and "
            f"{format_size(self.weights)} of weights; the limit is {format_size(limit)}",
            help=f"give --max-memory {option_value(self.total)} (max_memory= in the Python API) "
            f"to allow it, or {self.smaller}",
            path=path,
        )


def check_estimate(model: Model, proto: onnx.ModelProto, batch: int) -> Estimate:
    """``convc check``'s peak: the reference's inputs and every layer's output, then, while a
    layer runs, its temporaries or, once the reference is done, onnxruntime's values for
    ``proto`` (the model lowered with every layer's output exposed)."""
    inputs = sum(_bytes(i.shape, batch) for i in model.inputs)
    outputs = sum(_bytes(node.output.shape, batch) for node in model.nodes)
    workspace = max((reference_workspace(node, batch) for node in model.nodes), default=0)
    runtime = int(live_peak(proto, batch=batch) * RUNTIME_MARGIN)
    activations = 2 * inputs + outputs + max(workspace, runtime)  # given, and the reference's
    weights = WEIGHT_COPIES["check"] * parameter_bytes(model)
    fixed = next((i.shape[0] for i in model.inputs if i.shape and i.shape[0] is not None), None)
    return Estimate("check", activations, weights, batch if fixed is None else fixed)


def calibration_bytes(
    model: Model, proto: onnx.ModelProto, *, method: str, calibrating: int, feed: int
) -> int:
    """What onnxruntime's calibrator holds calibrating the float32 model ``proto`` (lowered from
    ``model``) on ``calibrating`` samples, ``feed`` at a time, beyond the samples themselves:
    it reads every value of the graph (``minmax`` through a ReduceMin and a ReduceMax each, run
    after the graph's own nodes, so that every value is alive at the end of a run), and its
    session holds them twice from its second run on (its memory pattern's block beside the
    arena the first run filled; measured 1.4 to 2.6 times every value, depending on how
    onnxruntime orders the reductions); ``minmax`` keeps each feed's minimum and maximum of
    every value and input (two arrays of one number, ``SMALL_ARRAY`` each) until the last, and
    the feed itself (a dict, a view of each input) and the list of its results, about four
    more; the histogram methods (``percentile``, ``entropy``) keep every value of every feed
    instead, then stack and flatten one tensor's at a time."""
    per_feed = _value_sizes(proto, {}, feed)
    everything = sum(per_feed.values())
    feeds = max(1, calibrating // feed)
    calibration = min(feeds, 2) * everything
    if method == "minmax":  # each feed's minimum and maximum of every value and input
        calibration += feeds * (2 * (len(per_feed) + len(model.inputs)) + 4) * SMALL_ARRAY
    else:
        calibration += feeds * everything + 2 * feeds * max(per_feed.values(), default=0)
    return calibration


def int8_check_estimate(
    model: Model,
    proto: onnx.ModelProto,
    *,
    kept: int,
    method: str,
    calibrating: int,
    feed: int,
    chunk: int,
    agreement: int,
    inputs: str,
) -> Estimate:
    """``convc check --precision int8``'s peak (``convc.int8_check``) for the float32 model
    ``proto`` lowered from ``model``: ``kept`` bytes of samples held throughout (the
    calibration's, and the held-out inputs given or drawn), and the largest of its three phases:

    * **calibration**, ``calibrating`` samples ``feed`` at a time (``calibration_bytes``);
    * **the accuracy cost**, ``chunk`` inputs at a time: the float32 session's values and the
      int8 session's, counted as half of them (uint8 between its integer kernels, float32 where
      it dequantizes: measured 52 to 86 % of the float32 session's), both outputs, and two
      float64 copies of one input's largest output;
    * **the agreement**, ``agreement`` inputs at a time: every value's integers (a quarter of
      its float32 bytes, for every quantized tensor), in the session that writes them and as
      the arrays it returns; then one quantized group at a time recomputed by the int8
      reference, counted per layer as the float reference's temporaries
      (``reference_workspace``) and two float32 copies each of the layer's inputs
      (dequantized, and moved to Keras's layout) and of its output (moved back, and quantized).
    """

    def sizes(batch: int) -> dict[str, int]:
        return _value_sizes(proto, {}, batch)

    calibration = calibration_bytes(model, proto, method=method, calibrating=calibrating, feed=feed)

    per_chunk = sizes(chunk)
    outputs = sum(per_chunk.get(info.name, 0) for info in proto.graph.output)
    row = max((_bytes(tensor.shape[1:], 1) for tensor in model.outputs), default=0)
    runtime = int(_live_peak(proto.graph, per_chunk) * RUNTIME_MARGIN)
    accuracy = runtime + runtime // 2 + 2 * outputs + 2 * 2 * row  # float64: twice float32

    integers = sum(sizes(agreement).values()) // FLOAT32
    group = max(
        (
            reference_workspace(node, agreement)
            + 2 * sum(_bytes(tensor.shape, agreement) for tensor in node.inputs)
            + 2 * _bytes(node.output.shape, agreement)
            for node in model.nodes
        ),
        default=0,
    )
    activations = kept + max(calibration, accuracy, 2 * integers + group)
    weights = WEIGHT_COPIES["int8 check"] * parameter_bytes(model)
    return Estimate(
        "int8 check",
        activations,
        weights,
        chunk,
        inputs,
        "fewer calibration samples (--calibration-count) or held-out inputs, or a smaller "
        "input shape",
    )


def int8_build_estimate(
    model: Model,
    proto: onnx.ModelProto,
    *,
    command: str,
    kept: int,
    method: str,
    calibrating: int,
    feed: int,
    inputs: str,
) -> Estimate:
    """An int8 build's peak while it calibrates (``convc.compiler.quantize``) the float32 model
    ``proto`` lowered from ``model``: ``kept`` bytes of calibration samples, in Keras's layout
    and, where the model's inputs are in another, in the graph's too; the calibrator
    (``calibration_bytes``), ``calibrating`` samples ``feed`` at a time; and the weights
    ``WEIGHT_COPIES["int8 build"]`` times. ``command`` is the command that builds (``build``,
    ``run``, ``golden record``, ``golden verify``)."""
    calibration = calibration_bytes(model, proto, method=method, calibrating=calibrating, feed=feed)
    return Estimate(
        f"int8 {command}",
        kept + calibration,
        WEIGHT_COPIES["int8 build"] * parameter_bytes(model),
        feed,
        inputs,
        "fewer calibration samples (--calibration-count) or a smaller input shape",
    )


@dataclass(frozen=True)
class Bound:
    """The limit a command holds a build to (``convc.compiler.compile_detached``'s ``bound``):
    an int8 build runs the model to calibrate it, and refuses before it draws or reads a
    calibration sample when the calibration, or what the command does with the built model,
    would hold more than ``limit`` bytes. ``command`` names the command in the refusal, ``path``
    locates it, and ``running`` estimates, from the float32 model, what the command holds once
    the model is built (a run on its inputs, a golden's sets): onnxruntime's values of the int8
    model are those of the float32 one or fewer (uint8 between its integer kernels), and the
    command estimates the int8 model itself again before it runs it."""

    limit: int
    command: str = "build"
    path: str | None = None
    running: Callable[[onnx.ModelProto], Estimate] | None = None

    def enforce(self, calibrating: Estimate, proto: onnx.ModelProto) -> None:
        """Refuse with the larger of ``calibrating`` and ``running(proto)`` when it exceeds the
        limit."""
        largest = calibrating
        if self.running is not None:
            after = self.running(proto)
            largest = after if after.total > calibrating.total else calibrating
        largest.enforce(self.limit, path=self.path)


def run_estimate(
    proto: onnx.ModelProto,
    inputs: Mapping[str, Sequence[int]] | None = None,
    *,
    batch: int = 1,
    command: str = "run",
    keeps_everything: bool = False,
    kept_sets: int = 0,
) -> Estimate:
    """A runtime's peak running ``proto`` on inputs of the given shapes by name (or random ones
    of ``batch``): the inputs, the values alive at the peak (every value, for a runtime that
    ``keeps_everything``, as ONNX's reference evaluator does), ``kept_sets`` more sets of inputs
    and outputs (a golden recording keeps each set it runs) and the weights."""
    graph = proto.graph
    bindings = _bindings(graph, inputs or {})
    given = sum(_bytes_of(info, bindings, batch) for info in _graph_inputs(graph))
    sizes = _value_sizes(proto, bindings, batch)
    values = sum(sizes.values()) if keeps_everything else _live_peak(graph, sizes)
    outputs = sum(sizes.get(info.name, 0) for info in graph.output)
    activations = given + int(values * RUNTIME_MARGIN) + kept_sets * (given + outputs)
    weights = WEIGHT_COPIES["run"] * _initializer_bytes(proto)
    return Estimate(command, activations, weights, _batch_of(graph, bindings, batch))


def reference_workspace(node: Node, batch: int) -> int:
    """The temporaries the NumPy reference makes while computing ``node``, beyond its output:

    * a convolution: a padded copy of its input and one tap's gathered inputs (about its input
      again), its products, the sum and the activation (three outputs); with few input
      channels (``reference._TAP_DEPTH``) every tap's inputs at once;
    * pooling and normalization: float64 copies, padded for pooling (six inputs' worth);
    * anything else: a copy of its inputs and two of its output."""
    from convc.reference import _FEW_CHANNELS, _TAP_DEPTH

    inputs = sum(_bytes(tensor.shape, batch) for tensor in node.inputs)
    output = _bytes(node.output.shape, batch)
    spec = node.spec
    if isinstance(spec, ConvSpec):
        taps = math.prod(spec.kernel_size)
        channels = _channels(node.input_shape, spec.data_format)
        gathered = 0
        if channels <= _FEW_CHANNELS and channels * taps <= _TAP_DEPTH:
            one_channel = output // _channels(node.output.shape, spec.data_format)
            gathered = channels * taps * one_channel
        return 2 * inputs + 3 * output + gathered
    if isinstance(spec, PoolSpec | GlobalPoolSpec | NormSpec | RMSNormSpec):
        return 6 * inputs + 2 * output
    return inputs + 2 * output


def live_peak(
    proto: onnx.ModelProto, bindings: Mapping[str, int] | None = None, batch: int = 1
) -> int:
    """The most bytes of values alive at once when ``proto``'s nodes run in order: a node's
    outputs are made while its inputs are alive; a value dies after the last node that reads it,
    a graph output never. Graph inputs and weights are not counted (their owners hold them)."""
    return _live_peak(proto.graph, _value_sizes(proto, bindings or {}, batch))


def _live_peak(graph: onnx.GraphProto, sizes: Mapping[str, int]) -> int:
    last_use: dict[str, int] = {}
    for index, node in enumerate(graph.node):
        for name in node.input:
            last_use[name] = index
    forever = len(graph.node)
    for output in graph.output:
        last_use[output.name] = forever
    dying: dict[int, list[str]] = {}
    for name, index in last_use.items():
        dying.setdefault(index, []).append(name)
    alive = peak = 0
    made: set[str] = set()
    for index, node in enumerate(graph.node):
        for name in node.output:
            if name and name not in made:
                made.add(name)
                alive += sizes.get(name, 0)
        peak = max(peak, alive)
        for name in node.output:  # made and never read
            if name and name not in last_use:
                alive -= sizes.get(name, 0)
        for name in dying.get(index, ()):
            if name in made:
                alive -= sizes.get(name, 0)
    return peak


def parameter_bytes(model: Model) -> int:
    return FLOAT32 * model.parameter_count


# -- shapes -----------------------------------------------------------------------------------


def _bytes(shape: Shape, batch: int) -> int:
    return FLOAT32 * math.prod(batch if d is None else d for d in shape)


def _channels(shape: Shape, data_format: str) -> int:
    dim = shape[1] if data_format == "channels_first" else shape[-1]
    return max(1, dim or 1)


def input_names(proto: onnx.ModelProto) -> list[str]:
    """The names of the inputs a caller feeds (the graph's inputs that are not weights)."""
    return [info.name for info in _graph_inputs(proto.graph)]


def _graph_inputs(graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
    weights = {tensor.name for tensor in graph.initializer}
    return [info for info in graph.input if info.name not in weights]


def _bindings(graph: onnx.GraphProto, inputs: Mapping[str, Sequence[int]]) -> dict[str, int]:
    """The sizes of the named (symbolic) dimensions of the graph's inputs, from the inputs'
    shapes."""
    bindings: dict[str, int] = {}
    for info in _graph_inputs(graph):
        shape = inputs.get(info.name)
        dims = info.type.tensor_type.shape.dim
        if shape is None or len(shape) != len(dims):
            continue
        for dim, size in zip(dims, shape, strict=True):
            if dim.dim_param and not dim.HasField("dim_value"):
                bindings.setdefault(dim.dim_param, int(size))
    return bindings


def _batch_of(graph: onnx.GraphProto, bindings: Mapping[str, int], batch: int) -> int:
    """The batch the inputs give: the first input's first dimension."""
    for info in _graph_inputs(graph):
        dims = info.type.tensor_type.shape.dim
        if dims:
            return _dim(dims[0], bindings, batch)
    return batch


def _dim(dim, bindings: Mapping[str, int], batch: int) -> int:
    if dim.HasField("dim_value"):
        return max(0, dim.dim_value)
    return bindings.get(dim.dim_param, batch) if dim.dim_param else batch


def _bytes_of(info: onnx.ValueInfoProto, bindings: Mapping[str, int], batch: int) -> int:
    """The bytes of a value whose type and shape are known; 0 for any other (a sequence, a map,
    a value shape inference could not follow)."""
    tensor = info.type.tensor_type
    if not info.type.HasField("tensor_type") or not tensor.HasField("shape"):
        return 0
    item = _item_bytes(tensor.elem_type)
    return item * math.prod(_dim(d, bindings, batch) for d in tensor.shape.dim)


def _item_bytes(elem_type: int) -> int:
    try:
        return max(1, onnx.helper.tensor_dtype_to_np_dtype(elem_type).itemsize)
    except (KeyError, ValueError, TypeError):
        return FLOAT32


def _value_sizes(proto: onnx.ModelProto, bindings: Mapping[str, int], batch: int) -> dict[str, int]:
    """The bytes of every value the graph's nodes make, by name (``_shaped_values``)."""
    graph = proto.graph
    weights = {tensor.name for tensor in graph.initializer}
    inputs = {info.name for info in graph.input}
    return {
        info.name: _bytes_of(info, bindings, batch)
        for info in _shaped_values(proto)
        if info.name not in weights and info.name not in inputs
    }


def _shaped_values(proto: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """The types and shapes of the values the graph's nodes make: its ``value_info`` and
    outputs when they name every one (convc's models do), else those ONNX's shape inference
    gives for the model without its weights (a value it cannot follow is not counted)."""
    from convc.onnxfile import skeleton

    graph = proto.graph
    infos = [*graph.value_info, *graph.output]
    known = {info.name for info in [*infos, *graph.input]}
    if all(name in known for node in graph.node for name in node.output if name):
        return infos
    try:
        inferred = onnx.shape_inference.infer_shapes(skeleton(proto)).graph
    except Exception:  # an invalid model: the runtime will say what is wrong with it
        return infos
    return [*inferred.value_info, *inferred.output]


def _initializer_bytes(proto: onnx.ModelProto) -> int:
    from convc.onnxfile import raw_data_bytes

    total = 0
    for tensor in proto.graph.initializer:
        external = {entry.key: entry.value for entry in tensor.external_data}
        if tensor.HasField("raw_data"):
            total += raw_data_bytes(tensor)
        elif external.get("length", "").isdigit():
            total += int(external["length"])
        else:
            total += _item_bytes(tensor.data_type) * math.prod(tensor.dims)
    return total


def model_graph(model: onnx.ModelProto | str | os.PathLike) -> onnx.ModelProto:
    """The model to estimate: ``model`` itself, or a file's model without its external data."""
    if isinstance(model, onnx.ModelProto):
        return model
    try:
        return onnx.load(os.fspath(model), load_external_data=False)
    except Exception as error:  # protobuf's and onnx's own exception types
        message = " ".join(str(error).split())[:300]
        raise ConvcError(f"cannot read the ONNX model: {message}", path=str(model)) from None


def input_batch(model: Model, inputs: Mapping[str, np.ndarray], default: int = 1) -> int:
    """The batch of the arrays given for ``model``'s inputs: the largest first dimension among
    those given for an input whose batch is dynamic (``default`` when none is)."""
    batches = []
    for model_input in model.inputs:
        array = inputs.get(model_input.name)
        shape = np.shape(array) if array is not None else ()
        if model_input.shape[0] is None and len(shape) == len(model_input.shape):
            batches.append(int(shape[0]))
    return max(batches, default=default)
