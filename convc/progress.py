"""Progress of long work (layers lowered, weights initialized and written, input sets run) on
stderr, drawn by ``rich`` when stderr is a terminal and the work has taken longer than ``DELAY``
seconds; silent otherwise (a pipe, a file, a test's captured stream), so that quick builds and
scripts see nothing.

``track(items, description, total=...)`` wraps a loop; ``bar(description, total)`` gives an
object whose ``advance(n)`` counts work done elsewhere (bytes written). Nothing is drawn until
``DELAY`` seconds have passed, so a task that ends sooner costs a clock read per step. The bar
is transient: it is erased when the work ends, leaving the command's own output alone.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

T = TypeVar("T")

DELAY = 1.0
"""Seconds of work before a bar appears."""


def enabled(stream=None) -> bool:
    """Whether progress is shown on ``stream`` (default: stderr now): when it is a terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class Bar:
    """A count of work toward ``total``, drawn once ``DELAY`` seconds have passed."""

    def __init__(self, description: str, total: float | None, unit: str = "") -> None:
        self.description, self.total, self.unit = description, total, unit
        self.done = 0.0
        self.stream = sys.stderr
        self._on = enabled(self.stream)
        self._start = time.monotonic()
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def advance(self, amount: float = 1) -> None:
        self.done += amount
        if not self._on:
            return
        if self._progress is None:
            if time.monotonic() - self._start < DELAY:
                return
            self._progress, self._task = self._show()
        if self._task is not None:
            self._progress.update(self._task, completed=self.done)

    def _show(self) -> tuple[Progress, TaskID]:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        console = Console(file=self.stream, force_terminal=True)
        counter = (
            TextColumn("{task.completed:,.0f} / {task.total:,.0f} " + self.unit)
            if self.unit
            else MofNCompleteColumn()
        )
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            counter,
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        progress.start()
        return progress, progress.add_task(self.description, total=self.total)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


@contextmanager
def bar(description: str, total: float | None, unit: str = "") -> Iterator[Bar]:
    shown = Bar(description, total, unit)
    try:
        yield shown
    finally:
        shown.close()


def track(
    items: Iterable[T], description: str, *, total: int | None = None, unit: str = ""
) -> Iterator[T]:
    """The items of ``items``, counted on a bar (see the module's docstring)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with bar(description, total, unit) as shown:
        for item in items:
            yield item
            shown.advance()
