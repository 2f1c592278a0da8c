"""Keras initializers, regularizers and constraints: how a layer argument names one, and how an
initializer draws its numbers.

A ``kernel_initializer=`` (or ``bias_initializer=``, ``depthwise_initializer=`` ...) argument is
read as ``keras.initializers.get`` reads it: a registry name (``"he_normal"``, ``"HeNormal"``), a
call of a public class (``HeNormal(seed=1)``, ``keras.initializers.RandomNormal(0.0, 0.01)``), a
bare class (``keras.initializers.HeNormal``) or a serialized config dict. The arguments are bound to
the class's real constructor and checked as the constructor checks them (keras/src/initializers/).
``Initializer.draw`` then makes the weight from Keras's definitions (fans, variance scaling,
truncation, QR) with a NumPy generator.

Regularizers and constraints matter only for training, so they are read the same way
(``keras.regularizers.get``, ``keras.constraints.get``), validated and kept as ``Recorded``.

TensorFlow 1 code passes TF1's own objects instead: the initializer classes of ``tf.`` and
``tf.compat.v1.`` (``tf.zeros_initializer()``, ``tf.random_normal_initializer(stddev=0.1)``
...) and the functions of ``tf.contrib.layers`` (``xavier_initializer()``, ``l2_regularizer(0.1)``
...). Each is bound to its TF1 signature, with TF1's defaults (``random_normal_initializer``'s
stddev is 1.0, not Keras's 0.05), checked as TF1 checks it, and becomes the Keras class and config
that behave the same (see ``TF1_FUNCTIONS``); drawing is then Keras's.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from convc.diagnostics import ConvcError, Span
from convc.layers.args import REQUIRED, Bound, Param, bind, bool_arg, params, shown, string_arg
from convc.syntax import Apply, Call, Keyword, Literal, Mapping, Reference, Sequence, Value

Config = tuple[tuple[str, Any], ...]

TRUNCATION_STDDEV = 0.87962566103423978
"""The standard deviation of N(0, 1) restricted to (-2, 2); VarianceScaling divides by it."""


@dataclass(frozen=True)
class Initializer:
    """A Keras initializer: its class and every constructor argument, normalized."""

    class_name: str
    config: Config

    def draw(self, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        """A float32 array of ``shape`` (a Keras weight layout), drawn from ``rng``.

        A seeded initializer (``seed`` not None) draws from its own generator instead, so it gives
        the same numbers every time, as a seeded Keras initializer does. They are NumPy's numbers,
        not Keras's: Keras's random streams differ between backends anyway.
        """
        shape = tuple(int(d) for d in shape)
        config = dict(self.config)
        if config.get("seed") is not None:
            rng = np.random.default_rng(config["seed"] % 2**64)  # Keras accepts negative seeds
        draw = INITIALIZERS.classes[self.class_name].draw
        assert draw is not None, "the abstract Initializer is refused when parsed"
        return np.asarray(draw(shape, config, rng), dtype=np.float32)


@dataclass(frozen=True)
class Recorded:
    """A training-only object (a regularizer or a constraint): checked, kept, never applied."""

    class_name: str
    config: Config


def parse_initializer(value: Value, argument: str) -> Initializer:
    """The initializer that ``argument=value`` selects, checked as Keras checks it."""
    if value is None or isinstance(value, Literal) and value.value is None:
        # initializers.get(None) is None, and Layer.add_weight then falls back to
        # "glorot_uniform" for every float weight: a bias with bias_initializer=None is
        # glorot-uniform too, not zeros as the layers' docstrings say.
        return Initializer(
            "GlorotUniform", (("seed", None), ("input_axes", None), ("output_axes", None))
        )
    class_name, config = _parse(INITIALIZERS, value, argument)
    return Initializer(class_name, config)


def parse_regularizer(value: Value, argument: str) -> Recorded | None:
    """The regularizer ``argument=value`` selects (``keras.regularizers.get``); None for None."""
    if value is None or isinstance(value, Literal) and value.value is None:
        return None
    return Recorded(*_parse(REGULARIZERS, value, argument))


def parse_constraint(value: Value, argument: str) -> Recorded | None:
    """The constraint ``argument=value`` selects (``keras.constraints.get``); None for None."""
    if value is None or isinstance(value, Literal) and value.value is None:
        return None
    return Recorded(*_parse(CONSTRAINTS, value, argument))


def parse_keras_objects(args: Bound, names: Iterable[str]) -> dict[str, Any]:
    """Each ``*_initializer``, ``*_regularizer`` and ``*_constraint`` argument among ``names``
    (a layer's parameters, in its positional order, so that the first bad one is reported
    first), as written or as its default."""
    parsers = {
        "_initializer": parse_initializer,
        "_regularizer": parse_regularizer,
        "_constraint": parse_constraint,
    }
    found = {}
    for name in names:
        parse = next((f for suffix, f in parsers.items() if name.endswith(suffix)), None)
        if parse is not None:
            value = args.value(name)
            if value is None:  # the default, as a literal placed at the layer's name
                value = Literal(args.defaults[name], args.call.name_span)
            found[name] = parse(value, name)
    return found


# ---------------------------------------------------------------------------------------------
# The registries


Draw = Callable[[tuple[int, ...], dict[str, Any], np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class KerasClass:
    """One class of a registry: its constructor, its checks and (initializers) its draw."""

    name: str
    snake: str  # Keras's to_snake_case(name), also a registry key
    signature: tuple[Param, ...]
    check: Callable[[Bound], Config]
    draw: Draw | None = None
    abstract: bool = False  # a base class whose instances cannot make weights


@dataclass(frozen=True)
class Registry:
    """What ``keras.<module>.get`` accepts as a string or dict class name (``strings``), and what
    ``keras.<module>`` exports as an attribute (``attributes``): the names a call may use."""

    kind: str
    module: str
    classes: dict[str, KerasClass]
    strings: dict[str, str]
    attributes: dict[str, str]

    @property
    def article(self) -> str:
        return "an" if self.kind[0] in "aeiou" else "a"


def _registry(
    kind: str,
    classes: list[KerasClass],
    *,
    string_aliases: dict[str, str] | None = None,
    attribute_aliases: dict[str, str] | None = None,
    not_attributes: tuple[str, ...] = (),
) -> Registry:
    by_name = {c.name: c for c in classes}
    strings = {c.name: c.name for c in classes} | {c.snake: c.name for c in classes}
    strings |= string_aliases or {}
    attributes = {n: c for n, c in strings.items() if n not in not_attributes}
    attributes = {n: c for n, c in attributes.items() if n not in (string_aliases or {})}
    attributes |= attribute_aliases or {}
    return Registry(kind, kind + "s", by_name, strings, attributes)


# ---------------------------------------------------------------------------------------------
# Argument checks. Each takes the bound call and returns every parameter, normalized, in order.


def _is_number(value: Any) -> bool:
    # bool is an int, and Keras's isinstance checks let it through
    return isinstance(value, int | float) and math.isfinite(value)


def _number(
    args: Bound, name: str, *, above: float | None = None, least: float | None = None
) -> float:
    value = args.python(name)
    if not _is_number(value):
        raise ConvcError(f"'{name}' must be a number, got {name}={shown(value)}", args.span(name))
    if above is not None and value <= above:
        raise ConvcError(f"'{name}' must be > {above:g}, got {name}={value}", args.span(name))
    if least is not None and value < least:
        raise ConvcError(f"'{name}' must be >= {least:g}, got {name}={value}", args.span(name))
    return float(value)


def _choice(args: Bound, name: str, choices: tuple[str, ...], *, lower: bool = False) -> str:
    value = args.python(name)
    normalized = value.lower() if lower and isinstance(value, str) else value
    if normalized in choices:
        return normalized
    accepted = ", ".join(repr(c) for c in choices)
    help = None
    if isinstance(value, str):
        by_lower = {c.lower(): c for c in choices}
        if value.lower() in by_lower:
            help = f"'{name}' is case-sensitive: write {by_lower[value.lower()]!r}"
        elif close := difflib.get_close_matches(normalized, choices, n=1, cutoff=0.6):
            help = f"did you mean {close[0]!r}?"
    raise ConvcError(
        f"'{name}' must be one of {accepted}, got {name}={shown(value)}", args.span(name), help
    )


def _seed(args: Bound) -> int | None:
    value = args.python("seed")
    if value is not None and not isinstance(value, int):
        raise ConvcError(
            f"'seed' must be an integer or None, got seed={shown(value)}",
            args.span("seed"),
            help="Keras also takes a keras.random.SeedGenerator, which convc does not",
        )
    return None if value is None else int(value)


def _ints(args: Bound, name: str, *, single: bool) -> int | tuple[int, ...] | None:
    """None, a list or tuple of ints, or (``single``) one int: an ``axis``-like argument."""
    value = args.python(name)
    if single and isinstance(value, int):
        return int(value)
    if isinstance(value, list | tuple) and all(isinstance(v, int) for v in value):
        return tuple(int(v) for v in value)
    if value is None and not single:
        return None
    shape = "an integer or a list of integers" if single else "a list of integers or None"
    raise ConvcError(f"'{name}' must be {shape}, got {name}={shown(value)}", args.span(name))


def _penalty(args: Bound, name: str, default: float) -> float:
    """Keras's ``validate_float_arg``: a finite number >= 0; None means the default."""
    value = args.python(name)
    if value is None:
        return default
    if not _is_number(value) or value < 0:
        raise ConvcError(
            f"'{name}' must be a non-negative number, got {name}={shown(value)}", args.span(name)
        )
    return float(value)


