"""The ``convc`` command line: argument parsing, exit codes and rendering of diagnostics.

Exit status: 0 success, 1 an error in the user's input (rendered as ``FILE:LINE:COL: error: ...``),
2 a usage error (bad flags), 3 an internal error (a convc bug: reported plainly, with a request to
report it; ``--debug`` shows the traceback), 4 ``convc import`` wrote the model with placeholder
lines that must be edited before it builds. Each command calls the public API and nothing more.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import traceback
from pathlib import Path

from convc import __version__
from convc.collector import collector_paused
from convc.diagnostics import ConvcError, printable, render

EXIT_OK, EXIT_USER_ERROR, EXIT_USAGE, EXIT_INTERNAL, EXIT_PLACEHOLDERS = 0, 1, 2, 3, 4


def _say(*parts: object, file=None) -> None:
    """``print``, with what came from a file (layer and output names) made safe for a terminal."""
    print(*(printable(str(part)) for part in parts), file=file)


class _Terminated(BaseException):
    """SIGTERM, raised where the program is, so that a write in progress removes its temporary
    file (``convc.onnxfile.write_files`` cleans up on any exception) before convc exits."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise _Terminated


def main(argv: list[str] | None = None) -> int:
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if in_main_thread else None
    try:
        return _main(argv)
    except _Terminated:
        _say("convc: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main(argv: list[str] | None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    args.loaded = ("<input>", None)  # the .conv file a handler read, for carets in errors
    try:
        return args.handler(args)
    except ConvcError as error:
        filename, source = args.loaded
        _say(render(error, source, filename), file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        _say("convc: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. convc run ... | head -1: the reader left; nothing to report
        sys.stderr.close()
        return EXIT_OK
    except MemoryError:
        _say("convc: error: not enough memory for this model or input", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception as error:  # a bug: say so, without a traceback unless asked
        if args.debug:
            traceback.print_exc()
        _say(
            f"convc: internal error: {type(error).__name__}: {error}\n"
            "This is a bug in convc, not in your model. Please report it with the input file "
            "and the command line (run again with --debug for the traceback).",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="convc",
        description="Compile Keras-style convolutional layer stacks (.conv files) to ONNX.",
    )
    parser.add_argument("--version", action="version", version=f"convc {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    parser.set_defaults(command=None)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    build = commands.add_parser("build", help="compile a .conv file to an .onnx model")
    build.add_argument("source", metavar="NET.conv")
    build.add_argument(
        "-o", "--output", metavar="NET.onnx", help="default: NET.onnx beside the source"
    )
    _weights_options(build)
    _input_shape_option(build)
    _replace_option(build)
    _target_options(build)
    _optimize_option(build)
    _precision_option(build, io_dtype=True)
    _int8_options(build)
    build.add_argument(
        "--max-memory",
        type=_size,
        default=None,
        metavar="SIZE",
        help="with --precision int8, refuse before calibrating when the calibration's estimated "
        "samples, activations and weights exceed SIZE (default 8G, or 3/4 of this machine's "
        "memory where that is less)",
    )
    build.set_defaults(command="build", handler=_build)

    summary = commands.add_parser("summary", help="print a Keras-style summary of a .conv file")
    summary.add_argument("source", metavar="NET.conv")
    _input_shape_option(summary)
    _replace_option(summary)
    summary.set_defaults(command="summary", handler=_summary)

    importer = commands.add_parser(
        "import", help="write a Keras model file (.keras, .h5, .json) as .conv text and weights"
    )
    importer.add_argument("model", metavar="MODEL.keras|MODEL.h5|MODEL.json")
    importer.add_argument(
        "-o", "--output", metavar="NET.conv", help="default: NET.conv beside the model"
    )
    importer.add_argument(
        "--weights-out",
        metavar="W.npz",
        help="where to write the weights (default: the .conv path with .npz)",
    )
    _input_shape_option(importer)
    _replace_option(importer)
    importer.set_defaults(command="import", handler=_import)

    from convc.targets import RUNTIMES

    run = commands.add_parser("run", help="run a model (.onnx, or .conv compiled in memory)")
    run.add_argument("model", metavar="NET.onnx|NET.conv")
    _input_options(run)
    run.add_argument("-o", "--output", metavar="OUT.npz", help="save the outputs")
    _weights_options(run)
    _input_shape_option(run)
    _replace_option(run)
    run.add_argument(
        "--runtime",
        default="ort",
        metavar="NAME",
        help="run in: " + ", ".join(RUNTIMES) + " (default ort; the others are optional extras)",
        choices=RUNTIMES,
    )
    _provider_option(run)
    _target_options(run, for_run=True)
    _optimize_option(run)
    _max_memory_option(run)
    _precision_option(run)
    _int8_options(run)
    run.set_defaults(command="run", handler=_run)

    check = commands.add_parser("check", help="compare every layer with the NumPy reference")
    check.add_argument("source", metavar="NET.conv")
    _input_options(check)
    _weights_options(check)
    _input_shape_option(check)
    _replace_option(check)
    _tolerance_options(check, default=True)
    _provider_option(check)
    _target_options(check, io_layout=False)
    _optimize_option(check)
    _precision_option(check)
    _max_memory_option(check)
    _int8_options(check)
    check.set_defaults(command="check", handler=_check, rtol=None, atol=None)

    golden = commands.add_parser("golden", help="record or verify golden outputs")
    golden_commands = golden.add_subparsers(
        title="golden commands", metavar="COMMAND", required=True
    )
    record = golden_commands.add_parser("record", help="compile, run and record outputs")
    record.add_argument("source", metavar="NET.conv")
    record.add_argument("directory", metavar="DIR")
    _weights_options(record)
    _replace_option(record)
    record.add_argument(
        "--sets", type=_count, default=1, metavar="K", help="input sets (default 1)"
    )
    record.add_argument(
        "--batch", type=_count, default=1, metavar="B", help="batch size (default 1)"
    )
    _target_options(record, io_layout=False)
    _tolerance_options(record, default=True)
    _provider_option(record)
    record.add_argument(
        "--draw",
        choices=("random", "initializers"),
        default="random",
        help="without --weights: random weights, biases and statistics too (default), or the "
        "layers' initializers (zero biases: a golden that constrains little)",
    )
    record.add_argument(
        "--allow-weak",
        action="store_true",
        help="record even when a constant would match an output entirely",
    )
    _precision_option(record)
    _max_memory_option(record)
    _int8_options(record)
    record.set_defaults(command="golden record", handler=_golden_record, rtol=None, atol=None)
    verify = golden_commands.add_parser("verify", help="check a golden directory")
    verify.add_argument("directory", metavar="DIR")
    _tolerance_options(verify, default=False)
    _provider_option(verify)
    verify.add_argument(
        "--strict", action="store_true", help="also fail when only the compiler's output changed"
    )
    _max_memory_option(verify)
    verify.set_defaults(command="golden verify", handler=_golden_verify)

    for sub in (build, summary, importer, run, check, golden, record, verify):
        # SUPPRESS: a default here would overwrite a --debug given before the command.
        sub.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )
    return parser


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"must be between 0 and 2**63 - 1, got {value}")
    return value


def _size(text: str) -> int:
    from convc.memory import parse_size

    try:
        return parse_size(text)
    except ConvcError as error:
        raise argparse.ArgumentTypeError(error.message) from None


def _tolerance(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _target_options(
    command: argparse.ArgumentParser, *, io_layout: bool = True, for_run: bool = False
) -> None:
    from convc.targets import DEFAULT_TARGET, TARGETS

    command.add_argument(
        "--target",
        default=None if for_run else DEFAULT_TARGET,
        metavar="NAME",
        help="the runtime to emit for: "
        + ", ".join(TARGETS)
        + (
            " (for a .conv source; default: the --runtime's own)"
            if for_run
            else f" (default {DEFAULT_TARGET}: runs in all of them)"
        ),
    )
    command.add_argument(
        "--opset",
        type=int,
        default=None,
        metavar="N",
        help="ONNX opset to emit (default: the target's; portable takes 17)",
    )
    if io_layout:
        from convc.options import IO_LAYOUTS

        command.add_argument(
            "--io-layout",
            default=IO_LAYOUTS[0],
            choices=IO_LAYOUTS,
            help="axis order of the model's inputs and outputs (default keras: as the layers "
            "take them; channels_first spares a channels_last net its Transposes)",
        )


def _optimize_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--no-optimize",
        dest="optimize",
        action="store_false",
        help="emit one ONNX op per Keras operation, for debugging: no faster forms of "
        "convolutions, no exact graph rewrites (ZeroPadding folded into Conv pads ...)",
    )


def _precision_option(command: argparse.ArgumentParser, *, io_dtype: bool = False) -> None:
    command.add_argument(
        "--precision",
        default="float32",
        choices=["float32", "float16", "int8"],
        help="arithmetic and weights of the model (default float32; float16 is compared at "
        "float16's tolerances, see convc.precision; int8 needs --calibration, see docs/int8.md)",
    )
    if io_dtype:
        command.add_argument(
            "--io-dtype",
            default="float32",
            choices=["float32", "float16"],
            help="dtype of a float16 model's inputs and outputs (default float32)",
        )


def _int8_options(command: argparse.ArgumentParser) -> None:
    from convc.quantize import CALIBRATION_METHODS, DEFAULT_CALIBRATION_COUNT

    group = command.add_argument_group("int8 (--precision int8, docs/int8.md)")
    group.add_argument(
        "--calibration",
        metavar="FILE|DIR|random",
        help="samples that set the activation ranges: .npy, .npz (by input name), a folder of "
        "images or .npy files, or 'random' (standard-normal, for random weights)",
    )
    group.add_argument(
        "--calibration-method",
        default="minmax",
        choices=CALIBRATION_METHODS,
        help="how ranges are set (default minmax; percentile and entropy ignore outliers)",
    )
    group.add_argument(
        "--calibration-count",
        type=_count,
        default=DEFAULT_CALIBRATION_COUNT,
        metavar="N",
        help=f"samples that calibrate (default {DEFAULT_CALIBRATION_COUNT}; check holds the "
        "rest out)",
    )
    group.add_argument(
        "--keep-float",
        action="append",
        default=[],
        metavar="LAYER",
        help="keep a layer float32: a name, or first/last (the first/last layer with weights); "
        "repeatable",
    )
    group.add_argument(
        "--weight-bits",
        type=int,
        default=7,
        choices=(7, 8),
        help="bits of int8 weights (default 7: exact on x86 CPUs without VNNI; 8 for VNNI, "
        "ARM, GPUs)",
    )


def _input_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="[NAME=]FILE",
        help="input from .npy (NAME=FILE.npy, or FILE.npy for the only input) "
        "or .npz (arrays by input name); repeatable",
    )
    command.add_argument(
        "--random",
        action="store_true",
        help="random standard-normal inputs (the default without --input)",
    )
    command.add_argument(
        "--input-seed",
        type=_seed,
        default=0,
        metavar="N",
        help="seed of the random inputs (default 0)",
    )
    command.add_argument(
        "--batch",
        type=_count,
        default=1,
        metavar="B",
        help="batch size of random inputs when the batch is dynamic (default 1)",
    )


def _provider_option(command: argparse.ArgumentParser) -> None:
    from convc.runtime import PROVIDER_CHOICES

    command.add_argument(
        "--provider",
        default="cpu",
        choices=PROVIDER_CHOICES,
        help="ONNX Runtime execution provider (default cpu; auto picks the best)",
    )


def _max_memory_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--max-memory",
        type=_size,
        default=None,
        metavar="SIZE",
        help="refuse before running when the estimated activations and weights exceed SIZE "
        "(512M, 8G, 1.5GiB; default 8G, or 3/4 of this machine's memory where that is less)",
    )


def _tolerance_options(command: argparse.ArgumentParser, *, default: bool) -> None:
    from convc.compare import DEFAULT_ATOL, DEFAULT_RTOL

    rtol, atol = (DEFAULT_RTOL, DEFAULT_ATOL) if default else (None, None)
    command.add_argument(
        "--rtol",
        type=_tolerance,
        default=rtol,
        metavar="R",
        help=f"relative tolerance (default {rtol if default else 'as recorded'})",
    )
    command.add_argument(
        "--atol",
        type=_tolerance,
        default=atol,
        metavar="A",
        help=f"absolute tolerance (default {atol if default else 'as recorded'})",
    )


def _input_shape_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--input-shape",
        action="append",
        metavar="[NAME=]DIMS",
        help="the dimensions after the batch of a Keras model file's input, where the file "
        "leaves them unknown (e.g. 224,224,3); repeat with NAME= for several inputs",
    )


