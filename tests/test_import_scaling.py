"""Model configs that are hostile to the time a naive importer takes (#23, item 3): flattening
is bounded by the size of the config and of the flattened graph, and a config whose flattened
graph would pass ``MAX_LAYERS`` is refused before anything is expanded.

Each case is generated here, in the two node formats (Keras 3's ``{"args": ...}`` nodes and
tf.keras's ``[[layer, node, tensor, kwargs]]``), and must finish under an alarm: these tests
fail, rather than hang, on an importer that rescans, re-expands or renames quadratically. No
test asserts a duration; the alarm is ten times what each case needs.
"""

from __future__ import annotations

import io
import json
import signal
import zipfile
from contextlib import contextmanager
from typing import Any

import h5py
import numpy as np
import pytest

from convc.diagnostics import ConvcError
from convc.importer import graph as graph_module
from convc.importer import import_file
from convc.importer.files import open_model_file
from convc.importer.graph import flatten
from convc.importer.text import unsupported, write
from convc.limits import MAX_LAYERS
from convc.reference import model_outputs, run_reference
from convc.weights import initialize

ALARM_SECONDS = 30
FORMATS = ["keras3", "keras2"]


@contextmanager
def bounded(seconds: int = ALARM_SECONDS):
    """Fail the test (instead of hanging it) if the block runs longer than ``seconds``."""

    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# --- configs, in either node format ----------------------------------------------------------


def _input(name: str, width: int, keras2: bool) -> dict[str, Any]:
    shape_key = "batch_input_shape" if keras2 else "batch_shape"
    layer = {
        "class_name": "InputLayer",
        "config": {shape_key: [None, width], "dtype": "float32", "name": name},
        "name": name,
        "inbound_nodes": [],
    }
    return layer if keras2 else {"module": "keras.layers", **layer}


def _tensor(layer: str, call: int, width: int, keras2: bool) -> Any:
    if keras2:
        return [layer, call, 0, {}]
    config = {"shape": [None, width], "dtype": "float32", "keras_history": [layer, call, 0]}
    return {"class_name": "__keras_tensor__", "config": config}


def _node(tensors: list, keras2: bool, kwargs: dict | None = None) -> Any:
    """A call on one tensor, or on a list of them (a merge)."""
    if keras2:
        return [t[:3] + [kwargs or {}] for t in tensors]
    return {"args": [tensors[0] if len(tensors) == 1 else tensors], "kwargs": kwargs or {}}


def _layer(class_name: str, config: dict, nodes: list, keras2: bool) -> dict[str, Any]:
    layer = {"class_name": class_name, "config": config, "name": config["name"]}
    layer["inbound_nodes"] = nodes
    return layer if keras2 else {"module": "keras.layers", **layer}


def _history(layer: str, call: int, keras2: bool) -> list:
    return [[layer, call, 0]] if keras2 else [layer, call, 0]


def _functional(name: str, layers: list, inputs: list, outputs: list, keras2: bool) -> dict:
    config = {"name": name, "layers": layers, "input_layers": inputs, "output_layers": outputs}
    model = {"class_name": "Functional", "config": config}
    return model if keras2 else {"module": "keras.src.models.functional", **model}


def nested_calls(
    depth: int, calls: int, keras2: bool, width: int = 3, inner: dict | None = None
) -> dict:
    """``depth`` nested models, each calling the next ``calls`` times in a chain; the innermost
    applies a LeakyReLU (``inner``: another innermost model). Flattened: ``calls ** depth``
    LeakyReLUs from a config of ``depth`` levels.

    Both formats number a nested Functional's calls from 1 in ``output_layers`` (Keras 2 and
    Keras 3 count a built-in node first); Keras 2 does so in node arguments too, where Keras 3
    numbers them from 0."""
    model = inner or _functional(
        f"level_{depth}",
        [
            _input(f"in_{depth}", width, keras2),
            _layer(
                "LeakyReLU",
                {"name": "leaky", "dtype": "float32", "negative_slope": 0.5},
                [_node([_tensor(f"in_{depth}", 0, width, keras2)], keras2)],
                keras2,
            ),
        ],
        _history(f"in_{depth}", 0, keras2),
        _history("leaky", 0, keras2),
        keras2,
    )
    first = 1 if keras2 else 0
    for level in reversed(range(depth)):
        callee, own_input = model["config"]["name"], f"in_{level}"
        nodes = [_node([_tensor(own_input, 0, width, keras2)], keras2)]
        nodes += [
            _node([_tensor(callee, first + k, width, keras2)], keras2) for k in range(calls - 1)
        ]
        model = _functional(
            f"level_{level}",
            [_input(own_input, width, keras2), {**model, "name": callee, "inbound_nodes": nodes}],
            _history(own_input, 0, keras2),
            _history(callee, calls, keras2),  # its last call, numbered from 1
            keras2,
        )
    return model


