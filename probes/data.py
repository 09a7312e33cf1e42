"""A split of cached embeddings (:class:`ProbeData`) and its batch-by-batch reader.

Tokens are a numpy memory map (the store's fp16 files), a tensor already placed on the device
(``probes/resident.py``: fp16 cast per batch, or float32), or ``Streamed`` (chunked reads,
prefetched on CUDA). The embedding store hands out fp16 ``np.memmap`` token maps that can be far larger than memory
as float32 (as20k train: 20k x 512 x 768). :func:`iter_batches` therefore reads one batch of rows
at a time (sorted row indices, so a memmap reads forward) and casts only that batch to float32.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

logger = logging.getLogger(__name__)

TASKS = ("multilabel", "multiclass")
ArrayLike = np.ndarray | Tensor


@dataclass(frozen=True, eq=False)  # arrays: identity, not element-wise, equality
class ProbeData:
    """One split: tokens ``[n, N, D]``, labels (``[n, C]`` {0,1} or ``[n]`` int), task."""

    tokens: ArrayLike
    labels: ArrayLike
    task: str
    cls: ArrayLike | None = None
    padding_mask: ArrayLike | None = None
    grid: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task={self.task!r} is not valid; choose one of {', '.join(TASKS)}.")
        if len(self.tokens.shape) != 3:
            raise ValueError(f"tokens must be [n, N, D], got shape {tuple(self.tokens.shape)}.")
        n = self.tokens.shape[0]
        want = 2 if self.task == "multilabel" else 1
        if len(self.labels.shape) != want or self.labels.shape[0] != n:
            raise ValueError(
                f"{self.task} labels must be {'[n, C] {0,1}' if want == 2 else '[n] int'} with "
                f"n={n}, got shape {tuple(self.labels.shape)}."
            )
        if self.cls is not None and tuple(self.cls.shape) != (n, self.tokens.shape[2]):
            raise ValueError(f"cls must be [n, D]={n, self.tokens.shape[2]}, got {self.cls.shape}.")
        if self.padding_mask is not None and tuple(self.padding_mask.shape) != (
            n,
            self.tokens.shape[1],
        ):
            raise ValueError(
                f"padding_mask must be [n, N]={(n, self.tokens.shape[1])}, got "
                f"{tuple(self.padding_mask.shape)}."
            )

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def embed_dim(self) -> int:
        return int(self.tokens.shape[2])

    @property
    def num_classes(self) -> int | None:
        """Number of classes for multilabel data (``labels.shape[1]``); None for multiclass."""
        return int(self.labels.shape[1]) if self.task == "multilabel" else None


@dataclass(frozen=True, eq=False)
class Batch:
    """One batch on a device: float32 tokens/cls, bool padding mask, labels."""

    tokens: Tensor
    labels: Tensor
    cls: Tensor | None
    padding_mask: Tensor | None
    grid: tuple[int, int] | None


_NUMPY_DTYPES = {torch.float32: np.float32, torch.long: np.int64, torch.bool: np.bool_}


def _rows(
    array: ArrayLike, index: np.ndarray | slice, device: torch.device, dtype: torch.dtype
) -> Tensor:
    """Rows ``index`` of ``array`` as a ``dtype`` tensor on ``device`` (one cast copy per batch)."""
    if isinstance(array, Tensor):
        if isinstance(index, np.ndarray):
            index = torch.as_tensor(index, device=array.device)
        rows = array[index]
        return rows.to(device=device, dtype=dtype)
    rows = np.array(array[index], dtype=_NUMPY_DTYPES[dtype])  # a writable float32 copy
    return torch.from_numpy(rows).to(device, non_blocking=True)


def load_batch(
    data: ProbeData,
    index: np.ndarray | slice,
    device: torch.device,
    tokens: Tensor | None = None,
) -> Batch:
    """Read rows ``index`` of ``data`` and cast tokens (and cls) to float32 on ``device``
    (``tokens``: those rows already read, e.g. by the streamed path)."""
    label_dtype = torch.float32 if data.task == "multilabel" else torch.long
    return Batch(
        tokens=_rows(data.tokens, index, device, torch.float32)
        if tokens is None
        else tokens.to(device=device, dtype=torch.float32),
        labels=_rows(data.labels, index, device, label_dtype),
        cls=None if data.cls is None else _rows(data.cls, index, device, torch.float32),
        padding_mask=None
        if data.padding_mask is None
        else _rows(data.padding_mask, index, device, torch.bool),
        grid=tuple(data.grid) if data.grid is not None else None,
    )


def iter_batches(
    data: ProbeData,
    batch_size: int,
    device: torch.device,
    generator: torch.Generator | None = None,
) -> Iterator[Batch]:
    """Batches of ``data``: shuffled with ``generator`` if given, else in order (contiguous)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    n = len(data)
    if generator is None:
        indices: list = [
            slice(start, min(start + batch_size, n)) for start in range(0, n, batch_size)
        ]
    else:
        order = torch.randperm(n, generator=generator).numpy()
        indices = [np.sort(order[start : start + batch_size]) for start in range(0, n, batch_size)]
    from probes.resident import Streamed, iter_streamed

    if isinstance(data.tokens, Streamed):
        yield from iter_streamed(data, indices, device, load_batch)
        return
    for index in indices:
        yield load_batch(data, index, device)
