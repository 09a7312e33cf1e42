"""Padding-aware pooling primitives and the base class every probe head derives from.

Every probe pools a token map ``[B, N, D]`` under a boolean ``padding_mask`` ``[B, N]`` (True at
padding). The rules live here once so that no head can get them wrong: a padded token never wins
a max, never gets attention weight and never enters a mean. A fully padded row (which a store
never produces) degrades to finite values instead of NaN.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor, nn

logger = logging.getLogger(__name__)


def _neg(x: Tensor) -> float:
    """A finite "minus infinity" for ``x``'s dtype (``-inf`` would turn softmax rows into NaN)."""
    return torch.finfo(x.dtype).min


def valid_mask(tokens: Tensor, padding_mask: Tensor | None) -> Tensor | None:
    """Check ``padding_mask`` against ``tokens`` and return it as bool (or None)."""
    if padding_mask is None:
        return None
    if padding_mask.shape != tokens.shape[:2]:
        raise ValueError(
            f"padding_mask has shape {tuple(padding_mask.shape)} but tokens are "
            f"{tuple(tokens.shape)}; pass a [B, N] bool mask (True at padding) for [B, N, D] tokens."
        )
    return padding_mask.to(device=tokens.device, dtype=torch.bool)


def masked_mean(tokens: Tensor, padding_mask: Tensor | None) -> Tensor:
    """Mean over the non-padded tokens: ``[B, N, D] -> [B, D]``."""
    if padding_mask is None:
        return tokens.mean(dim=1)
    keep = (~padding_mask).to(tokens.dtype)
    # A [B, 1, N] x [B, N, D] product: no [B, N, D] temporary (tokens * mask would be one).
    summed = torch.bmm(keep.unsqueeze(1), tokens).squeeze(1)
    return summed / keep.sum(dim=1, keepdim=True).clamp_min(1.0)


def masked_max(tokens: Tensor, padding_mask: Tensor | None) -> Tensor:
    """Max over the non-padded tokens along dim 1: ``[B, N, ...] -> [B, ...]``."""
    if padding_mask is None:
        return tokens.amax(dim=1)
    mask = padding_mask.view(*padding_mask.shape, *([1] * (tokens.dim() - 2)))
    out = tokens.masked_fill(mask, _neg(tokens)).amax(dim=1)
    all_pad = padding_mask.all(dim=1).view(-1, *([1] * (out.dim() - 1)))
    return out.masked_fill(all_pad, 0.0)


def masked_softmax(scores: Tensor, padding_mask: Tensor | None) -> Tensor:
    """Softmax over the token axis (last dim) of ``scores`` ``[B, ..., N]``; padding gets 0."""
    if padding_mask is None:
        return scores.softmax(dim=-1)
    mask = padding_mask.view(padding_mask.shape[0], *([1] * (scores.dim() - 2)), -1)
    weights = scores.masked_fill(mask, _neg(scores)).softmax(dim=-1)
    return weights.masked_fill(mask, 0.0)


def zero_padding(tokens: Tensor, padding_mask: Tensor | None) -> Tensor:
    """Return tokens with padded positions set to 0 (for heads that mix neighbours, e.g. conv)."""
    if padding_mask is None:
        return tokens
    return tokens.masked_fill(padding_mask.unsqueeze(-1), 0.0)


def pooled_vector(
    tokens: Tensor, cls: Tensor | None, padding_mask: Tensor | None, source: str
) -> Tensor:
    """The vector a global-vector probe classifies.

    ``source``: ``"auto"`` ([cls] when the encoder has one, else the token mean, as in the paper),
    ``"cls"`` (error without [cls]), ``"mean"`` or ``"max"`` over non-padded tokens.
    """
    if source == "auto":
        source = "cls" if cls is not None else "mean"
    if source == "cls":
        if cls is None:
            raise ValueError(
                "pool='cls' needs the [cls] token but cls=None was passed; this encoder has no "
                "[cls]: use pool='auto' (falls back to the token mean) or pool='mean'."
            )
        return cls
    if source == "mean":
        return masked_mean(tokens, padding_mask)
    if source == "max":
        return masked_max(tokens, padding_mask)
    raise ValueError(f"unknown pool {source!r}; valid: 'auto', 'cls', 'mean', 'max'.")


class ProbeHead(nn.Module):
    """Base class: ``forward(tokens, cls=None, padding_mask=None, grid=None) -> logits [B, C]``.

    ``forward`` checks the tokens and the padding mask once for every head, then calls the
    subclass's ``_logits(tokens, cls, mask, grid)`` with ``mask`` a bool ``[B, N]`` or None.
    Subclasses build their layers in ``__init__`` then call ``self.reset_parameters()``; they
    initialise their own raw parameters (queries, prototypes) in ``_reset_own``. ``fit`` calls
    ``reset_parameters`` under the run's seed so that a seed fixes the initialisation too.
    Heads with a regulariser (proto) return it from ``auxiliary_loss`` after a forward.
    """

    embed_dim: int
    num_classes: int

    def __init__(self, embed_dim: int, num_classes: int) -> None:
        super().__init__()
        for name, value in (("embed_dim", embed_dim), ("num_classes", num_classes)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}.")
        self.embed_dim = embed_dim
        self.num_classes = num_classes

    def forward(
        self,
        tokens: Tensor,
        cls: Tensor | None = None,
        padding_mask: Tensor | None = None,
        grid: tuple[int, int] | None = None,
    ) -> Tensor:
        """Check tokens ``[B, N, D]`` and ``padding_mask`` ``[B, N]``, return logits ``[B, C]``."""
        self.check_tokens(tokens)
        return self._logits(tokens, cls, valid_mask(tokens, padding_mask), grid)

    def _logits(
        self, tokens: Tensor, cls: Tensor | None, mask: Tensor | None, grid: tuple[int, int] | None
    ) -> Tensor:
        """The head's logits from checked tokens and a bool ``mask`` (or None)."""
        raise NotImplementedError(f"{type(self).__name__} must implement _logits.")

    def reset_parameters(self) -> None:
        """Re-initialise every parameter (submodules' own init, then ``_reset_own``)."""
        for module in self.modules():
            if module is not self and hasattr(module, "reset_parameters"):
                module.reset_parameters()
        self._reset_own()

    def _reset_own(self) -> None:
        """Initialise parameters that are not inside a standard submodule."""

    def auxiliary_loss(self) -> Tensor | None:
        """A regulariser added to the training loss (None for most heads)."""
        return None

    def check_tokens(self, tokens: Tensor) -> None:
        if tokens.dim() != 3 or tokens.shape[-1] != self.embed_dim:
            raise ValueError(
                f"{type(self).__name__} expects tokens [B, N, {self.embed_dim}], got "
                f"{tuple(tokens.shape)}; create the probe with embed_dim={tokens.shape[-1]} "
                "or pass the encoder's token map."
            )
