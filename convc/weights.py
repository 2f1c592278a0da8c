"""A model's weights, in Keras's own layouts: loaded from a file or drawn from initializers.

``Weights`` maps a layer name to its variables by Keras variable name (``kernel``, ``bias``,
``depthwise_kernel``, ``pointwise_kernel``). Three sources:

* ``.npz`` (read without pickles) with keys ``<layer name>/<variable name>``;
* ``.weights.h5`` as Keras 3's ``model.save_weights`` writes it: ``/layers/<key>/vars/<i>``, where
  the key is the class name in snake case made unique within the model (``conv2d``, ``conv2d_1``)
  in the order of Keras's ``model.layers`` (``keras_layer_order``), and ``i`` the variable's
  position in ``layer.weights``;
* the layers' initializers, drawn from one seed so that a build is reproducible.

Every array is checked against the model: a missing, unexpected, misshapen or non-float array is
an error that names the file, the layer, the variable and both shapes. Converting to ONNX layouts
is lowering's job, not this module's.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from convc.arrays import read_npz
from convc.diagnostics import ConvcError
from convc.hdf5 import Dataset, Group, open_hdf5
from convc.model import Layer, Model, ModelInput, Node, Variable, format_shape
from convc.names import snake_case
from convc.progress import track
from convc.specs import ConvSpec, DenseSpec

Weights = dict[str, dict[str, np.ndarray]]

_LORA = ("lora_kernel_a", "lora_kernel_b")


def initialize(model: Model, seed: int = 0) -> Weights:
    """Draw every variable from its initializer. Each variable has its own stream, derived from
    (seed, layer index, variable index), so editing one layer leaves the others' numbers alone."""
    weights: Weights = {}
    for index, layer in enumerate(track(model.layers, "initializing weights")):
        drawn = {
            variable.name: variable.initializer.draw(
                variable.shape, np.random.default_rng([seed, index, position])
            ).astype(variable.dtype, copy=False)
            for position, variable in enumerate(layer.variables)
        }
        weights[layer.name] = _merge_lora(layer, drawn, "<initializers>")
    return weights


def load(model: Model, path: str | os.PathLike[str]) -> Weights:
    """Read a .npz or .weights.h5 file and check it against the model."""
    path = Path(path)
    if not path.is_file():
        raise ConvcError("no such weights file", path=str(path))
    if path.name.endswith(".h5") or path.name.endswith(".hdf5"):
        return _load_h5(model, path)
    if path.suffix == ".npz":
        return from_arrays(model, read_npz(path), str(path))
    raise ConvcError(
        "unknown weights format",
        path=str(path),
        help="give a .npz file (keys 'layer/variable') or a Keras .weights.h5 file",
    )


def from_arrays(
    model: Model, arrays: Mapping[str, np.ndarray], source: str = "<weights>"
) -> Weights:
    """Check ``{"layer/variable": array}`` against the model and group it by layer."""
    by_layer: dict[str, dict[str, np.ndarray]] = {}
    layers = {layer.name: layer for layer in model.layers}
    for key in arrays:
        layer_name, slash, variable = key.rpartition("/")
        if not slash:
            raise ConvcError(
                f"key {key!r} is not of the form 'layer/variable'",
                path=source,
                help="e.g. 'conv2d/kernel' or 'conv2d/bias'",
            )
        if layer_name not in layers:
            raise ConvcError(
                f"{key!r} names no layer of the model",
                path=source,
                help="the model's layers: " + ", ".join(layers) if layers else None,
            )
        by_layer.setdefault(layer_name, {})[variable] = arrays[key]
    return {
        layer.name: _check_layer(layer, by_layer.get(layer.name, {}), source)
        for layer in model.layers
    }


def _check_layer(layer: Layer, found: dict[str, np.ndarray], source: str) -> dict[str, np.ndarray]:
    if not found and not layer.variables:  # most layers of a long model: nothing to check
        return {}
    expected = {v.name: v for v in layer.variables}
    for name in found:
        if name not in expected:
            raise ConvcError(
                f"{layer.name}/{name} is not a variable of layer '{layer.name}' "
                f"({layer.class_name})",
                path=source,
                help="its variables: " + ", ".join(expected)
                if expected
                else f"{layer.class_name} has no weights",
            )
    checked: dict[str, np.ndarray] = {}
    for name, variable in expected.items():
        if name in found:
            checked[name] = _as_float32(found[name], f"{layer.name}/{name}", variable, source)
        elif not variable.optional:
            raise ConvcError(
                f"missing {layer.name}/{name} for layer '{layer.name}' ({layer.class_name}), "
                f"expected shape {format_shape(variable.shape)}",
                path=source,
            )
    return _merge_lora(layer, checked, source)


