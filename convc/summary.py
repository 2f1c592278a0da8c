"""A Keras-style ``model.summary()`` of a resolved model."""

from __future__ import annotations

from convc.model import Model, format_shape


def summary(model: Model) -> str:
    rows = [("Layer (type)", "Output Shape", "Param #")]
    for layer in model.layers:
        rows.append(
            (
                f"{layer.name} ({layer.class_name})",
                format_shape(layer.output_shape),
                f"{layer.parameter_count:,}",
            )
        )
    widths = [max(len(row[i]) for row in rows) + 2 for i in range(3)]
    widths[0] = max(widths[0], 30)
    line = "-" * sum(widths)
    out = [f'Model: "{model.name}"', line.replace("-", "=")]
    out.append(_row(rows[0], widths))
    out.append(line.replace("-", "="))
    for row in rows[1:]:
        out.append(_row(row, widths))
    out.append(line.replace("-", "="))
    total = model.parameter_count
    out.append(f" Input: {model.input.name} {format_shape(model.input.shape)} {model.input.dtype}")
    out.append(f" Total params: {total:,} ({_size(total * 4)})")
    trainable = sum(layer.trainable_parameter_count for layer in model.layers)
    out.append(f" Trainable params: {trainable:,} ({_size(trainable * 4)})")
    out.append(f" Non-trainable params: {total - trainable:,} ({_size((total - trainable) * 4)})")
    return "\n".join(out)


def _row(row: tuple[str, str, str], widths: list[int]) -> str:
    return " " + row[0].ljust(widths[0]) + row[1].ljust(widths[1]) + row[2].rjust(widths[2] - 2)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.2f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return f"{n:.2f} GB"
