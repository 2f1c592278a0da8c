"""What older Keras generations wrote, in the terms convc reads.

A model file says which Keras wrote it (``keras_version``; Keras 2 also its ``backend``), and
each generation meant its own things by some names. ``detect`` tells the generation, and
``translate`` rewrites the file's config before it is read as a graph, so that the rest of the
importer sees Keras 3's forms only, with the definitions the file meant:

* **Keras 1** (1.0 to 1.2.2) named arguments and classes differently (``nb_filter``,
  ``border_mode``, ``Convolution2D``, ``Merge(mode=...)``): ``_Keras1`` translates its configs by
  the tables below, as Keras 2's legacy interfaces did (``keras/legacy/interfaces.py``), and
  turns a Sequential that starts with a ``Merge`` of branch models into a functional model.
* **Keras 1, Keras 2 and tf.keras** computed ``hard_sigmoid`` as ``clip(0.2 x + 0.5, 0, 1)``;
  Keras 3 computes ``clip(x / 6 + 0.5, 0, 1)``, so such a file's ``hard_sigmoid`` becomes
  convc's ``hard_sigmoid_keras2``, which is the older definition; Keras 2.2/2.3's bilinear
  UpSampling2D (TensorFlow 1's resize) becomes ``bilinear_keras2``; tf.keras's bicubic
  UpSampling2D and Resizing (TensorFlow's ``ResizeBicubic``: Keys a = -0.5, renormalized at the
  borders, positions rounded to 1/1024; Keras 3's torch backend: a = -0.75, edges repeated)
  become ``bicubic_keras2``. (Their 'same' average pooling, TensorFlow's, which leaves the pads
  out of the mean, is convc's ``same``.)
* **The Theano backend** convolved (it flips kernels; TensorFlow correlates) and placed 'same'
  pads its own way: ``stored_array`` flips the kernels of a file that says Theano wrote it, and
  the 'same' paddings whose placement differs from TensorFlow's are refused by name.

Keras 2 and tf.keras also wrote forms that mean what Keras 3 means (``layer_config``, applied per
layer while the graph is read): a Sequential stored as the plain list of its layers (Keras up to
2.2.2), BatchNormalization's ``axis`` as a list of one axis (tf.keras 2.x), ``groups=1`` on every
convolution (tf.keras 2.5 and later, including those that take no ``groups``), and a
SeparableConv's unused ``kernel_*`` arguments. A value that would change the meaning
(``groups=2`` on a transposed convolution, two axes for BatchNormalization) is left as it is,
for the importer to refuse by name.

Weights: Keras 1 stored kernels in its own layouts (``dim_ordering="th"`` kernels are
``(filters, channels, rows, cols)``), which ``stored_array`` maps to Keras 3's, as Keras 2's
``preprocess_weights_for_loading`` did (``keras/engine/saving.py``, Keras 2.2.4).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from convc.diagnostics import ConvcError
from convc.model import Layer, Variable
from convc.specs import ConvSpec, PReLUSpec

# =============================================================================================
# Which Keras wrote the file


@dataclass(frozen=True)
class Generation:
    """The Keras generation whose definitions a file means, and how that is known."""

    major: int
    """1, 2 (Keras 2 and tf.keras) or 3."""
    version: str | None
    """``keras_version`` as the file states it."""
    backend: str | None
    """The backend the file says computed it (Keras 2 records it; Keras 1 does not)."""
    evidence: str
    """Why convc thinks so, for messages: ``keras_version '1.2.2'``."""

    @property
    def label(self) -> str:
        """``Keras 1 (keras_version '1.2.2')``, for messages."""
        name = {1: "Keras 1", 2: "Keras 2 / tf.keras", 3: "Keras 3"}[self.major]
        return f"{name} ({self.evidence})"


def detect(model_file: Any) -> Generation:
    """The generation of an opened model file (``convc.importer.files.ModelFile``): its
    ``keras_version`` (a ``.keras`` file's metadata, an ``.h5`` file's root attribute, a JSON's
    top-level key), else the Keras 1 argument names its layers use, else Keras 3."""
    config = model_file.config
    version = model_file.keras_version or _text(config.get("keras_version"))
    backend = _text(config.get("backend"))
    if model_file.format in ("h5", "json") and model_file.weights is not None:
        backend = _text(model_file.weights.attrs.get("backend")) or backend
    if version:
        match = re.match(r"\s*(\d+)\.", version)
        major = int(match.group(1)) if match else 0
        if major in (1, 2, 3):
            return Generation(major, version, backend, f"keras_version {version!r}")
    evidence = keras1_evidence(config, None)
    if evidence:
        return Generation(1, version, backend, evidence)
    if model_file.format == "keras":
        return Generation(3, version, backend, "a .keras archive")
    return Generation(3, version, backend, "the file does not say; read as Keras 3")


_CONVOLUTIONS = re.compile(r"(Conv|SeparableConv)[123]D(Transpose)?")


def warnings(generation: Generation, layers: list, has_weights: bool, where: str) -> list:
    """What the user should know about how the file was read (``ConvcError``s to print, not
    raise): a Keras 1 file with trained ``dim_ordering="th"`` convolutions that does not say
    its backend may have been trained on Theano, whose kernels are flipped."""
    if generation.major != 1 or generation.backend is not None or not has_weights:
        return []
    channels_first = [
        layer.name
        for layer in layers
        if _CONVOLUTIONS.fullmatch(layer.class_name)
        and layer.config.get("data_format") == "channels_first"
    ]
    if not channels_first:
        return []
    return [
        ConvcError(
            f"this Keras 1 file does not say which backend computed it (Keras 1 saved none), and "
            f"its convolutions ({', '.join(channels_first[:3])}"
            + (", ..." if len(channels_first) > 3 else "")
            + ") use Theano's dim_ordering 'th': convc reads their kernels as TensorFlow's, as "
            "Keras 2 does; Theano convolved with flipped kernels",
            path=where,
            help="if Theano trained it, set the file's backend and build again: with h5py, "
            "File(path, 'r+').attrs['backend'] = 'theano'",
        )
    ]


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None


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
    for _, config in _layer_configs(model_config):
        found |= KERAS1_ARGUMENTS & set(config)
    reasons = []
    if keras_version and keras_version.startswith("1."):
        reasons.append(f"keras_version {keras_version!r}")
    if found:
        reasons.append("Keras 1 arguments " + ", ".join(sorted(found)))
    return "; ".join(reasons) or None


def _layer_configs(value: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every ``(class_name, config)`` of a layer in a model config, at any depth (a walk with a
    bound on the values visited: the JSON's nesting is bounded when it is parsed)."""
    stack = [value]
    seen = 0
    while stack and seen < 1_000_000:
        value = stack.pop()
        seen += 1
        if isinstance(value, dict):
            config = value.get("config")
            if isinstance(value.get("class_name"), str) and isinstance(config, dict):
                yield value["class_name"], config
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)


