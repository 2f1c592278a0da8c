"""A Keras model config, flattened to one graph of layer applications.

Keras serializes a model as nested configs: a ``Functional`` model lists its layers, each with
the nodes (calls) that feed it; a ``Sequential`` lists a chain; either may appear as a layer of
another, and a layer (or a whole nested model) may be called several times. ``flatten`` produces
what convc's functional syntax can say: model inputs, layers (each once, shared ones with several
applications), the applications in an order where every input exists before it is used, and the
model's outputs. Nested models disappear; their layers keep their Keras names (renamed only when
two containers use the same name) and remember where their weights are stored.

It works in three steps, so that time is bounded by the config's size and the flattened graph's:

1. **Compile** each container (model) once: its members, each listed call's arguments as a
   template whose tensors are references to numbered calls, and the order in which Keras's
   ``functional_from_config`` makes the calls (``call_order``: each sweep visits the layers in
   config order and makes every call whose inputs exist; computed in n log n, not by rescanning).
2. **Count** the calls the flattened model would make, nested models' calls multiplied by the
   calls of the models that call them, and refuse past ``MAX_LAYERS`` before expanding anything:
   16 nested models that each call the next 4 times are 14 KB of JSON and 4**16 calls.
3. **Expand** from the top: each call of a nested model instantiates its compiled container.

Node references are numbered as the writer numbered them (the file format is the spec):

* Keras 3 (``{"args": [...], "kwargs": {...}}`` nodes with ``__keras_tensor__`` leaves): a
  tensor's ``keras_history`` numbers a layer's calls from 0, in the order its config lists them;
  ``input_layers``/``output_layers`` number a nested ``Functional``'s calls from 1 (Keras 3's
  ``Functional.get_config`` counts a built-in node that the loader subtracts again).
* Keras 2 / tf.keras (``[[layer, node, tensor, kwargs], ...]`` nodes): a nested model "that starts
  with a node linking its input to its output" (a Functional, or a Sequential that knows its input)
  numbers its calls from 1, everywhere (tf_keras ``_should_skip_first_node``); other layers from
  0; an InputLayer's output is its node 0 whatever index names it (tf_keras ``get_node_index``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from convc.diagnostics import ConvcError
from convc.importer import generations
from convc.limits import MAX_LAYERS
from convc.names import UniqueNames, snake_case

MODEL_CLASSES = ("Functional", "Model", "Sequential")
MAX_MODEL_NESTING = 16
"""Models inside models inside models: real nets nest two or three deep."""

MAX_CALL_ARGUMENTS = 10 * MAX_LAYERS
"""Tensor arguments (and the lists and dicts that hold them) of all calls of the flattened model:
a real model has one to three per call."""

MAX_NODE_NESTING = 8
"""Lists and dicts inside one call's arguments: Keras writes two or three levels."""

_CONSTANT_VALUE = "_CONSTANT_VALUE"
"""tf.keras's mark of a constant (not a tensor) in a call's first argument."""


@dataclass(slots=True)
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
    position: tuple[int, ...] = ()
    """Its place in the config: the index, in each container's list of layers, of the nested model
    that holds it, then its own. Sorting by it gives the depth-first order of Keras's
    ``model.layers``, which orders a nested model's weights in a Keras 2 ``.h5``."""
    containers_trainable: tuple[bool, ...] = ()
    """For each container in ``keras_path[:-1]``, whether its config says it is trainable."""
    build_input_shape: Any = None
    """The input shape its ``build_config`` records (Keras 3, tf.keras 2.13+), raw JSON."""


@dataclass(frozen=True, slots=True)
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


@dataclass(slots=True)
class Application:
    layer: LayerEntry
    args: list[Any]
    """Keras's call arguments with ``TensorRef`` leaves: ``[x]`` for one input, ``[[a, b]]``
    for a merge, ``[x, 3.0]`` for an operation on a tensor and a constant."""
    kwargs: dict[str, Any]
    output: TensorRef


@dataclass(slots=True)
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


@dataclass(slots=True)
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
    return _Flattener(where).run(model_config)


# --- the compiled form of a container --------------------------------------------------------


