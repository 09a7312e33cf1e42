"""Evaluation metrics in numpy: macro mAP, accuracy, macro AUROC.

Definitions match scikit-learn (checked in the tests) without depending on it:
- average precision per class = sum over distinct score thresholds of (R_n - R_{n-1}) P_n
  (``sklearn.metrics.average_precision_score``: no interpolation, tied scores grouped);
  macro mAP = mean over the classes that have at least one positive.
- AUROC per class = the Mann-Whitney probability (ties count one half), equal to
  ``roc_auc_score``; macro over classes with both positives and negatives. Multi-class AUROC is
  one-vs-rest on softmax probabilities.
A metric with no eligible class is NaN.
"""

from __future__ import annotations

import numpy as np


def average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """Average precision of one class (``scores`` and {0,1} ``targets`` of shape ``[n]``)."""
    y = np.asarray(targets).astype(bool)
    n_pos = int(y.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="mergesort")
    s, y = np.asarray(scores, dtype=np.float64)[order], y[order]
    last_of_group = np.r_[np.flatnonzero(np.diff(s)), y.size - 1]
    tps = np.cumsum(y)[last_of_group]
    fps = (last_of_group + 1) - tps
    precision = tps / (tps + fps)
    recall = tps / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def mean_average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """Macro mAP over the classes with positives; ``scores``/``targets`` ``[n, C]``."""
    aps = [
        average_precision(scores[:, c], targets[:, c])
        for c in range(targets.shape[1])
        if targets[:, c].any()
    ]
    return float(np.mean(aps)) if aps else float("nan")


def _rank_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    s = np.asarray(scores, dtype=np.float64)
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    new_group = np.r_[True, np.diff(sorted_s) != 0]
    starts = np.flatnonzero(new_group)
    ends = np.r_[starts[1:], s.size]
    average_rank = (starts + ends + 1) / 2.0  # 1-based mean rank of each tie group
    ranks = np.empty(s.size, dtype=np.float64)
    ranks[order] = average_rank[np.cumsum(new_group) - 1]
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def macro_auroc(scores: np.ndarray, targets: np.ndarray) -> float:
    """Macro AUROC over classes with both positives and negatives; ``[n, C]`` inputs."""
    aucs = [_rank_auc(scores[:, c], targets[:, c].astype(bool)) for c in range(targets.shape[1])]
    aucs = [a for a in aucs if not np.isnan(a)]
    return float(np.mean(aucs)) if aucs else float("nan")


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of ``logits`` ``[n, C]`` against int ``labels`` ``[n]``."""
    return float(np.mean(np.argmax(logits, axis=1) == np.asarray(labels)))


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def compute_metrics(logits: np.ndarray, labels: np.ndarray, task: str) -> dict[str, float]:
    """``{"score", "map"|"accuracy", "auroc"}`` for ``task`` (``score`` is the main metric)."""
    logits = np.asarray(logits, dtype=np.float64)
    if task == "multilabel":
        targets = np.asarray(labels).astype(bool)
        m = mean_average_precision(logits, targets)
        return {"score": m, "map": m, "auroc": macro_auroc(logits, targets)}
    if task == "multiclass":
        labels = np.asarray(labels).astype(np.int64)
        acc = accuracy(logits, labels)
        onehot = np.eye(logits.shape[1], dtype=bool)[labels]
        return {"score": acc, "accuracy": acc, "auroc": macro_auroc(_softmax(logits), onehot)}
    raise ValueError(f"unknown task {task!r}; valid: 'multilabel', 'multiclass'.")
