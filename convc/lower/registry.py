"""The lowering registry: one rule per layer family, registered beside it by its spec class.

A rule takes the emitter, one application of a layer (``convc.model.Node``), its input value
(a list of values for a layer called on a list) and the layer's weights in Keras's layouts, and
returns its output value. ``@lowers(ConvSpec)`` registers a rule; ``any_layout=True`` says it
works in whatever physical order its input has, so the driver hands it the input as it is
instead of in Keras's order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from convc.lower.emitter import Emitter, Value
from convc.model import Node
from convc.specs import LayerSpec

Weights = dict[str, np.ndarray]
Rule = Callable[[Emitter, Node, Any, Weights], Value]
RuleT = TypeVar("RuleT", bound=Rule)


@dataclass(frozen=True)
class Lowering:
    rule: Rule
    any_layout: bool


LOWERINGS: dict[type[LayerSpec], Lowering] = {}


def lowers(spec_class: type[LayerSpec], *, any_layout: bool = False) -> Callable[[RuleT], RuleT]:
    """Register the decorated function as the rule of ``spec_class``'s family."""

    def register(rule: RuleT) -> RuleT:
        if spec_class in LOWERINGS:
            raise RuntimeError(f"two lowering rules for {spec_class.__name__}")
        LOWERINGS[spec_class] = Lowering(rule, any_layout)
        return rule

    return register


def lowering_of(spec: LayerSpec) -> Lowering:
    return LOWERINGS[type(spec)]
