"""How the importer's flattening finds the tensor a call reads (#23): each functional model
numbers its layers' listed calls, then its InputLayers, and a reference is looked up by that
number. These cases pin what the numbering must keep: calls made in Keras's order when the
config lists a reader before the layer it reads, a shared layer's calls told apart, and the
refusals of a reference to nothing that the model makes."""

from __future__ import annotations

from typing import Any

import pytest
from test_import_scaling import _functional, _history, _input, _layer, _node, _tensor

from convc.diagnostics import ConvcError
from convc.importer.graph import TensorRef, flatten


def _relu(name: str, nodes: list, keras2: bool) -> dict[str, Any]:
    return _layer("ReLU", {"name": name, "dtype": "float32"}, nodes, keras2)


def _on(layer: str, call: int, keras2: bool) -> Any:
    """A node: one call on output 0 of ``layer``'s ``call``-th call."""
    return _node([_tensor(layer, call, 3, keras2)], keras2)


def _calls(config: dict) -> list[tuple[str, list]]:
    graph = flatten(config, "m.keras")
    return [(a.layer.name, a.args) for a in graph.applications]


@pytest.mark.parametrize("keras2", [False, True])
def test_a_reader_listed_before_the_layer_it_reads_is_called_after_it(keras2):
    layers = [
        _input("x", 3, keras2),
        _relu("b", [_on("a", 0, keras2)], keras2),
        _relu("a", [_on("x", 0, keras2)], keras2),
    ]
    config = _functional("m", layers, _history("x", 0, keras2), _history("b", 0, keras2), keras2)
    assert _calls(config) == [("a", [TensorRef("x")]), ("b", [TensorRef("a")])]


@pytest.mark.parametrize("keras2", [False, True])
def test_a_shared_layers_calls_are_told_apart(keras2):
    # s is called on x, then on its own first output; t reads the second call, u the first
    layers = [
        _input("x", 3, keras2),
        _relu("s", [_on("x", 0, keras2), _on("s", 0, keras2)], keras2),
        _relu("t", [_on("s", 1, keras2)], keras2),
        _relu("u", [_on("s", 0, keras2)], keras2),
    ]
    outputs = [["t", 0, 0], ["u", 0, 0]]
    config = _functional("m", layers, _history("x", 0, keras2), outputs, keras2)
    assert _calls(config) == [
        ("s", [TensorRef("x")]),
        ("s", [TensorRef("s")]),
        ("t", [TensorRef("s", 1)]),
        ("u", [TensorRef("s")]),
    ]


def test_an_input_layer_that_is_not_an_input_of_its_model_is_refused():
    inner = _functional(
        "inner",
        [
            _input("in_a", 3, False),
            _input("in_b", 3, False),
            _relu("r", [_on("in_b", 0, False)], False),
        ],
        _history("in_a", 0, False),  # in_b is not one of its inputs
        _history("r", 0, False),
        False,
    )
    nested = {**inner, "name": "inner", "inbound_nodes": [_on("x", 0, False)]}
    config = _functional(
        "m",
        [_input("x", 3, False), nested],
        _history("x", 0, False),
        _history("inner", 1, False),
        False,
    )
    with pytest.raises(ConvcError, match="model 'inner' reads 'in_b', which is not an input of it"):
        flatten(config, "m.keras")


def test_an_output_a_layer_does_not_make_is_refused():
    tensor = _tensor("x", 0, 3, False)
    tensor["config"]["keras_history"] = ["x", 0, 1]  # an InputLayer makes one tensor
    layers = [_input("x", 3, False), _relu("r", [_node([tensor], False)], False)]
    config = _functional("m", layers, _history("x", 0, False), _history("r", 0, False), False)
    with pytest.raises(ConvcError, match=r"'x' in the model has no output 1 \(it has 1\)"):
        flatten(config, "m.keras")


def test_layers_whose_nodes_mix_keras_3_and_keras_2_are_refused():
    layers = [
        _input("x", 3, False),
        _relu("a", [_on("x", 0, False)], False),
        _relu("b", [_on("a", 0, True)], False),
    ]
    config = _functional("m", layers, _history("x", 0, False), _history("b", 0, False), False)
    with pytest.raises(ConvcError, match="mix Keras 3 nodes"):
        flatten(config, "m.keras")