def _no_arguments(args: Bound) -> Config:
    return ()


def _gain(args: Bound) -> Config:
    return (("gain", _number(args, "gain")),)


def _seed_only(args: Bound) -> Config:
    return (("seed", _seed(args)),)


def _fixed_scaling(args: Bound) -> Config:
    return (
        ("seed", _seed(args)),
        ("input_axes", _ints(args, "input_axes", single=False)),
        ("output_axes", _ints(args, "output_axes", single=False)),
    )


def _scaling(args: Bound) -> Config:
    """VarianceScaling's scale, mode and distribution, checked as Keras (and TF1) check them."""
    scale = _number(args, "scale", above=0.0)
    mode = _choice(args, "mode", ("fan_in", "fan_out", "fan_avg"))
    choices = ("truncated_normal", "untruncated_normal", "uniform", "normal")
    distribution = _choice(args, "distribution", choices, lower=True)
    distribution = "truncated_normal" if distribution == "normal" else distribution
    return (("scale", scale), ("mode", mode), ("distribution", distribution))


def _variance_scaling(args: Bound) -> Config:
    return (*_scaling(args), *_fixed_scaling(args))


def _normal(args: Bound) -> Config:
    return (("mean", _number(args, "mean")), ("stddev", _number(args, "stddev")), *_seed_only(args))


def _random_normal(args: Bound) -> Config:
    # Keras's constructor takes any stddev; torch then fails to draw with a negative one.
    # (TruncatedNormal multiplies a standard sample by it, so a negative stddev works there.)
    _number(args, "stddev", least=0.0)
    return _normal(args)


def _uniform(args: Bound) -> Config:
    minval, maxval = _number(args, "minval"), _number(args, "maxval")
    return (("minval", minval), ("maxval", maxval), *_seed_only(args))


def _orthogonal(args: Bound) -> Config:
    return (*_gain(args), *_seed_only(args))


def _constant(args: Bound) -> Config:
    value = args.python("value")
    if not _is_number(value):
        # Keras's constructor keeps anything; a non-number fails when the weight is made.
        raise ConvcError(
            f"the value of Constant must be a number, got value={shown(value)}",
            args.span("value"),
            help="Constant fills the weight with one scalar",
        )
    return (("value", float(value)),)


# scipy.signal.windows' formulas for the window names STFT is usually given (and their
# scipy aliases). ``x`` is 2*pi*n/(M-1) over the symmetric length M.
_WINDOWS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "hann": lambda x: 0.5 - 0.5 * np.cos(x),
    "hamming": lambda x: 0.54 - 0.46 * np.cos(x),
    "blackman": lambda x: 0.42 - 0.5 * np.cos(x) + 0.08 * np.cos(2 * x),
    "bartlett": lambda x: 1.0 - np.abs(x / np.pi - 1.0),
    "boxcar": lambda x: np.ones_like(x),
}
_WINDOW_ALIASES = {
    "han": "hann",
    "hamm": "hamming",
    "ham": "hamming",
    "black": "blackman",
    "blk": "blackman",
    "bart": "bartlett",
    "brt": "bartlett",
    "box": "boxcar",
    "ones": "boxcar",
    "rect": "boxcar",
    "rectangular": "boxcar",
}


