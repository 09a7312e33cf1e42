"""Tests generated from the probe registry: every registered probe gets every check."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from probes import PROBES, ProbeData, TrainConfig, create_probe, evaluate, fit, probe_hparams
from probes.registry import RegistryError

ALL = PROBES.names()
PAPER_NAMES = {
    "linear",
    "mlp",
    "linearc",
    "conv",
    "linpre",
    "mhca",
    "ep",
    "simpool",
    "abmilp",
    "proto",
    "protobin",
}
D, C, T, F = 16, 3, 4, 3  # N = T*F = 12 tokens, time-major


def _inputs(batch: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randn(batch, T * F, D, generator=g)
    cls = torch.randn(batch, D, generator=g)
    mask = torch.zeros(batch, T * F, dtype=torch.bool)
    mask[1, 2 * F :] = True  # the second clip is 2 of 4 time frames long
    return tokens, cls, mask


def test_registry_holds_the_paper_names():
    assert set(ALL) == PAPER_NAMES


def test_unknown_probe_and_hparam_are_refused_with_choices():
    with pytest.raises(RegistryError, match="Did you mean 'protobin'"):
        create_probe("protobn", embed_dim=D, num_classes=C)
    with pytest.raises(TypeError, match="prototypes_per_class"):
        create_probe("protobin", embed_dim=D, num_classes=C, prototypes_per_clas=3)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("with_cls", [True, False])
def test_output_shape(name, with_cls):
    tokens, cls, mask = _inputs()
    probe = create_probe(name, embed_dim=D, num_classes=C)
    out = probe(tokens, cls=cls if with_cls else None, padding_mask=mask, grid=(T, F))
    assert out.shape == (2, C)
    assert torch.isfinite(out).all()
    assert probe(tokens).shape == (2, C)  # mask and grid are optional


@pytest.mark.parametrize("name", ALL)
def test_wrong_embed_dim_is_refused(name):
    probe = create_probe(name, embed_dim=D, num_classes=C)
    with pytest.raises(ValueError, match="embed_dim"):
        probe(torch.randn(2, 5, D + 1))


@pytest.mark.parametrize("name", ALL)
def test_gradients_reach_every_parameter(name):
    tokens, cls, mask = _inputs(batch=4)
    probe = create_probe(name, embed_dim=D, num_classes=C)
    probe.train()
    out = probe(tokens, cls=cls, padding_mask=mask, grid=(T, F))
    loss = (out * torch.randn_like(out)).sum()
    aux = probe.auxiliary_loss()
    if aux is not None:
        loss = loss + aux
    loss.backward()
    for pname, param in probe.named_parameters():
        assert param.grad is not None, f"{name}.{pname} gets no gradient"
        assert param.grad.abs().sum() > 0, f"{name}.{pname} gets a zero gradient"


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("training", [False, True])
def test_padding_is_respected(name, training):
    """Padded tokens can hold anything (huge values too): logits equal the truncated clip's."""
    tokens, _, mask = _inputs()
    probe = create_probe(name, embed_dim=D, num_classes=C)
    probe.train(training)
    garbage = tokens.clone()
    garbage[mask] = 1e4 * torch.randn(int(mask.sum()), D)
    out = probe(tokens, cls=None, padding_mask=mask, grid=(T, F))
    out_garbage = probe(garbage, cls=None, padding_mask=mask, grid=(T, F))
    torch.testing.assert_close(out, out_garbage)
    short = probe(tokens[1:, : 2 * F], cls=None, grid=(2, F))
    torch.testing.assert_close(out[1:], short, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["linear", "mlp"])
def test_vector_probes_use_cls_when_given_and_token_mean_otherwise(name):
    tokens, cls, _ = _inputs()
    probe = create_probe(name, embed_dim=D, num_classes=C)
    same_cls_other_tokens = probe(torch.randn_like(tokens), cls=cls)
    torch.testing.assert_close(probe(tokens, cls=cls), same_cls_other_tokens)
    torch.testing.assert_close(probe(tokens), probe(tokens.mean(1, keepdim=True)))


@pytest.fixture
def tiny_split(make_separable) -> ProbeData:
    tokens, labels, cls = make_separable(n=48)
    return ProbeData(tokens=tokens, labels=labels, task="multiclass", cls=cls, grid=(4, 2))


