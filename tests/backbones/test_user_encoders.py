"""Encoders from outside the package: references, adapters and the checker.

A user's file, an importable module, a registered name, an installed plugin's entry point, a
``transformers`` model built from its config (random weights, saved to a folder: the real
``from_pretrained`` path, offline) and a HEAR 2021 module written here each become a frozen
backbone; ``orchestrator.check`` passes them and refuses broken ones naming the fix.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from backbones import BACKBONES, create_backbone
from backbones.user import USER_ENCODERS, UserEncoderError, display_name, register_encoder
from orchestrator import check
from probes.registry import RegistryError
from tests.backbones.user_encoder_source import HEAR_SOURCE, SOURCE


@pytest.fixture()
def user_dir(tmp_path, monkeypatch) -> Path:
    (tmp_path / "enc.py").write_text(SOURCE)
    (tmp_path / "hear_tiny.py").write_text(HEAR_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_file_reference_builds_a_frozen_backbone_under_its_own_name(user_dir):
    b = create_backbone("enc.py:TinyBands")
    assert b.spec.name == "tinybands" and b.spec.sample_rate == 16000
    assert not any(p.requires_grad for p in b.parameters())
    tm = b.embed(torch.randn(2, 32000), 32000, torch.tensor([32000, 16000]))  # resampled
    assert tm.grid == (100, 2) and tm.tokens.shape == (2, 200, 8)
    assert int((~tm.padding_mask[1]).sum()) == 100  # half the clip: half the rows are real
    again = create_backbone(str(user_dir / "enc.py") + ":TinyBands")
    assert again.weights_id == b.weights_id and b.weights_id.startswith("sha256:")
    factory = create_backbone("enc.py:make_tinybands")  # a factory: other seed, other weights
    assert factory.weights_id != b.weights_id
    assert BACKBONES.get("enc.py:TinyBands").spec.embed_dim == 8
    assert "enc.py:TinyBands" not in BACKBONES.names()  # resolved, never listed


def test_module_reference_registration_and_entry_point(user_dir, monkeypatch):
    assert create_backbone("enc:TinyBands").spec.name == "tinybands"
    dist = user_dir / "my_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[unmute_bench.encoders]\nplugged = enc:FreqMajor\n")
    assert create_backbone("plugged").spec.name == "tinybands"

    @register_encoder("decorated_bands")
    def decorated():
        from enc import TinyBands

        return TinyBands(seed=3)

    try:
        assert display_name("decorated_bands") == "decorated_bands"
        assert create_backbone("decorated_bands").spec.embed_dim == 8
        with pytest.raises(RegistryError, match="already registered"):
            register_encoder("decorated_bands")(decorated)
    finally:
        USER_ENCODERS._entries.pop("decorated_bands")


def test_bad_references_name_the_fix(user_dir):
    with pytest.raises(UserEncoderError, match=r"no file .*nope\.py.*--working-dir"):
        create_backbone("nope.py:TinyBands")
    with pytest.raises(UserEncoderError, match="has no 'TinyBand'.* Did you mean 'TinyBands'"):
        create_backbone("enc.py:TinyBand")
    with pytest.raises(UserEncoderError, match="cannot import 'not_a_pkg.mod'.*path/to/file.py"):
        create_backbone("not_a_pkg.mod:Enc")
    with pytest.raises(RegistryError, match="unknown encoder 'eatt'. Did you mean 'eat'"):
        BACKBONES.get("eatt")
    with pytest.raises(UserEncoderError, match="overrides .*size.* built-in encoders only"):
        create_backbone("enc.py:TinyBands", size="tiny")


def test_hear_module_timestamps_are_tokens_and_scene_is_cls(user_dir):
    b = create_backbone("hear:hear_tiny")
    assert b.spec.name == "hear_tiny" and b.weights_id.startswith("hear:hear_tiny@0.1:sha256:")
    wave = torch.randn(2, 16000)
    tm = b.embed(wave, 16000, torch.tensor([16000, 8000]))
    assert tm.grid == (50, 1) and tm.cls is not None and tm.cls.shape == (2, 6)
    assert int((~tm.padding_mask[1]).sum()) == 25
    import hear_tiny

    model = hear_tiny.load_model()
    emb, _ = hear_tiny.get_timestamp_embeddings(wave[:1], model)
    torch.testing.assert_close(tm.tokens[0], emb[0])
    torch.testing.assert_close(tm.cls[0], hear_tiny.get_scene_embeddings(wave[:1], model)[0])


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory) -> dict[str, Path]:
    """An AST and a wav2vec2 model from their config classes (random weights), saved."""
    tf = pytest.importorskip("transformers")
    root = tmp_path_factory.mktemp("hf")
    torch.manual_seed(0)
    ast = tf.ASTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_mel_bins=32,
        max_length=200,
    )
    tf.ASTModel(ast).save_pretrained(root / "tiny-ast")
    tf.ASTFeatureExtractor(num_mel_bins=32, max_length=200).save_pretrained(root / "tiny-ast")
    w2v = tf.Wav2Vec2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16, 16),
        conv_stride=(5, 4),
        conv_kernel=(10, 4),
        num_conv_pos_embeddings=8,
        num_conv_pos_embedding_groups=2,
    )
    tf.Wav2Vec2Model(w2v).save_pretrained(root / "tiny-w2v")
    tf.Wav2Vec2FeatureExtractor().save_pretrained(root / "tiny-w2v")
    return {"ast": root / "tiny-ast", "w2v": root / "tiny-w2v"}


def test_hf_ast_is_reordered_to_time_major(hf_dirs):
    b = create_backbone(f"hf:{hf_dirs['ast']}")
    assert b.spec.name == "tiny-ast" and b.spec.has_cls
    wave = torch.randn(1, 16000)
    tm = b.embed(wave, 16000)
    f, t = 2, 19  # (32 - 16) // 10 + 1 mel, (200 - 16) // 10 + 1 frames
    assert tm.grid == (t, f)
    hf = b.model.hf
    inputs = b.model._inputs(wave[0])
    raw = hf(**inputs).last_hidden_state[0]
    freq_major = raw[2:].reshape(f, t, -1)
    torch.testing.assert_close(tm.tokens[0].reshape(t, f, -1), freq_major.transpose(0, 1))
    torch.testing.assert_close(tm.cls[0], (raw[0] + raw[1]) / 2)
    assert int((~tm.padding_mask[0]).sum()) == 10 * f  # 1 s = 100 frames: rows 0..9 are real
    mid = b.embed(wave, 16000, layer=0)
    assert not torch.allclose(mid.tokens, tm.tokens)


@pytest.mark.parametrize("model", ["ast", "w2v"])
def test_checker_passes_hf_models(hf_dirs, model):
    findings = check.run_checks(f"hf:{hf_dirs[model]}", seconds=2.0)
    assert all(f.ok for f in findings), [f for f in findings if not f.ok]
    if model == "w2v":
        tm = create_backbone(f"hf:{hf_dirs[model]}").embed(torch.randn(1, 16000), 16000)
        assert tm.grid[1] == 1 and tm.cls is None


@pytest.mark.parametrize(
    ("name", "failed", "fix"),
    [
        ("TinyBands", set(), ""),
        ("make_tinybands", set(), ""),
        ("FreqMajor", {"time order", "padding"}, "time-major (token index t * F + f)"),
        ("Trainable", {"frozen"}, "requires_grad_(False)"),
        ("Leaky", {"padding"}, "mark tokens beyond them True in padding_mask"),
    ],
)
def test_checker_refuses_broken_encoders_naming_the_fix(user_dir, capsys, name, failed, fix):
    rc = check.main([f"encoder=enc.py:{name}", "--seconds", "2"])
    out = capsys.readouterr().out
    got = {line.split()[1] for line in out.splitlines() if line.startswith("FAIL")}
    got |= {"time order"} if "FAIL time order" in out else set()
    got.discard("time")
    assert got == failed, out
    assert rc == (1 if failed else 0)
    assert fix in out, out
    assert "ms per 2 s clip" in out
    if not failed:
        assert check.cheap_problems(f"enc.py:{name}") == []
    elif name == "Trainable":
        assert "requires_grad_(False)" in check.cheap_problems(f"enc.py:{name}")[0]


def test_checker_cli_bad_input_exits_2(user_dir, capsys):
    assert check.main(["encoder=enc.py:Nope"]) == 2
    assert "has no 'Nope'. Classes and functions there: " in capsys.readouterr().err
    assert check.main(["model=x"]) == 2
    assert "expected encoder=REF" in capsys.readouterr().err
