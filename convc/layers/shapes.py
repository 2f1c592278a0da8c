"""Shape arithmetic of the convolution family, as pure functions of one spatial axis.

Everything here follows Keras 3 (``keras/src/ops/operation_utils.py`` and
``backend/common/backend_utils.py``), written per axis: ``length`` is the input length, ``kernel``
the kernel size, ``dilation`` the dilation rate. Pads are ``(begin, end)`` pairs of explicit
numbers; the compiler never leaves padding to a runtime's ``auto_pad``.
"""

from __future__ import annotations


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
