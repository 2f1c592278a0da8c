"""Hostile and careless input: clean errors, no traceback, no partial files, no resource blow-ups.

* Resource limits (convc.limits): huge files, deep nesting, huge integers, too many layers,
  weights that would need terabytes.
* A property-based fuzz test (4,000 examples): random mutations of the samples (deleted or duplicated characters,
  swapped tokens, odd values in number slots) give either a model or a ConvcError, never another
  exception.
* Writing: atomic (a failed write leaves nothing and keeps the old file); models beyond the
  protobuf limit get an external data file that onnxruntime loads.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import convc.onnxfile as onnxfile
from convc.cli import main
from convc.compiler import compile_text, resolve_text, save
from convc.diagnostics import ConvcError, errors_of
from convc.limits import MAX_INT, MAX_NESTING
from convc.runtime import open_session

SAMPLES = [p.read_text() for p in sorted((Path(__file__).parent.parent / "samples").glob("*.conv"))]
HUGE = "1" + "0" * 30
HEAD = "Input(shape=(8, 8, 3))\n"

HOSTILE = [
    ("deep-nesting", HEAD + "Conv2D(" + "(" * 10_000 + ")" * 10_000 + ")\n", "nest more than"),
    ("huge-filters", HEAD + f"Conv2D({HUGE}, 3)\n", "'filters' is too large"),
    ("huge-kernel", HEAD + f"Conv2D(8, ({HUGE}, 3))\n", "'kernel_size' is too large"),
    (
        "huge-input-dim",
        f"Input(shape=({HUGE}, 8, 3))\nConv2D(8, 3)\n",
        "must be a positive integer",
    ),
    (
        "huge-batch",
        f"Input(shape=(8, 8, 3), batch_size={HUGE})\nConv2D(8, 3)\n",
        "'batch_size' must be",
    ),
    ("huge-padding", HEAD + f"ZeroPadding2D(((0, 1), ({HUGE}, 1)))\n", "is too large"),
    ("huge-crop", HEAD + f"Cropping2D({HUGE})\n", "'cropping' is too large"),
    (
        "huge-upsampling-output",
        HEAD + "UpSampling2D((2147483647, 1))\n",
        "would have 17,179,869,176 entries",
    ),
    (
        "terabyte-kernel",
        HEAD + "Conv2D(1000000, 3, padding='same')\nConv2D(1000000, 1000, padding='same')\n",
        "convc builds models with at most 16.0 GiB of weights",
    ),
    ("infinite-float", HEAD + "Conv2D(8, 3, lora_rank=2, lora_alpha=1e999)\n", "lora_alpha"),
]


@pytest.mark.parametrize(
    ("text", "fragment"), [pytest.param(*row[1:], id=row[0]) for row in HOSTILE]
)
def test_hostile_input_is_refused(text, fragment):
    with pytest.raises(ConvcError) as caught:
        compile_text(text)
    messages = [e.message + " " + (e.help or "") for e in errors_of(caught.value)]
    assert any(fragment in m for m in messages), messages


def test_nesting_error_is_at_the_first_bracket_too_deep():
    with pytest.raises(ConvcError) as caught:
        compile_text(HEAD + "Conv2D(" + "(" * 10_000 + ")" * 10_000 + ")\n")
    assert caught.value.span.column == len("Conv2D(") + MAX_NESTING


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        pytest.param(os.urandom(5 << 20), "convc reads at most 1,048,576", id="5MB-junk"),
        pytest.param(b"\xff\xfe junk", "not UTF-8", id="binary"),
        pytest.param(
            (HEAD + "Cropping2D(0)\n" * 100_000).encode(), "convc reads at most", id="100k-layers"
        ),
    ],
)
def test_hostile_files(tmp_path, capsys, content, fragment):
    source = tmp_path / "net.conv"
    source.write_bytes(content)
    assert main(["build", str(source)]) == 1
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err
    assert not (tmp_path / "net.onnx").exists()


def test_more_than_max_layers_within_the_size_limit(monkeypatch):
    monkeypatch.setattr("convc.resolve.MAX_LAYERS", 50)
    with pytest.raises(ConvcError, match="more than 50 layers"):
        resolve_text(HEAD + "Cropping2D(0)\n" * 51)


def test_limits_are_what_the_readme_says():
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert f"{MAX_INT:,}" in readme and f"{MAX_NESTING}" in readme


# ---------------------------------------------------------------------------------------------
# Fuzzing

_TOKEN = re.compile(r"\w+|[^\w\s]")
_ODD_VALUES = ["0", "-1", "1", "2", "7", HUGE, "2147483648", "99999", "2.5", "1e999", "True",
               "None", "(1,)", "()", "'x'", "[3, 3]", "((1, 2), 3)", "(-1, 2)"]  # fmt: skip


@st.composite
def mutated_sample(draw) -> str:
    text = draw(st.sampled_from(SAMPLES))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["delete", "duplicate", "swap", "number"]))
        if kind in ("delete", "duplicate") and text:
            k = draw(st.integers(0, len(text) - 1))
            text = text[:k] + text[k + 1 :] if kind == "delete" else text[:k] + text[k] + text[k:]
        elif kind == "swap":
            tokens = list(_TOKEN.finditer(text))
            i, j = sorted(
                draw(st.lists(st.integers(0, len(tokens) - 1), min_size=2, max_size=2, unique=True))
            )
            a, b = tokens[i], tokens[j]
            text = (
                text[: a.start()]
                + b.group()
                + text[a.end() : b.start()]
                + a.group()
                + text[b.end() :]
            )
        else:
            numbers = list(re.finditer(r"\b\d+\b", text))
            if numbers:
                m = numbers[draw(st.integers(0, len(numbers) - 1))]
                text = text[: m.start()] + draw(st.sampled_from(_ODD_VALUES)) + text[m.end() :]
    return text


@settings(
    max_examples=4000, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
)
@given(mutated_sample())
def test_mutated_samples_compile_or_fail_cleanly(text):
    try:
        model = resolve_text(text)
    except ConvcError as error:
        assert all(e.message for e in errors_of(error))
        return
    if model.parameter_count < 2_000_000:  # keep the run short; big ones were resolved already
        compile_text(text)


# ---------------------------------------------------------------------------------------------
# Writing

NET = HEAD + "Conv2D(64, 3, name='big')\nConv2D(2, 1)\n"


def test_failed_write_leaves_nothing_and_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "net.onnx"
    target.write_bytes(b"old")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(onnxfile.os, "replace", broken_replace)
    with pytest.raises(ConvcError, match="No space left on device"):
        save(compile_text(NET), target)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.onnx"]


def test_written_files_follow_the_umask(tmp_path):
    target = tmp_path / "net.onnx"
    save(compile_text(NET), target)
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_large_models_get_external_data_that_onnxruntime_loads(tmp_path, monkeypatch):
    # The real threshold is 2 GiB; lowering it exercises the same path with a small model.
    monkeypatch.setattr(onnxfile, "EXTERNAL_DATA_BYTES", 1000)
    proto = compile_text(NET)
    target = tmp_path / "net.onnx"
    written = save(proto, target)
    assert [p.name for p in written] == ["net.onnx.data", "net.onnx"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.onnx", "net.onnx.data"]
    assert target.stat().st_size < (tmp_path / "net.onnx.data").stat().st_size
    onnx.checker.check_model(str(target), full_check=True)
    x = np.random.default_rng(0).standard_normal((1, 8, 8, 3)).astype(np.float32)
    from_file = open_session(target).run({"input_layer": x})
    in_memory = open_session(proto).run({"input_layer": x})
    np.testing.assert_array_equal(from_file["conv2d"], in_memory["conv2d"])
    assert all(t.HasField("raw_data") for t in proto.graph.initializer)  # the proto is intact


def test_command_line_writes_external_data(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(onnxfile, "EXTERNAL_DATA_BYTES", 1000)
    source = tmp_path / "net.conv"
    source.write_text(NET)
    assert main(["build", str(source)]) == 0
    assert "and its weights in" in capsys.readouterr().out
    assert (tmp_path / "net.onnx.data").exists()


def test_largest_tensor_is_measured_in_memory_and_on_disk(tmp_path, monkeypatch):
    from convc.runtime import largest_tensor_bytes

    proto = compile_text(NET)
    biggest = 64 * 3 * 3 * 3 * 4
    assert largest_tensor_bytes(proto) == biggest
    monkeypatch.setattr(onnxfile, "EXTERNAL_DATA_BYTES", 1000)
    save(proto, tmp_path / "net.onnx")
    assert largest_tensor_bytes(tmp_path / "net.onnx") == biggest
    assert largest_tensor_bytes(tmp_path / "absent.onnx") == 0
