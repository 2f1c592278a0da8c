"""The Python API (``convc.build``, ``save``, ``run``, ``check``, ``golden``, ``BuildOptions``)
and the policy the command line takes from it: sources by suffix, option combinations, the
runtime's target, workarounds, strict verification, and the flags' choices."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

import convc
import convc.api as api
from convc.cli import _parser, main
from convc.options import IO_LAYOUTS, BuildOptions
from convc.runtime import PROVIDER_CHOICES
from convc.targets import DEFAULT_TARGET

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "samples" / "tiny.conv"
NET = "model net\nInput(shape=(6, 6, 3), name='image')\nConv2D(4, 3, name='c')\nReLU()\n"


@pytest.fixture
def net(tmp_path):
    path = tmp_path / "net.conv"
    path.write_text(NET)
    return path


# -- sources and build ------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["path", "str-path", "text", "model"], ids=lambda form: form)
def test_build_takes_a_path_or_model_and_build_text_text(net, form):
    proto = {
        "path": lambda: convc.build(net),
        "str-path": lambda: convc.build(str(net)),
        "text": lambda: convc.build_text(NET),
        "model": lambda: convc.build(convc.load(net)),
    }[form]()
    assert isinstance(proto, onnx.ModelProto) and proto.graph.name == "net"
    assert [node.op_type for node in proto.graph.node] == ["Transpose", "Conv", "Relu", "Transpose"]
    assert proto == convc.build(net)


def test_load_and_load_text_give_the_same_model(net):
    assert convc.load(net).name == convc.load_text(NET).name == "net"
    assert [n.name for n in convc.load(net).nodes] == [n.name for n in convc.load_text(NET).nodes]


@pytest.mark.parametrize(
    "name", ["model (1).conv", "net", "# abc", "a(b).conv", "x = Conv2D(3, 3).conv"]
)
def test_a_str_is_always_a_path(tmp_path, monkeypatch, name):
    """No guessing: a browser's "model (1).conv", a one-line file without a newline or a
    parenthesis, any str names a file, in the API and on the command line."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / name).write_text(NET)
    assert convc.build(name).graph.name == "net"
    assert convc.load(name).name == "net"
    assert main(["build", name, "-o", str(tmp_path / "out.onnx")]) == 0


def test_a_comment_only_file_is_read_as_a_file(tmp_path, capsys):
    """A one-line file without a final newline and without a '(' used to be read, then its text
    taken for a path ("# abc: error: no such file")."""
    source = tmp_path / "note.conv"
    source.write_text("# abc")
    assert main(["build", str(source)]) == 1
    err = capsys.readouterr().err
    assert "no such file" not in err and "note.conv" in err


def test_text_given_for_a_path_is_told_to_use_build_text():
    with pytest.raises(convc.ConvcError, match="no such file") as caught:
        convc.build(NET)
    assert "build_text" in (caught.value.help or "")
    with pytest.raises(convc.ConvcError, match="no such file"):
        convc.build("absent.conv")
    with pytest.raises(TypeError, match="path or a convc Model"):
        convc.build(b"bytes")


SHARED = """model shared
inputs = Input(shape=(6, 6, 3))
conv = Conv2D(3, 3, padding="same", name="shared")
y = conv(conv(Conv2D(3, 1, name="first")(inputs)))
model = keras.Model(inputs, y)
"""


def test_lowering_releases_each_layer_after_its_last_application():
    """A build that owns its weights lets each layer's arrays go once lowered (peak memory);
    a shared layer keeps them until its last application, and the model is the same."""
    from convc.compiler import compile_model, model_weights
    from convc.lower import lower

    model = convc.load_text(SHARED)
    arrays = model_weights(model, None, 0)
    popped = []

    class Watched(dict):
        def pop(self, name, *default):
            popped.append(name)
            return super().pop(name, *default)

    kept = lower(model, dict(arrays))
    released = lower(model, Watched(arrays), release_weights=True)
    assert released.SerializeToString() == kept.SerializeToString()
    assert popped == ["first", "shared"]  # "shared" only after its second application
    assert compile_model(model, None).SerializeToString() == kept.SerializeToString()