def _stft(args: Bound) -> Config:
    side = _choice(args, "side", ("real", "imag"))
    window = args.python("window")
    if isinstance(window, str):
        if _WINDOW_ALIASES.get(window, window) not in _WINDOWS:
            raise ConvcError(
                f"window {window!r} is not supported by convc",
                args.span("window"),
                help=f"use one of {', '.join(map(repr, _WINDOWS))}, None or a list of numbers",
            )
        window = _WINDOW_ALIASES.get(window, window)
    elif isinstance(window, list | tuple) and window and all(_is_number(w) for w in window):
        window = tuple(float(w) for w in window)
    elif window is not None:
        raise ConvcError(
            f"'window' must be a window name, a list of numbers or None, got window={window!r}",
            args.span("window"),
        )
    scaling = args.python("scaling")
    if scaling is not None:
        scaling = _choice(args, "scaling", ("density", "spectrum"))
    periodic = bool_arg(args, "periodic")
    return (("side", side), ("window", window), ("scaling", scaling), ("periodic", periodic))


def _regularizer_l1(args: Bound) -> Config:
    return (("l1", _penalty(args, "l1", 0.01)),)


def _regularizer_l2(args: Bound) -> Config:
    return (("l2", _penalty(args, "l2", 0.01)),)


def _regularizer_l1_l2(args: Bound) -> Config:
    return (("l1", _penalty(args, "l1", 0.0)), ("l2", _penalty(args, "l2", 0.0)))


def _regularizer_orthogonal(args: Bound) -> Config:
    if args.python("factor") is None:  # validate_float_arg has no None default here
        raise ConvcError(
            "'factor' must be a non-negative number, got factor=None", args.span("factor")
        )
    factor = _penalty(args, "factor", 0.0)
    return (("factor", factor), ("mode", _choice(args, "mode", ("rows", "columns"))))


# Keras's constraint constructors check nothing (a bad value fails at the first training step,
# which convc never runs); convc checks the types their __call__ needs.


def _constraint_axis(args: Bound) -> Config:
    return (("axis", _ints(args, "axis", single=True)),)


def _constraint_max_norm(args: Bound) -> Config:
    return (("max_value", _number(args, "max_value")), *_constraint_axis(args))


def _constraint_min_max_norm(args: Bound) -> Config:
    return (
        ("min_value", _number(args, "min_value")),
        ("max_value", _number(args, "max_value")),
        ("rate", _number(args, "rate")),
        *_constraint_axis(args),
    )


# ---------------------------------------------------------------------------------------------
# Drawing


def compute_fans(
    shape: tuple[int, ...],
    input_axes: tuple[int, ...] | None = None,
    output_axes: tuple[int, ...] | None = None,
) -> tuple[int, int]:
    """Keras's ``compute_fans``: (fan_in, fan_out) of a weight in Keras's layout."""
    if input_axes is not None and output_axes is not None:  # one alone is ignored, as in Keras
        try:
            return math.prod(shape[a] for a in input_axes), math.prod(shape[a] for a in output_axes)
        except IndexError:
            raise ConvcError(
                f"input_axes={input_axes} or output_axes={output_axes} is out of range for a "
                f"weight of shape {shape}"
            ) from None
    if not shape:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive_field = math.prod(shape[:-2])
    return shape[-2] * receptive_field, shape[-1] * receptive_field


DRAW_CHUNK = 1 << 20
"""Numbers drawn in float64 at a time (8 MiB) for a float32 weight: a draw is made a chunk at a
time into the weight, so that a large kernel is never held in float64 whole (VGG16's first
Dense kernel, 25088 x 4096, is 0.8 GB in float64 beside its 0.4 GB in float32)."""


def _in_chunks(shape: tuple[int, ...], numbers: Callable[[int], np.ndarray]) -> np.ndarray:
    """A float32 array of ``shape`` filled with ``numbers(count)``, the next ``count`` float64
    numbers of a stream, ``DRAW_CHUNK`` at a time. NumPy's generators make the same numbers
    drawn in parts as drawn at once, and each float64 is rounded to float32 alone, so the array
    is the one drawing it whole and casting it would give, bit for bit."""
    result = np.empty(shape, np.float32)
    flat = result.reshape(-1)
    for start in range(0, flat.size, DRAW_CHUNK):
        end = min(start + DRAW_CHUNK, flat.size)
        flat[start:end] = numbers(end - start)
    return result


def _truncated_standard_normal(rng: np.random.Generator) -> Callable[[int], np.ndarray]:
    """N(0, 1) restricted to (-2, 2), by rejection (4.6% of draws fall outside): the next
    ``count`` numbers kept, in the order drawn, whatever the counts asked for before."""
    kept = np.empty(0)

    def numbers(count: int) -> np.ndarray:
        nonlocal kept
        while kept.size < count:
            sample = rng.standard_normal((count - kept.size) * 11 // 10 + 16)
            kept = np.concatenate([kept, sample[np.abs(sample) < 2.0]])
        taken, kept = kept[:count], kept[count:]
        return taken

    return numbers


_SCALINGS = {
    "GlorotUniform": (1.0, "fan_avg", "uniform"),
    "GlorotNormal": (1.0, "fan_avg", "truncated_normal"),
    "LecunUniform": (1.0, "fan_in", "uniform"),
    "LecunNormal": (1.0, "fan_in", "truncated_normal"),
    "HeUniform": (2.0, "fan_in", "uniform"),
    "HeNormal": (2.0, "fan_in", "truncated_normal"),
}
"""The VarianceScaling (scale, mode, distribution) that each named subclass fixes."""


def _draw_variance_scaling(shape, config, rng) -> np.ndarray:
    fan_in, fan_out = compute_fans(shape, config["input_axes"], config["output_axes"])
    fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}
    variance = config["scale"] / max(1.0, fan[config["mode"]])
    if config["distribution"] == "truncated_normal":
        # dividing by the truncated std makes the final std sqrt(variance)
        stddev = math.sqrt(variance) / TRUNCATION_STDDEV
        truncated = _truncated_standard_normal(rng)
        return _in_chunks(shape, lambda count: stddev * truncated(count))
    if config["distribution"] == "untruncated_normal":
        return _in_chunks(shape, lambda count: rng.normal(0.0, math.sqrt(variance), count))
    limit = math.sqrt(3.0 * variance)
    return _in_chunks(shape, lambda count: rng.uniform(-limit, limit, count))


