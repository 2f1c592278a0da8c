"""Long work shows progress on stderr when it is a terminal, and nothing otherwise."""

from __future__ import annotations

import io
import sys

import pytest

import convc
from convc import progress
from convc.cli import main

NET = "Input(shape=(6, 6, 3), name='image')\nConv2D(4, 3, name='c')\nReLU()\nConv2D(2, 1)\n"


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def terminal(monkeypatch):
    """A function that makes stderr a fake terminal. Called in the test's body: pytest's
    capture sets sys.stderr again between a fixture's setup and the test."""

    def make() -> FakeTerminal:
        stream = FakeTerminal()
        monkeypatch.setattr(sys, "stderr", stream)
        return stream

    monkeypatch.setattr(progress, "DELAY", 0.0)  # show at once: these builds take milliseconds
    return make


@pytest.fixture
def net(tmp_path):
    path = tmp_path / "net.conv"
    path.write_text(NET)
    return path


def test_a_terminal_shows_layers_weights_and_sets(net, tmp_path, terminal):
    terminal = terminal()
    proto = convc.build(net)
    convc.save(proto, tmp_path / "net.onnx")
    convc.golden.record(net, tmp_path / "golden", sets=2)
    convc.golden.verify(tmp_path / "golden")
    convc.check(net)
    shown = terminal.getvalue()
    for what in (
        "initializing weights",
        "lowering layers",
        "writing weights",
        "running input sets",
        "verifying input sets",
        "reference layers",
    ):
        assert what in shown, what
    assert "3/3" in shown  # layers counted


def test_the_command_line_shows_progress_on_a_terminal(net, terminal, capsys):
    terminal = terminal()
    assert main(["build", str(net)]) == 0
    assert "lowering layers" in terminal.getvalue()


def test_a_pipe_stays_silent(net, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(progress, "DELAY", 0.0)
    assert main(["build", str(net)]) == 0
    assert main(["golden", "record", str(net), str(tmp_path / "golden")]) == 0
    assert main(["check", str(net)]) == 0
    assert capsys.readouterr().err == ""


def test_quick_work_on_a_terminal_stays_silent(net, terminal, monkeypatch):
    monkeypatch.setattr(progress, "DELAY", 60.0)
    terminal = terminal()
    convc.build(net)
    assert terminal.getvalue() == ""


def test_a_closed_or_odd_stream_is_no_terminal():
    closed = io.StringIO()
    closed.close()
    assert not progress.enabled(closed)
    assert not progress.enabled(object())
    assert progress.enabled(FakeTerminal())


def test_track_yields_every_item_and_stops_early_cleanly(terminal):
    terminal = terminal()
    assert list(progress.track(range(5), "counting")) == [0, 1, 2, 3, 4]
    for item in progress.track(iter(range(10)), "counting", total=10):
        if item == 2:
            break
    assert "counting" in terminal.getvalue()
