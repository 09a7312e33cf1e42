"""The bad-input corpus: every bad command line exits 2 before Ray starts, naming value and fix.

Each case runs the real entry point (``orchestrator.sweep.main``) in-process with ``ray.init``
patched to fail, so a case that slipped past validation would fail loudly instead of starting
a cluster. ``needles`` are what the message must contain: the bad value and the fix.
"""

from __future__ import annotations

import pytest
import ray

from orchestrator.config import ConfigError, load
from orchestrator.sweep import main

# (id, sweep arguments, substrings the error must contain)
CASES = [
    # names (existing refusals)
    ("sweep-name", ["quickstrat"], ["'quickstrat'", "Did you mean 'quickstart'"]),
    ("probe-name", ["quickstart", "probe=[linaer]"], ["'linaer'", "Did you mean 'linear'"]),
    ("encoder-name", ["quickstart", "encoder=[eta]"], ["'eta'", "Did you mean 'eat'"]),
    ("dataset-name", ["quickstart", "dataset=[synth_event]"], ["Did you mean 'synth_events'"]),
    ("section-name", ["quickstart", "serch.trials=2"], ["'serch.trials'", "Did you mean 'search'"]),
    # values (existing refusals)
    ("top-k", ["quickstart", "search.top_k=20"], ["search.top_k=20", "lower top_k"]),
    ("seeds-empty", ["quickstart", "final.seeds=[]"], ["final.seeds=[]", "distinct integers"]),
    ("seeds-int", ["quickstart", "final.seeds=3"], ["final.seeds=3", "list of integers"]),
    ("seeds-str", ["quickstart", "final.seeds=[a,b]"], ["final.seeds=", "list of integers"]),
    ("tie-rule", ["quickstart", "tie_rule=opponnent"], ["'opponnent'", "Did you mean 'opponent'"]),
    ("epochs-0", ["quickstart", "train.epochs=0"], ["train.epochs=0", "train.epochs=1"]),
    ("cpus-str", ["quickstart", "ray.cpus_per_trial=abc"], ["ray.cpus_per_trial='abc'", "e.g."]),
    ("warmup", ["quickstart", "train.warmup_epochs=50"], ["warmup_epochs=50", "lower"]),
    ("hparam-unknown", ["quickstart", "+probe.linear.hparams.foo=1"],
     ["'foo'", "Valid hyperparameters"]),
    ("space-mismatch", ["quickstart", "probe.linear.search=prototypes"],
     ["'prototypes_per_class'", "sweeps/probe/linear.yaml"]),
    # issue #12 item 6
    ("epochs-str", ["quickstart", "train.epochs=abc"], ["train.epochs='abc'", "train.epochs=1"]),
    ("epochs-neg", ["quickstart", "train.epochs=-1"], ["train.epochs=-1", "train.epochs=1"]),
    ("proto-both", ["quickstart", "probe=[protobin]", "+probe.protobin.hparams.prototypes_per_class=5"],
     ["prototypes_per_class", "probe.protobin.search=default"]),
    ("proto-zero", ["quickstart", "probe=[protobin]", "probe.protobin.search=default",
                    "+probe.protobin.hparams.prototypes_per_class=0"],
     ["prototypes_per_class=0", "positive integer"]),
    ("proto-str", ["quickstart", "probe=[protobin]", "probe.protobin.search=default",
                   "+probe.protobin.hparams.prototypes_per_class=many"],
     ["prototypes_per_class='many'", "positive integer"]),
    ("out-file", ["quickstart", "--out", "{tmp}/a-file"], ["a-file", "is a file", "folder"]),
    ("out-unwritable", ["quickstart", "--out", "{tmp}/a-file/sub"],
     ["a-file/sub", "cannot be created", "folder you can write"]),
    ("train-device", ["quickstart", "train.device=gpu"], ["train.device='gpu'", "Valid: auto"]),
    ("extract-device", ["quickstart", "extract.device=tpu"], ["extract.device='tpu'", "Valid: auto"]),
    ("cuda-no-gpu", ["quickstart", "train.device=cuda"],
     ["train.device='cuda'", "ray.gpus_per_trial=1"]),
    ("size", ["quickstart", "encoder_defaults.overrides.size=huge"],
     ["size='huge'", "Valid sizes: base, tiny"]),
    ("override-typo", ["quickstart", "+encoder_defaults.overrides.szie=tiny"],
     ["'szie'", "Did you mean 'size'"]),
    ("override-seed", ["quickstart", "encoder_defaults.overrides.seed=x"], ["seed='x'", "integer"]),
    ("checkpoint", ["quickstart", "encoder_defaults.checkpoint=/nonexistent/ckpt.pt"],
     ["/nonexistent/ckpt.pt", "checkpoint=random"]),
    ("checkpoint-env", ["quickstart", "encoder=[beats]", "encoder_defaults.checkpoint=null"],
     ["BEATS_CHECKPOINT", "checkpoint=random"]),
    ("source", ["quickstart", "+dataset.synth_events.source=/nonexistent/data"],
     ["/nonexistent/data", "dataset.synth_events.source"]),
    ("dataset-option", ["quickstart", "+dataset.synth_events.options.clips=3"],
     ["'clips'", "Valid options"]),
    ("dataset-option-type", ["quickstart", "dataset.synth_events.options.train_clips=abc"],
     ["train_clips='abc'", "dataset.synth_events.options.train_clips"]),
    ("heads-neg", ["quickstart", "probe=[mhca]", "+probe.mhca.hparams.num_heads=-2"],
     ["num_heads=-2", "positive integer"]),
    ("heads-width", ["quickstart", "probe=[mhca]", "+probe.mhca.hparams.num_heads=5"],
     ["num_heads=5", "width 64", "divisor"]),
    ("cpus-64", ["quickstart", "ray.cpus_per_trial=64"], ["ray.cpus_per_trial=64", "ray.address"]),
    ("cpus-64-local", ["quickstart", "ray.cpus_per_trial=64", "ray.address=local"],
     ["ray.cpus_per_trial=64", "ray.address"]),
    ("gpus", ["quickstart", "ray.gpus_per_trial=4"], ["ray.gpus_per_trial=4", "ray.gpus_per_trial=0"]),
    ("trials-0", ["quickstart", "search.trials=0"], ["search.trials=0", "search.trials=1"]),
    ("reduction-1", ["quickstart", "search.reduction_factor=1"], ["reduction_factor=1", "e.g."]),
    ("concurrency-neg", ["quickstart", "ray.max_concurrent_trials=-1"],
     ["max_concurrent_trials=-1", "e.g."]),
    ("batch-str", ["quickstart", "train.batch_size=big"], ["train.batch_size='big'", "e.g."]),
    ("extract-batch-0", ["quickstart", "extract.batch_size=0"], ["extract.batch_size=0", "e.g."]),
    ("gpus-neg", ["quickstart", "ray.gpus_per_extraction=-1"], ["gpus_per_extraction=-1", "e.g."]),
    ("chunk-frames", ["quickstart", "+encoder_defaults.overrides.chunk_frames=10"],
     ["chunk_frames=10", "multiple of 16"]),
    ("trust-pickle", ["quickstart", "+encoder_defaults.overrides.trust_pickle=maybe"],
     ["trust_pickle='maybe'", "true or false"]),
    ("resume-fresh", ["quickstart", "--resume"], ["nothing to resume", "without --resume"]),
    ("unused-top", ["quickstart", "+foo=1"], ["'foo'", "Remove the override"]),
    ("unused-nested", ["quickstart", "+train.epoch=3"], ["'train.epoch'", "Did you mean 'epochs'"]),
    ("unused-group", ["quickstart", "+probe.linear.serch=x"], ["'probe.linear.serch'", "search"]),
]  # fmt: skip


