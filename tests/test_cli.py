"""The command line: build's default output, summary, version, and python -m convc."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from convc import __version__
from convc.cli import main

NET = "model net\nInput(shape=(8, 8, 3), name='image')\nConv2D(4, 3, name='c')\nConv2DTranspose(2, 2, strides=2)\n"


def test_build_writes_beside_the_source_by_default(tmp_path, capsys):
    source = tmp_path / "net.conv"
    source.write_text(NET)
    assert main(["build", str(source)]) == 0
    proto = onnx.load(tmp_path / "net.onnx")
    assert proto.graph.name == "net"
    assert f"wrote {tmp_path / 'net.onnx'}: 2 layers" in capsys.readouterr().out


def test_build_options(tmp_path):
    source = tmp_path / "net.conv"
    source.write_text(NET)
    out = tmp_path / "out.onnx"
    assert main(["build", str(source), "-o", str(out), "--opset", "17", "--seed", "3"]) == 0
    assert onnx.load(out).opset_import[0].version == 17


def test_summary_is_keras_like(tmp_path, capsys):
    source = tmp_path / "net.conv"
    source.write_text(NET)
    assert main(["summary", str(source)]) == 0
    out = capsys.readouterr().out
    assert 'Model: "net"' in out
    assert "c (Conv2D)" in out and "(None, 6, 6, 4)" in out and "112" in out
    assert "conv2d_transpose (Conv2DTranspose)" in out and "(None, 12, 12, 2)" in out
    assert "Total params: 146" in out


def test_version(capsys):
    try:
        code = main(["--version"])
    except SystemExit as exit_:
        code = exit_.code
    assert code == 0
    assert capsys.readouterr().out.strip() == f"convc {__version__}"


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "build" in capsys.readouterr().out


def test_python_dash_m(tmp_path):
    source = tmp_path / "net.conv"
    source.write_text(NET)
    done = subprocess.run(
        [sys.executable, "-m", "convc", "build", str(source), "-o", str(tmp_path / "x.onnx")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "x.onnx").exists()


def test_readme_python_example_runs(tmp_path, monkeypatch):
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    code = readme.split("## Python API", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(Path(__file__).parent.parent)
    # keep the tree clean: convc.save writes nothing
    monkeypatch.setattr("convc.onnxfile.save", lambda proto, path: [Path(path)])
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["report"].ok
    assert namespace["outputs"]["cropping2d"].shape == (1, 127, 188, 4)
    assert [node.name for node in namespace["model"].nodes] == ["conv2d"]


def test_debug_before_the_command_shows_the_traceback(tmp_path, capsys, monkeypatch):
    source = tmp_path / "net.conv"
    source.write_text(NET)

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("convc.compiler.lower_detached", broken)
    assert main(["--debug", "build", str(source)]) == 3
    assert "Traceback" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--batch", "0"], "--batch: must be at least 1"),
        (["--batch", "x"], "--batch: expected an integer, got 'x'"),
        (["--input-seed", "-1"], "--input-seed: must be between 0"),
        (["--seed", "-3"], "--seed: must be between 0"),
    ],
)
def test_bad_flag_values_are_usage_errors(tmp_path, capsys, flags, fragment):
    source = tmp_path / "net.conv"
    source.write_text(NET)
    with pytest.raises(SystemExit) as exit_:
        main(["run", str(source), *flags])
    assert exit_.value.code == 2
    assert fragment in capsys.readouterr().err


def test_api_refuses_a_negative_seed():
    from convc.compiler import compile_text
    from convc.diagnostics import ConvcError

    with pytest.raises(ConvcError, match="the seed must be"):
        compile_text(NET, seed=-1)


@pytest.mark.parametrize("command", ["summary", "build", "check"])
def test_control_characters_from_a_file_are_escaped_in_output(tmp_path, capsys, command):
    """A layer name with an ESC sequence or a right-to-left override reaches the terminal as
    escapes (#23): in summary's table, check's report, and the source line of an error."""
    source = tmp_path / "net.conv"
    source.write_text(
        'Input(shape=(8, 8, 3))\nConv2D(4, 3, name="a\\x1b[31mred\\u202e")\n'
        + ('Conv2D(2, 1, padding="sam\x1be")\n' if command == "build" else "")
    )
    main([command, str(source)] + (["-o", str(tmp_path / "n.onnx")] if command == "build" else []))
    out, err = capsys.readouterr()
    assert "\x1b" not in out + err and "\u202e" not in out + err
    if command == "build":
        assert (
            "sam\\x1be" in err and "\ufffd" in err
        )  # escaped in the message, one column in the line
    else:
        assert "a\\x1b[31mred\\u202e" in out


def test_printable_keeps_line_breaks_and_text():
    from convc.diagnostics import printable

    assert printable("a\nb\tc\x00é→") == "a\nb\\x09c\\x00é→"


def test_import_writes_the_conv_and_its_weights_together_or_neither(tmp_path, capsys):
    """--weights-out into a missing folder used to write the .conv and then fail (#23)."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    keras.backend.clear_session()
    model = keras.Sequential([keras.Input((4, 4, 2)), keras.layers.Conv2D(3, 1, name="c")])
    model.save(tmp_path / "m.keras")
    existing = tmp_path / "m.conv"
    existing.write_text("# the user's own file\n")
    code = main(
        ["import", str(tmp_path / "m.keras"), "--weights-out", str(tmp_path / "missing" / "w.npz")]
    )
    assert code == 1 and "the output directory does not exist" in capsys.readouterr().err
    assert existing.read_text() == "# the user's own file\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.conv", "m.keras"]
    assert main(["import", str(tmp_path / "m.keras")]) == 0
    assert {"m.conv", "m.npz"} <= {p.name for p in tmp_path.iterdir()}


def test_import_says_when_its_text_is_too_long_for_a_conv_file(tmp_path, capsys, monkeypatch):
    """A model of more than about 20,000 layers imports to a text longer than a .conv file may
    be: convc import says so and names what to build instead, and build's refusal says why."""
    from hostile_files import long_sequential

    import convc.compiler
    import convc.limits

    model = long_sequential(tmp_path, layers=3)
    monkeypatch.setattr(convc.limits, "MAX_SOURCE_BYTES", 100)
    monkeypatch.setattr(convc.compiler, "MAX_SOURCE_BYTES", 100)
    given = ["--input-shape", "4"]  # an option the import had, which the build needs too
    assert main(["import", str(model), "-o", str(tmp_path / "m.conv"), *given]) == 0
    err = capsys.readouterr().err
    size = (tmp_path / "m.conv").stat().st_size
    assert f"the text is {size:,} bytes, more than the 100 that convc reads" in err
    assert f"build the model file itself, as in convc build {model} --input-shape 4," in err
    assert main(["build", str(tmp_path / "m.conv")]) == 1
    assert "is built from its Keras model file" in capsys.readouterr().err
    assert main(["build", str(model), "-o", str(tmp_path / "m.onnx")]) == 0
    monkeypatch.undo()
    assert main(["import", str(model), "-o", str(tmp_path / "m.conv")]) == 0
    assert "note" not in capsys.readouterr().err


def test_sigterm_during_a_write_leaves_nothing_behind(tmp_path):
    """SIGTERM used to kill convc mid-write with its .NAME.*.tmp file left in the folder (#23);
    now the write removes it and convc exits 143."""
    source = tmp_path / "net.conv"
    source.write_text(NET)
    out = tmp_path / "out" / "net.onnx"
    out.parent.mkdir()
    script = f"""
import os, signal, sys
import convc.onnxfile as files
from convc import cli

real = files.write_files

def interrupted(pending):
    def chunks(data):
        yield data[:10]
        os.kill(os.getpid(), signal.SIGTERM)
        yield data[10:]
    return real([(path, chunks(b"".join(parts))) for path, parts in pending])

files.write_files = interrupted
sys.exit(cli.main(["build", {str(source)!r}, "-o", {str(out)!r}]))
"""
    ran = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert ran.returncode == 143, ran.stderr[-2000:]
    assert "convc: terminated" in ran.stderr
    assert list(out.parent.iterdir()) == []
