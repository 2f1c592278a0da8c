"""Bad input gives one located, precise error: the line, the column and the words are asserted.

The table covers syntax (parser states mapped to words), the statement structure of a model,
argument binding and normalization, and shape checks. The command line renders them as
``FILE:LINE:COL: error: ...`` with the source line and carets, exits 1, prints no traceback and
writes nothing.
"""

from __future__ import annotations

import pytest

from convc.cli import main
from convc.compiler import compile_text
from convc.diagnostics import ConvcError, errors_of

I2 = "Input(shape=(8, 8, 3))\n"

BAD = [
    # syntax
    ("missing-comma", "Input(shape=(8, 8, 3))\nConv2D(8 3)\n", 2, 10, "expected ',' or ')'"),
    (
        "unclosed-paren-next-line",
        "Input(shape=(8, 8, 3))\nConv2D(8, 3\nConv2D(4, 3)\n",
        3,
        1,
        "expected ',' or ')'",
    ),
    ("unclosed-paren-eof", "Input(shape=(8, 8, 3))\nConv2D(8, 3", 2, 7, "'(' is never closed"),
    ("double-comma", I2 + "Conv2D(8,, 3)\n", 2, 10, "expected a value"),
    ("extra-paren", I2 + "Conv2D(8, 3))\n", 2, 13, "unmatched ')'"),
    (
        "two-statements-one-line",
        I2 + "Conv2D(8, 3) Conv2D(4, 3)\n",
        2,
        14,
        "expected the end of the statement",
    ),
    ("name-without-call", I2 + "Conv2D\n", 2, 7, "expected '(' after the layer name"),
    ("unterminated-string", I2 + 'Conv2D(8, 3, padding="same)\n', 2, 22, "unterminated string"),
    (
        "positional-after-keyword",
        I2 + "Conv2D(filters=8, 3)\n",
        2,
        19,
        "positional argument cannot follow",
    ),
    ("keyword-twice", I2 + "Conv2D(8, 3, strides=1, strides=2)\n", 2, 25, "given twice"),
    ("bad-character", I2 + "Conv2D(8, 3, padding=@)\n", 2, 22, "unexpected character '@'"),
    ("missing-value", I2 + "Conv2D(8, 3, padding=)\n", 2, 22, "expected a value"),
    ("mismatched-bracket", I2 + "Conv2D(8, [3, 3))\n", 2, 16, "unmatched ')'; expected ']'"),
    ("statement-is-number", I2 + "3\n", 2, 1, "expected a layer call"),
    ("deep-nesting", I2 + "Conv2D(8, " + "(" * 40 + "\n", 2, 42, "nest more than"),
    # structure
    ("no-input", "Conv2D(8, 3)\n", 1, 1, "input shape is not declared"),
    ("input-twice", I2 + I2 + "Conv2D(8, 3)\n", 2, 1, "must be the first statement"),
    (
        "input-after-layer",
        "Conv2D(8, 3, input_shape=(8, 8, 3))\nInput(shape=(8, 8, 3))\n",
        2,
        1,
        "must be the first",
    ),
    ("no-layers", I2, None, None, "the model has no layers"),
    ("input-without-shape", "Input()\nConv2D(8, 3)\n", 1, 1, "needs a shape"),
    ("input-none-dim", "Input(shape=(None, 8, 3))\nConv2D(8, 3)\n", 1, 14, "unknown dimension"),
    ("input-zero-dim", "Input(shape=(0, 8, 3))\nConv2D(8, 3)\n", 1, 14, "positive integer"),
    (
        "input-bad-batch",
        "Input(shape=(8, 8, 3), batch_size=0)\nConv2D(8, 3)\n",
        1,
        35,
        "'batch_size' must be",
    ),
    (
        "input-bad-dtype",
        'Input(shape=(8, 8, 3), dtype="int7")\nConv2D(8, 3)\n',
        1,
        30,
        "unsupported input dtype",
    ),
    ("input-sparse", "Input(shape=(8, 8, 3), sparse=True)\nConv2D(8, 3)\n", 1, 31, "sparse=True"),
    ("unknown-layer", I2 + "Conv2d(8, 3)\n", 2, 1, "unknown layer 'Conv2d'"),
    ("unsupported-keras-layer", I2 + "Dense(8)\n", 2, 1, "does not support"),
    ("not-a-layers-module", I2 + "keras.ops.Conv2D(8, 3)\n", 2, 1, "does not name a Keras layer"),
    (
        "duplicate-name",
        I2 + "Conv2D(8, 3, name='a')\nConv2D(8, 3, name='a')\n",
        3,
        19,
        "already used",
    ),
    (
        "auto-name-collides",
        I2 + "Conv2D(8, 3, name='conv2d')\nConv2D(8, 3)\n",
        3,
        1,
        "already used",
    ),
    ("unknown-directive", "modle x\n" + I2 + "Conv2D(8, 3)\n", 1, 1, "unknown directive 'modle'"),
    (
        "bad-data-format-directive",
        "data_format NHWC\n" + I2 + "Conv2D(8, 3)\n",
        1,
        13,
        "data_format must be",
    ),
    ("model-named-twice", "model a\nmodel b\n" + I2 + "Conv2D(8, 3)\n", 2, 1, "named twice"),
    ("layer-dtype", I2 + "Conv2D(8, 3, dtype='float16')\n", 2, 20, "compute in float32"),
    # arguments
    (
        "unknown-keyword-suggestion",
        I2 + "Conv2D(8, 3, stride=2)\n",
        2,
        14,
        "has no argument 'stride'",
    ),
    ("too-many-positional", I2 + "ZeroPadding2D(1, None, 3)\n", 2, 24, "at most 2 positional"),
    ("missing-required", I2 + "Conv2D()\n", 2, 1, "missing its required argument 'filters'"),
    ("string-filters", I2 + "Conv2D('8', 3)\n", 2, 8, "'filters' must be an integer"),
    ("float-kernel", I2 + "Conv2D(8, 2.5)\n", 2, 11, "'kernel_size' must be"),
    ("bool-use_bias", I2 + "Conv2D(8, 3, use_bias='yes')\n", 2, 23, "True or False"),
    ("call-as-literal", I2 + "Conv2D(8, foo(3))\n", 2, 11, "expected a literal value"),
    ("padding-typo", I2 + "Conv2D(8, 3, padding='smae')\n", 2, 22, "did you mean 'same'"),
    (
        "strides-dilation",
        I2 + "Conv2D(8, 3, strides=2, dilation_rate=2)\n",
        2,
        22,
        "cannot be combined",
    ),
    # shapes
    ("kernel-too-large", "Input(shape=(4, 4, 3))\nConv2D(8, 5)\n", 2, 11, "output of length 0"),
    ("crop-too-large", "Input(shape=(4, 4, 3))\nCropping2D(2)\n", 2, 12, "leaving nothing"),
    ("rank-mismatch", I2 + "Conv1D(8, 3)\n", 2, 1, "expects a 3-D input"),
    (
        "shape-error-later-layer",
        I2 + "Conv2D(8, 3)\nConv2D(8, 3)\nConv2D(8, 3)\nConv2D(8, 3)\n",
        5,
        11,
        "output of length 0",
    ),
]


