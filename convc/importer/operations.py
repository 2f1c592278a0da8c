"""Keras operations recorded in a functional graph (``x + 3.0``, ``x * (1.0 / 6)``), as layers.

Keras 3 records arithmetic on symbolic tensors as operation nodes (module ``keras.src.ops``).
Those convc compiles are a tensor and a constant, which are exactly a ``Rescaling``: Keras
computes ``x * scale + offset`` in float32 with both cast to float32, so ``x + c`` is
``Rescaling(1.0, offset=c)`` and ``x * c`` is ``Rescaling(c)`` to the last bit (multiplying by
1.0 and adding 0.0 are exact). Division is not (``x / c`` differs from ``x * (1 / c)`` in the
last bit), so it is refused, like every operation not listed here.
"""

from __future__ import annotations

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


def operation_problem(class_name: str, args: list) -> str | None:
    if class_name not in OPERATIONS:
        return "this Keras operation is not supported"
    if _constant(args) is None:
        return "convc compiles this operation only between a tensor and a constant number"
    return None


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
    named = f", name={name!r}".replace("'", '"') if isinstance(name, str) else ""
    source = f"{value!r} {shown} x" if not tensor_first else f"x {shown} {value!r}"
    offset_text = f", offset={offset!r}" if offset else ""
    return f"layers.Rescaling({scale!r}{offset_text}{named})", source