# =============================================================================================
# The translation, before the config is read as a graph


@dataclass
class Translation:
    """A file's config as convc reads it, and the output shapes the file itself states (Keras
    1's Deconvolution2D named its own), which the built model must have."""

    config: dict[str, Any]
    output_shapes: dict[str, tuple] = field(default_factory=dict)
    """Layer name -> its output shape without the batch axis (``None`` where unknown)."""


def translate(model_config: dict[str, Any], generation: Generation, where: str) -> Translation:
    """The file's config in the forms convc reads, with the definitions its generation meant."""
    output_shapes: dict[str, tuple] = {}
    if generation.major == 1:
        keras1 = _Keras1(generation, where)
        model_config = keras1.model(model_config)
        output_shapes = keras1.output_shapes
    if generation.major < 3:
        _older_definitions(model_config, generation, where)
    return Translation(model_config, output_shapes)


def check_built(model: Any, translation: Translation, generation: Generation, where: str) -> None:
    """Refuse what the built model computes otherwise than the file's generation did, now that
    the shapes are known: a layer whose output shape is not the one the file states (Keras 1's
    Deconvolution2D computed whatever ``output_shape`` said, and TensorFlow failed at run time
    when its input could not give it; Keras 3 computes its own)."""
    for node in model.nodes:
        stated = translation.output_shapes.get(node.layer.name)
        built = tuple(node.output.shape[1:])
        if stated is None or len(stated) != len(built):
            continue
        if any(s is not None and s != b for s, b in zip(stated, built, strict=True)):
            raise ConvcError(
                f"this {generation.label} file: layer {node.layer.name!r} states its output "
                f"shape as {_shape(stated)}, but from its input "
                f"{_shape(tuple(node.inputs[0].shape[1:]))} it gives {_shape(built)} (Keras 1 "
                "failed on it when the model ran)",
                path=where,
            )


def _shape(shape: tuple) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


KERAS2_ACTIVATIONS = {"hard_sigmoid": "hard_sigmoid_keras2"}
"""Activations that Keras 1, Keras 2 and tf.keras defined otherwise than Keras 3, and convc's
name for the older definition: ``hard_sigmoid`` was ``clip(0.2 x + 0.5, 0, 1)`` (Keras 3:
``clip(x / 6 + 0.5, 0, 1)``)."""

KERAS2_INTERPOLATIONS = {"bilinear": "bilinear_keras2", "bicubic": "bicubic_keras2"}
"""Interpolations that Keras 2 defined otherwise than Keras 3, and convc's name for the older
definition. The multi-backend Keras 2.2/2.3's UpSampling2D ``bilinear`` was TensorFlow 1's
``resize_bilinear`` (source coordinate ``i / size``; Keras 3: ``(i + 0.5) / size - 0.5``).
tf.keras's UpSampling2D and Resizing ``bicubic`` (no earlier Keras had one) was
``tf.image.resize``'s, TensorFlow's ``ResizeBicubic`` with half-pixel centres: Keys's a = -0.5,
the weights of samples outside the image dropped and the rest renormalized, the fractional
position rounded to 1/1024; Keras 3's torch backend computes a = -0.75 with the edge samples
repeated. Every bicubic layer of a Keras 1 or 2 file is renamed."""

_THEANO_SAME = re.compile(
    r"(Conv|Convolution)[123]D(Transpose)?|(Depthwise|Separable)(Conv|Convolution)[12]D"
)
_POOLING = re.compile(r"(Max|Average|Avg)Pool(ing)?[123]D")


_MULTI_BACKEND_KERAS2 = re.compile(r"\s*2\.[0-3]\.\d+\s*")
"""keras_version of the multi-backend Keras 2 (2.0 to 2.3.1; tf.keras writes ``2.2.4-tf``)."""