def test_consumed_weights_are_emptied_and_a_users_mapping_is_not():
    from convc.compiler import compile_model, model_weights

    model = convc.load_text(SHARED)
    flat = {
        f"{layer}/{name}": array
        for layer, variables in model_weights(model, None, 0).items()
        for name, array in variables.items()
    }
    mine = dict(flat)
    expected = compile_model(model, mine)
    assert mine == flat  # a caller's mapping is left alone
    owned = dict(flat)
    assert compile_model(model, owned, consume_weights=True) == expected
    assert owned == {}


def test_build_options_are_applied(net):
    options = BuildOptions(target="opencv", opset=17, io_layout="channels_first", seed=3)
    proto = convc.build(net, options=options)
    assert proto.opset_import[0].version == 17
    # channels_first I/O: the channels_last net carries no Transpose
    assert [node.op_type for node in proto.graph.node] == ["Conv", "Relu"]
    assert proto.graph.input[0].type.tensor_type.shape.dim[1].dim_value == 3
    again = convc.build(net, options=options)
    assert again.graph.initializer == proto.graph.initializer  # the seed decides the weights
    other = convc.build(net, options=options.replace(seed=4))
    assert other.graph.initializer != proto.graph.initializer
    unoptimized = convc.build_text(
        "Input(shape=(6, 6, 3))\nZeroPadding2D(1)\nConv2D(4, 3)\n",
        options=BuildOptions(optimize=False, io_layout="channels_first"),
    )
    assert [node.op_type for node in unoptimized.graph.node] == ["Pad", "Conv"]


def test_the_compilers_keywords_are_the_options_fields(net):
    from convc.compiler import compile_text

    by_keywords = compile_text(NET, target="opencv", opset=17, seed=3)
    by_options = compile_text(NET, options=BuildOptions(target="opencv", opset=17, seed=3))
    assert (
        by_keywords
        == by_options
        == convc.build(net, options=BuildOptions(target="opencv", opset=17, seed=3))
    )
    with pytest.raises(TypeError, match="unexpected build option"):
        compile_text(NET, targte="opencv")


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"target": "nvidia"}, "unknown target 'nvidia'"),
        ({"opset": 12}, "opset 12 is not supported"),
        ({"target": "tensorrt", "opset": 23}, "too new for target 'tensorrt'"),
        ({"io_layout": "nchw"}, "unknown input/output layout 'nchw'"),
        ({"seed": -1}, "the seed must be an integer"),
        ({"optimize": "yes"}, "optimize must be True or False"),
    ],
    ids=["target", "opset-old", "opset-new-for-target", "io-layout", "seed", "optimize"],
)
def test_build_options_are_checked_when_made(options, fragment):
    with pytest.raises(convc.ConvcError, match=fragment):
        BuildOptions(**options)


def test_build_options_are_frozen_and_default_to_portable():
    options = BuildOptions()
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.target = "ort"  # type: ignore[misc]
    assert options.target_name == DEFAULT_TARGET and options.resolved_opset == 17
    assert BuildOptions(target="ort").resolved_opset > 17


def test_save_and_workarounds(tmp_path):
    proto = convc.build(TINY, options=BuildOptions(target="opencv"))
    written = convc.save(proto, tmp_path / "tiny.onnx")
    assert written == [tmp_path / "tiny.onnx"] and onnx.load(written[0]) == proto
    entry = proto.metadata_props.add()
    entry.key = "convc.workarounds"
    entry.value = "up: Resize as two steps\nc: pads as a Pad node"
    assert convc.workarounds(proto) == ["up: Resize as two steps", "c: pads as a Pad node"]
    assert convc.workarounds(convc.build(TINY)) == []