@pytest.fixture
def no_ray(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("ray.init was called: a bad input got past validation")

    monkeypatch.setattr(ray, "init", refuse)
    monkeypatch.delenv("BEATS_CHECKPOINT", raising=False)
    yield
    assert not ray.is_initialized()


@pytest.mark.parametrize(("args", "needles"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_command_line_exits_2_before_ray(args, needles, tmp_path, capsys, caplog, no_ray):
    (tmp_path / "a-file").write_text("not a folder")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if "--out" not in args and args[0] == "quickstart":
        args += ["--out", str(tmp_path / "out")]
    assert main(args) == 2
    err = capsys.readouterr().err + caplog.text  # a refusal is printed or logged, never raised
    for needle in needles:
        assert needle in err, f"{needle!r} not in: {err}"
    assert not (tmp_path / "out" / "sweep.json").exists()


@pytest.mark.parametrize("size", ["tiny", "base"])
def test_valid_head_count_is_accepted_at_the_encoders_width(size, tmp_path):
    cfg = load(
        "quickstart",
        ["probe=[mhca]", "+probe.mhca.hparams.num_heads=16", f"encoder_defaults.overrides.size={size}"],
        out_dir=str(tmp_path),
    )
    assert cfg.probes[0].hparams == {"num_heads": 16}


def test_resources_are_left_to_the_cluster_preflight_when_an_address_is_given(tmp_path):
    from orchestrator.validate import check_local_resources

    cfg = load("quickstart", ["ray.cpus_per_trial=64", "ray.address=ray://head:10001"],
               out_dir=str(tmp_path))  # fmt: skip
    check_local_resources(cfg)  # no error: the cluster may well have 64-CPU nodes


def test_every_search_extreme_is_built(tmp_path, monkeypatch):
    """The high end of a search space is tried too, not only its low corner."""
    space = tmp_path / "sweeps"
    import shutil

    from orchestrator.config import sweeps_dir

    shutil.copytree(sweeps_dir(), space)
    (space / "search" / "heads.yaml").write_text(
        "lr: {type: loguniform, low: 1.0e-5, high: 1.0e-2}\n"
        "num_heads: {type: int, low: 4, high: 5}\n"
    )
    monkeypatch.setenv("UNMUTE_SWEEPS", str(space))
    with pytest.raises(ConfigError, match="'num_heads': 5"):  # 4 divides the width 64, 5 not
        load("quickstart", ["probe=[mhca]", "probe.mhca.search=heads"], out_dir=str(tmp_path / "o"))