def _older_definitions(model_config: Any, generation: Generation, where: str) -> None:
    """Keras 1/2's definitions, in place: activations and interpolations renamed to convc's
    names for their older definitions, and what convc does not build
    as a Theano-backend file computed it refused by name."""
    for class_name, config in _layer_configs(model_config):
        activation = config.get("activation")
        if isinstance(activation, str) and activation in KERAS2_ACTIVATIONS:
            config["activation"] = KERAS2_ACTIVATIONS[activation]
        if generation.backend == "theano":
            _theano_check(class_name, config, generation, where)
        interpolation = config.get("interpolation")
        if class_name in ("UpSampling2D", "Resizing") and isinstance(interpolation, str):
            # tf.keras read the name in any case (image_utils.get_interpolation), and its
            # Resizing stored it as written
            interpolation = config["interpolation"] = interpolation.lower()
        if class_name in ("UpSampling2D", "Resizing") and interpolation == "bicubic":
            config["interpolation"] = KERAS2_INTERPOLATIONS["bicubic"]
        elif (
            class_name == "UpSampling2D"
            and interpolation == "bilinear"
            and _MULTI_BACKEND_KERAS2.fullmatch(generation.version or "")
        ):
            config["interpolation"] = KERAS2_INTERPOLATIONS["bilinear"]


def _theano_check(class_name: str, config: dict, generation: Generation, where: str) -> None:
    """Refuse what Theano placed otherwise than TensorFlow. Theano's 'same' ('half') pads
    ``k // 2`` on both sides of every axis and crops the end: TensorFlow's pads agree only for
    odd kernels at stride 1. Its 'same' pooling pads both sides by ``k - 1`` or ``k - 2`` and
    keeps the first windows, and its bilinear upsampling is its own."""
    name = config.get("name")
    problem = None
    if config.get("padding") == "same" and _THEANO_SAME.fullmatch(class_name):
        kernel = config.get("kernel_size")
        strides = config.get("strides", 1)
        kernels = kernel if isinstance(kernel, list) else [kernel]
        stride_list = strides if isinstance(strides, list) else [strides]
        if any(not isinstance(k, int) or k % 2 == 0 for k in kernels) or any(
            s != 1 for s in stride_list
        ):
            problem = (
                f"padding='same' with kernel_size={kernel} and strides={strides}: Theano pads "
                "k // 2 on both sides, TensorFlow (and convc) puts the odd pad at the end; they "
                "agree only for odd kernels at stride 1"
            )
    elif config.get("padding") == "same" and _POOLING.fullmatch(class_name):
        problem = (
            "padding='same' pooling: Theano pads both sides and keeps the first windows, "
            "which TensorFlow (and convc) do not"
        )
    elif class_name == "UpSampling2D" and config.get("interpolation") not in (None, "nearest"):
        problem = f"interpolation={config.get('interpolation')!r}: Theano's is its own"
    if problem:
        raise ConvcError(
            f"layer {name!r} ({class_name}) of this Theano-backend file ({generation.label}): "
            f"{problem}; convc does not build Theano's version of it",
            path=where,
        )


# --- Keras 1 -> Keras 3 ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Rule:
    """How a Keras 1 class reads in Keras 3."""

    keras3: str
    """The class in Keras 3 (and convc)."""
    renames: dict[str, str]
    """Keras 1 argument -> Keras 3 argument; arguments not listed keep their name."""
    kernel: tuple[str, ...] = ()
    """The Keras 1 arguments that together make ``kernel_size``, in order."""
    data_format: bool = False
    """Whether the class has a data_format, which Keras 1 may have left unsaid."""


_CONV = {
    "nb_filter": "filters",
    "filter_length": "kernel_size",
    "subsample_length": "strides",
    "subsample": "strides",
    "border_mode": "padding",
    "atrous_rate": "dilation_rate",
    "init": "kernel_initializer",
    "bias": "use_bias",
    "dim_ordering": "data_format",
}
_SEPARABLE = {**_CONV, "init": "depthwise_initializer"}  # and pointwise_initializer: see below
_POOL_1D = {"pool_length": "pool_size", "stride": "strides", "border_mode": "padding"}
_POOL = {"border_mode": "padding", "dim_ordering": "data_format"}
_FORMAT = {"dim_ordering": "data_format"}
_DROPOUT = {"p": "rate", "dim_ordering": "data_format"}
_ROWS_COLS = ("nb_row", "nb_col")
_KERNEL_3D = ("kernel_dim1", "kernel_dim2", "kernel_dim3")

