"""Keras's names: the snake_case stem of a class's automatic layer names and weight-file keys."""

from __future__ import annotations

import re


def snake_case(class_name: str) -> str:
    """Keras's ``to_snake_case``: Conv2DTranspose -> conv2d_transpose, UpSampling2D ->
    up_sampling2d."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", class_name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()
