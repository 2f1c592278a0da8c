"""Compatibility targets: what each runtime that loads convc's models can and cannot take.

A target is data, not code paths: the lowering rules ask the emitter's target a question about a
construct ("may Resize scale a rank-3 tensor?") and pick an equivalent form when the answer is
no. Every limitation below was found by running convc's per-layer cases in the runtime itself
(tests/test_runtime_matrix.py proves each workaround there); the docstring of each field says
which runtime mishandles what.

``portable`` is the default: it takes every workaround whose cost in onnxruntime was measured as
nil, and an opset that every runtime listed here reads, so one file runs everywhere. Two
workarounds have a cost and are taken anyway, because a runtime is otherwise wrong: a ZeroPadding
before a 1x1 convolution stays a Pad node (one copy of the tensor) instead of folding into it
(OpenCV), and a 'same' max pooling with unit strides pads with a Pad node (one copy; 0.12 ms more
for a 3x3 pool of 128x40x40 in onnxruntime) instead of in the MaxPool (onnx.reference).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, cast

from convc.diagnostics import ConvcError

NEWEST_OPSET = 28
"""The newest opset of the pinned onnx package."""

OLDEST_OPSET = 13
"""Softmax and LogSoftmax along one axis, Resize's and Pad's input forms, Split/Slice inputs."""


@dataclass(frozen=True)
class Target:
    name: str
    runtime: str
    """The runtime this target is for, in words."""

    opset: int
    """The opset emitted when none is asked for."""

    max_opset: int
    """The newest opset the runtime reads."""

    resize_ranks: frozenset[int]
    """Ranks at which Resize runs correctly. OpenCV's DNN module resizes only 4-D NCHW
    tensors: a rank-3 or rank-5 Resize is refused at load time. convc views other ranks as 4-D
    (Reshape) around the Resize. onnxruntime's rank-5 Resize is 20 times slower than that view,
    so no target uses it."""

    resize_inner_axes_only: bool
    """Resize may scale only the two innermost axes. OpenCV's DNN module takes a Resize of
    NHWC-ordered axes as if they were NCHW and returns a wrongly shaped result without an
    error; OpenVINO computes cubic Resize of middle axes wrongly. convc transposes to
    channels-first around such a Resize."""

    pointwise_conv_pads: bool = True
    """A Conv whose kernel is one element on every axis may pad. OpenCV's DNN module returns
    garbage (values near 1e30) from such a Conv (ZeroPadding before a 1x1 Conv folds into one,
    and the sub-pixel form of a transposed convolution makes them); convc pads with a Pad
    node first instead."""

    reduce_inner_axes: bool = True
    """A reduction over three or more axes may leave a later axis unreduced. OpenCV's DNN
    module returns wrong numbers from such a ReduceMean, ReduceSumSquare or ReduceL2 (rank 5 and
    more: over axes 1, 2, 3 of a rank-5 tensor, say); convc transposes the reduced axes last
    first."""
    unit_stride_max_pool_pads: bool = True
    """A MaxPool whose strides are all 1 may pad. onnx.reference's MaxPool reads such pads in
    the wrong order (2-D) or not at all (1-D, 3-D); convc pads by repeating the edge (a Pad node
    in "edge" mode) first instead, which is exact: every window of Keras's 'same' pooling holds
    the edge element that a pad repeats."""

    reduce_three_middle_axes: bool = True
    """A ReduceMean or ReduceMax may reduce axes 1, 2 and 3 of a rank-5 tensor (a channels_last
    GlobalPooling3D). OpenCV's DNN module returns wrong numbers for it (two axes, or the last
    three, are right); convc views the three axes as one (Reshape) and reduces that."""
    resize_antialias: bool = True
    """Resize's ``antialias`` (opset 18) filters as torch's antialiased interpolation does.
    OpenVINO's antialiased Resize gives other numbers (off by up to 1.0 on unit inputs); convc
    resizes by constant matrices instead there, as it does below opset 18."""

    resize_cubic_exclude_outside: bool = True
    """Resize's cubic mode with ``exclude_outside=1`` and ``cubic_coeff_a=-0.5`` computes JAX's
    and TensorFlow's bicubic (the samples outside the image left out, the others renormalized).
    OpenVINO's (2026.4) gives other numbers (off by 0.1 on unit inputs); convc resizes by
    constant matrices instead there, and where the runtime is not known."""

    strided_pointwise_conv: bool = True
    """A Conv whose kernel is one element on every axis may have strides above 1. tract (0.23)
    cannot load a model where such a Conv reads, through elementwise nodes, another 1x1 Conv,
    when the batch is symbolic (its optimizer fails "pulling Downsample over Reshape"): every
    ResNet's projection shortcut. convc subsamples with a 1x1 MaxPool of those strides and
    convolves with unit strides there, which is exact (a MaxPool over one element returns it)
    and costs nothing measurable in onnxruntime (ResNet50, A/B in one process: min 37.12 against
    37.13 ms, p10 41.48 against 41.62)."""

    prelu_any_slope: bool = True
    """PRelu's slope may vary along any axis. OpenCV's DNN module fuses a PRelu that follows a
    Conv into the convolution and then asserts that the slope has one entry per output channel
    (``cs.activParams.size() == K``): the model does not run. convc computes a PReLU whose alpha
    is not per-channel as Where(x >= 0, x, x * alpha) there, which is exact."""

    conv_output_read_by_add: bool = True
    """A Conv's output may be a graph output and also an input of an Add. onnxruntime (1.32,
    CPU, at its default optimization level) fuses such an Add into the Conv (a FusedConv that
    adds its second input) although the Conv's own output is wanted, and the session does not
    load ("Failed to find node output or a constant initializer producing output"); found by
    the random files of benchmarks/corpus/random_files.py: a shared DepthwiseConv2D whose first
    application is a model output and whose two applications are averaged. convc makes the graph
    output an Identity of the Conv's value there, which no fusion takes."""

    tested: bool = True
    """Whether the runtime runs in convc's test suite when installed. TensorRT needs an NVIDIA
    GPU, which the test machines may lack."""


