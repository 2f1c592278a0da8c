"""Python's cycle collector, paused while convc builds a model's structures.

Parsing, resolving and importing a model allocate a few objects per layer and free almost none
until the model is built: for a 100,000-layer model, millions of long-lived objects, which the
collector walks again and again (with its default thresholds, a third of the CPU time of
importing such a model). These structures hold no reference cycles that must be collected
while they are built (each phase is bounded by the limits on its input), so the collector is
paused for the phase and resumed after it. Lowering, and loading the weights, are such phases
too; and the commands that build (``convc build``, ``summary``, ``import``) pause it for the whole
command, since resuming it between phases costs three walks of everything made so far (the
objects made while it was paused are all in its youngest generation, and each older generation
walks them again as they are promoted).
"""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


def collector_paused(function: Callable[P, R]) -> Callable[P, R]:
    """``function`` run with the cycle collector paused, resumed after (if it was running)."""

    @functools.wraps(function)
    def paused(*args: P.args, **kwargs: P.kwargs) -> R:
        if not gc.isenabled():  # paused by a caller, which resumes it
            return function(*args, **kwargs)
        gc.disable()
        try:
            return function(*args, **kwargs)
        finally:
            gc.enable()

    return paused
