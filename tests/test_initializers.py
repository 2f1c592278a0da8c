"""Initializers, regularizers and constraints: the forms Keras accepts, the numbers, the errors.

Keras 3 on the torch backend is the oracle: every accepted text is also evaluated by Keras
(``keras.initializers.get(eval(text))``) and its class and config compared; the statistics of the
draws are checked against bounds computed here from the formulas in keras/src/initializers, and
Keras's own samples are checked against the same bounds.

TensorFlow 1's objects (``tf.zeros_initializer()``, ``tf.contrib.layers.xavier_initializer()``
...) have no oracle here: their draws are checked against bounds computed from the formulas in
TF1's tensorflow/python/ops/init_ops.py and tensorflow/contrib/layers/python/layers/.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import math  # noqa: E402
import types  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from keras.src import constraints as keras_constraints  # noqa: E402
from keras.src import initializers as keras_initializers  # noqa: E402
from keras.src import regularizers as keras_regularizers  # noqa: E402
from keras.src.initializers.random_initializers import compute_fans as keras_fans  # noqa: E402
from onnx import numpy_helper  # noqa: E402

from convc.compiler import compile_text  # noqa: E402
from convc.diagnostics import ConvcError  # noqa: E402
from convc.layers.initializers import (  # noqa: E402
    CONSTRAINTS,
    INITIALIZERS,
    REGULARIZERS,
    TF1_FUNCTIONS,
    Initializer,
    Recorded,
    compute_fans,
    parse_constraint,
    parse_initializer,
    parse_regularizer,
)
from convc.syntax import parse  # noqa: E402

from oracle import assert_keras_error  # noqa: E402

PREFIX = "Conv2D(8, kernel_initializer="


def _value(text: str):
    return parse(f"{PREFIX}{text})\n").statements[0].kwargs[0].value


def initializer(text: str) -> Initializer:
    return parse_initializer(_value(text), "kernel_initializer")


def regularizer(text: str) -> Recorded | None:
    return parse_regularizer(_value(text), "kernel_regularizer")


def constraint(text: str) -> Recorded | None:
    return parse_constraint(_value(text), "kernel_constraint")


def column(text: str, fragment: str) -> int:
    """The 1-based column of ``fragment`` of ``text`` once it is written after PREFIX."""
    return len(PREFIX) + text.index(fragment) + 1


_PARSERS = {"initializer": initializer, "regularizer": regularizer, "constraint": constraint}
_MODULES = {
    "initializer": keras.initializers,
    "regularizer": keras.regularizers,
    "constraint": keras.constraints,
}


def keras_object(kind: str, text: str):
    """What Keras makes of the same text, read as Python in a Keras program."""
    module = _MODULES[kind]
    namespace = {name: getattr(module, name) for name in dir(module) if not name.startswith("_")}
    namespace |= {
        "keras": keras,
        "tf": types.SimpleNamespace(keras=keras),
        "initializers": keras.initializers,
        "regularizers": keras.regularizers,
        "constraints": keras.constraints,
    }
    return module.get(eval(text, namespace))


def assert_config_matches_keras(ours: Initializer | Recorded, theirs) -> None:
    assert ours.class_name == type(theirs).__name__
    config = dict(ours.config)
    for key, value in theirs.get_config().items():
        if isinstance(value, list):
            value = tuple(value)
        if isinstance(value, float):  # Keras keeps some factors as float32 tensors
            value = pytest.approx(value, rel=1e-6)
        assert config[key] == value, key


# ---------------------------------------------------------------------------------------------
# The registries are Keras's


@pytest.mark.parametrize(
    ("registry", "keras_module", "public"),
    [
        (INITIALIZERS, keras_initializers, keras.initializers),
        (REGULARIZERS, keras_regularizers, keras.regularizers),
        (CONSTRAINTS, keras_constraints, keras.constraints),
    ],
    ids=["initializers", "regularizers", "constraints"],
)
def test_registry_names_are_keras_names(registry, keras_module, public):
    assert set(registry.strings) == set(keras_module.ALL_OBJECTS_DICT)
    for name, class_name in registry.strings.items():
        assert keras_module.ALL_OBJECTS_DICT[name].__name__ == class_name, name
    exported = {n for n in dir(public) if isinstance(getattr(public, n), type)}
    assert set(registry.attributes) == exported
    for name, class_name in registry.attributes.items():
        assert getattr(public, name).__name__ == class_name, name


def _draw_shape(class_name: str) -> tuple[int, ...]:
    return {"Identity": (4, 6), "STFT": (8, 1, 5)}.get(class_name, (3, 3, 4, 8))


KERAS_FAILS_ON_STRING = {"Constant", "constant", "Initializer", "initializer"}


@pytest.mark.parametrize("name", sorted(INITIALIZERS.strings))
def test_every_initializer_string_draws(name):
    if name in KERAS_FAILS_ON_STRING:
        with pytest.raises(ConvcError):
            initializer(repr(name))
        with pytest.raises((KeyError, NotImplementedError)):
            keras.initializers.get(name)((3, 3))
        return
    init = initializer(repr(name))
    assert init.class_name == keras_initializers.ALL_OBJECTS_DICT[name].__name__
    shape = _draw_shape(init.class_name)
    weight = init.draw(shape, np.random.default_rng(0))
    assert weight.shape == shape and weight.dtype == np.float32
    assert np.isfinite(weight).all()
    if init.class_name != "STFT":  # Keras's STFT needs scipy for its default window
        assert_config_matches_keras(init, keras.initializers.get(name))


# ---------------------------------------------------------------------------------------------
# Accepted forms, compared with what Keras makes of the same text

INITIALIZER_FORMS = [
    # id, text, class name, expected config entries
    ("call-keyword", "HeNormal(seed=1)", "HeNormal", {"seed": 1, "input_axes": None}),
    (
        "call-positional-dotted",
        "keras.initializers.RandomNormal(0.0, 0.01)",
        "RandomNormal",
        {"mean": 0.0, "stddev": 0.01, "seed": None},
    ),
    ("call-short-module", "initializers.Constant(0.1)", "Constant", {"value": 0.1}),
    ("call-tf-keras", "tf.keras.initializers.GlorotUniform()", "GlorotUniform", {"seed": None}),
    ("call-snake-alias", "keras.initializers.glorot_uniform(seed=3)", "GlorotUniform", {"seed": 3}),
    ("call-snake-positional", "keras.initializers.he_normal(7)", "HeNormal", {"seed": 7}),
    (
        "call-compat-alias",
        "keras.initializers.OrthogonalInitializer(2.0)",
        "Orthogonal",
        {"gain": 2.0, "seed": None},
    ),
    (
        "variance-scaling-normal",
        "VarianceScaling(2, 'fan_out', 'Normal', 5)",
        "VarianceScaling",
        {"scale": 2.0, "mode": "fan_out", "distribution": "truncated_normal", "seed": 5},
    ),
    (
        "variance-scaling-axes",
        "VarianceScaling(distribution='untruncated_normal', input_axes=[0, 1], output_axes=(2,))",
        "VarianceScaling",
        {"input_axes": (0, 1), "output_axes": (2,)},
    ),
    (
        "uniform-keywords",
        "RandomUniform(minval=-1, maxval=1)",
        "RandomUniform",
        {"minval": -1.0, "maxval": 1.0},
    ),
    ("truncated", "TruncatedNormal(stddev=1.0)", "TruncatedNormal", {"mean": 0.0, "stddev": 1.0}),
    ("identity", "Identity(0.5)", "Identity", {"gain": 0.5}),
    (
        "stft-no-window",
        "STFT('imag', None, None)",
        "STFT",
        {"side": "imag", "window": None, "scaling": None, "periodic": False},
    ),
    (
        "stft-list-window",
        "keras.initializers.STFT(window=[1, 2, 3], periodic=True)",
        "STFT",
        {"window": (1.0, 2.0, 3.0), "scaling": "density", "periodic": True},
    ),
    ("constant-negative-int", "Constant(value=-2)", "Constant", {"value": -2.0}),
    ("zeros-call", "Zeros()", "Zeros", {}),
    ("ones-snake-call", "keras.initializers.ones()", "Ones", {}),
    ("reference-class", "keras.initializers.HeNormal", "HeNormal", {"seed": None}),
    # keras.initializers.get(Constant) calls Constant(): only the string form fails
    ("reference-constant", "keras.initializers.Constant", "Constant", {"value": 0.0}),
    ("reference-bare-snake", "he_uniform", "HeUniform", {"seed": None}),
    ("dict", '{"class_name": "HeNormal", "config": {"seed": 1}}', "HeNormal", {"seed": 1}),
    (
        "dict-with-module",
        '{"module": "keras.initializers", "class_name": "HeNormal", "config": {"seed": 1},'
        ' "registered_name": None}',
        "HeNormal",
        {"seed": 1},
    ),
    ("dict-snake-no-config", '{"class_name": "he_normal"}', "HeNormal", {"seed": None}),
    (
        "dict-alias-config-none",
        '{"class_name": "normal", "config": None}',
        "RandomNormal",
        {"mean": 0.0, "stddev": 0.05},
    ),
    (
        "dict-constant",
        '{"class_name": "Constant", "config": {"value": 0.5}}',
        "Constant",
        {"value": 0.5},
    ),
    (
        "dict-keras2-variance-scaling",
        '{"class_name": "VarianceScaling", "config": {"scale": 2.0, "mode": "fan_in",'
        ' "distribution": "truncated_normal", "seed": None}}',
        "VarianceScaling",
        {"scale": 2.0, "mode": "fan_in", "distribution": "truncated_normal"},
    ),
    ("string-alias", "'uniform'", "RandomUniform", {"minval": -0.05, "maxval": 0.05}),
]


@pytest.mark.parametrize(
    ("text", "class_name", "expected"),
    [row[1:] for row in INITIALIZER_FORMS],
    ids=[row[0] for row in INITIALIZER_FORMS],
)
def test_initializer_forms(text, class_name, expected):
    init = initializer(text)
    assert init.class_name == class_name
    config = dict(init.config)
    assert {k: config[k] for k in expected} == expected
    assert_config_matches_keras(init, keras_object("initializer", text))


def test_initializer_config_lists_every_parameter_in_keras_order():
    init = initializer("VarianceScaling(seed=2)")
    assert init.config == (
        ("scale", 1.0),
        ("mode", "fan_in"),
        ("distribution", "truncated_normal"),
        ("seed", 2),
        ("input_axes", None),
        ("output_axes", None),
    )
    assert initializer("'he_normal'").config == (
        ("seed", None),
        ("input_axes", None),
        ("output_axes", None),
    )


def test_none_initializer_is_glorot_uniform_as_in_add_weight():
    # Keras: initializers.get(None) is None, then Layer.add_weight uses "glorot_uniform"
    assert initializer("None") == initializer("'glorot_uniform'")
    layer = keras.layers.Conv1D(4, 3, bias_initializer=None)
    layer.build((None, 8, 2))
    bias = keras.ops.convert_to_numpy(layer.bias)
    assert np.abs(bias).max() > 0  # not zeros
    assert np.abs(bias).max() <= math.sqrt(6 / (4 + 4))


# ---------------------------------------------------------------------------------------------
# The numbers

FAN_SHAPES = [(), (5,), (4, 6), (3, 16, 32), (3, 3, 16, 32), (2, 3, 3, 8, 4), (3, 3, 1, 1)]


@pytest.mark.parametrize("shape", FAN_SHAPES, ids=lambda s: "x".join(map(str, s)) or "scalar")
def test_compute_fans_matches_keras(shape):
    assert compute_fans(shape) == keras_fans(shape)


def test_compute_fans_with_axes_matches_keras():
    shape = (3, 4, 5, 6)
    assert compute_fans(shape, (0, 1), (-1,)) == keras_fans(shape, [0, 1], [-1]) == (12, 6)
    assert compute_fans(shape, (0,), None) == keras_fans(shape, [0], None)  # one alone: ignored


SHAPE = (3, 3, 32, 64)  # a Conv2D kernel: fan_in = 9 * 32, fan_out = 9 * 64
FAN_IN, FAN_OUT = 9 * 32, 9 * 64
FAN_AVG = (FAN_IN + FAN_OUT) / 2
TRUNCATED = 0.87962566103423978  # std of N(0, 1) cut to (-2, 2), from VarianceScaling


def _uniform(limit, low=None):
    low = -limit if low is None else low
    return {"low": low, "high": limit, "mean": (low + limit) / 2, "std": (limit - low) / 12**0.5}


def _scaled_truncated(variance):
    # Keras draws N(0, sigma^2) cut to (-2 sigma, 2 sigma) with sigma = sqrt(variance) / TRUNCATED
    sigma = math.sqrt(variance) / TRUNCATED
    return {"low": -2 * sigma, "high": 2 * sigma, "mean": 0.0, "std": math.sqrt(variance)}


def _truncated(mean, stddev):
    return {
        "low": mean - 2 * stddev,
        "high": mean + 2 * stddev,
        "mean": mean,
        "std": stddev * TRUNCATED,
    }


def _normal(mean, stddev):
    return {"low": None, "high": None, "mean": mean, "std": stddev}


DISTRIBUTIONS = [
    ("glorot_uniform", "GlorotUniform(seed=11)", _uniform(math.sqrt(6 / (FAN_IN + FAN_OUT)))),
    ("he_uniform", "HeUniform(seed=12)", _uniform(math.sqrt(6 / FAN_IN))),
    ("lecun_uniform", "LecunUniform(seed=13)", _uniform(math.sqrt(3 / FAN_IN))),
    (
        "vs_uniform_fan_out",
        "VarianceScaling(0.5, 'fan_out', 'uniform', seed=14)",
        _uniform(math.sqrt(3 * 0.5 / FAN_OUT)),
    ),
    ("glorot_normal", "GlorotNormal(seed=15)", _scaled_truncated(1 / FAN_AVG)),
    ("he_normal", "HeNormal(seed=16)", _scaled_truncated(2 / FAN_IN)),
    ("lecun_normal", "LecunNormal(seed=17)", _scaled_truncated(1 / FAN_IN)),
    (
        "vs_untruncated_fan_avg",
        "VarianceScaling(3.0, 'fan_avg', 'untruncated_normal', seed=18)",
        _normal(0.0, math.sqrt(3 / FAN_AVG)),
    ),
    (
        "vs_axes",
        "VarianceScaling(2.0, 'fan_in', 'uniform', 19, input_axes=[2], output_axes=[3])",
        _uniform(math.sqrt(3 * 2 / 32)),
    ),
    ("random_normal", "RandomNormal(0.5, 0.1, seed=20)", _normal(0.5, 0.1)),
    ("random_uniform", "RandomUniform(-0.2, 0.3, seed=21)", _uniform(0.3, low=-0.2)),
    ("truncated_normal", "TruncatedNormal(0.1, 1.0, seed=22)", _truncated(0.1, 1.0)),
]


def _check_sample(sample: np.ndarray, expected: dict, outside: float = 0.0) -> None:
    n = sample.size
    assert abs(sample.mean() - expected["mean"]) < 5 * expected["std"] / math.sqrt(n)
    assert sample.std() == pytest.approx(expected["std"], rel=0.03)
    if expected["low"] is None:  # unbounded: the tails are there
        assert np.abs(sample - expected["mean"]).max() > 3 * expected["std"]
        return
    tolerance = 1e-6 * max(abs(expected["low"]), abs(expected["high"]))
    inside = (sample >= expected["low"] - tolerance) & (sample <= expected["high"] + tolerance)
    assert 1 - inside.mean() <= outside
    width = expected["high"] - expected["low"]
    assert sample[inside].min() < expected["low"] + 0.01 * width  # the support is all used
    assert sample[inside].max() > expected["high"] - 0.01 * width


@pytest.mark.parametrize(
    ("text", "expected"), [row[1:] for row in DISTRIBUTIONS], ids=[row[0] for row in DISTRIBUTIONS]
)
def test_draws_follow_keras_formulas(text, expected):
    sample = initializer(text).draw(SHAPE, np.random.default_rng(0))
    assert sample.shape == SHAPE and sample.dtype == np.float32
    _check_sample(sample.astype(np.float64), expected)


@pytest.mark.parametrize(
    ("text", "expected"), [row[1:] for row in DISTRIBUTIONS], ids=[row[0] for row in DISTRIBUTIONS]
)
def test_keras_samples_follow_the_same_formulas(text, expected):
    sample = keras.ops.convert_to_numpy(keras_object("initializer", text)(SHAPE))
    # torch's truncated normal keeps the first of 4 candidates inside (-2, 2) and, when none is,
    # the first one: about 4e-6 of its values fall outside the bounds.
    _check_sample(sample.astype(np.float64), expected, outside=1e-3)


@pytest.mark.parametrize(
    ("text", "shape"),
    [
        ("Orthogonal()", (3, 3, 16, 32)),
        ("Orthogonal(gain=2.0)", (4, 8)),
        ("'orthogonal'", (5, 5)),
        ("Orthogonal(0.5, 3)", (2, 3, 6)),
    ],
    ids=["tall-conv-kernel", "wide-gain2", "square", "seeded-rank3"],
)
def test_orthogonal_is_orthogonal_times_gain(text, shape):
    init = initializer(text)
    gain = dict(init.config)["gain"]
    for sample in (
        init.draw(shape, np.random.default_rng(0)),
        keras.ops.convert_to_numpy(keras_object("initializer", text)(shape)),
    ):
        flat = sample.reshape(-1, shape[-1]).astype(np.float64)
        gram = flat.T @ flat if flat.shape[0] >= flat.shape[1] else flat @ flat.T
        np.testing.assert_allclose(gram, gain**2 * np.eye(len(gram)), atol=1e-5)


EXACT = [
    ("zeros", "'zeros'", (3, 3, 2, 4)),
    ("ones", "'ones'", (5,)),
    ("constant", "Constant(0.3)", (2, 3)),
    ("identity-wide-gain", "Identity(2.0)", (3, 5)),
    ("identity-tall", "'identity'", (5, 3)),
    ("stft-real-no-window", "STFT(window=None)", (8, 1, 5)),
    ("stft-imag-list-spectrum", "STFT('imag', [1, 2, 3, 4, 3, 2], 'spectrum')", (6, 1, 4)),
    ("stft-list-density", "STFT(window=[0.5, 1, 0.5], scaling='density')", (3, 1, 7)),
]


@pytest.mark.parametrize(
    ("text", "shape"), [row[1:] for row in EXACT], ids=[row[0] for row in EXACT]
)
def test_deterministic_initializers_equal_keras(text, shape):
    ours = initializer(text).draw(shape, np.random.default_rng(0))
    theirs = keras.ops.convert_to_numpy(keras_object("initializer", text)(shape))
    np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=1e-5)


def test_stft_named_window_follows_scipy_formula():
    # Keras's STFT takes scipy.signal.get_window(window, frames, fftbins=periodic)
    frames = 6
    for periodic, length in ((False, frames), (True, frames + 1)):
        n = np.arange(frames)
        hann = 0.5 - 0.5 * np.cos(2 * np.pi * n / (length - 1))
        init = initializer(f"STFT(window='hann', scaling=None, periodic={periodic})")
        ours = init.draw((frames, 1, 3), np.random.default_rng(0))
        plain = initializer("STFT(window=None)").draw((frames, 1, 3), np.random.default_rng(0))
        np.testing.assert_allclose(ours, plain * hann.reshape(frames, 1, 1), atol=1e-6)


@pytest.mark.parametrize("periodic", [False, True], ids=["symmetric", "periodic"])
@pytest.mark.parametrize("window", ["hann", "hamming", "blackman", "bartlett", "boxcar", "ham"])
def test_stft_named_windows_equal_keras_with_scipy(window, periodic):
    pytest.importorskip("scipy")  # Keras takes named windows from scipy.signal.get_window
    text = f"STFT('real', {window!r}, 'spectrum', {periodic})"
    ours = initializer(text).draw((7, 1, 5), np.random.default_rng(0))
    theirs = keras.ops.convert_to_numpy(keras_object("initializer", text)((7, 1, 5)))
    np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=1e-5)


RANDOM = [
    "'glorot_uniform'",
    "'he_normal'",
    "'orthogonal'",
    "'normal'",
    "'truncated_normal'",
    "VarianceScaling(distribution='untruncated_normal')",
    "'uniform'",
]


@pytest.mark.parametrize("text", RANDOM)
def test_same_generator_seed_same_bytes(text):
    init = initializer(text)
    first = init.draw((3, 3, 4, 8), np.random.default_rng(7))
    again = init.draw((3, 3, 4, 8), np.random.default_rng(7))
    other = init.draw((3, 3, 4, 8), np.random.default_rng(8))
    assert first.tobytes() == again.tobytes()
    assert first.tobytes() != other.tobytes()


def test_seed_argument_overrides_the_generator():
    init = initializer("HeNormal(seed=5)")
    first = init.draw((3, 3, 4, 8), np.random.default_rng(0))
    assert first.tobytes() == init.draw((3, 3, 4, 8), np.random.default_rng(1)).tobytes()
    other = initializer("HeNormal(seed=6)").draw((3, 3, 4, 8), np.random.default_rng(0))
    assert first.tobytes() != other.tobytes()
    negative = initializer("HeNormal(seed=-1)").draw((2, 2), np.random.default_rng(0))
    assert negative.shape == (2, 2)  # Keras accepts negative seeds


DRAW_ERRORS = [
    ("orthogonal-rank1", "'orthogonal'", (5,), "rank 2 or more, got shape (5,)"),
    ("identity-rank4", "'identity'", (3, 3, 2, 4), "2-D weights only, got shape (3, 3, 2, 4)"),
    ("stft-two-channels", "STFT(window=None)", (8, 2, 5), "got shape (8, 2, 5)"),
    ("stft-one-bin", "STFT(window=None)", (8, 1, 1), "bins >= 2"),
    ("stft-window-length", "STFT(window=[1, 2, 3])", (8, 1, 5), "3 values but the kernel has 8"),
    ("stft-zero-window", "'stft'", (2, 1, 5), "all zeros for 2 frames"),
    (
        "fan-axes-out-of-range",
        "GlorotUniform(input_axes=[0], output_axes=[5])",
        (3, 4),
        "out of range for a weight of shape (3, 4)",
    ),
]


@pytest.mark.parametrize(
    ("text", "shape", "message"),
    [row[1:] for row in DRAW_ERRORS],
    ids=[row[0] for row in DRAW_ERRORS],
)
def test_draw_errors(text, shape, message):
    init = initializer(text)
    with pytest.raises(ConvcError) as error:
        init.draw(shape, np.random.default_rng(0))
    assert message in error.value.message
    assert error.value.span is None


# ---------------------------------------------------------------------------------------------
# Errors: located at the bad value, repeating it. "keras" says whether Keras also fails on the
# text (in the constructor, in get, or when it makes the weight), or convc is stricter.

INITIALIZER_ERRORS = [
    # id, text, message fragment, located at, help fragment, keras fails too
    (
        "misspelt-string",
        "'he_norml'",
        "unknown initializer 'he_norml'",
        "'he_norml'",
        "did you mean 'he_normal'?",
        True,
    ),
    (
        "wrong-case-string",
        "'HENormal'",
        "unknown initializer 'HENormal'",
        "'HENormal'",
        "case-sensitive: did you mean 'HeNormal'?",
        True,
    ),
    (
        "constant-string",
        "'constant'",
        "Keras fails on the initializer string 'constant'",
        "'constant'",
        "Constant(0.0)",
        True,
    ),
    (
        "constant-class-string",
        "'Constant'",
        "KeyError: 'value'",
        "'Constant'",
        "Constant(0.0)",
        True,
    ),
    ("abstract-string", "'Initializer'", "abstract base class", "'Initializer'", "concrete", True),
    (
        "abstract-call",
        "keras.initializers.Initializer()",
        "abstract base class",
        "keras",
        None,
        True,
    ),
    (
        "dotted-string",
        "'keras.initializers.HeNormal'",
        "unknown initializer",
        "'keras",
        "write 'HeNormal'",
        True,
    ),
    (
        "regularizer-string",
        "'l2'",
        "unknown initializer 'l2'",
        "'l2'",
        "'l2' is a Keras regularizer",
        True,
    ),
    (
        "regularizer-call",
        "keras.regularizers.l2(0.01)",
        "keras.regularizers.l2 is a Keras regularizer, not an initializer",
        "keras",
        "'kernel_initializer' takes an initializer",
        False,
    ),
    (
        "misspelt-call",
        "HeNorml(seed=1)",
        "unknown initializer 'HeNorml'",
        "HeNorml",
        "did you mean 'HeNormal'?",
        False,
    ),
    (
        "string-only-alias-call",
        "keras.initializers.normal(0.0, 1.0)",
        "keras.initializers has no 'normal'",
        "keras",
        "RandomNormal(...)",
        True,
    ),
    (
        "misspelt-keyword",
        "HeNormal(sed=1)",
        "HeNormal has no argument 'sed'",
        "sed",
        "did you mean 'seed'?",
        True,
    ),
    (
        "too-many-positionals",
        "HeNormal(1, None, None, 4)",
        "at most 3 positional arguments",
        "4",
        None,
        True,
    ),
    (
        "float-seed",
        "HeNormal(seed=1.5)",
        "'seed' must be an integer or None, got seed=1.5",
        "1.5",
        None,
        True,
    ),
    ("zero-scale", "VarianceScaling(scale=0)", "'scale' must be > 0, got scale=0", "0", None, True),
    ("negative-scale", "VarianceScaling(-1.0)", "got scale=-1.0", "-1.0", None, True),
    (
        "string-scale",
        "VarianceScaling(scale='2')",
        "'scale' must be a number, got scale='2'",
        "'2'",
        None,
        True,
    ),
    (
        "mode-case",
        "VarianceScaling(mode='FAN_IN')",
        "'mode' must be one of 'fan_in'",
        "'FAN_IN'",
        "case-sensitive: write 'fan_in'",
        True,
    ),
    (
        "mode-misspelt",
        "VarianceScaling(mode='fan_inn')",
        "got mode='fan_inn'",
        "'fan_inn'",
        "did you mean 'fan_in'?",
        True,
    ),
    (
        "bad-distribution",
        "VarianceScaling(distribution='gaussian')",
        "'distribution' must be one of",
        "'gaussian'",
        None,
        True,
    ),
    (
        "number-distribution",
        "VarianceScaling(1.0, 'fan_in', 3)",
        "got distribution=3",
        "3",
        None,
        True,
    ),
    (
        "negative-stddev",
        "RandomNormal(stddev=-0.1)",
        "'stddev' must be >= 0, got stddev=-0.1",
        "-0.1",
        None,
        True,
    ),
    (
        "none-minval",
        "RandomUniform(minval=None)",
        "'minval' must be a number, got minval=None",
        "None",
        None,
        True,
    ),
    (
        "infinite-mean",
        "RandomNormal(mean=1e999)",
        "'mean' must be a number, got mean=inf",
        "1e999",
        None,
        False,
    ),
    ("string-constant", "Constant('a')", "must be a number, got value='a'", "'a'", None, True),
    (
        "list-constant",
        "Constant([1, 2])",
        "must be a number, got value=[1, 2]",
        "[1",
        "scalar",
        False,
    ),
    (
        "int-axes",
        "GlorotUniform(input_axes=0, output_axes=[1])",
        "'input_axes' must be a list of integers or None, got input_axes=0",
        "0",
        None,
        True,
    ),
    (
        "stft-side-case",
        "STFT(side='Real')",
        "'side' must be one of 'real', 'imag'",
        "'Real'",
        "case-sensitive",
        True,
    ),
    (
        "stft-window-unsupported",
        "STFT(window='kaiser')",
        "window 'kaiser' is not supported",
        "'kaiser'",
        "'hann'",
        False,
    ),
    (
        "stft-scaling",
        "STFT(scaling='l2')",
        "'scaling' must be one of 'density', 'spectrum'",
        "'l2'",
        None,
        True,
    ),
    ("stft-periodic-int", "STFT(periodic=1)", "'periodic' must be True or False", "1", None, False),
    (
        "number",
        "0.5",
        "'kernel_initializer' must name a Keras initializer",
        "0.5",
        "write Constant(0.5)",
        True,
    ),
    ("list", "[1, 2]", "got a list", "[1", None, True),
    (
        "dict-misspelt-key",
        '{"class_name": "HeNormal", "conifg": {"seed": 1}}',
        "unknown key 'conifg'",
        '"conifg"',
        "did you mean 'config'?",
        False,
    ),
    ("dict-no-class-name", '{"config": {"seed": 1}}', "needs a 'class_name'", "{", None, True),
    (
        "dict-unknown-class",
        '{"class_name": "HeNormall"}',
        "unknown initializer class 'HeNormall'",
        '"HeNormall"',
        "did you mean 'HeNormal'?",
        True,
    ),
    (
        "dict-misspelt-argument",
        '{"class_name": "HeNormal", "config": {"sed": 1}}',
        "HeNormal has no argument 'sed'",
        '"sed"',
        "did you mean 'seed'?",
        True,
    ),
    (
        "dict-constant-without-value",
        '{"class_name": "Constant"}',
        "KeyError: 'value'",
        "{",
        '"value": 0.0',
        True,
    ),
    (
        "dict-module-none",
        '{"class_name": "HeNormal", "module": None}',
        "module=None",
        "None",
        None,
        True,
    ),
    (
        "dict-config-list",
        '{"class_name": "HeNormal", "config": [1]}',
        "'config' must be a dict",
        "[1]",
        None,
        True,
    ),
    (
        "dict-class-name-not-string",
        '{"class_name": 3}',
        "'class_name' must be a string",
        "3",
        None,
        True,
    ),
    (
        "dict-key-not-string",
        '{1: "HeNormal"}',
        "keys of an initializer config dict must be strings",
        "1",
        None,
        True,
    ),
    (
        "dict-duplicate-key",
        '{"class_name": "HeNormal", "class_name": "HeUniform"}',
        "appears twice",
        '"class_name": "HeU',
        None,
        False,
    ),
    (
        "layer-reference",
        "keras.layers.Conv2D",
        "unknown initializer 'keras.layers.Conv2D'",
        "keras",
        None,
        False,
    ),
]


@pytest.mark.parametrize(
    ("text", "message", "at", "help"),
    [row[1:5] for row in INITIALIZER_ERRORS],
    ids=[row[0] for row in INITIALIZER_ERRORS],
)
def test_initializer_errors(text, message, at, help):
    with pytest.raises(ConvcError) as error:
        initializer(text)
    assert message in error.value.message
    assert error.value.span is not None and error.value.span.line == 1
    assert error.value.span.column == column(text, at)
    if help is None:
        assert error.value.help is None or "did you mean" not in error.value.help
    else:
        assert error.value.help is not None and help in error.value.help


@pytest.mark.parametrize(
    "text",
    [row[1] for row in INITIALIZER_ERRORS if row[5]],
    ids=[row[0] for row in INITIALIZER_ERRORS if row[5]],
)
def test_keras_fails_on_the_same_initializer(request, text):
    if "STFT" in text:
        pytest.importorskip("scipy")  # Keras's STFT constructor needs scipy
    try:
        keras_object("initializer", text)((3, 3, 4, 8))
    except Exception as error:  # noqa: BLE001 - its class and message are checked below
        found = error
    else:
        found = None
    assert_keras_error(found, KERAS_ERRORS.get(request.node.callspec.id))


# What Keras raises for each INITIALIZER_ERRORS row that it fails on: (exception class, a fragment
# of its message), so that an oracle bug is not taken for Keras's rejection.
KERAS_ERRORS = {
    "misspelt-string": ("ValueError", "Could not interpret initializer identifier: he_norml"),
    "wrong-case-string": ("ValueError", "Could not interpret initializer identifier: HENormal"),
    "constant-string": ("KeyError", "'value'"),
    "constant-class-string": ("KeyError", "'value'"),
    "abstract-string": (
        "NotImplementedError",
        "Initializer subclasses must implement the `__call__()`",
    ),
    "abstract-call": (
        "NotImplementedError",
        "Initializer subclasses must implement the `__call__()`",
    ),
    "dotted-string": ("ValueError", "Could not interpret initializer identifier:"),
    "regularizer-string": ("ValueError", "Could not interpret initializer identifier: l2"),
    "string-only-alias-call": (
        "AttributeError",
        "module 'keras.initializers' has no attribute 'normal'",
    ),
    "misspelt-keyword": (
        "TypeError",
        "HeNormal.__init__() got an unexpected keyword argument 'sed'",
    ),
    "too-many-positionals": (
        "TypeError",
        "HeNormal.__init__() takes from 1 to 4 positional arguments",
    ),
    "float-seed": ("ValueError", "`seed` argument should be an instance of"),
    "zero-scale": ("ValueError", "Argument `scale` must be positive float. Received: scale=0"),
    "negative-scale": ("ValueError", "Argument `scale` must be positive float. Received:"),
    "string-scale": ("TypeError", "'<=' not supported between instances of 'str' and 'float'"),
    "mode-case": ("ValueError", "Invalid `mode` argument: FAN_IN. Please use one of"),
    "mode-misspelt": ("ValueError", "Invalid `mode` argument: fan_inn. Please use one of"),
    "bad-distribution": (
        "ValueError",
        "Invalid `distribution` argument: gaussian.Please use one of",
    ),
    "number-distribution": ("AttributeError", "'int' object has no attribute 'lower'"),
    "negative-stddev": ("RuntimeError", "normal expects std >= 0.0, but found std -0.1"),
    "none-minval": ("TypeError", "unsupported operand type(s) for -: 'float' and 'NoneType'"),
    "string-constant": ("ValueError", "Invalid dtype: str32"),
    "int-axes": ("TypeError", "'int' object is not iterable"),
    "stft-side-case": ("ValueError", "side should be 'real' or 'imag', not Real"),
    "stft-scaling": ("ValueError", "Scaling is invalid, it must be `None`, 'density' or"),
    "number": ("ValueError", "Could not interpret initializer identifier: 0.5"),
    "list": ("ValueError", "Could not interpret initializer identifier: [1, 2]"),
    "dict-no-class-name": (
        "ValueError",
        "Unknown `config` as a `dict`, config={'config': {'seed': 1}}",
    ),
    "dict-unknown-class": (
        "ValueError",
        "Could not interpret initializer identifier: {'class_name':",
    ),
    "dict-misspelt-argument": ("TypeError", "<class"),
    "dict-constant-without-value": ("KeyError", "'value'"),
    "dict-module-none": (
        "TypeError",
        "Cannot deserialize object of type `HeNormal`. If `HeNormal`",
    ),
    "dict-config-list": ("TypeError", "Expected 'config' to be a dict for HeNormal, instead got"),
    "dict-class-name-not-string": (
        "ValueError",
        "Could not interpret initializer identifier: {'class_name':",
    ),
    "dict-key-not-string": ("ValueError", "Unknown `config` as a `dict`, config={1: 'HeNormal'}"),
}


# ---------------------------------------------------------------------------------------------
# Regularizers and constraints

RECORDED_FORMS = [
    # id, kind, text, class name, config
    ("l1-string", "regularizer", "'l1'", "L1", {"l1": 0.01}),
    ("l2-string", "regularizer", "'l2'", "L2", {"l2": 0.01}),
    ("l1l2-string-defaults-zero", "regularizer", "'l1l2'", "L1L2", {"l1": 0.0, "l2": 0.0}),
    ("L1L2-string", "regularizer", "'L1L2'", "L1L2", {"l1": 0.0, "l2": 0.0}),
    (
        "orthogonal-string",
        "regularizer",
        "'orthogonal_regularizer'",
        "OrthogonalRegularizer",
        {"factor": 0.01, "mode": "rows"},
    ),
    ("l1-call", "regularizer", "l1(0.001)", "L1", {"l1": 0.001}),
    ("l2-keras-call", "regularizer", "keras.regularizers.l2(1e-4)", "L2", {"l2": 1e-4}),
    (
        "l1_l2-call",
        "regularizer",
        "regularizers.l1_l2(l1=1e-5, l2=1e-4)",
        "L1L2",
        {"l1": 1e-5, "l2": 1e-4},
    ),
    ("L1L2-keyword", "regularizer", "L1L2(l1=0.01)", "L1L2", {"l1": 0.01, "l2": 0.0}),
    ("l1-none-default", "regularizer", "L1(None)", "L1", {"l1": 0.01}),
    ("l1l2-none", "regularizer", "L1L2(None, None)", "L1L2", {"l1": 0.0, "l2": 0.0}),
    (
        "orthogonal-columns",
        "regularizer",
        "OrthogonalRegularizer(0.1, 'columns')",
        "OrthogonalRegularizer",
        {"factor": 0.1, "mode": "columns"},
    ),
    ("l2-reference", "regularizer", "keras.regularizers.L2", "L2", {"l2": 0.01}),
    (
        "l1l2-dict",
        "regularizer",
        '{"class_name": "L1L2", "config": {"l1": 0.1}}',
        "L1L2",
        {"l1": 0.1, "l2": 0.0},
    ),
    (
        "l2-dict-config-none",
        "regularizer",
        '{"class_name": "L2", "config": None}',
        "L2",
        {"l2": 0.01},
    ),
    ("max_norm-string", "constraint", "'max_norm'", "MaxNorm", {"max_value": 2.0, "axis": 0}),
    ("maxnorm-call", "constraint", "MaxNorm(2)", "MaxNorm", {"max_value": 2.0, "axis": 0}),
    (
        "maxnorm-axes",
        "constraint",
        "keras.constraints.MaxNorm(3, axis=[0, 1, 2])",
        "MaxNorm",
        {"max_value": 3.0, "axis": (0, 1, 2)},
    ),
    ("nonneg-call", "constraint", "NonNeg()", "NonNeg", {}),
    ("non_neg-call", "constraint", "keras.constraints.non_neg()", "NonNeg", {}),
    ("unit_norm-string", "constraint", "'unit_norm'", "UnitNorm", {"axis": 0}),
    (
        "minmaxnorm",
        "constraint",
        "MinMaxNorm(0.5, 2.0, rate=0.5)",
        "MinMaxNorm",
        {"min_value": 0.5, "max_value": 2.0, "rate": 0.5, "axis": 0},
    ),
    ("constraint-base-string", "constraint", "'constraint'", "Constraint", {}),
    ("unitnorm-reference", "constraint", "keras.constraints.UnitNorm", "UnitNorm", {"axis": 0}),
    (
        "maxnorm-dict",
        "constraint",
        '{"class_name": "MaxNorm", "config": {"max_value": 3}}',
        "MaxNorm",
        {"max_value": 3.0, "axis": 0},
    ),
]


@pytest.mark.parametrize(
    ("kind", "text", "class_name", "expected"),
    [row[1:] for row in RECORDED_FORMS],
    ids=[row[0] for row in RECORDED_FORMS],
)
def test_regularizer_and_constraint_forms(kind, text, class_name, expected):
    recorded = _PARSERS[kind](text)
    assert isinstance(recorded, Recorded)
    assert recorded.class_name == class_name
    assert dict(recorded.config) == expected
    assert_config_matches_keras(recorded, keras_object(kind, text))


def test_regularizer_base_class_is_a_no_op_keras_accepts():
    assert regularizer("'regularizer'") == Recorded("Regularizer", ())
    assert type(keras.regularizers.get("regularizer")).__name__ == "Regularizer"


@pytest.mark.parametrize("kind", ["regularizer", "constraint"])
def test_none_means_none(kind):
    assert _PARSERS[kind]("None") is None


RECORDED_ERRORS = [
    # id, kind, text, message fragment, located at, help fragment
    (
        "l1_l2-string",
        "regularizer",
        "'l1_l2'",
        "Keras does not accept 'l1_l2'",
        "'l1_l2'",
        "write 'l1l2'",
    ),
    (
        "l1l2-call",
        "regularizer",
        "l1l2(0.1)",
        "keras.regularizers has no 'l1l2'",
        "l1l2",
        "L1L2(...)",
    ),
    (
        "negative-l2",
        "regularizer",
        "L2(-0.1)",
        "'l2' must be a non-negative number, got l2=-0.1",
        "-0.1",
        None,
    ),
    ("string-l2", "regularizer", "L2('0.1')", "got l2='0.1'", "'0.1'", None),
    (
        "misspelt-keyword",
        "regularizer",
        "L1L2(l11=0.1)",
        "L1L2 has no argument 'l11'",
        "l11",
        "did you mean 'l1'?",
    ),
    (
        "orthogonal-mode-case",
        "regularizer",
        "OrthogonalRegularizer(mode='Rows')",
        "'mode' must be one of 'rows', 'columns'",
        "'Rows'",
        "case-sensitive",
    ),
    (
        "orthogonal-factor-none",
        "regularizer",
        "OrthogonalRegularizer(None)",
        "got factor=None",
        "None",
        None,
    ),
    (
        "constraint-as-regularizer",
        "regularizer",
        "'max_norm'",
        "unknown regularizer 'max_norm'",
        "'max_norm'",
        "'max_norm' is a Keras constraint",
    ),
    (
        "initializer-as-regularizer",
        "regularizer",
        "keras.initializers.HeNormal()",
        "is a Keras initializer, not a regularizer",
        "keras",
        None,
    ),
    (
        "dict-snake-l1_l2",
        "regularizer",
        '{"class_name": "l1_l2"}',
        "unknown regularizer class 'l1_l2'",
        '"l1_l2"',
        None,
    ),
    ("string-max-value", "constraint", "MaxNorm('2')", "'max_value' must be a number", "'2'", None),
    (
        "float-axis",
        "constraint",
        "MaxNorm(axis=1.5)",
        "'axis' must be an integer or a list of integers, got axis=1.5",
        "1.5",
        None,
    ),
    (
        "misspelt-string",
        "constraint",
        "'maxnorm'",
        "unknown constraint 'maxnorm'",
        "'maxnorm'",
        "case-sensitive: did you mean 'MaxNorm'?",
    ),
    (
        "base-call",
        "constraint",
        "constraint()",
        "keras.constraints has no 'constraint'",
        "constraint",
        None,
    ),
    (
        "number",
        "constraint",
        "2.0",
        "'kernel_constraint' must name a Keras constraint",
        "2.0",
        None,
    ),
]


@pytest.mark.parametrize(
    ("kind", "text", "message", "at", "help"),
    [row[1:] for row in RECORDED_ERRORS],
    ids=[row[0] for row in RECORDED_ERRORS],
)
def test_regularizer_and_constraint_errors(kind, text, message, at, help):
    with pytest.raises(ConvcError) as error:
        _PARSERS[kind](text)
    assert message in error.value.message
    assert error.value.span is not None
    assert error.value.span.column == column(text, at)
    if help is not None:
        assert error.value.help is not None and help in error.value.help


# ---------------------------------------------------------------------------------------------
# TensorFlow 1: the initializer classes of tf.* and tf.compat.v1.* (init_ops.py), and the
# initializer and regularizer functions of tf.contrib.layers. Each becomes the Keras class and
# config that draw what TF1 draws, with TF1's defaults.

TF1_FORMS = [
    # id, text, Keras class name, expected config entries
    ("zeros", "tf.zeros_initializer()", "Zeros", {}),
    ("zeros-compat-dtype", "tf.compat.v1.zeros_initializer(dtype=tf.float32)", "Zeros", {}),
    # TF1's make_variable instantiates an initializer class given without a call
    ("zeros-class", "tf.zeros_initializer", "Zeros", {}),
    ("ones-positional-dtype", "tf.ones_initializer(tf.dtypes.float32)", "Ones", {}),
    ("ones-compat-numpy-dtype", "tf.compat.v1.ones_initializer(dtype=np.float32)", "Ones", {}),
    ("constant-default-zero", "tf.constant_initializer()", "Constant", {"value": 0.0}),
    ("constant-int", "tf.constant_initializer(value=2)", "Constant", {"value": 2.0}),
    (
        "constant-every-argument",
        "tf.compat.v1.constant_initializer(-0.5, 'float32', False)",
        "Constant",
        {"value": -0.5},
    ),
    (
        "glorot-uniform",
        "tf.glorot_uniform_initializer()",
        "GlorotUniform",
        {"seed": None, "input_axes": None, "output_axes": None},
    ),
    (
        "glorot-uniform-seeded",
        "tf.glorot_uniform_initializer(seed=3, dtype=tf.compat.v1.float32)",
        "GlorotUniform",
        {"seed": 3},
    ),
    (
        "glorot-normal-compat-dtype-none",
        "tf.compat.v1.glorot_normal_initializer(7, dtype=None)",
        "GlorotNormal",
        {"seed": 7},
    ),
    (
        "random-normal-tf1-stddev",
        "tf.random_normal_initializer()",
        "RandomNormal",
        {"mean": 0.0, "stddev": 1.0, "seed": None},
    ),
    (
        "random-normal-positional",
        "tf.random_normal_initializer(0.5, 0.02, 4, tf.float32)",
        "RandomNormal",
        {"mean": 0.5, "stddev": 0.02, "seed": 4},
    ),
    # TF1 multiplies a standard sample by stddev: a negative one is the same distribution
    (
        "random-normal-negative-stddev",
        "tf.random_normal_initializer(stddev=-0.1)",
        "RandomNormal",
        {"stddev": 0.1},
    ),
    (
        "random-uniform-tf1-range",
        "tf.random_uniform_initializer()",
        "RandomUniform",
        {"minval": 0.0, "maxval": 1.0, "seed": None},
    ),
    (
        "random-uniform-maxval-none",
        "tf.compat.v1.random_uniform_initializer(-2, None)",
        "RandomUniform",
        {"minval": -2.0, "maxval": 1.0},
    ),
    (
        "random-uniform-keywords",
        "tf.random_uniform_initializer(minval=-0.1, maxval=0.1, seed=5)",
        "RandomUniform",
        {"minval": -0.1, "maxval": 0.1, "seed": 5},
    ),
    (
        "truncated-normal-tf1-stddev",
        "tf.truncated_normal_initializer()",
        "TruncatedNormal",
        {"mean": 0.0, "stddev": 1.0, "seed": None},
    ),
    (
        "truncated-normal-string-float",
        "tf.compat.v1.truncated_normal_initializer(stddev=0.01, dtype='float')",
        "TruncatedNormal",
        {"stddev": 0.01},
    ),
    (
        "variance-scaling-default",
        "tf.variance_scaling_initializer()",
        "VarianceScaling",
        {"scale": 1.0, "mode": "fan_in", "distribution": "truncated_normal", "seed": None},
    ),
    (
        "variance-scaling-normal-alias",
        "tf.compat.v1.variance_scaling_initializer(2.0, 'fan_avg', 'Normal', 1)",
        "VarianceScaling",
        {"scale": 2.0, "mode": "fan_avg", "distribution": "truncated_normal", "seed": 1},
    ),
    (
        "variance-scaling-uniform",
        "tf.variance_scaling_initializer(scale=0.5, mode='fan_out', distribution='uniform')",
        "VarianceScaling",
        {"scale": 0.5, "mode": "fan_out", "distribution": "uniform"},
    ),
    ("orthogonal", "tf.orthogonal_initializer()", "Orthogonal", {"gain": 1.0, "seed": None}),
    (
        "orthogonal-python-float-dtype",
        "tf.compat.v1.orthogonal_initializer(gain=2.0, seed=1, dtype=float)",
        "Orthogonal",
        {"gain": 2.0, "seed": 1},
    ),
    (
        "xavier-uniform",
        "tf.contrib.layers.xavier_initializer()",
        "VarianceScaling",
        {"scale": 1.0, "mode": "fan_avg", "distribution": "uniform", "seed": None},
    ),
    # contrib's normal draws N(0, 1.3 * factor / n) cut at 2 stddev; Keras's truncated normal
    # draws N(0, scale / n / TRUNCATED**2) cut at 2 stddev
    (
        "xavier-normal",
        "tf.contrib.layers.xavier_initializer(uniform=False, seed=2)",
        "VarianceScaling",
        {
            "scale": pytest.approx(1.3 * TRUNCATED**2),
            "mode": "fan_avg",
            "distribution": "truncated_normal",
            "seed": 2,
        },
    ),
    (
        "xavier-conv2d-alias",
        "tf.contrib.layers.xavier_initializer_conv2d(False)",
        "VarianceScaling",
        {"scale": pytest.approx(1.3 * TRUNCATED**2), "distribution": "truncated_normal"},
    ),
    (
        "contrib-variance-scaling-default",
        "tf.contrib.layers.variance_scaling_initializer()",
        "VarianceScaling",
        {
            "scale": pytest.approx(2.0 * 1.3 * TRUNCATED**2),
            "mode": "fan_in",
            "distribution": "truncated_normal",
        },
    ),
    (
        "contrib-variance-scaling-uniform",
        "tf.contrib.layers.variance_scaling_initializer(1.0, 'FAN_AVG', True)",
        "VarianceScaling",
        {"scale": 1.0, "mode": "fan_avg", "distribution": "uniform"},
    ),
    (
        "contrib-variance-scaling-keywords",
        "tf.contrib.layers.variance_scaling_initializer(factor=3.0, mode='FAN_OUT', seed=4,"
        " dtype=tf.float32)",
        "VarianceScaling",
        {"scale": pytest.approx(3.0 * 1.3 * TRUNCATED**2), "mode": "fan_out", "seed": 4},
    ),
    # a zero limit or standard deviation: TF1 makes zeros
    (
        "contrib-variance-scaling-zero-factor",
        "tf.contrib.layers.variance_scaling_initializer(factor=0.0)",
        "Zeros",
        {},
    ),
]


@pytest.mark.parametrize(
    ("text", "class_name", "expected"),
    [row[1:] for row in TF1_FORMS],
    ids=[row[0] for row in TF1_FORMS],
)
def test_tf1_forms(text, class_name, expected):
    init = initializer(text)
    assert init.class_name == class_name
    config = dict(init.config)
    assert {k: config[k] for k in expected} == expected
    # every parameter of the Keras class, so that drawing needs nothing TF1's own
    keras_class = INITIALIZERS.classes[class_name]
    assert [k for k, _ in init.config] == [p.name for p in keras_class.signature]


LAYER = "Input(shape=(5, 5, 5, 2))\ntf.layers.Conv3D(4, 3, {arguments})\n"


def layer_weights(arguments: str) -> dict[str, np.ndarray]:
    """The weights of a compiled Conv3D given ``arguments``, by initializer name."""
    model = compile_text(LAYER.format(arguments=arguments))
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


@pytest.mark.parametrize("text", [row[1] for row in TF1_FORMS], ids=[row[0] for row in TF1_FORMS])
def test_tf1_forms_compile_in_a_layer_as_their_keras_equivalent(text):
    init = initializer(text)
    keras_text = f"{init.class_name}({', '.join(f'{k}={v!r}' for k, v in init.config)})"
    ours = layer_weights(f"kernel_initializer={text}")
    keras_equivalent = layer_weights(f"kernel_initializer={keras_text}")
    assert ours.keys() == keras_equivalent.keys()
    for name, weight in ours.items():
        assert weight.tobytes() == keras_equivalent[name].tobytes(), name


@pytest.mark.parametrize(
    "path", sorted(p for p, f in TF1_FUNCTIONS.items() if f.kind == "initializer")
)
def test_every_tf1_initializer_draws_with_its_defaults(path):
    weight = initializer(f"{path}()").draw((3, 3, 4, 8), np.random.default_rng(0))
    assert weight.shape == (3, 3, 4, 8) and weight.dtype == np.float32
    assert np.isfinite(weight).all()


TF1_EXACT = [
    ("zeros", "tf.zeros_initializer()", 0.0),
    ("ones", "tf.compat.v1.ones_initializer()", 1.0),
    ("constant", "tf.constant_initializer(0.25)", 0.25),
    ("constant-default", "tf.constant_initializer()", 0.0),
    ("contrib-zero-factor", "tf.contrib.layers.variance_scaling_initializer(0.0, seed=1)", 0.0),
]


@pytest.mark.parametrize(
    ("text", "fill"), [row[1:] for row in TF1_EXACT], ids=[row[0] for row in TF1_EXACT]
)
def test_tf1_fills(text, fill):
    drawn = initializer(text).draw((3, 3, 2, 4), np.random.default_rng(0))
    np.testing.assert_array_equal(drawn, np.full((3, 3, 2, 4), fill, np.float32))
    weights = layer_weights(f"kernel_initializer={text}, bias_initializer={text}")
    assert len(weights) == 2  # the kernel and the bias
    for name, weight in weights.items():
        np.testing.assert_array_equal(weight, np.full(weight.shape, fill, np.float32), name)


def _contrib_truncated(factor, n):
    # contrib: truncated_normal(shape, 0.0, sqrt(1.3 * factor / n)), cut at 2 stddev
    sigma = math.sqrt(1.3 * factor / n)
    return {"low": -2 * sigma, "high": 2 * sigma, "mean": 0.0, "std": sigma * TRUNCATED}


TF1_DISTRIBUTIONS = [
    ("random_normal", "tf.random_normal_initializer(seed=31)", _normal(0.0, 1.0)),
    (
        "random_normal-negative-stddev",
        "tf.random_normal_initializer(1.0, -0.2, seed=32)",
        _normal(1.0, 0.2),
    ),
    ("truncated_normal", "tf.truncated_normal_initializer(seed=33)", _truncated(0.0, 1.0)),
    ("random_uniform", "tf.random_uniform_initializer(seed=34)", _uniform(1.0, low=0.0)),
    (
        "random_uniform-range",
        "tf.compat.v1.random_uniform_initializer(-3, 2, seed=35)",
        _uniform(2.0, low=-3.0),
    ),
    (
        "glorot_uniform",
        "tf.glorot_uniform_initializer(seed=36)",
        _uniform(math.sqrt(6 / (FAN_IN + FAN_OUT))),
    ),
    ("glorot_normal", "tf.glorot_normal_initializer(seed=37)", _scaled_truncated(1 / FAN_AVG)),
    (
        "variance_scaling",
        "tf.variance_scaling_initializer(seed=38)",
        _scaled_truncated(1 / FAN_IN),
    ),
    (
        "variance_scaling-uniform-fan_out",
        "tf.variance_scaling_initializer(2.0, 'fan_out', 'uniform', 39)",
        _uniform(math.sqrt(3 * 2 / FAN_OUT)),
    ),
    (
        "variance_scaling-untruncated",
        "tf.compat.v1.variance_scaling_initializer(3.0, 'fan_avg', 'untruncated_normal', 40)",
        _normal(0.0, math.sqrt(3 / FAN_AVG)),
    ),
    (
        "xavier-uniform",
        "tf.contrib.layers.xavier_initializer(seed=41)",
        _uniform(math.sqrt(3 / FAN_AVG)),
    ),
    (
        "xavier-normal",
        "tf.contrib.layers.xavier_initializer(False, 42)",
        _contrib_truncated(1.0, FAN_AVG),
    ),
    (
        "contrib-he-default",
        "tf.contrib.layers.variance_scaling_initializer(seed=43)",
        _contrib_truncated(2.0, FAN_IN),
    ),
    (
        "contrib-uniform-fan_in",
        "tf.contrib.layers.variance_scaling_initializer(1.0, 'FAN_IN', True, 44)",
        _uniform(math.sqrt(3 / FAN_IN)),
    ),
    (
        "contrib-fan_out",
        "tf.contrib.layers.variance_scaling_initializer(factor=3.0, mode='FAN_OUT', seed=45)",
        _contrib_truncated(3.0, FAN_OUT),
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [row[1:] for row in TF1_DISTRIBUTIONS],
    ids=[row[0] for row in TF1_DISTRIBUTIONS],
)
def test_tf1_draws_follow_tf1_formulas(text, expected):
    sample = initializer(text).draw(SHAPE, np.random.default_rng(0))
    assert sample.shape == SHAPE and sample.dtype == np.float32
    _check_sample(sample.astype(np.float64), expected)


def test_contrib_normal_std_is_tf1s_not_keras():
    # sqrt(1.3) * TRUNCATED = 1.0029: contrib's weights are 0.29% wider than Keras's
    # VarianceScaling with the same factor. The sample std of 4 million draws has a relative
    # standard error of 0.033%, so the bounds below are 3.5 standard errors wide.
    init = initializer("tf.contrib.layers.variance_scaling_initializer(seed=1)")
    sample = init.draw((2000, 2000), np.random.default_rng(0)).astype(np.float64)
    n = 2000  # fan_in
    assert sample.std() == pytest.approx(math.sqrt(1.3 * 2 / n) * TRUNCATED, rel=1.2e-3)
    assert sample.std() / math.sqrt(2 / n) - 1 > 1.7e-3


def test_tf1_orthogonal_is_orthogonal_times_gain():
    init = initializer("tf.orthogonal_initializer(gain=2.0, seed=3)")
    flat = init.draw((3, 3, 16, 32), np.random.default_rng(0)).reshape(-1, 32).astype(np.float64)
    np.testing.assert_allclose(flat.T @ flat, 4 * np.eye(32), atol=1e-5)


def _l1_loss(scale):
    # contrib's l1: scale * reduce_sum(abs(w))
    return lambda w: scale * np.abs(w).sum()


def _l2_loss(scale):
    # contrib's l2: scale * nn.l2_loss(w), and l2_loss(w) = sum(w ** 2) / 2
    return lambda w: scale * (w**2).sum() / 2


TF1_REGULARIZERS = [
    # id, text, Keras class name, config, the loss TF1 adds for a weight w
    ("l2", "tf.contrib.layers.l2_regularizer(0.1)", "L2", {"l2": 0.05}, _l2_loss(0.1)),
    (
        "l2-keywords",
        "tf.contrib.layers.l2_regularizer(scale=1e-4, scope='weights')",
        "L2",
        {"l2": 5e-5},
        _l2_loss(1e-4),
    ),
    ("l1", "tf.contrib.layers.l1_regularizer(0.001)", "L1", {"l1": 0.001}, _l1_loss(0.001)),
    (
        "l1-scope-none",
        "tf.contrib.layers.l1_regularizer(scale=0.5, scope=None)",
        "L1",
        {"l1": 0.5},
        _l1_loss(0.5),
    ),
    # "Scale of 0 disables regularizer": TF1 returns a function whose None adds no loss
    ("l2-zero", "tf.contrib.layers.l2_regularizer(0.0)", "Regularizer", {}, lambda w: 0.0),
    ("l1-zero", "tf.contrib.layers.l1_regularizer(scale=0.0)", "Regularizer", {}, lambda w: 0.0),
]


@pytest.mark.parametrize(
    ("text", "class_name", "expected", "tf1_loss"),
    [row[1:] for row in TF1_REGULARIZERS],
    ids=[row[0] for row in TF1_REGULARIZERS],
)
def test_tf1_regularizers_are_the_keras_regularizer_with_the_same_loss(
    text, class_name, expected, tf1_loss
):
    recorded = regularizer(text)
    assert recorded == Recorded(class_name, tuple(expected.items()))
    keras_regularizer = keras.regularizers.get({"class_name": class_name, "config": expected})
    weight = np.random.default_rng(0).normal(size=(3, 3, 2, 4)).astype(np.float32)
    loss = keras_regularizer(keras.ops.convert_to_tensor(weight))
    assert float(keras.ops.convert_to_numpy(loss)) == pytest.approx(
        tf1_loss(weight.astype(np.float64)), rel=1e-5
    )


def test_tf1_regularizer_compiles_in_a_layer():
    plain = layer_weights("")
    regularized = layer_weights(
        "kernel_regularizer=tf.contrib.layers.l2_regularizer(0.1),"
        " bias_regularizer=tf.contrib.layers.l1_regularizer(0.01)"
    )
    assert plain.keys() == regularized.keys()  # recorded only: the weights are unchanged
    for name, weight in plain.items():
        assert weight.tobytes() == regularized[name].tobytes(), name


TF1_ERRORS = [
    # id, kind, text, message fragment, located at, help fragment
    (
        "misspelt-name",
        "initializer",
        "tf.zeros_initialiser()",
        "unknown initializer 'tf.zeros_initialiser'",
        "tf",
        "did you mean 'tf.zeros_initializer'?",
    ),
    (
        "misspelt-compat-name",
        "initializer",
        "tf.compat.v1.glorot_unifrom_initializer(seed=1)",
        "unknown initializer 'tf.compat.v1.glorot_unifrom_initializer'",
        "tf",
        "did you mean 'tf.compat.v1.glorot_uniform_initializer'?",
    ),
    (
        "misspelt-contrib-name",
        "initializer",
        "tf.contrib.layers.xavier_initialiser()",
        "unknown initializer",
        "tf",
        "did you mean 'tf.contrib.layers.xavier_initializer'?",
    ),
    (
        "misspelt-contrib-module",
        "initializer",
        "tf.contrib.layer.xavier_initializer()",
        "unknown initializer 'tf.contrib.layer.xavier_initializer'",
        "tf",
        "did you mean 'tf.contrib.layers.xavier_initializer'?",
    ),
    (
        "contrib-under-compat",
        "initializer",
        "tf.compat.v1.contrib.layers.xavier_initializer()",
        "unknown initializer",
        "tf",
        "did you mean 'tf.contrib.layers.xavier_initializer'?",
    ),
    (
        "misspelt-keyword",
        "initializer",
        "tf.random_normal_initializer(std=0.1)",
        "tf.random_normal_initializer has no argument 'std'",
        "std",
        "did you mean 'stddev'?",
    ),
    (
        "keras-only-keyword",
        "initializer",
        "tf.glorot_uniform_initializer(input_axes=[0])",
        "tf.glorot_uniform_initializer has no argument 'input_axes'",
        "input_axes",
        None,
    ),
    (
        "too-many-positionals",
        "initializer",
        "tf.zeros_initializer(tf.float32, 1)",
        "tf.zeros_initializer takes at most 1 positional argument, got 2",
        "1)",
        None,
    ),
    (
        "dtype-float16",
        "initializer",
        "tf.zeros_initializer(dtype=tf.float16)",
        "convc makes float32 weights: dtype=tf.float16 is not supported",
        "tf.float16",
        "dtype=tf.float32",
    ),
    (
        "dtype-string-float64",
        "initializer",
        "tf.random_normal_initializer(dtype='float64')",
        "dtype='float64' is not supported",
        "'float64'",
        None,
    ),
    (
        "dtype-int-positional",
        "initializer",
        "tf.ones_initializer(tf.int32)",
        "dtype=tf.int32 is not supported",
        "tf.int32",
        None,
    ),
    (
        "dtype-bfloat16-contrib",
        "initializer",
        "tf.contrib.layers.xavier_initializer(dtype=tf.bfloat16)",
        "dtype=tf.bfloat16 is not supported",
        "tf.bfloat16",
        None,
    ),
    (
        "dtype-misspelt",
        "initializer",
        "tf.glorot_uniform_initializer(dtype=tf.flaot32)",
        "unknown dtype tf.flaot32",
        "tf.flaot32",
        "did you mean tf.float32?",
    ),
    (
        "dtype-misspelt-string",
        "initializer",
        "tf.orthogonal_initializer(dtype='flaot32')",
        "unknown dtype 'flaot32'",
        "'flaot32'",
        "did you mean 'float32'?",
    ),
    (
        "dtype-number",
        "initializer",
        "tf.truncated_normal_initializer(dtype=32)",
        "'dtype' must be a TensorFlow dtype such as tf.float32, got dtype=32",
        "32",
        None,
    ),
    (
        "constant-list",
        "initializer",
        "tf.constant_initializer([1, 2])",
        "takes one number, got a list",
        "[1",
        "repeats the last one",
    ),
    (
        "constant-string",
        "initializer",
        "tf.constant_initializer('a')",
        "'value' must be a number, got value='a'",
        "'a'",
        None,
    ),
    (
        "constant-verify-shape",
        "initializer",
        "tf.constant_initializer(0.5, verify_shape=True)",
        "verify_shape=True makes TF1 fail",
        "True",
        "leave verify_shape out",
    ),
    (
        "constant-verify-shape-int",
        "initializer",
        "tf.constant_initializer(0.5, tf.float32, 1)",
        "'verify_shape' must be True or False, got verify_shape=1",
        "1)",
        None,
    ),
    (
        "random-uniform-minval-none",
        "initializer",
        "tf.random_uniform_initializer(minval=None)",
        "'minval' must be a number, got minval=None",
        "None",
        None,
    ),
    (
        "random-normal-string-mean",
        "initializer",
        "tf.random_normal_initializer(mean='0')",
        "'mean' must be a number, got mean='0'",
        "'0'",
        None,
    ),
    (
        "float-seed",
        "initializer",
        "tf.glorot_normal_initializer(seed=1.5)",
        "'seed' must be an integer or None, got seed=1.5",
        "1.5",
        None,
    ),
    (
        "variance-scaling-zero-scale",
        "initializer",
        "tf.variance_scaling_initializer(scale=0.0)",
        "'scale' must be > 0, got scale=0.0",
        "0.0",
        None,
    ),
    (
        "variance-scaling-contrib-mode",
        "initializer",
        "tf.variance_scaling_initializer(mode='FAN_IN')",
        "'mode' must be one of 'fan_in', 'fan_out', 'fan_avg'",
        "'FAN_IN'",
        "case-sensitive: write 'fan_in'",
    ),
    (
        "variance-scaling-distribution",
        "initializer",
        "tf.compat.v1.variance_scaling_initializer(distribution='gaussian')",
        "'distribution' must be one of",
        "'gaussian'",
        None,
    ),
    (
        "contrib-keras-mode",
        "initializer",
        "tf.contrib.layers.variance_scaling_initializer(mode='fan_in')",
        "'mode' must be one of 'FAN_IN', 'FAN_OUT', 'FAN_AVG', got mode='fan_in'",
        "'fan_in'",
        "case-sensitive: write 'FAN_IN'",
    ),
    (
        "contrib-mode-misspelt",
        "initializer",
        "tf.contrib.layers.variance_scaling_initializer(mode='FAN_AGV')",
        "got mode='FAN_AGV'",
        "'FAN_AGV'",
        "did you mean 'FAN_AVG'?",
    ),
    (
        "contrib-negative-factor",
        "initializer",
        "tf.contrib.layers.variance_scaling_initializer(-1.0)",
        "'factor' must be >= 0, got factor=-1.0",
        "-1.0",
        None,
    ),
    (
        "contrib-uniform-string",
        "initializer",
        "tf.contrib.layers.xavier_initializer(uniform='yes')",
        "'uniform' must be True or False, got uniform='yes'",
        "'yes'",
        None,
    ),
    (
        "contrib-uncalled",
        "initializer",
        "tf.contrib.layers.xavier_initializer",
        "tf.contrib.layers.xavier_initializer must be called",
        "tf",
        "call it: tf.contrib.layers.xavier_initializer()",
    ),
    (
        "regularizer-as-initializer",
        "initializer",
        "tf.contrib.layers.l2_regularizer(0.1)",
        "tf.contrib.layers.l2_regularizer is a TF1 regularizer, not an initializer",
        "tf",
        "'kernel_initializer' takes an initializer",
    ),
    (
        "l2-integer-scale",
        "regularizer",
        "tf.contrib.layers.l2_regularizer(1)",
        "TF1 refuses an integer scale",
        "1",
        "write scale=1.0",
    ),
    (
        "l1-integer-zero",
        "regularizer",
        "tf.contrib.layers.l1_regularizer(scale=0)",
        "got scale=0",
        "0",
        "write scale=0.0",
    ),
    (
        "l2-negative-scale",
        "regularizer",
        "tf.contrib.layers.l2_regularizer(-0.1)",
        "'scale' must be a non-negative number, got scale=-0.1",
        "-0.1",
        None,
    ),
    (
        "l2-string-scale",
        "regularizer",
        "tf.contrib.layers.l2_regularizer('0.1')",
        "got scale='0.1'",
        "'0.1'",
        None,
    ),
    (
        "l2-missing-scale",
        "regularizer",
        "tf.contrib.layers.l2_regularizer()",
        "tf.contrib.layers.l2_regularizer is missing its required argument 'scale'",
        "tf",
        None,
    ),
    (
        "l2-number-scope",
        "regularizer",
        "tf.contrib.layers.l2_regularizer(0.1, scope=3)",
        "'scope' must be a string, got scope=3",
        "3)",
        None,
    ),
    (
        "l2-uncalled",
        "regularizer",
        "tf.contrib.layers.l2_regularizer",
        "must be called: it is a function that returns a regularizer",
        "tf",
        "tf.contrib.layers.l2_regularizer(scale=...)",
    ),
    (
        "l2-misspelt",
        "regularizer",
        "tf.contrib.layers.l2_regularizr(0.1)",
        "unknown regularizer 'tf.contrib.layers.l2_regularizr'",
        "tf",
        "did you mean 'tf.contrib.layers.l2_regularizer'?",
    ),
    (
        "initializer-as-regularizer",
        "regularizer",
        "tf.zeros_initializer()",
        "tf.zeros_initializer is a TF1 initializer, not a regularizer",
        "tf",
        "'kernel_regularizer' takes a regularizer",
    ),
    (
        "initializer-as-constraint",
        "constraint",
        "tf.compat.v1.ones_initializer()",
        "tf.compat.v1.ones_initializer is a TF1 initializer, not a constraint",
        "tf",
        None,
    ),
    (
        "regularizer-as-constraint",
        "constraint",
        "tf.contrib.layers.l1_regularizer(0.1)",
        "is a TF1 regularizer, not a constraint",
        "tf",
        None,
    ),
]


@pytest.mark.parametrize(
    ("kind", "text", "message", "at", "help"),
    [row[1:] for row in TF1_ERRORS],
    ids=[row[0] for row in TF1_ERRORS],
)
def test_tf1_errors(kind, text, message, at, help):
    with pytest.raises(ConvcError) as error:
        _PARSERS[kind](text)
    assert message in error.value.message
    assert error.value.span is not None and error.value.span.line == 1
    assert error.value.span.column == column(text, at)
    if help is None:
        assert error.value.help is None or "did you mean" not in error.value.help
    else:
        assert error.value.help is not None and help in error.value.help


@pytest.mark.parametrize(
    ("arguments", "message", "at"),
    [
        (
            "bias_initializer=tf.zeros_initializer(dtype=tf.float16)",
            "dtype=tf.float16",
            "tf.float16",
        ),
        ("kernel_initializer=tf.random_normal_initializer(std=1.0)", "no argument 'std'", "std"),
        ("kernel_regularizer=tf.contrib.layers.l2_regularizer(1)", "integer scale", "1)"),
    ],
    ids=["dtype", "keyword", "regularizer-scale"],
)
def test_tf1_errors_in_a_layer_point_at_the_argument(arguments, message, at):
    text = LAYER.format(arguments=arguments)
    with pytest.raises(ConvcError) as error:
        compile_text(text)
    assert message in error.value.message
    assert error.value.span is not None and error.value.span.line == 2
    assert error.value.span.column == text.splitlines()[1].index(at) + 1