def _as_float32(array: np.ndarray, key: str, variable: Variable, source: str) -> np.ndarray:
    array = np.asarray(array)
    shape = variable.shape
    if variable.dtype != "float32":  # a counter: any number, truncated as Keras assigns it
        if array.dtype.kind not in "iuf" or array.shape != shape:
            raise ConvcError(
                f"{key} has dtype {array.dtype} and shape {format_shape(array.shape)}, expected "
                f"an array of numbers of shape {format_shape(shape)}",
                path=source,
            )
        return np.asarray(array).astype(variable.dtype)
    if array.dtype.kind != "f":
        raise ConvcError(f"{key} has dtype {array.dtype}, expected a float array", path=source)
    if array.shape != shape:
        raise ConvcError(
            f"{key} has shape {format_shape(array.shape)}, expected {format_shape(shape)}",
            path=source,
            help="arrays are in Keras's layouts, as layer.get_weights() returns them",
        )
    return np.ascontiguousarray(array, dtype=np.float32)


def _merge_lora(layer: Layer, arrays: dict[str, np.ndarray], source: str) -> dict[str, np.ndarray]:
    """Fold a LoRA layer's kernels into its kernel, as Keras's ``kernel`` property does:
    kernel + (alpha / rank) * (lora_kernel_a @ lora_kernel_b)."""
    present = [name for name in _LORA if name in arrays]
    if not present:
        return arrays
    if len(present) == 1:
        missing = next(name for name in _LORA if name not in arrays)
        raise ConvcError(
            f"missing {layer.name}/{missing}: LoRA needs both of its kernels", path=source
        )
    merged = dict(arrays)
    a, b = merged.pop("lora_kernel_a"), merged.pop("lora_kernel_b")
    spec = layer.spec
    assert isinstance(spec, ConvSpec | DenseSpec), "only Conv and Dense have LoRA kernels"
    assert spec.lora_alpha is not None and spec.lora_rank, "a LoRA layer has its rank and alpha"
    scale = np.float32(spec.lora_alpha / spec.lora_rank)
    merged["kernel"] = (merged["kernel"] + scale * np.matmul(a, b)).astype(np.float32)
    return merged


def _load_h5(model: Model, path: Path) -> Weights:
    with open_hdf5(path, str(path)) as handle:
        groups = handle.get("layers")
        if not isinstance(groups, Group):
            raise ConvcError(
                "not a Keras 3 .weights.h5 file: it has no 'layers' group", path=str(path)
            )
        weights: Weights = {}
        for layer, (key, stored) in _stored_groups(model, groups, str(path)).items():
            arrays = {}
            if stored is not None and not isinstance(stored, Group):
                raise ConvcError(f"layers/{key}/vars is not a group of arrays", path=str(path))
            if stored is not None:
                for index in stored:
                    canonical = index.isdigit() and str(int(index)) == index
                    if not canonical or int(index) >= len(layer.variables):
                        raise ConvcError(
                            f"layers/{key}/vars/{index} does not match a variable of layer "
                            f"'{layer.name}' ({layer.class_name}: "
                            + ", ".join(v.name for v in layer.variables)
                            + ")",
                            path=str(path),
                        )
                    dataset = stored[index]
                    if not isinstance(dataset, Dataset):
                        raise ConvcError(
                            f"layers/{key}/vars/{index} is not an array", path=str(path)
                        )
                    variable = layer.variables[int(index)]
                    label = f"{layer.name}/{variable.name}"
                    arrays[variable.name] = read_dataset(dataset, label, variable, str(path))
            weights[layer.name] = _check_layer(layer, arrays, str(path))
        return weights


