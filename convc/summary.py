"""A Keras-style ``model.summary()`` of a resolved model.

A Sequential model (a chain) gets Keras's three columns; a graph gets Keras's functional summary,
with the input layers as rows and a "Connected to" column naming each node's inputs as Keras
does (``conv2d[0][0]``: the layer, its application, its output).
"""

from __future__ import annotations

import itertools

from convc.diagnostics import is_printable, printable
from convc.model import Model, Shape, format_shape


def summary(model: Model) -> str:
    chain = model.is_chain
    header = ("Layer (type)", "Output Shape", "Param #") + (() if chain else ("Connected to",))
    rows = [header]
    if not chain:
        for model_input in model.inputs:
            rows.append(
                (f"{model_input.name} (InputLayer)", format_shape(model_input.shape), "0", "-")
            )
    applications: dict[int, int] = {}
    labels: dict[int, str] = {id(i): f"{i.name}[0][0]" for i in model.inputs}
    shapes: dict[Shape, str] = {}  # each distinct shape formatted once
    total = trainable = 0  # every layer's parameters, counted at its first node
    for node in model.nodes:
        layer = node.layer
        index = applications.get(id(layer), 0)
        applications[id(layer)] = index + 1
        if index > 0:
            params = "0 (shared)"
        elif not layer.variables:  # many have none (activations, pooling, merges)
            params = "0"
        else:
            count = layer.parameter_count
            total += count
            trainable += layer.trainable_parameter_count
            params = f"{count:,}"
        shape = node.output.shape
        if shape not in shapes:
            shapes[shape] = format_shape(shape)
        row: tuple[str, ...] = (f"{node.name} ({layer.class_name})", shapes[shape], params)
        if not chain:
            labels[id(node.output)] = f"{layer.name}[{index}][0]"
            row += (", ".join(labels[id(t)] for t in node.inputs),)
        rows.append(row)
    # names come from files: their cells are escaped (a test of all cells at once finds that
    # none need it, at C speed, where every name is plain)
    if not is_printable("".join(itertools.chain.from_iterable(rows))):
        rows = [tuple(printable(cell) for cell in row) for row in rows]
    widths = [max(map(len, column)) + 2 for column in zip(*rows, strict=True)]
    widths[0] = max(widths[0], 30)
    line = "=" * sum(widths)
    header_line, *row_lines = _lines(rows, widths)
    out = [f'Model: "{model.name}"', line, header_line, line, *row_lines]
    out.append(line)
    for model_input in model.inputs:
        out.append(
            f" Input: {model_input.name} {format_shape(model_input.shape)} {model_input.dtype}"
        )
    if not chain:
        out.append(" Outputs: " + ", ".join(t.name for t in model.outputs))
    out.append(f" Total params: {total:,} ({_size(total * 4)})")
    out.append(f" Trainable params: {trainable:,} ({_size(trainable * 4)})")
    out.append(f" Non-trainable params: {total - trainable:,} ({_size((total - trainable) * 4)})")
    return printable("\n".join(out))


def _lines(rows: list[tuple[str, ...]], widths: list[int]) -> list[str]:
    """Each row as a line: the name and the shape left-aligned in their columns, the parameter
    count right-aligned in its own, then what the node is connected to."""
    name, shape, params = widths[0], widths[1], widths[2] - 2
    lines = [" " + row[0].ljust(name) + row[1].ljust(shape) + row[2].rjust(params) for row in rows]
    if len(widths) > 3:
        lines = [line + "  " + row[3] for line, row in zip(lines, rows, strict=True)]
    return [line.rstrip() for line in lines]


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.2f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return f"{n:.2f} GB"
