"""Official checkpoint layouts -> our module keys, and "which model is this file?" detection.

Each official release nests its weights differently (Audio-MAE ``{model, optimizer, ...,
args}``, ASiT DINO-style ``{student: module.backbone.*, teacher: backbone.*}``, BEATs ``{cfg,
model}``, Dasheng ``{model, config}``, EAT/SSLAM fairseq ``{cfg, model: {modality_encoders.
IMAGE.*, blocks.*, _ema}}`` or fine-tuned ``{model: {model.*, fc_norm, head}}``, the EAT/SSLAM
Hugging Face ports ``model.*`` safetensors). A converter unwraps the nesting, renames keys onto
ours and drops only keys that are known to be pretraining heads or classifiers; everything else
must match exactly (``checkpoints.load_strict``). See shared/ENCODERS.md for the key lists.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor

from backbones.checkpoints import CheckpointError

State = dict[str, Tensor]
Converter = Callable[[object, Mapping[str, Tensor], Mapping[str, object]], State]

LAYOUTS: dict[str, tuple[str, tuple[str, ...]]] = {
    # layout: (description, encoders that read it)
    "audiomae": ("Audio-MAE {model, ...} with a Swin decoder", ("audiomae",)),
    "asit": ("ASiT DINO-style {student, teacher}", ("asit",)),
    "vit_plain": ("a bare timm-style ViT state dict (cls_token, pos_embed, blocks.*)",
                  ("audiomae", "asit")),
    "beats": ("BEATs {cfg, model} self-supervised", ("beats", "beats_plus")),
    "beats_finetuned": ("BEATs {cfg, model, label_dict} AudioSet-fine-tuned", ("beats_plus",)),
    "dasheng": ("Dasheng {model, config}", ("dasheng",)),
    "eat_pretrain": ("EAT/SSLAM fairseq pretraining (data2vec_multi)", ("eat", "sslam")),
    "eat_finetuned": ("EAT/SSLAM fairseq AudioSet fine-tuned (model.*, head)",
                      ("eat_plus", "sslam_plus")),
    "eat_hf_pretrain": ("EAT/SSLAM Hugging Face port, pretraining", ("eat", "sslam")),
    "eat_hf_finetuned": ("EAT/SSLAM Hugging Face port, fine-tuned (model.head)",
                         ("eat_plus", "sslam_plus")),
}


def _tensors(obj: object) -> dict[str, Tensor]:
    return {k: v for k, v in obj.items() if isinstance(v, Tensor)} if isinstance(obj, Mapping) else {}


def identify(obj: object) -> str | None:
    """Name of the official layout ``obj`` (a loaded checkpoint) follows, or None."""
    if not isinstance(obj, Mapping):
        return None
    if "student" in obj or "teacher" in obj:
        return "asit"
    top = _tensors(obj)
    inner = obj.get("model")
    sd = _tensors(inner) if isinstance(inner, Mapping) else top
    keys = set(sd)
    if "post_extract_proj.weight" in keys or "encoder.pos_conv.0.weight_v" in keys:
        return "beats_finetuned" if "predictor.weight" in keys else "beats"
    if "time_pos_embed" in keys and "freq_pos_embed" in keys:
        return "dasheng"
    if "modality_encoders.IMAGE.extra_tokens" in keys:
        return "eat_pretrain"
    if "model.modality_encoders.IMAGE.extra_tokens" in keys:
        return "eat_finetuned"
    if "model.extra_tokens" in keys or "model.local_encoder.proj.weight" in keys:
        return "eat_hf_finetuned" if "model.head.weight" in keys else "eat_hf_pretrain"
    if "decoder_pred.weight" in keys:
        return "audiomae"
    if {"cls_token", "pos_embed", "patch_embed.proj.weight"} <= keys:
        return "vit_plain"
    return None


def check_layout(obj: object, name: str, accepted: tuple[str, ...]) -> str | None:
    """Refuse a checkpoint of another model, saying which model it looks like."""
    layout = identify(obj)
    if layout is not None and layout not in accepted:
        desc, owners = LAYOUTS[layout]
        raise CheckpointError(
            f"this checkpoint looks like {desc} (for {', '.join(owners)}), not {name}. Load it "
            f"with create_backbone({owners[0]!r}, checkpoint=...), or pass the {name} checkpoint."
        )
    return layout


def _need(obj: object, key: str, what: str) -> Mapping[str, object]:
    if not isinstance(obj, Mapping) or not isinstance(obj.get(key), Mapping):
        found = sorted(obj)[:10] if isinstance(obj, Mapping) else type(obj).__name__
        raise CheckpointError(f"{what}: expected a dict with a {key!r} state dict, found {found}.")
    return obj[key]  # type: ignore[return-value]


def _floats(sd: Mapping[str, object]) -> State:
    return {k: (v.float() if v.is_floating_point() else v) for k, v in sd.items()
            if isinstance(v, Tensor)}


def _drop(sd: State, prefixes: tuple[str, ...]) -> State:
    return {k: v for k, v in sd.items() if not k.startswith(prefixes)}


def _slice_positions(sd: State, own: Mapping[str, Tensor], key: str = "pos_embed") -> State:
    """Fixed sin-cos tables are stored longer than one window needs (EAT: 6144 or 512 rows):
    keep the first rows, which the model uses."""
    if key in sd and key in own and sd[key].dim() == 3 and sd[key].shape[1] > own[key].shape[1]:
        sd[key] = sd[key][:, : own[key].shape[1]]
    return sd


def convert_audiomae(obj: object, own: Mapping[str, Tensor], opts: Mapping[str, object]) -> State:
    nested = isinstance(obj, Mapping) and "model" in obj
    sd = _floats(_need(obj, "model", "Audio-MAE checkpoint") if nested else obj)  # type: ignore[arg-type]
    return _drop(sd, ("decoder_", "decoder_blocks.", "mask_token"))


def convert_asit(obj: object, own: Mapping[str, Tensor], opts: Mapping[str, object]) -> State:
    if identify(obj) == "vit_plain":  # an already extracted backbone state dict
        sd = _floats(obj.get("model", obj))  # type: ignore[attr-defined]
        return _check_asit_table(_drop(sd, ("head.", "head_cls.", "head_recons.")), own)
    branch = str(opts.get("branch", "teacher"))
    if branch not in ("teacher", "student"):
        raise CheckpointError(f"ASiT branch {branch!r} is invalid; valid: 'teacher', 'student'.")
    sd = _floats(_need(obj, branch, "ASiT checkpoint"))
    prefix = "module.backbone." if any(k.startswith("module.") for k in sd) else "backbone."
    out = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    if not out:
        raise CheckpointError(
            f"ASiT {branch!r} state dict has no {prefix!r} keys (found e.g. {sorted(sd)[:5]})."
        )
    return _check_asit_table(_drop(out, ("head.", "head_cls.", "head_recons.")), own)


def _check_asit_table(sd: State, own: Mapping[str, Tensor]) -> State:
    """ASiT's official code never resizes its position table: refuse a table made for another
    window length, saying which window the file needs."""
    pos, mine = sd.get("pos_embed"), own.get("pos_embed")
    if pos is not None and mine is not None and pos.dim() == 3 and pos.shape != mine.shape:
        rows, cols = (pos.shape[1] - 1) // 8, 8
        raise CheckpointError(
            f"pos_embed {tuple(pos.shape)} is a {rows} x {cols} table ({rows * 16}-frame windows) "
            f"but this encoder runs {(mine.shape[1] - 1) // 8 * 16}-frame windows; ASiT's code "
            f"adds the table without resizing: pass chunk_frames={rows * 16} (in a sweep: "
            f"`overrides: {{chunk_frames: {rows * 16}}}` in sweeps/encoder/asit.yaml)."
        )
    return sd


def convert_beats(obj: object, own: Mapping[str, Tensor], opts: Mapping[str, object]) -> State:
    sd = _floats(_need(obj, "model", "BEATs checkpoint"))
    cfg = obj.get("cfg") if isinstance(obj, Mapping) else None
    expected = opts.get("beats_cfg")
    if isinstance(cfg, Mapping) and isinstance(expected, Mapping):
        bad = [f"{k}={cfg[k]!r} (ours {v!r})" for k, v in expected.items()
               if k in cfg and cfg[k] != v]
        if bad:
            raise CheckpointError(
                f"BEATs checkpoint cfg does not match this encoder: {', '.join(bad)}. Use the "
                "matching size= or the iter3 checkpoint."
            )
    return _drop(sd, ("predictor.",))


def convert_dasheng(obj: object, own: Mapping[str, Tensor], opts: Mapping[str, object]) -> State:
    sd = _floats(_need(obj, "model", "Dasheng checkpoint"))
    ref: Mapping[str, Tensor] = opts.get("dasheng_frontend", {})  # type: ignore[assignment]
    for key, tensor in ref.items():
        if key in sd and (sd[key].shape != tensor.shape or not torch.allclose(sd[key], tensor,
                                                                              atol=1e-5)):
            raise CheckpointError(
                f"Dasheng checkpoint front-end buffer {key} differs from torchaudio's "
                "MelSpectrogram(64 mels, n_fft 512, hop 160, 0-8000 Hz): not the upstream front end."
            )
    return _drop(sd, ("front_end.",))


_EAT_RENAMES = (
    ("modality_encoders.IMAGE.local_encoder.proj.", "patch_embed.proj."),
    ("modality_encoders.IMAGE.extra_tokens", "cls_token"),
    ("modality_encoders.IMAGE.fixed_positional_encoder.positions", "pos_embed"),
    ("modality_encoders.IMAGE.context_encoder.norm.", "pre_norm."),
    ("local_encoder.proj.", "patch_embed.proj."),
    ("extra_tokens", "cls_token"),
    ("fixed_positional_encoder.positions", "pos_embed"),
    ("pre_norm.", "pre_norm."),
    ("blocks.", "blocks."),
)


def _rename(sd: State, renames: tuple[tuple[str, str], ...]) -> State:
    out: State = {}
    for k, v in sd.items():
        for old, new in renames:
            if k.startswith(old):
                k = new + k[len(old):]
                break
        out[k] = v
    return out


def convert_eat(obj: object, own: Mapping[str, Tensor], opts: Mapping[str, object]) -> State:
    layout = identify(obj)
    if layout in ("eat_pretrain", "eat_finetuned"):
        sd = _floats(_need(obj, "model", "EAT/SSLAM fairseq checkpoint"))
    else:
        sd = _floats(obj if isinstance(obj, Mapping) else {})
    if layout in ("eat_finetuned", "eat_hf_pretrain", "eat_hf_finetuned"):
        sd = {k.removeprefix("model."): v for k, v in sd.items()}
    sd = _drop(sd, ("modality_encoders.IMAGE.decoder.", "_ema", "fc_norm.", "head."))
    return _slice_positions(_rename(sd, _EAT_RENAMES), own)


CONVERTERS: dict[str, Converter] = {
    "audiomae": convert_audiomae,
    "asit": convert_asit,
    "beats": convert_beats,
    "dasheng": convert_dasheng,
    "eat": convert_eat,
}