@dataclass(slots=True, eq=False)  # not frozen: a frozen __init__ is twice as slow, per tensor
class _Slot:
    """A tensor a container's config names: output ``tensor`` of call ``node`` of the container
    (``_Member.node``), a call of member ``member``."""

    member: str
    node: int
    tensor: int
    shape: list | None = None
    """The tensor's shape where the reference records it (Keras 3's node format)."""


class _TList(list):
    """A list of a template that holds tensors (rebuilt for each call of the container)."""


class _TDict(dict):
    """A dict of a template that holds tensors (rebuilt for each call of the container)."""


@dataclass(slots=True, eq=False)
class _Call:
    """One call of a member, as its container's config lists it."""

    args: Any
    kwargs: Any
    slots: list[_Slot]
    cost: int
    """Slots and the sizes of the lists and dicts that hold them: the work of instantiating it."""


_CHAINED = _Call(_TList(), {}, [], 2)
"""A Sequential member's call: on the output of the member before it."""


@dataclass(slots=True, eq=False)
class _Member:
    """A layer or nested model of a container."""

    name: str
    """How the container's references name it (a Sequential's members: their position)."""
    position: tuple[int, ...]
    """``LayerEntry.position``."""
    containers_trainable: tuple[bool, ...]
    layer_config: dict[str, Any]
    class_name: str
    config: dict[str, Any]
    keras_path: tuple[str, ...]
    weights_path: tuple[str, ...]
    listed: int = 0
    """How many calls its container lists."""
    node: int = 0
    """The number of its first listed call among its container's calls (an InputLayer's: of its
    output). A functional container numbers its members' listed calls in the order of its
    layers, then its InputLayers: a tensor is looked up by number, not by name and call."""
    calls: list[_Call] = field(default_factory=list)
    model: _Container | None = None
    entry: LayerEntry | None = None

    @property
    def is_input(self) -> bool:
        return self.class_name == "InputLayer"


@dataclass(slots=True, eq=False)
class _Container:
    """A model's config, compiled: what one call of it does."""

    class_name: str
    keras_path: tuple[str, ...]
    position: tuple[int, ...]
    trainable: tuple[bool, ...]
    """Whether each container from the outermost nested one down to this one is trainable."""
    members: list[_Member] = field(default_factory=list)
    inputs: list[_Member] = field(default_factory=list)
    """Its InputLayers, in the order of ``input_layers`` (a Sequential's first InputLayer)."""
    steps: list[tuple[_Member, int]] = field(default_factory=list)
    """(member, listed call) in the order Keras makes the calls."""
    nodes: int = 0
    """How many calls and InputLayers a functional container numbers (``_Member.node``)."""
    outputs: Any = None
    implicit_shape: Any = None
    """A Sequential without an InputLayer: the input shape its first layer or config declares."""
    calls: int = 0
    """Calls of layers and nested models that one call of it makes, nested ones included."""
    arguments: int = 0
    """The work of instantiating those calls' arguments (``_Call.cost``), nested ones included."""

    @property
    def sequential(self) -> bool:
        return self.class_name == "Sequential"


