"""The three registries agree, and every layer has a Keras-parity row.

A layer is one definition (``convc.layers``: a ``LayerType`` whose ``spec_class`` is its
family), one lowering (``convc.lower``: ``@lowers(Spec)``), one reference function
(``convc.reference``: ``@computes(Spec)``) and one row in the Keras-oracle tables
(``tests/cases.py`` or ``tests/graph_cases.py``). Nothing keeps these in step but this test.
"""

from __future__ import annotations

import re

import pytest
from graph_cases import GRAPH_CASES

import convc.lower  # noqa: F401  (registers every rule)
from convc import specs
from convc.layers import LAYER_TYPES
from convc.lower.registry import LOWERINGS
from convc.reference import COMPUTES

from cases import ALL_CASES

FAMILIES = sorted({t.spec_class for t in LAYER_TYPES.values()}, key=lambda c: c.__name__)
CLASS_NAMES = sorted({t.class_name for t in LAYER_TYPES.values()})
ORACLE_TEXT = "\n".join(str(p.values[0]) for p in [*ALL_CASES, *GRAPH_CASES])


def _spec_classes() -> set[type]:
    """Every concrete family spec in ``convc.specs`` (the bases excepted)."""
    bases = {specs.LayerSpec, specs.FormattedSpec, specs.SpatialSpec}
    return {
        value
        for value in vars(specs).values()
        if isinstance(value, type) and issubclass(value, specs.LayerSpec) and value not in bases
    }


@pytest.mark.parametrize("family", FAMILIES, ids=lambda c: c.__name__)
def test_every_family_has_a_lowering_and_a_reference(family):
    assert family in LOWERINGS, f"no @lowers({family.__name__}) rule in convc.lower"
    assert family in COMPUTES, f"no @computes({family.__name__}) function in convc.reference"


def test_no_rule_or_reference_without_a_layer():
    assert set(LOWERINGS) == set(FAMILIES)
    assert set(COMPUTES) == set(FAMILIES)


def test_every_spec_belongs_to_a_layer():
    unused = _spec_classes() - set(FAMILIES)
    assert not unused, f"specs no layer type uses: {sorted(c.__name__ for c in unused)}"


@pytest.mark.parametrize("class_name", CLASS_NAMES)
def test_every_layer_has_a_keras_parity_row(class_name):
    assert re.search(rf"\b{class_name}\(", ORACLE_TEXT), (
        f"{class_name} is in no case of tests/cases.py or tests/graph_cases.py, which compare "
        "convc's numbers with Keras's"
    )


def test_every_layer_names_its_keras_class():
    for layer_type in LAYER_TYPES.values():
        assert layer_type.keras_class.rsplit(".", 1)[-1] == layer_type.class_name


def test_no_layer_class_is_a_name_the_resolver_calls_otherwise():
    """The resolver takes a call of a registered class straight to the layer: that is right
    only while no class is also a function it treats otherwise (a merge function, TF1's
    lowercase layer functions, Input and Model, the static shape functions)."""
    from convc.layers.merge import MERGE_FUNCTIONS
    from convc.resolve import _SPECIAL_NAMES

    special = set(MERGE_FUNCTIONS) | set(_SPECIAL_NAMES) | {"shape", "int_shape"}
    assert not [name for name in LAYER_TYPES if name.islower() or name in special]


def test_every_layer_takes_the_common_arguments_with_keras_defaults():
    """The resolver reads an unwritten dtype, trainable, autocast or activity_regularizer as
    Keras's ``Layer.__init__`` default without binding it: right only while every signature
    has those defaults."""
    from convc.layers.args import REQUIRED

    expected = {"dtype": None, "trainable": True, "autocast": True, "activity_regularizer": None}
    for layer_type in LAYER_TYPES.values():
        defaults = {p.name: p.default for p in layer_type.signature}
        got = {name: defaults.get(name, REQUIRED) for name in expected}
        assert got == expected, layer_type.class_name


def test_the_layer_table_in_the_docs_is_the_registrys():
    from pathlib import Path

    from convc import catalog

    document = (Path(__file__).resolve().parent.parent / "docs" / "language.md").read_text()
    assert document == catalog.with_table(document), (
        "docs/language.md's layer table is stale: run python -m convc.catalog"
    )
    for class_name in CLASS_NAMES:
        assert f"`{class_name}`" in catalog.markdown_table()


def test_the_table_would_see_a_changed_signature(monkeypatch):
    from convc import catalog
    from convc.layers.args import params

    before = catalog.markdown_table()
    monkeypatch.setattr(type(LAYER_TYPES["Permute"]), "own_params", params("dims", ("extra", 1)))
    assert catalog.markdown_table() != before


def test_a_refused_layer_is_not_registered_and_its_message_lists_the_registry():
    from convc import ConvcError, catalog
    from convc.compiler import compile_text
    from convc.layers.refused import REFUSED

    assert not set(REFUSED) & set(LAYER_TYPES)
    try:
        compile_text("Input(shape=(8, 8, 3))\nConvLSTM2D(4, 3)\n")
    except ConvcError as error:
        assert "recurrent layers are not supported" in error.message
        assert error.help == f"convc compiles {catalog.compact_names()}"
        assert "UpSampling1D/2D/3D" in error.help
    else:
        raise AssertionError("ConvLSTM2D compiled")