def test_build_prints_the_workarounds_lowering_wrote(net, capsys, monkeypatch):
    real = api.build_and_save

    def with_workaround(*args, **kwargs):
        saved = real(*args, **kwargs)
        entry = saved.model.metadata_props.add()
        entry.key, entry.value = "convc.workarounds", "c: something exact"
        return saved

    monkeypatch.setattr(api, "build_and_save", with_workaround)
    assert main(["build", str(net), "--target", "opencv"]) == 0
    assert "  workaround for opencv: c: something exact" in capsys.readouterr().out


# -- run ----------------------------------------------------------------------------------------


def test_run_compiles_a_conv_source_for_the_runtimes_target(net, monkeypatch):
    seen = []
    real = api.compile_model

    def spy(model, weights=None, options=None, **keywords):
        seen.append(options)
        return real(model, weights, options, **keywords)

    monkeypatch.setattr(api, "compile_model", spy)
    result = convc.run(net, runtime="onnx-reference")
    assert seen[-1].target == "onnx-reference" and result.runtime == "onnx-reference"
    convc.run(net, runtime="onnx-reference", options=BuildOptions(target="portable"))
    assert seen[-1].target == "portable"
    convc.run(convc.load_text(NET))  # a loaded model is a source too
    assert seen[-1].target == "ort"
    assert BuildOptions().for_runtime("tract").target == "tract"
    with pytest.raises(convc.ConvcError, match="unknown runtime 'nope'"):
        BuildOptions().for_runtime("nope")


def test_run_loads_a_built_model_by_suffix(net, tmp_path):
    path = tmp_path / "net.onnx"
    convc.save(convc.build(net), path)
    x = np.random.default_rng(0).standard_normal((2, 6, 6, 3)).astype(np.float32)
    from_file = convc.run(path, {"image": x})
    from_proto = convc.run(convc.build(net), x)
    from_source = convc.run(net, x, options=BuildOptions(target="portable"))
    np.testing.assert_array_equal(from_file.outputs["re_lu"], from_proto.outputs["re_lu"])
    np.testing.assert_array_equal(from_file.outputs["re_lu"], from_source.outputs["re_lu"])
    assert from_file.outputs["re_lu"].shape == (2, 4, 4, 4)


@pytest.mark.parametrize(
    ("keywords", "fragment"),
    [
        ({"weights": "w.npz"}, "'weights' applies to .conv sources"),
        ({"options": BuildOptions(target="opencv")}, "'target' applies to .conv sources"),
        ({"options": BuildOptions(opset=18)}, "'opset' applies to .conv sources"),
        ({"options": BuildOptions(seed=2)}, "'seed' applies to .conv sources"),
        ({"options": BuildOptions(io_layout="channels_first")}, "'io_layout' applies"),
        ({"provider": "cuda", "runtime": "opencv"}, "'provider' applies to the ort runtime"),
    ],
    ids=["weights", "target", "opset", "seed", "io-layout", "provider"],
)
def test_run_refuses_options_that_do_not_apply(net, tmp_path, keywords, fragment):
    path = tmp_path / "net.onnx"
    convc.save(convc.build(net), path)
    with pytest.raises(convc.ConvcError, match=fragment):
        convc.run(path, **keywords)


def test_run_missing_model_file(tmp_path):
    with pytest.raises(convc.ConvcError, match="no such file") as caught:
        convc.run(tmp_path / "absent.onnx")
    assert caught.value.path == str(tmp_path / "absent.onnx")


def test_run_inputs_from_files_and_random_ones(net, tmp_path):
    x = np.ones((1, 6, 6, 3), np.float32)
    np.save(tmp_path / "x.npy", x)
    from_file = convc.run(net, [f"image={tmp_path / 'x.npy'}"])
    np.testing.assert_array_equal(from_file.inputs["image"], x)
    first = convc.run(net, input_seed=5, batch=3)
    assert first.inputs["image"].shape == (3, 6, 6, 3)
    np.testing.assert_array_equal(
        first.outputs["re_lu"], convc.run(net, input_seed=5, batch=3).outputs["re_lu"]
    )


