"""``convc summary``'s table: names from a file are escaped before the columns are measured, so
that an escaped name keeps the table aligned. The summary skips escaping where no cell needs it
(#23: a 100,000-layer model's summary); these cases hold names that do need it, and names that
``isprintable`` refuses but ``printable`` keeps (a no-break space, a line separator)."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from convc.diagnostics import ConvcError, printable
from convc.resolve import resolve_text
from convc.summary import summary


def _rows(table: str) -> list[str]:
    """The layer rows: the lines between the second and the third rule."""
    lines = table.split("\n")
    rules = [index for index, line in enumerate(lines) if line and set(line) == {"="}]
    return lines[rules[1] + 1 : rules[2]]


def _sequential(names: list[str]) -> str:
    calls = "".join(f"Dense(3, name={name!r})\n" for name in names)
    return "Input(shape=(4,))\n" + calls


def _assert_aligned(table: str, names: list[str]) -> None:
    rows = _rows(table)
    assert len(rows) == len(names)
    for row, name in zip(rows, names, strict=True):
        assert row.startswith(f" {printable(name)} (Dense)")
    # every row's shape starts in the same column, the escaped names measured
    assert len({row.index("(None, 3)") for row in rows}) == 1, table


NAMES = {
    "escape-sequence": "a\x1b[31mred\u202e",
    "nul-and-tab": "nul\x00tab\t",
    "no-break-space": "no\u00a0break",  # not isprintable, kept by printable
    "line-separator": "line\u2028separator",  # not isprintable, kept by printable
    "long-escaped": "\x1b" * 12,  # wider than 30 columns once escaped, not before
}


@pytest.mark.parametrize("name", NAMES.values(), ids=NAMES.keys())
def test_an_escaped_name_keeps_the_table_aligned(name):
    names = ["plain", name, "also_plain"]
    table = summary(resolve_text(_sequential(names)))
    _assert_aligned(table, names)
    assert "\x1b" not in table and "\x00" not in table


def test_an_escaped_name_in_connected_to_is_escaped():
    text = (
        "import keras\nfrom keras import layers\n"
        'x = keras.Input(shape=(4,), name="in\\x1b")\n'
        'a = layers.Dense(4, name="a\\x1b")(x)\n'
        "b = layers.Add()([x, a])\n"
        "model = keras.Model(x, b)\n"
    )
    table = summary(resolve_text(text))
    assert "Connected to" in table and "\x1b" not in table
    assert "in\\x1b[0][0], a\\x1b[0][0]" in table


# any character but a line break (which the table keeps), '/' (which a layer name cannot hold)
# and a surrogate (which a string in the text cannot)
_NAMES = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\n/"), min_size=1, max_size=10
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_NAMES, min_size=1, max_size=4, unique=True))
def test_any_names_keep_the_table_aligned(names):
    try:
        model = resolve_text(_sequential(names))
    except ConvcError:  # a name the resolver refuses (the input's own, an unpaired surrogate)
        assume(False)
    _assert_aligned(summary(model), names)
