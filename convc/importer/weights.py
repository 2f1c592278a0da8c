"""A Keras model file's weights, as ``{"layer/variable": array}`` for the imported model.

Keras 3 (``model.weights.h5`` inside a ``.keras``) keys each layer by its class in snake case
within its container (``layers/sequential/layers/conv2d/vars/0``) and, in recent versions, also
writes the layer's name as an attribute of its ``vars`` group: the name is used when present,
the key otherwise. tf.keras 2.13-2.15 wrote ``.keras`` files too (``_tf_keras_groups``). Keras 2
full-model ``.h5`` files keep the weights of each top-level layer in ``model_weights/<layer>``,
listed in order by the group's ``weight_names`` attribute (``conv2d/kernel:0``), a nested
model's weights all in its own group, assigned by position as Keras 2 loaded them; Keras 1 files
too, with names like ``convolution2d_1_W`` and its own kernel layouts, which
``generations.stored_array`` converts.

A variable's position in the file is its position in Keras's ``layer.weights``, which is the
order of convc's ``Layer.variables``. Every dataset's shape and dtype is checked against the
model before it is read, so a file that lies about shapes costs nothing.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from convc.diagnostics import ConvcError
from convc.hdf5 import Dataset, Group
from convc.importer.generations import Generation, stored_array
from convc.importer.graph import Graph, LayerEntry
from convc.model import Layer, Model
from convc.names import snake_case
from convc.progress import track
from convc.weights import read_dataset


def read_weights(
    model: Model,
    graph: Graph,
    handle: Any,
    file_format: str,
    where: str,
    generation: Generation | None = None,
):
    """``{"layer/variable": array}`` for every variable of the model found in ``handle``, in
    Keras 3's layouts: an older ``generation``'s layouts are converted (``stored_array``)."""
    entries = {entry.name: entry for entry in graph.layers}
    if file_format == "keras":
        groups = _keras3_groups(handle, graph)
    else:
        groups = _legacy_groups(handle, graph, model, where)
    arrays: dict[str, np.ndarray] = {}
    for layer in track(model.layers, "reading weights"):
        entry = entries.get(layer.name)
        if entry is None or not layer.variables:
            continue
        datasets = groups(entry)
        if datasets is None:
            raise ConvcError(
                f"the file has no weights for layer '{layer.name}' ({layer.class_name})",
                path=where,
            )
        if len(datasets) != len(layer.variables):
            raise ConvcError(
                f"layer '{layer.name}' ({layer.class_name}) has {len(datasets)} arrays in the "
                f"file; convc expects {len(layer.variables)} ("
                + ", ".join(v.name for v in layer.variables)
                + ")",
                path=where,
            )
        for variable, dataset in zip(layer.variables, datasets, strict=True):
            key = f"{layer.name}/{variable.name}"
            if not isinstance(dataset, Dataset):
                raise ConvcError(f"{key} is not an array in the file", path=where)
            if generation is None:
                arrays[key] = read_dataset(dataset, key, variable, where)
                continue
            stored = stored_array(layer, variable, tuple(dataset.shape), generation)
            array = read_dataset(dataset, key, replace(variable, shape=stored.shape), where)
            arrays[key] = stored.convert(array)
    return arrays


def _keras3_groups(handle: Any, graph: Graph):
    by_names: dict[tuple[str, ...], Any] = {}
    _keras3_layer_groups(handle, (), 0, by_names)
    tf_keras = _tf_keras_groups(handle, graph)

    def datasets(entry: LayerEntry) -> list | None:
        group = by_names.get(entry.keras_path) or tf_keras.get(entry.keras_path)
        if group is None:
            # written on Windows, a path's separators are backslashes inside one HDF5 name
            for joiner in ("/", "\\"):
                found = handle.get(joiner.join(entry.weights_path) + "/vars")
                if isinstance(found, Group):
                    group = found
                    break
        if group is None:
            return None
        count = len(group)
        if sorted(group) != sorted(str(i) for i in range(count)):
            return [None]  # not numbered 0..n-1: reported as a count mismatch
        return [group[str(i)] for i in range(count)]

    return datasets


_TF_KERAS_LAYERS = "_layer_checkpoint_dependencies"


def _keras3_layer_groups(
    group: Any, names: tuple[str, ...], depth: int, by_names: dict[tuple[str, ...], Any]
) -> None:
    """Into ``by_names``: the variables' group of each layer under ``group``, by the names of
    the layers that nest it. (A function of the module, not a closure that calls itself: that
    would be a reference cycle, keeping the file's tree until the cycle collector runs.)"""
    if depth > 32 or not isinstance(group, Group):
        return
    layers = group.get("layers")
    if not isinstance(layers, Group):
        return
    for key in layers:
        child = layers[key]
        if not isinstance(child, Group):
            continue
        variables = child.get("vars")
        name = variables.attrs.get("name") if isinstance(variables, Group) else None
        if isinstance(name, str):
            by_names[names + (name,)] = variables
            _keras3_layer_groups(child, names + (name,), depth + 1, by_names)


def _tf_keras_groups(handle: Any, graph: Graph) -> dict[tuple[str, ...], Group]:
    """tf.keras 2.13-2.15's ``.keras`` layout: ``_layer_checkpoint_dependencies/<key>/vars``,
    where the key is the layer's class in snake case, numbered over that dict's values in
    ``model.layers`` order, and a layer with weights appears twice in it (as
    ``layer_with_weights-k`` and ``layer-i``), so its second appearance uses up a number:
    Dense layers are keyed ``dense``, ``dense_2``, ``dense_4``. Matched here by order within
    each class, among the keys that hold variables. Written on Windows, the path's separators
    are backslashes inside one HDF5 name. Top-level layers only."""
    top = handle.get(_TF_KERAS_LAYERS)
    keys: dict[str, Group | Dataset] = {}
    if isinstance(top, Group):
        keys = {key: top[key] for key in top}
    else:
        prefix = _TF_KERAS_LAYERS + "\\"
        keys = {name[len(prefix) :]: handle[name] for name in handle if name.startswith(prefix)}
    by_class: dict[str, list[tuple[int, Group]]] = {}
    for key, group in keys.items():
        variables = group.get("vars") if isinstance(group, Group) else None
        base, _, number = key.rpartition("_")
        if not number.isdigit():
            base, number = key, "0"
        if isinstance(variables, Group) and len(variables):
            by_class.setdefault(base, []).append((int(number), variables))
    found: dict[tuple[str, ...], Group] = {}
    if not by_class:
        return found
    order: dict[str, list[LayerEntry]] = {}
    for entry in graph.layers:
        if len(entry.keras_path) == 1:
            order.setdefault(snake_case(entry.class_name), []).append(entry)
    for base, groups in by_class.items():
        entries = order.get(base, [])
        ordered = sorted(groups, key=lambda pair: pair[0])
        # a class's keys and layers pair up in order; a count mismatch leaves some unmatched,
        # and those are reported as layers without weights
        for entry, (_, group) in zip(entries, ordered, strict=False):
            found[entry.keras_path] = group
    return found


def _legacy_groups(handle: Any, graph: Graph, model: Model, where: str):
    """Keras 2's layout: a group per top-level layer, its arrays listed in order by the group's
    ``weight_names``. Keras 2 (and Keras 3's legacy loader) assign them by position, whatever the
    names say (Keras 2.0 wrote ``conv2d_1/conv2d_1_1/kernel:0`` for layer ``conv2d_1``), to the
    layer's weights in legacy order (``_legacy_assignment``); a nested model's group holds all of
    its layers' weights.

    A group that names no top-level layer holds a nested model whose config kept no trace of it
    (a Keras 1 Sequential inside a Sequential is read as its layers): each of its arrays goes to
    the layer its name names, by the name's scope (``conv2d/kernel:0``) or, unscoped, as Keras 1
    named weights (``convolution2d_1_W``)."""
    root = handle.get("model_weights", handle)
    if not isinstance(root, Group):
        raise ConvcError("the HDF5 file has no model_weights group", path=where)
    layers = {layer.name: layer for layer in model.layers}
    by_group: dict[str, list[LayerEntry]] = {}
    for entry in graph.layers:
        by_group.setdefault(entry.keras_path[0], []).append(entry)
    keras_names = {entry.keras_path[-1]: entry.name for entry in graph.layers}
    found: dict[str, list] = {}
    by_scope: dict[str, list] = {}
    for key in root:
        group = root.get(key)
        names = group.attrs.get("weight_names") if isinstance(group, Group) else None
        if isinstance(names, str):
            names = [names]
        if not isinstance(names, list):
            continue
        arrays = [group.get(str(name)) for name in names]
        if key in by_group:
            found.update(_legacy_assignment(key, arrays, by_group[key], layers, where))
            continue
        for name, array in zip(names, arrays, strict=True):
            owner = _named_owner(str(name), set(keras_names)) or key
            by_scope.setdefault(keras_names.get(owner, owner), []).append(array)
    for name, arrays in by_scope.items():
        found.setdefault(name, arrays)

    def datasets(entry: LayerEntry) -> list | None:
        return found.get(entry.name)

    return datasets


def _legacy_assignment(
    group: str, arrays: list, entries: list[LayerEntry], layers: dict[str, Layer], where: str
) -> dict[str, list]:
    """The arrays of one top-level layer's group, by layer name, each layer's in the order of its
    variables. Keras 2 saved and loaded them in the order of ``layer.trainable_weights +
    layer.non_trainable_weights``: for a nested model, the trainable weights of all its layers
    (depth first, in config order), then all the others; a weight is trainable when it is, and
    its layer and every model it sits in are trainable."""
    trainable: list[tuple[str, int]] = []
    others: list[tuple[str, int]] = []
    for entry in sorted(entries, key=lambda e: e.position):
        layer = layers.get(entry.name)
        if layer is None:
            continue
        frozen = not layer.trainable or not all(entry.containers_trainable)
        for index, variable in enumerate(layer.variables):
            (others if frozen or not variable.trainable else trainable).append((entry.name, index))
    order = trainable + others
    if len(arrays) != len(order):
        if len(entries) == 1 and entries[0].name in layers:
            layer = layers[entries[0].name]
            expected = ", ".join(v.name for v in layer.variables)
            raise ConvcError(
                f"layer '{layer.name}' ({layer.class_name}) has {len(arrays)} arrays in the "
                f"file; convc expects {len(order)} ({expected})",
                path=where,
            )
        raise ConvcError(
            f"the group of nested model '{group}' has {len(arrays)} arrays in the file; its "
            f"layers have {len(order)} weights",
            path=where,
        )
    assigned: dict[str, list] = {
        entry.name: [None] * len(layers[entry.name].variables)
        for entry in entries
        if entry.name in layers
    }
    for (name, index), array in zip(order, arrays, strict=True):
        assigned[name][index] = array
    return assigned


def _named_owner(weight: str, layer_names: set[str]) -> str | None:
    """The layer a weight's name says it belongs to: its scope (``conv2d/kernel:0``), or, for
    Keras 1's unscoped names (``convolution2d_1_W``), the longest layer name that prefixes it."""
    parts = weight.split(":")[0].split("/")
    if len(parts) >= 2:
        return parts[-2]
    owners = [name for name in layer_names if parts[-1].startswith(name + "_")]
    return max(owners, key=len) if owners else None
