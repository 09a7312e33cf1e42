"""Max over tokens of token x prototype cosines without the whole ``B x M x N`` tensor.

protobin scores every token against every prototype and keeps the max over tokens. Written
plainly, the similarity tensor ``[B, N, M]`` (as20k: 128 x 512 x 5,270 floats = 1.4 GB) is built
in the forward, and its gradient (as large, almost all zeros) in the backward, next to a
normalised copy of the tokens. This autograd function computes the same values chunk by chunk
over prototypes from the raw tokens and their inverse norms, keeping only the per-chunk maxima
and their argmax. The backward needs only the winners: the prototypes' gradient is a gather of
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


def _chunk_max(
    tokens: Tensor, inv_norm: Tensor, protos: Tensor, padding_mask: Tensor | None, chunk: int
) -> tuple[Tensor, Tensor]:
    b = tokens.shape[0]
    m = protos.shape[0]
    values = tokens.new_empty(b, m)
    index = torch.empty(b, m, dtype=torch.long, device=tokens.device)
    neg = torch.finfo(tokens.dtype).min
    scale = inv_norm.unsqueeze(-1)
    for start in range(0, m, chunk):
        stop = min(start + chunk, m)
        sim = torch.matmul(tokens, protos[start:stop].T).mul_(scale)  # [B, N, m] cosines
        if padding_mask is not None:
            sim.masked_fill_(padding_mask.unsqueeze(-1), neg)
        torch.max(sim, dim=1, out=(values[:, start:stop], index[:, start:stop]))
        del sim  # free this chunk before the next one is allocated
    return values, index


def _winner_rows(index: Tensor, start: int, stop: int, n: int) -> Tensor:
    """Rows of the flattened ``[B * N, D]`` tokens that won, ordered ``[m, B]``."""
    offsets = torch.arange(index.shape[0], device=index.device) * n
    return (index[:, start:stop].T + offsets).reshape(-1)


class _CosineMax(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, tokens: Tensor, protos: Tensor, padding_mask: Tensor | None, chunk: int
    ) -> Tensor:
        inv_norm = tokens.norm(dim=-1).clamp_min(_EPS).reciprocal()  # [B, N]
        values, index = _chunk_max(tokens, inv_norm, protos, padding_mask, chunk)
        ctx.save_for_backward(tokens, inv_norm, protos, index, values)
        ctx.chunk = chunk
        return values

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        # Each (b, j) max has one winning token t = tokens[b, index[b, j]] with cosine
        # c = <t, p_j> / ||t||: d c / d p_j = t / ||t|| and d c / d t = (p_j - c t / ||t||) / ||t||.
        tokens, inv_norm, protos, index, values = ctx.saved_tensors
        b, n, d = tokens.shape
        m = protos.shape[0]
        step = max(1, ctx.chunk * n // d)  # B x step x D rows: the forward's chunk budget
        flat_tokens = tokens.reshape(b * n, d)
        flat_inv = inv_norm.reshape(b * n)
        grad_tokens = grad_protos = None
        if ctx.needs_input_grad[0]:
            grad_tokens = torch.zeros_like(tokens)
        if ctx.needs_input_grad[1]:
            grad_protos = torch.empty_like(protos)
        for start in range(0, m, step):
            stop = min(start + step, m)
            rows = _winner_rows(index, start, stop, n)
            g = (grad[:, start:stop].T.reshape(-1) * flat_inv[rows]).unsqueeze(-1)  # [m*B, 1]
            winners = flat_tokens.index_select(0, rows)  # [m*B, D]
            if grad_protos is not None:
                weighted = (winners * g).view(stop - start, b, d)
                grad_protos[start:stop] = weighted.sum(dim=1)
                del weighted
            if grad_tokens is not None:
                cos = values[:, start:stop].T.reshape(-1, 1)
                unit = winners * flat_inv[rows].unsqueeze(-1)
                proto_rows = protos[start:stop].repeat_interleave(b, dim=0)  # [m*B, D]
                contrib = (proto_rows - cos * unit) * g
                grad_tokens.view(b * n, d).index_add_(0, rows, contrib)
            del winners
        return grad_tokens, grad_protos, None, None


def cosine_max(
    tokens: Tensor, protos: Tensor, padding_mask: Tensor | None = None, chunk_size: int = 512
) -> Tensor:
    """``max_n cos(tokens[b, n], protos[j])`` -> ``[B, M]``, padded tokens excluded, chunked.

    ``protos`` must already be L2-normalised (protobin normalises its binarised prototypes
    with autograd); ``tokens`` are raw and normalised inside. Autograd flows to both inputs.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}.")
    return _CosineMax.apply(tokens, protos, padding_mask, int(chunk_size))
