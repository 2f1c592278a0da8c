"""Layers whose inference output is their input: Dropout and the other noise layers,
ActivityRegularization, and Keras 3's random image augmentation layers.

Each was called in Keras 3.15.1 (torch) with ``training=False``, in a model and by
``predict``, and returned its input unchanged (tests/test_core_layers.py keeps that check).
They compile to nothing: the node's output is its input's value. Their constructor arguments are
still checked as Keras's constructors check them (``keras/src/layers/regularization/``,
``layers/preprocessing/image_preprocessing/``), and recorded.

``RandomCrop`` is the exception: at inference Keras returns its input uncropped while its output
shape says ``(height, width)``, so only an input of that size is a model both can agree on; any
other is refused. Layers that compute at inference (``AutoContrast``, ``Equalization``,
``Resizing``, ``CenterCrop`` ...) are not here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from convc.diagnostics import ConvcError
from convc.layers.args import Bound, Param, choice_arg, params, shown
from convc.layers.base import DATA_FORMATS, Built, LayerType, register
from convc.model import Shape, format_shape
from convc.specs import PassThroughSpec

Checked = dict[str, Any]
Check = Callable[[Bound, str], Checked]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float)


def _fail(args: Bound, name: str, text: str) -> ConvcError:
    return ConvcError(f"{text}, got {name}={shown(args.python(name))}", args.span(name))


def _unit_interval(args: Bound, name: str) -> float:
    """Keras's ``if not 0 <= rate <= 1``."""
    value = args.python(name)
    if not _is_number(value) or not 0 <= value <= 1:
        raise _fail(args, name, f"'{name}' must be a number between 0 and 1")
    return float(value)


def _seed(args: Bound, needed: bool = True) -> int | None:
    """A ``SeedGenerator``'s seed: an integer or None (only checked where Keras makes one)."""
    seed = args.python("seed")
    if needed and seed is not None and not isinstance(seed, int):
        raise _fail(args, "seed", "'seed' must be an integer or None")
    return seed


def _data_format(args: Bound, default: str) -> str:
    if args.python("data_format") is None:
        return default
    value = args.python("data_format")
    if not isinstance(value, str):
        raise _fail(args, "data_format", f"'data_format' must be one of {DATA_FORMATS}")
    return choice_arg(args, "data_format", DATA_FORMATS)


def _noise_shape(args: Bound) -> tuple | None:
    """Dropout's ``_validate_noise_shape``: None, or a tuple of positive ints and Nones."""
    value = args.python("noise_shape")
    if value is None:
        return None
    if not isinstance(value, tuple | list):
        raise _fail(args, "noise_shape", "'noise_shape' must be a tuple or list of integers")
    for dim in value:
        if dim is not None and (not isinstance(dim, int) or dim <= 0):
            raise _fail(
                args,
                "noise_shape",
                "every entry of 'noise_shape' must be a positive integer or None",
            )
    return tuple(value)


def _penalty(args: Bound, name: str) -> float:
    """``validate_float_arg`` of the L1L2 regularizer (None means 0)."""
    value = args.python(name)
    if value is None:
        return 0.0
    if not _is_number(value) or not math.isfinite(value) or value < 0:
        raise _fail(args, name, f"'{name}' must be a non-negative number")
    return float(value)


def _factor(args: Bound, name: str, bounds: tuple[float, float], *, or_zero: bool = False):
    """``BaseImagePreprocessingLayer._set_factor``: a number within ``bounds``, or a pair whose
    first entry is at most the upper bound and whose second is at least the lower one."""
    value = args.python(name)
    if or_zero and not value:
        value = 0.0
    low, high = bounds
    text = f"'{name}' must be a number or a pair of numbers in [{low}, {high}]"
    if isinstance(value, tuple | list):
        if len(value) != 2 or not all(_is_number(v) for v in value):
            raise _fail(args, name, text)
        if value[0] > high or value[1] < low:
            raise _fail(args, name, text)
        return tuple(sorted(value))
    if not _is_number(value) or not low <= value <= high:
        raise _fail(args, name, text)
    return (max(-abs(value), low), abs(value))


