"""Probes that classify one global vector per clip: ``linear``, ``mlp``, ``linearc``.

These are the baselines the paper argues against: the patch-token map is first reduced to a
single vector ([cls], or the token mean for encoders without [cls]) and then classified.

Choices (not recovered from the paper, configurable):
- ``linear``: no normalisation layer in front of the linear layer (a plain ``nn.Linear``).
- ``mlp``: ``num_layers`` linear layers (default 2, i.e. one hidden layer) of width
  ``hidden_dim`` (default ``embed_dim``), GELU, optional dropout.
- ``linearc``: linear layer on a concatenation of vectors, default ``[cls, token mean]``. An
  encoder without [cls] would make that ``[mean, mean]``; there the [cls] slot is filled with the
  token max instead, so the layer still sees two distinct statistics.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from probes.pooling import ProbeHead, masked_max, pooled_vector

_SOURCES = ("auto", "cls", "mean", "max")


def _check_source(name: str, value: str) -> None:
    if value not in _SOURCES:
        raise ValueError(f"{name}={value!r} is not valid; choose one of {', '.join(_SOURCES)}.")


class LinearProbe(ProbeHead):
    """``linear``: a linear layer on [cls] (token mean when the encoder has no [cls])."""

    def __init__(self, embed_dim: int, num_classes: int, pool: str = "auto") -> None:
        super().__init__(embed_dim, num_classes)
        _check_source("pool", pool)
        self.pool = pool
        self.head = nn.Linear(embed_dim, num_classes)
        self.reset_parameters()

    def _logits(
        self, tokens: Tensor, cls: Tensor | None, mask: Tensor | None, grid: tuple[int, int] | None
    ) -> Tensor:
        return self.head(pooled_vector(tokens, cls, mask, self.pool))


class MLPProbe(ProbeHead):
    """``mlp``: a small MLP on the same vector as ``linear``."""

    def __init__(
        self,
        embed_dim: int,
        num_classes: int,
        hidden_dim: int | None = None,
        num_layers: int = 2,
        dropout: float = 0.0,
        pool: str = "auto",
    ) -> None:
        super().__init__(embed_dim, num_classes)
        _check_source("pool", pool)
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}.")
        self.pool = pool
        hidden = hidden_dim or embed_dim
        layers: list[nn.Module] = []
        width = embed_dim
        for _ in range(num_layers - 1):
            layers += [nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout)]
            width = hidden
        layers.append(nn.Linear(width, num_classes))
        self.mlp = nn.Sequential(*layers)
        self.reset_parameters()

    def _logits(
        self, tokens: Tensor, cls: Tensor | None, mask: Tensor | None, grid: tuple[int, int] | None
    ) -> Tensor:
        return self.mlp(pooled_vector(tokens, cls, mask, self.pool))


class LinearCProbe(ProbeHead):
    """``linearc``: a linear layer on concatenated clip vectors (default [cls] + token mean)."""

    def __init__(
        self,
        embed_dim: int,
        num_classes: int,
        parts: tuple[str, ...] | list[str] = ("cls", "mean"),
        dropout: float = 0.0,
    ) -> None:
        super().__init__(embed_dim, num_classes)
        parts = tuple(parts)
        if not parts:
            raise ValueError("parts must name at least one of 'cls', 'mean', 'max'.")
        for part in parts:
            if part not in ("cls", "mean", "max"):
                raise ValueError(f"parts has {part!r}; valid parts: 'cls', 'mean', 'max'.")
        self.parts = parts
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(embed_dim * len(parts), num_classes)
        self.reset_parameters()

    def _logits(
        self, tokens: Tensor, cls: Tensor | None, mask: Tensor | None, grid: tuple[int, int] | None
    ) -> Tensor:
        vectors = []
        for part in self.parts:
            if part == "cls" and cls is None:
                vectors.append(masked_max(tokens, mask))
            else:
                vectors.append(pooled_vector(tokens, cls, mask, part))
        return self.head(self.dropout(torch.cat(vectors, dim=-1)))
