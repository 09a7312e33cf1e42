"""Upstream reference forwards, written from the official code independently of ``backbones/``.

Each function takes one clip (1-D 16 kHz waveform) and the checkpoint object in its official
file format (``backbone_ckpt_files.official``), computes the features and the encoder the way
the upstream code does, and returns the tokens upstream would give, ``[N, D]`` time-major, plus
the [cls] (or None). Nothing here imports ``backbones``: the weights are read by their upstream
key names and every layer is spelled out with ``torch.nn.functional``.

Sources read (not copied):
* Audio-MAE: facebookresearch/AudioMAE ``models_mae.py`` (in-order path of ``forward_encoder``:
  patch_embed, + pos_embed[1:], cls + pos_embed[0], timm pre-norm blocks, ``norm``) and
  ``dataset.py _wav2fbank`` (fbank, zero-pad to 1024 raw, then normalise).
* ASiT: Sara-Ahmed/ASiT ``vision_transformer.py`` (``prepare_tokens``: cat(cls, patches) +
  pos_embed, no resizing; pre-norm blocks; ``norm``), ``data_transformations.py`` (fbank,
  zero-pad/crop to ``num_frames`` = 592, normalise), ``main_ASiT.py`` (teacher = ``backbone.*``).
* EAT / SSLAM: cwx-worst-one/EAT ``models/base.py contextualized_features`` (+ fixed positions,
  prepend extra token, ``context_encoder`` = LayerNorm), ``models/modules.py AltBlock`` with
  ``layer_norm_first=False``, no final norm; ``feature_extract.py`` (pad to 1024, normalise).
* BEATs: microsoft/unilm ``beats/BEATs.py`` (``preprocess``, ``extract_features``: no padding,
  the stride-16 conv floors) and ``beats/backbone.py`` (weight-normed ``pos_conv`` + SamePad +
  GELU, LayerNorm, DeepNorm post-norm layers, gated T5 relative bias, alpha = 32 trick).
* Dasheng: not here: the tests run the ``dasheng`` package itself.

Windows: upstream runs one fixed-length input (Audio-MAE/EAT 1024 frames, ASiT 592) or the whole
clip (BEATs); the project cuts longer clips into windows of the same length. The reference
applies the upstream forward to each window of the clip's features (the last one padded the
upstream way, or un-padded for BEATs) and concatenates the real tokens.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor
from torchaudio.compliance import kaldi

SD = Mapping[str, Tensor]


# ----------------------------------------------------------------------------- front ends
def fbank_ast(wave: Tensor) -> Tensor:
    """Audio-MAE / ASiT / EAT ``_wav2fbank`` before padding and normalisation: [frames, 128]."""
    return kaldi.fbank((wave - wave.mean()).unsqueeze(0), htk_compat=True,
                       sample_frequency=16000, use_energy=False, window_type="hanning",
                       num_mel_bins=128, dither=0.0, frame_shift=10)


def fbank_beats(wave: Tensor) -> Tensor:
    """``BEATs.preprocess`` for one clip: [frames, 128], normalised."""
    fb = kaldi.fbank(wave.unsqueeze(0) * 2**15, num_mel_bins=128, sample_frequency=16000,
                     frame_length=25, frame_shift=10)
    return (fb - 15.41663) / (2 * 6.55582)


# ----------------------------------------------------------------------------- layers
def _ln(x: Tensor, sd: SD, p: str, eps: float) -> Tensor:
    return F.layer_norm(x, (x.shape[-1],), sd[f"{p}.weight"], sd[f"{p}.bias"], eps)


def _lin(x: Tensor, sd: SD, p: str) -> Tensor:
    return F.linear(x, sd[f"{p}.weight"], sd.get(f"{p}.bias"))


def _fused_attn(x: Tensor, sd: SD, p: str, heads: int) -> Tensor:
    """timm / ASiT / data2vec attention: fused qkv, softmax(q k^T / sqrt(d_h)) v, proj."""
    b, n, d = x.shape
    qkv = _lin(x, sd, f"{p}.qkv").reshape(b, n, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    attn = ((q * (d // heads) ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
    return _lin((attn @ v).transpose(1, 2).reshape(b, n, d), sd, f"{p}.proj")


def _mlp(x: Tensor, sd: SD, p: str) -> Tensor:
    return _lin(F.gelu(_lin(x, sd, f"{p}.fc1")), sd, f"{p}.fc2")


def _depth(sd: SD, prefix: str) -> int:
    return len({k.split(".")[1] for k in sd if k.startswith(prefix)})


def _strip(sd: Mapping[str, object], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix):]: v.float() for k, v in sd.items()
            if k.startswith(prefix) and isinstance(v, Tensor)}


# ----------------------------------------------------------------------------- windows
def _windows(feats: Tensor, window: int, pad: bool) -> list[tuple[Tensor, int]]:
    """Cut [frames, M] into windows of ``window`` frames: (window, real frames). The last is
    zero-padded when ``pad`` (in the domain ``feats`` is in), else left short."""
    out = []
    for start in range(0, feats.shape[0], window):
        w = feats[start:start + window]
        n = w.shape[0]
        if pad and n < window:
            w = F.pad(w, (0, 0, 0, window - n))
        out.append((w, n))
    return out


def _vit_windows(wave: Tensor, window: int, mean: float, std: float) -> list[tuple[Tensor, int]]:
    """Raw fbank, zero-padded in the raw domain to whole windows, then normalised."""
    return [((w - mean) / (2 * std), n) for w, n in _windows(fbank_ast(wave), window, pad=True)]


def _join(outs: list[tuple[Tensor, Tensor | None, int]]) -> tuple[Tensor, Tensor | None]:
    """Real rows of each window, concatenated in time; [cls] = mean over the windows."""
    tokens = torch.cat([t[: rows * 8] for t, _, rows in outs])
    cls = [c for _, c, _ in outs if c is not None]
    return tokens, (torch.stack(cls).mean(0) if cls else None)


# ----------------------------------------------------------------------------- Audio-MAE, ASiT
def prenorm_vit(sd: SD, feats: Tensor, heads: int) -> tuple[Tensor, Tensor]:
    """Audio-MAE ``forward_encoder`` in order (no shuffle) / ASiT ``forward``: [W, 128] ->
    (patch tokens [W/16 * 8, D], cls [D])."""
    x = F.conv2d(feats[None, None], sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"],
                 stride=16)
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([sd["cls_token"].expand(1, -1, -1), x], dim=1) + sd["pos_embed"]
    for i in range(_depth(sd, "blocks.")):
        x = x + _fused_attn(_ln(x, sd, f"blocks.{i}.norm1", 1e-6), sd, f"blocks.{i}.attn", heads)
        x = x + _mlp(_ln(x, sd, f"blocks.{i}.norm2", 1e-6), sd, f"blocks.{i}.mlp")
    x = _ln(x, sd, "norm", 1e-6)[0]
    return x[1:], x[0]


def audiomae(wave: Tensor, ckpt: Mapping[str, object], heads: int) -> tuple[Tensor, Tensor]:
    sd = _strip(ckpt["model"], "")  # type: ignore[arg-type]
    outs = []
    for w, n in _vit_windows(wave, 1024, -4.2677393, 4.5689974):
        tok, cls = prenorm_vit(sd, w, heads)
        outs.append((tok, cls, -(-n // 16)))
    return _join(outs)  # type: ignore[return-value]


def asit(wave: Tensor, ckpt: Mapping[str, object], heads: int) -> tuple[Tensor, Tensor]:
    sd = _strip(ckpt["teacher"], "backbone.")  # type: ignore[arg-type]
    window = (sd["pos_embed"].shape[1] - 1) // 8 * 16  # the table's own length, never resized
    outs = []
    for w, n in _vit_windows(wave, window, -4.2677393, 4.5689974):
        tok, cls = prenorm_vit(sd, w, heads)
        outs.append((tok, cls, -(-n // 16)))
    return _join(outs)  # type: ignore[return-value]


# ----------------------------------------------------------------------------- EAT, SSLAM
def eat(wave: Tensor, ckpt: Mapping[str, object], heads: int) -> tuple[Tensor, Tensor]:
    model = ckpt["model"]
    fine = any(k.startswith("model.") for k in model)  # type: ignore[union-attr]
    sd = _strip(model, "model." if fine else "")  # type: ignore[arg-type]
    img = "modality_encoders.IMAGE."
    outs = []
    for w, n in _vit_windows(wave, 1024, -4.268, 4.569):
        x = F.conv2d(w[None, None], sd[img + "local_encoder.proj.weight"],
                     sd[img + "local_encoder.proj.bias"], stride=16).flatten(2).transpose(1, 2)
        x = x + sd[img + "fixed_positional_encoder.positions"][:, : x.shape[1]]
        x = torch.cat([sd[img + "extra_tokens"], x], dim=1)
        x = _ln(x, sd, img + "context_encoder.norm", 1e-6)
        for i in range(_depth(sd, "blocks.")):
            x = x + _fused_attn(x, sd, f"blocks.{i}.attn", heads)
            r = _ln(x, sd, f"blocks.{i}.norm1", 1e-6)
            x = _ln(r + _mlp(r, sd, f"blocks.{i}.mlp"), sd, f"blocks.{i}.norm2", 1e-6)
        outs.append((x[0, 1:], x[0, 0], -(-n // 16)))
    return _join(outs)  # type: ignore[return-value]


# ----------------------------------------------------------------------------- BEATs
def _t5_bucket(rel: Tensor, num_buckets: int, max_distance: int) -> Tensor:
    half = num_buckets // 2
    out = (rel > 0).long() * half
    rel = rel.abs()
    exact = half // 2
    big = exact + (torch.log(rel.float() / exact) / math.log(max_distance / exact)
                   * (half - exact)).long()
    big = torch.minimum(big, torch.full_like(big, half - 1))
    return out + torch.where(rel < exact, rel, big)


def _beats_attention(x: Tensor, sd: SD, p: str, heads: int, bias: Tensor) -> Tensor:
    n, d = x.shape
    hd = d // heads
    scaling, alpha = hd**-0.5, 32
    q = (_lin(x, sd, f"{p}.q_proj") * scaling / alpha).view(n, heads, hd).transpose(0, 1)
    k = _lin(x, sd, f"{p}.k_proj").view(n, heads, hd).transpose(0, 1)
    v = _lin(x, sd, f"{p}.v_proj").view(n, heads, hd).transpose(0, 1)
    w = q @ k.transpose(1, 2)
    w = (w - w.max(dim=-1, keepdim=True)[0]) * alpha
    gates = torch.sigmoid(_lin(q * alpha / scaling, sd, f"{p}.grep_linear")
                          .view(heads, n, 2, 4).sum(-1))
    gate_a, gate_b = gates[..., :1], gates[..., 1:]
    w = w + (gate_a * (gate_b * sd[f"{p}.grep_a"][0] - 1.0) + 2.0) * bias
    out = (w.softmax(-1) @ v).transpose(0, 1).reshape(n, d)
    return _lin(out, sd, f"{p}.out_proj")


def beats(wave: Tensor, ckpt: Mapping[str, object], heads: int) -> tuple[Tensor, None]:
    sd = _strip(ckpt["model"], "")  # type: ignore[arg-type]
    cfg: Mapping[str, object] = ckpt["cfg"]  # type: ignore[assignment]
    layers = int(cfg["encoder_layers"])  # type: ignore[arg-type]
    heads = int(cfg["encoder_attention_heads"])  # type: ignore[arg-type]
    k, groups = int(cfg["conv_pos"]), int(cfg["conv_pos_groups"])  # type: ignore[arg-type]
    deep = math.pow(2 * layers, 0.25) if cfg["deep_norm"] else 1.0
    tokens = []
    for fb, _ in _windows(fbank_beats(wave), 1024, pad=False):  # no padding upstream
        x = F.conv2d(fb[None, None], sd["patch_embedding.weight"], None, stride=16)  # floors
        x = x.reshape(1, x.shape[1], -1).transpose(1, 2)[0]
        x = _lin(_ln(x, sd, "layer_norm", 1e-5), sd, "post_extract_proj")
        v, g = sd["encoder.pos_conv.0.weight_v"], sd["encoder.pos_conv.0.weight_g"]
        weight = g * v / v.norm(dim=(0, 1), keepdim=True)  # weight_norm(dim=2)
        conv = F.conv1d(x.T[None], weight, sd["encoder.pos_conv.0.bias"], padding=k // 2,
                        groups=groups)
        if k % 2 == 0:
            conv = conv[..., :-1]  # SamePad
        x = x + F.gelu(conv)[0].T
        x = _ln(x, sd, "encoder.layer_norm", 1e-5)
        n = x.shape[0]
        pos = torch.arange(n)
        bucket = _t5_bucket(pos[None, :] - pos[:, None], int(cfg["num_buckets"]),  # type: ignore[arg-type]
                            int(cfg["max_distance"]))  # type: ignore[arg-type]
        bias = F.embedding(bucket, sd["encoder.layers.0.self_attn.relative_attention_bias.weight"])
        bias = bias.permute(2, 0, 1)
        for i in range(layers):
            p = f"encoder.layers.{i}"
            x = _ln(x * deep + _beats_attention(x, sd, f"{p}.self_attn", heads, bias), sd,
                    f"{p}.self_attn_layer_norm", 1e-5)
            h = _lin(F.gelu(_lin(x, sd, f"{p}.fc1")), sd, f"{p}.fc2")
            x = _ln(x * deep + h, sd, f"{p}.final_layer_norm", 1e-5)
        tokens.append(x)
    return torch.cat(tokens), None


# ----------------------------------------------------------------------------- Dasheng
def dasheng(wave: Tensor, ckpt: Mapping[str, object], heads: int) -> tuple[Tensor, None]:
    """The ``dasheng`` package's own model (official code), built from the file's config."""
    from dasheng.pretrained.pretrained import Dasheng

    model = Dasheng(**ckpt["config"])  # type: ignore[arg-type]
    model.load_state_dict(ckpt["model"], strict=True)  # type: ignore[arg-type]
    model.eval()
    with torch.no_grad():
        return model(wave[None].float())[0], None


REFERENCES = {
    "audiomae": audiomae, "asit": asit, "beats": beats, "beats_plus": beats, "dasheng": dasheng,
    "eat": eat, "sslam": eat, "eat_plus": eat, "sslam_plus": eat,
}
