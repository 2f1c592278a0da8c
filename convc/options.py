"""How a .conv source becomes an ONNX model: one frozen ``BuildOptions`` that ``convc.build``,
``convc.run``, ``convc.check``, ``convc.golden.record`` and the compiler take, instead of the
same keywords threaded through each of them.

The options are checked when they are made: an unknown target, an opset the target cannot read,
an unknown input/output layout or a bad seed is a ``ConvcError`` at construction.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_args

from convc.diagnostics import ConvcError
from convc.targets import DEFAULT_TARGET, RUNTIMES, TargetName, get_target, resolve_opset

if TYPE_CHECKING:
    from convc.precision import IODtype, Precision
    from convc.quantize import CalibrationMethod, CalibrationSource, WeightBits

IOLayout = Literal["keras", "channels_first", "channels_last"]
IO_LAYOUTS: tuple[IOLayout, ...] = get_args(IOLayout)
"""The order of the model's inputs and outputs: Keras's own, or channels first / last whatever
the layers' data_format (a channels_last net with channels_first I/O carries no Transpose)."""


@dataclass(frozen=True)
class BuildOptions:
    """Options of a build. ``target``: the runtime to emit for (``convc.targets.TARGETS``;
    None is ``portable``, which runs in all of them, or for ``convc.run`` the runtime's own);
    ``opset``: the ONNX opset (None: the target's); ``io_layout``: the axis order of the
    model's inputs and outputs (``IO_LAYOUTS``); ``optimize``: the faster exact forms and graph
    rewrites (False: one ONNX op per Keras operation, for debugging); ``seed``: the seed of the
    initializers when no weights are given; ``precision``: ``float16`` makes the weights and
    the arithmetic float16 (``convc.precision``), with float32 inputs and outputs unless
    ``io_dtype`` is ``float16`` too; ``int8`` quantizes it (``convc.quantize``) with ranges
    from ``calibration`` (a path, ``"random"`` or arrays; its first ``calibration_count``
    samples) by ``calibration_method``, keeping the layers of ``keep_float`` float32, with
    weights of ``weight_bits`` bits."""

    target: TargetName | None = None
    opset: int | None = None
    io_layout: IOLayout = "keras"
    optimize: bool = True
    seed: int = 0
    precision: Precision = "float32"
    io_dtype: IODtype = "float32"
    calibration: CalibrationSource = field(default=None, compare=False)
    calibration_method: CalibrationMethod = "minmax"
    calibration_count: int = 64
    keep_float: tuple[str, ...] = ()
    weight_bits: WeightBits = 7

    def __post_init__(self) -> None:
        if self.target is not None and not isinstance(self.target, str):
            raise ConvcError(f"the target must be a name, got {self.target!r}")
        resolve_opset(get_target(self.target_name), self.opset)
        if self.io_layout not in IO_LAYOUTS:
            raise ConvcError(
                f"unknown input/output layout {self.io_layout!r}",
                help="choose one of: " + ", ".join(IO_LAYOUTS),
            )
        if not isinstance(self.optimize, bool):
            raise ConvcError(f"optimize must be True or False, got {self.optimize!r}")
        check_seed(self.seed)
        from convc.precision import check_precision

        check_precision(self.precision, self.io_dtype)
        from convc.quantize import check_int8_options

        check_int8_options(
            self.precision,
            self.calibration,
            self.calibration_method,
            self.calibration_count,
            self.keep_float,
            self.weight_bits,
            self.opset,
        )

    @property
    def target_name(self) -> TargetName:
        """The target to emit for: ``target``, or ``portable`` when it is None."""
        return DEFAULT_TARGET if self.target is None else self.target

    @property
    def resolved_opset(self) -> int:
        """The opset to emit: ``opset``, or the target's (for an int8 model at most
        ``convc.quantize.INT8_MAX_OPSET``)."""
        opset = resolve_opset(get_target(self.target_name), self.opset)
        if self.precision == "int8" and self.opset is None:
            from convc.quantize import INT8_MAX_OPSET

            return min(opset, INT8_MAX_OPSET)
        return opset

    def replace(self, **changes: Any) -> BuildOptions:
        """A copy with ``changes`` (checked again)."""
        return dataclasses.replace(self, **changes)

    def for_runtime(self, runtime: str) -> BuildOptions:
        """These options for running in ``runtime``: without a target, the runtime's own (every
        runtime is also a target)."""
        if self.target is not None:
            return self
        if runtime not in RUNTIMES:
            raise ConvcError(
                f"unknown runtime {runtime!r}", help="choose one of: " + ", ".join(RUNTIMES)
            )
        return self.replace(target=runtime)

    def non_defaults(self) -> list[str]:
        """The names of the options that differ from the defaults."""
        default = BuildOptions()
        return [
            option.name
            for option in dataclasses.fields(self)
            if _differs(getattr(self, option.name), getattr(default, option.name))
        ]


def _differs(value: Any, default: Any) -> bool:
    """Whether an option differs from its default (arrays of calibration data compare by
    whether they are given)."""
    if value is None or default is None:
        return value is not default
    return bool(value != default)


def build_options(options: BuildOptions | None = None, **keywords: Any) -> BuildOptions:
    """``options`` (or the defaults) with ``keywords`` (``target=``, ``opset=``, ...) applied:
    the older keyword form of the compiler's functions."""
    options = BuildOptions() if options is None else options
    if not isinstance(options, BuildOptions):
        raise TypeError(f"options must be a BuildOptions, got {type(options).__name__}")
    unknown = sorted(set(keywords) - {field.name for field in dataclasses.fields(BuildOptions)})
    if unknown:
        raise TypeError(f"unexpected build option(s): {', '.join(unknown)}")
    return options.replace(**keywords) if keywords else options


def check_seed(seed: Any) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ConvcError(f"the seed must be an integer from 0 to 2**63 - 1, got {seed!r}")
