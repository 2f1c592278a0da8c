"""Every sample builds from the command line and computes what Keras computes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from convc.cli import main
from convc.compiler import resolve_text
from convc.summary import summary

from jax_oracle import BACKENDS_DISAGREE, assert_matches_keras_on_jax
from oracle import assert_matches_keras, keras_model

SAMPLES = sorted((Path(__file__).parent.parent / "samples").glob("*.conv"))


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
def test_sample_matches_keras(path, tmp_path):
    """Keras computes the same; a channels_last net transposes once per image input and output
    (an input or output of rank 2, such as a classifier's scores, has no layout to change)."""
    if BACKENDS_DISAGREE.search(path.read_text()):
        proto = assert_matches_keras_on_jax(path.read_text(), tmp_path, batch=1)
    else:
        _, proto = assert_matches_keras(path.read_text(), batch=1)
    transposes = sum(node.op_type == "Transpose" for node in proto.graph.node)
    channels_last = "channels_first" not in path.read_text()
    ends = sum(
        len(info.type.tensor_type.shape.dim) > 2
        for info in (*proto.graph.input, *proto.graph.output)
    )
    assert transposes == (ends if channels_last else 0)


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
def test_sample_builds_from_the_command_line(path, tmp_path, capsys):
    output = tmp_path / "net.onnx"
    assert main(["build", str(path), "-o", str(output)]) == 0
    assert output.stat().st_size > 0
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
def test_summary_counts_parameters_as_keras_does(path):
    """Total, trainable and non-trainable parameters (BatchNormalization's moving statistics are
    non-trainable) as Keras's count_params() and its weight lists give them."""
    model = keras_model(path.read_text())
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    frozen = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
    assert model.count_params() == trainable + frozen
    lines = summary(resolve_text(path.read_text())).splitlines()
    assert f" Total params: {model.count_params():,} (" in "\n".join(lines)
    assert f" Trainable params: {trainable:,} (" in "\n".join(lines)
    assert f" Non-trainable params: {frozen:,} (" in "\n".join(lines)


def test_some_sample_has_non_trainable_parameters():
    assert any("BatchNormalization" in path.read_text() for path in SAMPLES)


def test_there_are_at_least_five_samples():
    assert len(SAMPLES) >= 5
