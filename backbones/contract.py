"""The encoder contract: what an encoder from outside the package must provide.

Extraction only reads ``spec.name``, ``spec.sample_rate``, ``weights_id``, ``frontend_id`` and
``embed(wave, sr, lengths, layer) -> TokenMap`` of a backbone. A user's encoder provides the
smaller :class:`Encoder` protocol (it receives audio at its own rate: the waveform front end);
:class:`UserBackbone` wraps it into that backbone interface: resampling, freezing, a content
identity for the embedding store, and checks of what ``embed`` returns.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from backbones.frontend import resample
from backbones.spec import CheckpointSource, EncoderSpec, FrontendSpec, TokenMap

log = logging.getLogger(__name__)


@runtime_checkable
class Encoder(Protocol):
    """A frozen audio encoder as the benchmark sees it.

    sample_rate: the rate ``embed`` expects (the caller resamples).
    embed_dim: the token width ``D``.
    embed(wave [B, S] float32, lengths [B] long) -> :class:`TokenMap`: tokens ``[B, T*F, D]``
        in time-major order (index ``t * F + f``), ``grid=(T, F)``, optional ``cls [B, D]`` and
        ``padding_mask [B, T*F]`` (True = token of padding, beyond ``lengths``). A clip must
        give the same tokens alone as inside a padded batch. An ``embed`` that accepts a
        ``layer`` keyword (Python-list index of blocks, -1 = last) supports ``layer`` sweeps.
    Optional: ``weights_id: str`` (stable identity of the weights; default: a digest of the
    module's tensors) and ``name: str`` (the label in results; default: the class name).
    """

    sample_rate: int
    embed_dim: int

    def embed(self, wave: Tensor, lengths: Tensor) -> TokenMap: ...


def tensor_digest(module: Any) -> str | None:
    """``sha256:<hex>`` of a module's parameters and buffers (names, shapes, values)."""
    if not isinstance(module, nn.Module):
        return None
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().float().numpy().tobytes())
    return f"sha256:{h.hexdigest()}"


def check_protocol(obj: Any, ref: str) -> None:
    """Raise TypeError naming every missing part of the contract."""
    missing = []
    for attr in ("sample_rate", "embed_dim"):
        value = getattr(obj, attr, None)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            missing.append(f"{attr} (a positive int, got {value!r})")
    if not callable(getattr(obj, "embed", None)):
        missing.append("embed(wave, lengths) -> TokenMap")
    if missing:
        raise TypeError(
            f"encoder {ref!r} ({type(obj).__name__}) does not implement the encoder contract: "
            f"missing {'; '.join(missing)}. See backbones/contract.py (Encoder) and README "
            f"'Benchmark your own encoder'."
        )


class UserBackbone(nn.Module):
    """An :class:`Encoder` behind the backbone interface that extraction uses."""

    def __init__(self, encoder: Any, name: str, ref: str, weights_id: str | None = None) -> None:
        super().__init__()
        check_protocol(encoder, ref)
        self.model = encoder
        if isinstance(encoder, nn.Module):
            encoder.requires_grad_(False)
            encoder.eval()
        self.ref = ref
        rate = int(encoder.sample_rate)
        self.spec = EncoderSpec(
            name=name,
            family="user",
            description=f"user encoder {ref}",
            paper="",
            licence="",
            checkpoint=CheckpointSource(
                url=None, page=ref, file_name="", file_format="user encoder"
            ),
            frontend=FrontendSpec(kind="waveform", sample_rate=rate),
            embed_dim=int(encoder.embed_dim),
            depth=int(getattr(encoder, "depth", 1)),
            sample_rate=rate,
            has_cls=bool(getattr(encoder, "has_cls", False)),
            grid_10s=(0, 0),
            patch_size=(0, 0),
        )
        self.weights_id = str(
            weights_id
            or getattr(encoder, "weights_id", None)
            or tensor_digest(encoder)
            or f"code:{ref}"
        )
        code = f"{type(encoder).__module__}.{type(encoder).__qualname__}:{rate}"
        self.frontend_id = f"waveform-{hashlib.sha256(code.encode()).hexdigest()[:12]}"
        try:
            self._takes_layer = "layer" in inspect.signature(encoder.embed).parameters
        except (TypeError, ValueError):
            self._takes_layer = False

    def train(self, mode: bool = True) -> UserBackbone:
        """Always stays in eval mode (frozen encoder)."""
        return super().train(False)

    @property
    def device(self) -> torch.device:
        first = next(iter(self.parameters()), None)
        return first.device if first is not None else torch.device("cpu")

    @torch.no_grad()
    def embed(
        self, waveform: Tensor, sample_rate: int, lengths: Tensor | None = None, layer: int = -1
    ) -> TokenMap:
        """Token map of ``waveform [B, S]`` (any rate; resampled to ``spec.sample_rate``)."""
        if waveform.dim() == 1:
            waveform = waveform.unsqueeze(0)
        waveform = waveform.float()
        b, s = waveform.shape
        if lengths is None:
            lengths = torch.full((b,), s, dtype=torch.long)
        lengths = torch.as_tensor(lengths, dtype=torch.long).cpu()
        waveform, lengths = resample(waveform.cpu(), lengths, sample_rate, self.spec.sample_rate)
        waveform = waveform.to(self.device)
        if self._takes_layer:
            out = self.model.embed(waveform, lengths.to(self.device), layer=layer)
        elif layer != -1:
            raise ValueError(
                f"encoder {self.spec.name!r} ({self.ref}) has no layers to choose: its embed() "
                f"takes no 'layer' keyword. Use layer=-1, or add 'layer: int = -1' to embed()."
            )
        else:
            out = self.model.embed(waveform, lengths.to(self.device))
        if not isinstance(out, TokenMap):
            raise TypeError(
                f"encoder {self.spec.name!r} ({self.ref}): embed() returned "
                f"{type(out).__name__}, expected backbones.TokenMap(tokens, cls, padding_mask, "
                f"grid)."
            )
        cls = None if out.cls is None else out.cls.float()
        return TokenMap(out.tokens.float(), cls, out.padding_mask.bool(), tuple(out.grid))

    def extra_repr(self) -> str:
        return f"name={self.spec.name!r}, ref={self.ref!r}, weights_id={self.weights_id!r}"