# -- check and golden ---------------------------------------------------------------------------


def test_check_is_a_function(net):
    import inspect

    report = convc.check(net, options=BuildOptions(seed=2), batch=2)
    assert isinstance(report, convc.CheckReport) and report.ok
    assert [layer.name for layer in report.layers] == ["c", "re_lu"]
    assert report.layers[0].shape == (2, 4, 4, 4)
    assert inspect.isfunction(convc.check)
    assert convc.check(convc.load_text(NET)).ok


@pytest.mark.parametrize(("precision", "tolerance"), [("float32", 1e-4), ("float16", 1e-2)])
def test_check_takes_the_precisions_tolerances_as_the_command_does(precision, tolerance, capsys):
    report = convc.check(TINY, options=BuildOptions(precision=precision))
    assert (report.rtol, report.atol) == (tolerance, tolerance)
    assert main(["check", str(TINY), "--precision", precision]) == 0
    assert f"(rtol {tolerance:g}, atol {tolerance:g})" in capsys.readouterr().out
    assert convc.check(TINY, rtol=3e-3, atol=2e-3).rtol == 3e-3


def test_check_sees_a_broken_lowering(net, monkeypatch):
    from convc.lower.registry import LOWERINGS, Lowering
    from convc.specs import ReLUSpec

    real = LOWERINGS[ReLUSpec]

    def broken(em, node, x, weights):
        value = real.rule(em, node, x, weights)
        return value.__class__(em.op("Neg", [value.name], "broken"), value.perm, value.shape)

    monkeypatch.setitem(LOWERINGS, ReLUSpec, Lowering(broken, real.any_layout))
    report = convc.check(net)
    assert not report.ok and report.first_divergence.name == "re_lu"


def test_golden_record_and_verify_take_options(net, tmp_path):
    directory = tmp_path / "golden"
    options = BuildOptions(seed=4, opset=18, io_layout="channels_first")
    recording = convc.golden.record(net, directory, options=options, sets=2)
    assert recording.opset == 18 and recording.sets == 2
    verification = convc.golden.verify(directory)
    assert verification.passes(strict=True), verification.render()
    assert verification.compiler_output == "unchanged"


@pytest.mark.parametrize("strict", [False, True], ids=["lenient", "strict"])
def test_cli_verify_follows_verification_passes(net, tmp_path, capsys, strict):
    directory = tmp_path / "golden"
    convc.golden.record(net, directory)
    net.write_text(
        NET.replace("ReLU()", "ReLU(name='re_lu')")
    )  # edited: same model, source changed
    verification = convc.golden.verify(directory)
    assert verification.passes() and not verification.passes(strict=True)
    flags = ["--strict"] if strict else []
    assert main(["golden", "verify", str(directory), *flags]) == (1 if strict else 0)


# -- the command line takes its choices from the library ----------------------------------------


def _choices(command: str, flag: str):
    parser = _parser()
    sub = parser._subparsers._group_actions[0].choices[command]
    (action,) = [a for a in sub._actions if flag in a.option_strings]
    return tuple(action.choices)


def test_cli_choices_are_the_librarys():
    assert _choices("build", "--io-layout") == IO_LAYOUTS
    for command in ("run", "check"):
        assert _choices(command, "--provider") == PROVIDER_CHOICES


def test_import_convc_is_light():
    done = subprocess.run(
        [sys.executable, "-c", "import convc, sys; print('onnx' in sys.modules, convc.__all__)"],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(ROOT), "PATH": ""},
    )
    assert done.stdout.startswith("False")
    for name in convc.__all__:
        assert getattr(convc, name) is not None, name
