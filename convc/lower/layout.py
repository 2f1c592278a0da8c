"""Layout helpers that several families' rules share: bringing a merge's inputs to one order,
and laying a constant out in a value's physical order."""

from __future__ import annotations

import numpy as np

from convc.lower.emitter import Emitter, Value, channels_first, identity
from convc.specs import SpatialSpec


def common_layout(em: Emitter, xs: list[Value]) -> list[Value]:
    """The inputs of a merge in one rank and one physical order. A lower-rank input gains unit
    axes after the batch axis (Keras aligns the other axes from the right). The order is the one
    that transposes the fewest elements, so a channels_last graph merges channels-first values
    without a Transpose; ties keep the first input's order."""
    rank = max(x.rank for x in xs)
    aligned = []
    for x in xs:
        if x.rank < rank:
            x = em.in_layout(x, identity(x.rank))
            added = list(range(1, rank - x.rank + 1))
            name = em.op("Unsqueeze", [x.name, em.constant(added)], "align")
            shape = (x.shape[0], *([1] * len(added)), *x.shape[1:])
            x = Value(name, identity(rank), shape)
        aligned.append(x)

    def size(x: Value) -> int:
        return int(np.prod([d or 1 for d in x.shape]))

    candidates = list(dict.fromkeys(x.perm for x in aligned))
    best = min(candidates, key=lambda perm: sum(size(x) for x in aligned if x.perm != perm))
    return [em.in_layout(x, best) for x in aligned]


def to_physical(em: Emitter, logical: np.ndarray, x: Value) -> np.ndarray:
    """A constant broadcast in Keras's logical frame (any rank up to x's, aligned right), in x's
    physical order, with leading unit axes dropped (the broadcast is the same)."""
    full = logical.reshape((1,) * (x.rank - logical.ndim) + logical.shape).transpose(x.perm)
    while full.ndim > 1 and full.shape[0] == 1:
        full = full[0]
    return np.ascontiguousarray(full, dtype=np.float32)


def channels_first_layout(spec: SpatialSpec, rank: int) -> tuple[int, ...]:
    """The physical order, relative to Keras's, in which an ONNX op that takes channels first
    (Conv, pooling, a Resize of the spatial axes) reads a layer of ``spec``'s data_format."""
    return channels_first(rank) if spec.data_format == "channels_last" else identity(rank)