KERAS1_CLASSES: dict[str, _Rule] = {
    "Convolution1D": _Rule("Conv1D", _CONV),
    "AtrousConvolution1D": _Rule("Conv1D", _CONV),
    "Convolution2D": _Rule("Conv2D", _CONV, _ROWS_COLS, True),
    "AtrousConvolution2D": _Rule("Conv2D", _CONV, _ROWS_COLS, True),
    "Deconvolution2D": _Rule("Conv2DTranspose", _CONV, _ROWS_COLS, True),
    "SeparableConvolution2D": _Rule("SeparableConv2D", _SEPARABLE, _ROWS_COLS, True),
    "Convolution3D": _Rule("Conv3D", _CONV, _KERNEL_3D, True),
    "MaxPooling1D": _Rule("MaxPooling1D", _POOL_1D),
    "AveragePooling1D": _Rule("AveragePooling1D", _POOL_1D),
    "MaxPooling2D": _Rule("MaxPooling2D", _POOL, data_format=True),
    "AveragePooling2D": _Rule("AveragePooling2D", _POOL, data_format=True),
    "MaxPooling3D": _Rule("MaxPooling3D", _POOL, data_format=True),
    "AveragePooling3D": _Rule("AveragePooling3D", _POOL, data_format=True),
    "GlobalMaxPooling1D": _Rule("GlobalMaxPooling1D", {}),
    "GlobalAveragePooling1D": _Rule("GlobalAveragePooling1D", {}),
    "GlobalMaxPooling2D": _Rule("GlobalMaxPooling2D", _FORMAT, data_format=True),
    "GlobalAveragePooling2D": _Rule("GlobalAveragePooling2D", _FORMAT, data_format=True),
    "GlobalMaxPooling3D": _Rule("GlobalMaxPooling3D", _FORMAT, data_format=True),
    "GlobalAveragePooling3D": _Rule("GlobalAveragePooling3D", _FORMAT, data_format=True),
    "UpSampling1D": _Rule("UpSampling1D", {"length": "size"}),
    "UpSampling2D": _Rule("UpSampling2D", _FORMAT, data_format=True),
    "UpSampling3D": _Rule("UpSampling3D", _FORMAT, data_format=True),
    "ZeroPadding1D": _Rule("ZeroPadding1D", {}),
    "ZeroPadding2D": _Rule("ZeroPadding2D", _FORMAT, data_format=True),
    "ZeroPadding3D": _Rule("ZeroPadding3D", _FORMAT, data_format=True),
    "Cropping1D": _Rule("Cropping1D", {}),
    "Cropping2D": _Rule("Cropping2D", _FORMAT, data_format=True),
    "Cropping3D": _Rule("Cropping3D", _FORMAT, data_format=True),
    "Dense": _Rule(
        "Dense", {"output_dim": "units", "init": "kernel_initializer", "bias": "use_bias"}
    ),
    "Dropout": _Rule("Dropout", _DROPOUT),
    "SpatialDropout1D": _Rule("SpatialDropout1D", _DROPOUT),
    "SpatialDropout2D": _Rule("SpatialDropout2D", _DROPOUT, data_format=True),
    "SpatialDropout3D": _Rule("SpatialDropout3D", _DROPOUT, data_format=True),
    "GaussianDropout": _Rule("GaussianDropout", {"p": "rate"}),
    "GaussianNoise": _Rule("GaussianNoise", {"sigma": "stddev"}),
    "BatchNormalization": _Rule(
        "BatchNormalization", {"beta_init": "beta_initializer", "gamma_init": "gamma_initializer"}
    ),
    "PReLU": _Rule("PReLU", {"init": "alpha_initializer"}),
    "LeakyReLU": _Rule("LeakyReLU", {}),
    "ELU": _Rule("ELU", {}),
    "Activation": _Rule("Activation", {}),
    "Flatten": _Rule("Flatten", {}),
    "Reshape": _Rule("Reshape", {}),
    "Permute": _Rule("Permute", {}),
    "ActivityRegularization": _Rule("ActivityRegularization", {}),
    "InputLayer": _Rule("InputLayer", {}),
}
"""Every Keras 1 class convc reads, with its Keras 3 name and argument renames. A class not
listed keeps its name and arguments, and is refused by name if convc does not compile it."""

KERAS1_COMMON = {"input_dtype": "dtype"}
"""Renames every Keras 1 layer takes."""

KERAS1_TRAINING_ONLY = frozenset(
    {
        "W_regularizer",
        "b_regularizer",
        "activity_regularizer",
        "W_constraint",
        "b_constraint",
        "depthwise_regularizer",
        "pointwise_regularizer",
        "depthwise_constraint",
        "pointwise_constraint",
        "gamma_regularizer",
        "beta_regularizer",
    }
)
"""Regularizers and constraints: they act only in training, and their Keras 1 forms (a
constraint's axis in Keras 1's kernel layout) do not carry over, so they are dropped, as Keras 2
ignores them at inference."""

DIM_ORDERINGS = {"tf": "channels_last", "th": "channels_first"}

KERAS1_MERGE_MODES = {
    "sum": "Add",
    "mul": "Multiply",
    "ave": "Average",
    "max": "Maximum",
    "concat": "Concatenate",
}
"""Keras 1's ``Merge(mode=...)`` as a Keras 3 merge layer; ``dot`` and ``cos`` (batch dot
products) and Python functions have none that convc compiles."""

_MAX_NESTING = 16


