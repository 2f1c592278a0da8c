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
