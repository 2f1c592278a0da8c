"""The importer hands the resolver the syntax of the text it writes (``Written.program``), so that
a large model's text is not parsed again (#23: a 100,000-layer model imports in seconds). That
syntax must be exactly what ``convc.syntax.parse`` reads from the text, spans included: then
``convc build FILE`` and ``convc build`` of ``convc import FILE`` build one model. Each case
writes a flattened config and compares the two; names and values are drawn from everything a
file may hold (quotes, backslashes, newlines, ``#``, brackets, non-ASCII and astral letters,
control characters, NUL, unpaired surrogates, huge and non-finite numbers, nests)."""

from __future__ import annotations

import copy
import json
import zipfile
from pathlib import Path

import hostile_files
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convc.diagnostics import ConvcError
from convc.importer.graph import flatten
from convc.importer.text import _string, write_text
from convc.syntax import parse

FIXTURES = Path(__file__).parent / "fixtures"
FILES = sorted((FIXTURES / "fuzz").glob("*.keras")) + sorted(
    (FIXTURES / "tf_keras_nested").glob("*.keras")
)


def _written(config: dict, shapes: dict | None = None):
    return write_text(flatten(config, "m.keras"), "# Imported by convc.", shapes or {})


def _same_as_parsed(written) -> None:
    # repr, not ==: Literal(True) == Literal(1) and Literal(1) == Literal(1.0) would pass
    assert repr(written.program) == repr(parse(written.text)), written.text


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}-{p.stem}")
def test_the_syntax_written_with_a_files_text_is_the_texts(path):
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
    written = _written(config)
    if "keras.src.ops" not in json.dumps(config):  # a Keras operation's line is parsed
        assert written.program is not None, written.text
    if written.program is not None:
        _same_as_parsed(written)


def test_a_long_sequential_is_written_with_its_syntax(tmp_path):
    path = hostile_files.long_sequential(tmp_path, layers=50)
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
    written = _written(config)
    assert written.program is not None
    assert len(written.program.statements) == 52  # the model directive, the input, 50 layers
    _same_as_parsed(written)


names = st.text(min_size=1, max_size=12)
numbers = st.one_of(
    st.integers(),
    st.integers(min_value=10**99, max_value=10**101),
    st.floats(),
    st.booleans(),
    st.none(),
)
values = st.recursive(
    st.one_of(numbers, st.text(max_size=6)),
    lambda inner: st.lists(inner, max_size=3) | st.lists(inner, max_size=3).map(tuple),
    max_leaves=12,
)


def _sequential(model: str, input_name: str, layers: list[tuple[str, object, object]]) -> dict:
    """A Sequential: an input, then Dense layers whose units and activation are drawn."""
    entries = [
        {
            "class_name": "InputLayer",
            "config": {"batch_shape": [None, 4], "dtype": "float32", "name": input_name},
        }
    ]
    for name, units, activation in layers:
        config = {"name": name, "units": units, "activation": activation, "trainable": False}
        entries.append({"class_name": "Dense", "config": config})
    return {"class_name": "Sequential", "config": {"name": model, "layers": entries}}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    model=names,
    input_name=names,
    layers=st.lists(
        st.tuples(names, values, values), min_size=1, max_size=4, unique_by=lambda t: t[0]
    ),
    shape=st.one_of(st.none(), st.lists(st.integers(min_value=-3, max_value=10**120), max_size=3)),
)
def test_a_sequential_of_any_names_and_values_is_written_with_its_syntax(
    model, input_name, layers, shape
):
    config = _sequential(model, input_name, layers)
    shapes = {input_name: tuple(shape)} if shape is not None else {}
    try:
        written = _written(config, shapes)
    except ConvcError:  # a name or value the importer refuses: nothing is written
        return
    if written.program is not None:
        _same_as_parsed(written)


def _renamed(config: dict, names: dict[str, str]) -> dict:
    """The config with each layer name of ``names`` replaced wherever it is used."""

    def walk(value):
        if isinstance(value, str):
            return names.get(value, value)
        if isinstance(value, list):
            return [walk(item) for item in value]
        if isinstance(value, dict):
            return {key: walk(item) for key, item in value.items()}
        return value

    return walk(copy.deepcopy(config))


@settings(max_examples=100, deadline=None)
@given(
    model=names,
    layer_names=st.lists(names, min_size=4, max_size=4, unique=True),
    units=values,
)
def test_a_functional_model_of_any_names_is_written_with_its_syntax(model, layer_names, units):
    config = hostile_files.keras3_config(model)
    config = _renamed(config, dict(zip(["image", "conv", "bn", "dense"], layer_names, strict=True)))
    config["config"]["layers"][3]["config"]["units"] = units
    try:
        written = _written(config)
    except ConvcError:
        return
    if written.program is not None:
        _same_as_parsed(written)


def test_names_that_read_back_otherwise_are_left_to_the_parser():
    """A name JSON writes as surrogate escapes (an astral letter) reads back as two characters,
    and one with an unpaired surrogate is refused by the parser: neither is mirrored."""
    for name in ["\U0001f600", "a\ud800"]:
        written = _written(_sequential("m", "x", [(name, 3, "relu")]))
        assert written.program is None
    written = _written(_sequential("m", "x", [('名前\n"#(', 3, "relu")]))
    assert written.program is not None
    _same_as_parsed(written)


@settings(max_examples=500, deadline=None)
@given(
    st.text(st.characters(max_codepoint=0x7F))  # quotes, backslashes, control characters, DEL
    | st.text(st.characters(blacklist_categories=()))  # any code point, surrogates included
)
def test_strings_are_written_as_json_writes_them(text):
    """The writer quotes a string that needs no escapes itself, and leaves the others to JSON."""
    assert _string(text) == json.dumps(text)
