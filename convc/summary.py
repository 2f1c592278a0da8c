"""A Keras-style ``model.summary()`` of a resolved model.

A Sequential model (a chain) gets Keras's three columns; a graph gets Keras's functional summary,
with the input layers as rows and a "Connected to" column naming each node's inputs as Keras
does (``conv2d[0][0]``: the layer, its application, its output).
"""

from __future__ import annotations

from convc.diagnostics import printable
from convc.model import Model, format_shape


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
    for node in model.nodes:
        index = applications.get(id(node.layer), 0)
        applications[id(node.layer)] = index + 1
        labels[id(node.output)] = f"{node.layer.name}[{index}][0]"
        params = f"{node.layer.parameter_count:,}" if index == 0 else "0 (shared)"
        row: tuple[str, ...] = (
            f"{node.name} ({node.class_name})",
            format_shape(node.output_shape),
            params,
        )
        if not chain:
            row += (", ".join(labels[id(t)] for t in node.inputs),)
        rows.append(row)
    rows = [tuple(printable(cell) for cell in row) for row in rows]  # names come from files
    widths = [max(len(row[i]) for row in rows) + 2 for i in range(len(header))]
    widths[0] = max(widths[0], 30)
    line = "=" * sum(widths)
    out = [f'Model: "{model.name}"', line, _row(rows[0], widths), line]
    out += [_row(row, widths) for row in rows[1:]]
    out.append(line)
    total = model.parameter_count
    for model_input in model.inputs:
        out.append(
            f" Input: {model_input.name} {format_shape(model_input.shape)} {model_input.dtype}"
        )
    if not chain:
        out.append(" Outputs: " + ", ".join(t.name for t in model.outputs))
    out.append(f" Total params: {total:,} ({_size(total * 4)})")
    trainable = sum(layer.trainable_parameter_count for layer in model.layers)
    out.append(f" Trainable params: {trainable:,} ({_size(trainable * 4)})")
    out.append(f" Non-trainable params: {total - trainable:,} ({_size((total - trainable) * 4)})")
    return printable("\n".join(out))


def _row(row: tuple[str, ...], widths: list[int]) -> str:
    text = " " + row[0].ljust(widths[0]) + row[1].ljust(widths[1]) + row[2].rjust(widths[2] - 2)
    if len(row) > 3:
        text += "  " + row[3]
    return text.rstrip()


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.2f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return f"{n:.2f} GB"
