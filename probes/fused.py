"""Max-over-tokens of token x prototype similarities without the whole ``B x M x N`` tensor.

protobin scores every token against every prototype and keeps the max over tokens. Written
plainly, the similarity tensor ``[B, N, M]`` (as20k: 128 x 512 x 5,270 floats = 1.4 GB) is built
in the forward, and its gradient (as large, almost all zeros) in the backward. This autograd
function computes the same values chunk by chunk over prototypes, keeping only the per-chunk
maxima and their argmax. The backward needs only the winners: the prototypes' gradient is a
gather of the B x M winning tokens and the tokens' gradient a scatter-add, again chunk by chunk
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
        # Each (b, j) max has one winning token index[b, j]: d max / d protos[j] is that token
        # and d max / d token is protos[j]. So the gradient is a gather (protos) and a scatter-add
        # (tokens) of B x M rows, not a dense B x N x M product like the plain backward.
        tokens, protos, index = ctx.saved_tensors
        b, n, d = tokens.shape
        m = protos.shape[0]
        step = max(1, ctx.chunk * n // d)  # B x step x D rows: the forward's chunk budget
        grad_tokens = grad_protos = None
        if ctx.needs_input_grad[1]:
            grad_protos = torch.empty_like(protos)
            for start in range(0, m, step):
                stop = min(start + step, m)
                winners = torch.gather(
                    tokens, 1, index[:, start:stop, None].expand(-1, -1, d)
                )  # [B, m, D]
                grad_protos[start:stop] = torch.einsum("bj,bjd->jd", grad[:, start:stop], winners)
        if ctx.needs_input_grad[0]:
            grad_tokens = torch.zeros_like(tokens)
            flat = grad_tokens.view(b * n, d)
            offsets = torch.arange(b, device=tokens.device).unsqueeze(1) * n
            for start in range(0, m, step):
                stop = min(start + step, m)
                rows = (index[:, start:stop] + offsets).reshape(-1)
                contrib = grad[:, start:stop, None] * protos[start:stop]  # [B, m, D]
                flat.index_add_(0, rows, contrib.reshape(-1, d))
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
