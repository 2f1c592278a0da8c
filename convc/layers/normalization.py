"""Normalization layers: BatchNormalization, LayerNormalization, GroupNormalization,
UnitNormalization and RMSNormalization, any rank.

They keep their input's shape and have no data_format: ``axis`` names Keras logical axes
(negative counts from the end), so a channels_first model passes ``axis=1``. Constructor and
build checks follow Keras 3 (``keras/src/layers/normalization/``), with Keras's meaning and a
located message. Arguments that matter only in training (``momentum``, the ``renorm*`` family,
``synchronized``, regularizers, constraints) are checked as Keras checks them and kept.

Weights, in Keras's order (its ``.weights.h5`` numbers them so): BatchNormalization ``gamma``
(if ``scale``), ``beta`` (if ``center``), ``moving_mean``, ``moving_variance`` (not trainable),
then with ``renorm`` ``moving_stddev``, ``renorm_mean``, ``renorm_stddev`` (not trainable, unused
in inference); LayerNormalization ``gamma`` (if ``scale`` or ``rms_scaling``) and ``beta`` (if
``center`` and not ``rms_scaling``), shaped by its axes in sorted order; GroupNormalization
``gamma``, ``beta`` (one per channel); UnitNormalization none; RMSNormalization ``scale``, shaped by
its axes in sorted order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from convc.diagnostics import ConvcError
from convc.layers.args import Bound, bool_arg, is_int, params, shown
from convc.layers.base import Built, LayerType, layer_type, register
from convc.layers.initializers import Initializer, parse_keras_objects
from convc.model import Shape, Variable, format_shape
from convc.specs import Draw, NormKind, NormSpec, RMSNormSpec

LAYER_EPSILON = 1e-7
"""``keras.backend.epsilon()``: LayerNormalization's epsilon when given ``epsilon=None``."""

UNIT_EPSILON = 1e-12
"""UnitNormalization's fixed epsilon (``ops.normalize(..., epsilon=1e-12)``)."""

_TRAINABLE_PAIR = (
    ("beta_initializer", "zeros"),
    ("gamma_initializer", "ones"),
)
_TRAINING_ONLY = (
    ("beta_regularizer", None),
    ("gamma_regularizer", None),
    ("beta_constraint", None),
    ("gamma_constraint", None),
)

_SIGNATURES = {
    "batch": params(
        ("axis", -1),
        ("momentum", 0.99),
        ("epsilon", 1e-3),
        ("center", True),
        ("scale", True),
        *_TRAINABLE_PAIR,
        ("moving_mean_initializer", "zeros"),
        ("moving_variance_initializer", "ones"),
        *_TRAINING_ONLY,
        ("renorm", False),
        ("renorm_clipping", None),
        ("renorm_momentum", 0.99),
        ("synchronized", False),
    ),
    # rms_scaling is not in Keras's signature: LayerNormalization pops it from **kwargs
    "layer": params(("axis", -1), ("epsilon", 1e-3), ("center", True), ("scale", True))
    + params(*_TRAINABLE_PAIR, *_TRAINING_ONLY)
    + params(("rms_scaling", False), keyword_only=True),
    "group": params(
        ("groups", 32),
        ("axis", -1),
        ("epsilon", 1e-3),
        ("center", True),
        ("scale", True),
        *_TRAINABLE_PAIR,
        *_TRAINING_ONLY,
    ),
    "unit": params(("axis", -1)),
}

_RENORM_CLIPPING_KEYS = ("rmax", "rmin", "dmax")