_EVERY_RESIZE = frozenset({3, 4})
_ONLY_4D_RESIZE = frozenset({4})

TargetName = Literal["portable", "ort", "onnx-reference", "openvino", "opencv", "tract", "tensorrt"]
"""The names of ``TARGETS`` (``tests/test_targets.py`` holds the two equal)."""

TARGETS: dict[str, Target] = {
    target.name: target
    for target in (
        Target(
            "portable",
            "every runtime below",
            opset=17,
            max_opset=NEWEST_OPSET,
            resize_ranks=_ONLY_4D_RESIZE,
            resize_inner_axes_only=True,
            pointwise_conv_pads=False,
            reduce_inner_axes=False,
            unit_stride_max_pool_pads=False,
            reduce_three_middle_axes=False,
            strided_pointwise_conv=False,
            prelu_any_slope=False,
            conv_output_read_by_add=False,
            resize_cubic_exclude_outside=False,
        ),
        Target(
            "ort",
            "ONNX Runtime",
            opset=NEWEST_OPSET,
            max_opset=NEWEST_OPSET,
            resize_ranks=_EVERY_RESIZE,
            resize_inner_axes_only=False,
            conv_output_read_by_add=False,
        ),
        Target(
            "onnx-reference",
            "onnx.reference.ReferenceEvaluator",
            opset=NEWEST_OPSET,
            max_opset=NEWEST_OPSET,
            resize_ranks=_EVERY_RESIZE,
            resize_inner_axes_only=False,
            unit_stride_max_pool_pads=False,
        ),
        Target(
            "openvino",
            "OpenVINO (CPU plugin)",
            opset=NEWEST_OPSET,
            max_opset=NEWEST_OPSET,
            resize_ranks=_EVERY_RESIZE,
            resize_inner_axes_only=True,
            resize_antialias=False,
            resize_cubic_exclude_outside=False,
        ),
        Target(
            "opencv",
            "OpenCV DNN",
            opset=17,
            max_opset=NEWEST_OPSET,
            resize_ranks=_ONLY_4D_RESIZE,
            resize_inner_axes_only=True,
            pointwise_conv_pads=False,
            reduce_inner_axes=False,
            reduce_three_middle_axes=False,
            prelu_any_slope=False,
        ),
        Target(
            "tract",
            "tract",
            opset=NEWEST_OPSET,
            max_opset=NEWEST_OPSET,
            resize_ranks=_EVERY_RESIZE,
            resize_inner_axes_only=False,
            strided_pointwise_conv=False,
        ),
        Target(
            "tensorrt",
            "NVIDIA TensorRT (through onnxruntime's TensorRT provider)",
            opset=17,
            max_opset=22,
            resize_ranks=_ONLY_4D_RESIZE,
            resize_inner_axes_only=True,
            conv_output_read_by_add=False,  # what TensorRT leaves to onnxruntime's CPU
            resize_cubic_exclude_outside=False,  # untested: the exact form
            tested=False,
        ),
    )
}

DEFAULT_TARGET: TargetName = "portable"

RUNTIMES = tuple(name for name in TARGETS if name != "portable")
"""The runtimes convc runs models in (``convc run --runtime``, ``convc.runners``)."""


def get_target(name: str) -> Target:
    """The target called ``name``, or a ConvcError listing the known ones."""
    try:
        return TARGETS[name]
    except KeyError:
        raise ConvcError(
            f"unknown target {name!r}", help="choose one of: " + ", ".join(TARGETS)
        ) from None


def target_name(name: str) -> TargetName:
    """``name`` as a target's name, or a ConvcError listing the known ones."""
    get_target(name)
    return cast(TargetName, name)


def resolve_opset(target: Target, opset: int | None) -> int:
    """The opset to emit for ``target``: its default, or ``opset`` if the target reads it."""
    if opset is None:
        return target.opset
    if isinstance(opset, bool) or not isinstance(opset, int):
        raise ConvcError(f"the opset must be an integer, got {opset!r}")
    if opset < OLDEST_OPSET:
        raise ConvcError(
            f"opset {opset} is not supported",
            help=f"convc emits opsets {OLDEST_OPSET} to {NEWEST_OPSET}; below {OLDEST_OPSET}, "
            "Softmax works on flattened axes and Pad, Slice and Resize take other forms",
        )
    if opset > target.max_opset:
        if target.max_opset == NEWEST_OPSET:
            raise ConvcError(
                f"opset {opset} is not supported",
                help=f"convc emits opsets {OLDEST_OPSET} to {NEWEST_OPSET}, the newest that "
                "its onnx package knows",
            )
        raise ConvcError(
            f"opset {opset} is too new for target {target.name!r}",
            help=f"{target.runtime} reads opsets up to {target.max_opset}",
        )
    return opset
