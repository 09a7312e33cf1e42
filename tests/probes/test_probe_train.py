"""The fit/evaluate loop: callbacks, results, memmap batching, seeding, schedule, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from probes import FitResult, ProbeData, TrainConfig, create_probe, evaluate, fit
from probes.data import iter_batches
from probes.train import cosine_lr_factor, make_optimizer


@pytest.fixture
def multilabel_split(make_localized) -> ProbeData:
    tokens, labels = make_localized(n=40, tokens=8)
    return ProbeData(tokens=tokens, labels=labels, task="multilabel")


class SpyArray:
    """An fp16 array that records how many rows each read touches."""

    def __init__(self, array: np.ndarray) -> None:
        self.array, self.shape, self.reads = array, array.shape, []

    def __getitem__(self, index):
        rows = self.array[index]
        self.reads.append(rows.shape[0])
        return rows


def test_on_epoch_reports_every_epoch_with_the_contract_keys(multilabel_split):
    calls = []
    probe = create_probe("linear", embed_dim=8, num_classes=2)
    result = fit(
        probe,
        multilabel_split,
        multilabel_split,
        TrainConfig(epochs=3, batch_size=16),
        on_epoch=lambda epoch, m: calls.append((epoch, m)),
    )
    assert [e for e, _ in calls] == [1, 2, 3]
    for _, metrics in calls:
        assert {"loss", "val_score", "val_map", "val_auroc"} <= set(metrics)
        assert 0.0 <= metrics["val_score"] <= 1.0 and metrics["val_score"] == metrics["val_map"]
    assert isinstance(result, FitResult) and len(result.history) == 3
    assert result.best_val["score"] == max(m["val_score"] for _, m in calls)
    assert result.final_val["score"] == calls[-1][1]["val_score"]
    assert 1 <= result.best_epoch <= 3 and result.train_seconds > 0


def test_multiclass_reports_accuracy(make_separable):
    tokens, labels, _ = make_separable(n=32)
    data = ProbeData(tokens=tokens, labels=labels, task="multiclass")
    seen = []
    fit(
        create_probe("mhca", embed_dim=16, num_classes=3),
        data,
        data,
        TrainConfig(epochs=1, batch_size=16),
        on_epoch=lambda e, m: seen.append(m),
    )
    assert "val_accuracy" in seen[0] and seen[0]["val_score"] == seen[0]["val_accuracy"]
    assert set(evaluate(create_probe("linear", embed_dim=16, num_classes=3), data)) == {
        "score",
        "accuracy",
        "auroc",
    }


def test_fp16_memmap_is_read_batch_by_batch(tmp_path, multilabel_split):
    src = np.asarray(multilabel_split.tokens, dtype=np.float16)
    mm = np.memmap(tmp_path / "tokens.f16", dtype=np.float16, mode="w+", shape=src.shape)
    mm[:] = src
    mm.flush()
    spy = SpyArray(np.memmap(tmp_path / "tokens.f16", dtype=np.float16, mode="r", shape=src.shape))
    data = ProbeData(tokens=spy, labels=multilabel_split.labels, task="multilabel")
    batches = list(iter_batches(data, 16, torch.device("cpu"), torch.Generator().manual_seed(0)))
    assert all(b.tokens.dtype == torch.float32 for b in batches)
    assert sorted(len(b.tokens) for b in batches) == [8, 16, 16]
    fit(
        create_probe("protobin", embed_dim=8, num_classes=2, prototypes_per_class=2),
        data,
        data,
        TrainConfig(epochs=2, batch_size=16),
    )
    assert max(spy.reads) <= 16  # never the whole split at once


def test_fit_leaves_the_global_rng_alone_and_reinit_is_optional(multilabel_split):
    probe = create_probe("mlp", embed_dim=8, num_classes=2)
    state = torch.random.get_rng_state()
    fit(probe, multilabel_split, None, TrainConfig(epochs=1, batch_size=16))
    assert torch.equal(state, torch.random.get_rng_state())
    before = [p.detach().clone() for p in probe.parameters()]
    fit(probe, multilabel_split, None, TrainConfig(epochs=1, batch_size=16, lr=1e-9), reinit=False)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(before, probe.parameters()))


def test_cosine_schedule_with_warmup():
    assert cosine_lr_factor(0, 100, 10) == pytest.approx(0.1)
    assert cosine_lr_factor(9, 100, 10) == pytest.approx(1.0)
    assert cosine_lr_factor(10, 100, 10) == pytest.approx(1.0)
    assert cosine_lr_factor(55, 100, 10) == pytest.approx(0.5)
    assert cosine_lr_factor(100, 100, 10) == pytest.approx(0.0)
    assert cosine_lr_factor(0, 10) == pytest.approx(1.0)


def test_lr_follows_the_schedule_during_fit(multilabel_split):
    lrs = []
    fit(
        create_probe("linear", embed_dim=8, num_classes=2),
        multilabel_split,
        None,
        TrainConfig(lr=1e-2, epochs=4, batch_size=40, warmup_epochs=2),
        on_epoch=lambda e, m: lrs.append(m["lr"]),
    )
    # one step per epoch: warmup 1/2, 2/2, then cosine over the 2 remaining steps
    assert lrs == pytest.approx([5e-3, 1e-2, 1e-2, 5e-3])


def test_adamw_decays_matrices_not_biases():
    probe = create_probe("linear", embed_dim=8, num_classes=2)
    groups = make_optimizer(probe, 1e-3, 1e-4).param_groups
    assert isinstance(make_optimizer(probe, 1e-3, 1e-4), torch.optim.AdamW)
    assert [g["weight_decay"] for g in groups] == [1e-4, 0.0]
    assert groups[0]["params"][0] is probe.head.weight and groups[1]["params"][0] is probe.head.bias


def test_bad_inputs_are_refused_with_a_fix(multilabel_split):
    with pytest.raises(ValueError, match="num_classes"):
        fit(
            create_probe("linear", embed_dim=8, num_classes=5),
            multilabel_split,
            None,
            TrainConfig(epochs=1),
        )
    with pytest.raises(ValueError, match="task"):
        ProbeData(tokens=np.zeros((2, 3, 4)), labels=np.zeros(2), task="regression")
    with pytest.raises(ValueError, match=r"\[n, C\]"):
        ProbeData(tokens=np.zeros((2, 3, 4)), labels=np.zeros(2), task="multilabel")
    with pytest.raises(ValueError, match="warmup_epochs"):
        TrainConfig(epochs=2, warmup_epochs=3)


def test_notebook_path_with_torch_tensors_cls_and_padding():
    g = torch.Generator().manual_seed(0)
    tokens = torch.randn(20, 6, 8, generator=g).half()
    mask = torch.zeros(20, 6, dtype=torch.bool)
    mask[::2, 4:] = True
    labels = torch.randint(0, 3, (20,), generator=g)
    data = ProbeData(
        tokens=tokens,
        labels=labels,
        task="multiclass",
        cls=tokens[:, 0],
        padding_mask=mask,
        grid=(3, 2),
    )
    for name in ("linear", "conv", "protobin"):
        probe = create_probe(name, embed_dim=8, num_classes=3)
        result = fit(probe, data, data, TrainConfig(epochs=1, batch_size=8))
        assert set(result.final_val) == {"score", "accuracy", "auroc"}