class Normalization(LayerType[NormSpec]):
    """BatchNormalization, LayerNormalization, GroupNormalization, UnitNormalization."""

    spec_class = NormSpec

    def __init__(self, kind: NormKind):
        self.kind = kind
        self.class_name = f"{kind.capitalize()}Normalization"
        self.own_params = _SIGNATURES[kind]

    # -- the constructor ----------------------------------------------------------------------

    def configure(self, args: Bound, default_data_format: str) -> NormSpec:
        kind = self.kind
        if kind == "unit":
            return NormSpec(kind=kind, axis=_axes(args, self.class_name), epsilon=UNIT_EPSILON)
        groups = _groups(args) if kind == "group" else 1
        axis: tuple[int, ...]
        if kind == "batch":
            axis = (_int_like(args, "axis"),)
        elif kind == "layer":
            axis = _axes(args, self.class_name)
        else:
            axis = (_strict_int(args, "axis", self.class_name),)
        momentum = _number(args, "momentum") if kind == "batch" else 0.99
        if kind == "layer" and args.python("epsilon") is None:
            epsilon = LAYER_EPSILON  # Keras's ops.layer_normalization: backend.epsilon()
        else:
            epsilon = _number(args, "epsilon")
        center = bool_arg(args, "center")
        scale = bool_arg(args, "scale")
        objects = parse_keras_objects(args, (param.name for param in self.own_params))
        # NormSpec's defaults for the kinds that do not take these
        renorm, renorm_clipping, renorm_momentum, synchronized = False, None, 0.99, False
        rms_scaling = False
        if kind == "batch":
            renorm = bool_arg(args, "renorm")
            renorm_clipping = _renorm_clipping(args) if renorm else None
            renorm_momentum = _number(args, "renorm_momentum")
            # Keras refuses synchronized=True on its JAX and torch backends, not on
            # TensorFlow's; it changes only how training averages the batch statistics.
            synchronized = bool_arg(args, "synchronized")
        if kind == "layer":
            rms_scaling = bool_arg(args, "rms_scaling")
        return NormSpec(
            kind=kind,
            axis=axis,
            epsilon=epsilon,
            center=center,
            scale=scale,
            groups=groups,
            momentum=momentum,
            renorm=renorm,
            renorm_clipping=renorm_clipping,
            renorm_momentum=renorm_momentum,
            synchronized=synchronized,
            rms_scaling=rms_scaling,
            **objects,
        )

    # -- build --------------------------------------------------------------------------------

    def build(self, spec: NormSpec, input_shape: Shape, args: Bound, name: str) -> Built:
        axes = self._checked_axes(spec, input_shape, args, name)
        if spec.kind == "unit":
            return Built(input_shape)
        if spec.kind == "layer":
            # Keras sorts the axes as written (negative ones first), and shapes the weights so
            sizes = tuple(input_shape[a] for a in sorted(spec.axis))
        else:
            sizes = (input_shape[axes[0]],)
        known = _known_sizes(sizes, self.label(name), _show_axis(spec), input_shape, args)
        if spec.kind == "group":
            self._check_groups(spec, known[0], input_shape, args, name)
        return Built(input_shape, self._variables(spec, known))

    def _checked_axes(
        self, spec: NormSpec, input_shape: Shape, args: Bound, name: str
    ) -> tuple[int, ...]:
        """The normalized axes, non-negative; each in range, none twice, not the batch axis."""
        rank = len(input_shape)
        found = []
        for axis in spec.axis:
            if not -rank <= axis < rank:
                raise ConvcError(
                    f"axis={_show_axis(spec)} is out of bounds for the input shape "
                    f"{format_shape(input_shape)} of {self.label(name)} (its axes are {-rank} "
                    f"to {rank - 1})",
                    args.span("axis"),
                )
            if axis % rank in found:
                raise ConvcError(
                    f"axis={_show_axis(spec)} names axis {axis % rank} twice for an input of "
                    f"rank {rank}",
                    args.span("axis"),
                )
            found.append(axis % rank)
        if 0 in found:
            raise ConvcError(
                f"{self.label(name)} with axis={_show_axis(spec)} would normalize along axis 0, "
                "the batch axis: convc compiles models whose samples are independent",
                args.span("axis"),
                help=f"the axes of input shape {format_shape(input_shape)} are 1 to {rank - 1} "
                f"(or -{rank - 1} to -1)",
            )
        return tuple(found)

    def _check_groups(
        self, spec: NormSpec, channels: int, input_shape: Shape, args: Bound, name: str
    ) -> None:
        groups = channels if spec.groups == -1 else spec.groups
        where = f"axis {spec.axis[0]} of input shape {format_shape(input_shape)}"
        if channels < groups:
            raise ConvcError(
                f"{self.label(name)}: groups={groups} cannot be more than the number of "
                f"channels ({channels}, {where})",
                args.span("groups"),
            )
        if channels % groups:
            raise ConvcError(
                f"{self.label(name)}: groups={groups} must divide the number of channels "
                f"({channels}, {where})",
                args.span("groups"),
                help="Keras needs channels that are a multiple of groups",
            )

    def _variables(self, spec: NormSpec, shape: tuple[int, ...]) -> tuple[Variable, ...]:
        # configure gives every kind with weights (all but unit) its gamma and beta
        # initializers, and BatchNormalization its moving statistics' too
        gamma, beta = spec.gamma_initializer, spec.beta_initializer
        assert gamma is not None and beta is not None
        found = []
        if spec.scale or spec.rms_scaling:
            found.append(Variable("gamma", shape, gamma))
        if spec.center and not spec.rms_scaling:
            found.append(Variable("beta", shape, beta))
        if spec.kind != "batch":
            return tuple(found)
        mean, variance = spec.moving_mean_initializer, spec.moving_variance_initializer
        assert mean is not None and variance is not None
        found += [
            Variable("moving_mean", shape, mean, trainable=False),
            Variable("moving_variance", shape, variance, trainable=False),
        ]
        if spec.renorm:  # batch renormalization's statistics: training only
            stddev = SquareRoot(variance)
            found += [
                Variable("moving_stddev", shape, stddev, trainable=False),
                Variable("renorm_mean", shape, mean, trainable=False),
                Variable("renorm_stddev", shape, stddev, trainable=False),
            ]
        return tuple(found)