class _Keras1:
    """The translation of one Keras 1 model config."""

    def __init__(self, generation: Generation, where: str):
        self.generation = generation
        self.where = where
        self.dim_ordering = "tf"
        self.output_shapes: dict[str, tuple] = {}

    def error(self, message: str, help: str | None = None) -> ConvcError:
        return ConvcError(
            f"this Keras 1 file ({self.generation.evidence}): {message}", help=help, path=self.where
        )

    def model(self, model_config: dict[str, Any]) -> dict[str, Any]:
        self.dim_ordering = self.file_dim_ordering(model_config)
        class_name, config = self.container(
            model_config.get("class_name"), model_config.get("config"), 0
        )
        return {**model_config, "class_name": class_name, "config": config}

    def file_dim_ordering(self, model_config: Any) -> str:
        """The dim_ordering that layers which do not state theirs used. Keras 1.2.2 saved no
        dim_ordering for UpSampling2D/3D, ZeroPadding2D/3D and Cropping2D/3D (they took
        ``image_dim_ordering()`` from the loading machine's keras.json); the file's other layers
        say which the model was built with."""
        stated = {
            config["dim_ordering"]
            for _, config in _layer_configs(model_config)
            if _is_one_of(config.get("dim_ordering"), DIM_ORDERINGS)
        }
        if len(stated) == 1:
            return stated.pop()
        if stated:
            return "mixed"
        return "tf"

    # --- containers ----------------------------------------------------------------------

    def container(self, class_name: Any, config: Any, depth: int) -> tuple[Any, Any]:
        if depth > _MAX_NESTING:
            raise self.error(f"models nest more than {_MAX_NESTING} deep")
        if class_name == "Sequential":
            layers = config if isinstance(config, list) else _dict(config).get("layers")
            if not isinstance(layers, list):
                return class_name, config
            layers = self.inline(layers, depth)
            for item in layers[1:]:
                if _class(item) == "Merge":
                    raise self.error(
                        f"the Merge layer {_dict(item.get('config')).get('name')!r} is not the "
                        "first layer of its Sequential model, which makes it merge one tensor"
                    )
            if layers and _class(layers[0]) == "Merge":
                return "Model", self.merged_sequential(layers, depth)
            named = (
                {"name": config["name"]} if isinstance(config, dict) and "name" in config else {}
            )
            if layers:
                layers = [_declared_input(layers[0]), *layers[1:]]
            return class_name, {**named, "layers": [self.layer(item) for item in layers]}
        if class_name in ("Model", "Functional") and isinstance(config, dict):
            layers = config.get("layers")
            if isinstance(layers, list):
                translated = []
                for item in layers:
                    if isinstance(item, dict):
                        inner_class, inner = self.container(
                            item.get("class_name"), item.get("config"), depth + 1
                        )
                        if inner_class in ("Sequential", "Model", "Functional"):
                            item = {**item, "class_name": inner_class, "config": inner}
                        else:
                            item = self.layer(item)
                    translated.append(item)
                return class_name, {**config, "layers": translated}
        return class_name, config

    def inline(self, layers: list, depth: int) -> list:
        """A Keras 1 Sequential's layers, with nested Sequentials replaced by their layers (a
        nested Sequential is a chain, and its config has no name to keep)."""
        out: list = []
        for item in layers:
            if _class(item) == "Sequential":
                inner = item.get("config")
                inner_layers = inner if isinstance(inner, list) else _dict(inner).get("layers")
                if not isinstance(inner_layers, list):
                    raise self.error("a nested Sequential model has no layers")
                if depth > _MAX_NESTING:
                    raise self.error(f"models nest more than {_MAX_NESTING} deep")
                inner_layers = self.inline(inner_layers, depth + 1)
                if out and inner_layers and _class(inner_layers[0]) == "Merge":
                    raise self.error(
                        "a nested Sequential that starts with a Merge is not the first layer of "
                        "its model: its branches have no inputs"
                    )
                out.extend(inner_layers)
            else:
                out.append(item)
        return out

    def merged_sequential(self, layers: list, depth: int) -> dict[str, Any]:
        """A Sequential that starts with ``Merge([branch, ...], mode=...)`` as the functional
        model it is: each branch's input becomes a model input (named ``<first layer>_input``,
        as Keras 1 named it), the merge takes the branches' outputs, the rest follows."""
        built: list[dict] = []
        inputs: list[list] = []

        def chain(entries: list, current: list | None, level: int) -> list:
            if level > _MAX_NESTING:
                raise self.error(f"Merge layers nest more than {_MAX_NESTING} deep")
            if not entries:
                raise self.error("a Sequential branch of a Merge has no layers")
            rest = entries
            if _class(entries[0]) == "Merge":
                merge_config = _dict(entries[0].get("config"))
                branches = merge_config.get("layers")
                if not isinstance(branches, list) or len(branches) < 2:
                    raise self.error(
                        f"the Merge layer {merge_config.get('name')!r} that starts a Sequential "
                        "does not list two or more branch models"
                    )
                outputs = [self.branch(branch, chain, built, inputs, level) for branch in branches]
                class_name, config = self.merge(merge_config)
                built.append(_node(class_name, config, outputs))
                current = [config.get("name"), 0, 0]
                rest = entries[1:]
            elif current is None:
                current = self.branch_input(entries[0], built, inputs)
            for entry in rest:
                if _class(entry) == "Merge":
                    raise self.error(
                        f"the Merge layer {_dict(entry.get('config')).get('name')!r} is not the "
                        "first layer of its Sequential model"
                    )
                class_name, config = self.layer_parts(entry)
                config.pop("batch_input_shape", None)  # said by the branch's input
                built.append(_node(class_name, config, [current]))
                current = [config.get("name"), 0, 0]
            return current

        output = chain(layers, None, depth)
        return {"layers": built, "input_layers": inputs, "output_layers": [output]}

    def branch(self, branch: Any, chain, built: list, inputs: list, level: int) -> list:
        """One branch of a Sequential's first Merge: its output, its layers added to ``built``."""
        class_name = _class(branch)
        if class_name == "Sequential":
            config = branch.get("config")
            layers = config if isinstance(config, list) else _dict(config).get("layers")
            if not isinstance(layers, list):
                raise self.error("a Sequential branch of a Merge has no layers")
            return chain(self.inline(layers, level + 1), None, level + 1)
        if class_name in ("Model", "Functional"):
            _, config = self.container(class_name, branch.get("config"), level + 1)
            outputs = _dict(config).get("output_layers")
            if not (isinstance(outputs, list) and len(outputs) == 1):
                raise self.error("a functional branch of a Merge must have one output")
            built.extend(item for item in config.get("layers", []) if isinstance(item, dict))
            inputs.extend(config.get("input_layers", []))
            return outputs[0]
        raise self.error(
            f"a Merge at the start of a Sequential merges a {class_name} layer, not a model; "
            "Keras 1 saved no inputs for it"
        )

    def branch_input(self, first: Any, built: list, inputs: list) -> list:
        """The input of a branch, as Keras 1's Sequential made it from its first layer's
        ``batch_input_shape``."""
        config = _dict(_declared_input(first).get("config") if isinstance(first, dict) else None)
        shape = config.get("batch_input_shape")
        if not isinstance(shape, list):
            raise self.error(
                f"the layer {config.get('name')!r} that starts a branch of a Merge does not say "
                "its input shape (batch_input_shape)"
            )
        name = f"{config.get('name')}_input"
        input_config: dict[str, Any] = {"batch_input_shape": shape, "name": name}
        if isinstance(config.get("input_dtype"), str):
            input_config["dtype"] = config["input_dtype"]
        built.append({"class_name": "InputLayer", "name": name, "config": input_config,
                      "inbound_nodes": []})  # fmt: skip
        inputs.append([name, 0, 0])
        return [name, 0, 0]

    # --- layers --------------------------------------------------------------------------

    def layer(self, item: Any) -> Any:
        """A layer entry of a model's ``layers`` (Sequential or functional), translated."""
        if not isinstance(item, dict) or not isinstance(item.get("class_name"), str):
            return item
        class_name, config = self.layer_parts(item)
        return {**item, "class_name": class_name, "config": config}

    def layer_parts(self, item: dict) -> tuple[str, dict]:
        class_name = item.get("class_name")
        config = item.get("config")
        if not isinstance(class_name, str) or not isinstance(config, dict):
            return str(class_name), _dict(config)
        if class_name == "Merge":
            if "layers" in config:
                raise self.error(
                    f"the Merge layer {config.get('name')!r} with branch models is not the first "
                    "layer of its Sequential model"
                )
            return self.merge(config)
        rule = KERAS1_CLASSES.get(class_name)
        if rule is None:
            return class_name, dict(config)
        return rule.keras3, self.arguments(class_name, rule, config)

    def arguments(self, class_name: str, rule: _Rule, config: dict) -> dict[str, Any]:
        name = config.get("name")
        out: dict[str, Any] = {}
        for key, value in config.items():
            if key in KERAS1_TRAINING_ONLY or key in rule.kernel:
                continue
            out[rule.renames.get(key, KERAS1_COMMON.get(key, key))] = value
        if rule.kernel and all(isinstance(config.get(key), int) for key in rule.kernel):
            out["kernel_size"] = [config[key] for key in rule.kernel]
        elif rule.kernel:
            raise self.error(
                f"layer {name!r} ({class_name}) does not give its kernel size as "
                + ", ".join(rule.kernel)
            )
        if rule.data_format:
            out["data_format"] = self.data_format(class_name, name, out.get("data_format"))
        if out.get("padding") == "full":
            raise self.error(
                f"layer {name!r} ({class_name}) has border_mode='full', which only Keras 1's "
                "Theano backend computed and Keras 2 and 3 do not have",
                help="a 'full' convolution is a ZeroPadding of kernel_size - 1 on each side, "
                "then a 'valid' one",
            )
        fix = _FIXES.get(class_name)
        if fix is not None:
            fix(self, out, config)
        return out

    def data_format(self, class_name: str, name: Any, value: Any) -> str:
        if _is_one_of(value, DIM_ORDERINGS):
            return DIM_ORDERINGS[value]
        if value is not None and value != "default":
            return value  # refused as Keras 3 refuses it, naming the value
        if self.dim_ordering == "mixed":
            raise self.error(
                f"layer {name!r} ({class_name}) does not say its dim_ordering (Keras 1 saved "
                "none for it), and the file's other layers use both 'th' and 'tf'"
            )
        return DIM_ORDERINGS[self.dim_ordering]

    def merge(self, config: dict) -> tuple[str, dict]:
        name = config.get("name")
        mode = config.get("mode")
        if config.get("mode_type") in ("lambda", "function") or not isinstance(mode, str):
            raise self.error(
                f"the Merge layer {name!r} merges with a Python function (mode_type="
                f"{config.get('mode_type')!r}), whose code convc never runs",
            )
        keras3 = KERAS1_MERGE_MODES.get(mode)
        if keras3 is None:
            raise self.error(
                f"the Merge layer {name!r} has mode={mode!r}, which no Keras 3 merge layer "
                "that convc compiles computes"
                + (" (a batch dot product)" if mode in ("dot", "cos") else ""),
                help="convc reads Merge modes " + ", ".join(repr(m) for m in KERAS1_MERGE_MODES),
            )
        # a layer's config, as Keras 2 wrote a merge layer's (a config of a name alone reads as
        # a Keras 3 operation such as ``x * y``)
        out: dict[str, Any] = {"name": name, "trainable": config.get("trainable", True)}
        if keras3 == "Concatenate":
            out["axis"] = config.get("concat_axis", -1)
        return keras3, out