def _ranged(args: Bound, name: str, ok: Callable[[float], bool], words: str):
    """The ``_set_factor(factor, name)`` of RandomZoom, RandomTranslation and RandomShear: a
    number or a pair, every number within range."""
    value = args.python(name)
    items = list(value) if isinstance(value, tuple | list) else [value]
    if isinstance(value, tuple | list) and len(value) != 2:
        raise _fail(args, name, f"'{name}' must be a number or a pair of numbers {words}")
    if not all(_is_number(v) and ok(v) for v in items):
        raise _fail(args, name, f"'{name}' must be a number or a pair of numbers {words}")
    return tuple(sorted(items)) if len(items) == 2 else (-abs(items[0]), abs(items[0]))


def _value_range(args: Bound) -> tuple:
    value = args.python("value_range")
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise _fail(args, "value_range", "'value_range' must be a list of two numbers")
    if not all(_is_number(v) for v in value):
        raise _fail(args, "value_range", "'value_range' must be a list of two numbers")
    return tuple(sorted(value))


def _one_of(args: Bound, name: str, choices: tuple[str, ...]) -> str:
    value = args.python(name)
    if value not in choices:
        raise _fail(args, name, f"'{name}' must be one of {', '.join(map(repr, choices))}")
    return value


def _kernel_size(args: Bound) -> tuple:
    """RandomGaussianBlur's odd kernel size (a number or a pair)."""
    value = args.python("kernel_size")
    items = list(value) if isinstance(value, tuple | list) else [value]
    if isinstance(value, tuple | list) and len(value) != 2:
        raise _fail(args, "kernel_size", "'kernel_size' must be a number or a pair of numbers")
    if not all(_is_number(v) and v % 2 != 0 for v in items):
        raise _fail(args, "kernel_size", "'kernel_size' must be an odd number")
    return tuple(items) if len(items) == 2 else (items[0], items[0])


# ---------------------------------------------------------------------------------------------
# The regularization layers


def _dropout(args: Bound, default: str) -> Checked:
    rate = _unit_interval(args, "rate")
    return {"rate": rate, "noise_shape": _noise_shape(args), "seed": _seed(args, rate > 0)}


def _spatial_dropout(args: Bound, default: str) -> Checked:
    rate = _unit_interval(args, "rate")
    checked: Checked = {"rate": rate}
    if "data_format" in args.values or "data_format" in args.defaults:
        checked["data_format"] = _data_format(args, default)
    checked["seed"] = _seed(args, rate > 0)
    return checked


def _gaussian_noise(args: Bound, default: str) -> Checked:
    stddev = _unit_interval(args, "stddev")
    return {"stddev": stddev, "seed": _seed(args, stddev > 0)}


def _gaussian_dropout(args: Bound, default: str) -> Checked:
    rate = _unit_interval(args, "rate")
    return {"rate": rate, "seed": _seed(args, rate > 0)}


def _alpha_dropout(args: Bound, default: str) -> Checked:
    rate = _unit_interval(args, "rate")  # AlphaDropout does not check its noise_shape
    return {"rate": rate, "noise_shape": args.python("noise_shape"), "seed": _seed(args, rate > 0)}


def _activity_regularization(args: Bound, default: str) -> Checked:
    if args.given("activity_regularizer"):
        raise ConvcError(
            "ActivityRegularization sets its own activity_regularizer (L1L2(l1, l2)); it "
            "cannot also be given one",
            args.span("activity_regularizer"),
        )
    return {"l1": _penalty(args, "l1"), "l2": _penalty(args, "l2")}


# ---------------------------------------------------------------------------------------------
# The random image augmentation layers


def _image_checks(*steps: Callable[[Bound], tuple[str, Any]]) -> Check:
    def check(args: Bound, default: str) -> Checked:
        checked: Checked = {"data_format": _data_format(args, default)}
        for step in steps:
            name, value = step(args)
            checked[name] = value
        return checked

    return check


