"""Layers that Keras's own applications define and register: CustomScaleLayer and LayerScale.

They are custom objects (``keras.src.applications.*``), not ``keras.layers``, but small and
exactly defined, and a ``.keras`` file of InceptionResNetV2 or ConvNeXt uses them by name:

* ``CustomScaleLayer(scale)`` (InceptionResNetV2) is called on ``[x, r]`` and returns
  ``x + r * scale``;
* ``LayerScale(init_values, projection_dim)`` (ConvNeXt) multiplies the last axis by its weight
  ``gamma`` of shape ``(projection_dim,)``, initialized to ``init_values``.
"""

from __future__ import annotations

from collections.abc import Sequence

from convc.diagnostics import ConvcError
from convc.layers.args import Bound, is_int, params
from convc.layers.base import Built, LayerType, layer_type
from convc.layers.core import finite_number
from convc.layers.initializers import Initializer
from convc.layers.merge import broadcast_shape, same_batch
from convc.model import Shape, Variable, format_shape
from convc.specs import LayerScaleSpec, ScaledAddSpec


@layer_type
class CustomScaleLayer(LayerType[ScaledAddSpec]):
    spec_class = ScaledAddSpec
    class_name = "CustomScaleLayer"
    keras_class = "keras.src.applications.inception_resnet_v2.CustomScaleLayer"
    own_params = params("scale")
    takes_list = True

    def configure(self, args: Bound, default_data_format: str) -> ScaledAddSpec:
        return ScaledAddSpec(scale=finite_number(args, "scale", "a CustomScaleLayer"))

    def build_inputs(
        self,
        spec: ScaledAddSpec,
        input_shapes: tuple[Shape, ...],
        args: Bound,
        name: str,
        input_names: Sequence[str],
    ) -> Built:
        label = self.label(name)
        if len(input_shapes) != 2:
            raise ConvcError(
                f"{label} is called on [x, residual], got {len(input_shapes)} tensors",
                args.call.span,
                help="it computes x + residual * scale",
            )
        same_batch(label, input_shapes, input_names, args)
        output = broadcast_shape(
            label,
            list(input_shapes[0][1:]),
            list(input_shapes[1][1:]),
            input_names[0],
            input_names[1],
            args,
        )
        return Built((input_shapes[0][0], *output))


@layer_type
class LayerScale(LayerType[LayerScaleSpec]):
    spec_class = LayerScaleSpec
    class_name = "LayerScale"
    keras_class = "keras.src.applications.convnext.LayerScale"
    own_params = params("init_values", "projection_dim")

    def configure(self, args: Bound, default_data_format: str) -> LayerScaleSpec:
        dim = args.python("projection_dim")
        if not is_int(dim) or dim < 1:
            raise ConvcError(
                f"projection_dim of a LayerScale must be a positive integer, got {dim!r}",
                args.span("projection_dim"),
            )
        init = finite_number(args, "init_values", "a LayerScale")
        return LayerScaleSpec(init_values=init, projection_dim=int(dim))

    def build(self, spec: LayerScaleSpec, input_shape: Shape, args: Bound, name: str) -> Built:
        if input_shape[-1] != spec.projection_dim:
            raise ConvcError(
                f"{self.label(name)} scales a last axis of {spec.projection_dim}, but its input "
                f"has shape {format_shape(input_shape)}",
                args.span("projection_dim"),
            )
        gamma = Variable(
            "gamma",
            (spec.projection_dim,),
            Initializer("Constant", (("value", spec.init_values),)),
        )
        return Built(input_shape, (gamma,))