class _Flattener:
    def __init__(self, where: str):
        self.where = where
        self.graph: Graph = Graph(None)
        self.names = UniqueNames()
        self.snake_cases: dict[str, str] = {}

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
        top = self.compile(_Container(class_name, (), (), ()), config, (), 0)
        self.check_size(top)
        self.graph.outputs = self.expand(top, None)
        self.graph.sequential = top.sequential and not any(m.model for m in top.members)
        return self.graph

    # --- compiling containers ---------------------------------------------------------------

    def compile(self, container: _Container, config: dict, weights_path, depth: int):
        if depth > MAX_MODEL_NESTING:
            raise self.error(
                f"models nest more than {MAX_MODEL_NESTING} deep",
                help="a real network nests models two or three deep",
            )
        if container.sequential:
            self.compile_sequential(container, config, weights_path, depth)
        else:
            self.compile_functional(container, config, weights_path, depth)
        calls = arguments = 0
        for member, index in container.steps:
            calls += 1
            arguments += member.calls[index].cost
            if member.model is not None:
                calls += member.model.calls
                arguments += member.model.arguments
        container.calls, container.arguments = calls, arguments
        return container

    def member(
        self,
        container: _Container,
        name: str,
        position: int,
        layer_config: dict,
        weights_path: tuple[str, ...],
        header: tuple[str, dict] | None = None,
    ) -> _Member:
        class_name, config = header or self.layer_header(layer_config, container.keras_path)
        keras_name = config.get("name") or layer_config.get("name")
        if class_name != "InputLayer" and not isinstance(keras_name, str):
            raise self.error(f"a {class_name} layer of {_label(container.keras_path)} has no name")
        return _Member(
            name,
            container.position + (position,),
            container.trainable,
            layer_config,
            class_name,
            config,
            container.keras_path + (keras_name if isinstance(keras_name, str) else name,),
            weights_path,
        )

    def nested(self, member: _Member, depth: int) -> None:
        """Compile the member's own container: it is a nested model."""
        trainable = member.config.get("trainable", member.layer_config.get("trainable", True))
        container = _Container(
            member.class_name,
            member.keras_path,
            member.position,
            member.containers_trainable + (trainable is not False,),
        )
        member.model = self.compile(container, member.config, member.weights_path, depth + 1)

    def compile_sequential(self, container: _Container, config: dict, weights_path, depth: int):
        layers = _layer_list(config)
        if not layers:
            raise self.error(f"the Sequential model {_label(container.keras_path)} has no layers")
        keys = _KeyCounter(self.snake_cases)
        for position, layer_config in enumerate(layers):
            header = self.layer_header(layer_config, container.keras_path)
            class_name, layer_cfg = header
            if class_name == "InputLayer":  # the input, if it comes before every layer
                if not container.members and not container.inputs:
                    member = self.member(container, "#input", position, layer_config, (), header)
                    container.inputs.append(member)
                continue
            if not container.members:
                container.implicit_shape = _declared_shape(config, layer_cfg)
            path = weights_path + ("layers", keys.key(class_name))
            # a Sequential's members are called in turn: no reference names them
            member = self.member(container, f"#{position}", position, layer_config, path, header)
            member.listed = 1
            member.calls.append(_CHAINED)
            if class_name in MODEL_CLASSES:
                self.nested(member, depth)
            container.members.append(member)
            container.steps.append((member, 0))

    def compile_functional(self, container: _Container, config: dict, weights_path, depth: int):
        label = _label(container.keras_path)
        by_name: dict[str, _Member] = {}
        keys = _KeyCounter(self.snake_cases)
        listed = 0  # the calls of the members so far
        input_members = []
        # whether each node of every member (an InputLayer's too) is written as Keras 3 writes it
        keras3: set[bool] = set()
        for position, layer_config in enumerate(_layer_list(config)):
            if not isinstance(layer_config, dict):
                raise self.error(f"a layer of {label} is not a JSON object: {_short(layer_config)}")
            name = _member_name(layer_config)
            if name is None:
                raise self.error(f"a layer of {label} has no name")
            if name in by_name:
                raise self.error(f"two layers of {label} are named {name!r}")
            class_name = layer_config.get("class_name")
            key = keys.key("input_layer" if class_name == "InputLayer" else str(class_name))
            member = self.member(
                container, name, position, layer_config, weights_path + ("layers", key)
            )
            nodes = layer_config.get("inbound_nodes")
            if isinstance(nodes, list):
                keras3.update(map(_is_keras3_node, nodes))
            if member.is_input:
                input_members.append(member)
            else:
                if not isinstance(nodes, list):
                    raise self.error(f"layer {name!r} of {label} has no inbound_nodes")
                member.listed = len(nodes)
                member.node = listed
                listed += member.listed
            by_name[name] = member
            container.members.append(member)
        for number, member in enumerate(input_members, listed):
            member.node = number
        container.nodes = listed + len(input_members)
        style = self.node_style(keras3, label)
        for member in container.members:
            if not member.is_input:
                refer = _Refer(self, style, by_name, label, member.name)
                for node in member.layer_config["inbound_nodes"]:
                    member.calls.append(self.parse_call(node, style, refer, label))
            if member.class_name in MODEL_CLASSES:
                self.nested(member, depth)
        container.inputs = self.functional_inputs(config, by_name, container)
        container.steps = self.call_order(container)
        refer = _Refer(self, style, by_name, label, None)
        container.outputs = self.outputs_template(config.get("output_layers"), refer, label)

    def node_style(self, keras3: set[bool], label: str) -> str:
        """``keras3`` or ``keras2``: how the container's nodes are written (which says how
        they number calls), given whether each node is written as Keras 3 writes them."""
        if len(keras3) > 1:
            raise self.error(
                f"the layers of {label} mix Keras 3 nodes ({{'args': ...}}) and Keras 2 nodes "
                "([[layer, node, tensor, kwargs]]); no Keras writes both"
            )
        return "keras2" if keras3 == {False} else "keras3"

    def functional_inputs(self, config: dict, by_name, container: _Container) -> list[_Member]:
        inputs: dict[str, _Member] = {}
        for name in _history_names(config.get("input_layers")):
            member = by_name.get(name)
            if member is None or not member.is_input:
                raise self.error(
                    f"the inputs of {_label(container.keras_path)} name {name!r}, which is not "
                    "an InputLayer of it"
                )
            inputs.setdefault(name, member)
        if not container.keras_path:  # the top level: every InputLayer is a graph input
            for member in container.members:
                if member.is_input:
                    inputs.setdefault(member.name, member)
        return list(inputs.values())

    def call_order(self, container: _Container) -> list[tuple[_Member, int]]:
        """The calls in the order Keras's loader makes them: it sweeps the layers in config order,
        making each layer's listed calls in turn until one lacks an input, and sweeps again
        until every call is made. A call's sweep follows from its inputs' sweeps (one more when
        the input's layer comes later in the list than its own), so the order is found in one
        topological pass and a sort, not by sweeping (quadratic or worse for shared layers).
        When every call reads only calls listed before it (as Keras writes a model), the first
        sweep makes them all, in the listed order."""
        owner: list[tuple[_Member, int]] = []  # (member, listed call) of each call by number
        for member in container.members:
            if not member.is_input:
                for index in range(member.listed):
                    owner.append((member, index))
        calls = len(owner)  # the InputLayers' numbers follow
        if self.in_listed_order(owner):
            return owner
        sources_of: list[list[int]] = []
        dependents: list[list[int]] = [[] for _ in owner]
        waiting = [0] * len(owner)
        for node, (member, index) in enumerate(owner):
            sources = {slot.node for slot in member.calls[index].slots if slot.node < calls}
            sources_of.append(list(sources))
            if index:  # a layer's calls are made in the order listed
                sources.add(node - 1)
            waiting[node] = len(sources)
            for source in sources:
                dependents[source].append(node)
        ready = [node for node, count in enumerate(waiting) if count == 0]
        order = []
        while ready:
            node = ready.pop()
            order.append(node)
            for dependent in dependents[node]:
                waiting[dependent] -= 1
                if waiting[dependent] == 0:
                    ready.append(dependent)
        if len(order) < len(owner):
            stuck = sorted({owner[node][0].name for node, count in enumerate(waiting) if count})
            raise self.error(
                f"the graph of {_label(container.keras_path)} has a loop or a layer fed by a "
                "tensor that no layer makes: " + ", ".join(stuck[:10])
            )
        sweep = [0] * len(owner)
        for node in order:
            member, index = owner[node]
            value = sweep[node - 1] if index else 0
            for source in sources_of[node]:
                later = owner[source][0].position > member.position
                value = max(value, sweep[source] + later)
            sweep[node] = value
        ranked = sorted(range(len(owner)), key=lambda n: (sweep[n], owner[n][0].position, n))
        return [owner[node] for node in ranked]

    @staticmethod
    def in_listed_order(owner: list[tuple[_Member, int]]) -> bool:
        """Whether every call reads only calls listed before it (or InputLayers, numbered after
        every call: ``owner`` has the (member, listed call) of each call by number)."""
        calls = len(owner)
        for node, (member, index) in enumerate(owner):
            for slot in member.calls[index].slots:
                if node <= slot.node < calls:
                    return False
        return True

    # --- calls --------------------------------------------------------------------------------

    def parse_call(self, node: Any, style: str, refer: _Refer, label: str) -> _Call:
        slots: list[_Slot] = []
        work = [1]
        if style == "keras3":
            args = node.get("args", [])
            kwargs = node.get("kwargs", {})
            # an empty or scalar part has no tensor: its template is itself
            if args:
                args = self.keras3_template(args, refer, slots, work, label, 0)
            if kwargs:
                kwargs = self.keras3_template(kwargs, refer, slots, work, label, 0)
            if not isinstance(args, list) or not isinstance(kwargs, dict):
                raise self.error(f"an inbound node in {label} is malformed: {_short(node)}")
            return _Call(args, kwargs, slots, work[0])
        leaves: list = []
        shared: dict = {}
        structure = self.keras2_template(node, refer, slots, leaves, shared, work, label, 0)
        if not isinstance(structure, dict) and len(leaves) == 1:
            structure = leaves[0]  # one tensor is passed as itself (unnest_if_single_tensor)
        return _Call(_TList([structure]), shared, slots, work[0])

    def keras3_template(self, value, refer, slots, work, label: str, depth: int) -> Any:
        """Keras 3's arguments, ``__keras_tensor__`` leaves made slots. A part that holds no
        tensor is kept as the file's own value, shared by every call, never copied."""
        if depth > MAX_NODE_NESTING:
            raise self.error(f"an inbound node in {label} nests too deep")
        # a part holds a tensor when its items added a slot
        before = len(slots)
        if isinstance(value, list):
            items = [self.keras3_template(v, refer, slots, work, label, depth + 1) for v in value]
            if len(slots) > before:
                work[0] += len(items)
                return _TList(items)
        elif isinstance(value, dict) and value:
            if value.get("class_name") == "__keras_tensor__":
                tensor = _dict(value.get("config"))
                shape = tensor.get("shape")
                slot = refer.slot(tensor.get("keras_history"), shape if _is_list(shape) else None)
                slots.append(slot)
                work[0] += 1
                return slot
            entries = {
                k: self.keras3_template(v, refer, slots, work, label, depth + 1)
                for k, v in value.items()
            }
            if len(slots) > before:
                work[0] += len(entries)
                return _TDict(entries)
        return value

    def keras2_template(self, value, refer, slots, leaves, kwargs, work, label, depth) -> Any:
        """A tf.keras node: a structure (a list, usually) of ``[layer, node, tensor, kwargs]``
        leaves, or ``[_CONSTANT_VALUE, -1, value, kwargs]`` for a constant argument."""
        if depth > MAX_NODE_NESTING:
            raise self.error(f"an inbound node in {label} nests too deep")
        if _is_list(value) and len(value) in (3, 4) and isinstance(value[0], str):
            if len(value) == 4:
                if not isinstance(value[3], dict):
                    raise self.error(f"an inbound node in {label} is malformed: {_short(value)}")
                kwargs.update(value[3])  # tf.keras writes the call's kwargs on every leaf
            if value[0] == _CONSTANT_VALUE and value[1] == -1:
                leaves.append(value[2])
                return value[2]
            slot = refer.slot(value[:3], None)
            slots.append(slot)
            leaves.append(slot)
            work[0] += 1
            return slot
        if isinstance(value, list) and value:
            work[0] += len(value)
            return _TList(
                self.keras2_template(v, refer, slots, leaves, kwargs, work, label, depth + 1)
                for v in value
            )
        if isinstance(value, dict) and value:
            work[0] += len(value)
            return _TDict(
                (k, self.keras2_template(v, refer, slots, leaves, kwargs, work, label, depth + 1))
                for k, v in value.items()
            )
        raise self.error(f"an inbound node in {label} is malformed: {_short(value)}")

    def outputs_template(self, spec: Any, refer: _Refer, label: str) -> Any:
        if _is_history(spec):
            return refer.slot(spec, None)
        if isinstance(spec, list) and spec and all(_is_history(item) for item in spec):
            return _TList(refer.slot(item, None) for item in spec)
        if isinstance(spec, dict) and spec:
            return _TDict((str(k), self.outputs_template(v, refer, label)) for k, v in spec.items())
        raise self.error(f"the outputs of {label} are malformed: {_short(spec)}")

    def check_size(self, top: _Container) -> None:
        """Refuse a model whose flattened graph would be too large, before expanding it."""
        if top.calls > MAX_LAYERS:
            raise self.error(
                f"flattened, the model makes {top.calls:,} calls of layers and nested models; "
                f"convc reads at most {MAX_LAYERS:,}",
                help=_multipliers(top),
            )
        if top.arguments > MAX_CALL_ARGUMENTS:
            raise self.error(
                f"flattened, the model's calls take {top.arguments:,} tensors and the lists "
                f"that hold them; convc reads at most {MAX_CALL_ARGUMENTS:,}",
                help=_multipliers(top),
            )

    # --- expanding ------------------------------------------------------------------------------

    def expand(self, container: _Container, inputs: list[TensorRef] | None) -> Any:
        """Add one call of the container to the graph, fed by ``inputs`` (``None`` at the top
        level, where its InputLayers become the graph's inputs); return its outputs."""
        label = _label(container.keras_path)
        if container.sequential:  # a chain: each layer called on the last one's output
            if inputs is None:
                if container.inputs:
                    first = container.inputs[0]
                    current = self.add_input(first.config, first.layer_config)
                else:
                    current = self.implicit_input(container)
            elif len(inputs) != 1:
                raise self.error(f"the Sequential model {label} is called on {len(inputs)} inputs")
            else:
                current = inputs[0]
            for member, _ in container.steps:
                if member.model is None:
                    current = self.apply_layer(member, [current], {})
                else:
                    current = self.apply_model(member.model, [current])[0]
            return current
        # the outputs of each numbered call and InputLayer (``_Member.node``), as made
        produced: list[list[TensorRef] | None] = [None] * container.nodes
        if inputs is None:
            for member in container.inputs:
                produced[member.node] = [self.add_input(member.config, member.layer_config)]
        else:
            if len(container.inputs) != len(inputs):
                raise self.error(
                    f"the model {label} takes {len(container.inputs)} inputs but is called on "
                    f"{len(inputs)}"
                )
            for member, tensor in zip(container.inputs, inputs, strict=True):
                produced[member.node] = [tensor]
        for member, index in container.steps:
            call = member.calls[index]
            args = self.instantiate(call.args, produced, label)
            kwargs = call.kwargs  # most calls' keyword arguments hold no tensor: the file's own
            if isinstance(kwargs, _TDict):
                kwargs = self.instantiate(kwargs, produced, label)
            if member.model is None:
                produced[member.node + index] = [self.apply_layer(member, args, kwargs)]
            else:
                produced[member.node + index] = self.apply_model(member.model, args)
        return self.instantiate(container.outputs, produced, label)

    def instantiate(self, template: Any, produced: list, label: str) -> Any:
        if isinstance(template, _Slot):
            outputs = produced[template.node]
            if outputs is None:  # only an InputLayer that is not one of the model's inputs
                raise self.error(f"{label} reads {template.member!r}, which is not an input of it")
            if not 0 <= template.tensor < len(outputs):
                raise self.error(
                    f"{template.member!r} in {label} has no output {template.tensor} "
                    f"(it has {len(outputs)})"
                )
            ref = outputs[template.tensor]
            if template.shape is not None:
                self.graph.ranks[ref] = len(template.shape)
                self.graph.shapes[ref] = template.shape
            return ref
        if isinstance(template, _TList):
            return [self.instantiate(item, produced, label) for item in template]
        if isinstance(template, _TDict):
            return {key: self.instantiate(item, produced, label) for key, item in template.items()}
        return template

    def apply_model(self, model: _Container, args: list) -> list[TensorRef]:
        """One call of a nested model: its container, fed by the arguments' tensors."""
        return _flat_tensors(self.expand(model, _flat_tensors(args)))

    def apply_layer(self, member: _Member, args: list, kwargs: dict) -> TensorRef:
        entry = member.entry
        if entry is None:
            entry = member.entry = self.layer_entry(member)
        # names are unique among inputs and layers: a layer's n-th application makes the n-th
        # tensor of its name
        output = TensorRef(entry.name, entry.applications)
        entry.applications += 1
        self.graph.applications.append(Application(entry, args, kwargs, output))
        return output

    def layer_entry(self, member: _Member) -> LayerEntry:
        """The member's layer in the graph, added at its first application."""
        module = member.layer_config.get("module")
        # every field in order: a call with keywords takes twice as long, once for every layer
        entry = LayerEntry(
            member.class_name,
            self.names.unique(member.keras_path[-1]),
            member.config,
            module if isinstance(module, str) else None,
            member.keras_path,
            member.weights_path,
            0,  # applications
            member.position,
            member.containers_trainable,
            _dict(member.layer_config.get("build_config")).get("input_shape"),
        )
        self.graph.layers.append(entry)
        return entry

    # --- layers and inputs ------------------------------------------------------------------

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

    def add_input(self, config: dict, layer_config: dict) -> TensorRef:
        name = config.get("name") or layer_config.get("name") or "input_layer"
        name = self.names.unique(str(name))
        entry = InputEntry(name, config, TensorRef(name))
        self.graph.inputs.append(entry)
        return entry.output

    def implicit_input(self, container: _Container) -> TensorRef:
        shape, dtype = container.implicit_shape or (None, None)
        if shape is None:
            raise self.error(
                f"the Sequential model {_label(container.keras_path)} does not say its input shape",
                help="the model was saved before it was built; build it (call it once, or give "
                "it an Input) and save it again",
            )
        input_config = {"batch_shape": shape, "name": "input_layer"}
        if isinstance(dtype, str):
            input_config["dtype"] = dtype
        return self.add_input(input_config, {})