def _draw_scaling_subclass(name: str) -> Draw:
    scale, mode, distribution = _SCALINGS[name]
    fixed = {"scale": scale, "mode": mode, "distribution": distribution}
    return lambda shape, config, rng: _draw_variance_scaling(shape, config | fixed, rng)


def _draw_orthogonal(shape, config, rng) -> np.ndarray:
    if len(shape) < 2:
        raise ConvcError(
            f"the Orthogonal initializer needs a weight of rank 2 or more, got shape {shape}"
        )
    rows, columns = math.prod(shape[:-1]), shape[-1]
    if rows == 0 or columns == 0:
        return np.zeros(shape)
    q, r = np.linalg.qr(rng.standard_normal((max(rows, columns), min(rows, columns))))
    q = q * np.sign(np.diag(r))  # makes Q unique: uniformly distributed over orthogonal matrices
    if rows < columns:
        q = q.T
    return config["gain"] * q.reshape(shape)


def _draw_identity(shape, config, rng) -> np.ndarray:
    if len(shape) != 2:
        raise ConvcError(
            f"the Identity initializer makes 2-D weights only, got shape {shape} "
            f"of rank {len(shape)}"
        )
    return config["gain"] * np.eye(*shape)


def _window(name: str, length: int, periodic: bool) -> np.ndarray:
    if length == 1:
        return np.ones(1)
    symmetric = length + 1 if periodic else length  # a periodic window drops the last point
    return _WINDOWS[name](2 * np.pi * np.arange(symmetric) / (symmetric - 1))[:length]


def _draw_stft(shape, config, rng) -> np.ndarray:
    # Keras builds a (frame_length, 1, bins) kernel whatever the shape asked for (on torch, a
    # Conv1D with 2 input channels silently gets a kernel of 1), and divides by bins - 1.
    if len(shape) != 3 or shape[1] != 1 or shape[2] < 2:
        raise ConvcError(
            f"the STFT initializer makes kernels of shape (frame_length, 1, bins) with bins >= 2, "
            f"got shape {shape}",
            help="use it on a Conv1D with 1 input channel and at least 2 filters",
        )
    frames, _, bins = shape
    time = np.arange(frames).reshape(frames, 1, 1)
    frequency = np.arange(bins).reshape(1, 1, bins) / (2 * (bins - 1))
    angle = -2.0 * np.pi * time * frequency
    kernel = np.cos(angle) if config["side"] == "real" else np.sin(angle)
    window = config["window"]
    if window is None:
        return kernel
    window = _window(window, frames, config["periodic"]) if isinstance(window, str) else window
    window = np.asarray(window, dtype=np.float64)
    if window.shape != (frames,):
        raise ConvcError(
            f"the STFT window has {window.size} values but the kernel has {frames} frames"
        )
    norms = {"density": np.sqrt(np.sum(window**2)), "spectrum": np.sum(np.abs(window))}
    norm = norms.get(config["scaling"], 1.0)
    if norm == 0:  # Keras divides by zero and makes NaNs
        raise ConvcError(
            f"the STFT window is all zeros for {frames} frames, so its {config['scaling']} "
            "scaling divides by zero",
            help="use a longer kernel, another window or scaling=None",
        )
    return kernel * window.reshape(frames, 1, 1) / norm


def _draw_normal(shape, config, rng) -> np.ndarray:
    mean, stddev = config["mean"], config["stddev"]
    return _in_chunks(shape, lambda count: rng.normal(mean, stddev, count))


def _draw_truncated_normal(shape, config, rng) -> np.ndarray:
    # N(mean, stddev^2) restricted to mean +- 2 stddev, without VarianceScaling's correction
    mean, stddev = config["mean"], config["stddev"]
    truncated = _truncated_standard_normal(rng)
    return _in_chunks(shape, lambda count: mean + stddev * truncated(count))


def _draw_uniform(shape, config, rng) -> np.ndarray:
    low, high = config["minval"], config["maxval"]
    # Keras's formula: works for low > high too
    return _in_chunks(shape, lambda count: low + (high - low) * rng.random(count))


def _fill(value: float | str) -> Draw:
    """Fill with a number, or with the number a config entry names (rounded to float32 once,
    as a float64 fill cast to float32 would be)."""
    if isinstance(value, str):
        return lambda shape, config, rng: np.full(shape, config[value], np.float32)
    return lambda shape, config, rng: np.full(shape, value, np.float32)


# ---------------------------------------------------------------------------------------------
# The three registries, as keras/src/{initializers,regularizers,constraints}/__init__.py and the
# public keras.{initializers,regularizers,constraints} modules define them.

_SCALING_PARAMS = params(("seed", None), ("input_axes", None), ("output_axes", None))
_NORMAL_PARAMS = params(("mean", 0.0), ("stddev", 0.05), ("seed", None))
_K = KerasClass

# fmt: off
INITIALIZERS = _registry(
    "initializer",
    [
        _K("Constant", "constant", params(("value", 0.0)), _constant, _fill("value")),
        _K("Zeros", "zeros", (), _no_arguments, _fill(0.0)),
        _K("Ones", "ones", (), _no_arguments, _fill(1.0)),
        _K("Identity", "identity", params(("gain", 1.0)), _gain, _draw_identity),
        _K("STFT", "stft",
           params(("side", "real"), ("window", "hann"), ("scaling", "density"),
                  ("periodic", False)),
           _stft, _draw_stft),
        _K("RandomNormal", "random_normal", _NORMAL_PARAMS, _random_normal, _draw_normal),
        _K("TruncatedNormal", "truncated_normal", _NORMAL_PARAMS, _normal,
           _draw_truncated_normal),
        _K("RandomUniform", "random_uniform",
           params(("minval", -0.05), ("maxval", 0.05), ("seed", None)), _uniform, _draw_uniform),
        _K("VarianceScaling", "variance_scaling",
           params(("scale", 1.0), ("mode", "fan_in"), ("distribution", "truncated_normal"))
           + _SCALING_PARAMS,
           _variance_scaling, _draw_variance_scaling),
        *(_K(name, snake, _SCALING_PARAMS, _fixed_scaling, _draw_scaling_subclass(name))
          for name, snake in [("GlorotUniform", "glorot_uniform"),
                              ("GlorotNormal", "glorot_normal"),
                              ("LecunUniform", "lecun_uniform"),
                              ("LecunNormal", "lecun_normal"),
                              ("HeUniform", "he_uniform"),
                              ("HeNormal", "he_normal")]),
        _K("Orthogonal", "orthogonal", params(("gain", 1.0), ("seed", None)), _orthogonal,
           _draw_orthogonal),
        _K("Initializer", "initializer", (), _no_arguments, abstract=True),
    ],
    string_aliases={"IdentityInitializer": "Identity", "OrthogonalInitializer": "Orthogonal",
                    "STFTInitializer": "STFT", "normal": "RandomNormal",
                    "uniform": "RandomUniform", "zero": "Zeros", "one": "Ones"},
    attribute_aliases={"IdentityInitializer": "Identity", "OrthogonalInitializer": "Orthogonal",
                       "STFTInitializer": "STFT"},
    not_attributes=("initializer",),
)

