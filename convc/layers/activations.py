"""The activation names Keras 3 accepts, and how an ``activation=`` argument is read.

Keras looks a string up case-sensitively in ``keras.activations``; ``None`` means linear. convc
also knows the older generations' definitions of names that Keras 3 redefined
(``KERAS2_DEFINITIONS``), which imported Keras 1 and 2 files use. Code
pasted from TF programs also names activations as attributes (``tf.nn.relu``,
``keras.activations.gelu``), which this reads the same way. Lowering and the reference hold the
formulas; this module only knows the names.
"""

from __future__ import annotations

import difflib

from convc.diagnostics import ConvcError
from convc.syntax import Literal, Reference, Value

ACTIVATIONS = (
    "linear",
    "relu",
    "relu6",
    "leaky_relu",
    "elu",
    "selu",
    "celu",
    "sigmoid",
    "tanh",
    "softmax",
    "log_softmax",
    "gelu",
    "silu",
    "hard_sigmoid",
    "hard_silu",
    "softplus",
    "softsign",
    "exponential",
    "mish",
    "log_sigmoid",
    "hard_tanh",
    "tanh_shrink",
    "soft_shrink",
    "hard_shrink",
    "squareplus",
    "sparse_sigmoid",
    "sparse_plus",
    "glu",
    "sparsemax",
    "threshold",
)
"""Every name in ``keras.activations.ALL_OBJECTS``."""

KERAS2_DEFINITIONS = ("hard_sigmoid_keras2",)
"""convc's names for what Keras 1, Keras 2 and tf.keras meant by a name whose definition Keras 3
changed: ``hard_sigmoid_keras2`` is their ``hard_sigmoid``, ``clip(0.2 x + 0.5, 0, 1)`` (Keras 3's
is ``clip(x / 6 + 0.5, 0, 1)``). A model file of those generations is imported with them
(``convc.importer.generations``); Keras itself does not know them."""

ALIASES = {"swish": "silu", "hard_swish": "hard_silu"}

_MODULES = {"keras.activations", "activations", "tf.keras.activations", "tf.nn", "tf.math", "tf"}
"""Prefixes under which a bare activation function may be named."""


def parse_activation(value: Value | None) -> str:
    """The canonical Keras activation name that an ``activation=`` value selects."""
    if value is None or isinstance(value, Literal) and value.value is None:
        return "linear"
    if isinstance(value, Literal) and isinstance(value.value, str):
        name = value.value
        canonical = ALIASES.get(name, name)
        if canonical not in ACTIVATIONS and canonical not in KERAS2_DEFINITIONS:
            raise ConvcError(
                f"unknown activation {name!r}", value.span, help=_suggestion(name, case_hint=True)
            )
    elif isinstance(value, Reference):
        module, _, name = value.name.rpartition(".")
        canonical = ALIASES.get(name, name)
        if module not in _MODULES or canonical not in ACTIVATIONS:
            raise ConvcError(
                f"unknown activation '{value.name}'",
                value.span,
                help="name a Keras activation, e.g. 'relu' or keras.activations.relu",
            )
    else:
        raise ConvcError(
            "'activation' must be the name of a Keras activation, e.g. 'relu'",
            value.span,
        )
    if canonical == "threshold":
        raise ConvcError(
            "activation 'threshold' needs 'threshold' and 'default_value' arguments, which an "
            "activation= argument cannot pass (Keras fails at call time)",
            value.span,
            help="use 'relu' for a threshold at zero",
        )
    return canonical


def _suggestion(name: str, case_hint: bool) -> str | None:
    names = sorted(set(ACTIVATIONS) | set(ALIASES) | set(KERAS2_DEFINITIONS))
    if case_hint and name.lower() in names:
        return f"activation names are case-sensitive: did you mean {name.lower()!r}?"
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else None