def _fix_input_dim(self: _Keras1, out: dict, config: dict) -> None:
    """Dense and Convolution1D saved ``input_dim`` (and ``input_length``): the size of the input
    they were built on, wherever they are (``_declared_input`` reads it for a first layer)."""
    out.pop("input_dim", None)
    out.pop("input_length", None)


def _declared_input(item: Any) -> Any:
    """A Sequential's first layer with the input shape it declares: ``batch_input_shape``, or
    what Keras 1 made of ``input_dim`` (and ``input_length``) when that is missing."""
    config = item.get("config") if isinstance(item, dict) else None
    if not isinstance(config, dict) or isinstance(config.get("batch_input_shape"), list):
        return item
    input_dim = config.get("input_dim")
    if not _is_int(input_dim):
        return item
    shape = [None, input_dim]
    if item.get("class_name") in ("Convolution1D", "AtrousConvolution1D"):
        length = config.get("input_length")
        shape = [None, length if _is_int(length) else None, input_dim]
    return {**item, "config": {**config, "batch_input_shape": shape}}


def _fix_zero_padding(self: _Keras1, out: dict, config: dict) -> None:
    """Keras 1's ZeroPadding1D took ``{"left_pad", "right_pad"}``, its ZeroPadding2D
    ``(top, bottom, left, right)`` or ``{"top_pad", ...}``: Keras 3 takes (before, after) pairs."""
    padding = out.get("padding")
    if isinstance(padding, dict):
        sides: tuple[str, ...] = ("left_pad", "right_pad")
        if any(str(key).startswith(("top", "bottom")) for key in padding):
            sides = ("top_pad", "bottom_pad", "left_pad", "right_pad")
        if set(padding) - set(sides):
            raise self.error(
                f"layer {config.get('name')!r} ({'ZeroPadding' + str(len(sides) // 2)}D) has "
                f"padding keys {sorted(padding)}; Keras 1 took {', '.join(sides)}"
            )
        padding = [padding.get(side, 0) for side in sides]
        out["padding"] = padding if len(padding) == 2 else [padding[:2], padding[2:]]
    elif isinstance(padding, list) and len(padding) == 4:
        out["padding"] = [padding[:2], padding[2:]]


