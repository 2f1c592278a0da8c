"""convc: compile Keras-style convolutional layer stacks, written as text, into ONNX.

The Python API (see README's "Python API")::

    import convc

    model = convc.build("samples/tiny.conv", options=convc.BuildOptions(target="opencv"))
    convc.save(model, "tiny.onnx")
    model = convc.build_text("Input(shape=(8, 8, 3))\nConv2D(4, 3)\n")   # text, not a path
    result = convc.run(model)                      # random inputs; result.outputs by name
    report = convc.check("samples/tiny.conv")      # every layer against the NumPy reference
    convc.golden.record("samples/tiny.conv", "golden/")
    convc.golden.verify("golden/").passes(strict=True)

``load``, ``load_text``, ``build``, ``build_text``, ``save``, ``build_and_save``, ``run``,
``check`` and ``workarounds`` are ``convc.api``'s; ``BuildOptions`` is ``convc.options``';
``golden`` is the ``convc.golden`` module. They are imported on first use, so that
``import convc`` (and the command line's start) stays quick.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "BuildOptions",
    "CheckReport",
    "ConvcError",
    "RunResult",
    "Saved",
    "__version__",
    "build",
    "build_and_save",
    "build_text",
    "check",
    "golden",
    "load",
    "load_text",
    "render",
    "run",
    "save",
    "workarounds",
]

_EXPORTS = {
    "BuildOptions": "convc.options",
    "CheckReport": "convc.layer_check",
    "ConvcError": "convc.diagnostics",
    "render": "convc.diagnostics",
    "RunResult": "convc.api",
    "Saved": "convc.api",
    "build": "convc.api",
    "build_and_save": "convc.api",
    "build_text": "convc.api",
    "check": "convc.api",
    "load": "convc.api",
    "load_text": "convc.api",
    "run": "convc.api",
    "save": "convc.api",
    "workarounds": "convc.api",
}

if TYPE_CHECKING:  # pragma: no cover
    from convc import golden
    from convc.api import (
        RunResult,
        Saved,
        build,
        build_and_save,
        build_text,
        check,
        load,
        load_text,
        run,
        save,
        workarounds,
    )
    from convc.diagnostics import ConvcError, render
    from convc.layer_check import CheckReport
    from convc.options import BuildOptions


def __getattr__(name: str) -> Any:
    if name == "golden":
        return importlib.import_module("convc.golden")
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'convc' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