REGULARIZERS = _registry(
    "regularizer",
    [
        _K("L1", "l1", params(("l1", 0.01)), _regularizer_l1),
        _K("L2", "l2", params(("l2", 0.01)), _regularizer_l2),
        _K("L1L2", "l1l2", params(("l1", 0.0), ("l2", 0.0)), _regularizer_l1_l2),
        _K("OrthogonalRegularizer", "orthogonal_regularizer",
           params(("factor", 0.01), ("mode", "rows")), _regularizer_orthogonal),
        _K("Regularizer", "regularizer", (), _no_arguments),  # a no-op, but Keras takes it
    ],
    # the registry knows to_snake_case("L1L2") == "l1l2"; the module exports "l1_l2"
    attribute_aliases={"l1_l2": "L1L2"},
    not_attributes=("l1l2", "regularizer"),
)

CONSTRAINTS = _registry(
    "constraint",
    [
        _K("MaxNorm", "max_norm", params(("max_value", 2), ("axis", 0)), _constraint_max_norm),
        _K("MinMaxNorm", "min_max_norm",
           params(("min_value", 0.0), ("max_value", 1.0), ("rate", 1.0), ("axis", 0)),
           _constraint_min_max_norm),
        _K("NonNeg", "non_neg", (), _no_arguments),
        _K("UnitNorm", "unit_norm", params(("axis", 0)), _constraint_axis),
        _K("Constraint", "constraint", (), _no_arguments),  # the identity, but Keras takes it
    ],
    not_attributes=("constraint",),
)
# fmt: on

_REGISTRIES = (INITIALIZERS, REGULARIZERS, CONSTRAINTS)


# ---------------------------------------------------------------------------------------------
# TensorFlow 1: the classes of tensorflow/python/ops/init_ops.py (exported as tf.* and
# tf.compat.v1.*) and the functions of tensorflow/contrib/layers (initializers.py,
# regularizers.py). Each converts its bound call into the Keras class and config that draw the
# same distribution (or, for a regularizer, add the same penalty).


@dataclass(frozen=True)
class TF1Function:
    """A TF1 initializer or regularizer: its signature, and what it amounts to in Keras."""

    kind: str  # "initializer" or "regularizer"
    signature: tuple[Param, ...]
    convert: Callable[[Bound], tuple[str, Config]]  # the Keras class name and its config
    is_class: bool = True  # an init_ops class; the tf.contrib.layers ones are factory functions


_NO_AXES: Config = (("input_axes", None), ("output_axes", None))

_TF1_DTYPE_MODULES = ("tf", "tf.dtypes", "tf.compat.v1", "tf.compat.v1.dtypes", "np", "numpy")
# fmt: off
_TF1_OTHER_DTYPES = ("float16", "half", "bfloat16", "float64", "double", "int8", "int16", "int32",
                     "int64", "uint8", "uint16", "uint32", "uint64", "bool", "complex64",
                     "complex128", "string")
# fmt: on


def _tf1_dtype(args: Bound) -> None:
    """Check ``dtype=``: ``tf.float32`` (``tf.dtypes.``, ``np.`` ...), Python's ``float``, or the
    strings ``"float32"`` and ``"float"``, as ``dtypes.as_dtype`` reads them; or None, or nothing.

    TF1 knows other dtypes, but convc makes float32 weights.
    """
    value = args.value("dtype")
    if value is None or _is_none(value):
        return
    if isinstance(value, Reference):
        module, _, name = value.name.rpartition(".")
        if value.name == "float" or module in _TF1_DTYPE_MODULES and name == "float32":
            return
        unsupported = module in _TF1_DTYPE_MODULES and name in _TF1_OTHER_DTYPES
        shown = value.name
        prefix = module if module in _TF1_DTYPE_MODULES else "tf"
        spellings = [f"{prefix}.{n}" for n in ("float32", *_TF1_OTHER_DTYPES)]
    elif isinstance(value, Literal) and isinstance(value.value, str):
        if value.value in ("float32", "float"):
            return
        unsupported = value.value in _TF1_OTHER_DTYPES
        shown = repr(value.value)
        spellings = [repr(n) for n in ("float32", "float", *_TF1_OTHER_DTYPES)]
    else:
        raise ConvcError(
            f"'dtype' must be a TensorFlow dtype such as tf.float32, got dtype={_described(value)}",
            value.span,
        )
    if unsupported:
        raise ConvcError(
            f"convc makes float32 weights: dtype={shown} is not supported",
            value.span,
            help="leave dtype out, or write dtype=tf.float32",
        )
    close = difflib.get_close_matches(shown, spellings, n=1, cutoff=0.6)
    raise ConvcError(
        f"unknown dtype {shown}",
        value.span,
        help=f"did you mean {close[0]}?" if close else "write dtype=tf.float32",
    )


def _described(value: Value) -> str:
    """A value as a message shows it: a literal as written, anything else by its kind."""
    if isinstance(value, Literal):
        return shown(value.value)
    return f"a {value.kind}" if isinstance(value, Sequence) else "a call"


def _tf1_fill(class_name: str) -> Callable[[Bound], tuple[str, Config]]:
    """zeros_initializer and ones_initializer: Keras's Zeros and Ones."""

    def convert(args: Bound) -> tuple[str, Config]:
        _tf1_dtype(args)
        return class_name, ()

    return convert


