"""The typed arguments of each layer family: what resolve decides about a layer, and what the
later passes read.

A layer type's ``configure`` normalizes and checks the constructor's arguments as Keras does, and
returns its family's frozen spec. A family is its spec's class: the lowering and the reference
register one function each by it (``@lowers``, ``@computes``), and ``tests/test_registry.py``
fails while a family lacks either. Lowering, the reference and weights read the spec's fields,
never a dict by key: a rule takes its family's spec (``expect``), so mypy (``tests/test_types.py``)
rejects a field the spec lacks. Field names are Keras's argument names. The
arguments every layer takes (``name``, ``trainable``, ``autocast``, ``activity_regularizer``) are
not here: they belong to ``convc.model.Layer``.

This module imports nothing of the front end: an initializer, a regularizer or a constraint is
any object with the protocol below (``convc.layers.initializers`` makes them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

from convc.records import fast_init


class Draw(Protocol):
    """An initializer: it draws a weight's first values."""

    def draw(self, shape: tuple[int, ...], rng: Any) -> Any: ...


class TrainingOnly(Protocol):
    """A regularizer or a constraint: checked and kept, never applied (it matters in training)."""

    @property
    def class_name(self) -> str: ...


ConvKind = Literal["conv", "transpose", "depthwise", "separable"]

Pairs = tuple[tuple[int, int], ...]
"""One ``(begin, end)`` pair per spatial axis."""


@fast_init
@dataclass(frozen=True, kw_only=True)
class LayerSpec:
    """What every family's spec is: a family is its spec class. Layer types
    (``convc.layers``), lowering rules (``convc.lower``) and the reference (``convc.reference``)
    register by it, so no table of family names can drift from the classes."""


@fast_init
@dataclass(frozen=True, kw_only=True)
class FormattedSpec(LayerSpec):
    """A layer whose ``data_format`` binds its physical layout."""

    data_format: str  # "channels_last" or "channels_first"


@fast_init
@dataclass(frozen=True, kw_only=True)
class SpatialSpec(FormattedSpec):
    """A layer with ``rank`` spatial axes (Cropping1D and UpSampling1D take no ``data_format``
    argument; theirs is channels_last)."""

    rank: int


@fast_init
@dataclass(frozen=True, kw_only=True)
class ConvSpec(SpatialSpec):
    """Conv, ConvTranspose, DepthwiseConv and SeparableConv. An argument that a kind does not
    take holds what it means for that kind: ``groups=1``, ``depth_multiplier=1``, no
    ``output_padding``, no initializer, no LoRA; a depthwise convolution has no ``filters``."""

    kind: ConvKind
    filters: int | None
    kernel_size: tuple[int, ...]
    strides: tuple[int, ...]
    padding: str  # "valid", "same" or (Conv1D) "causal"
    dilation_rate: tuple[int, ...]
    groups: int = 1
    depth_multiplier: int = 1
    output_padding: tuple[int, ...] | None = None
    activation: str
    use_bias: bool
    kernel_initializer: Draw | None = None
    depthwise_initializer: Draw | None = None
    pointwise_initializer: Draw | None = None
    bias_initializer: Draw
    kernel_regularizer: TrainingOnly | None = None
    depthwise_regularizer: TrainingOnly | None = None
    pointwise_regularizer: TrainingOnly | None = None
    bias_regularizer: TrainingOnly | None = None
    kernel_constraint: TrainingOnly | None = None
    depthwise_constraint: TrainingOnly | None = None
    pointwise_constraint: TrainingOnly | None = None
    bias_constraint: TrainingOnly | None = None
    lora_rank: int | None = None
    lora_alpha: float | None = None


@fast_init
@dataclass(frozen=True, kw_only=True)
class CroppingSpec(SpatialSpec):
    """Cropping1D to 3D: what to remove at each end of each spatial axis."""

    cropping: Pairs


@fast_init
@dataclass(frozen=True, kw_only=True)
class ZeroPaddingSpec(SpatialSpec):
    """ZeroPadding1D to 3D: zeros to add at each end of each spatial axis (negative crops)."""

    padding: Pairs


@fast_init
@dataclass(frozen=True, kw_only=True)
class UpSamplingSpec(SpatialSpec):
    """UpSampling1D to 3D: a factor per spatial axis; only UpSampling2D interpolates."""

    size: tuple[int, ...]
    interpolation: str = "nearest"  # "nearest", "bilinear", "bicubic" or a Keras 2 one (*_keras2)


MergeOperation = Literal["add", "subtract", "multiply", "average", "maximum", "minimum"]


