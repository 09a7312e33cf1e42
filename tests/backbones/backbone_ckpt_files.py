"""Writes tiny checkpoints in each encoder's official file format and key layout.

The layouts are spelled out here from the upstream code (shared/ENCODERS.md), independently of
``backbones.formats``: a tiny model's weights are renamed to the upstream names, nested the way
the release nests them, and surrounded by what the release also carries (decoders, EMA
teachers, optimizer state, configs) so loading goes through the real code path.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import Tensor

from backbones import Backbone

D_DEC = 16  # tiny decoder width


def _sd(bb: Backbone) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in bb.encoder.state_dict().items()}


def audiomae(bb: Backbone) -> dict[str, object]:
    model = _sd(bb)
    model.update({
        "mask_token": torch.zeros(1, 1, D_DEC),
        "decoder_embed.weight": torch.randn(D_DEC, bb.encoder.embed_dim),
        "decoder_pos_embed": torch.zeros(1, 513, D_DEC),
        "decoder_blocks.0.attn.tau": torch.ones(16),
        "decoder_blocks.0.attn.meta_mlp.fc1.weight": torch.randn(384, 2),
        "decoder_norm.weight": torch.ones(D_DEC),
        "decoder_pred.weight": torch.randn(256, D_DEC),
    })
    return {"model": model, "optimizer": {"state": {}, "param_groups": []}, "epoch": 32,
            "scaler": {"scale": 65536.0}, "args": argparse.Namespace(model="mae_vit_base_patch16")}


def asit(bb: Backbone) -> dict[str, object]:
    sd = _sd(bb)
    heads = {"head_cls.mlp.0.weight": torch.randn(8, 4), "head_recons.convTrans.weight":
             torch.randn(bb.encoder.embed_dim, 1, 16, 16)}
    student = {f"module.backbone.{k}": v + 1.0 for k, v in sd.items()}  # differs from teacher
    student.update({f"module.{k}": v for k, v in heads.items()})
    teacher = {f"backbone.{k}": v for k, v in sd.items()}
    teacher.update(heads)
    return {"student": student, "teacher": teacher, "optimizer": {}, "epoch": 99,
            "args": argparse.Namespace(num_frames=592), "loss_cls": 0.1, "loss_data": 0.2}


def beats(bb: Backbone, finetuned: bool = False) -> dict[str, object]:
    c = bb.encoder.cfg
    cfg = {"embed_dim": c.embed_dim, "encoder_embed_dim": c.encoder_embed_dim,
           "encoder_layers": c.encoder_layers, "encoder_attention_heads": c.encoder_attention_heads,
           "encoder_ffn_embed_dim": c.encoder_ffn_embed_dim, "input_patch_size": 16,
           "conv_bias": False, "activation_fn": "gelu", "layer_norm_first": False,
           "deep_norm": True, "relative_position_embedding": True, "num_buckets": 320,
           "max_distance": 800, "gru_rel_pos": True, "conv_pos": 128, "conv_pos_groups": 16,
           "encoder_layerdrop": 0.05, "layer_wise_gradient_decay_ratio": 0.6,
           "finetuned_model": finetuned}
    model = _sd(bb)
    out: dict[str, object] = {"cfg": cfg, "model": model}
    if finetuned:
        model["predictor.weight"] = torch.randn(527, c.encoder_embed_dim)
        model["predictor.bias"] = torch.zeros(527)
        out["label_dict"] = {i: f"/m/{i:04d}" for i in range(527)}
        cfg.update(predictor_class=527, predictor_dropout=0.0)
    return out


def dasheng(bb: Backbone) -> dict[str, object]:
    model = _sd(bb)
    model["front_end.0.spectrogram.window"] = torch.hann_window(512)
    model["front_end.0.mel_scale.fb"] = bb.frontend.mel.mel_scale.fb.clone()
    config = {"embed_dim": bb.encoder.embed_dim, "depth": bb.encoder.depth,
              "num_heads": bb.encoder.blocks[0].attn.num_heads,
              "patch_size": [64, 4], "patch_stride": [64, 4],
              "target_length": 1008}
    return {"model": model, "config": config}


_EAT_NAMES = {
    "patch_embed.proj.": "modality_encoders.IMAGE.local_encoder.proj.",
    "cls_token": "modality_encoders.IMAGE.extra_tokens",
    "pos_embed": "modality_encoders.IMAGE.fixed_positional_encoder.positions",
    "pre_norm.": "modality_encoders.IMAGE.context_encoder.norm.",
    "blocks.": "blocks.",
}
_EAT_HF = {"patch_embed.proj.": "local_encoder.proj.", "cls_token": "extra_tokens",
           "pos_embed": "fixed_positional_encoder.positions", "pre_norm.": "pre_norm.",
           "blocks.": "blocks."}


def _rename(sd: dict[str, Tensor], names: dict[str, str]) -> dict[str, Tensor]:
    out = {}
    for k, v in sd.items():
        old = next(o for o in names if k.startswith(o))
        out[names[old] + k[len(old):]] = v
    return out


def _eat_positions(sd: dict[str, Tensor], rows: int = 768) -> dict[str, Tensor]:
    """Upstream stores the sin-cos table for max_length=768 time patches (6144 rows)."""
    from backbones.vit import sincos_2d

    table = sincos_2d(sd["pos_embed"].shape[-1], rows, 8)
    assert torch.allclose(table[:, : sd["pos_embed"].shape[1]], sd["pos_embed"], atol=1e-3)
    table[:, : sd["pos_embed"].shape[1]] = sd["pos_embed"]  # keep the model's exact rows
    sd["pos_embed"] = table
    return sd


def eat(bb: Backbone, finetuned: bool = False) -> dict[str, object]:
    """fairseq Trainer.state_dict(): model tensors fp16 (common.fp16), _ema fp32."""
    enc = _rename(_eat_positions(_sd(bb)), _EAT_NAMES)
    d = bb.encoder.embed_dim
    if finetuned:
        model = {f"model.{k}": v.half() for k, v in enc.items()}
        model.update({"fc_norm.weight": torch.ones(d), "fc_norm.bias": torch.zeros(d),
                      "head.weight": torch.randn(527, d), "head.bias": torch.zeros(527)})
        cfg = {"model": {"_name": "mae_image_classification",
                         "pretrained_model_args": {"model": {"_name": "data2vec_multi"}}}}
    else:
        model = {k: v.half() for k, v in enc.items()}
        model["modality_encoders.IMAGE.decoder.blocks.0.0.weight"] = torch.randn(d, 48, 3, 3).half()
        model["modality_encoders.IMAGE.decoder.proj.weight"] = torch.randn(d, d).half()
        model["_ema"] = {k: v.float() for k, v in enc.items()}
        cfg = {"model": {"_name": "data2vec_multi", "depth": bb.encoder.depth},
               "common": {"fp16": True}}
    return {"args": None, "cfg": cfg, "model": model, "criterion": None,
            "optimizer_history": [{"criterion_name": "ModelCriterion", "num_updates": 10}],
            "task_state": {}, "extra_state": {"epoch": 10}}


def eat_hf(bb: Backbone, finetuned: bool = False) -> dict[str, Tensor]:
    sd = {f"model.{k}": v for k, v in _rename(_eat_positions(_sd(bb)), _EAT_HF).items()}
    if finetuned:
        d = bb.encoder.embed_dim
        sd.update({"model.fc_norm.weight": torch.ones(d), "model.fc_norm.bias": torch.zeros(d),
                   "model.head.weight": torch.randn(527, d), "model.head.bias": torch.zeros(527)})
    return sd


def official(name: str, bb: Backbone) -> dict[str, object]:
    """The upstream file content for encoder ``name`` holding ``bb``'s weights."""
    return {
        "audiomae": audiomae, "asit": asit, "beats": beats, "dasheng": dasheng, "eat": eat,
        "sslam": eat, "beats_plus": lambda b: beats(b, finetuned=True),
        "eat_plus": lambda b: eat(b, finetuned=True),
        "sslam_plus": lambda b: eat(b, finetuned=True),
    }[name](bb)


def fp16_exact(bb: Backbone) -> None:
    """Round ``bb``'s weights to fp16 so an fp16-stored checkpoint reproduces them exactly."""
    with torch.no_grad():
        for p in bb.encoder.parameters():
            p.copy_(p.half().float())


def write(obj: object, path: Path) -> Path:
    if path.suffix == ".safetensors":
        save_file(obj, str(path))  # type: ignore[arg-type]
    else:
        torch.save(obj, path)
    return path