def _tf1_constant(args: Bound) -> tuple[str, Config]:
    _tf1_dtype(args)
    value = args.python("value")
    if isinstance(value, list | tuple):
        raise ConvcError(
            "convc's constant_initializer takes one number, got a list of values",
            args.span("value"),
            help="TF1 fills the weight with a list's values in order and repeats the last one; "
            "convc fills it with one number",
        )
    if not _is_number(value):
        raise ConvcError(f"'value' must be a number, got value={shown(value)}", args.span("value"))
    if bool_arg(args, "verify_shape"):
        # constant_v1 then compares the value's shape, (), with the weight's
        raise ConvcError(
            "verify_shape=True makes TF1 fail (TypeError: Expected Tensor's shape): "
            "one number never has the shape of the weight",
            args.span("verify_shape"),
            help="leave verify_shape out",
        )
    return "Constant", (("value", float(value)),)


def _tf1_random_normal(args: Bound) -> tuple[str, Config]:
    _tf1_dtype(args)
    mean, stddev = _number(args, "mean"), _number(args, "stddev")
    # TF1 multiplies a standard sample by stddev: a negative one draws the same distribution
    return "RandomNormal", (("mean", mean), ("stddev", abs(stddev)), *_seed_only(args))


def _tf1_truncated_normal(args: Bound) -> tuple[str, Config]:
    _tf1_dtype(args)
    return "TruncatedNormal", _normal(args)


def _tf1_random_uniform(args: Bound) -> tuple[str, Config]:
    _tf1_dtype(args)
    minval = _number(args, "minval")
    # random_ops.random_uniform: maxval None is 1 for a float weight
    maxval = 1.0 if args.python("maxval") is None else _number(args, "maxval")
    return "RandomUniform", (("minval", minval), ("maxval", maxval), *_seed_only(args))


def _tf1_variance_scaling(args: Bound) -> tuple[str, Config]:
    # the v1 class checks scale, mode and distribution as Keras does, "normal" included
    _tf1_dtype(args)
    return "VarianceScaling", (*_scaling(args), *_seed_only(args), *_NO_AXES)


def _tf1_scaling_subclass(class_name: str) -> Callable[[Bound], tuple[str, Config]]:
    """glorot_uniform_initializer and glorot_normal_initializer: the v1 VarianceScaling
    subclasses, with Keras's scale, mode and distribution."""

    def convert(args: Bound) -> tuple[str, Config]:
        _tf1_dtype(args)
        return class_name, (*_seed_only(args), *_NO_AXES)

    return convert


def _tf1_orthogonal(args: Bound) -> tuple[str, Config]:
    _tf1_dtype(args)
    return "Orthogonal", _orthogonal(args)


CONTRIB_TRUNCATED_FACTOR = 1.3
"""tf.contrib.layers' normal variance scaling draws N(0, 1.3 * factor / n) cut at 2 stddev."""


def _contrib_scaling(args: Bound, factor: float, mode: str, uniform: bool) -> tuple[str, Config]:
    """contrib's variance scaling as Keras's VarianceScaling.

    contrib computes fans as Keras does (but divides by n without Keras's max(1, n), which only
    a weight with a zero dimension reaches). Uniform, it draws from +-sqrt(3 * factor / n), as
    VarianceScaling(factor, mode, "uniform") does. Normal, it cuts N(0, 1.3 * factor / n) at two
    standard deviations, where VarianceScaling's truncated normal cuts
    N(0, scale / n / TRUNCATION_STDDEV**2): the same when scale is 1.3 * TRUNCATION_STDDEV**2 *
    factor, so the weight's standard deviation is 0.3% above sqrt(factor / n).
    """
    seed = _seed(args)
    if factor == 0:  # a zero limit or standard deviation: TF1 makes zeros
        return "Zeros", ()
    if uniform:
        scale, distribution = factor, "uniform"
    else:
        scale = CONTRIB_TRUNCATED_FACTOR * TRUNCATION_STDDEV**2 * factor
        distribution = "truncated_normal"
    config = (("scale", scale), ("mode", mode.lower()), ("distribution", distribution))
    return "VarianceScaling", (*config, ("seed", seed), *_NO_AXES)


def _contrib_variance_scaling(args: Bound) -> tuple[str, Config]:
    _tf1_dtype(args)
    # TF1 refuses any other mode (TypeError) and takes any factor; a negative one fails when
    # the weight is made (math.sqrt)
    mode = _choice(args, "mode", ("FAN_IN", "FAN_OUT", "FAN_AVG"))
    factor = _number(args, "factor", least=0.0)
    return _contrib_scaling(args, factor, mode, bool_arg(args, "uniform"))


def _contrib_xavier(args: Bound) -> tuple[str, Config]:
    # variance_scaling_initializer(factor=1.0, mode="FAN_AVG", uniform, seed, dtype)
    _tf1_dtype(args)
    return _contrib_scaling(args, 1.0, "FAN_AVG", bool_arg(args, "uniform"))


def _contrib_scale(args: Bound) -> float:
    """A contrib regularizer's scale, checked as l1_regularizer and l2_regularizer check it."""
    value = args.python("scale")
    string_arg(args, "scope")
    if isinstance(value, int):  # numbers.Integral, bool included
        raise ConvcError(
            f"TF1 refuses an integer scale (ValueError: scale cannot be an integer), "
            f"got scale={value}",
            args.span("scale"),
            help=f"write scale={float(value)}",
        )
    if not _is_number(value) or value < 0:
        raise ConvcError(
            f"'scale' must be a non-negative number, got scale={shown(value)}", args.span("scale")
        )
    return float(value)


def _contrib_l1(args: Bound) -> tuple[str, Config]:
    # scale * sum(|w|), as Keras's L1; a scale of 0.0 disables the regularizer
    scale = _contrib_scale(args)
    return ("L1", (("l1", scale),)) if scale else ("Regularizer", ())


def _contrib_l2(args: Bound) -> tuple[str, Config]:
    # scale * nn.l2_loss(w) is scale * sum(w ** 2) / 2: Keras's L2 with half the factor
    scale = _contrib_scale(args)
    return ("L2", (("l2", scale / 2),)) if scale else ("Regularizer", ())


_T = TF1Function
_DTYPE = ("dtype", "float32")
_SEEDED = params(("seed", None), _DTYPE)