class _Refer:
    """Turns a container's tensor references (``[layer, node, tensor]``) into slots, numbering
    calls as the file's writer did (see the module's docstring)."""

    def __init__(self, flattener, style: str, by_name, label: str, caller: str | None):
        self.flattener = flattener
        self.style = style
        self.by_name: dict[str, _Member] = by_name
        self.label = label
        self.caller = caller
        """The member whose call's arguments it reads; None: the container's output_layers."""

    @property
    def what(self) -> str:
        """Where the references are, as an error says it (made only for an error)."""
        if self.caller is None:
            return f"an output of {self.label} names"
        return f"layer {self.caller!r} of {self.label} is fed by"

    def slot(self, history: Any, shape: list | None) -> _Slot:
        if not _is_history(history) or isinstance(history[1], bool) or isinstance(history[2], bool):
            raise self.flattener.error(
                f"a tensor reference in {self.label} is malformed: {_short(history)}"
            )
        name, node_index, tensor_index = history
        target = self.by_name.get(name)
        if target is None:
            raise self.flattener.error(
                f"{self.what} {_short(history)}, which no layer makes: the model has no layer "
                f"{name!r}"
            )
        if target.is_input:
            if node_index != 0 and self.style == "keras3":
                raise self.flattener.error(
                    f"{self.what} {_short(history)}, which no layer makes: an InputLayer has "
                    "one node, node 0"
                )
            return _Slot(name, target.node, tensor_index, shape)
        first = self.first_call(target)
        call = node_index - first
        if not 0 <= call < target.listed:
            times = "once" if target.listed == 1 else f"{target.listed} times"
            numbering = f" (this file numbers its calls from {first})" if first else ""
            raise self.flattener.error(
                f"{self.what} {_short(history)}, which no layer makes: {name!r} is called "
                f"{times}{numbering}"
            )
        return _Slot(name, target.node + call, tensor_index, shape)

    def first_call(self, target: _Member) -> int:
        """How this container's file numbers the target's first listed call."""
        if self.style == "keras2":
            return _keras2_first_call(target)
        return 1 if self.caller is None and target.class_name in ("Functional", "Model") else 0