@dataclass(frozen=True)
class SquareRoot:
    """The square root of another initializer's draw: Keras's ``moving_stddev_initializer``."""

    of: Draw

    def draw(self, shape: tuple[int, ...], rng) -> np.ndarray:
        return np.sqrt(self.of.draw(shape, rng))


# ---------------------------------------------------------------------------------------------
# Argument checks


def _known_sizes(
    sizes: tuple[int | None, ...], label: str, axis: str, input_shape: Shape, args: Bound
) -> tuple[int, ...]:
    """The sizes of the normalized axes, which shape the weights: each must be known."""
    known = tuple(size for size in sizes if size is not None)
    if len(known) != len(sizes):
        raise ConvcError(
            f"{label} needs a known size along axis={axis}, got input shape "
            f"{format_shape(input_shape)}",
            args.span("axis"),
        )
    return known


def _show_axis(spec: NormSpec) -> str:
    if spec.kind in ("batch", "group"):
        return str(spec.axis[0])
    return "[" + ", ".join(map(str, spec.axis)) + "]"


def _int_like(args: Bound, name: str) -> int:
    """BatchNormalization's ``int(axis)``: an int, or a number or string int() converts."""
    value = args.python(name)
    try:
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError
        converted = int(value) if isinstance(value, int | float | str) else None
    except ValueError:
        converted = None
    if converted is None:
        raise ConvcError(
            f"'{name}' of a BatchNormalization layer must be an integer, got {name}={shown(value)}",
            args.span(name),
            help="BatchNormalization normalizes along one axis (LayerNormalization takes a list)",
        )
    return converted


def _strict_int(args: Bound, name: str, class_name: str) -> int:
    value = args.python(name)
    if not is_int(value):
        raise ConvcError(
            f"'{name}' of a {class_name} layer must be an integer, got {name}={shown(value)}",
            args.span(name),
        )
    return int(value)


def _axes(args: Bound, class_name: str) -> tuple[int, ...]:
    """An int or a list/tuple of ints (LayerNormalization, UnitNormalization)."""
    value = args.python("axis")
    if is_int(value):
        return (int(value),)
    if isinstance(value, list | tuple) and all(is_int(v) for v in value):
        if not value:
            raise ConvcError(
                f"axis={shown(value)} names no axis to normalize along", args.span("axis")
            )
        return tuple(int(v) for v in value)
    raise ConvcError(
        f"'axis' of a {class_name} layer must be an int or a list/tuple of ints, got "
        f"axis={shown(value)}",
        args.span("axis"),
    )


