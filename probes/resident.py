"""Where a split's tokens live while a probe trains: resident on the device, or streamed.

Why: re-reading the fp16 memory map and casting it to float32 with numpy every batch of every
epoch of every trial cost far more than the probe step itself (issue #17). A split is now
placed once per worker process and reused by every trial on it:

- ``fp16``: the store's fp16 tokens as one tensor on the training device; each batch is
  gathered and cast to float32 there (fp16 -> fp32 is exact, so fp32 results are identical
  to the memory-map path).
- ``fp32``: a float32 copy on the device (twice the memory; no cast per batch).
- ``stream``: the split does not fit the memory budget; batches are read from the memory map
  in chunks into (on CUDA pinned) host memory and the next batch is copied on a side CUDA
  stream while the current one trains. On CPU it is the same chunked path without streams.
- ``memmap``: the path before #17 (numpy cast per batch), kept for comparison.

``auto`` picks ``fp16`` on CUDA and the fastest measured CPU placement (``stream``:
``benchmarks/gpu_data.py --device cpu``), and ``stream`` whenever a resident placement exceeds
the budget. The budget comes from ``UNMUTE_RESIDENT_BYTES`` or the caller (tests force streaming).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch
from torch import Tensor

logger = logging.getLogger(__name__)

Placement = Literal["auto", "fp16", "fp32", "stream", "memmap"]
PLACEMENTS: tuple[str, ...] = ("auto", "fp16", "fp32", "stream", "memmap")
# On CPU the chunked fp16 read with a torch cast per batch measured fastest (torch's cast is
# vectorised, numpy's is not; the page cache is shared by the node's workers, a resident copy
# is private to one): benchmarks/gpu_data.py --device cpu, table in the README.
CPU_AUTO: Placement = "stream"
BUDGET_ENV = "UNMUTE_RESIDENT_BYTES"


@dataclass(frozen=True)
class Streamed:
    """Tokens left on the host (memory map), read in chunks per batch: ``shape`` like an array."""

    array: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    def __len__(self) -> int:
        return int(self.array.shape[0])


def split_bytes(data, placement: str) -> int:
    """Bytes the split's tokens (and cls) take when placed ``placement``."""
    count = int(np.prod(data.tokens.shape))
    if data.cls is not None:
        count += int(np.prod(data.cls.shape))
    return count * (4 if placement == "fp32" else 2)


def default_budget(device: torch.device) -> int:
    """The worker's budget for resident splits: ``UNMUTE_RESIDENT_BYTES``, else half of the
    free device memory (CUDA) or a quarter of the machine's memory (CPU)."""
    if os.environ.get(BUDGET_ENV):
        return int(float(os.environ[BUDGET_ENV]))
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return free // 2
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return pages // 4


def resolve_placement(placement: str, data, device: torch.device, budget: int | None = None) -> str:
    """The concrete placement of ``data`` on ``device``: ``auto`` picks fp16 on CUDA and
    ``CPU_AUTO`` on CPU; any resident placement over ``budget`` becomes ``stream``."""
    if placement not in PLACEMENTS:
        raise ValueError(
            f"train.placement={placement!r} is not valid; choose one of {', '.join(PLACEMENTS)}."
        )
    if placement == "auto":
        placement = "fp16" if device.type == "cuda" else CPU_AUTO
    if placement in ("fp16", "fp32"):
        budget = default_budget(device) if budget is None else budget
        need = split_bytes(data, placement)
        if need > budget:
            logger.info(
                "split of %.2f GB (%s) exceeds the resident budget of %.2f GB: streaming it",
                need / 1e9,
                placement,
                budget / 1e9,
            )
            return "stream"
    return placement


def _to(array, device: torch.device, dtype: torch.dtype | None = None) -> Tensor:
    tensor = array if isinstance(array, Tensor) else torch.from_numpy(np.array(array))  # a copy
    return tensor.to(device=device, dtype=dtype or tensor.dtype)


def place(data, placement: str, device: torch.device, budget: int | None = None):
    """``data`` (a ``ProbeData``) with its tokens placed as ``placement`` (resolved against the
    budget). Labels, cls and padding masks are small: they go to the device as they are."""
    placement = resolve_placement(placement, data, device, budget)
    if placement == "memmap":
        return data
    if placement == "stream":
        tokens = data.tokens if isinstance(data.tokens, Streamed) else Streamed(data.tokens)
        return replace(data, tokens=tokens)
    dtype = torch.float32 if placement == "fp32" else torch.float16
    return replace(
        data,
        tokens=_to(data.tokens, device, dtype),
        labels=_to(data.labels, device),
        cls=None if data.cls is None else _to(data.cls, device, dtype),
        padding_mask=None if data.padding_mask is None else _to(data.padding_mask, device),
    )


def placement_of(data) -> str:
    """The placement ``data`` is in now (for result rows and logs)."""
    tokens = data.tokens
    if isinstance(tokens, Streamed):
        return "stream"
    if isinstance(tokens, Tensor):
        return "fp32" if tokens.dtype == torch.float32 else "fp16"
    return "memmap"


def iter_streamed(data, indices: list[np.ndarray | slice], device: torch.device, load) -> Iterator:
    """Batches of a streamed split: rows read from the host map per batch (fp16 host copy,
    pinned on CUDA), cast to float32 on ``device``; on CUDA the next batch's copy runs on a
    side stream while the caller trains on the current one."""
    array = data.tokens.array
    cuda = device.type == "cuda"
    side = torch.cuda.Stream(device) if cuda else None

    def fetch(index):
        rows = array[index]  # a fancy index copies the rows already; a slice is a view
        host = torch.from_numpy(rows if rows.flags.writeable else np.array(rows))
        if cuda:
            host = host.pin_memory()
            with torch.cuda.stream(side):
                rows = host.to(device, non_blocking=True)
                done = torch.cuda.Event()
                done.record(side)
            return rows, done, host
        return host, None, host

    pending = fetch(indices[0]) if indices else None
    for i, index in enumerate(indices):
        rows, done, _host = pending
        if i + 1 < len(indices):
            pending = fetch(indices[i + 1])  # overlaps the current batch's step on CUDA
        if done is not None:
            torch.cuda.current_stream(device).wait_event(done)
            rows.record_stream(torch.cuda.current_stream(device))
        yield load(data, index, device, tokens=rows)