# fmt: off
_TF1_CORE = {
    "zeros_initializer": _T("initializer", params(_DTYPE), _tf1_fill("Zeros")),
    "ones_initializer": _T("initializer", params(_DTYPE), _tf1_fill("Ones")),
    "constant_initializer": _T("initializer",
                               params(("value", 0), _DTYPE, ("verify_shape", False)),
                               _tf1_constant),
    "random_normal_initializer": _T("initializer", params(("mean", 0.0), ("stddev", 1.0))
                                    + _SEEDED, _tf1_random_normal),
    "truncated_normal_initializer": _T("initializer", params(("mean", 0.0), ("stddev", 1.0))
                                       + _SEEDED, _tf1_truncated_normal),
    "random_uniform_initializer": _T("initializer", params(("minval", 0), ("maxval", None))
                                     + _SEEDED, _tf1_random_uniform),
    "variance_scaling_initializer": _T("initializer",
                                       params(("scale", 1.0), ("mode", "fan_in"),
                                              ("distribution", "truncated_normal")) + _SEEDED,
                                       _tf1_variance_scaling),
    "glorot_uniform_initializer": _T("initializer", _SEEDED,
                                     _tf1_scaling_subclass("GlorotUniform")),
    "glorot_normal_initializer": _T("initializer", _SEEDED, _tf1_scaling_subclass("GlorotNormal")),
    "orthogonal_initializer": _T("initializer", params(("gain", 1.0)) + _SEEDED, _tf1_orthogonal),
}
_TF1_CONTRIB = {
    "xavier_initializer": _T("initializer", params(("uniform", True)) + _SEEDED, _contrib_xavier,
                             is_class=False),
    "variance_scaling_initializer": _T("initializer",
                                       params(("factor", 2.0), ("mode", "FAN_IN"),
                                              ("uniform", False)) + _SEEDED,
                                       _contrib_variance_scaling, is_class=False),
    "l1_regularizer": _T("regularizer", params("scale", ("scope", None)), _contrib_l1,
                         is_class=False),
    "l2_regularizer": _T("regularizer", params("scale", ("scope", None)), _contrib_l2,
                         is_class=False),
}
# fmt: on
_TF1_CONTRIB["xavier_initializer_conv2d"] = _TF1_CONTRIB["xavier_initializer"]  # TF1's alias

TF1_FUNCTIONS: dict[str, TF1Function] = {
    **{f"{module}.{name}": f for module in ("tf", "tf.compat.v1") for name, f in _TF1_CORE.items()},
    **{f"tf.contrib.layers.{name}": f for name, f in _TF1_CONTRIB.items()},
}
"""Every TF1 spelling convc reads, by its full dotted name."""


# ---------------------------------------------------------------------------------------------
# Reading a value


def _parse(registry: Registry, value: Value, argument: str) -> tuple[str, Config]:
    if isinstance(value, Literal) and isinstance(value.value, str):
        return _from_string(registry, value)
    if isinstance(value, Call | Reference) and value.name in TF1_FUNCTIONS:
        return _from_tf1(registry, value, argument)
    if isinstance(value, Call):
        keras_class = _attribute(registry, value.name, value.name_span, argument)
        return _build(keras_class, value, value.short_name)
    if isinstance(value, Reference):
        # keras.<module>.get instantiates a class given without a call, with no arguments
        keras_class = _attribute(registry, value.name, value.span, argument)
        bare = Call(value.name, (), (), value.span, value.span)
        return _build(keras_class, bare, value.name.rsplit(".", 1)[-1])
    if isinstance(value, Mapping):
        return _from_dict(registry, value)
    if isinstance(value, Sequence):
        given = f"a {value.kind}"
    elif isinstance(value, Apply):  # Dense(3)(x): a layer applied to a tensor
        given = "a layer call"
    else:
        given = shown(value.value)
    help = None
    if registry is INITIALIZERS and isinstance(value, Literal) and _is_number(value.value):
        help = f"to fill the weight with {value.value}, write Constant({value.value})"
    raise ConvcError(
        f"'{argument}' must name a Keras {registry.kind}: a string such as "
        f"{_EXAMPLES[registry.kind][0]}, a call such as {_EXAMPLES[registry.kind][1]} "
        f"or a config dict; got {given}",
        value.span,
        help=help,
    )


_EXAMPLES = {
    "initializer": ("'he_normal'", "HeNormal(seed=1)"),
    "regularizer": ("'l2'", "L2(0.01)"),
    "constraint": ("'max_norm'", "MaxNorm(2)"),
}


def _build(keras_class: KerasClass, call: Call, what: str) -> tuple[str, Config]:
    if keras_class.abstract:
        raise ConvcError(
            f"{what} is Keras's abstract base class: Keras fails (NotImplementedError) when it "
            "makes the weight",
            call.name_span,
            help="name a concrete initializer, e.g. 'glorot_uniform'",
        )
    args = bind(call, keras_class.signature, what)
    return keras_class.name, keras_class.check(args)


def _from_tf1(registry: Registry, value: Call | Reference, argument: str) -> tuple[str, Config]:
    function = TF1_FUNCTIONS[value.name]
    span = value.name_span if isinstance(value, Call) else value.span
    if function.kind != registry.kind:
        article = "an" if function.kind[0] in "aeiou" else "a"
        raise ConvcError(
            f"{value.name} is a TF1 {function.kind}, not {registry.article} {registry.kind}",
            span,
            help=f"'{argument}' takes {registry.article} {registry.kind}, not {article} "
            f"{function.kind}",
        )
    if isinstance(value, Reference):
        if not function.is_class:  # TF1 would call the function itself with the weight's shape
            required = ", ".join(
                f"{p.name}=..." for p in function.signature if p.default is REQUIRED
            )
            raise ConvcError(
                f"{value.name} must be called: it is a function that returns "
                f"{registry.article} {registry.kind}",
                span,
                help=f"call it: {value.name}({required})",
            )
        # as a Keras class: TF1's make_variable instantiates a class given without a call
        value = Call(value.name, (), (), value.span, value.span)
    return function.convert(bind(value, function.signature, value.name))


