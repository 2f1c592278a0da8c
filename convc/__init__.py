"""convc: compile Keras-style convolutional layer stacks, written as text, into ONNX.

The Python API (see README's "Python API")::

    import convc

    model = convc.build("samples/tiny.conv", options=convc.BuildOptions(target="opencv"))
    convc.save(model, "tiny.onnx")
    result = convc.run(model)                      # random inputs; result.outputs by name
    report = convc.check("samples/tiny.conv")      # every layer against the NumPy reference
    convc.golden.record("samples/tiny.conv", "golden/")
    convc.golden.verify("golden/").passes(strict=True)

``build``, ``save``, ``run``, ``check``, ``load`` and ``workarounds`` are ``convc.api``'s;
``BuildOptions`` is ``convc.options``'; ``golden`` is the ``convc.golden`` module. They are
imported on first use, so that ``import convc`` (and the command line's start) stays quick.
``convc.check`` is also the name of the module ``convc/check.py``: that module is callable, and
calling it calls ``convc.api.check``.
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
    "__version__",
    "build",
    "check",
    "golden",
    "load",
    "render",
    "run",
    "save",
    "workarounds",
]

_EXPORTS = {
    "BuildOptions": "convc.options",
    "CheckReport": "convc.check",
    "ConvcError": "convc.diagnostics",
    "render": "convc.diagnostics",
    "RunResult": "convc.api",
    "build": "convc.api",
    "load": "convc.api",
    "run": "convc.api",
    "save": "convc.api",
    "workarounds": "convc.api",
}

if TYPE_CHECKING:  # pragma: no cover
    from convc import golden
    from convc.api import RunResult, build, check, load, run, save, workarounds
    from convc.check import CheckReport
    from convc.diagnostics import ConvcError, render
    from convc.options import BuildOptions


def __getattr__(name: str) -> Any:
    if name in ("golden", "check"):  # modules; convc.check is callable as convc.api.check
        return importlib.import_module(f"convc.{name}")
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'convc' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
