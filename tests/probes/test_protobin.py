"""protobin as the paper specifies it: a hand computation, the straight-through estimator,
the memory-efficient variant against the plain one, and the claim that it beats linear where
mean pooling fails."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from probes import ProbeData, TrainConfig, create_probe, evaluate, fit
from probes.fused import cosine_max
from probes.heads.prototype import binarize


def _hand_probe():
    probe = create_probe("protobin", embed_dim=3, num_classes=1, prototypes_per_class=2)
    with torch.no_grad():
        probe.prototypes.copy_(torch.tensor([[0.5, -0.1, 0.0], [-0.2, -0.3, 0.4]]))
        probe.head.weight.copy_(torch.tensor([[2.0, 3.0]]))
        probe.head.bias.fill_(0.5)
    return probe.eval()


def test_structure_matches_the_paper():
    probe = create_probe("protobin", embed_dim=256, num_classes=5, prototypes_per_class=7)
    assert probe.prototypes.shape == (35, 256)
    assert isinstance(probe.head, torch.nn.Linear) and probe.head.weight.shape == (5, 35)
    assert probe.head.bias is not None
    assert probe.prototypes.std().item() == pytest.approx(0.02, rel=0.05)
    assert set(probe.binary_prototypes().unique().tolist()) == {-1.0, 1.0}


@pytest.mark.parametrize("memory_efficient", [False, True])
def test_protobin_equals_a_hand_computation(memory_efficient):
    probe = _hand_probe()
    probe.memory_efficient = memory_efficient
    tokens = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 2.0, 2.0]]])
    # binarised (0.0 >= 0 -> +1): p1 = [1, -1, 1], p2 = [-1, -1, 1]
    # cos(t1, p1) = 1/sqrt(3), cos(t2, p1) = 0 -> max 1/sqrt(3)
    # cos(t1, p2) = -1/sqrt(3), cos(t2, p2) = 0 -> max 0
    expected = 2.0 / math.sqrt(3.0) + 3.0 * 0.0 + 0.5
    assert probe(tokens).item() == pytest.approx(expected, abs=1e-6)
    # padding the first token leaves only t2: both maxima are 0
    mask = torch.tensor([[True, False]])
    assert probe(tokens, padding_mask=mask).item() == pytest.approx(0.5, abs=1e-6)


def test_straight_through_gradient_is_the_identity():
    real = torch.randn(4, 6, requires_grad=True)
    target = torch.randn(4, 6)
    (binarize(real) * target).sum().backward()
    assert torch.equal(real.grad, target)
    assert torch.equal(binarize(real).detach(), torch.where(real >= 0, 1.0, -1.0))


def _pair(chunk_size: int):
    plain = create_probe(
        "protobin", embed_dim=12, num_classes=3, prototypes_per_class=4, memory_efficient=False
    )
    fused = create_probe(
        "protobin",
        embed_dim=12,
        num_classes=3,
        prototypes_per_class=4,
        memory_efficient=True,
        chunk_size=chunk_size,
    )
    fused.load_state_dict(plain.state_dict())
    return plain, fused


@pytest.mark.parametrize("chunk_size", [1, 5, 512])
def test_memory_efficient_variant_equals_the_plain_one(chunk_size):
    plain, fused = _pair(chunk_size)
    g = torch.Generator().manual_seed(0)
    tokens = torch.randn(3, 10, 12, generator=g)
    mask = torch.zeros(3, 10, dtype=torch.bool)
    mask[0, 6:] = True
    weights = torch.randn(3, 3, generator=g)
    grads = []
    for probe in (plain, fused):
        x = tokens.clone().requires_grad_(True)
        out = probe(x, padding_mask=mask)
        (out * weights).sum().backward()
        grads.append((out.detach(), x.grad, probe.prototypes.grad, probe.head.weight.grad))
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_cosine_max_refuses_a_bad_chunk():
    with pytest.raises(ValueError, match="chunk_size"):
        cosine_max(torch.randn(1, 2, 3), torch.randn(4, 3), chunk_size=0)


def test_protobin_beats_linear_where_mean_pooling_fails(make_localized):
    """Localized events whose token mean carries no label information (see conftest)."""
    tokens, labels = make_localized(n=160, tokens=16, seed=0)
    train = ProbeData(tokens=tokens, labels=labels, task="multilabel")
    tokens, labels = make_localized(n=160, tokens=16, seed=1)
    test = ProbeData(tokens=tokens, labels=labels, task="multilabel")
    config = TrainConfig(lr=1e-2, weight_decay=0.0, epochs=30, batch_size=32)
    scores = {}
    for name, hparams in (("linear", {}), ("protobin", {"prototypes_per_class": 4})):
        probe = create_probe(name, embed_dim=8, num_classes=2, **hparams)
        fit(probe, train, None, config)
        scores[name] = evaluate(probe, test)["map"]
    assert scores["protobin"] >= 0.9, scores
    assert scores["linear"] <= 0.7, scores
    assert np.isfinite(list(scores.values())).all()


def test_proto_pools_top_k_mean_in_training_and_max_in_eval():
    probe = create_probe("proto", embed_dim=4, num_classes=1, prototypes_per_class=1, topk=2)
    with torch.no_grad():
        probe.prototypes.copy_(torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
    # cosines with the prototype: 1.0, 0.6, 0.0 and (padded) a huge one
    tokens = torch.tensor([[[1.0, 0, 0, 0], [0.6, 0.8, 0, 0], [0, 1.0, 0, 0], [9.0, 0, 0, 0]]])
    mask = torch.tensor([[False, False, False, True]])
    assert probe.train().scores(tokens, mask).item() == pytest.approx(0.8)
    assert probe.eval().scores(tokens, mask).item() == pytest.approx(1.0)
    assert probe.auxiliary_loss().item() == pytest.approx(0.0, abs=1e-6)  # J=1: nothing to push


def test_proto_orthogonality_loss_is_per_class():
    probe = create_probe("proto", embed_dim=3, num_classes=2, prototypes_per_class=2)
    with torch.no_grad():  # class 0: two equal prototypes; class 1: orthogonal ones
        probe.prototypes.copy_(torch.tensor([[1.0, 0, 0], [2.0, 0, 0], [0, 1.0, 0], [1.0, 0, 0]]))
    # ||P0 P0^T - I||^2 = 2 (off-diagonal ones), class 1 gives 0; mean over classes = 1
    assert probe.auxiliary_loss().item() == pytest.approx(probe.ortho_weight * 1.0)


@pytest.mark.parametrize("training", [True, False])
def test_proto_memory_efficient_equals_plain(training):
    kwargs = {"embed_dim": 12, "num_classes": 2, "prototypes_per_class": 3, "topk": 4}
    plain = create_probe("proto", memory_efficient=False, **kwargs).train(training)
    fused = create_probe("proto", chunk_size=4, **kwargs).train(training)
    fused.load_state_dict(plain.state_dict())
    g = torch.Generator().manual_seed(1)
    tokens = torch.randn(3, 10, 12, generator=g)
    mask = torch.zeros(3, 10, dtype=torch.bool)
    mask[0, 3:] = True  # fewer real tokens than topk
    weights = torch.randn(3, 2, generator=g)
    grads = []
    for probe in (plain, fused):
        x = tokens.clone().requires_grad_(True)
        out = probe(x, padding_mask=mask)
        (out * weights).sum().backward()
        grads.append((out.detach(), x.grad, probe.prototypes.grad, probe.class_weight.grad))
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