def _base_factor_keyword(use_base_factor: bool) -> Callable[[Bound], tuple[str, Any]]:
    """The ``factor`` keyword of a layer without a factor parameter of its own: refused by the
    layers that do not use the base factor, checked in [-1, 1] by the others."""

    def step(args: Bound) -> tuple[str, Any]:
        if not use_base_factor:
            if args.python("factor") is not None:
                raise _fail(args, "factor", f"{args.call.short_name} takes no 'factor' argument")
            return "factor", None
        return "factor", _factor(args, "factor", (-1, 1), or_zero=True)

    return step


def _own_factor(bounds: tuple[float, float], *, or_zero: bool = False):
    return lambda args: ("factor", _factor(args, "factor", bounds, or_zero=or_zero))


def _named_factor(name: str, bounds: tuple[float, float]):
    return lambda args: (name, _factor(args, name, bounds))


def _seed_step(args: Bound) -> tuple[str, Any]:
    return "seed", _seed(args)


def _value_range_step(args: Bound) -> tuple[str, Any]:
    return "value_range", _value_range(args)


def _optional_value_range(args: Bound) -> tuple[str, Any]:
    given = args.python("value_range") is not None
    return "value_range", _value_range(args) if given else None


def _recorded(name: str):
    return lambda args: (name, args.python(name))


_FILL_MODES = ("reflect", "wrap", "constant", "nearest")
_INTERPOLATIONS = ("nearest", "bilinear")


def _choice_step(name: str, choices: tuple[str, ...]):
    return lambda args: (name, _one_of(args, name, choices))


def _zoom_factor(name: str):
    def step(args: Bound) -> tuple[str, Any]:
        if name == "width_factor" and args.python(name) is None:
            return name, None
        return name, _ranged(args, name, lambda v: -1.0 < v <= 1.0, "in (-1, 1]")

    return step


def _translation_factor(name: str):
    return lambda args: (name, _ranged(args, name, lambda v: -1.0 <= v <= 1.0, "in [-1, 1]"))


def _shear_factor(name: str):
    return lambda args: (name, _ranged(args, name, lambda v: 0.0 <= v <= 1.0, "in [0, 1]"))


def _grayscale_factor(args: Bound) -> tuple[str, Any]:
    value = args.python("factor")
    if not _is_number(value) or value < 0 or value > 1:
        raise _fail(args, "factor", "'factor' must be a number between 0 and 1")
    return "factor", float(value)


def _perspective_scale(args: Bound) -> tuple[str, Any]:
    value = args.python("scale")
    if not _is_number(value) or value < 0.0 or value > 1.0:
        raise _fail(args, "scale", "'scale' must be a number in [0, 1]")
    return "scale", float(value)


def _jitter_parts(args: Bound) -> tuple[str, Any]:
    """RandomColorJitter builds a RandomBrightness, RandomContrast, RandomSaturation and
    RandomHue for the factors given, with its value_range and seed: their checks apply."""
    bounds = {
        "brightness_factor": ((-1, 1), True),
        "contrast_factor": ((0, 1), False),
        "saturation_factor": ((-1, 1), False),
        "hue_factor": ((0, 1), False),
    }
    parts = {}
    for name, (limits, or_zero) in bounds.items():
        if args.python(name) is not None:
            parts[name] = _factor(args, name, limits, or_zero=or_zero)
            if name == "brightness_factor":
                _value_range(args)
    return "factors", parts


