"""Several store entries read as one split, without copying their token maps.

BirdSet trains on its 64-shot set plus five cached mixup variants (``train``,
``train_mix0..4``): six entries of up to tens of gigabytes. :class:`ConcatRows` stacks their
memory maps along the first axis behind the two operations a probe's batch reader uses
(``shape`` and ``rows[index]`` with a slice or sorted index array), so nothing is copied
until a batch is read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True, eq=False)
class ConcatRows:
    """Row-wise concatenation of arrays that share all but their first dimension."""

    parts: tuple[np.ndarray, ...]

    def __post_init__(self) -> None:
        if not self.parts:
            raise ValueError("ConcatRows needs at least one array.")
        tail = {tuple(p.shape[1:]) for p in self.parts}
        if len(tail) != 1 or len({p.dtype for p in self.parts}) != 1:
            raise ValueError(
                f"cannot stack rows of shapes/dtypes {[(p.shape, p.dtype) for p in self.parts]}."
            )

    @property
    def offsets(self) -> np.ndarray:
        return np.cumsum([0] + [len(p) for p in self.parts])

    @property
    def shape(self) -> tuple[int, ...]:
        return (int(self.offsets[-1]), *self.parts[0].shape[1:])

    @property
    def dtype(self) -> np.dtype:
        return self.parts[0].dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = np.concatenate([np.asarray(p) for p in self.parts])
        return out if dtype is None else out.astype(dtype)

    def __getitem__(self, index: Any) -> np.ndarray:
        if isinstance(index, (int, np.integer)):
            index = np.array([int(index)])
            return self[index][0]
        if isinstance(index, slice):
            index = np.arange(*index.indices(len(self)))
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        index = np.where(index < 0, index + len(self), index)
        offsets = self.offsets
        which = np.searchsorted(offsets, index, side="right") - 1
        out = np.empty((len(index), *self.shape[1:]), dtype=self.dtype)
        for k in np.unique(which):
            sel = which == k
            local = index[sel] - offsets[k]
            order = np.argsort(local, kind="stable")
            rows = np.empty((len(local), *self.shape[1:]), dtype=self.dtype)
            rows[order] = self.parts[k][local[order]]  # read forward through the memmap
            out[sel] = rows
        return out


def concat(arrays: Sequence[np.ndarray | None]) -> ConcatRows | np.ndarray | None:
    """One array-like over ``arrays`` (None if all are None; the array itself if only one)."""
    present = [a for a in arrays if a is not None]
    if not present:
        return None
    if len(present) != len(arrays):
        raise ValueError("some splits have this array and others do not; cannot combine them.")
    return present[0] if len(present) == 1 else ConcatRows(tuple(present))