def _replace_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--replace",
        action="append",
        metavar="NAME=CALL",
        help="put a .conv layer call in the place of the layer NAME (a Lambda or custom layer, "
        "whose code convc never runs), e.g. --replace 'lambda_1=Rescaling(0.00392156862745098, "
        "offset=-0.5)'; repeatable",
    )


def _weights_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--weights",
        metavar="FILE",
        help="weights: .npz (keys 'layer/variable') or Keras .weights.h5",
    )
    command.add_argument(
        "--seed",
        type=_seed,
        default=0,
        metavar="N",
        help="seed of the initializers when no --weights are given (default 0)",
    )


def _load(args: argparse.Namespace, path: str):
    """Read and resolve a .conv file or import a Keras model file, keeping the .conv text for
    error carets. A model file's weights become the default of ``--weights`` (with
    ``--replace``, the replaced layers' come from ``--weights``)."""
    from convc.compiler import (
        check_no_input_shapes,
        is_model_file,
        load_source,
        read_source,
        resolve_with,
    )
    from convc.replace import from_options

    args.loaded = (path, None)
    replace = from_options(getattr(args, "replace", None))
    text = None
    if is_model_file(path):
        source = load_source(
            path,
            input_shapes=_shapes(getattr(args, "input_shape", None)),
            replace=replace,
            weights=getattr(args, "weights", None),
        )
        args.weights = source.weights_for(getattr(args, "weights", None), path)
        model = source.model
    else:
        check_no_input_shapes(path, _shapes(getattr(args, "input_shape", None)))
        try:
            text = read_source(path)
        except ConvcError as error:  # not UTF-8: show the line, the undecodable byte replaced
            if error.span is not None:
                args.loaded = (path, Path(path).read_bytes().decode("utf-8-sig", "replace"))
            raise
        args.loaded = (path, text)
        model = resolve_with(text, replace)
    for warning in model.warnings:
        _say(render(warning, text, path).replace(": error: ", ": warning: ", 1), file=sys.stderr)
    return model


