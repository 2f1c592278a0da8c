"""A pytest plugin for keeping convc goldens in a project's own test suite.

Installed with convc (entry point ``pytest11``), it provides the ``convc_golden`` fixture::

    def test_segmenter_golden(convc_golden):
        convc_golden("tests/goldens/segmenter")

The fixture is a function ``check(directory, *, provider="cpu", rtol=None, atol=None,
strict=False)`` that runs ``convc.golden.verify``. When the numbers changed, the test fails with
the report (both verdicts, and each failing output's worst element) and no traceback. When only
the compiler's output changed, it passes with a ``convc.golden.CompilerOutputChanged`` warning,
or fails with ``strict=True``. A directory that is not a readable golden fails the test with the
error. It returns the ``Verification``.

Without pytest, ``convc.golden.assert_golden(directory)`` raises ``AssertionError`` instead.
The plugin imports convc's compiler and onnxruntime only when the fixture is used.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Any

import pytest


def check_golden(
    directory: str | os.PathLike,
    *,
    provider: str = "cpu",
    rtol: float | None = None,
    atol: float | None = None,
    strict: bool = False,
) -> Any:
    """Verify a golden directory inside a test: fail it if the numbers changed, warn if only the
    compiler's output did."""
    from pathlib import Path

    from convc import golden
    from convc.diagnostics import ConvcError, render

    try:
        verification = golden.verify(Path(directory), provider=provider, rtol=rtol, atol=atol)
    except ConvcError as error:
        pytest.fail(render(error, None, str(directory)), pytrace=False)
    if not verification.passes(strict=strict):
        pytest.fail(verification.render(), pytrace=False)
    if verification.compiler_output != golden.UNCHANGED:
        warnings.warn(golden.CompilerOutputChanged(verification.render()), stacklevel=2)
    return verification


@pytest.fixture
def convc_golden() -> Callable[..., Any]:
    """``check(directory, *, provider="cpu", rtol=None, atol=None, strict=False)``: verify a
    convc golden directory, failing the test with a readable report when its numbers changed."""
    return check_golden