def _from_string(registry: Registry, literal: Literal) -> tuple[str, Config]:
    name: str = literal.value
    class_name = registry.strings.get(name)
    if class_name is None:
        if name in registry.attributes:  # exported, but not a registry key
            known = registry.attributes[name]
            snake = registry.classes[known].snake
            raise ConvcError(
                f"Keras does not accept {name!r} as a {registry.kind} string "
                f"(keras.{registry.module}.get fails); it knows the class as {snake!r}",
                literal.span,
                help=f"write {snake!r}, {known!r} or {known}(...)",
            )
        raise ConvcError(
            f"unknown {registry.kind} {name!r}",
            literal.span,
            help=_unknown_help(registry, name, registry.strings),
        )
    if class_name == "Constant":
        raise ConvcError(
            f"Keras fails on the initializer string {name!r} (KeyError: 'value'): "
            "it builds Constant from an empty config",
            literal.span,
            help="write Constant(0.0), with the value you want",
        )
    bare = Call(name, (), (), literal.span, literal.span)
    return _build(registry.classes[class_name], bare, name)


def _attribute(registry: Registry, dotted: str, span: Span, argument: str) -> KerasClass:
    """The class that a (dotted) name in a call or a bare reference names."""
    module, _, name = dotted.rpartition(".")
    for other in _REGISTRIES:
        if other is not registry and other.module in module.split("."):
            raise ConvcError(
                f"{dotted} is a Keras {other.kind}, not {registry.article} {registry.kind}",
                span,
                help=f"'{argument}' takes {registry.article} {registry.kind}",
            )
    class_name = registry.attributes.get(name)
    if class_name is not None:
        return registry.classes[class_name]
    if name in registry.strings:  # a registry key that keras.<module> does not export
        known = registry.strings[name]
        raise ConvcError(
            f"keras.{registry.module} has no {name!r}: Keras knows it only as a string",
            span,
            help=f"write {name!r} or {known}(...)",
        )
    raise ConvcError(
        f"unknown {registry.kind} '{dotted}'",
        span,
        help=_tf1_help(registry, dotted) or _unknown_help(registry, name, registry.attributes),
    )


def _tf1_help(registry: Registry, dotted: str) -> str | None:
    """A "did you mean" among the TF1 names of the same kind: first those of the same module
    (tf, tf.compat.v1, tf.contrib.layers), then, for a misspelt module, the whole names."""
    if not dotted.startswith("tf."):
        return None
    paths = sorted(p for p, f in TF1_FUNCTIONS.items() if f.kind == registry.kind)
    module, _, name = dotted.rpartition(".")
    by_name = {p.rpartition(".")[2]: p for p in paths if p.rpartition(".")[0] == module}
    if close := difflib.get_close_matches(name, sorted(by_name), n=1, cutoff=0.6):
        return f"did you mean '{by_name[close[0]]}'?"
    if close := difflib.get_close_matches(dotted, paths, n=1, cutoff=0.8):
        return f"did you mean '{close[0]}'?"
    return None


def _unknown_help(registry: Registry, name: str, known: dict[str, str]) -> str | None:
    by_lower = {k.lower(): k for k in sorted(known)}
    if name.rsplit(".", 1)[-1] in known and "." in name:
        return f"a string names the class without its module: write {name.rsplit('.', 1)[-1]!r}"
    if name.lower() in by_lower:
        return f"names are case-sensitive: did you mean {by_lower[name.lower()]!r}?"
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    for other in _REGISTRIES:
        if other is not registry and (name in other.strings or name in other.attributes):
            return f"{name!r} is a Keras {other.kind}, not {registry.article} {registry.kind}"
    return None


_DICT_KEYS = ("class_name", "config", "module", "registered_name")


def _from_dict(registry: Registry, mapping: Mapping) -> tuple[str, Config]:
    """A serialized object, as keras.saving's deserialize_keras_object reads it."""
    fields = _string_keys(mapping, f"{registry.article} {registry.kind} config dict")
    for key, (key_value, _) in fields.items():
        if key not in _DICT_KEYS:
            close = difflib.get_close_matches(key, _DICT_KEYS, n=1, cutoff=0.6)
            raise ConvcError(
                f"unknown key {key!r} in {registry.article} {registry.kind} config dict",
                key_value.span,
                help=f"did you mean {close[0]!r}?" if close else "keys: " + ", ".join(_DICT_KEYS),
            )
    if "class_name" not in fields:
        raise ConvcError(
            f"{registry.article} {registry.kind} config dict needs a 'class_name'",
            mapping.span,
            help='e.g. {"class_name": "HeNormal", "config": {"seed": 1}}',
        )
    name_value = fields["class_name"][1]
    if not (isinstance(name_value, Literal) and isinstance(name_value.value, str)):
        raise ConvcError("'class_name' must be a string", name_value.span)
    name = name_value.value
    if "module" in fields and _is_none(fields["module"][1]):
        raise ConvcError(
            "module=None marks an unregistered custom class, which Keras cannot deserialize",
            fields["module"][1].span,
        )
    class_name = registry.strings.get(name)
    if class_name is None:
        raise ConvcError(
            f"unknown {registry.kind} class {name!r}",
            name_value.span,
            help=_unknown_help(registry, name, registry.strings),
        )
    keywords: tuple[Keyword, ...] = ()
    config_value = fields["config"][1] if "config" in fields else None
    if config_value is not None and not _is_none(config_value):
        if not isinstance(config_value, Mapping):
            raise ConvcError("'config' must be a dict of constructor arguments", config_value.span)
        entries = _string_keys(config_value, "the 'config' dict")
        keywords = tuple(Keyword(k, v, kv.span) for k, (kv, v) in entries.items())
    if class_name == "Constant" and not any(k.name == "value" for k in keywords):
        raise ConvcError(
            "Keras fails on a Constant config without 'value' (KeyError: 'value')",
            mapping.span,
            help='give it, e.g. "config": {"value": 0.0}',
        )
    call = Call(name, (), keywords, mapping.span, name_value.span)
    return _build(registry.classes[class_name], call, name)


def _string_keys(mapping: Mapping, what: str) -> dict[str, tuple[Literal, Value]]:
    fields: dict[str, tuple[Literal, Value]] = {}
    for key, item in mapping.entries:
        if not (isinstance(key, Literal) and isinstance(key.value, str)):
            raise ConvcError(f"the keys of {what} must be strings", key.span)
        if key.value in fields:
            raise ConvcError(f"key {key.value!r} appears twice in {what}", key.span)
        fields[key.value] = (key, item)
    return fields


def _is_none(value: Value) -> bool:
    return isinstance(value, Literal) and value.value is None
