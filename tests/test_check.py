"""convc check: ONNX Runtime against the NumPy reference, layer by layer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import convc.lower.conv as conv_rules
import convc.reference as reference
from convc.cli import main
from convc.compiler import resolve_text
from convc.layer_check import check_layers as check
from convc.weights import from_arrays, initialize

SAMPLES = sorted((Path(__file__).parent.parent / "samples").glob("*.conv"))

NET = """Input(shape=(12, 12, 3))
Conv2D(4, 3, padding="same", name="first")
Conv2D(4, 3, strides=2, padding="same", name="victim")
Conv2DTranspose(3, 3, strides=2, padding="same", name="after")
"""


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
def test_samples_pass_check(path, capsys):
    assert main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "MISMATCH" not in out and "layers agree" in out


def _off_by_one(original):
    def shifted(layer):
        pads = original(layer)
        if layer.name == "victim":  # move the odd 'same' pad element to the front
            half = len(pads) // 2
            return [p + 1 for p in pads[:half]] + [p - 1 for p in pads[half:]]
        return pads

    return shifted


def test_broken_lowering_is_caught_and_attributed(monkeypatch):
    monkeypatch.setattr(conv_rules, "_forward_pads", _off_by_one(conv_rules._forward_pads))
    model = resolve_text(NET)
    x = np.random.default_rng(0).standard_normal((1, 12, 12, 3)).astype(np.float32)
    report = check(model, initialize(model, 0), x)
    # the layer after computes right on what it is given: it inherits the victim's difference
    assert [layer.verdict for layer in report.layers] == ["ok", "MISMATCH", "inherited"]
    assert report.first_divergence.name == "victim"
    assert "first divergence: layer 'victim' (Conv2D, line 3)" in report.render()


def test_broken_lowering_fails_the_command(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(conv_rules, "_forward_pads", _off_by_one(conv_rules._forward_pads))
    source = tmp_path / "net.conv"
    source.write_text(NET)
    assert main(["check", str(source)]) == 1
    out = capsys.readouterr().out
    assert "victim" in out and "MISMATCH" in out and "first divergence: layer 'victim'" in out


def test_check_table_and_options(tmp_path, capsys):
    source = tmp_path / "net.conv"
    source.write_text(NET)
    x = tmp_path / "x.npy"
    np.save(x, np.ones((2, 12, 12, 3), np.float32))
    assert (
        main(
            [
                "check",
                str(source),
                "--input",
                str(x),
                "--rtol",
                "1e-3",
                "--atol",
                "1e-3",
                "--seed",
                "5",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "input (2, 12, 12, 3)" in out
    assert out.splitlines()[1].split()[:3] == ["layer", "class", "output"]
    assert "all 3 layers agree (rtol 0.001, atol 0.001)" in out


def test_check_reports_a_wrong_input_shape(tmp_path, capsys):
    source = tmp_path / "net.conv"
    source.write_text(NET)
    x = tmp_path / "x.npy"
    np.save(x, np.ones((1, 5, 5, 3), np.float32))
    assert main(["check", str(source), "--input", str(x)]) == 1
    assert "has shape (1, 5, 5, 3), expected (batch, 12, 12, 3)" in capsys.readouterr().err


def test_no_op_layers_get_their_own_outputs():
    model = resolve_text(
        "Input(shape=(8, 3))\nUpSampling1D(1)\nZeroPadding1D(0)\nConv1D(2, 1)\nCropping1D(0)\n"
    )
    x = np.ones((1, 8, 3), np.float32)
    assert check(model, initialize(model, 0), x).ok


# Two equal paths whose float32 roundings differ (W and a Rescaling by 3 of W / 3), subtracted,
# then a BatchNormalization of gain 10,000 (variance 1e-8): the rounding noise of the difference
# becomes about 1e-3, beyond the tolerance, though every layer computes what it should.
AMPLIFIER = """import keras
from keras import layers
inputs = keras.Input(shape=(6, 6, 3))
a = layers.Conv2D(4, 3, padding="same", name="a")(inputs)
b = layers.Rescaling(3.0, name="thirds")(layers.Conv2D(4, 3, padding="same", name="b")(inputs))
d = layers.Subtract(name="difference")([a, b])
model = keras.Model(inputs, layers.BatchNormalization(epsilon=1e-12, name="gain")(d))
"""


def _amplifier():
    rng = np.random.default_rng(3)
    kernel = rng.standard_normal((3, 3, 3, 4)).astype(np.float32)
    bias = rng.standard_normal(4).astype(np.float32)
    weights = {
        "a/kernel": kernel,
        "a/bias": bias,
        "b/kernel": kernel / np.float32(3),
        "b/bias": bias / np.float32(3),
        "gain/gamma": np.ones(4, np.float32),
        "gain/beta": np.zeros(4, np.float32),
        "gain/moving_mean": np.zeros(4, np.float32),
        "gain/moving_variance": np.full(4, 1e-8, np.float32),
    }
    model = resolve_text(AMPLIFIER)
    x = rng.standard_normal((2, 6, 6, 3)).astype(np.float32)
    return model, from_arrays(model, weights), x


def test_a_layer_that_amplifies_its_inputs_difference_inherits_it():
    model, weights, x = _amplifier()
    report = check(model, weights, x)
    gain = report.layers[-1]
    assert gain.name == "gain" and gain.max_abs > 1e-4, "the amplified noise is past atol"
    assert [layer.verdict for layer in report.layers] == ["ok"] * 4 + ["inherited"]
    assert report.ok and report.first_divergence is None
    text = report.render()
    assert "on onnxruntime's own inputs the reference agrees): gain" in text
    assert "all 5 layers agree, 1 of them by inheriting" in text


def test_a_layer_wrong_on_its_own_inputs_is_still_the_divergence(monkeypatch):
    model, weights, x = _amplifier()
    spec = type(model.nodes[-1].spec)
    right = reference.COMPUTES[spec]
    monkeypatch.setitem(reference.COMPUTES, spec, lambda *a: right(*a) + np.float32(0.01))
    report = check(model, weights, x)
    assert [layer.verdict for layer in report.layers][-1] == "MISMATCH"
    assert report.first_divergence.name == "gain"


def test_a_report_escapes_the_names_it_shows():
    """A layer's name comes from a file; a report printed by Python, not the CLI, must not carry
    its terminal escapes either."""
    hostile = "a\x1b[31mred\u202e"
    source = (
        "Input(shape=(6, 2))\n"
        f'Conv1D(3, 2, name="{hostile.encode("unicode_escape").decode()}")\n'
        "ReLU()\n"
    )
    model = resolve_text(source)
    assert model.layers[0].name == hostile
    text = check(model, initialize(model, seed=0), None).render()
    assert "a\\x1b[31mred\\u202e" in text, text
    assert "\x1b" not in text and "\u202e" not in text, text