@pytest.mark.parametrize("name", ALL)
def test_fit_is_deterministic_under_a_seed(name, tiny_split):
    data = tiny_split
    config = TrainConfig(lr=1e-2, epochs=2, batch_size=16, seed=3)
    probes = [create_probe(name, embed_dim=D, num_classes=C) for _ in range(3)]
    results = [fit(p, data, data, config) for p in probes[:2]]
    assert [r.history for r in results[0:1]] == [results[1].history]
    for (k, a), b in zip(
        probes[0].state_dict().items(), probes[1].state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), f"{name}.{k} differs between two fits with the same seed"
    fit(probes[2], data, data, TrainConfig(lr=1e-2, epochs=2, batch_size=16, seed=4))
    assert any(
        not torch.equal(a, b)
        for a, b in zip(
            probes[0].state_dict().values(), probes[2].state_dict().values(), strict=True
        )
    )


@pytest.mark.parametrize("name", ALL)
def test_learns_a_separable_task(name, make_separable):
    tokens, labels, cls = make_separable(n=48)
    train = ProbeData(tokens=tokens, labels=labels, task="multiclass", cls=cls, grid=(4, 2))
    tokens, labels, cls = make_separable(n=48, seed=0, draw=1)
    test = ProbeData(tokens=tokens, labels=labels, task="multiclass", cls=cls, grid=(4, 2))
    probe = create_probe(name, embed_dim=D, num_classes=C)
    fit(probe, train, None, TrainConfig(lr=1e-2, weight_decay=0.0, epochs=15, batch_size=16))
    assert evaluate(probe, test)["accuracy"] >= 0.9


@pytest.mark.parametrize("name", ALL)
def test_default_hparams_are_introspectable(name):
    hparams = probe_hparams(name)
    probe = create_probe(name, embed_dim=D, num_classes=C, **hparams)
    assert isinstance(probe, torch.nn.Module)
    assert np.isfinite(sum(p.detach().sum().item() for p in probe.parameters()))


VARIANTS = [
    ("linear", {"pool": "max"}),
    ("mlp", {"num_layers": 1}),
    ("mlp", {"num_layers": 3, "hidden_dim": 8, "dropout": 0.1}),
    ("linearc", {"parts": ["cls", "mean", "max"]}),
    ("conv", {"pool": "max", "num_layers": 2, "hidden_dim": 8}),
    ("linpre", {"pool": "mean"}),
    ("linpre", {"pool": "lse"}),
    ("mhca", {"num_heads": 4}),
    ("ep", {"num_queries": 4, "value_dim": 3}),
    ("abmilp", {"gated": True}),
    ("proto", {"topk": 50, "ortho_weight": 0.0}),
    ("proto", {"memory_efficient": False}),
    ("protobin", {"memory_efficient": False}),
    ("protobin", {"chunk_size": 7}),
]


@pytest.mark.parametrize(("name", "hparams"), VARIANTS)
def test_configurable_choices_respect_padding(name, hparams):
    tokens, cls, mask = _inputs()
    probe = create_probe(name, embed_dim=D, num_classes=C, **hparams).eval()
    garbage = tokens.clone()
    garbage[mask] = 1e4 * torch.randn(int(mask.sum()), D)
    out = probe(tokens, cls=cls, padding_mask=mask, grid=(T, F))
    assert out.shape == (2, C)
    torch.testing.assert_close(out, probe(garbage, cls=cls, padding_mask=mask, grid=(T, F)))


@pytest.mark.parametrize(
    ("name", "hparams", "match"),
    [
        ("linear", {"pool": "attention"}, "pool"),
        ("mhca", {"num_heads": 5}, "num_heads"),
        ("linpre", {"pool": "median"}, "pool"),
        ("conv", {"kernel_size": 2}, "kernel_size"),
        ("protobin", {"prototypes_per_class": 0}, "prototypes_per_class"),
        ("linearc", {"parts": ["cls", "median"]}, "parts"),
    ],
)
def test_bad_hparams_are_refused_with_the_valid_choices(name, hparams, match):
    with pytest.raises(ValueError, match=match):
        create_probe(name, embed_dim=D, num_classes=C, **hparams)


def test_conv_refuses_a_grid_that_does_not_match_the_tokens():
    probe = create_probe("conv", embed_dim=D, num_classes=C)
    with pytest.raises(ValueError, match="grid"):
        probe(torch.randn(2, T * F, D), grid=(T, F + 1))


def test_cls_pool_without_cls_says_how_to_fix():
    probe = create_probe("linear", embed_dim=D, num_classes=C, pool="cls")
    with pytest.raises(ValueError, match="pool='auto'"):
        probe(torch.randn(2, 4, D))
