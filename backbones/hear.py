"""``encoder=hear:package.module``: any module implementing the HEAR 2021 API.

HEAR modules (hearbenchmark.com, ``hear-validator``) expose ``load_model(model_file_path="")``
returning a model with ``sample_rate``, ``timestamp_embedding_size`` and
``scene_embedding_size``, plus ``get_timestamp_embeddings(audio [n, S], model) -> (emb [n, T,
D], timestamps [n, T])`` and ``get_scene_embeddings(audio, model) -> [n, D_scene]``. Here the
timestamp embeddings are the token map (grid ``(T, 1)``) and the scene embedding the ``[cls]``
(when its width equals the tokens'). HEAR takes equal-length batches without lengths, so each
clip runs alone at its real length: a clip in a padded batch equals the clip alone.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

import torch
from torch import Tensor, nn

from backbones.contract import tensor_digest
from backbones.spec import TokenMap

log = logging.getLogger(__name__)

HEAR_API = ("load_model", "get_timestamp_embeddings", "get_scene_embeddings")


class HearEncoder(nn.Module):
    """A HEAR 2021 module as an :class:`backbones.contract.Encoder`."""

    def __init__(self, module: Any, model_file_path: str = "") -> None:
        super().__init__()
        missing = [f for f in HEAR_API if not callable(getattr(module, f, None))]
        if missing:
            raise TypeError(
                f"hear:{module.__name__} does not implement the HEAR 2021 API: missing "
                f"{', '.join(missing)} (see hearbenchmark.com/hear-api.html)."
            )
        self.module = module
        model = module.load_model(model_file_path) if model_file_path else module.load_model()
        self.hear_model = model if isinstance(model, nn.Module) else None
        self._model = model
        self.requires_grad_(False)  # the HEAR model is frozen
        self.sample_rate = int(model.sample_rate)
        self.embed_dim = int(model.timestamp_embedding_size)
        self.has_cls = int(model.scene_embedding_size) == self.embed_dim
        self.name = module.__name__.split(".")[-1]
        digest = tensor_digest(model)
        version = getattr(module, "__version__", "")
        self.weights_id = f"hear:{module.__name__}{'@' + version if version else ''}" + (
            f":{digest}" if digest else ""
        )

    @torch.no_grad()
    def embed(self, wave: Tensor, lengths: Tensor) -> TokenMap:
        toks, scenes = [], []
        for clip, n in zip(wave, lengths.tolist(), strict=True):
            audio = clip[: int(n)].unsqueeze(0)
            emb, _ = self.module.get_timestamp_embeddings(audio, self._model)
            toks.append(torch.as_tensor(emb)[0].float())
            if self.has_cls:
                scenes.append(
                    torch.as_tensor(self.module.get_scene_embeddings(audio, self._model))[0].float()
                )
        t = max(x.shape[0] for x in toks)
        b, d = len(toks), self.embed_dim
        tokens = torch.zeros(b, t, d, device=wave.device)
        pad = torch.ones(b, t, dtype=torch.bool, device=wave.device)
        for i, x in enumerate(toks):
            tokens[i, : x.shape[0]] = x.to(wave.device)
            pad[i, : x.shape[0]] = False
        cls = torch.stack(scenes).to(wave.device) if scenes else None
        return TokenMap(tokens=tokens, cls=cls, padding_mask=pad, grid=(t, 1))


def load_hear(module_name: str, model_file_path: str = "") -> HearEncoder:
    """Import ``module_name`` (on this node) and load its model."""
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        raise ValueError(
            f"encoder 'hear:{module_name}': cannot import {module_name!r} ({err}). Install the "
            f"HEAR package on every node (pip install ...), or put the module in the job's "
            f"working dir."
        ) from None
    return HearEncoder(module, model_file_path)
