"""Properties of the emitted ONNX: checked, shape-inferred, few Transposes, readable names,
the default opset supported by onnxruntime's kernels, and all opsets 13+ accepted."""

from __future__ import annotations

import onnx
import onnxruntime.capi.onnxruntime_pybind11_state as ort_state
import pytest
from onnx import defs

from convc.compiler import compile_text
from convc.diagnostics import ConvcError
from convc.targets import NEWEST_OPSET as MAX_OPSET
from convc.targets import OLDEST_OPSET as MIN_OPSET

STACK = """model stack
Input(shape=(16, 16, 3), name="image")
Conv2D(8, 3, padding="same", activation="gelu", name="enc1")
SeparableConv2D(8, 3, padding="same", activation="hard_swish")
DepthwiseConv2D(3, strides=2, padding="same", activation="mish")
Conv2DTranspose(4, 3, strides=2, padding="same")
ZeroPadding2D(1)
Cropping2D(((1, 0), (0, 1)))
UpSampling2D(interpolation="bilinear")
Conv2D(4, 1, activation="softmax")
"""


def test_checker_and_static_shapes():
    proto = compile_text(STACK)
    onnx.checker.check_model(proto, full_check=True)
    for info in proto.graph.value_info:
        dims = info.type.tensor_type.shape.dim
        assert not dims[0].HasField("dim_param") and not dims[0].HasField("dim_value")
        assert all(d.HasField("dim_value") for d in dims[1:]), info.name


def test_channels_last_stack_has_two_transposes():
    proto = compile_text(STACK)
    assert sum(n.op_type == "Transpose" for n in proto.graph.node) == 2


@pytest.mark.parametrize(
    "head",
    [
        "Conv2D(4, 1, activation='softmax')",
        "Conv2D(4, 1, activation='log_softmax')",
        "Conv2D(4, 1)\nSoftmax()",
        "Conv2D(4, 1)\nSoftmax(axis=1)",
    ],
    ids=["conv-softmax", "conv-log-softmax", "softmax-layer", "softmax-over-rows"],
)
def test_a_softmax_normalizes_along_its_physically_last_axis(head):
    """onnxruntime normalizes along another axis by transposing inside its kernel: the layout
    moves first, taking the place of the Transpose the channels_last output needs anyway."""
    proto = compile_text(f"Input(shape=(6, 5, 3))\nConv2D(8, 3)\n{head}\n")
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("Transpose") == 2 + ("axis=1" in head)
    last = next(n for n in reversed(proto.graph.node) if "Softmax" in n.op_type)
    assert last.attribute[0].i in (3, -1)


def test_names_are_stable_and_readable():
    proto = compile_text(STACK)
    assert proto.graph.name == "stack"
    assert proto.graph.input[0].name == "image"
    assert proto.graph.output[0].name == "conv2d"  # enc1 does not consume the counter
    assert "enc1/conv" in {n.name for n in proto.graph.node}
    assert all(not i.name.startswith("onnx::") for i in proto.graph.initializer)


def test_fixed_batch_is_static():
    proto = compile_text("Input(shape=(8, 3), batch_size=4)\nConv1D(2, 3)\n")
    assert proto.graph.output[0].type.tensor_type.shape.dim[0].dim_value == 4


def test_input_dtype_is_cast_like_keras_autocast():
    proto = compile_text("Input(shape=(8, 3), dtype='float64')\nConv1D(2, 3)\n")
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    assert proto.graph.node[0].op_type == "Cast"


def _emitted_ops() -> set[str]:
    ops = set()
    for opset in (MIN_OPSET, MAX_OPSET):
        ops |= {n.op_type for n in compile_text(STACK, opset=opset).graph.node}
        for activation in (
            "relu6",
            "leaky_relu",
            "selu",
            "celu",
            "log_sigmoid",
            "soft_shrink",
            "sparse_plus",
            "sparsemax",
            "glu",
            "squareplus",
            "log_softmax",
            "exponential",
        ):
            text = f"Input(shape=(6, 4))\nConv1D(4, 1, activation='{activation}')\n"
            ops |= {n.op_type for n in compile_text(text, opset=opset).graph.node}
    return ops


def test_newest_opset_has_onnxruntime_kernels():
    """Every op convc emits, at its newest ONNX version up to MAX_OPSET, has an
    onnxruntime CPU kernel of that version (or is an ONNX function that runtimes expand)."""
    kernels: dict[str, set[int]] = {}
    for kernel in ort_state.get_all_opkernel_def():
        if kernel.domain in ("", "ai.onnx") and kernel.provider == "CPUExecutionProvider":
            kernels.setdefault(kernel.op_name, set()).add(kernel.version_range[0])
    for op in sorted(_emitted_ops()):
        schema = defs.get_schema(op, MAX_OPSET)
        if schema.has_function or schema.has_context_dependent_function:
            continue
        assert schema.since_version in kernels.get(op, set()), (op, schema.since_version)


@pytest.mark.parametrize("opset", [1, 11, 12, MAX_OPSET + 1])
def test_unsupported_opsets_are_refused(opset):
    with pytest.raises(ConvcError, match=f"opset {opset} is not supported"):
        compile_text(STACK, opset=opset)