def _keras2_first_call(member: _Member) -> int:
    """tf.keras (``_should_skip_first_node``) and Keras 2 count a node that links a nested model's
    input to its output before its first call: a Functional's always, a Sequential's when it
    knows its input (an InputLayer first, a first layer that declares ``batch_input_shape``, or
    a ``build_input_shape`` that its loader builds it with)."""
    if member.class_name in ("Functional", "Model"):
        return 1
    if member.class_name != "Sequential":
        return 0
    layers = _layer_list(member.config)
    if not layers or not isinstance(layers[0], dict):
        return 1
    first = _dict(layers[0].get("config"))
    declared = _is_list(first.get("batch_input_shape")) or _is_list(first.get("batch_shape"))
    if layers[0].get("class_name") == "InputLayer" or declared:
        return 1
    return 1 if _is_list(member.config.get("build_input_shape")) else 0


class _KeyCounter:
    """Keras 3 weights files key each layer by its class in snake case, numbered in order."""

    def __init__(self, bases: dict[str, str]) -> None:
        self.counts: dict[str, int] = {}
        self.bases = bases  # the file's class names in snake case: its regular expressions are slow

    def key(self, class_name: str) -> str:
        base = self.bases.get(class_name)
        if base is None:
            base = snake_case(class_name) if class_name != "input_layer" else class_name
            self.bases[class_name] = base
        count = self.counts.get(base, 0)
        self.counts[base] = count + 1
        return base if count == 0 else f"{base}_{count}"


