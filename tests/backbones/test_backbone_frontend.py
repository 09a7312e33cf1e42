"""The front ends equal the upstream recipes, written out here literally (not read from the
spec), including the statistics and where the padding goes."""

from __future__ import annotations

import pytest
import torch
import torchaudio
from torchaudio.compliance import kaldi

from backbones import BACKBONES, create_backbone

AST = {"htk_compat": True, "sample_frequency": 16000, "use_energy": False,
       "window_type": "hanning", "num_mel_bins": 128, "dither": 0.0, "frame_shift": 10}


def amae_eat(wave: torch.Tensor, mean: float, std: float, window: int = 1024) -> torch.Tensor:
    """Audio-MAE dataset.py _wav2fbank / EAT feature_extract.py / ASiT data_transformations.py:
    pad the raw fbank to whole windows (ASiT: 592 frames), then normalise."""
    fb = kaldi.fbank((wave - wave.mean()).unsqueeze(0), **AST)
    fb = torch.nn.functional.pad(fb, (0, 0, 0, -fb.shape[0] % window))
    return (fb - mean) / (std * 2)


def beats(wave: torch.Tensor) -> torch.Tensor:
    """BEATs.preprocess, then zero-pad the normalised fbank to 1024 frames."""
    fb = kaldi.fbank((wave * 2**15).unsqueeze(0), num_mel_bins=128, sample_frequency=16000,
                     frame_length=25, frame_shift=10)
    fb = (fb - 15.41663) / (2 * 6.55582)
    return torch.nn.functional.pad(fb, (0, 0, 0, 1024 - fb.shape[0]))


def dasheng(wave: torch.Tensor) -> torch.Tensor:
    mel = torchaudio.transforms.MelSpectrogram(f_min=0, sample_rate=16000, win_length=512,
                                               center=True, n_fft=512, f_max=8000,
                                               hop_length=160, n_mels=64)
    return torchaudio.transforms.AmplitudeToDB(top_db=120)(mel(wave)).T


EXPECTED = {
    "audiomae": lambda w: amae_eat(w, -4.2677393, 4.5689974),
    "asit": lambda w: amae_eat(w, -4.2677393, 4.5689974, window=592),
    "eat": lambda w: amae_eat(w, -4.268, 4.569),
    "sslam": lambda w: amae_eat(w, -4.268, 4.569),
    "eat_plus": lambda w: amae_eat(w, -4.268, 4.569),
    "sslam_plus": lambda w: amae_eat(w, -4.268, 4.569),
    "beats": beats,
    "beats_plus": beats,
    "dasheng": dasheng,
}


def test_every_encoder_has_an_upstream_reference() -> None:
    assert set(EXPECTED) == set(BACKBONES.names())


@pytest.mark.parametrize("name", BACKBONES.names())
def test_frontend_equals_upstream(name: str, clips: torch.Tensor) -> None:
    bb = create_backbone(name, checkpoint="random", size="tiny")
    feats, frames = bb.features(clips, 16_000, lengths=torch.tensor([160_000, 48_000]))
    for i, n in enumerate((160_000, 48_000)):
        ref = EXPECTED[name](clips[i, :n])
        real = int(frames[i])
        assert torch.allclose(feats[i, :real], ref[:real], atol=1e-4)
        if name != "dasheng":
            assert torch.allclose(feats[i, real:ref.shape[0]], ref[real:], atol=1e-5)  # padding
        assert feats.shape[1] == bb.spec.frontend.chunk_frames * (2 if name == "asit" else 1)


def test_frontend_id_tracks_parameters() -> None:
    ids = {BACKBONES.get(n).spec.frontend.frontend_id() for n in BACKBONES.names()}
    assert len(ids) == 5  # AST stats (1024 / ASiT's 592-frame window), EAT stats, BEATs, Dasheng
    # stores keyed before the partial-patch fix (issue #11) are not reused for BEATs / Dasheng
    assert create_backbone("beats", checkpoint="random", size="tiny").frontend_id.endswith("-rows2")
    assert "-rows" not in create_backbone("eat", checkpoint="random", size="tiny").frontend_id
    a = create_backbone("eat", checkpoint="random", size="tiny")
    b = create_backbone("eat", checkpoint="random", size="tiny", chunk_frames=512)
    assert a.frontend_id != b.frontend_id and b.embed(torch.zeros(1, 16_000), 16_000).grid == (32, 8)