def _number(args: Bound, name: str) -> float:
    value = args.python(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConvcError(f"'{name}' must be a number, got {name}={shown(value)}", args.span(name))
    return float(value)


def _groups(args: Bound) -> int:
    value = args.python("groups")
    if not is_int(value) or (value <= 0 and value != -1):
        raise ConvcError(
            "'groups' must be a positive integer (or -1 for instance normalization), got "
            f"groups={shown(value)}",
            args.span("groups"),
        )
    return int(value)


def _renorm_clipping(args: Bound) -> tuple[tuple[str, float], ...] | None:
    """Keras's checks of ``renorm_clipping`` (made only with ``renorm=True``)."""
    value = args.python("renorm_clipping")
    span = args.span("renorm_clipping")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ConvcError(
            f"'renorm_clipping' must be a dict with keys {list(_RENORM_CLIPPING_KEYS)}, got "
            f"renorm_clipping={shown(value)}",
            span,
        )
    unknown = set(value) - set(_RENORM_CLIPPING_KEYS)
    if unknown:
        raise ConvcError(
            f"invalid keys for 'renorm_clipping': {value}; supported: "
            f"{list(_RENORM_CLIPPING_KEYS)}",
            span,
        )
    for key, bound in value.items():
        if bound is not None and (isinstance(bound, bool) or not isinstance(bound, int | float)):
            raise ConvcError(f"renorm_clipping[{key!r}] must be a number, got {bound!r}", span)
    rmax, rmin, dmax = (value.get(key) for key in _RENORM_CLIPPING_KEYS)
    if rmax is not None and rmin is not None and rmax < rmin:
        raise ConvcError(
            f"rmax should be greater than rmin in 'renorm_clipping', got rmax={rmax}, rmin={rmin}",
            span,
        )
    if dmax is not None and dmax < 0:
        raise ConvcError(f"dmax should be non-negative in 'renorm_clipping', got dmax={dmax}", span)
    return tuple((key, value[key]) for key in _RENORM_CLIPPING_KEYS if key in value)


register(*(Normalization(kind) for kind in ("batch", "layer", "group", "unit")))


@layer_type
class RMSNormalization(LayerType[RMSNormSpec]):
    """``x / sqrt(mean(x ** 2) + epsilon) * scale`` over the last axes. Keras's call is an RMS
    normalization only there: over other axes its torch backend normalizes and scales the last
    axes instead (or fails), and its other backends multiply ``scale`` into the last axes."""

    spec_class = RMSNormSpec
    class_name = "RMSNormalization"
    own_params = params(("axis", -1), ("epsilon", 1e-6))

    def configure(self, args: Bound, default_data_format: str) -> RMSNormSpec:
        epsilon = LAYER_EPSILON if args.python("epsilon") is None else _number(args, "epsilon")
        return RMSNormSpec(axis=_axes(args, self.class_name), epsilon=epsilon)

    def build(self, spec: RMSNormSpec, input_shape: Shape, args: Bound, name: str) -> Built:
        rank = len(input_shape)
        shown = "[" + ", ".join(map(str, spec.axis)) + "]"
        in_keras_order = [a % rank if -rank <= a < rank else a for a in sorted(spec.axis)]
        last = list(range(rank - len(spec.axis), rank))
        if in_keras_order != last or 0 in last:
            raise ConvcError(
                f"{self.label(name)} normalizes over axis={shown} of input shape "
                f"{format_shape(input_shape)}: convc compiles it over the last axes only "
                "(and not the batch axis), where Keras computes an RMS normalization",
                args.span("axis"),
                help="Keras's own call normalizes and scales the last axes whatever 'axis' says "
                f"(or fails); write axis=-1, or axis={list(range(-len(spec.axis), 0))}",
            )
        sizes = tuple(input_shape[a] for a in last)
        known = _known_sizes(sizes, self.label(name), shown, input_shape, args)
        return Built(input_shape, (Variable("scale", known, Initializer("Ones", ())),))
