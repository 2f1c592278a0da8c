"""Which layers of an int8 model stay float32, and why, is said: the ``convc.int8`` metadata
records each layer with nodes kept float32 and the codes of why (``float32_layers``),
``convc build --precision int8`` prints one line after the ``wrote`` line, and ``convc check
--precision int8`` shows the same line in its report; nothing is said when no layer stays
float32. Layer names come from files: the line escapes them."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import onnx
import pytest
from test_int8_placement import INT8, VOLUME

import convc
from convc import golden
from convc.cli import main
from convc.compiler import quantize, resolve_text
from convc.int8_check import Int8CheckReport
from convc.quantize import (
    FLOAT32_LINE_NAME_WIDTH,
    FLOAT32_LINE_NAMES,
    FLOAT32_REASONS,
    INT8_KEY,
    float32_layers,
    float32_line,
    model_int8_settings,
)

INT8_FLAGS = ["--precision", "int8", "--calibration", "random", "--calibration-count", "4"]

VOLUME_REASONS = {"stem": ["conv3d"], "up": ["short_concat"], "head": ["conv3d", "softmax"]}
VOLUME_LINE = (
    "kept float32 (3 layers): stem, head (3-D convolution slower in int8); head (softmax "
    "slower in int8); up (interleave slower in int8)"
)

PLANE = """\
Input(shape=(8, 8, 3), batch_size=1, name="image")
Conv2D(8, 3, padding="same", activation="relu", name="stem")
Conv2D(8, 3, padding="same", activation="relu", name="body")
Conv2D(4, 1, name="head")
"""
"""A Conv2D net without a softmax: every layer int8."""

HOSTILE_NAME = "a\x1b[31mred\u202e"


def _int8(source: str, **options) -> onnx.ModelProto:
    return convc.build(resolve_text(source), options=INT8.replace(**options))


def _recorded(proto: onnx.ModelProto) -> dict[str, list[str]]:
    return model_int8_settings(proto)["float32_layers"]


def _node_layers(names) -> set[str]:
    return {name.rpartition("/")[0] or name for name in names}


# -- the metadata -------------------------------------------------------------------------------


def test_the_metadata_names_the_layers_kept_float32_and_why():
    model = resolve_text(VOLUME)
    proto, plan, _ = quantize(convc.build(model), model, INT8)
    assert _recorded(proto) == VOLUME_REASONS
    # the layers named are those whose nodes were excluded from quantization, no more, no less
    assert _node_layers(plan.float_nodes) == set(VOLUME_REASONS)
    assert set(FLOAT32_REASONS) >= {code for codes in VOLUME_REASONS.values() for code in codes}
    # read back in the model's order
    assert list(float32_layers(proto)) == ["stem", "up", "head"]


def test_layers_asked_for_are_named_with_their_reason():
    assert _recorded(_int8(PLANE, keep_float=("first", "head"))) == {
        "stem": ["keep_float"],
        "head": ["keep_float"],
    }
    assert _recorded(_int8(VOLUME, keep_float=("body", "last"))) == {
        **VOLUME_REASONS,
        "body": ["keep_float"],
        "head": ["conv3d", "keep_float", "softmax"],
    }


def test_a_conv2d_net_without_a_softmax_keeps_no_layer_float32():
    proto = _int8(PLANE)
    assert _recorded(proto) == {}
    assert float32_layers(proto) == {}
    assert float32_line(float32_layers(proto)) is None


def test_the_metadata_is_deterministic_and_old_goldens_still_verify(tmp_path):
    """Two recordings give the same bytes. A golden recorded before the metadata named the
    float32 layers (its model lacks ``float32_layers``) still verifies, strictly: verify
    compares the recompiled model's graph and weights, not the model's metadata."""
    source = tmp_path / "volume.conv"
    source.write_text(VOLUME)
    first, second = tmp_path / "first", tmp_path / "second"
    golden.record(source, first, options=INT8)
    golden.record(source, second, options=INT8)
    model_bytes = (first / "model.onnx").read_bytes()
    assert model_bytes == (second / "model.onnx").read_bytes()
    assert _recorded(onnx.load_from_string(model_bytes)) == VOLUME_REASONS

    old = onnx.load_from_string(model_bytes)
    entry = next(e for e in old.metadata_props if e.key == INT8_KEY)
    settings = json.loads(entry.value)
    del settings["float32_layers"]
    entry.value = json.dumps(settings, sort_keys=True)
    old_bytes = old.SerializeToString()
    (first / "model.onnx").write_bytes(old_bytes)
    manifest = json.loads((first / "manifest.json").read_text())
    manifest["model_sha256"] = hashlib.sha256(old_bytes).hexdigest()
    (first / "manifest.json").write_text(json.dumps(manifest))
    assert float32_layers(old) == {}
    verification = golden.verify(first)
    assert verification.passes(strict=True), verification.render()
    assert "unchanged" in verification.render()


# -- the line -----------------------------------------------------------------------------------


def test_build_prints_the_float32_layers_after_the_wrote_line(tmp_path, capsys):
    for name, source in (("volume", VOLUME), ("plane", PLANE)):
        (tmp_path / f"{name}.conv").write_text(source)
        output = tmp_path / f"{name}.onnx"
        assert main(["build", str(tmp_path / f"{name}.conv"), "-o", str(output), *INT8_FLAGS]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].startswith(f"wrote {output}:"), lines
        if name == "volume":
            assert lines[1:] == [f"  {VOLUME_LINE}"], lines
        else:
            assert lines[1:] == [], lines
    # a float32 build says nothing of the kind
    assert main(["build", str(tmp_path / "volume.conv"), "-o", str(tmp_path / "f.onnx")]) == 0
    assert "float32 (" not in capsys.readouterr().out


def test_check_reports_the_float32_layers(tmp_path, capsys):
    source = tmp_path / "volume.conv"
    source.write_text(VOLUME)
    assert main(["check", str(source), *INT8_FLAGS]) == 0
    out = capsys.readouterr().out
    assert VOLUME_LINE in out.splitlines(), out
    # the same line comes from the API's report, and none where every layer is int8
    model = resolve_text(PLANE)
    x = np.random.default_rng(0).standard_normal((1, 8, 8, 3)).astype(np.float32)
    report = convc.check(model, inputs={"image": x}, options=INT8)
    assert isinstance(report, Int8CheckReport) and report.ok, report.render()
    assert report.float32_layers == ()
    assert "kept float32" not in report.render()


def test_a_layer_name_with_control_characters_is_escaped(tmp_path, capsys):
    source = VOLUME.replace(
        'name="stem"', f'name="{HOSTILE_NAME.encode("unicode_escape").decode()}"'
    )
    model = resolve_text(source)
    proto = convc.build(model, options=INT8)
    assert HOSTILE_NAME in _recorded(proto)  # the metadata keeps the name (JSON escapes it)
    line = float32_line(float32_layers(proto))
    assert line is not None
    assert "\x1b" not in line and "\u202e" not in line, line
    assert "a\\x1b[31mred\\u202e, head (3-D convolution slower in int8)" in line, line

    report = convc.check(model, options=INT8)
    assert isinstance(report, Int8CheckReport)
    kept = next(line for line in report.render().splitlines() if line.startswith("kept float32"))
    assert kept == line

    (tmp_path / "net.conv").write_text(source)
    assert main(["build", str(tmp_path / "net.conv"), *INT8_FLAGS]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "a\\x1b[31mred\\u202e, head (3-D" in out


@pytest.mark.parametrize(
    ("layers", "expected"),
    [
        ({}, None),
        ({"conv": ("keep_float",)}, "kept float32 (1 layer): conv (asked by --keep-float)"),
        (
            {f"c{i}": ("conv3d",) for i in range(FLOAT32_LINE_NAMES + 3)}
            | {"dense": ("keep_float",)},
            "kept float32 (8 layers): dense (asked by --keep-float); c0, c1, c2, c3 and 3 more "
            "(3-D convolution slower in int8)",
        ),
        (
            {"x" * 100: ("softmax",)},
            f"kept float32 (1 layer): {'x' * (FLOAT32_LINE_NAME_WIDTH - 3)}... (softmax slower "
            "in int8)",
        ),
        ({"n": ("later\x07",)}, "kept float32 (1 layer): n (later\\x07)"),
    ],
    ids=["none", "one-asked", "many-abbreviated", "long-name-cut", "unknown-code-escaped"],
)
def test_the_line_groups_by_reason_and_abbreviates(layers, expected):
    assert float32_line(layers) == expected