_IMAGE_LAYERS: dict[str, tuple[tuple[Param, ...], tuple[str, ...], Check]] = {
    # class: (own parameters in Keras's order, extra keyword parameters, checks)
    "RandomFlip": (
        params(("mode", "horizontal_and_vertical"), ("seed", None), ("data_format", None)),
        ("factor",),
        _image_checks(_base_factor_keyword(False), _seed_step, _recorded("mode")),
    ),
    "RandomRotation": (
        params(
            "factor",
            ("fill_mode", "reflect"),
            ("interpolation", "bilinear"),
            ("seed", None),
            ("fill_value", 0.0),
            ("data_format", None),
        ),
        ("value_range",),  # Keras 3.0-3.5 had it (default (0, 255)); files of theirs carry it
        _image_checks(
            _own_factor((-1, 1), or_zero=True),
            _seed_step,
            _choice_step("fill_mode", _FILL_MODES),
            _choice_step("interpolation", _INTERPOLATIONS),
            _recorded("fill_value"),
            _optional_value_range,
        ),
    ),
    "RandomZoom": (
        params(
            "height_factor",
            ("width_factor", None),
            ("fill_mode", "reflect"),
            ("interpolation", "bilinear"),
            ("seed", None),
            ("fill_value", 0.0),
            ("data_format", None),
        ),
        ("factor",),
        _image_checks(
            _base_factor_keyword(False),
            _zoom_factor("height_factor"),
            _zoom_factor("width_factor"),
            _choice_step("fill_mode", _FILL_MODES),
            _choice_step("interpolation", _INTERPOLATIONS),
            _seed_step,
            _recorded("fill_value"),
        ),
    ),
    "RandomTranslation": (
        params(
            "height_factor",
            "width_factor",
            ("fill_mode", "reflect"),
            ("interpolation", "bilinear"),
            ("seed", None),
            ("fill_value", 0.0),
            ("data_format", None),
        ),
        ("factor",),
        _image_checks(
            _base_factor_keyword(False),
            _translation_factor("height_factor"),
            _translation_factor("width_factor"),
            _choice_step("fill_mode", _FILL_MODES),
            _choice_step("interpolation", _INTERPOLATIONS),
            _seed_step,
            _recorded("fill_value"),
        ),
    ),
    "RandomContrast": (
        params("factor", ("value_range", (0, 255)), ("seed", None)),
        ("data_format",),
        _image_checks(_own_factor((0, 1)), _recorded("value_range"), _seed_step),
    ),
    "RandomBrightness": (
        params("factor", ("value_range", (0, 255)), ("seed", None)),
        ("data_format",),
        _image_checks(_own_factor((-1, 1), or_zero=True), _seed_step, _value_range_step),
    ),
    "RandomColorDegeneration": (
        params("factor", ("value_range", (0, 255)), ("data_format", None), ("seed", None)),
        (),
        _image_checks(_own_factor((-1, 1)), _value_range_step, _seed_step),
    ),
    "RandomColorJitter": (
        params(
            ("value_range", (0, 255)),
            ("brightness_factor", None),
            ("contrast_factor", None),
            ("saturation_factor", None),
            ("hue_factor", None),
            ("seed", None),
            ("data_format", None),
        ),
        ("factor",),
        _image_checks(_base_factor_keyword(True), _seed_step, _jitter_parts),
    ),
    "RandomElasticTransform": (
        params(
            ("factor", 1.0),
            ("scale", 1.0),
            ("interpolation", "bilinear"),
            ("fill_mode", "reflect"),
            ("fill_value", 0.0),
            ("value_range", (0, 255)),
            ("seed", None),
            ("data_format", None),
        ),
        (),
        _image_checks(
            _own_factor((0, 1)),
            _named_factor("scale", (0, 1)),
            _seed_step,
            _choice_step("interpolation", _INTERPOLATIONS),
            _choice_step("fill_mode", ("constant", "nearest", "wrap", "mirror", "reflect")),
            _recorded("value_range"),
        ),
    ),
    "RandomErasing": (
        params(
            ("factor", 1.0),
            ("scale", (0.02, 0.33)),
            ("fill_value", None),
            ("value_range", (0, 255)),
            ("seed", None),
            ("data_format", None),
        ),
        (),
        _image_checks(
            _own_factor((0, 1)),
            _named_factor("scale", (0, 1)),
            _seed_step,
            _recorded("fill_value"),
            _recorded("value_range"),
        ),
    ),
    "RandomGaussianBlur": (
        params(
            ("factor", 1.0),
            ("kernel_size", 3),
            ("sigma", 1.0),
            ("value_range", (0, 255)),
            ("data_format", None),
            ("seed", None),
        ),
        (),
        _image_checks(
            _own_factor((0, 1)),
            lambda args: ("kernel_size", _kernel_size(args)),
            _named_factor("sigma", (0, 1)),
            _seed_step,
            _recorded("value_range"),
        ),
    ),
    "RandomGrayscale": (
        params(("factor", 0.5), ("data_format", None), ("seed", None)),
        (),
        _image_checks(_grayscale_factor, _seed_step),
    ),
    "RandomHue": (
        params("factor", ("value_range", (0, 255)), ("data_format", None), ("seed", None)),
        (),
        _image_checks(_own_factor((0, 1)), _recorded("value_range"), _seed_step),
    ),
    "RandomInvert": (
        params(("factor", 1.0), ("value_range", (0, 255)), ("seed", None), ("data_format", None)),
        (),
        _image_checks(_own_factor((0, 1)), _recorded("value_range"), _seed_step),
    ),
    "RandomPerspective": (
        params(
            ("factor", 1.0),
            ("scale", 1.0),
            ("interpolation", "bilinear"),
            ("fill_value", 0.0),
            ("seed", None),
            ("data_format", None),
        ),
        (),
        _image_checks(
            _own_factor((0, 1)),
            _seed_step,
            _perspective_scale,
            _choice_step("interpolation", _INTERPOLATIONS),
            _recorded("fill_value"),
        ),
    ),
    "RandomPosterization": (
        params("factor", ("value_range", (0, 255)), ("data_format", None), ("seed", None)),
        (),
        _image_checks(_own_factor((1, 8)), _value_range_step, _seed_step),
    ),
    "RandomSaturation": (
        params("factor", ("value_range", (0, 255)), ("data_format", None), ("seed", None)),
        (),
        _image_checks(_own_factor((-1, 1)), _value_range_step, _seed_step),
    ),
    "RandomSharpness": (
        params("factor", ("value_range", (0, 255)), ("data_format", None), ("seed", None)),
        (),
        _image_checks(_own_factor((0, 1)), _value_range_step, _seed_step),
    ),
    "RandomShear": (
        params(
            ("x_factor", 0.0),
            ("y_factor", 0.0),
            ("interpolation", "bilinear"),
            ("fill_mode", "reflect"),
            ("fill_value", 0.0),
            ("data_format", None),
            ("seed", None),
        ),
        ("factor",),
        _image_checks(
            _base_factor_keyword(False),
            _shear_factor("x_factor"),
            _shear_factor("y_factor"),
            _choice_step("fill_mode", _FILL_MODES),
            _choice_step("interpolation", _INTERPOLATIONS),
            _seed_step,
            _recorded("fill_value"),
        ),
    ),
    "RandomCrop": (
        params("height", "width", ("seed", None), ("data_format", None), ("name", None)),
        ("factor",),
        _image_checks(
            _base_factor_keyword(True),
            lambda args: ("height", _positive(args, "height")),
            lambda args: ("width", _positive(args, "width")),
            _seed_step,
        ),
    ),
}
"""Keras 3.15.1's random image augmentation layers (every ``keras.layers.Random*`` class)."""