def _multipliers(top: _Container) -> str | None:
    """Which nested models multiply the calls: the chain of the heaviest one at each level."""
    links: list[str] = []
    container: _Container | None = top
    while container is not None and len(links) < 6:
        nested = [m for m in container.members if m.model is not None]
        if not nested:
            break
        heaviest = max(nested, key=lambda m: len(m.calls) * (m.model.calls if m.model else 0))
        times = "once" if len(heaviest.calls) == 1 else f"{len(heaviest.calls)} times"
        caller = "the model" if container is top else repr(container.keras_path[-1])
        links.append(f"{caller} calls {heaviest.keras_path[-1]!r} {times}")
        container = heaviest.model
    if not links:
        return None
    return ", ".join(links) + "; nested models multiply each other's calls"


_KERAS3_NODE_KEYS = frozenset(("args", "kwargs"))


def _is_keras3_node(node: Any) -> bool:
    """Keras 3 writes a node as ``{"args": [...], "kwargs": {...}}``; tf.keras as a structure of
    ``[layer, node, tensor, kwargs]`` leaves (a dict only when a model is called on a dict)."""
    return (
        isinstance(node, dict)
        and "args" in node
        and node.keys() <= _KERAS3_NODE_KEYS
        and not (
            _is_list(node["args"])
            and len(node["args"]) in (3, 4)
            and isinstance(node["args"][0], str)
        )
    )