def _fix_separable(self: _Keras1, out: dict, config: dict) -> None:
    if "depthwise_initializer" in out:
        out["pointwise_initializer"] = out["depthwise_initializer"]


def _fix_batch_normalization(self: _Keras1, out: dict, config: dict) -> None:
    mode = out.pop("mode", 0)
    if mode != 0:
        what = {
            1: "normalizes each sample over its last axis with the sample's own statistics",
            2: "normalizes with the statistics of the batch, at inference too",
        }.get(mode, "is not a mode Keras 1 had")
        raise self.error(
            f"layer {config.get('name')!r} (BatchNormalization) has mode={mode!r}, which {what}; "
            "Keras 2 and 3 have only mode 0 (the moving statistics at inference)"
        )


def _fix_deconvolution(self: _Keras1, out: dict, config: dict) -> None:
    """Keras 1's Deconvolution2D took its output shape; Keras 3 computes it, and output_padding
    picks among the lengths a stride allows. TensorFlow's conv2d_transpose to an output length
    ``O`` places its pads as Keras 3 does for the same length, so ``O`` is reached by the default
    when it is the default's length modulo the stride, and by an explicit output_padding
    otherwise."""
    name = config.get("name")
    shape = out.pop("output_shape", None)
    if not isinstance(shape, list) or len(shape) != 4:
        raise self.error(f"layer {name!r} (Deconvolution2D) has no output_shape of 4 entries")
    if isinstance(name, str):
        self.output_shapes[name] = tuple(d if isinstance(d, int) else None for d in shape[1:])
    spatial = shape[1:3] if out.get("data_format") == "channels_last" else shape[2:4]
    kernel = out.get("kernel_size")
    strides = out.get("strides", [1, 1])
    strides = [strides, strides] if isinstance(strides, int) else strides
    padding = out.get("padding", "valid")
    values = [spatial, kernel, strides]
    if padding not in ("valid", "same") or not all(
        isinstance(v, list) and len(v) == 2 and all(_is_int(i) for i in v) for v in values
    ):
        return  # an unknown length or a bad value: Keras 3's default, or refused by its rules
    paddings, defaults = [], []
    for length, k, s in zip(*values, strict=True):
        base = k if padding == "valid" else k % 2
        paddings.append((length - base) % s if s > 0 else 0)
        default = max(k, s) if padding == "valid" else 0
        defaults.append(s > 0 and (length - default) % s == 0)
    if all(defaults):
        return
    even = [k % 2 == 0 for k in kernel or []]
    if padding == "same" and any(d and e for d, e in zip(defaults, even, strict=True)):
        raise self.error(
            f"layer {name!r} (Deconvolution2D) has output_shape={shape}, which Keras 3 "
            "cannot give with one output_padding for both axes"
        )
    out["output_padding"] = paddings


_FIXES: dict[str, Callable[[_Keras1, dict, dict], None]] = {
    "Dense": _fix_input_dim,
    "Convolution1D": _fix_input_dim,
    "AtrousConvolution1D": _fix_input_dim,
    "SeparableConvolution2D": _fix_separable,
    "ZeroPadding1D": _fix_zero_padding,
    "ZeroPadding2D": _fix_zero_padding,
    "BatchNormalization": _fix_batch_normalization,
    "Deconvolution2D": _fix_deconvolution,
}
"""Keras 1 arguments that are more than a rename."""


def _is_one_of(value: Any, table: dict) -> bool:
    """Whether ``value`` is a key of ``table`` (a value from a file may be unhashable)."""
    return isinstance(value, str) and value in table


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _class(item: Any) -> Any:
    return item.get("class_name") if isinstance(item, dict) else None


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _node(class_name: str, config: dict, inputs: list[list]) -> dict:
    """A functional model's layer entry (Keras 2's form), called once on the tensors
    ``inputs`` (each ``[layer, node, tensor]``)."""
    return {
        "class_name": class_name,
        "name": config.get("name"),
        "config": config,
        "inbound_nodes": [inputs],
    }