def _shapes(given: list[str] | None) -> dict[str, tuple[int, ...]]:
    """``--input-shape 224,224,3`` (every input) or ``--input-shape NAME=224,224,3``."""
    shapes: dict[str, tuple[int, ...]] = {}
    for text in given or []:
        name, _, dims = text.rpartition("=")
        try:
            shape = tuple(int(d) for d in dims.replace("x", ",").split(","))
        except ValueError:
            shape = ()
        if not shape or any(d < 1 for d in shape):
            raise ConvcError(
                f"--input-shape {text!r}: expected the dimensions after the batch, e.g. "
                "224,224,3 (or NAME=224,224,3 for one input)"
            )
        shapes[name] = shape
    return shapes


@collector_paused
def _import(args: argparse.Namespace) -> int:
    from shlex import quote

    from convc.arrays import npz_bytes
    from convc.importer import import_file
    from convc.limits import MAX_SOURCE_BYTES
    from convc.onnxfile import write_files
    from convc.replace import from_options, source_weights

    args.loaded = (args.model, None)
    imported = import_file(
        args.model,
        input_shapes=_shapes(args.input_shape),
        replace=from_options(args.replace),
        placeholders=True,
    )
    output = Path(args.output) if args.output else Path(args.model).with_suffix(".conv")
    if imported.model is not None:  # a replaced layer with weights has none to write
        source_weights(imported.model, imported.weights, imported.replaced, None, args.model)
    if imported.weights is None and args.weights_out and imported.weights_note is None:
        raise ConvcError("the file has no weights to write (an architecture-only JSON)")
    files = [(output, [imported.text.encode("utf-8")])]
    if imported.weights is not None:
        weights_out = Path(args.weights_out) if args.weights_out else output.with_suffix(".npz")
        files.append((weights_out, [npz_bytes(imported.weights)]))
    write_files(files)  # the .conv and its weights together, or neither
    if imported.model is not None:
        layers, parameters = len(imported.model.layers), imported.model.parameter_count
        _say(f"wrote {output}: {layers} layers, {parameters:,} parameters")
    else:
        count = len(imported.placeholders)
        _say(f"wrote {output}: {count} placeholder line{'s' if count > 1 else ''} to edit")
    if imported.weights is not None:
        _say(f"wrote {files[1][0]}: {len(imported.weights)} arrays (build with --weights)")
    size = len(files[0][1][0])
    if size > MAX_SOURCE_BYTES and imported.model is not None:
        same = [quote(args.model)]  # the options this import had, which a build takes too
        same += [f"--input-shape {quote(shape)}" for shape in args.input_shape or ()]
        same += [f"--replace {quote(call)}" for call in args.replace or ()]
        _say(
            f"{output}: note: the text is {size:,} bytes, more than the {MAX_SOURCE_BYTES:,} that "
            f"convc reads of a .conv file: build the model file itself, as in convc build "
            f"{' '.join(same)}, which compiles the same model",
            file=sys.stderr,
        )
    if not imported.placeholders:
        return EXIT_OK
    for placeholder in imported.placeholders:
        _say(
            f"{output}:{placeholder.line}:1: warning: a placeholder for the "
            f"{placeholder.class_name} layer {placeholder.name!r} ({placeholder.detail}), "
            "whose code convc never runs: replace the line with the layer call that computes "
            f"the same, or import again with --replace {quote(placeholder.name + '=CALL')}",
            file=sys.stderr,
        )
    if imported.weights_note is not None:
        _say(
            f"{args.model}: warning: the weights were not written: "
            f"{imported.weights_note}; import again with --replace to write them",
            file=sys.stderr,
        )
    _say(
        f"convc: {output} will not build until its placeholders are replaced "
        f"(exit status {EXIT_PLACEHOLDERS})",
        file=sys.stderr,
    )
    return EXIT_PLACEHOLDERS


