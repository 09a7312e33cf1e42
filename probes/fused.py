"""Max (or top-k) over tokens of token x prototype cosines without the ``B x M x N`` tensor.

protobin scores every token against every prototype and keeps the max over tokens. Written
plainly, the similarity tensor ``[B, N, M]`` (as20k: 128 x 512 x 5,270 floats = 1.4 GB) is built
in the forward, and its gradient (as large, almost all zeros) in the backward, next to a
normalised copy of the tokens. This autograd function computes the same values chunk by chunk
over prototypes from the raw tokens and their inverse norms, keeping only the per-chunk maxima
and their argmax (top-k for ``proto`` in training). The backward needs only the winners: the prototypes' gradient is a gather of
the B x M winning tokens and the tokens' gradient a scatter-add, again chunk by chunk
(B x M x D multiply-adds instead of the plain backward's B x N x M x D). Peak extra memory is
about ``B x N x chunk_size`` floats.

Outputs equal the plain computation; gradients equal it too except where two tokens tie for a
max exactly: the plain ``amax`` splits the gradient among the tied tokens, this function gives
it to one of them (both are valid subgradients). On CUDA the tokens' gradient (index_add) is not
bitwise deterministic; probes never need it (the encoder is frozen, tokens carry no gradient).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

_EPS = 1e-12  # F.normalize's default: x / max(||x||, eps)


def _chunk_topk(
    tokens: Tensor,
    inv_norm: Tensor,
    protos: Tensor,
    padding_mask: Tensor | None,
    k: int,
    chunk: int,
) -> tuple[Tensor, Tensor]:
    b = tokens.shape[0]
    m = protos.shape[0]
    values = tokens.new_empty(b, k, m)
    index = torch.empty(b, k, m, dtype=torch.long, device=tokens.device)
    neg = torch.finfo(tokens.dtype).min
    scale = inv_norm.unsqueeze(-1)
    for start in range(0, m, chunk):
        stop = min(start + chunk, m)
        sim = torch.matmul(tokens, protos[start:stop].T).mul_(scale)  # [B, N, m] cosines
        if padding_mask is not None:
            sim.masked_fill_(padding_mask.unsqueeze(-1), neg)
        if k == 1:
            v, i = sim.max(dim=1, keepdim=True)
        else:
            v, i = sim.topk(k, dim=1)
        values[:, :, start:stop] = v
        index[:, :, start:stop] = i
        del sim, v, i  # free this chunk before the next one is allocated
    return values, index


class _CosineTopK(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, tokens: Tensor, protos: Tensor, padding_mask: Tensor | None, k: int, chunk: int
    ) -> Tensor:
        inv_norm = tokens.norm(dim=-1).clamp_min(_EPS).reciprocal()  # [B, N]
        values, index = _chunk_topk(tokens, inv_norm, protos, padding_mask, k, chunk)
        ctx.save_for_backward(tokens, inv_norm, protos, index, values)
        ctx.chunk = chunk
        return values

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None, None]:
        # Each selected (b, i, j) has one token t = tokens[b, index[b, i, j]] with cosine
        # c = <t, p_j> / ||t||: d c / d p_j = t / ||t|| and d c / d t = (p_j - c t / ||t||) / ||t||.
        tokens, inv_norm, protos, index, values = ctx.saved_tensors
        b, n, d = tokens.shape
        k, m = index.shape[1], index.shape[2]
        step = max(1, ctx.chunk * n // (d * k))  # B x k x step x D rows: the forward's budget
        flat_tokens = tokens.reshape(b * n, d)
        flat_inv = inv_norm.reshape(b * n)
        offsets = (torch.arange(b, device=tokens.device) * n).view(1, b, 1)
        neg = torch.finfo(tokens.dtype).min
        grad_tokens = torch.zeros_like(tokens) if ctx.needs_input_grad[0] else None
        grad_protos = torch.empty_like(protos) if ctx.needs_input_grad[1] else None
        for start in range(0, m, step):
            stop = min(start + step, m)
            # rows ordered [m, B, k] so that each prototype's rows are contiguous
            rows = (index[:, :, start:stop].permute(2, 0, 1) + offsets).reshape(-1)
            inv = flat_inv[rows].unsqueeze(-1)
            cos = values[:, :, start:stop].permute(2, 0, 1).reshape(-1, 1)
            real = cos > neg / 2  # a padded filler (clip with < k real tokens) gets no gradient
            g = grad[:, :, start:stop].permute(2, 0, 1).reshape(-1, 1) * inv * real
            winners = flat_tokens.index_select(0, rows)  # [m * B * k, D]
            if grad_protos is not None:
                grad_protos[start:stop] = (winners * g).view(stop - start, b * k, d).sum(dim=1)
            if grad_tokens is not None:
                cos = cos * real
                proto_rows = protos[start:stop].repeat_interleave(b * k, dim=0)
                contrib = (proto_rows - cos * winners * inv) * g
                grad_tokens.view(b * n, d).index_add_(0, rows, contrib)
            del winners
        return grad_tokens, grad_protos, None, None, None


def cosine_topk(
    tokens: Tensor,
    protos: Tensor,
    padding_mask: Tensor | None = None,
    k: int = 1,
    chunk_size: int = 512,
) -> Tensor:
    """The ``k`` largest ``cos(tokens[b, n], protos[j])`` over n -> ``[B, k, M]``, chunked.

    Padded tokens are excluded (a row with fewer than ``k`` real tokens gets the dtype's most
    negative value in the missing places). ``protos`` must already be L2-normalised (the probes
    normalise their prototypes with autograd); ``tokens`` are raw and normalised inside.
    Autograd flows to both inputs.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}.")
    if not 1 <= k <= tokens.shape[1]:
        raise ValueError(f"k must be in [1, N={tokens.shape[1]}], got {k}.")
    return _CosineTopK.apply(tokens, protos, padding_mask, int(k), int(chunk_size))


def cosine_max(
    tokens: Tensor, protos: Tensor, padding_mask: Tensor | None = None, chunk_size: int = 512
) -> Tensor:
    """``max_n cos(tokens[b, n], protos[j])`` -> ``[B, M]``; see :func:`cosine_topk`."""
    return cosine_topk(tokens, protos, padding_mask, 1, chunk_size)[:, 0]
