"""Metrics and losses against references: scikit-learn for metrics, hand values for ASL."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, average_precision_score, roc_auc_score

from probes import AsymmetricLoss, compute_metrics, make_loss
from probes.losses import resolve_loss
from probes.metrics import average_precision, macro_auroc, mean_average_precision


@pytest.fixture
def multilabel():
    rng = np.random.default_rng(0)
    targets = (rng.random((60, 6)) < 0.3).astype(int)
    targets[:, 4] = 0  # a class without positives: excluded from mAP and AUROC
    targets[:, 5] = 1  # a class without negatives: in mAP, excluded from AUROC
    scores = np.round(rng.standard_normal((60, 6)) + targets, 1)  # rounding makes ties
    return scores, targets


def test_average_precision_matches_sklearn_with_ties(multilabel):
    scores, targets = multilabel
    for c in (0, 1, 2, 3, 5):
        assert average_precision(scores[:, c], targets[:, c]) == pytest.approx(
            average_precision_score(targets[:, c], scores[:, c]), abs=1e-12
        )
    assert math.isnan(average_precision(scores[:, 4], targets[:, 4]))


def test_macro_map_is_over_classes_with_positives(multilabel):
    scores, targets = multilabel
    ref = np.mean([average_precision_score(targets[:, c], scores[:, c]) for c in (0, 1, 2, 3, 5)])
    assert mean_average_precision(scores, targets) == pytest.approx(ref, abs=1e-12)


def test_macro_auroc_matches_sklearn(multilabel):
    scores, targets = multilabel
    ref = np.mean([roc_auc_score(targets[:, c], scores[:, c]) for c in (0, 1, 2, 3)])
    assert macro_auroc(scores, targets) == pytest.approx(ref, abs=1e-12)


def test_multiclass_metrics_match_sklearn():
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((50, 4))
    labels = rng.integers(0, 4, 50)
    got = compute_metrics(logits, labels, "multiclass")
    probs = torch.softmax(torch.as_tensor(logits), dim=1).numpy()
    assert (
        got["accuracy"] == got["score"] == pytest.approx(accuracy_score(labels, logits.argmax(1)))
    )
    assert got["auroc"] == pytest.approx(roc_auc_score(labels, probs, multi_class="ovr"), abs=1e-9)


def test_multilabel_metric_keys_and_unknown_task(multilabel):
    scores, targets = multilabel
    got = compute_metrics(scores, targets, "multilabel")
    assert set(got) == {"score", "map", "auroc"} and got["score"] == got["map"]
    with pytest.raises(ValueError, match="multiclass"):
        compute_metrics(scores, targets, "regression")


def test_asl_defaults_are_the_published_ones():
    asl = AsymmetricLoss()
    assert (asl.gamma_neg, asl.gamma_pos, asl.clip, asl.eps) == (4.0, 1.0, 0.05, 1e-8)


def test_asl_matches_a_hand_computation():
    # logit 0: p = 0.5. Positive: -log(0.5) * (1 - 0.5)^1. Negative: the clip shifts 1 - p to
    # 0.55, so -log(0.55) * (1 - 0.55)^4. Loss = sum over classes, mean over the batch.
    loss = AsymmetricLoss()(torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]))
    expected = -math.log(0.5) * 0.5 + -math.log(0.55) * 0.45**4
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_asl_without_focusing_and_clip_is_bce():
    logits, targets = torch.randn(5, 3), (torch.rand(5, 3) < 0.5).float()
    plain = AsymmetricLoss(gamma_neg=0, gamma_pos=0, clip=0)(logits, targets)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="sum")
    assert plain.item() == pytest.approx(bce.item() / 5, rel=1e-5)


def test_loss_auto_resolution_and_mismatch():
    assert resolve_loss("auto", "multilabel") == "asl"
    assert resolve_loss("auto", "multiclass") == "ce"
    ce = make_loss("auto", "multiclass")
    logits, labels = torch.randn(4, 3), torch.tensor([0, 2, 1, 2])
    assert ce(logits, labels).item() == pytest.approx(
        torch.nn.functional.cross_entropy(logits, labels).item()
    )
    with pytest.raises(ValueError, match="multiclass"):
        resolve_loss("ce", "multilabel")
    with pytest.raises(ValueError, match="valid"):
        resolve_loss("focal", "multilabel")
