"""Merge layers: Add, Subtract, Multiply, Average, Maximum, Minimum and Concatenate.

They take a list of tensors. The elementwise ones broadcast as Keras 3's ``Merge`` does: the
non-batch axes are aligned from the right (a tensor of lower rank gains unit axes after the batch
axis), and each axis must be equal or 1 in every input. Concatenate's axis is a Keras logical
axis of its inputs, which must agree everywhere else. A mismatch is the most common graph mistake
(an odd size in a U-Net), so the error names both inputs, both shapes and the axis, and says
which Cropping or ZeroPadding would make them agree.
"""

from __future__ import annotations

from collections.abc import Sequence

from convc.diagnostics import ConvcError
from convc.layers.args import Bound, int_arg, params
from convc.layers.base import Built, LayerType, register
from convc.model import Shape, format_shape, known_dim
from convc.specs import ConcatenateSpec, MergeOperation, MergeSpec

ELEMENTWISE: dict[str, MergeOperation] = {
    "Add": "add",
    "Subtract": "subtract",
    "Multiply": "multiply",
    "Average": "average",
    "Maximum": "maximum",
    "Minimum": "minimum",
}
"""The elementwise merge classes and the operation each stands for."""


class ElementwiseMerge(LayerType[MergeSpec]):
    spec_class = MergeSpec
    takes_list = True

    def __init__(self, class_name: str):
        self.class_name = class_name
        self.operation = ELEMENTWISE[class_name]

    def configure(self, args: Bound, default_data_format: str) -> MergeSpec:
        return MergeSpec(operation=self.operation)

    def build_inputs(
        self,
        spec: MergeSpec,
        input_shapes: tuple[Shape, ...],
        args: Bound,
        name: str,
        input_names: Sequence[str],
    ) -> Built:
        label = self.label(name)
        count = len(input_shapes)
        if spec.operation == "subtract" and count != 2:
            raise ConvcError(
                f"{label} takes exactly 2 inputs, got {count}",
                args.call.span,
                help="Subtract computes inputs[0] - inputs[1]",
            )
        if count < 1:
            raise ConvcError(f"{label} merges an empty list", args.call.span)
        same_batch(label, input_shapes, input_names, args)
        output = list(input_shapes[0][1:])
        first = input_names[0]
        for shape, other_name in zip(input_shapes[1:], input_names[1:], strict=True):
            output = broadcast_shape(label, output, list(shape[1:]), first, other_name, args)
            first = f"{first} and {other_name}" if len(input_shapes) > 2 else first
        batch = next((s[0] for s in input_shapes if s[0] is not None), None)
        return Built((batch, *output))


def broadcast_shape(
    label: str,
    shape1: list[int | None],
    shape2: list[int | None],
    name1: str,
    name2: str,
    args: Bound,
) -> list[int | None]:
    """Keras's ``_compute_elemwise_op_output_shape`` (batch axis excluded)."""
    if len(shape1) < len(shape2):
        return broadcast_shape(label, shape2, shape1, name2, name1, args)
    out = list(shape1[: len(shape1) - len(shape2)])
    offset = len(shape1) - len(shape2)
    for axis, (i, j) in enumerate(zip(shape1[offset:], shape2, strict=True)):
        if i == 1:
            out.append(j)
        elif j == 1 or i == j:
            out.append(i)
        else:
            logical = offset + axis + 1
            raise ConvcError(
                f"{label} cannot merge '{name1}' of shape "
                f"{format_shape((None, *shape1))} with '{name2}' of shape "
                f"{format_shape((None, *shape2))}: axis {logical} has {i} and {j} entries",
                args.call.span,
                help=_fix_help(i, j, logical),
            )
    return out


def same_batch(
    label: str, input_shapes: tuple[Shape, ...], input_names: Sequence[str], args: Bound
) -> None:
    batches = {s[0] for s in input_shapes} - {None}
    if len(batches) > 1:
        shown = ", ".join(
            f"'{n}' {format_shape(s)}" for n, s in zip(input_names, input_shapes, strict=True)
        )
        raise ConvcError(
            f"{label} cannot merge tensors with different batch sizes: {shown}",
            args.call.span,
        )


def _fix_help(i: int | None, j: int | None, axis: int) -> str | None:
    if i is None or j is None:
        return None
    difference = abs(i - j)
    return (
        f"the sizes differ by {difference}: crop the larger with a Cropping layer or pad the "
        f"smaller with a ZeroPadding layer by {difference} in all on axis {axis} (e.g. "
        f"Cropping2D(((0, {difference}), (0, 0))) for the height of a channels_last image), or "
        "give the input a size the strides divide"
    )


class Concatenate(LayerType[ConcatenateSpec]):
    spec_class = ConcatenateSpec
    class_name = "Concatenate"
    takes_list = True
    own_params = params(("axis", -1))

    def configure(self, args: Bound, default_data_format: str) -> ConcatenateSpec:
        return ConcatenateSpec(axis=int_arg(args, "axis"))

    def build_inputs(
        self,
        spec: ConcatenateSpec,
        input_shapes: tuple[Shape, ...],
        args: Bound,
        name: str,
        input_names: Sequence[str],
    ) -> Built:
        label = self.label(name)
        if not input_shapes:
            raise ConvcError(f"{label} joins an empty list", args.call.span)
        rank = len(input_shapes[0])
        for shape, other_name in zip(input_shapes[1:], input_names[1:], strict=True):
            if len(shape) != rank:
                raise ConvcError(
                    f"{label} joins tensors of one rank: '{input_names[0]}' has "
                    f"shape {format_shape(input_shapes[0])}, '{other_name}' {format_shape(shape)}",
                    args.call.span,
                )
        axis = spec.axis
        if not -rank <= axis < rank:
            raise ConvcError(
                f"axis={axis} is out of range for inputs of rank {rank} (axes {-rank} to "
                f"{rank - 1})",
                args.span("axis"),
            )
        axis %= rank
        if axis == 0:
            raise ConvcError(
                f"{label} along axis 0 would join batches: convc compiles models "
                "whose batch axis is the batch",
                args.span("axis"),
            )
        same_batch(label, input_shapes, input_names, args)
        output = list(input_shapes[0])
        joined = known_dim(input_shapes[0], axis)  # not the batch axis
        for shape, other_name in zip(input_shapes[1:], input_names[1:], strict=True):
            for other in range(1, rank):
                if other != axis and shape[other] != output[other]:
                    raise ConvcError(
                        f"{label} along axis {axis} needs every other axis to "
                        f"agree, but '{input_names[0]}' has shape "
                        f"{format_shape(input_shapes[0])} and '{other_name}' has shape "
                        f"{format_shape(shape)}: axis {other} has {output[other]} and "
                        f"{shape[other]} entries",
                        args.call.span,
                        help=_fix_help(output[other], shape[other], other),
                    )
            joined += known_dim(shape, axis)
        output[axis] = joined
        output[0] = next((s[0] for s in input_shapes if s[0] is not None), None)
        return Built(tuple(output))


register(*(ElementwiseMerge(name) for name in ELEMENTWISE), Concatenate())

MERGE_FUNCTIONS = {name.lower(): name for name in (*ELEMENTWISE, "Concatenate")}
"""Keras's lowercase helpers (``layers.add([a, b])``): each makes its layer and applies it."""
