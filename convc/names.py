"""Names: Keras's snake_case stem of a class's automatic layer names and weight-file keys, and
the one generator of unique names that the passes share."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable


@functools.lru_cache(maxsize=1024)  # a class's name is asked for once a layer, or more
def snake_case(class_name: str) -> str:
    """Keras's ``to_snake_case``: Conv2DTranspose -> conv2d_transpose, UpSampling2D ->
    up_sampling2d."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", class_name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


class UniqueNames:
    """Names kept unique by a numeric suffix: ``name``, then ``name_1``, ``name_2`` ... (``first``
    is the first suffix tried). The emitter's node and value names, the importer's layer and
    variable names and the float16 pass's new values all come from one."""

    def __init__(self, taken: Iterable[str] = (), *, first: int = 1) -> None:
        self.taken = set(taken)
        self.first = first
        self.next_suffix: dict[str, int] = {}
        """Per name, a suffix below which every one is taken: names are never freed, so a
        thousand layers of one name cost a thousand lookups, not half a million."""

    def __contains__(self, name: object) -> bool:
        return name in self.taken

    def add(self, name: str) -> None:
        """Mark ``name`` as taken, as it is."""
        self.taken.add(name)

    def unique(self, name: str) -> str:
        """``name``, or ``name`` with the first suffix that is free; taken from now on."""
        if name not in self.taken:  # free: no suffix to remember (a name has one once taken)
            self.taken.add(name)
            return name
        candidate, suffix = name, self.next_suffix.get(name, self.first)
        while candidate in self.taken:
            candidate = f"{name}_{suffix}"
            suffix += 1
        self.next_suffix[name] = suffix
        self.taken.add(candidate)
        return candidate
