"""Each encoder loads a tiny checkpoint written in its official file format and key layout,
through the same code path as the real file; broken, foreign and mismatched files fail with
errors that name the keys, the digest or the model the file looks like."""

from __future__ import annotations

import hashlib
from pathlib import Path

import backbone_ckpt_files as files
import pytest
import torch

from backbones import BACKBONES, Backbone, CheckpointError, create_backbone

NAMES = BACKBONES.names()


def tiny(name: str, checkpoint: object = "random", **kw: object) -> Backbone:
    return create_backbone(name, checkpoint=checkpoint, size="tiny", **kw)  # type: ignore[arg-type]


def source(name: str) -> Backbone:
    bb = tiny(name, seed=7)
    files.fp16_exact(bb)
    return bb


def clip() -> torch.Tensor:
    return 0.1 * torch.randn(1, 48_000, generator=torch.Generator().manual_seed(5))


def assert_same_model(a: Backbone, b: Backbone) -> None:
    x = clip()
    ta, tb = a.embed(x, 16_000), b.embed(x, 16_000)
    assert torch.allclose(ta.tokens, tb.tokens, atol=1e-5)
    assert (ta.cls is None) == (tb.cls is None)
    if ta.cls is not None:
        assert torch.allclose(ta.cls, tb.cls, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_official_layout_loads_exactly(name: str, tmp_path: Path) -> None:
    src = source(name)
    path = files.write(files.official(name, src), tmp_path / "official.pt")
    bb = tiny(name, path, sha256=None)
    assert_same_model(src, bb)
    assert bb.weights_id == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    assert not bb.training and not any(p.requires_grad for p in bb.parameters())
    x = clip()
    assert not torch.allclose(bb.embed(x, 16_000).tokens, tiny(name).embed(x, 16_000).tokens)


@pytest.mark.parametrize("name", ["eat", "sslam", "eat_plus", "sslam_plus"])
def test_hugging_face_port_layout_loads(name: str, tmp_path: Path) -> None:
    src = source(name)
    obj = files.eat_hf(src, finetuned=name.endswith("_plus"))
    bb = tiny(name, files.write(obj, tmp_path / "model.safetensors"))
    assert_same_model(src, bb)


def test_asit_teacher_by_default_student_on_request(tmp_path: Path) -> None:
    src = source("asit")
    path = files.write(files.asit(src), tmp_path / "asit.pth")
    assert_same_model(src, tiny("asit", path))
    student = tiny("asit", path, asit_branch="student")
    assert not torch.allclose(student.embed(clip(), 16_000).tokens,
                              src.embed(clip(), 16_000).tokens)


def test_beats_plus_reads_the_self_supervised_iter3_plus_file_too(tmp_path: Path) -> None:
    src = source("beats_plus")
    path = files.write(files.beats(src), tmp_path / "BEATs_iter3_plus_AS2M.pt")
    assert_same_model(src, tiny("beats_plus", path, sha256=None))


def test_beats_shares_one_relative_bias_table(tmp_path: Path) -> None:
    bb = tiny("beats")
    layers = bb.encoder.encoder.layers
    assert all(lyr.self_attn.relative_attention_bias is layers[0].self_attn.relative_attention_bias
               for lyr in layers)


@pytest.mark.parametrize(("name", "other"), [
    ("eat", "beats"), ("beats", "eat"), ("audiomae", "dasheng"), ("dasheng", "asit"),
    ("asit", "audiomae"), ("eat", "eat_plus"), ("eat_plus", "sslam"), ("beats", "beats_plus"),
])
def test_wrong_model_checkpoint_says_what_it_looks_like(name: str, other: str,
                                                        tmp_path: Path) -> None:
    path = files.write(files.official(other, source(other)), tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=rf"looks like .*\(for [^)]*\b{other}\b.*not {name}"):
        tiny(name, path, sha256=None)


@pytest.mark.parametrize("name", NAMES)
def test_missing_and_misshaped_keys_are_named(name: str, tmp_path: Path) -> None:
    obj = files.official(name, source(name))
    sd = obj["teacher"] if name == "asit" else obj["model"]
    victim = next(k for k in sd if "blocks.1." in k or "layers.1." in k)
    del sd[victim]
    path = files.write(obj, tmp_path / "broken.pt")
    with pytest.raises(CheckpointError, match="1 missing keys: .*(blocks|layers)\\.1\\."):
        tiny(name, path, sha256=None)


def test_checkpoint_of_another_size_names_the_shapes(tmp_path: Path) -> None:
    obj = files.official("dasheng", source("dasheng"))
    obj["model"]["norm.weight"] = torch.ones(32)
    with pytest.raises(CheckpointError, match=r"wrong shape.*norm.weight \(32,\) != \(64,\)"):
        tiny("dasheng", files.write(obj, tmp_path / "d.pt"))


def test_beats_cfg_mismatch_is_named(tmp_path: Path) -> None:
    obj = files.beats(source("beats"))
    obj["cfg"]["encoder_layers"] = 12
    with pytest.raises(CheckpointError, match="encoder_layers=12"):
        tiny("beats", files.write(obj, tmp_path / "b.pt"), sha256=None)


def test_unexpected_keys_are_named(tmp_path: Path) -> None:
    obj = files.official("audiomae", source("audiomae"))
    obj["model"]["blocks.9.attn.qkv.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointError, match="unexpected keys: blocks.9.attn.qkv.weight"):
        tiny("audiomae", files.write(obj, tmp_path / "a.pth"))


def test_truncated_file_is_reported_as_corrupt(tmp_path: Path) -> None:
    path = files.write(files.official("eat", source("eat")), tmp_path / "eat.pt")
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        tiny("eat", path)


def test_wrong_sha256_is_refused(tmp_path: Path) -> None:
    path = files.write(files.official("eat", source("eat")), tmp_path / "eat.pt")
    with pytest.raises(CheckpointError, match="sha256 mismatch.*expected 0000"):
        tiny("eat", path, sha256="0000" + "0" * 60)
    good = hashlib.sha256(path.read_bytes()).hexdigest()
    assert tiny("eat", path, sha256=good).weights_id == f"sha256:{good}"


def test_published_sha256_prefix_is_checked(tmp_path: Path) -> None:
    path = files.write(files.beats(source("beats")), tmp_path / "BEATs_iter3.pt")
    with pytest.raises(CheckpointError, match="starting with 8d1b2340"):
        tiny("beats", path)


def test_untrusted_pickle_is_refused_with_the_fix(tmp_path: Path) -> None:
    obj = files.official("audiomae", source("audiomae"))
    obj["args"] = {"callback": Path("x")}  # a class torch's safe loader does not allow
    path = files.write(obj, tmp_path / "a.pth")
    with pytest.raises(CheckpointError, match="trust_pickle=True"):
        tiny("audiomae", path)
    assert tiny("audiomae", path, trust_pickle=True).weights_id.startswith("sha256:")


def test_missing_file_and_missing_official_download(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        tiny("eat", tmp_path / "nope.pt")
    monkeypatch.delenv("AUDIOMAE_CHECKPOINT", raising=False)
    with pytest.raises(CheckpointError, match="AUDIOMAE_CHECKPOINT=PATH"):
        tiny("audiomae", None)


def test_env_var_points_at_the_official_file(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    src = source("dasheng")
    path = files.write(files.dasheng(src), tmp_path / "dasheng_base.pt")
    monkeypatch.setenv("DASHENG_CHECKPOINT", str(path))
    assert_same_model(src, tiny("dasheng", None))


def test_fsspec_url_goes_through_the_cache(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import fsspec

    monkeypatch.setenv("UNMUTE_CACHE", str(tmp_path / "cache"))
    src = source("eat")
    local = files.write(files.eat(src), tmp_path / "eat.pt")
    with fsspec.open("memory://bucket/ckpt/EAT-base_epoch30_pt.pt", "wb") as f:
        f.write(local.read_bytes())
    bb = tiny("eat", "memory://bucket/ckpt/EAT-base_epoch30_pt.pt")
    assert_same_model(src, bb)
    assert list((tmp_path / "cache").rglob("EAT-base_epoch30_pt.pt"))
    with pytest.raises(CheckpointError, match="does not exist"):
        tiny("eat", "memory://bucket/ckpt/missing.pt")


def test_hf_hub_offline_error_is_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants as hf_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)  # read once at import
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(CheckpointError, match="Hugging Face hub repo 'worstchan/EAT-base"):
        tiny("eat", None)


def test_bare_vit_state_dict_loads_into_asit(tmp_path: Path) -> None:
    src = source("asit")
    obj = {k.removeprefix("backbone."): v for k, v in files.asit(src)["teacher"].items()
           if k.startswith("backbone.")}
    assert_same_model(src, tiny("asit", files.write(obj, tmp_path / "asit_backbone.pth")))


@pytest.mark.integration
def test_s3_checkpoint_through_a_local_moto_server(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    moto_server = pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        for var, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                           "AWS_DEFAULT_REGION": "us-east-1",
                           "UNMUTE_CACHE": str(tmp_path / "cache")}.items():
            monkeypatch.setenv(var, value)
        import fsspec.config

        monkeypatch.setitem(fsspec.config.conf, "s3", {"endpoint_url": endpoint})
        src = source("beats")
        local = files.write(files.beats(src), tmp_path / "BEATs_iter3.pt")
        s3 = boto3.client("s3", endpoint_url=endpoint)
        s3.create_bucket(Bucket="ckpt")
        s3.upload_file(str(local), "ckpt", "beats/BEATs_iter3.pt")
        bb = tiny("beats", "s3://ckpt/beats/BEATs_iter3.pt", sha256=None)
        assert_same_model(src, bb)
    finally:
        server.stop()
