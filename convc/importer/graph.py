"""A Keras model config, flattened to one graph of layer applications.

Keras serializes a model as nested configs: a ``Functional`` model lists its layers, each with
the nodes (calls) that feed it; a ``Sequential`` lists a chain; either may appear as a layer of
another, and a layer (or a whole nested model) may be called several times. ``flatten`` walks
that structure as Keras's ``functional_from_config`` does and produces what convc's functional
syntax can say: model inputs, layers (each once, shared ones with several applications), the
applications in an order where every input exists before it is used, and the model's outputs.
Nested models disappear; their layers keep their Keras names (renamed only when two containers
use the same name) and remember where their weights are stored.

Both node formats are read: Keras 3's (``{"args": [...], "kwargs": {...}}`` with
``__keras_tensor__`` leaves) and Keras 2's (``[[layer, node, tensor, kwargs], ...]``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from convc.diagnostics import ConvcError
from convc.importer import generations
from convc.names import UniqueNames, snake_case

MODEL_CLASSES = ("Functional", "Model", "Sequential")
MAX_MODEL_NESTING = 16
"""Models inside models inside models: real nets nest two or three deep."""


@dataclass
class LayerEntry:
    """One Keras layer of the flattened model."""

    class_name: str
    name: str
    """Its name in the flattened model: the Keras name unless two containers both used it."""
    config: dict[str, Any]
    module: str | None
    keras_path: tuple[str, ...]
    """The Keras names of the containers it sits in, then its own: where its weights are."""
    weights_path: tuple[str, ...] = ()
    """The class-keyed path of its group in a Keras 3 weights file, e.g.
    ``("layers", "sequential", "layers", "conv2d")``."""
    applications: int = 0
    build_input_shape: Any = None
    """The input shape its ``build_config`` records (Keras 3, tf.keras 2.13+), raw JSON."""


@dataclass(frozen=True)
class TensorRef:
    """The output of one application: the ``index``-th application of the layer named ``layer``.
    Two refs are the same tensor when both parts are equal: no name built from a file's strings
    can collide with another (a layer named ``s#1`` is not ``s``'s second output)."""

    layer: str
    index: int = 0

    @property
    def name(self) -> str:
        """How the tensor is shown: the layer's name, ``#N`` after it for later applications."""
        return self.layer if self.index == 0 else f"{self.layer}#{self.index}"


@dataclass
class Application:
    layer: LayerEntry
    args: list[Any]
    """Keras's call arguments with ``TensorRef`` leaves: ``[x]`` for one input, ``[[a, b]]``
    for a merge, ``[x, 3.0]`` for an operation on a tensor and a constant."""
    kwargs: dict[str, Any]
    output: TensorRef


@dataclass
class InputEntry:
    name: str
    config: dict[str, Any]
    output: TensorRef

    @property
    def batch_shape(self) -> list | None:
        """The input's shape, batch first (Keras 2 calls it ``batch_input_shape``); None when
        the config does not say it."""
        shape = self.config.get("batch_shape", self.config.get("batch_input_shape"))
        return shape if isinstance(shape, list) and shape else None


@dataclass
class Graph:
    name: str | None
    inputs: list[InputEntry] = field(default_factory=list)
    layers: list[LayerEntry] = field(default_factory=list)
    applications: list[Application] = field(default_factory=list)
    outputs: Any = None
    """A ``TensorRef``, or a list or dict of them, as the model's ``output_layers`` say."""
    sequential: bool = False
    """The top level is a Sequential model without nested models: write it as a chain."""
    ranks: dict[TensorRef, int] = field(default_factory=dict)
    """Tensor ranks, batch included, where the file records them (Keras 3's node format)."""
    shapes: dict[TensorRef, list] = field(default_factory=dict)
    """Tensor shapes, batch first, as the file records them (Keras 3's node format): raw JSON
    lists, checked by whoever reads them."""


def flatten(model_config: dict[str, Any], where: str) -> Graph:
    flattener = _Flattener(where)
    return flattener.run(model_config)


class _Flattener:
    def __init__(self, where: str):
        self.where = where
        self.graph: Graph = Graph(None)
        self.names = UniqueNames()
        self.tensor_counts: dict[str, int] = {}

    def error(self, message: str, help: str | None = None) -> ConvcError:
        return ConvcError(message, help=help, path=self.where)

    def run(self, model_config: dict[str, Any]) -> Graph:
        class_name = model_config.get("class_name")
        config = generations.model_config(class_name, model_config.get("config"))
        if class_name not in MODEL_CLASSES or not isinstance(config, dict):
            raise self.error(
                f"the file holds a {class_name!r}, not a Sequential or Functional model",
                help="convc imports models saved with model.save(); subclassed models (a "
                "Python class with a call method) cannot be read without running their code",
            )
        self.graph.name = config.get("name") if isinstance(config.get("name"), str) else None
        outputs = self.model(class_name, config, None, (), (), 0)
        self.graph.outputs = outputs
        self.graph.sequential = class_name == "Sequential" and not any(
            layer.get("class_name") in MODEL_CLASSES for layer in _layer_list(config)
        )
        return self.graph

    # --- containers -------------------------------------------------------------------------

    def model(
        self,
        class_name: str,
        config: dict[str, Any],
        inputs: list[TensorRef] | None,
        keras_path: tuple[str, ...],
        weights_path: tuple[str, ...],
        depth: int,
    ) -> Any:
        """Add the model's layers to the graph, fed by ``inputs`` (``None`` at the top level, where
        its InputLayers become the graph's inputs); return its outputs."""
        if depth > MAX_MODEL_NESTING:
            raise self.error(
                f"models nest more than {MAX_MODEL_NESTING} deep",
                help="a real network nests models two or three deep",
            )
        if class_name == "Sequential":
            return self.sequential(config, inputs, keras_path, weights_path, depth)
        return self.functional(config, inputs, keras_path, weights_path, depth)

    def sequential(self, config, inputs, keras_path, weights_path, depth) -> TensorRef:
        layers = _layer_list(config)
        if not layers:
            raise self.error(f"the Sequential model {_label(keras_path)} has no layers")
        keys = _KeyCounter()
        current: TensorRef | None = inputs[0] if inputs else None
        for layer_config in layers:
            class_name, layer_cfg = self.layer_header(layer_config, keras_path)
            if class_name == "InputLayer":
                if current is None:
                    current = self.add_input(layer_cfg, layer_config).output
                continue
            if current is None:  # a Keras 2 Sequential: the first layer declares the input
                current = self.implicit_input(config, layer_cfg, keras_path)
            key = keys.key(class_name)
            current = self.apply_layer(
                class_name,
                layer_cfg,
                layer_config,
                [current],
                {},
                keras_path,
                weights_path + ("layers", key),
                depth,
                node_index=0,
            )
        assert current is not None
        return current

    def implicit_input(self, config, layer_cfg, keras_path) -> TensorRef:
        shape = None
        for key in ("batch_input_shape", "batch_shape"):
            if isinstance(layer_cfg.get(key), list):
                shape = layer_cfg[key]
        if shape is None and isinstance(config.get("build_input_shape"), list):
            shape = config["build_input_shape"]
        if shape is None:
            raise self.error(
                f"the Sequential model {_label(keras_path)} does not say its input shape",
                help="the model was saved before it was built; build it (call it once, or give "
                "it an Input) and save it again",
            )
        input_config = {"batch_shape": shape, "name": "input_layer"}
        dtype = layer_cfg.get("dtype")
        if isinstance(dtype, str):
            input_config["dtype"] = dtype
        return self.add_input(input_config, {}).output

    def functional(self, config, inputs, keras_path, weights_path, depth) -> Any:
        layers = _layer_list(config)
        produced: dict[tuple[str, int], list[TensorRef]] = {}
        by_name: dict[str, dict] = {}
        keys = _KeyCounter()
        paths: dict[str, tuple[str, ...]] = {}
        names: dict[int, str] = {}  # id of a layer's config -> its name
        for layer_config in layers:
            if not isinstance(layer_config, dict):
                raise self.error(
                    f"a layer of {_label(keras_path)} is not a JSON object: {_short(layer_config)}"
                )
            name = layer_config.get("name") or _dict(layer_config.get("config")).get("name")
            if not isinstance(name, str):
                raise self.error(f"a layer of {_label(keras_path)} has no name")
            names[id(layer_config)] = name
            if name in by_name:
                raise self.error(f"two layers of {_label(keras_path)} are named {name!r}")
            by_name[name] = layer_config
            class_name = layer_config.get("class_name")
            key = keys.key("input_layer" if class_name == "InputLayer" else str(class_name))
            paths[name] = weights_path + ("layers", key)
        input_names = _history_names(config.get("input_layers"))
        if inputs is None:
            for layer_config in layers:
                if layer_config.get("class_name") == "InputLayer":
                    class_name, layer_cfg = self.layer_header(layer_config, keras_path)
                    entry = self.add_input(layer_cfg, layer_config)
                    produced[(names[id(layer_config)], 0)] = [entry.output]
        else:
            if len(input_names) != len(inputs):
                raise self.error(
                    f"the model {_label(keras_path)} takes {len(input_names)} inputs but is "
                    f"called on {len(inputs)}"
                )
            for name, tensor in zip(input_names, inputs, strict=True):
                produced[(name, 0)] = [tensor]
        pending: list[tuple[str, int, Any]] = []
        for layer_config in layers:
            if layer_config.get("class_name") == "InputLayer":
                continue
            name = names[id(layer_config)]
            nodes = layer_config.get("inbound_nodes")
            if not isinstance(nodes, list):
                raise self.error(f"layer {name!r} of {_label(keras_path)} has no inbound_nodes")
            pending.extend((name, index, node) for index, node in enumerate(nodes))
        # Keras's order: sweep the layer list, calling every node whose inputs exist, until done.
        while pending:
            remaining: list[tuple[str, int, Any]] = []
            progressed = False
            for name, index, node in pending:
                earlier = any(n == name and i < index for n, i, _ in remaining)
                resolved = None if earlier else self.node_inputs(node, produced, keras_path)
                if resolved is None:
                    remaining.append((name, index, node))
                    continue
                args, kwargs = resolved
                layer_config = by_name[name]
                class_name, layer_cfg = self.layer_header(layer_config, keras_path)
                outputs = self.apply_layer(
                    class_name,
                    layer_cfg,
                    layer_config,
                    args,
                    kwargs,
                    keras_path,
                    paths[name],
                    depth,
                    node_index=index,
                )
                produced[(name, index)] = outputs if isinstance(outputs, list) else [outputs]
                progressed = True
            if not progressed:
                stuck = sorted({name for name, _, _ in remaining})
                raise self.error(
                    f"the graph of {_label(keras_path)} has a loop or a layer fed by a tensor "
                    "that no layer makes: " + ", ".join(stuck[:10])
                )
            pending = remaining
        return self.map_outputs(config.get("output_layers"), produced, keras_path)

    # --- layers and nodes -------------------------------------------------------------------

    def layer_header(self, layer_config: Any, keras_path) -> tuple[str, dict]:
        if not isinstance(layer_config, dict):
            raise self.error(f"a layer of {_label(keras_path)} is not a JSON object")
        class_name = layer_config.get("class_name")
        config = generations.model_config(class_name, layer_config.get("config"))
        if not isinstance(class_name, str) or not isinstance(config, dict):
            raise self.error(
                f"a layer of {_label(keras_path)} has no class_name or config: "
                + _short(layer_config)
            )
        return class_name, generations.layer_config(class_name, config)

    def add_input(self, config: dict, layer_config: dict) -> InputEntry:
        name = config.get("name") or layer_config.get("name") or "input_layer"
        name = self.names.unique(str(name))
        entry = InputEntry(name, config, self.new_tensor(name))
        self.graph.inputs.append(entry)
        return entry

    def apply_layer(
        self,
        class_name: str,
        config: dict,
        layer_config: dict,
        args: list,
        kwargs: dict,
        keras_path: tuple[str, ...],
        weights_path: tuple[str, ...],
        depth: int,
        node_index: int,
    ) -> Any:
        keras_name = config.get("name") or layer_config.get("name")
        if not isinstance(keras_name, str):
            raise self.error(f"a {class_name} layer of {_label(keras_path)} has no name")
        own_path = keras_path + (keras_name,)
        if class_name in MODEL_CLASSES:
            inputs = _flat_tensors(args)
            return self.model(class_name, config, inputs, own_path, weights_path, depth + 1)
        entry = self.entry(class_name, config, layer_config, own_path, weights_path)
        entry.applications += 1
        output = self.new_tensor(entry.name)
        self.graph.applications.append(Application(entry, args, kwargs, output))
        return output

    def entry(self, class_name, config, layer_config, keras_path, weights_path) -> LayerEntry:
        for existing in self.graph.layers:
            if existing.keras_path == keras_path:
                return existing
        name = self.names.unique(keras_path[-1])
        module = layer_config.get("module")
        entry = LayerEntry(
            class_name,
            name,
            config,
            module if isinstance(module, str) else None,
            keras_path,
            weights_path,
            build_input_shape=_dict(layer_config.get("build_config")).get("input_shape"),
        )
        self.graph.layers.append(entry)
        return entry

    def node_inputs(self, node: Any, produced, keras_path) -> tuple[list, dict] | None:
        """The node's arguments with tensors resolved, or ``None`` if one does not exist yet."""
        if isinstance(node, list):  # Keras 2: [[layer, node, tensor, kwargs], ...]
            tensors = []
            kwargs: dict = {}
            for item in node:
                if not isinstance(item, list) or len(item) not in (3, 4):
                    raise self.error(
                        f"an inbound node in {_label(keras_path)} is malformed: " + _short(item)
                    )
                ref = self.lookup(item[:3], produced, keras_path)
                if ref is None:
                    return None
                tensors.append(ref)
                if len(item) == 4 and isinstance(item[3], dict):
                    kwargs.update(item[3])
            return ([tensors[0]] if len(tensors) == 1 else [tensors]), kwargs
        if not isinstance(node, dict):
            raise self.error(
                f"an inbound node in {_label(keras_path)} is malformed: {_short(node)}"
            )
        missing = False

        def resolve(value: Any, depth: int = 0) -> Any:
            nonlocal missing
            if depth > 8:
                raise self.error(f"an inbound node in {_label(keras_path)} nests too deep")
            if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
                history = _dict(value.get("config")).get("keras_history")
                ref = self.lookup(history, produced, keras_path)
                shape = _dict(value.get("config")).get("shape")
                if ref is None:
                    missing = True
                elif isinstance(shape, list):
                    self.graph.ranks[ref] = len(shape)
                    self.graph.shapes[ref] = shape
                return ref
            if isinstance(value, list):
                return [resolve(item, depth + 1) for item in value]
            if isinstance(value, dict):
                return {key: resolve(item, depth + 1) for key, item in value.items()}
            return value

        args = resolve(node.get("args", []))
        kwargs = resolve(node.get("kwargs", {}))
        if missing:
            return None
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise self.error(
                f"an inbound node in {_label(keras_path)} is malformed: {_short(node)}"
            )
        return args, kwargs

    def lookup(self, history: Any, produced, keras_path) -> TensorRef | None:
        if (
            not isinstance(history, list)
            or len(history) != 3
            or not isinstance(history[0], str)
            or not all(isinstance(i, int) and not isinstance(i, bool) for i in history[1:])
        ):
            raise self.error(
                f"a tensor reference in {_label(keras_path)} is malformed: {_short(history)}"
            )
        name, node_index, tensor_index = history
        outputs = produced.get((name, node_index))
        if outputs is None:
            return None
        if not 0 <= tensor_index < len(outputs):
            raise self.error(
                f"{name!r} in {_label(keras_path)} has no output {tensor_index} "
                f"at node {node_index}"
            )
        return outputs[tensor_index]

    def map_outputs(self, spec: Any, produced, keras_path) -> Any:
        def one(history) -> TensorRef:
            ref = self.lookup(history, produced, keras_path)
            if ref is None:
                raise self.error(
                    f"an output of {_label(keras_path)} names {_short(history)}, which no layer "
                    "makes"
                )
            return ref

        if _is_history(spec):
            return one(spec)
        if isinstance(spec, list) and spec and all(_is_history(item) for item in spec):
            return [one(item) for item in spec]
        if isinstance(spec, dict) and spec:
            return {
                str(key): self.map_outputs(value, produced, keras_path)
                for key, value in spec.items()
            }
        raise self.error(f"the outputs of {_label(keras_path)} are malformed: {_short(spec)}")

    # --- names ------------------------------------------------------------------------------

    def new_tensor(self, layer_name: str) -> TensorRef:
        count = self.tensor_counts.get(layer_name, 0)
        self.tensor_counts[layer_name] = count + 1
        return TensorRef(layer_name, count)


class _KeyCounter:
    """Keras 3 weights files key each layer by its class in snake case, numbered in order."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def key(self, class_name: str) -> str:
        base = snake_case(class_name) if class_name != "input_layer" else class_name
        count = self.counts.get(base, 0)
        self.counts[base] = count + 1
        return base if count == 0 else f"{base}_{count}"


def _dict(value: Any) -> dict:
    """``value`` if it is a JSON object, else an empty one: a malformed config reads as absent."""
    return value if isinstance(value, dict) else {}


def _layer_list(config: dict) -> list:
    layers = config.get("layers")
    return layers if isinstance(layers, list) else []


def _history_names(spec: Any) -> list[str]:
    """The layer names of a model's ``input_layers``, in order."""
    if _is_history(spec):
        return [spec[0]]
    if isinstance(spec, list):
        return [name for item in spec for name in _history_names(item)]
    if isinstance(spec, dict):
        return [name for item in spec.values() for name in _history_names(item)]
    return []


def _is_history(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 3
        and isinstance(value[0], str)
        and all(isinstance(i, int) for i in value[1:])
    )


def _flat_tensors(args: Any) -> list[TensorRef]:
    if isinstance(args, TensorRef):
        return [args]
    if isinstance(args, list | tuple):
        return [t for item in args for t in _flat_tensors(item)]
    if isinstance(args, dict):
        return [t for item in args.values() for t in _flat_tensors(item)]
    return []


def _label(keras_path: tuple[str, ...]) -> str:
    return "the model" if not keras_path else "model " + repr("/".join(keras_path))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."
