"""Waveform -> normalised features, exactly as each encoder's upstream code computes them.

Clip-length policy (one rule for every encoder, so token maps of one dataset share a shape):

* Features are computed per clip on its real samples only (``lengths``), with the upstream
  settings (Kaldi fbank, or Dasheng's mel spectrogram), then padded in the domain the upstream
  code pads in (``FrontendSpec.pad_mode``) up to a whole number ``K`` of encoder windows of
  ``chunk_frames`` frames (1024 = 10.24 s for the fbank ViTs, 1008 for Dasheng).
* ``K = ceil(frames(S) / chunk_frames)`` depends only on the padded batch length ``S``, never
  on ``lengths``: a dataset whose loader pads every clip to the same duration gets one grid.
  Clips of <= 10.24 s therefore give the paper's 64 x 8 map (1 s Speech Commands and 5 s
  BirdSet clips included, with the padded rows marked); 30 s FSD50K clips give 3 windows whose
  maps are concatenated in time (192 x 8). ASiT's window is 592 frames (its position table is
  never resized), so its maps are 37 x 8 per window.
* Which token rows are real is derived from the number of real frames
  (``TokenEncoder.real_rows``): for the encoders that hide padding from attention (BEATs,
  Dasheng) only whole patches count, as upstream's strided patch convolution floors on the
  un-padded clip (the trailing partial patch is padding); for the others (zero-padded
  fixed-length input upstream) every row covering a real frame counts.
"""

from __future__ import annotations

import logging
import math

import torch
import torchaudio
from torch import Tensor, nn
from torchaudio.compliance import kaldi

from backbones.spec import FrontendSpec

log = logging.getLogger(__name__)


def resample(
    waveform: Tensor, lengths: Tensor, sample_rate: int, target_rate: int
) -> tuple[Tensor, Tensor]:
    """Resample a ``[B, S]`` batch (and its per-clip lengths) to ``target_rate``."""
    if sample_rate == target_rate:
        return waveform, lengths
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate}.")
    out = torchaudio.functional.resample(waveform, sample_rate, target_rate)
    new_lengths = torch.div(lengths * target_rate + sample_rate - 1, sample_rate,
                            rounding_mode="floor").clamp_max(out.shape[-1])
    return out, new_lengths


class Frontend(nn.Module):
    """Computes normalised, padded features ``[B, K * chunk_frames, M]`` and real frame counts."""

    def __init__(self, spec: FrontendSpec) -> None:
        super().__init__()
        if spec.kind not in ("kaldi_fbank", "dasheng_mel"):
            raise ValueError(
                f"unknown front end kind {spec.kind!r}; valid: 'kaldi_fbank', 'dasheng_mel'."
            )
        if spec.pad_mode not in ("raw_zero", "norm_zero", "floor"):
            raise ValueError(
                f"unknown pad_mode {spec.pad_mode!r}; valid: 'raw_zero', 'norm_zero', 'floor'."
            )
        self.spec = spec
        self.mel: nn.Module | None = None
        self.to_db: nn.Module | None = None
        if spec.kind == "dasheng_mel":
            self.mel = torchaudio.transforms.MelSpectrogram(
                sample_rate=spec.sample_rate, n_fft=spec.n_fft, win_length=spec.n_fft,
                hop_length=spec.hop_length, f_min=spec.f_min, f_max=spec.f_max,
                n_mels=spec.num_mel_bins, center=True,
            )
            self.to_db = torchaudio.transforms.AmplitudeToDB(top_db=spec.top_db)

    @property
    def window_samples(self) -> int:
        if self.spec.kind == "dasheng_mel":
            return self.spec.n_fft
        return int(self.spec.sample_rate * self.spec.frame_length_ms / 1000)

    @property
    def shift_samples(self) -> int:
        if self.spec.kind == "dasheng_mel":
            return self.spec.hop_length
        return int(self.spec.sample_rate * self.spec.frame_shift_ms / 1000)

    def num_frames(self, num_samples: int) -> int:
        """Frames the upstream transform yields for ``num_samples`` samples."""
        if self.spec.kind == "dasheng_mel":
            return 1 + num_samples // self.shift_samples
        if num_samples < self.window_samples:
            return 1  # short clips are zero-padded to one window (see clip_features)
        return 1 + (num_samples - self.window_samples) // self.shift_samples

    def num_chunks(self, num_samples: int) -> int:
        """Encoder windows for a batch padded to ``num_samples`` samples."""
        return max(1, math.ceil(self.num_frames(num_samples) / self.spec.chunk_frames))

    def clip_features(self, wave: Tensor) -> Tensor:
        """Un-padded features ``[frames, M]`` of one clip (1-D waveform), before normalisation
        for ``raw_zero``/``floor`` and after it for ``norm_zero`` (see :meth:`forward`)."""
        s = self.spec
        wave = wave.float()
        if s.kind == "dasheng_mel":
            assert self.mel is not None and self.to_db is not None
            return self.to_db(self.mel(wave)).transpose(0, 1)
        if wave.numel() < self.window_samples:
            wave = nn.functional.pad(wave, (0, self.window_samples - wave.numel()))
        if s.subtract_mean:
            wave = wave - wave.mean()
        if s.waveform_scale != 1.0:
            wave = wave * s.waveform_scale
        return kaldi.fbank(
            wave.unsqueeze(0), num_mel_bins=s.num_mel_bins, sample_frequency=s.sample_rate,
            frame_length=s.frame_length_ms, frame_shift=s.frame_shift_ms,
            window_type=s.window_type, htk_compat=s.htk_compat, use_energy=s.use_energy,
            dither=s.dither,
        )

    def normalize(self, feats: Tensor) -> Tensor:
        if self.spec.mean is None or self.spec.std is None:
            return feats
        return (feats - self.spec.mean) / (2.0 * self.spec.std)

    @torch.no_grad()
    def forward(self, waveform: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """``waveform [B, S]`` at ``spec.sample_rate`` -> (features ``[B, K*W, M]``, frames ``[B]``)."""
        if waveform.dim() != 2:
            raise ValueError(f"waveform must be [B, S], got shape {tuple(waveform.shape)}.")
        s = self.spec
        total = self.num_chunks(waveform.shape[-1]) * s.chunk_frames
        out = waveform.new_zeros(waveform.shape[0], total, s.num_mel_bins, dtype=torch.float32)
        frames = torch.zeros(waveform.shape[0], dtype=torch.long)
        with torch.autocast(device_type=waveform.device.type, enabled=False):
            for i in range(waveform.shape[0]):
                feats = self.clip_features(waveform[i, : int(lengths[i])])[:total]
                n = feats.shape[0]
                frames[i] = min(n, self.num_frames(int(lengths[i])))
                if s.pad_mode == "raw_zero":
                    out[i, :n] = feats
                    out[i] = self.normalize(out[i])
                elif s.pad_mode == "norm_zero":
                    out[i, :n] = self.normalize(feats)
                else:  # floor: pad with the clip's dB floor (what silence looks like)
                    out[i] = feats.min() if n else 0.0
                    out[i, :n] = feats
        return out, frames.to(waveform.device)
