"""Max-over-tokens of token x prototype similarities without the whole ``B x M x N`` tensor.

protobin scores every token against every prototype and keeps the max over tokens. Written
plainly, the similarity tensor ``[B, N, M]`` (as20k: 128 x 512 x 5,270 floats = 1.4 GB) is built
in the forward, and its gradient (as large, almost all zeros) in the backward. This autograd
function computes the same values chunk by chunk over prototypes, keeping only the per-chunk
maxima and their argmax; the backward routes each prototype's gradient to its winning token,
again chunk by chunk. Peak extra memory is ``B x N x chunk_size`` floats.

Outputs equal the plain computation; gradients equal it too except where two tokens tie for a
max exactly (then both pick one token, possibly different ones: both are valid subgradients).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def _chunk_max(
    tokens: Tensor, protos: Tensor, padding_mask: Tensor | None, chunk: int
) -> tuple[Tensor, Tensor]:
    b, _, _ = tokens.shape
    m = protos.shape[0]
    values = tokens.new_empty(b, m)
    index = torch.empty(b, m, dtype=torch.long, device=tokens.device)
    neg = torch.finfo(tokens.dtype).min
    for start in range(0, m, chunk):
        stop = min(start + chunk, m)
        sim = torch.matmul(tokens, protos[start:stop].T)  # [B, N, m]
        if padding_mask is not None:
            sim.masked_fill_(padding_mask.unsqueeze(-1), neg)
        v, i = sim.max(dim=1)
        values[:, start:stop] = v
        index[:, start:stop] = i
    return values, index


class _CosineMax(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, tokens: Tensor, protos: Tensor, padding_mask: Tensor | None, chunk: int
    ) -> Tensor:
        values, index = _chunk_max(tokens, protos, padding_mask, chunk)
        ctx.save_for_backward(tokens, protos, index)
        ctx.chunk = chunk
        return values

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        tokens, protos, index = ctx.saved_tensors
        b, n, d = tokens.shape
        m = protos.shape[0]
        need_tokens, need_protos = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_tokens = torch.zeros_like(tokens) if need_tokens else None
        grad_protos = torch.empty_like(protos) if need_protos else None
        flat_tokens = tokens.reshape(b * n, d)
        for start in range(0, m, ctx.chunk):
            stop = min(start + ctx.chunk, m)
            # Route: scatter[b, index[b, j], j] = grad[b, j]; everything else is 0.
            scatter = grad.new_zeros(b, n, stop - start)
            scatter.scatter_(1, index[:, None, start:stop], grad[:, None, start:stop])
            if grad_tokens is not None:
                grad_tokens.add_(torch.matmul(scatter, protos[start:stop]))
            if grad_protos is not None:
                grad_protos[start:stop] = scatter.reshape(b * n, -1).T @ flat_tokens
        return grad_tokens, grad_protos, None, None


def cosine_max(
    tokens: Tensor, protos: Tensor, padding_mask: Tensor | None = None, chunk_size: int = 512
) -> Tensor:
    """``max_n <tokens[b, n], protos[j]>`` -> ``[B, M]``, padded tokens excluded, chunked.

    Pass L2-normalised inputs to get cosine similarities; autograd flows to both inputs.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}.")
    return _CosineMax.apply(tokens, protos, padding_mask, int(chunk_size))
