"""``fast_init`` gives a frozen dataclass an ``__init__`` that does what the dataclass's own
does: the same signature, and the same fields set to the same objects."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil

import pytest

import convc
from convc.records import FACTORY, FAST_INIT_CLASSES, fast_init


def _import_everything() -> list[type]:
    for module in pkgutil.walk_packages(convc.__path__, "convc."):
        if module.name not in ("convc.__main__", "convc.hdf5_worker"):
            importlib.import_module(module.name)
    return list(FAST_INIT_CLASSES)


CLASSES = _import_everything()


def _dataclass_signature(cls: type) -> inspect.Signature:
    """The dataclass ``__init__``'s signature as the rewritten one has it: no annotations, and
    the factory marker where dataclasses shows its own."""
    signature = inspect.signature(cls.__dataclass_init__)  # type: ignore[attr-defined]
    parameters = []
    for p in signature.parameters.values():
        default = p.default
        if repr(default) == "<factory>":
            default = FACTORY
        parameters.append(p.replace(annotation=inspect.Parameter.empty, default=default))
    return signature.replace(parameters=parameters, return_annotation=inspect.Signature.empty)


def _both(cls: type, *args, **kwargs) -> tuple[object, object]:
    fast = cls(*args, **kwargs)
    slow = object.__new__(cls)
    cls.__dataclass_init__(slow, *args, **kwargs)  # type: ignore[attr-defined]
    return fast, slow


def test_the_hot_classes_are_rewritten():
    names = {cls.__qualname__ for cls in CLASSES}
    assert {"Layer", "Node", "Tensor", "ModelInput", "Bound", "Built", "Call", "Literal"} <= names


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: f"{c.__module__}.{c.__qualname__}")
def test_fast_init_has_the_dataclass_signature_and_fields(cls):
    assert inspect.signature(cls.__init__) == _dataclass_signature(cls)
    values = {}
    for index, parameter in enumerate(inspect.signature(cls).parameters.values()):
        if parameter.default is inspect.Parameter.empty:
            values[parameter.name] = object()  # each field's value, told apart by identity
        elif index % 2:
            values[parameter.name] = object()  # half the defaulted fields given, too
    fast, slow = _both(cls, **values)
    assert fast.__dict__.keys() == slow.__dict__.keys()
    for name, value in slow.__dict__.items():
        if name in values:
            assert fast.__dict__[name] is value
        else:  # a default, or a new object from the field's factory
            assert fast.__dict__[name] == value and type(fast.__dict__[name]) is type(value)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.__setattr__("any_name", 1)


def test_defaults_factories_keyword_only_and_post_init():
    @fast_init
    @dataclasses.dataclass(frozen=True)
    class Example:
        a: int
        b: int = 2
        c: list = dataclasses.field(default_factory=list)
        d: int = dataclasses.field(default=4, init=False)
        e: int = dataclasses.field(default=5, kw_only=True)
        f: int = dataclasses.field(kw_only=True, default_factory=lambda: 6)

        def __post_init__(self):
            object.__setattr__(self, "g", self.a + self.b)

    fast, slow = _both(Example, 1)
    # d is the class's attribute, as the dataclass leaves it
    assert fast == slow and fast.__dict__ == slow.__dict__ == dict(a=1, b=2, c=[], e=5, f=6, g=3)
    assert fast.d == 4
    assert fast.c is not Example(1).c  # a new list each time, as the factory makes it
    assert Example(1, 3, [7], e=8, f=9).__dict__ == dict(a=1, b=3, c=[7], e=8, f=9, g=4)
    with pytest.raises(TypeError):
        Example()
    with pytest.raises(TypeError):
        Example(1, 2, [], 5)  # e is keyword-only
    with pytest.raises(TypeError):
        Example(1, d=4)  # d is no parameter
    assert repr(fast) == repr(slow)


def test_fast_init_refuses_what_it_cannot_rewrite():
    @dataclasses.dataclass
    class Plain:
        a: int

    @dataclasses.dataclass(frozen=True, slots=True)
    class Slotted:
        a: int

    @dataclasses.dataclass(frozen=True)
    class WithInitVar:
        a: dataclasses.InitVar[int]

    @dataclasses.dataclass(frozen=True)
    class NamedSelf:
        self: int

    @dataclasses.dataclass(frozen=True, init=False)
    class OwnInit:
        a: int

        def __init__(self):
            object.__setattr__(self, "a", 1)

    for cls in (Plain, Slotted, WithInitVar, NamedSelf, OwnInit):
        with pytest.raises(TypeError):
            fast_init(cls)
