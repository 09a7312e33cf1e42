"""The nine encoders of the paper: frozen specs and how to build each one.

Each entry of :data:`BACKBONES` (keys are the paper's names) is a :class:`ZooEntry`: the
frozen :class:`EncoderSpec` (official checkpoint source, digest, licence, paper, front end),
the encoder family that builds the module, the official checkpoint layouts it accepts and any
options its converter needs. ``factory.create_backbone`` turns an entry into a frozen backbone.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from backbones.spec import CheckpointSource, EncoderSpec, FrontendSpec
from probes.registry import Registry


@dataclass(frozen=True)
class ZooEntry:
    """A registered encoder: its spec, family (module + converter) and accepted layouts."""

    spec: EncoderSpec
    family: str
    layouts: tuple[str, ...]
    options: tuple[tuple[str, object], ...] = ()


BACKBONES: Registry[ZooEntry] = Registry("encoder")

AST_FBANK = FrontendSpec()  # Audio-MAE / ASiT: AST statistics, zero-pad in the raw log-mel
# ASiT's official code adds its position table without resizing, so it only runs windows of its
# pretraining length: num_frames=592 (main_ASiT.py) = 37 x 8 patches (see backbones/README.md)
ASIT_FBANK = FrontendSpec(chunk_frames=592)
EAT_FBANK = FrontendSpec(mean=-4.268, std=4.569)
BEATS_FBANK = FrontendSpec(
    window_type="povey", htk_compat=False, subtract_mean=False, waveform_scale=2.0**15,
    mean=15.41663, std=6.55582, pad_mode="norm_zero",
)
DASHENG_MEL = FrontendSpec(
    kind="dasheng_mel", num_mel_bins=64, window_type="hann", htk_compat=False,
    subtract_mean=False, mean=None, std=None, chunk_frames=1008, pad_mode="floor",
)

_GDRIVE = "https://drive.google.com/file/d/{}"
_EAT_PAPER = ("Chen et al., EAT: Self-Supervised Pre-Training with Efficient Audio Transformer, "
              "IJCAI 2024, arXiv:2401.03497")
_SSLAM_PAPER = ("Alex et al., SSLAM: Enhancing Self-Supervised Models with Audio Mixtures for "
                "Polyphonic Soundscapes, ICLR 2025, arXiv:2506.12222")
_BEATS_PAPER = ("Chen et al., BEATs: Audio Pre-Training with Acoustic Tokenizers, ICML 2023, "
                "arXiv:2212.09058")
_FAIRSEQ = "fairseq checkpoint {args, cfg, model, criterion, optimizer_history, ...}"

SPECS: tuple[tuple[EncoderSpec, str, tuple[str, ...]], ...] = (
    (EncoderSpec(
        name="audiomae", family="vit", description="Audio-MAE ViT-B/16, AS-2M MAE pretrained",
        paper="Huang et al., Masked Autoencoders that Listen, NeurIPS 2022, arXiv:2207.06405",
        licence="CC BY-NC 4.0 (repo LICENSE; README says CC-BY 4.0)",
        checkpoint=CheckpointSource(
            url=None, page=_GDRIVE.format("1ni_DV4dRf7GxM8k-Eirx71WP9Gg89wwu"),
            file_name="pretrained.pth",
            file_format="torch pickle {model, optimizer, epoch, scaler, args}",
            notes="Google Drive only (facebookresearch/AudioMAE README, 'ViT-B, AS-2M pretrained').",
        ), frontend=AST_FBANK), "audiomae", ("audiomae", "vit_plain")),
    (EncoderSpec(
        name="asit", family="vit", description="ASiT ViT-B/16, AudioSet SSL (GMML + distillation)",
        paper=("Atito et al., ASiT: Local-Global Audio Spectrogram vIsion Transformer for Event "
               "Classification, IEEE/ACM TASLP 2024, arXiv:2211.13189"),
        licence="unconfirmed (see github.com/SaraAtito/ASiT)",
        checkpoint=CheckpointSource(
            url=None, page="https://github.com/SaraAtito/ASiT", file_name="ASiT checkpoint (.pth)",
            file_format="DINO-style {student: module.backbone.*, teacher: backbone.*, ...}",
            notes="Google Drive folder linked from the README (URL not recovered); layout and "
                  "pos_embed grid (37 x 8 at 592 frames) inferred; teacher branch by default. "
                  "The table is never resized (official code): a file with a 64 x 8 table "
                  "needs chunk_frames=1024.",
        ), frontend=ASIT_FBANK, grid_10s=(74, 8)), "asit", ("asit", "vit_plain")),
    (EncoderSpec(
        name="beats", family="beats", description="BEATs iter3 (self-supervised)",
        paper=_BEATS_PAPER, licence="MIT", has_cls=False,
        checkpoint=CheckpointSource(
            url=None, page="https://github.com/microsoft/unilm/tree/master/beats",
            file_name="BEATs_iter3.pt", file_format="torch pickle {cfg, model}",
            sha256_prefix="8d1b2340",
            notes="OneDrive link in the README; 361,499,833 bytes; HF mirror lpepino/beats_ckpts.",
        ), frontend=BEATS_FBANK), "beats", ("beats",)),
    (EncoderSpec(
        name="beats_plus", family="beats", supervised=True, has_cls=False,
        description="BEATs iter3+ AS2M, fine-tuned on AS-2M (cpt2); tokens before the predictor",
        paper=_BEATS_PAPER, licence="MIT",
        checkpoint=CheckpointSource(
            url=None, page="https://github.com/microsoft/unilm/tree/master/beats",
            file_name="BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt",
            file_format="torch pickle {cfg, model, label_dict}", sha256_prefix="e5815275",
            notes="Which BEATs+ file the paper used is not settled: the self-supervised "
                  "BEATs_iter3_plus_AS2M.pt (sha256 d43cbfad...) loads too (pass sha256=None).",
        ), frontend=BEATS_FBANK), "beats", ("beats", "beats_finetuned")),
    (EncoderSpec(
        name="dasheng", family="dasheng", description="Dasheng base (time-only 40 ms tokens)",
        paper=("Dinkel et al., Scaling up masked audio encoder learning for general audio "
               "classification, Interspeech 2024, arXiv:2406.06992"),
        licence="Apache-2.0 (LICENSE file; pyproject classifier says MIT)", has_cls=False,
        grid_10s=(252, 1), patch_size=(4, 64),
        checkpoint=CheckpointSource(
            url="https://zenodo.org/records/11511780/files/dasheng_base.pt?download=1",
            page="https://github.com/RicherMans/Dasheng", file_name="dasheng_base.pt",
            file_format="torch pickle {model, config}", notes="HF: mispeech/dasheng-base "
                        "(transformers remote code; its layout is not read here).",
        ), frontend=DASHENG_MEL), "dasheng", ("dasheng",)),
    (EncoderSpec(
        name="eat", family="eat", description="EAT base, AS-2M pretrained 30 epochs",
        paper=_EAT_PAPER, licence="MIT",
        checkpoint=CheckpointSource(
            url="hf://worstchan/EAT-base_epoch30_pretrain/model.safetensors",
            page=_GDRIVE.format("19hfzLgHCkyqTOYmHt8dqVa9nm-weBq4f"),
            file_name="EAT-base_epoch30_pt.pt", file_format=_FAIRSEQ + " or HF port safetensors",
            notes="Epoch-10 release: Drive 10pklbY_fKraQUIBizSg1kv4lJXNWxpxl; which epoch the "
                  "paper used is not confirmed.",
        ), frontend=EAT_FBANK), "eat", ("eat_pretrain", "eat_hf_pretrain")),
    (EncoderSpec(
        name="sslam", family="eat", description="SSLAM base pretrained (EAT architecture)",
        paper=_SSLAM_PAPER, licence="MIT",
        checkpoint=CheckpointSource(
            url="hf://ta012/SSLAM_pretrain/model.safetensors",
            page="https://drive.google.com/drive/folders/1aA65-qQCHSCrkiDeLGUtn1PiEjJi5HS8",
            file_name="checkpoint_last.pt", file_format=_FAIRSEQ + " or HF port safetensors",
        ), frontend=EAT_FBANK), "eat", ("eat_pretrain", "eat_hf_pretrain")),
    (EncoderSpec(
        name="eat_plus", family="eat", supervised=True,
        description="EAT base 30 epochs, fine-tuned on AS-2M; tokens before fc_norm/head",
        paper=_EAT_PAPER, licence="MIT",
        checkpoint=CheckpointSource(
            url="hf://worstchan/EAT-base_epoch30_finetune_AS2M/model.safetensors",
            page=_GDRIVE.format("1aCYiQmoZv_Gh1FxnR-CCWpNAp6DIJzn6"),
            file_name="EAT-base_epoch30_ft.pt", file_format=_FAIRSEQ + " or HF port safetensors",
        ), frontend=EAT_FBANK), "eat", ("eat_finetuned", "eat_hf_finetuned")),
    (EncoderSpec(
        name="sslam_plus", family="eat", supervised=True,
        description="SSLAM base fine-tuned on AS-2M (50.2 mAP); tokens before fc_norm/head",
        paper=_SSLAM_PAPER, licence="MIT",
        checkpoint=CheckpointSource(
            url="hf://ta012/SSLAM_AS2M_Finetuned/model.safetensors",
            page="https://drive.google.com/drive/folders/1Yy38IyksON5RJFNM7gzeQoAOSPnEIKp2",
            file_name="checkpoint_best.pt", file_format=_FAIRSEQ + " or HF port safetensors",
        ), frontend=EAT_FBANK), "eat", ("eat_finetuned", "eat_hf_finetuned")),
)

for _spec, _family, _layouts in SPECS:
    BACKBONES.register(_spec.name, ZooEntry(spec=_spec, family=_family, layouts=_layouts))


def _is_user_ref(name: str) -> bool:
    from backbones.user import is_user_ref

    return is_user_ref(name)


def _user_entry(name: str) -> ZooEntry:
    from backbones.user import user_entry

    return user_entry(name)


# encoders from outside the package (backbones/user.py): file.py:Name, pkg.mod:Name, hf:, hear:
BACKBONES.accepts = _is_user_ref
BACKBONES.resolve = _user_entry


def with_frontend(spec: EncoderSpec, **changes: object) -> EncoderSpec:
    """A copy of ``spec`` with front-end fields changed (e.g. ``chunk_frames``)."""
    return replace(spec, frontend=replace(spec.frontend, **changes))  # type: ignore[arg-type]
