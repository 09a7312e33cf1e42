"""Prototype probes: ``protobin`` (the paper's method) and ``proto`` (its float, class-bound kin).

protobin, exactly as ``shared/PAPER.md`` specifies: ``M = C * J`` real prototypes
``prototypes`` ``[M, D]`` ~ N(0, 0.02^2), class-agnostic; binarised on every forward
(``>= 0 -> +1`` else ``-1``) with an identity straight-through gradient; cosine similarity of
every token with every binarised prototype (no ReLU, no temperature); max over the non-padded
tokens; dropout (default 0); ``head = nn.Linear(M, C)``.

Implementation choice: by default (``memory_efficient=True``) the max is computed by
:func:`probes.fused.cosine_max`, chunked over ``chunk_size`` prototypes, so the ``B x M x N``
similarity tensor is never whole and the backward touches only the winning tokens; values are
the same as the literal computation (``memory_efficient=False``, kept as the reference; the
tests check both against a hand computation and against each other). At the as20k shape this
takes peak training memory from ~4.6 GB to ~0.4 GB (``benchmarks/probes.py``).

proto choices (the paper gives the outline only): prototypes ``[C * J, D]`` ~ N(0, 0.02^2),
prototype ``c * J + j`` belongs to class ``c``; similarity ReLU(cosine); pooled by the max over
tokens in eval and by the mean of the top ``topk`` (default 3) tokens in training; the
class-connected last layer is one weight per prototype to its own class (init 1) plus a class
bias (init 0); the orthogonality loss is the mean over classes of
``|| P_c P_c^T - I ||_F^2`` on the L2-normalised prototypes of class c, times ``ortho_weight``
(default 0.1), returned by ``auxiliary_loss`` and added to the loss by ``fit``. Like protobin,
proto computes its max / top-k with :func:`probes.fused.cosine_topk` by default
(``memory_efficient=False``: the literal dense computation); as20k peak training memory
~3.1 GB -> ~0.5 GB.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from probes.fused import cosine_max, cosine_topk
from probes.pooling import ProbeHead, masked_max, valid_mask


def binarize(prototypes: Tensor) -> Tensor:
    """``+1`` where ``prototypes >= 0`` else ``-1``, identity straight-through gradient."""
    hard = torch.where(prototypes >= 0, 1.0, -1.0).to(prototypes.dtype)
    # Parenthesised so the forward value is exactly +-1 ((p - p.detach()) is exactly 0).
    return hard + (prototypes - prototypes.detach())


def _check_j(prototypes_per_class: int) -> int:
    if not isinstance(prototypes_per_class, int) or prototypes_per_class < 1:
        raise ValueError(
            f"prototypes_per_class must be a positive int, got {prototypes_per_class!r}."
        )
    return prototypes_per_class


class ProtoBinProbe(ProbeHead):
    """``protobin``: binarised class-agnostic prototypes, cosine, max over tokens, linear."""

    def __init__(
        self,
        embed_dim: int,
        num_classes: int,
        prototypes_per_class: int = 20,
        dropout: float = 0.0,
        memory_efficient: bool = True,
        chunk_size: int = 512,
    ) -> None:
        super().__init__(embed_dim, num_classes)
        self.prototypes_per_class = _check_j(prototypes_per_class)
        self.memory_efficient = bool(memory_efficient)
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}.")
        self.chunk_size = int(chunk_size)
        num_prototypes = num_classes * prototypes_per_class
        self.prototypes = nn.Parameter(torch.empty(num_prototypes, embed_dim))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(num_prototypes, num_classes)
        self.reset_parameters()

    def _reset_own(self) -> None:
        nn.init.normal_(self.prototypes, std=0.02)

    def binary_prototypes(self) -> Tensor:
        """The ``{-1, +1}`` prototypes used in the forward (storable as bits)."""
        return torch.where(self.prototypes >= 0, 1.0, -1.0)

    @torch.no_grad()
    def similarity(self, tokens: Tensor) -> Tensor:
        """Cosine of every token with every binarised prototype, ``[B, M, N]`` (activation maps;
        their max over the real tokens is :meth:`scores`)."""
        self.check_tokens(tokens)
        protos_n = F.normalize(self.binary_prototypes(), dim=-1)
        return torch.matmul(protos_n, F.normalize(tokens, dim=-1).transpose(1, 2))

    @torch.no_grad()
    def class_evidence(self, scores: Tensor) -> Tensor:
        """Each prototype's contribution to each class logit, ``[B, C, M]`` (head weight x score)."""
        return self.head.weight.unsqueeze(0) * scores.unsqueeze(1)

    def scores(self, tokens: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        """Max cosine similarity of each binarised prototype over the tokens: ``[B, M]``."""
        self.check_tokens(tokens)
        mask = valid_mask(tokens, padding_mask)
        protos_n = F.normalize(binarize(self.prototypes), dim=-1)
        if not self.memory_efficient:
            sim = torch.matmul(F.normalize(tokens, dim=-1), protos_n.T)  # [B, N, M]
            return masked_max(sim, mask)
        values = cosine_max(tokens, protos_n, mask, self.chunk_size)
        if mask is not None:
            values = values.masked_fill(mask.all(dim=1, keepdim=True), 0.0)
        return values

    def _logits(
        self, tokens: Tensor, cls: Tensor | None, mask: Tensor | None, grid: tuple[int, int] | None
    ) -> Tensor:
        return self.head(self.dropout(self.scores(tokens, mask)))


class ProtoProbe(ProbeHead):
    """``proto``: float class-bound prototypes, ReLU(cosine), max / top-k pooling, ortho loss."""

    def __init__(
        self,
        embed_dim: int,
        num_classes: int,
        prototypes_per_class: int = 20,
        topk: int = 3,
        ortho_weight: float = 0.1,
        dropout: float = 0.0,
        memory_efficient: bool = True,
        chunk_size: int = 512,
    ) -> None:
        super().__init__(embed_dim, num_classes)
        self.prototypes_per_class = _check_j(prototypes_per_class)
        if topk < 1 or chunk_size < 1:
            raise ValueError(f"topk and chunk_size must be >= 1, got {topk}, {chunk_size}.")
        self.memory_efficient = bool(memory_efficient)
        self.chunk_size = int(chunk_size)
        self.topk = topk
        self.ortho_weight = float(ortho_weight)
        self.prototypes = nn.Parameter(torch.empty(num_classes * prototypes_per_class, embed_dim))
        self.class_weight = nn.Parameter(torch.empty(num_classes, prototypes_per_class))
        self.class_bias = nn.Parameter(torch.empty(num_classes))
        self.dropout = nn.Dropout(dropout)
        self.reset_parameters()

    def _reset_own(self) -> None:
        nn.init.normal_(self.prototypes, std=0.02)
        nn.init.ones_(self.class_weight)
        nn.init.zeros_(self.class_bias)

    def scores(self, tokens: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        """Pooled ReLU(cosine) of each prototype: ``[B, C * J]``."""
        self.check_tokens(tokens)
        mask = valid_mask(tokens, padding_mask)
        protos_n = F.normalize(self.prototypes, dim=-1)
        k = min(self.topk, tokens.shape[1]) if self.training else 1
        neg = torch.finfo(tokens.dtype).min
        if self.memory_efficient:
            top = cosine_topk(tokens, protos_n, mask, k, self.chunk_size)  # [B, k, M]
        else:
            sim = torch.matmul(F.normalize(tokens, dim=-1), protos_n.T)  # [B, N, M]
            if mask is not None:
                sim = sim.masked_fill(mask.unsqueeze(-1), neg)
            top = sim.topk(k, dim=1).values
        real = top > neg / 2  # padding fills the top-k only where a clip has < k real tokens
        return (top.relu() * real).sum(dim=1) / real.sum(dim=1).clamp_min(1)

    @torch.no_grad()
    def similarity(self, tokens: Tensor) -> Tensor:
        """ReLU(cosine) of every token with every prototype, ``[B, C * J, N]``."""
        self.check_tokens(tokens)
        protos_n = F.normalize(self.prototypes, dim=-1)
        return torch.matmul(protos_n, F.normalize(tokens, dim=-1).transpose(1, 2)).relu()

    @torch.no_grad()
    def class_evidence(self, scores: Tensor) -> Tensor:
        """Each prototype's contribution to each class logit, ``[B, C, C * J]`` (0 off-class)."""
        b, j = scores.shape[0], self.prototypes_per_class
        own = (scores.view(b, self.num_classes, j) * self.class_weight).view(b, -1)
        onehot = torch.eye(self.num_classes, device=scores.device).repeat_interleave(j, dim=1)
        return onehot.unsqueeze(0) * own.unsqueeze(1)

    def _logits(
        self, tokens: Tensor, cls: Tensor | None, mask: Tensor | None, grid: tuple[int, int] | None
    ) -> Tensor:
        s = self.dropout(self.scores(tokens, mask))
        s = s.view(-1, self.num_classes, self.prototypes_per_class)
        return (s * self.class_weight).sum(dim=-1) + self.class_bias

    def auxiliary_loss(self) -> Tensor | None:
        if self.ortho_weight == 0:
            return None
        p = F.normalize(self.prototypes, dim=-1).view(
            self.num_classes, self.prototypes_per_class, self.embed_dim
        )
        gram = torch.bmm(p, p.transpose(1, 2))
        eye = torch.eye(self.prototypes_per_class, device=p.device, dtype=p.dtype)
        return self.ortho_weight * (gram - eye).pow(2).sum(dim=(1, 2)).mean()