def alternating(calls: int, keras2: bool, width: int = 3) -> dict:
    """Two shared layers ``a`` and ``b`` whose calls alternate, a(b(a(b(...(x))))): ``calls``
    calls in all, listed as a functional config lists them (each layer once, all its nodes)."""
    nodes: dict[str, list] = {"a": [], "b": []}
    previous = ("x", 0)
    for index in range(calls):
        name = "ab"[index % 2]
        nodes[name].append(_node([_tensor(*previous, width, keras2)], keras2))
        previous = (name, index // 2)
    return _functional(
        "alternating",
        [
            _input("x", width, keras2),
            _layer("LeakyReLU", {"name": "a", "negative_slope": 0.5}, nodes["a"], keras2),
            _layer("LeakyReLU", {"name": "b", "negative_slope": 0.25}, nodes["b"], keras2),
        ],
        _history("x", 0, keras2),
        _history(*previous, keras2),
        keras2,
    )


def long_sequential(count: int, width: int = 3) -> dict:
    """A Keras 3 Sequential of ``count`` weightless layers (ReLU and LeakyReLU in turn)."""
    layers: list[dict] = [
        {
            "module": "keras.layers",
            "class_name": "InputLayer",
            "config": _input("x", width, False)["config"],
        }
    ]
    for index in range(count):
        if index % 2:
            config = {"name": f"r{index}", "negative_slope": 0.5}
            layers.append({"module": "keras.layers", "class_name": "LeakyReLU", "config": config})
        else:
            config = {"name": f"r{index}"}
            layers.append({"module": "keras.layers", "class_name": "ReLU", "config": config})
    return {
        "module": "keras",
        "class_name": "Sequential",
        "config": {"name": "long", "layers": layers},
    }


def same_names(count: int, keras2: bool, width: int = 3) -> dict:
    """A chain of ``count`` nested Sequentials, each holding one layer named ``act``: every
    layer needs a new name in the flattened model."""
    layers = [_input("x", width, keras2)]
    previous = "x"
    first = 1 if keras2 else 0
    for index in range(count):
        name = f"block_{index}"
        inner = {"class_name": "LeakyReLU", "config": {"name": "act", "negative_slope": 0.5}}
        block = {
            "class_name": "Sequential",
            "config": {"name": name, "layers": [_input(f"{name}_in", width, keras2), inner]},
            "name": name,
            "inbound_nodes": [
                _node([_tensor(previous, 0 if index == 0 else first, width, keras2)], keras2)
            ],
        }
        layers.append(block)
        previous = name
    return _functional(
        "chain", layers, _history("x", 0, keras2), _history(previous, first, keras2), keras2
    )


def concatenate_inside(width: int, keras2: bool) -> dict:
    """An innermost model that concatenates ``width`` copies of its input."""
    tensors = [_tensor("in_inner", 0, 1, keras2)] * width
    return _functional(
        "inner",
        [
            _input("in_inner", 1, keras2),
            _layer("Concatenate", {"name": "concat", "axis": -1}, [_node(tensors, keras2)], keras2),
        ],
        _history("in_inner", 0, keras2),
        _history("concat", 0, keras2),
        keras2,
    )


def lambdas(count: int, width: int = 3) -> dict:
    """A tf.keras chain of ``count`` Lambda layers, which convc refuses one by one, describing
    each (tf.keras records no tensor shapes: each description looks at the layer's readers)."""
    layers = [_input("x", width, True)]
    previous = "x"
    for index in range(count):
        config = {"name": f"l{index}", "function": ["4wEAAAAA", None, None]}
        config |= {"function_type": "lambda", "output_shape": None}
        layers.append(
            _layer("Lambda", config, [_node([_tensor(previous, 0, width, True)], True)], True)
        )
        previous = f"l{index}"
    return _functional("lambdas", layers, _history("x", 0, True), _history(previous, 0, True), True)


def with_call_argument(model: dict, value: Any) -> dict:
    """``model`` (``nested_calls``) with ``value`` as a keyword argument of its innermost call."""
    inner = model
    while nested := [
        layer for layer in inner["config"]["layers"] if layer["class_name"] == "Functional"
    ]:
        inner = nested[0]
    (leaky,) = [layer for layer in inner["config"]["layers"] if layer["class_name"] == "LeakyReLU"]
    leaky["inbound_nodes"][0]["kwargs"] = {"scale": value}
    return model


def keras_archive(config: dict, path) -> None:
    """A ``.keras`` file of ``config`` with an empty weights file (its layers have none)."""
    weights = io.BytesIO()
    with h5py.File(weights, "w") as handle:
        handle.create_group("layers")
        handle.create_group("vars")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.10.0"}))
        archive.writestr("config.json", json.dumps(config))
        archive.writestr("model.weights.h5", weights.getvalue())


def _write(config: dict, tmp_path, name: str = "m.json"):
    path = tmp_path / name
    path.write_text(json.dumps(config))
    return path


def _reference(imported, x: np.ndarray) -> np.ndarray:
    model = imported.model
    (output,) = model_outputs(model, run_reference(model, initialize(model), x)).values()
    return output


# --- nested models that multiply each other's calls --------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_exponential_nesting_is_refused_before_it_is_expanded(fmt, tmp_path):
    """16 models that each call the next 4 times: 4**16 calls from a 16 KB config."""
    config = nested_calls(16, 4, keras2=fmt == "keras2")
    path = _write(config, tmp_path)
    assert path.stat().st_size < 20_000
    with bounded(), pytest.raises(ConvcError) as caught:
        import_file(path, input_shapes={"": (3,)})
    message = caught.value.message
    assert "calls of layers and nested models" in message and f"{MAX_LAYERS:,}" in message
    # the count is exact: 4**16 LeakyReLUs and every nested model's calls
    calls = 4**16 + sum(4**level for level in range(1, 17))
    assert f"makes {calls:,} calls" in message
    assert "'level_1' calls 'level_2' 4 times" in caught.value.help


@pytest.mark.parametrize("fmt", FORMATS)
def test_nested_calls_within_the_limit_build_every_call(fmt, tmp_path):
    """The same shape at 3 levels: 64 LeakyReLUs in a chain, each halving the negatives."""
    path = _write(nested_calls(3, 4, keras2=fmt == "keras2"), tmp_path)
    with bounded():
        imported = import_file(path)
    assert len(imported.model.nodes) == 64
    x = np.array([[-2.0, 0.5, -1.0e-3], [3.0, -7.0, 0.0]], np.float32)
    np.testing.assert_array_equal(_reference(imported, x), np.where(x > 0, x, x * 0.5**64))


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_call_limit_is_exact(fmt, tmp_path, monkeypatch):
    """3 levels of 4 calls make 64 LeakyReLU calls and 84 model calls: 148 calls pass a limit of
    148 and not one of 147."""
    path = _write(nested_calls(3, 4, keras2=fmt == "keras2"), tmp_path)
    monkeypatch.setattr(graph_module, "MAX_LAYERS", 148)
    assert len(import_file(path).model.nodes) == 64
    monkeypatch.setattr(graph_module, "MAX_LAYERS", 147)
    with pytest.raises(ConvcError, match="makes 148 calls of layers and nested models"):
        import_file(path)


@pytest.mark.parametrize("fmt", FORMATS)
def test_wide_calls_multiplied_by_nesting_are_refused(fmt, tmp_path):
    """A model that concatenates 3,000 copies of its input, called 10**3 times through three
    nested levels: few calls, but 3,000,000 tensor arguments."""
    keras2 = fmt == "keras2"
    config = nested_calls(3, 10, keras2, width=1, inner=concatenate_inside(3000, keras2))
    path = _write(config, tmp_path)
    with bounded(), pytest.raises(ConvcError, match="tensors and the lists that hold them"):
        import_file(path)


# --- shared layers and long chains -------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_alternating_shared_layers_flatten_in_linear_time(fmt, tmp_path):
    """a(b(a(b(...)))) with 2,000 calls: each layer lists 1,000 nodes, each fed by the other's
    previous call (an importer that rescans its pending calls is cubic here)."""
    path = _write(alternating(2000, keras2=fmt == "keras2"), tmp_path)
    with bounded():
        imported = import_file(path)
    nodes = imported.model.nodes
    assert [node.layer.name for node in nodes[:4]] == ["a", "b", "a", "b"]
    assert len(nodes) == 2000 and len(imported.model.layers) == 2
    assert all(
        node.inputs == (before.output,) for before, node in zip(nodes, nodes[1:], strict=False)
    )


@pytest.mark.parametrize("fmt", FORMATS)
def test_many_layers_of_one_name_are_renamed_in_linear_time(fmt, tmp_path):
    """10,000 nested models, each with a layer named 'act': act, act_1, ... act_9999."""
    path = _write(same_names(10_000, keras2=fmt == "keras2"), tmp_path)
    with bounded():
        config = json.loads(path.read_text())
        graph = flatten(config, str(path))
    assert [layer.name for layer in graph.layers[:3]] == ["act", "act_1", "act_2"]
    assert graph.layers[-1].name == "act_9999"


def test_many_refused_layers_are_described_in_linear_time(tmp_path):
    """4,000 Lambda layers: one error names each with the shapes the file records."""
    path = _write(lambdas(4000), tmp_path)
    with bounded(), pytest.raises(ConvcError, match="cannot compile 4000 things") as caught:
        import_file(path)
    assert "Lambda ('l0')" in caught.value.message
    assert "[input not recorded, output not recorded]" in caught.value.message


def test_many_placeholders_are_written_in_linear_time(tmp_path):
    """6,000 Lambda layers imported with placeholders, from a file with weights: each
    placeholder's line and recorded shapes are found without a scan of the whole model or text
    (a scan each took 30 s for 4,000)."""
    path = tmp_path / "lambdas.keras"
    keras_archive(lambdas(6000), path)
    with bounded():
        imported = import_file(path, placeholders=True)
    assert len(imported.placeholders) == 6000
    assert imported.weights is not None and imported.weights_note is None
    lines = imported.text.splitlines()
    for placeholder in imported.placeholders[:: 6000 // 7]:
        assert f'name="{placeholder.name}"' in lines[placeholder.line - 1]


def test_a_large_call_argument_multiplied_by_nesting_is_shown_once(tmp_path):
    """A 20,000-number argument of a call that the nesting makes 4,096 times: refused, each call
    named, without rendering the argument 4,096 times."""
    config = with_call_argument(nested_calls(4, 8, keras2=False), list(range(20_000)))
    path = _write(config, tmp_path)
    with bounded(), pytest.raises(ConvcError, match="cannot compile 4096 things") as caught:
        import_file(path)
    assert "it is called with scale=(0, 1, 2, 3," in caught.value.message


def test_a_sequential_of_100000_layers_flattens_and_is_written_in_seconds(tmp_path):
    """The importer's own work on a 100,000-layer Sequential read from a .keras file: reading
    the config, flattening, the check of every layer and the text. (Resolving that text is not
    bounded here: see docs/importing.md.)"""
    path = tmp_path / "long.keras"
    keras_archive(long_sequential(MAX_LAYERS), path)
    assert path.stat().st_size < 1_000_000
    with bounded(), open_model_file(path) as model_file:
        graph = flatten(model_file.config, str(path))
        assert unsupported(graph) == []
        text = write(graph, "# long", {})
    assert len(graph.applications) == MAX_LAYERS
    assert text.count("\n") == MAX_LAYERS + 3
    assert text.splitlines()[-1] == 'LeakyReLU(negative_slope=0.5, name="r99999")'


def test_a_long_sequential_imports_end_to_end(tmp_path):
    path = tmp_path / "long.keras"
    keras_archive(long_sequential(2000), path)
    with bounded():
        imported = import_file(path)
    assert len(imported.model.nodes) == 2000
    x = np.array([[-2.0, 0.5, -8.0]], np.float32)
    np.testing.assert_array_equal(_reference(imported, x), np.where(x > 0, x, 0))


def test_a_sequential_one_layer_past_the_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(graph_module, "MAX_LAYERS", 1000)
    assert len(flatten(long_sequential(1000), "long").applications) == 1000
    with pytest.raises(ConvcError, match="makes 1,001 calls of layers and nested models"):
        flatten(long_sequential(1001), "long")
