"""Shape geometry that the front end, the lowering and the IR share, as pure functions.

Resolve computes layers' shapes with it and lowering their pads and slices, so it sits below both
(the reference derives its own and imports nothing here).

The convolution family's arithmetic is written per spatial axis:

Everything here follows Keras 3 (``keras/src/ops/operation_utils.py`` and
``backend/common/backend_utils.py``), written per axis: ``length`` is the input length, ``kernel``
the kernel size, ``dilation`` the dilation rate. Pads are ``(begin, end)`` pairs of explicit
numbers; the compiler never leaves padding to a runtime's ``auto_pad``.
"""

from __future__ import annotations

from convc.specs import RescalingSpec, ResizingSpec


def effective_kernel(kernel: int, dilation: int) -> int:
    """The span of a dilated kernel: ``dilation * (kernel - 1) + 1``."""
    return dilation * (kernel - 1) + 1


def conv_output_length(length: int, kernel: int, stride: int, dilation: int, padding: str) -> int:
    """Output length of a forward convolution ('valid', 'same' or 'causal'); may be <= 0."""
    if padding == "valid":
        return (length - effective_kernel(kernel, dilation)) // stride + 1
    return -(-length // stride)  # 'same' and 'causal': ceil(length / stride)


def conv_pads(
    length: int, kernel: int, stride: int, dilation: int, padding: str
) -> tuple[int, int]:
    """Explicit (begin, end) pads of a forward convolution.

    'same' puts the odd element at the end (ONNX's SAME_UPPER); 'causal' pads only the front.
    """
    span = effective_kernel(kernel, dilation)
    if padding == "valid":
        return (0, 0)
    if padding == "causal":
        return (span - 1, 0)
    total = max(
        0,
        (conv_output_length(length, kernel, stride, dilation, "same") - 1) * stride + span - length,
    )
    return (total // 2, total - total // 2)


def transpose_output_length(
    length: int, kernel: int, stride: int, dilation: int, padding: str, output_padding: int | None
) -> int:
    """Output length of a transposed convolution, Keras's rule with and without output_padding."""
    span = effective_kernel(kernel, dilation)
    if output_padding is None:
        if padding == "valid":
            return (length - 1) * stride + max(span, stride)
        return length * stride
    if padding == "valid":
        return (length - 1) * stride + span + output_padding
    return (length - 1) * stride + span % 2 + output_padding


def transpose_pads(
    length: int, kernel: int, stride: int, dilation: int, padding: str, output_padding: int | None
) -> tuple[int, int, int]:
    """ONNX ConvTranspose (pad_begin, pad_end, output_padding) that give Keras's output.

    The unpadded ("full") output has ``(length - 1) * stride + span`` elements. Keras crops the
    surplus with the odd element at the end, or extends a short output at the end (those trailing
    positions then hold only the bias).
    """
    full = (length - 1) * stride + effective_kernel(kernel, dilation)
    surplus = full - transpose_output_length(
        length, kernel, stride, dilation, padding, output_padding
    )
    crop = max(surplus, 0)
    return (crop // 2, crop - crop // 2, max(-surplus, 0))


def spatial_axes(rank: int, data_format: str) -> tuple[int, ...]:
    """Positions of the spatial axes in a Keras tensor of the given data_format."""
    first = 1 if data_format == "channels_last" else 2
    return tuple(range(first, first + rank))


def channel_axis(rank: int, data_format: str) -> int:
    return rank + 1 if data_format == "channels_last" else 1


EPSILON = 1e-7
"""``keras.backend.epsilon()``: Normalization's floor on the standard deviation."""


def rescaling_scale_shape(spec: RescalingSpec) -> tuple[int, ...]:
    """Keras's reshape of an array scale to (C, 1, 1) under channels_first."""
    shape = spec.scale[0]
    if shape and spec.data_format == "channels_first":
        shape = shape + (1,) * (3 - len(shape))
    return shape


def aspect_crop(spec: ResizingSpec, height: int, width: int) -> tuple[tuple[int, int], ...]:
    """Keras's crop to the target's aspect ratio: (start, length) for height and width."""
    crop_height = max(min(height, int(float(width * spec.height) / spec.width)), 1)
    crop_width = max(min(width, int(float(height * spec.width) / spec.height)), 1)
    return (
        (int(float(height - crop_height) / 2), crop_height),
        (int(float(width - crop_width) / 2), crop_width),
    )


def aspect_pad(spec: ResizingSpec, height: int, width: int) -> tuple[int, int]:
    """Keras's pad to the target's aspect ratio: the rows (and columns) of fill added on each
    side. Both sides get the floor of half the difference, so an odd difference is one short."""
    pad_height = max(height, int(float(width * spec.height) / spec.width))
    pad_width = max(width, int(float(height * spec.width) / spec.height))
    return int(float(pad_height - height) / 2), int(float(pad_width - width) / 2)


def center_crop_slices(spec: ResizingSpec, height: int, width: int) -> bool:
    """Whether CenterCrop slices (the input is at least the target size on both axes)."""
    return spec.center_crop and height >= spec.height and width >= spec.width


def source_size(spec: ResizingSpec, height: int, width: int) -> tuple[int, int]:
    """The (height, width) that the resize itself starts from, after a crop or a pad."""
    if spec.crop_to_aspect_ratio:
        (_, height), (_, width) = aspect_crop(spec, height, width)
    elif spec.pad_to_aspect_ratio:
        rows, columns = aspect_pad(spec, height, width)
        height, width = height + 2 * rows, width + 2 * columns
    return height, width