def _options(args: argparse.Namespace):
    """The build options the command's flags give."""
    from convc.options import BuildOptions

    return BuildOptions(
        target=getattr(args, "target", None),
        opset=getattr(args, "opset", None),
        io_layout=getattr(args, "io_layout", "keras"),
        optimize=getattr(args, "optimize", True),
        seed=getattr(args, "seed", 0),
        precision=getattr(args, "precision", "float32"),
        io_dtype=getattr(args, "io_dtype", "float32"),
        calibration=getattr(args, "calibration", None),
        calibration_method=getattr(args, "calibration_method", "minmax"),
        calibration_count=getattr(args, "calibration_count", 64),
        keep_float=tuple(getattr(args, "keep_float", ())),
        weight_bits=getattr(args, "weight_bits", 7),
    )


@collector_paused
def _build(args: argparse.Namespace) -> int:
    from convc.api import build_and_save, workarounds

    model = _load(args, args.source)
    options = _options(args)
    # A model file's own weights were loaded for this build alone: lowering may let them go.
    weights, args.weights = args.weights, None
    output = Path(args.output) if args.output else Path(args.source).with_suffix(".onnx")
    saved = build_and_save(
        model,
        output,
        weights,
        options=options,
        consume_weights=isinstance(weights, dict),
        max_memory=args.max_memory,
    )
    proto, written = saved.model, saved.files
    opset = proto.opset_import[0].version
    _say(
        f"wrote {output}: {len(model.layers)} layers, {len(proto.graph.node)} nodes, "
        f"{model.parameter_count:,} parameters, target {options.target_name}, opset {opset}"
        + (f", {options.precision}" if options.precision != "float32" else "")
        + (f", and its weights in {written[0]}" if len(written) > 1 else "")
    )
    if options.precision == "int8":
        from convc.quantize import float32_layers, float32_line

        kept = float32_line(float32_layers(proto))
        if kept:
            _say(f"  {kept}")
    for line in workarounds(proto):
        _say(f"  workaround for {options.target_name}: {line}")
    return EXIT_OK