def _positive(args: Bound, name: str) -> int:
    value = args.python(name)
    if not isinstance(value, int) or value <= 0:
        raise _fail(args, name, f"'{name}' must be a positive integer")
    return int(value)


class PassThrough(LayerType[PassThroughSpec]):
    """A layer that computes nothing at inference."""

    spec_class = PassThroughSpec

    def __init__(
        self,
        class_name: str,
        own: tuple[Param, ...],
        check: Check,
        *,
        keywords: tuple[str, ...] = (),
        ranks: tuple[int, ...] | None = None,
        only: tuple[str, ...] | None = None,
    ):
        self.class_name = class_name
        extra = (
            tuple(
                Param(name, None, keyword_only=True) for name in (*keywords, "bounding_box_format")
            )
            if class_name in _IMAGE_LAYERS
            else ()
        )
        self.own_params = own + extra
        self.check = check
        self.ranks = ranks
        self.only = only

    def configure(self, args: Bound, default_data_format: str) -> PassThroughSpec:
        if self.only is not None:  # SpatialDropout takes no **kwargs: name and dtype only
            for name in args.values:
                if name not in self.only:
                    raise ConvcError(
                        f"{self.class_name} has no argument '{name}' (Keras's "
                        f"{self.class_name} takes only {', '.join(self.only)})",
                        args.span(name),
                    )
        checked = self.check(args, default_data_format)
        return PassThroughSpec(arguments=tuple(checked.items()))

    def inner_prefixes(self, spec: PassThroughSpec) -> tuple[str, ...]:
        """RandomColorJitter makes a RandomBrightness, RandomContrast, RandomSaturation and
        RandomHue for the factors it is given, in that order."""
        if self.class_name != "RandomColorJitter":
            return ()
        factors = dict(spec.arguments)["factors"]
        parts = ("brightness", "contrast", "saturation", "hue")
        return tuple(f"random_{part}" for part in parts if f"{part}_factor" in factors)

    def build(self, spec: PassThroughSpec, input_shape: Shape, args: Bound, name: str) -> Built:
        if self.ranks is not None and len(input_shape) not in self.ranks:
            wanted = " or ".join(str(r) for r in self.ranks)
            raise ConvcError(
                f"{self.label(name)} expects an input of rank {wanted}, got shape "
                f"{format_shape(input_shape)}",
                args.call.name_span,
            )
        if self.class_name == "RandomCrop":
            _check_random_crop(dict(spec.arguments), input_shape, args, self.label(name))
        return Built(input_shape)


