"""The type checker over convc/: zero errors (mypy, configured in pyproject.toml).

The specs, the registries and the settings with few values (``Literal`` types) promise types
that only a checker holds: a rule reading a field its family's spec lacks, or a target name that
does not exist, is an error here rather than at run time.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _mypy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def mypy_available():
    if shutil.which("mypy") is None and _mypy("--version").returncode != 0:
        pytest.fail("mypy is not installed: pip install -e '.[test]'")


def test_convc_type_checks(mypy_available):
    result = _mypy()
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def test_the_checker_sees_a_type_error(mypy_available, tmp_path):
    """The same configuration fails on a spec field that does not exist."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from convc.specs import ConvSpec\n\n\ndef f(spec: ConvSpec) -> int:\n"
        "    return spec.unit_count\n"
    )
    result = _mypy("--config-file", str(ROOT / "pyproject.toml"), str(probe))
    assert result.returncode == 1 and "unit_count" in result.stdout