@collector_paused
def _summary(args: argparse.Namespace) -> int:
    from convc.summary import summary

    _say(summary(_load(args, args.source)))
    return EXIT_OK


def _inputs(args: argparse.Namespace) -> list[str] | None:
    """The --input specs, or None for random inputs."""
    if args.input and args.random:
        raise ConvcError("give --input or --random, not both")
    return args.input or None


def _run(args: argparse.Namespace) -> int:
    from convc.api import is_conv, run
    from convc.arrays import npz_bytes
    from convc.compiler import is_model_file, write_bytes
    from convc.replace import from_options

    conv = is_conv(Path(args.model)) or is_model_file(args.model)
    model = _load(args, args.model) if conv else Path(args.model)
    # a .conv or model file was loaded with its replacements; an .onnx model refuses them
    replace = None if conv else from_options(args.replace)
    args.loaded = args.loaded if conv else (args.model, None)
    result = run(
        model,
        _inputs(args),
        runtime=args.runtime,
        provider=args.provider,
        weights=args.weights,
        options=_options(args),
        batch=args.batch,
        input_seed=args.input_seed,
        replace=replace,
        max_memory=args.max_memory,
    )
    _say(f"runtime: {result.runtime} ({result.device})")
    for name, value in result.outputs.items():
        stats = (
            f"min {value.min():.6g}  max {value.max():.6g}  mean {value.mean():.6g}"
            if value.size
            else "empty"
        )
        _say(f"{name}: shape {tuple(value.shape)} {value.dtype}  {stats}")
    if args.output:
        write_bytes(npz_bytes(result.outputs), args.output)
        _say(f"wrote {args.output}")
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    from convc.api import check
    from convc.int8_check import Int8CheckReport

    model = _load(args, args.source)
    # int8: the held-out inputs are the given ones, or the calibration's others
    report = check(
        model,
        args.weights,
        _inputs(args),
        options=_options(args),
        provider=args.provider,
        rtol=args.rtol,
        atol=args.atol,
        batch=args.batch,
        input_seed=args.input_seed,
        max_memory=args.max_memory,
    )
    if isinstance(report, Int8CheckReport):
        _say(f"{args.source}: int8, onnxruntime {report.provider}")
    else:
        x = report.input_shapes
        shapes = ", ".join(
            f"{name} {shape}" if len(x) > 1 else str(shape) for name, shape in x.items()
        )
        _say(f"{args.source}: input {shapes}, onnxruntime {report.provider}")
    _say(report.render())
    return EXIT_OK if report.ok else EXIT_USER_ERROR


def _golden_record(args: argparse.Namespace) -> int:
    from convc import golden
    from convc.replace import from_options

    weights = args.weights  # the file given; _load puts a model file's own arrays there
    _load(args, args.source)  # resolve first, so errors point into the source
    recording = golden.record(
        Path(args.source),
        Path(args.directory),
        weights=Path(weights) if weights else None,
        replace=from_options(args.replace),
        options=_options(args),
        sets=args.sets,
        batch=args.batch,
        rtol=args.rtol,
        atol=args.atol,
        provider=args.provider,
        draw=args.draw,
        allow_weak=args.allow_weak,
        max_memory=args.max_memory,
    )
    _say(recording.render())
    return EXIT_OK


def _golden_verify(args: argparse.Namespace) -> int:
    from convc import golden

    verification = golden.verify(
        Path(args.directory),
        provider=args.provider,
        rtol=args.rtol,
        atol=args.atol,
        max_memory=args.max_memory,
    )
    _say(verification.render())
    return EXIT_OK if verification.passes(strict=args.strict) else EXIT_USER_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
