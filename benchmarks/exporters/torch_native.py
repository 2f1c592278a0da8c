"""The torch-native peers' model: a Keras 3 model rewritten with torch.nn, as a PyTorch user
would write the same net, channels first (N, C, spatial...) in and out, Keras's weights copied in.

``native_module(model)`` takes a built Keras model (a Sequential stack or a functional graph)
and returns a ``torch.nn.Module``; ``export.py`` exports it with ``torch.onnx.export``. A graph
is replayed in the order Keras itself runs it (its nodes by decreasing depth, as
``keras.src.ops.function.Function._run_through_graph`` does), each Keras layer becoming one
``nn.Sequential`` of torch modules. A layer or argument with no rule here raises
NotImplementedError naming it, which export.py records as that peer's failure on that net.

Imported only inside the exporters' torch virtualenv.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional


class Pad(nn.Module):
    """Zero padding of the spatial axes: pads[i] = (before, after) of spatial axis i."""

    def __init__(self, pads: list[tuple[int, int]]):
        super().__init__()
        # functional.pad wants the last axis first.
        self.flat = [p for pair in reversed(pads) for p in pair]

    def forward(self, x):
        return functional.pad(x, self.flat)


class Crop(nn.Module):
    """Cropping of the spatial axes: crops[i] = (before, after) of spatial axis i."""

    def __init__(self, crops: list[tuple[int, int]]):
        super().__init__()
        self.crops = crops

    def forward(self, x):
        index = [slice(None), slice(None)]
        index += [slice(a, -b if b else None) for a, b in self.crops]
        return x[tuple(index)]


class Resize(nn.Module):
    """UpSampling by integer factors, nearest or (bi/tri)linear with half-pixel centres."""

    def __init__(self, scale: tuple[int, ...], mode: str):
        super().__init__()
        self.scale, self.mode = scale, mode

    def forward(self, x):
        align = False if self.mode in ("linear", "bilinear", "trilinear", "bicubic") else None
        return functional.interpolate(
            x, scale_factor=self.scale, mode=self.mode, align_corners=align
        )


class Merge(nn.Module):
    """A Keras merge layer over its list of inputs: elementwise, or concatenation on ``axis``."""

    def __init__(self, kind: str, axis: int = 1):
        super().__init__()
        self.kind, self.axis = kind, axis

    def forward(self, *inputs):
        if self.kind == "Concatenate":
            return torch.cat(inputs, dim=self.axis)
        if self.kind == "Subtract":
            return inputs[0] - inputs[1]
        result = inputs[0]
        for other in inputs[1:]:
            if self.kind in ("Add", "Average"):
                result = result + other
            elif self.kind == "Multiply":
                result = result * other
            elif self.kind == "Maximum":
                result = torch.maximum(result, other)
            else:  # Minimum
                result = torch.minimum(result, other)
        return result / len(inputs) if self.kind == "Average" else result


class Graph(nn.Module):
    """Runs steps in order: step i applies ``layers[i]`` to the values named by its inputs and
    stores its result under its output's name; the graph's input is value 0."""

    def __init__(self, steps: list[tuple[nn.Module, list[int], int]], output: int):
        super().__init__()
        self.layers = nn.ModuleList(module for module, _, _ in steps)
        self.wiring = [(inputs, result) for _, inputs, result in steps]
        self.output = output

    def forward(self, x):
        values = {0: x}
        for module, (inputs, result) in zip(self.layers, self.wiring, strict=True):
            values[result] = module(*(values[i] for i in inputs))
        return values[self.output]


MERGES = ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate")

# Keras activations by name, as torch modules on channels-first tensors (softmax's Keras
# default axis -1, the channels, is axis 1 here). None: the identity.
ACTIVATIONS = {
    None: None,
    "linear": None,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "softmax": lambda: nn.Softmax(dim=1),
    "elu": nn.ELU,
    "selu": nn.SELU,
    "softplus": nn.Softplus,
    "softsign": nn.Softsign,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "gelu": nn.GELU,
}


def export_module(module: nn.Module, example: torch.Tensor, out, variant: str, opset: int) -> float:
    """``torch.onnx.export`` of a module, as a PyTorch user calls it: the dynamo exporter or the
    TorchScript one (``variant``), fixed input and output names, weights embedded. Returns the
    export call's seconds. Shared by export.py (the .conv nets' twins) and
    applications_export.py (torchvision's)."""
    import time

    start = time.perf_counter()
    with torch.no_grad():
        program = torch.onnx.export(
            module,
            (example,),
            str(out) if variant == "torchscript" else None,
            dynamo=variant == "dynamo",
            opset_version=opset,
            input_names=["input"],
            output_names=["output"],
            external_data=False,
        )
    if variant == "dynamo":
        program.save(str(out), external_data=False)
    return round(time.perf_counter() - start, 3)


def native_module(model) -> nn.Module:
    """The Keras model as torch.nn modules, channels first, Keras's weights copied in."""
    steps, output = graph_steps(model)
    chain = all(ins == [i] and out == i + 1 for i, (_, ins, out) in enumerate(steps))
    if chain:
        return nn.Sequential(*(module for module, _, _ in steps))
    return Graph(steps, output)


def graph_steps(model) -> tuple[list[tuple[nn.Module, list[int], int]], int]:
    """The model's layer calls in Keras's own execution order, each converted: (module, the
    numbers of its input values, the number of its output value), and the output's number."""
    import keras

    graph = model._functional if isinstance(model, keras.Sequential) else model
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise NotImplementedError("torch-native covers one-input, one-output nets only")
    numbers = {id(graph.inputs[0]): 0}
    steps = []
    for depth in sorted(graph._nodes_by_depth, reverse=True):
        for node in graph._nodes_by_depth[depth]:
            if node.is_input:
                continue
            if len(node.outputs) != 1:
                raise NotImplementedError(f"{type(node.operation).__name__} with several outputs")
            inputs = [numbers[id(tensor)] for tensor in node.input_tensors]
            in_shape = tuple(node.input_tensors[0].shape)
            parts = convert(node.operation, in_shape)
            module = parts[0] if len(parts) == 1 else nn.Sequential(*parts)
            numbers[id(node.outputs[0])] = len(numbers)
            steps.append((module, inputs, numbers[id(node.outputs[0])]))
    return steps, numbers[id(graph.outputs[0])]


def convert(layer, in_shape: tuple) -> list[nn.Module]:
    """One Keras layer as torch modules (an empty list: the identity)."""
    config = layer.get_config()
    if config.get("data_format", "channels_last") != "channels_last":
        raise NotImplementedError("torch-native covers channels_last nets only")
    kind = type(layer).__name__
    weights = {v.path.split("/")[-1]: np.asarray(v.numpy()) for v in layer.weights}
    if kind in ("Conv1D", "Conv2D", "Conv3D"):
        if config["groups"] != 1:
            raise NotImplementedError(f"{kind} with groups={config['groups']}")
        found = conv_layers(config, in_shape, weights["kernel"], weights.get("bias"))
    elif kind in ("DepthwiseConv1D", "DepthwiseConv2D"):
        found = depthwise_layers(config, in_shape, weights)
    elif kind in ("SeparableConv1D", "SeparableConv2D"):
        found = separable_layers(config, in_shape, weights)
    elif kind in ("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose"):
        found = transposed_conv_layers(config, weights)
    elif kind in ("UpSampling1D", "UpSampling2D", "UpSampling3D"):
        return upsampling_layers(config)
    elif kind in ("ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D"):
        return [Pad(normalise_pairs(config["padding"], len(in_shape) - 2))]
    elif kind in ("Cropping1D", "Cropping2D", "Cropping3D"):
        return [Crop(normalise_pairs(config["cropping"], len(in_shape) - 2))]
    elif kind in MERGES:
        return [merge_layer(kind, config, len(in_shape))]
    elif kind == "Activation":
        found = []
    else:
        raise NotImplementedError(f"torch-native has no rule for {kind}")
    return found + activation_layers(config.get("activation"))


def activation_layers(activation) -> list[nn.Module]:
    """A Keras activation (a layer's ``activation`` argument) as a torch module, if any."""
    if isinstance(activation, dict):  # a serialised function: keras.activations.relu, ...
        activation = activation.get("config", activation.get("class_name"))
    if activation not in ACTIVATIONS:
        raise NotImplementedError(f"torch-native has no rule for activation {activation!r}")
    factory = ACTIVATIONS[activation]
    return [] if factory is None else [factory()]


def merge_layer(kind: str, config: dict, rank: int) -> Merge:
    """A merge layer; Concatenate's Keras axis moved to where it lies channels first."""
    if kind != "Concatenate":
        return Merge(kind)
    axis = config["axis"] % rank
    return Merge(kind, axis=0 if axis == 0 else 1 if axis == rank - 1 else axis + 1)


def tensor(array) -> torch.Tensor:
    """A numpy array as a float32 torch tensor of its own (contiguous: transposed kernels)."""
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def same_pads(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """Keras's "same" padding of one axis: the odd pixel goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def conv_layers(config, in_shape, kernel, bias, groups=1) -> list[nn.Module]:
    """Padding, then nn.ConvNd: kernel in Keras's (k..., in/groups, out) layout."""
    rank = kernel.ndim - 2
    k, s, d = config["kernel_size"], config["strides"], config["dilation_rate"]
    spatial = in_shape[1:-1]
    if config["padding"] == "valid":
        pads = [(0, 0)] * rank
    elif config["padding"] == "causal":
        pads = [((k[0] - 1) * d[0], 0)]
    else:
        pads = [same_pads(spatial[i], k[i], s[i], d[i]) for i in range(rank)]
    conv = getattr(nn, f"Conv{rank}d")(
        kernel.shape[-2] * groups,
        kernel.shape[-1],
        k,
        stride=s,
        dilation=d,
        groups=groups,
        bias=bias is not None,
    )
    conv.weight.data = tensor(kernel.transpose(rank + 1, rank, *range(rank)))
    if bias is not None:
        conv.bias.data = tensor(bias)
    if all(a == b for a, b in pads):
        conv.padding = tuple(a for a, _ in pads)
        return [conv]
    return [Pad(pads), conv]


def grouped_depthwise(kernel):
    """A Keras depthwise kernel (k..., in, multiplier) as a grouped conv's (k..., 1, in * mult)."""
    cin, mult = kernel.shape[-2:]
    return kernel.reshape(*kernel.shape[:-2], 1, cin * mult), cin


def depthwise_layers(config, in_shape, weights) -> list[nn.Module]:
    """A depthwise conv as a grouped conv, one group per input channel."""
    kernel, groups = grouped_depthwise(weights.get("depthwise_kernel", weights.get("kernel")))
    return conv_layers(config, in_shape, kernel, weights.get("bias"), groups=groups)


def separable_layers(config, in_shape, weights) -> list[nn.Module]:
    """The depthwise conv (no bias), then the pointwise 1x1 conv with the bias."""
    kernel, groups = grouped_depthwise(weights["depthwise_kernel"])
    found = conv_layers(config, in_shape, kernel, None, groups=groups)
    pointwise = weights["pointwise_kernel"]
    ones = {**config, "kernel_size": (1,) * (pointwise.ndim - 2), "padding": "valid"}
    ones.update(strides=ones["kernel_size"], dilation_rate=ones["kernel_size"])
    return found + conv_layers(ones, in_shape, pointwise, weights.get("bias"))


def transposed_conv_layers(config, weights) -> list[nn.Module]:
    """nn.ConvTransposeNd, then the crop that leaves Keras's "same" output."""
    kernel = weights["kernel"]  # (k..., out, in)
    rank = kernel.ndim - 2
    k, s = config["kernel_size"], config["strides"]
    if config["padding"] != "same" or any(a < b for a, b in zip(k, s, strict=True)):
        raise NotImplementedError("ConvTranspose other than same padding, kernel >= stride")
    if any(d != 1 for d in config["dilation_rate"]) or config.get("output_padding"):
        raise NotImplementedError("ConvTranspose with dilation or output_padding")
    conv = getattr(nn, f"ConvTranspose{rank}d")(
        kernel.shape[-1], kernel.shape[-2], k, stride=s, bias="bias" in weights
    )
    conv.weight.data = tensor(kernel.transpose(rank + 1, rank, *range(rank)))
    if "bias" in weights:
        conv.bias.data = tensor(weights["bias"])
    # The full transposed conv is (n - 1) * s + k long; Keras keeps n * s of it, from the
    # "same" pad-before of the forward convolution on.
    crops = []
    for i in range(rank):
        before = max(k[i] - s[i], 0) // 2
        crops.append((before, k[i] - s[i] - before))
    return [conv, Crop(crops)]


def upsampling_layers(config) -> list[nn.Module]:
    """UpSampling as a resize by its factors; factors of 1 are the identity."""
    size = config["size"]
    size = (size,) if isinstance(size, int) else tuple(size)
    if all(v == 1 for v in size):
        return []
    mode = config.get("interpolation", "nearest")
    if mode == "bilinear":
        mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(size)]
    return [Resize(size, mode)]


def normalise_pairs(value, rank: int) -> list[tuple[int, int]]:
    """A padding or cropping argument as one (before, after) pair per spatial axis."""
    if isinstance(value, int):
        return [(value, value)] * rank
    value = list(value)
    if rank == 1 and len(value) == 2 and all(isinstance(v, int) for v in value):
        return [tuple(value)]
    return [(v, v) if isinstance(v, int) else tuple(v) for v in value]