def _stored_groups(model: Model, groups, where: str) -> dict[Layer, tuple[str, object]]:
    """Each layer's ``vars`` group in a Keras 3 weights file (``None`` where the file has none),
    with its path under ``layers/``. A model without nested models is keyed as Keras keys it
    (``weight_keys``); a file that holds nested models (``layers/sequential/layers/conv2d``)
    is matched by the layer names Keras writes on each ``vars`` group, since the model convc
    reads has been flattened (``_named_groups``)."""
    if any(isinstance(groups.get(f"{key}/layers"), Group) for key in groups):
        return _named_groups(model, groups, where)
    keys = {key: layer for key, layer in weight_keys(model).items() if isinstance(layer, Layer)}
    inputs = set(weight_keys(model)) - set(keys)  # a functional model's InputLayers
    for key in groups:
        if key not in keys and key not in inputs:
            raise ConvcError(
                f"the file has weights for a layer '{key}' that the model does not have",
                path=where,
                help="the model's layers, as Keras keys them: " + ", ".join(keys),
            )
    return {layer: (key, groups.get(f"{key}/vars")) for key, layer in keys.items()}


def _named_groups(model: Model, groups, where: str) -> dict[Layer, tuple[str, object]]:
    """A weights file with nested models, matched to the flattened model by layer name: every
    group that holds arrays must carry the name of its layer (Keras 3 writes it since 3.6) and
    name a layer of the model, and no two such groups may carry the same name."""
    found: dict[str, tuple[str, object]] = {}

    def walk(group, path: str, depth: int) -> None:
        for key in group:
            child = group.get(key)
            if not isinstance(child, Group) or depth > 32:
                continue
            stored = child.get("vars")
            where_in_file = f"{path}{key}"
            if isinstance(stored, Group) and len(stored):
                name = stored.attrs.get("name")
                if not isinstance(name, str):
                    raise ConvcError(
                        f"layers/{where_in_file} holds weights of a nested model's layer but "
                        "not the layer's name (Keras before 3.6 wrote none): convc cannot tell "
                        "which layer of the flattened model they belong to",
                        path=where,
                        help="build from the .keras file the model was saved in, or save the "
                        "weights again with a recent Keras",
                    )
                if name in found:
                    raise ConvcError(
                        f"layers/{found[name][0]} and layers/{where_in_file} both hold weights "
                        f"of a layer named '{name}': once the nested models are flattened, "
                        "convc cannot tell them apart",
                        path=where,
                        help="build from the .keras file the model was saved in",
                    )
                found[name] = (where_in_file, stored)
            inner = child.get("layers")
            if isinstance(inner, Group):
                walk(inner, f"{where_in_file}/layers/", depth + 1)

    walk(groups, "", 0)
    layers = {layer.name: layer for layer in model.layers}
    for name, (key, _) in found.items():
        if name not in layers:
            raise ConvcError(
                f"the file has weights for a layer '{name}' (layers/{key}) that the model does "
                "not have",
                path=where,
                help="the model's layers: " + ", ".join(layers),
            )
    return {layer: found.get(layer.name, (layer.name, None)) for layer in model.layers}


def read_dataset(dataset, key: str, variable: Variable, where: str) -> np.ndarray:
    """An HDF5 dataset holding ``variable`` (named ``key`` in errors), its shape and dtype
    checked before anything is read: a file that lies about shapes costs nothing."""
    expected = variable.shape
    if dataset.dtype.kind != "f" and not (
        variable.dtype != "float32" and dataset.dtype.kind in "iu"
    ):
        raise ConvcError(f"{key} has dtype {dataset.dtype}, expected a float array", path=where)
    if tuple(dataset.shape) != expected:
        raise ConvcError(
            f"{key} has shape {format_shape(tuple(dataset.shape))}, expected "
            f"{format_shape(expected)}",
            path=where,
            help="arrays are in Keras's layouts, as layer.get_weights() returns them",
        )
    try:
        return dataset[()]
    except (OSError, TypeError, ValueError) as error:
        raise ConvcError(f"cannot read {dataset.name}: {error}", path=where) from None