@fast_init
@dataclass(frozen=True, kw_only=True)
class MergeSpec(LayerSpec):
    """Add, Subtract, Multiply, Average, Maximum and Minimum."""

    operation: MergeOperation


@fast_init
@dataclass(frozen=True, kw_only=True)
class ConcatenateSpec(LayerSpec):
    """Concatenate, along a Keras logical axis (negative counts from the end)."""

    axis: int


@fast_init
@dataclass(frozen=True, kw_only=True)
class ActivationSpec(LayerSpec):
    """Activation: a canonical Keras activation name."""

    activation: str


@fast_init
@dataclass(frozen=True, kw_only=True)
class ReLUSpec(LayerSpec):
    """ReLU, Keras's general rectifier."""

    max_value: float | None
    negative_slope: float
    threshold: float


NormKind = Literal["batch", "layer", "group", "unit"]


@fast_init
@dataclass(frozen=True, kw_only=True)
class NormSpec(LayerSpec):
    """BatchNormalization, LayerNormalization, GroupNormalization and UnitNormalization. ``axis``
    is as Keras holds it: one int for BatchNormalization and GroupNormalization, the list as given
    for the others (negative counts from the end; LayerNormalization sorts it when it builds,
    which orders its weights). An argument that a kind does not take holds what it means for that
    kind: UnitNormalization's ``epsilon`` is Keras's fixed 1e-12, and it has no center or scale;
    only BatchNormalization has moving statistics."""

    kind: NormKind
    axis: tuple[int, ...]
    epsilon: float
    center: bool = False
    scale: bool = False
    groups: int = 1  # GroupNormalization; -1 (instance normalization) is resolved at build
    rms_scaling: bool = False  # LayerNormalization
    momentum: float = 0.99  # BatchNormalization, training only, as the renorm_* and synchronized
    renorm: bool = False
    renorm_clipping: tuple[tuple[str, float], ...] | None = None
    renorm_momentum: float = 0.99
    synchronized: bool = False
    beta_initializer: Draw | None = None
    gamma_initializer: Draw | None = None
    moving_mean_initializer: Draw | None = None
    moving_variance_initializer: Draw | None = None
    beta_regularizer: TrainingOnly | None = None
    gamma_regularizer: TrainingOnly | None = None
    beta_constraint: TrainingOnly | None = None
    gamma_constraint: TrainingOnly | None = None


PoolMode = Literal["max", "average"]

PoolPadding = Literal["valid", "same", "same_torch"]
"""A pooling's ``padding``: Keras's two, and ``same_torch``, convc's name for the 'same'
average pooling of Keras 3's torch backend (``convc.layers.pooling``)."""


@fast_init
@dataclass(frozen=True, kw_only=True)
class RMSNormSpec(LayerSpec):
    """RMSNormalization: ``x / sqrt(mean(x ** 2) + epsilon) * scale`` over ``axis`` (as given;
    the layer takes only the last axes)."""

    axis: tuple[int, ...]
    epsilon: float


@fast_init
@dataclass(frozen=True, kw_only=True)
class PoolSpec(SpatialSpec):
    """MaxPooling1D to 3D and AveragePooling1D to 3D (``strides`` already defaulted to
    ``pool_size``, as Keras does)."""

    pool_mode: PoolMode
    pool_size: tuple[int, ...]
    strides: tuple[int, ...]
    padding: PoolPadding

    @property
    def window_padding(self) -> Literal["valid", "same"]:
        """Where the windows lie, for the shape arithmetic: ``same_torch`` places them as
        'same' does, and differs only in what an average counts."""
        return "valid" if self.padding == "valid" else "same"


# -- core layers, activation layers, inference no-ops and preprocessing (convc.layers.core,
# core_activations, inference, preprocessing)

Constant = tuple[tuple[int, ...], tuple[float, ...]]
"""An array argument written in the file (Rescaling's scale, Normalization's mean): its shape
and its values in row-major order."""


@fast_init
@dataclass(frozen=True, kw_only=True)
class DenseSpec(LayerSpec):
    """Dense, on the last axis of an input of any rank >= 2."""

    units: int
    activation: str
    use_bias: bool
    kernel_initializer: Draw
    bias_initializer: Draw
    kernel_regularizer: TrainingOnly | None = None
    bias_regularizer: TrainingOnly | None = None
    kernel_constraint: TrainingOnly | None = None
    bias_constraint: TrainingOnly | None = None
    lora_rank: int | None = None
    lora_alpha: float | None = None


