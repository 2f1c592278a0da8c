"""What older Keras generations wrote, in Keras 3's terms.

A model config from Keras 2 or tf.keras has forms and arguments that Keras 3's constructors do
not take though they mean what Keras 3 means; each is translated here, in one place, before the
config is read as a graph, so that the rest of the importer sees Keras 3 configs only:

* Keras up to 2.2.2 stored a Sequential model's config as the plain list of its layers;
* tf.keras 2.x stores BatchNormalization's ``axis`` as a list of one axis (``[3]``);
* tf.keras 2.5 and later store ``groups=1`` for every convolution, including the transposed,
  depthwise and separable ones, which take no ``groups``;
* tf.keras stores a SeparableConv's unused ``kernel_*`` arguments, inherited from its base class
  (the layer draws its kernels from ``depthwise_*`` and ``pointwise_*``).

A value that would change the meaning (``groups=2`` on a transposed convolution, two axes for
BatchNormalization) is left as it is, for the importer to refuse by name.
"""

from __future__ import annotations

import re
from typing import Any

_NO_GROUPS = re.compile(
    r"Conv[123]DTranspose|Convolution[123]DTranspose|(Depthwise|Separable)Conv[12]D|SeparableConvolution[12]D"
)
_SEPARABLE = re.compile(r"SeparableConv[12]D|SeparableConvolution[12]D")
_SEPARABLE_UNUSED = ("kernel_initializer", "kernel_regularizer", "kernel_constraint")


def model_config(class_name: Any, config: Any) -> Any:
    """A model's config in Keras 3's form: a Sequential's plain list of layers (Keras up to
    2.2.2) becomes ``{"layers": [...]}``."""
    if class_name == "Sequential" and isinstance(config, list):
        return {"layers": config}
    return config


def layer_config(class_name: str, config: dict[str, Any]) -> dict[str, Any]:
    """A layer's config with the older generations' equivalent forms translated."""
    translated = dict(config)
    if class_name == "BatchNormalization":
        axis = translated.get("axis")
        if isinstance(axis, list) and len(axis) == 1:
            translated["axis"] = axis[0]
    if _NO_GROUPS.fullmatch(class_name) and translated.get("groups") == 1:
        del translated["groups"]
    if _SEPARABLE.fullmatch(class_name):
        for key in _SEPARABLE_UNUSED:
            translated.pop(key, None)
    return translated


KERAS1_ARGUMENTS = frozenset(
    {
        "nb_filter",
        "nb_row",
        "nb_col",
        "border_mode",
        "subsample",
        "dim_ordering",
        "init",
        "W_regularizer",
        "b_regularizer",
        "W_constraint",
        "b_constraint",
    }
)
"""Arguments only Keras 1 wrote (Keras 2 renamed them: filters, kernel_size, padding, strides,
data_format, units, kernel_initializer, ...)."""


def keras1_evidence(model_config: Any, keras_version: str | None) -> str | None:
    """Why the file looks written by Keras 1 (its version, or the Keras 1 argument names in its
    layers' configs), or None."""
    found: set[str] = set()
    stack = [model_config]
    seen = 0
    while stack and seen < 1_000_000:
        value = stack.pop()
        seen += 1
        if isinstance(value, dict):
            config = value.get("config")
            if isinstance(config, dict):
                found |= KERAS1_ARGUMENTS & set(config)
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    reasons = []
    if keras_version and keras_version.startswith("1."):
        reasons.append(f"keras_version {keras_version!r}")
    if found:
        reasons.append("Keras 1 arguments " + ", ".join(sorted(found)))
    return "; ".join(reasons) or None