def keras_layer_order(model: Model) -> list[Layer | ModelInput]:
    """The order of Keras's ``model.layers``, which numbers the keys of a ``.weights.h5``.

    A Sequential model lists its layers in order. A functional model lists them by depth (the
    longest path to an output), deepest first, InputLayers included; layers of one depth in the
    order a depth-first walk from the outputs first meets them (Keras's ``map_graph``)."""
    if model.is_chain:  # a Sequential's file has no key for its input; a functional one has
        return [*model.inputs, *model.layers]
    producers = model.producers
    order: dict[int, int] = {}  # operation id -> first meeting in the walk
    operations: dict[int, Layer | ModelInput] = {}
    finished: set[int] = set()
    decreasing: list[Node | ModelInput] = []

    def walk(tensor) -> None:
        node = producers.get(id(tensor))
        operation = node.layer if node is not None else tensor
        item = node if node is not None else tensor
        if id(item) in finished:
            return
        order.setdefault(id(operation), len(order))
        operations[id(operation)] = operation
        if node is not None:
            for source in node.inputs:
                walk(source)
        finished.add(id(item))
        decreasing.append(item)

    for output in model.outputs:
        walk(output)
    node_depth: dict[int, int] = {}
    operation_depth: dict[int, int] = {}
    for item in reversed(decreasing):
        operation = item.layer if isinstance(item, Node) else item
        depth = max(node_depth.setdefault(id(item), 0), operation_depth.get(id(operation), 0))
        operation_depth[id(operation)] = depth
        node_depth[id(item)] = depth
        if isinstance(item, Node):
            for source in item.inputs:
                parent = producers.get(id(source)) or source
                node_depth[id(parent)] = max(depth + 1, node_depth.get(id(parent), 0))
    for model_input in model.inputs:
        if id(model_input) not in operation_depth:
            operation_depth[id(model_input)] = 0
            order[id(model_input)] = -1
            operations[id(model_input)] = model_input
    return sorted(operations.values(), key=lambda op: (-operation_depth[id(op)], order[id(op)]))


def weight_keys(model: Model) -> dict[str, Layer | ModelInput]:
    """Each layer's group name in Keras's ``.weights.h5``: its class in snake case, numbered
    within the model in ``keras_layer_order`` (``conv2d``, ``conv2d_1``; ``input_layer``)."""
    counts: dict[str, int] = {}
    keys = {}
    for operation in keras_layer_order(model):
        base = (
            "input_layer" if isinstance(operation, ModelInput) else snake_case(operation.class_name)
        )
        count = counts.get(base, 0)
        counts[base] = count + 1
        keys[base if count == 0 else f"{base}_{count}"] = operation
    return keys


def exercise(model: Model, seed: int = 0) -> Weights:
    """Random values for every variable, biases and statistics included, so that every layer
    changes the outputs (the initializers' zero biases, unit gammas and 0/1 moving statistics
    leave a model's outputs nearly constant): N(0, 1/fan-in) for kernels (fan-in: every axis but
    the last; for a depthwise kernel, whose output sees one input channel, its spatial taps),
    N(0, 1) for vectors, |x| + 0.5 for a variance or standard deviation; integer
    variables (counters) keep their initializers. One stream per (seed, layer, variable), as in
    ``initialize``, so that a golden or a matrix cell recorded with them reproduces exactly."""
    weights: Weights = {}
    for index, layer in enumerate(model.layers):
        drawn = {}
        for position, variable in enumerate(layer.variables):
            rng = np.random.default_rng([seed, index, position, 1])
            if variable.dtype != "float32":
                drawn[variable.name] = variable.initializer.draw(variable.shape, rng).astype(
                    variable.dtype, copy=False
                )
                continue
            shape = variable.shape
            fan_in = _fan_in(layer, variable.name, shape)
            value = rng.standard_normal(shape) / np.sqrt(fan_in)
            if variable.name.endswith(("variance", "stddev")):
                value = np.abs(value) + 0.5
            drawn[variable.name] = value.astype(np.float32)
        weights[layer.name] = _merge_lora(layer, drawn, "<random weights>")
    return weights


def _fan_in(layer: Layer, name: str, shape: tuple[int, ...]) -> int:
    """How many inputs one output of a kernel sums: every axis but the last, except a depthwise
    kernel's (taps..., channels, multiplier), where each output reads one channel's taps."""
    if len(shape) < 2:
        return 1
    spec = layer.spec
    depthwise = name == "depthwise_kernel" or (
        name == "kernel" and isinstance(spec, ConvSpec) and spec.kind == "depthwise"
    )
    return max(1, int(np.prod(shape[:-2] if depthwise else shape[:-1])))
