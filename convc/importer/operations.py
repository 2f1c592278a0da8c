"""Keras operations recorded in a functional graph (``x + 3.0``, ``x * (1.0 / 6)``, ``a + b``),
as layers.

Keras 3 records arithmetic on symbolic tensors as operation nodes (module ``keras.src.ops``).
Between a tensor and a constant they are exactly a ``Rescaling``: Keras computes
``x * scale + offset`` in float32 with both cast to float32, so ``x + c`` is
``Rescaling(1.0, offset=c)`` and ``x * c`` is ``Rescaling(c)`` to the last bit (multiplying by
1.0 and adding 0.0 are exact). Between two tensors of one rank they are the merge layers
``Add``, ``Subtract`` and ``Multiply``, which broadcast as NumPy does at equal ranks (at other
ranks they do not, so that is refused). Division is refused (``x / c`` differs from
``x * (1 / c)`` in the last bit), like every operation not listed here.
"""

from __future__ import annotations

import json
from typing import Any

from convc.importer.graph import TensorRef

OPERATIONS = {"Add", "Subtract", "Multiply"}


def _constant(args: list) -> tuple[float, bool] | None:
    """The constant of a tensor-and-constant call, and whether the tensor comes first."""
    if len(args) != 2:
        return None
    first, second = args
    if isinstance(first, TensorRef) and _is_number(second):
        return float(second), True
    if isinstance(second, TensorRef) and _is_number(first):
        return float(first), False
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _two_tensors(args: list) -> bool:
    return len(args) == 2 and all(isinstance(a, TensorRef) for a in args)


def operation_problem(class_name: str, args: list, ranks: dict[TensorRef, int]) -> str | None:
    if class_name not in OPERATIONS:
        return "this Keras operation is not supported"
    if _two_tensors(args):
        known = [ranks.get(a) for a in args]
        if None not in known and known[0] != known[1]:
            return (
                f"convc compiles this operation between tensors of one rank, not {known[0]} "
                f"and {known[1]} (NumPy broadcasting, which Keras's merge layers do not follow)"
            )
        return None
    if _constant(args) is None:
        return "convc compiles this operation between a tensor and a number, or two tensors"
    return None


def render_merge(class_name: str, config: dict, names: list[str]) -> tuple[str, str]:
    """The merge layer call for an operation between two tensors, and the operation as Keras
    code."""
    name = config.get("name")
    named = f"name={json.dumps(name)}" if isinstance(name, str) else ""  # a quoted literal
    symbol = {"Add": "+", "Subtract": "-", "Multiply": "*"}[class_name]
    return f"layers.{class_name}({named})", f"{names[0]} {symbol} {names[1]}"


def render_operation(class_name: str, config: dict, args: list) -> tuple[str, str]:
    """The Rescaling call that computes the operation, and the operation as Keras code."""
    constant = _constant(args)
    assert constant is not None, "operation_problem() ran first"
    value, tensor_first = constant
    name = config.get("name")
    if class_name == "Add":
        scale, offset, shown = 1.0, value, "+"
    elif class_name == "Multiply":
        scale, offset, shown = value, 0.0, "*"
    elif tensor_first:  # x - c
        scale, offset, shown = 1.0, -value, "-"
    else:  # c - x
        scale, offset, shown = -1.0, value, "-"
    named = f", name={json.dumps(name)}" if isinstance(name, str) else ""
    source = f"{value!r} {shown} x" if not tensor_first else f"x {shown} {value!r}"
    offset_text = f", offset={offset!r}" if offset else ""
    return f"layers.Rescaling({scale!r}{offset_text}{named})", source
