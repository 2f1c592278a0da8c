"""The ``convc`` command line: argument parsing, exit codes and rendering of diagnostics.

Exit status: 0 success, 1 an error in the user's input (rendered as ``FILE:LINE:COL: error: ...``),
2 a usage error (bad flags), 3 an internal error (a convc bug: reported plainly, with a request to
report it; ``--debug`` shows the traceback). Each command calls the public API and nothing more.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

from convc import __version__
from convc.diagnostics import ConvcError, render

EXIT_OK, EXIT_USER_ERROR, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    source: str | None = None
    filename = getattr(args, "source", None) or "<input>"
    try:
        if getattr(args, "source", None):
            from convc.compiler import read_source

            source = read_source(args.source)
        return args.handler(args, source)
    except ConvcError as error:
        print(render(error, source, filename), file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("convc: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # a bug: say so, without a traceback unless asked
        if args.debug:
            traceback.print_exc()
        print(
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
    build.add_argument(
        "--opset",
        type=int,
        default=None,
        metavar="N",
        help="ONNX opset to emit (default: the newest supported)",
    )
    build.set_defaults(command="build", handler=_build)

    summary = commands.add_parser("summary", help="print a Keras-style summary of a .conv file")
    summary.add_argument("source", metavar="NET.conv")
    summary.set_defaults(command="summary", handler=_summary)
    for sub in (build, summary):
        sub.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    return parser


def _weights_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--weights",
        metavar="FILE",
        help="weights: .npz (keys 'layer/variable') or Keras .weights.h5",
    )
    command.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="N",
        help="seed of the initializers when no --weights are given (default 0)",
    )


def _build(args: argparse.Namespace, source: str) -> int:
    from convc.compiler import compile_model, resolve_text, save
    from convc.lower import DEFAULT_OPSET

    model = resolve_text(source)
    opset = DEFAULT_OPSET if args.opset is None else args.opset
    proto = compile_model(model, args.weights, seed=args.seed, opset=opset)
    output = Path(args.output) if args.output else Path(args.source).with_suffix(".onnx")
    save(proto, output)
    print(
        f"wrote {output}: {len(model.layers)} layers, {len(proto.graph.node)} nodes, "
        f"{model.parameter_count:,} parameters, opset {opset}"
    )
    return EXIT_OK


def _summary(args: argparse.Namespace, source: str) -> int:
    from convc.compiler import resolve_text
    from convc.summary import summary

    print(summary(resolve_text(source)))
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
