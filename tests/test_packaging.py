"""The installed package is the source tree: a plain ``pip install .`` (README's first command)
installs only the packages pyproject.toml lists, so every folder of convc must be listed."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_folder_of_convc_is_a_listed_package():
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    folders = {
        ".".join(path.relative_to(ROOT).parts)
        for path in [ROOT / "convc", *(ROOT / "convc").rglob("*")]
        if path.is_dir() and path.name != "__pycache__" and any(path.iterdir())
    }
    assert folders <= listed, f"not in pyproject.toml's packages: {sorted(folders - listed)}"


def test_a_wheel_carries_the_grammar_and_every_module(tmp_path):
    """A plain ``pip install .`` installs what the source tree imports, grammar included."""
    import shutil
    import subprocess
    import sys
    import zipfile

    source = tmp_path / "source"
    shutil.copytree(ROOT / "convc", source / "convc", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    # Built as `pip install .` builds it: in an isolated environment with the setuptools that
    # pyproject.toml asks for (a fresh venv's own is older).
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q"]
        + ["-w", str(tmp_path / "dist"), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("convc-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {str(p.relative_to(ROOT)) for p in (ROOT / "convc").rglob("*.py")}
    assert modules <= names, sorted(modules - names)


def test_the_source_tree_imports_from_the_repository_root():
    """A script run from the repository's root imports ./convc first, not the installed copy:
    the source tree itself must work."""
    import subprocess
    import sys

    script = (
        "import convc, pathlib; "
        "assert pathlib.Path(convc.__file__).parent == pathlib.Path('convc').resolve(); "
        "print(len(convc.build_text('Input(shape=(4, 4, 3))\\nConv2D(2, 3)\\n').graph.node))"
    )
    ran = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert ran.stdout.strip().isdigit()