@pytest.mark.parametrize(
    ("text", "line", "column", "fragment"), [pytest.param(*row[1:], id=row[0]) for row in BAD]
)
def test_error_is_located(text, line, column, fragment):
    with pytest.raises(ConvcError) as caught:
        compile_text(text)
    error = errors_of(caught.value)[0]
    assert fragment in error.message + " " + (error.help or ""), error.message
    if line is None:
        assert error.span is None
    else:
        assert (error.span.line, error.span.column) == (line, column)


def test_several_errors_are_reported_together():
    text = (
        I2
        + "Conv2D(0, 3)\nConv2D(8, 3, padding='bad')\nConv2D(8, 3, activation='nope')\nConv2D(8, 3)\n"
    )
    with pytest.raises(ConvcError) as caught:
        compile_text(text)
    lines = [e.span.line for e in errors_of(caught.value)]
    assert lines == [2, 3, 4]


def test_command_line_renders_the_error_and_writes_nothing(tmp_path, capsys):
    source = tmp_path / "net.conv"
    source.write_text("Input(shape=(8, 8, 3))\nConv2D(8, 3, strides=2, dilation_rate=2)\n")
    output = tmp_path / "net.onnx"
    output.write_bytes(b"previous build")
    assert main(["build", str(source), "-o", str(output)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        f"{source}:2:22: error: strides=(2, 2) cannot be combined with dilation_rate=(2, 2)"
    )
    assert "  2 | Conv2D(8, 3, strides=2, dilation_rate=2)" in err
    assert "^" in err and "Traceback" not in err
    assert output.read_bytes() == b"previous build"
    assert [p.name for p in tmp_path.iterdir()] == sorted(["net.conv", "net.onnx"]) or set(
        p.name for p in tmp_path.iterdir()
    ) == {"net.conv", "net.onnx"}


def test_command_line_missing_file(tmp_path, capsys):
    assert main(["build", str(tmp_path / "absent.conv")]) == 1
    assert "absent.conv: error: no such file" in capsys.readouterr().err


def test_command_line_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["build"])
    assert exit_.value.code == 2


def test_internal_error_is_reported_without_traceback(tmp_path, capsys, monkeypatch):
    source = tmp_path / "net.conv"
    source.write_text(I2 + "Conv2D(8, 3)\n")

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("convc.compiler.lower", broken)
    assert main(["build", str(source)]) == 3
    err = capsys.readouterr().err
    assert "internal error" in err and "Traceback" not in err and "report" in err
    assert not (tmp_path / "net.onnx").exists()