def test_an_opset_too_new_for_the_target_is_refused():
    with pytest.raises(ConvcError, match="opset 23 is too new for target 'tensorrt'") as info:
        compile_text(STACK, target="tensorrt", opset=23)
    assert "reads opsets up to 22" in info.value.help


def test_unknown_target_and_io_layout_are_refused():
    with pytest.raises(ConvcError, match="unknown target 'onnxruntime'") as info:
        compile_text(STACK, target="onnxruntime")
    assert "portable, ort, onnx-reference" in info.value.help
    with pytest.raises(ConvcError, match="unknown input/output layout 'nchw'"):
        compile_text(STACK, io_layout="nchw")


def test_portable_is_the_default_target_with_opset_17():
    assert compile_text(STACK).opset_import[0].version == 17
    assert compile_text(STACK, target="ort").opset_import[0].version == MAX_OPSET


@pytest.mark.parametrize("opset", [13, 17, 21, MAX_OPSET])
def test_ir_version_is_the_oldest_the_opset_allows(opset):
    from onnx import helper

    proto = compile_text(STACK, opset=opset)
    assert proto.ir_version == helper.find_min_ir_version_for([helper.make_opsetid("", opset)])
    assert proto.opset_import[0].version == opset


@pytest.mark.parametrize(
    "text",
    [
        "Input(shape=(8, 8, 3))\nConv2D(4, 3, name='only')\n",
        "Input(shape=(6, 6, 6, 2))\nConv3DTranspose(2, 3, strides=2)\nUpSampling3D(1)\n",
        "Input(shape=(9, 2))\nCropping1D(1)\n",  # a graph of no weights
    ],
)
def test_models_are_written_one_tensor_at_a_time_and_parse_the_same(text, tmp_path):
    """save() writes each weight's bytes as a piece of their own (build memory), the tensor's
    other fields before them; the file parses to the same model as SerializeToString's, and
    onnxruntime loads it."""
    import onnxruntime as ort

    from convc.onnxfile import save, serialized_pieces

    proto = compile_text(text)
    proto.metadata_props.add(key="k", value="v")
    pieces = list(serialized_pieces(proto))
    assert len(pieces) == 1 + 2 * len(proto.graph.initializer)
    assert pieces[2::2] == [tensor.raw_data for tensor in proto.graph.initializer]
    parsed = onnx.ModelProto()
    parsed.ParseFromString(b"".join(pieces))
    assert parsed == proto
    (path,) = save(proto, tmp_path / "m.onnx")
    assert onnx.load(path) == proto
    ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _one_node_model(node, inputs, output_shape=(1, 4)):
    from onnx import TensorProto, helper

    values = [helper.make_tensor_value_info(n, t, [1, 4]) for n, t in inputs]
    output = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(output_shape))
    graph = helper.make_graph([node], "g", values, [output])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _refusals():
    from onnx import TensorProto, helper

    x, i = ("x", TensorProto.FLOAT), ("i", TensorProto.INT64)
    return [
        # the checker's alone: shape inference ignores an attribute the op does not have
        pytest.param(
            _one_node_model(helper.make_node("Relu", ["x"], ["y"], alpha=1.0), [x]),
            "Unrecognized attribute",
            id="checker-unknown-attribute",
        ),
        # type-checked inference's alone: the checker reads no types
        pytest.param(
            _one_node_model(helper.make_node("Add", ["x", "i"], ["y"]), [x, i]),
            "inconsistent type",
            id="inference-type-mismatch",
        ),
        # strict inference's alone: a lax one keeps the declared shape silently
        pytest.param(
            _one_node_model(helper.make_node("Relu", ["x"], ["y"]), [x], (1, 5)),
            "ShapeInferenceError",
            id="inference-shape-mismatch",
        ),
    ]


@pytest.mark.parametrize("proto, message", _refusals())
def test_the_check_of_a_built_model_is_the_checkers_full_check(proto, message):
    """``check_and_infer`` checks what ``check_model(full_check=True)`` does (it runs the two
    halves of that check itself, to infer the shapes once): each of these models is refused by
    one half only."""
    from convc.onnxfile import InvalidModel, check_and_infer

    refusals = (onnx.checker.ValidationError, onnx.shape_inference.InferenceError)
    with pytest.raises(refusals, match=message):
        onnx.checker.check_model(proto, full_check=True)
    with pytest.raises(InvalidModel, match=message):
        check_and_infer(proto)


def test_the_layout_of_an_output_is_found_past_layout_free_layers():
    """io_layout reorders a graph output by the data_format of the layer nearest it; between
    them may stand any number of layers that work in either layout (activations here)."""
    text = 'Input(shape=(3, 8, 8))\nConv2D(4, 3, data_format="channels_first")\n' + "ReLU()\n" * 5
    proto = compile_text(text, io_layout="channels_last")
    dims = [d.dim_value for d in proto.graph.output[0].type.tensor_type.shape.dim]
    assert dims[1:] == [6, 6, 4]
    inputs = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert inputs[1:] == [8, 8, 3]