@fast_init
@dataclass(frozen=True, kw_only=True)
class FlattenSpec(FormattedSpec):
    """Flatten. With channels_first, Keras moves the channels last before flattening."""


@fast_init
@dataclass(frozen=True, kw_only=True)
class ReshapeSpec(LayerSpec):
    """Reshape: the target shape as written (batch excluded); -1 marks the one inferred axis."""

    target_shape: tuple[int, ...]


@fast_init
@dataclass(frozen=True, kw_only=True)
class PermuteSpec(LayerSpec):
    """Permute: output axis i (from 1) is input axis dims[i - 1]."""

    dims: tuple[int, ...]


@fast_init
@dataclass(frozen=True, kw_only=True)
class PassThroughSpec(LayerSpec):
    """A layer whose inference output is its input (Identity, Dropout and the noise layers,
    ActivityRegularization, the random augmentation layers): its Keras arguments, checked and
    recorded by name."""

    arguments: tuple[tuple[str, Any], ...]


@fast_init
@dataclass(frozen=True, kw_only=True)
class LeakyReLUSpec(LayerSpec):
    negative_slope: float


@fast_init
@dataclass(frozen=True, kw_only=True)
class PReLUSpec(LayerSpec):
    """PReLU: ``alpha`` has the input's shape (batch excluded), 1 on each shared axis."""

    alpha_initializer: Draw
    alpha_regularizer: TrainingOnly | None
    alpha_constraint: TrainingOnly | None
    shared_axes: tuple[int, ...] | None


@fast_init
@dataclass(frozen=True, kw_only=True)
class ELUSpec(LayerSpec):
    alpha: float


@fast_init
@dataclass(frozen=True, kw_only=True)
class SoftmaxSpec(LayerSpec):
    """Softmax over one or several Keras logical axes (negative counts from the end)."""

    axis: tuple[int, ...]


@fast_init
@dataclass(frozen=True, kw_only=True)
class RescalingSpec(LayerSpec):
    """Rescaling: ``x * scale + offset``; an array scale is reshaped to (C, 1, 1) when the image
    data format is channels_first, as Keras does (the offset is not)."""

    scale: Constant
    offset: Constant
    data_format: str


@fast_init
@dataclass(frozen=True, kw_only=True)
class GlobalPoolSpec(SpatialSpec):
    """GlobalMaxPooling1D to 3D and GlobalAveragePooling1D to 3D."""

    pool_mode: PoolMode
    keepdims: bool


@fast_init
@dataclass(frozen=True, kw_only=True)
class NormalizationSpec(LayerSpec):
    """Normalization: ``(x - mean) / max(sqrt(variance), 1e-7)`` (or its inverse), with mean and
    variance given as arguments or, when they are None, as the layer's weights."""

    axis: tuple[int, ...]
    mean: Constant | None
    variance: Constant | None
    invert: bool


@fast_init
@dataclass(frozen=True, kw_only=True)
class ResizingSpec(FormattedSpec):
    """Resizing, and CenterCrop (``center_crop``): as Keras's torch backend resizes."""

    height: int
    width: int
    interpolation: str = "bilinear"  # "bilinear", "nearest", "bicubic" or "bicubic_keras2"
    crop_to_aspect_ratio: bool = False
    pad_to_aspect_ratio: bool = False
    fill_mode: str = "constant"
    fill_value: float = 0.0
    antialias: bool = False
    center_crop: bool = False


@fast_init
@dataclass(frozen=True, kw_only=True)
class ScaledAddSpec(LayerSpec):
    """CustomScaleLayer (InceptionResNetV2): ``inputs[0] + inputs[1] * scale``."""

    scale: float


@fast_init
@dataclass(frozen=True, kw_only=True)
class LayerScaleSpec(LayerSpec):
    """LayerScale (ConvNeXt): the last axis times ``gamma`` of shape ``(projection_dim,)``."""

    init_values: float
    projection_dim: int


SpecT = TypeVar("SpecT", bound=LayerSpec)


def data_format_of(spec: LayerSpec) -> str | None:
    """The layer's data_format; None for a layer that works in any layout (a merge, an
    activation, and Rescaling, whose data_format only shapes its scale)."""
    return spec.data_format if isinstance(spec, FormattedSpec) else None


def expect(spec: LayerSpec, family: type[SpecT]) -> SpecT:
    """``spec``, checked to be of ``family``: for a rule that a dispatch by family chose."""
    if not isinstance(spec, family):
        raise TypeError(f"expected a {family.__name__}, got {type(spec).__name__}")
    return spec