def _is_list(value: Any) -> bool:
    return isinstance(value, list)


def _dict(value: Any) -> dict:
    """``value`` if it is a JSON object, else an empty one: a malformed config reads as absent."""
    return value if isinstance(value, dict) else {}


def _layer_list(config: dict) -> list:
    layers = config.get("layers")
    return layers if isinstance(layers, list) else []


def _member_name(layer_config: dict) -> str | None:
    name = layer_config.get("name") or _dict(layer_config.get("config")).get("name")
    return name if isinstance(name, str) else None


def _declared_shape(config: dict, layer_config: dict) -> tuple[Any, Any]:
    """The input shape and dtype that a Sequential without an InputLayer declares: its first
    layer's ``batch_input_shape`` (Keras 2), or the model's ``build_input_shape``."""
    shape = None
    for key in ("batch_input_shape", "batch_shape"):
        if _is_list(layer_config.get(key)):
            shape = layer_config[key]
    if shape is None and _is_list(config.get("build_input_shape")):
        shape = config["build_input_shape"]
    return shape, layer_config.get("dtype")


def _history_names(spec: Any) -> list[str]:
    """The layer names of a model's ``input_layers``, in Keras's order (``tree.flatten``: a
    dict's values by sorted key)."""
    if _is_history(spec):
        return [spec[0]]
    if isinstance(spec, list):
        return [name for item in spec for name in _history_names(item)]
    if isinstance(spec, dict):
        return [name for key in sorted(spec, key=str) for name in _history_names(spec[key])]
    return []


def _is_history(value: Any) -> bool:
    # spelled out rather than all(...) over a generator: it runs for every tensor reference
    return (
        isinstance(value, list)
        and len(value) == 3
        and isinstance(value[0], str)
        and isinstance(value[1], int)
        and isinstance(value[2], int)
    )


def _flat_tensors(value: Any) -> list[TensorRef]:
    """The tensors of a structure in Keras's order (``tree.flatten``: a dict's by sorted key),
    iteratively (a hostile structure is deep)."""
    found: list[TensorRef] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, TensorRef):
            found.append(item)
        elif isinstance(item, list | tuple):
            stack.extend(reversed(item))
        elif isinstance(item, dict):
            stack.extend(item[key] for key in sorted(item, key=str, reverse=True))
    return found


def _label(keras_path: tuple[str, ...]) -> str:
    return "the model" if not keras_path else "model " + repr("/".join(keras_path))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."