# =============================================================================================
# Keras 2 / tf.keras forms that mean what Keras 3 means (per layer, while the graph is read)

_SEPARABLE_CLASSES = frozenset(
    ("SeparableConv1D", "SeparableConv2D", "SeparableConvolution1D", "SeparableConvolution2D")
)
_NO_GROUPS = _SEPARABLE_CLASSES | {
    "DepthwiseConv1D",
    "DepthwiseConv2D",
    "Conv1DTranspose",
    "Conv2DTranspose",
    "Conv3DTranspose",
    "Convolution1DTranspose",
    "Convolution2DTranspose",
    "Convolution3DTranspose",
}
"""Classes whose Keras 3 config has no ``groups``: older Keras wrote ``groups=1``."""
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
    if class_name in _NO_GROUPS and translated.get("groups") == 1:
        del translated["groups"]
    if class_name in _SEPARABLE_CLASSES:
        for key in _SEPARABLE_UNUSED:
            translated.pop(key, None)
    for key, value in config.items():
        # tf.keras 1.x-2.3 serialized TensorFlow's init_ops initializers with their dtype
        # (GlorotUniform(dtype="float32")), which Keras's own initializers do not take
        if isinstance(value, dict) and key.endswith("_initializer") and key in translated:
            inner = value.get("config")
            if isinstance(inner, dict) and inner.get("dtype") == "float32":
                inner = {k: v for k, v in inner.items() if k != "dtype"}
                translated[key] = {**value, "config": inner}
    return translated


# =============================================================================================
# Weights as the file's generation stored them


@dataclass(frozen=True)
class StoredArray:
    """How a variable is stored in a file: the shape to find there, and the map from the
    stored array to Keras 3's layout (``convc.model.Variable``)."""

    shape: tuple[int, ...]
    convert: Callable[[np.ndarray], np.ndarray]


def _as_is(array: np.ndarray) -> np.ndarray:
    return array


def stored_array(
    layer: Layer, variable: Variable, found: tuple[int, ...], generation: Generation
) -> StoredArray:
    """Where ``variable`` of ``layer`` is in a file of ``generation`` whose dataset has shape
    ``found`` (read before the data): Keras 1's kernel layouts, as Keras 2's
    ``preprocess_weights_for_loading`` converted them, then the Theano backend's kernel flip,
    as its ``convert_kernel`` did (Theano convolves; TensorFlow, and convc, correlate)."""
    stored = StoredArray(variable.shape, _as_is)
    spec = layer.spec
    if generation.major == 1:
        stored = _keras1_layout(spec, variable, found) or stored
    if (
        generation.backend == "theano"
        and generation.major < 3
        and isinstance(spec, ConvSpec)
        and variable.name in ("kernel", "depthwise_kernel", "pointwise_kernel")
    ):
        layout = stored.convert
        spatial = tuple(range(spec.rank))
        return StoredArray(stored.shape, lambda a: np.flip(layout(a), axis=spatial))
    return stored


def _keras1_layout(spec: Any, variable: Variable, found: tuple[int, ...]) -> StoredArray | None:
    shape = variable.shape
    if isinstance(spec, PReLUSpec) and len(found) == len(shape):
        # Keras 1 saved no shared_axes: a shared axis shows as a 1 in the stored alphas
        if all(f in (1, s) for f, s in zip(found, shape, strict=True)):
            return StoredArray(found, lambda a: np.ascontiguousarray(np.broadcast_to(a, shape)))
        return None
    if not isinstance(spec, ConvSpec) or variable.name not in (
        "kernel",
        "depthwise_kernel",
        "pointwise_kernel",
    ):
        return None
    if spec.rank == 1 and spec.kind == "conv":
        # Keras 1 convolved 1-D inputs as 2-D: (length, 1, channels, filters); Keras 1.0/1.1
        # wrote (filters, channels, length, 1)
        k, channels, filters = shape
        if found == (filters, channels, k, 1):
            return StoredArray(found, lambda a: np.ascontiguousarray(a.transpose(2, 3, 1, 0)[:, 0]))
        return StoredArray((k, 1, channels, filters), lambda a: np.ascontiguousarray(a[:, 0]))
    if spec.kind == "transpose" and spec.rank == 2:
        # Keras 1's Deconvolution2D kernel is a Convolution2D's, (rows, cols, in, out) for 'tf'
        # and (out, in, rows, cols) for 'th'; Keras 3's is (rows, cols, out, in)
        rows, cols, out, channels = shape
        if spec.data_format == "channels_last":
            return StoredArray((rows, cols, channels, out), _transposed((0, 1, 3, 2)))
        return StoredArray((out, channels, rows, cols), _transposed((2, 3, 0, 1)))
    if spec.data_format == "channels_first" and spec.kind in ("conv", "separable"):
        # 'th' kernels put (out, in) first: (filters, channels, *kernel) for a convolution,
        # (multiplier, channels, rows, cols) and (filters, channels * multiplier, 1, 1) for a
        # separable one
        rank = len(shape) - 2
        order = (*range(2, rank + 2), 1, 0)
        back = tuple(order.index(i) for i in range(rank + 2))
        return StoredArray(tuple(shape[i] for i in back), _transposed(order))
    return None


def _transposed(order: tuple[int, ...]) -> Callable[[np.ndarray], np.ndarray]:
    return lambda array: np.ascontiguousarray(array.transpose(order))
