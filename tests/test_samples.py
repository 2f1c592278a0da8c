"""Every sample builds from the command line and computes what Keras computes."""

from __future__ import annotations

from pathlib import Path

import pytest

from convc.cli import main

from oracle import assert_matches_keras

SAMPLES = sorted((Path(__file__).parent.parent / "samples").glob("*.conv"))


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
def test_sample_matches_keras(path):
    """Keras computes the same; a channels_last net transposes once per image input and output
    (an input or output of rank 2, such as a classifier's scores, has no layout to change)."""
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


def test_there_are_at_least_five_samples():
    assert len(SAMPLES) >= 5
