"""What convc builds is freed when it is dropped, without the cycle collector (#23, item 3).

convc pauses Python's cycle collector while it builds (``convc.collector``). Structures held in
a reference cycle then outlive their use until the collector walks them, and that walk costs
in proportion to all a model made: for a 100,000-layer model, a second or more at the end of a
command. These tests drop what each step made and count what only the collector could free;
none of it may be convc's, whatever the model's size.
"""

from __future__ import annotations

import contextlib
import gc
from collections import Counter
from collections.abc import Callable

import pytest
from hostile_files import long_sequential

from convc import api
from convc.compiler import compile_text, resolve_text
from convc.diagnostics import ConvcError
from convc.importer import import_file

PROGRAM = """\
model program
inputs = Input(shape=(8, 8, 3))

def block(x, filters):
    y = Conv2D(filters, 3, padding="same", activation="relu")(x)
    return Add()([x, Conv2D(filters, 1)(y)])

x = Conv2D(4, 1)(inputs)
for i in range({depth}):
    x = block(x, 4)
shared = Dense(4)
outputs = Concatenate()([shared(x), shared(x)])
model = keras.Model(inputs, outputs)
"""

SEQUENTIAL = """\
stack = keras.Sequential()
stack.add(Input(shape=(6, 6, 2)))
for i in range({depth}):
    stack.add(Conv2D(2, 3, padding="same"))
"""


def cyclic_garbage(work: Callable[[], object]) -> Counter[str]:
    """The types of the objects that ``work`` left for the cycle collector, by qualified name
    with their module."""
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        work()
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        found = Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if was_enabled:
            gc.enable()
    return found


def convc_garbage(work: Callable[[], object]) -> Counter[str]:
    return Counter(
        {name: n for name, n in cyclic_garbage(work).items() if name.startswith("convc.")}
    )


@pytest.mark.parametrize("depth", [1, 12])
@pytest.mark.parametrize("program", [PROGRAM, SEQUENTIAL], ids=["functional", "sequential"])
def test_resolving_and_building_leave_no_cycles(program: str, depth: int):
    text = program.format(depth=depth)
    assert convc_garbage(lambda: resolve_text(text)) == Counter()
    assert convc_garbage(lambda: compile_text(text)) == Counter()


@pytest.mark.parametrize(
    ("mistake", "message"),
    [
        ("Add(nonsense=1)", "nonsense"),
        # raised while the evaluator handles Python's KeyError: kept as its context
        ('{"a": Add}["b"]()', "'b'"),
    ],
)
def test_a_failed_program_leaves_no_cycles(mistake: str, message: str):
    text = PROGRAM.format(depth=2).replace("Add()", mistake)
    with pytest.raises(ConvcError, match=message):
        resolve_text(text)

    def fail() -> None:
        with contextlib.suppress(ConvcError):
            resolve_text(text)

    assert convc_garbage(fail) == Counter()


def test_importing_and_building_a_model_file_leave_no_cycles(tmp_path):
    path = long_sequential(tmp_path, layers=300)
    assert convc_garbage(lambda: import_file(path)) == Counter()
    assert convc_garbage(lambda: api.build(path)) == Counter()


def test_the_check_sees_cycles():
    """The check fails on a structure that keeps itself alive."""

    class Node:
        def __init__(self) -> None:
            self.me = self

    def make() -> None:
        Node()

    assert cyclic_garbage(make)[f"{Node.__module__}.{Node.__qualname__}"] == 1
