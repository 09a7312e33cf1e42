"""``encoder=hf:<model id>[@revision]``: a Hugging Face ``transformers`` audio model.

Two token layouts are read (``pip install 'unmute-bench[hf]'``):

- spectrogram patch models (AST, ``model_type == "audio-spectrogram-transformer"``): the
  last hidden state less the [cls] and distillation tokens; AST flattens its patch grid
  frequency-major (conv output ``[D, F, T]``), reordered here to time-major ``(T, F)``; the
  [cls] is the mean of the two leading tokens (AST's pooler);
- frame models (wav2vec2, HuBERT, WavLM, data2vec-audio, ... anything whose output is
  ``[B, T, D]`` frames): a ``(T, 1)`` grid, padding from the model's own output lengths.

Each clip runs alone at its real length (frame models normalise over the whole input, so
padding would change a clip's tokens). ``layer`` = -1 is the last hidden state, otherwise
``hidden_states[layer + 1]`` (index 0 is the embeddings). ``weights_id`` is the hub commit
when loaded from the hub, else a digest of the weights.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import Tensor, nn

from backbones.contract import tensor_digest
from backbones.spec import TokenMap

log = logging.getLogger(__name__)

AST = "audio-spectrogram-transformer"


class HFEncoder(nn.Module):
    """A ``transformers`` audio model + its feature extractor as an Encoder."""

    def __init__(self, model: nn.Module, extractor: Any, name: str, weights_id: str = "") -> None:
        super().__init__()
        self.hf = model.eval().requires_grad_(False)
        self.extractor = extractor
        cfg = model.config
        self.kind = "ast" if cfg.model_type == AST else "frames"
        self.sample_rate = int(getattr(extractor, "sampling_rate", 16_000))
        self.embed_dim = int(cfg.hidden_size)
        self.depth = int(cfg.num_hidden_layers)
        self.has_cls = self.kind == "ast"
        self.name = name
        self.weights_id = weights_id or tensor_digest(model) or name
        if self.kind == "ast":
            self.grid_f = (cfg.num_mel_bins - cfg.patch_size) // cfg.frequency_stride + 1
            self.grid_t = (cfg.max_length - cfg.patch_size) // cfg.time_stride + 1

    def _hidden(self, inputs: dict[str, Tensor], layer: int) -> Tensor:
        out = self.hf(**inputs, output_hidden_states=layer != -1)
        if layer == -1:
            return out.last_hidden_state
        states = out.hidden_states
        if not -self.depth <= layer < self.depth:
            raise ValueError(
                f"layer {layer} is out of range for {self.name} with {self.depth} blocks; "
                f"valid: {-self.depth}..{self.depth - 1} (-1 = last block)."
            )
        return states[(layer % self.depth) + 1]

    def _inputs(self, clip: Tensor) -> dict[str, Tensor]:
        feats = self.extractor(
            clip.cpu().numpy(), sampling_rate=self.sample_rate, return_tensors="pt"
        )
        key = "input_values" if "input_values" in feats else next(iter(feats))
        return {key: feats[key].to(clip.device)}

    @torch.no_grad()
    def embed(self, wave: Tensor, lengths: Tensor, layer: int = -1) -> TokenMap:
        toks, cls, real = [], [], []
        for clip, n in zip(wave, lengths.tolist(), strict=True):
            h = self._hidden(self._inputs(clip[: int(n)]), layer)[0].float()
            if self.kind == "ast":
                f, t = self.grid_f, self.grid_t
                patches = h[2:].reshape(f, t, -1).transpose(0, 1).reshape(t * f, -1)
                toks.append(patches)
                cls.append((h[0] + h[1]) / 2)
                frames = int(n) * 100 // self.sample_rate  # 10 ms fbank hop
                stride = self.hf.config.time_stride
                rows = max(1, min(t, (frames - 1) // stride + 1))
                real.append(rows * f)
            else:
                toks.append(h)
                real.append(h.shape[0])
        n_max = max(x.shape[0] for x in toks)
        tokens = torch.zeros(len(toks), n_max, self.embed_dim, device=wave.device)
        pad = torch.ones(len(toks), n_max, dtype=torch.bool, device=wave.device)
        for i, (x, r) in enumerate(zip(toks, real, strict=True)):
            tokens[i, : x.shape[0]] = x
            pad[i, :r] = False
        grid = (self.grid_t, self.grid_f) if self.kind == "ast" else (n_max, 1)
        return TokenMap(
            tokens=tokens, cls=torch.stack(cls) if cls else None, padding_mask=pad, grid=grid
        )


def load_hf(ref: str) -> HFEncoder:
    """``<model id or local folder>[@revision]`` -> :class:`HFEncoder` (downloads via the hub)."""
    try:
        from transformers import AutoFeatureExtractor, AutoModel
    except ImportError:
        raise ValueError(
            f"encoder 'hf:{ref}' needs transformers: pip install 'unmute-bench[hf]' (or "
            f"pip install transformers) on every node."
        ) from None
    model_id, _, revision = ref.partition("@")
    kwargs = {"revision": revision} if revision else {}
    model = AutoModel.from_pretrained(model_id, **kwargs)
    extractor = AutoFeatureExtractor.from_pretrained(model_id, **kwargs)
    commit = getattr(model.config, "_commit_hash", None)
    weights_id = f"hf:{model_id}@{commit}" if commit else ""
    name = model_id.rstrip("/").split("/")[-1]
    return HFEncoder(model, extractor, name, weights_id)