def _check_random_crop(checked: Checked, input_shape: Shape, args: Bound, label: str) -> None:
    first = checked["data_format"] == "channels_first"
    height, width = input_shape[-2:] if first else input_shape[-3:-1]
    if (height, width) != (checked["height"], checked["width"]):
        raise ConvcError(
            f"{label} crops to ({checked['height']}, {checked['width']}), but Keras 3's "
            "RandomCrop returns its input uncropped at inference (training=False) while "
            f"declaring that size: on an input of shape {format_shape(input_shape)} no model "
            "computes both",
            args.call.name_span,
            help="use CenterCrop for a deterministic crop, or give RandomCrop an input of its "
            "target size",
        )


def _pass_through_types() -> list[LayerType]:
    found: list[LayerType] = [
        PassThrough("Dropout", params("rate", ("noise_shape", None), ("seed", None)), _dropout),
        PassThrough("GaussianNoise", params("stddev", ("seed", None)), _gaussian_noise),
        PassThrough("GaussianDropout", params("rate", ("seed", None)), _gaussian_dropout),
        PassThrough(
            "AlphaDropout", params("rate", ("noise_shape", None), ("seed", None)), _alpha_dropout
        ),
        PassThrough(
            "ActivityRegularization", params(("l1", 0.0), ("l2", 0.0)), _activity_regularization
        ),
    ]
    for rank in (1, 2, 3):
        own = (
            params("rate")
            + (params(("data_format", None)) if rank > 1 else ())
            + params(("seed", None), ("name", None), ("dtype", None))
        )
        found.append(
            PassThrough(
                f"SpatialDropout{rank}D",
                own,
                _spatial_dropout,
                ranks=(rank + 2,),
                only=tuple(p.name for p in own),
            )
        )
    for class_name, (own, keywords, check) in _IMAGE_LAYERS.items():
        found.append(PassThrough(class_name, own, check, keywords=keywords, ranks=(3, 4)))
    return found


register(*_pass_through_types())
