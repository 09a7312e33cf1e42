"""``python -m orchestrator.check encoder=REF``: does an encoder keep the contract?

A sweep trusts an encoder's token maps blindly: a frequency-major grid, weights that train,
or padding that leaks into a clip's tokens silently change every probe's score. This checker
runs the encoder on a few synthetic clips and names every failure with its fix (like HEAR's
``hear-validator`` and X-ARES' checker):

- contract: ``sample_rate``, ``embed_dim``, ``embed`` returning a TokenMap of the right shapes;
- frozen: no parameter requires grad, and embedding changes no weight or buffer;
- determinism: the same clip twice gives the same tokens;
- padding: a clip inside a padded batch gives the tokens it gives alone;
- time order: a change at the end of a clip changes the last token rows most (time-major);
- speed: seconds per clip on this machine.

:func:`cheap_problems` (contract and shapes on one short clip) is what the pre-flight runs.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass
from typing import Any

import torch

log = logging.getLogger(__name__)

FIX_ORDER = (
    "return tokens time-major (token index t * F + f) with grid=(T, F); a conv patch output "
    "[B, D, F, T] becomes x.permute(0, 3, 2, 1).reshape(B, T * F, D)"
)


@dataclass(frozen=True)
class Finding:
    """One check: its name, whether it passed, and what it saw (with the fix when it failed)."""

    check: str
    ok: bool
    detail: str


def _clips(rate: int, seconds: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    n = int(rate * seconds)
    t = torch.arange(n) / rate
    tone = torch.sin(2 * torch.pi * 440.0 * t)
    return torch.stack(
        [0.1 * torch.randn(n, generator=g) + 0.1 * tone, 0.1 * torch.randn(n, generator=g)]
    )


def _build(ref: str, checkpoint: str | None) -> tuple[Any, Any]:
    """(the user's raw object or None, the backbone)."""
    from backbones import BACKBONES, create_backbone

    if ref in BACKBONES.names():
        return None, create_backbone(ref, checkpoint or "random", size="tiny")
    from backbones.contract import UserBackbone
    from backbones.user import build_user_encoder

    raw, name = build_user_encoder(ref, checkpoint)
    trainable = _trainable(raw)
    backbone = UserBackbone(raw, name, ref)
    return trainable, backbone


def _trainable(raw: Any) -> list[str]:
    if not isinstance(raw, torch.nn.Module):
        return []
    return [n for n, p in raw.named_parameters() if p.requires_grad]


def _shape_findings(backbone: Any, wave: torch.Tensor, rate: int) -> tuple[list[Finding], Any]:
    d = int(backbone.spec.embed_dim)
    try:
        tm = backbone.embed(wave, rate, torch.tensor([wave.shape[1]] * wave.shape[0]))
    except Exception as err:  # noqa: BLE001 - the user's code: report whatever it raises
        return [Finding("contract", False, f"embed() raised {type(err).__name__}: {err}")], None
    b = wave.shape[0]
    problems = []
    if tm.tokens.dim() != 3 or tm.tokens.shape[0] != b or tm.tokens.shape[2] != d:
        problems.append(
            f"tokens have shape {tuple(tm.tokens.shape)}, expected [B={b}, N, "
            f"D={d}] (D = embed_dim)"
        )
    if tm.cls is not None and tuple(tm.cls.shape) != (b, d):
        problems.append(f"cls has shape {tuple(tm.cls.shape)}, expected {(b, d)} or None")
    if not torch.isfinite(tm.tokens).all():
        problems.append("tokens hold NaN or inf")
    if bool(tm.padding_mask.all(1).any()):
        problems.append("a full-length clip has every token marked as padding")
    detail = "; ".join(problems) or f"tokens {tuple(tm.tokens.shape)}, grid {tm.grid}"
    return [Finding("shapes", not problems, detail)], tm


def cheap_problems(ref: str, checkpoint: str | None = None) -> list[str]:
    """Contract, frozen weights and shapes on one 1 s clip (what the pre-flight runs)."""
    try:
        trainable, backbone = _build(ref, checkpoint)
    except Exception as err:  # noqa: BLE001 - the user's code may raise anything
        return [f"encoder {ref!r}: {type(err).__name__}: {err}"]
    rate = int(backbone.spec.sample_rate)
    out = [
        f"encoder {ref!r}: {f.detail}"
        for f in _shape_findings(backbone, _clips(rate, 1.0)[:1], rate)[0]
        if not f.ok
    ]
    if trainable:
        out.append(f"encoder {ref!r}: {_frozen_detail(trainable)}")
    return out


def _frozen_detail(names: list[str]) -> str:
    return (
        f"{len(names)} parameters require grad ({', '.join(names[:3])}...): the benchmark "
        f"probes frozen encoders; call self.requires_grad_(False) and self.eval() in "
        f"__init__"
    )


def run_checks(ref: str, checkpoint: str | None = None, seconds: float = 4.0) -> list[Finding]:
    """Every check of the module docstring, in order; never raises for the encoder's faults."""
    from backbones.user import UserEncoderError
    from probes.registry import RegistryError

    try:
        trainable, backbone = _build(ref, checkpoint)
    except (UserEncoderError, RegistryError):
        raise
    except Exception as err:  # noqa: BLE001 - the user's code may raise anything
        return [Finding("contract", False, f"{type(err).__name__}: {err}")]
    rate = int(backbone.spec.sample_rate)
    wave = _clips(rate, seconds)
    findings = [
        Finding(
            "contract",
            True,
            f"{backbone.spec.name}: sample_rate {rate}, embed_dim "
            f"{backbone.spec.embed_dim}, weights {backbone.weights_id[:24]}",
        )
    ]
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    shapes, tm = _shape_findings(backbone, wave, rate)
    findings += shapes
    if tm is None:
        return findings
    full = torch.tensor([wave.shape[1]] * 2)
    t0 = time.perf_counter()
    again = backbone.embed(wave, rate, full)
    per_clip = (time.perf_counter() - t0) / wave.shape[0]
    changed = [k for k, v in backbone.state_dict().items() if not torch.equal(v, before[k])]
    problems = []
    if trainable:
        problems.append(_frozen_detail(trainable))
    if changed:
        problems.append(
            f"embed() changed {', '.join(changed[:3])}: keep BatchNorm/buffers "
            f"fixed (eval mode; no in-place updates in embed)"
        )
    findings.append(Finding("frozen", not problems, "; ".join(problems) or "weights unchanged"))
    diff = float((again.tokens - tm.tokens).abs().max())
    findings.append(
        Finding(
            "determinism",
            diff <= 1e-5,
            f"same clip twice differs by {diff:.3g}"
            + ("" if diff <= 1e-5 else ": disable dropout/random ops in embed (eval mode)"),
        )
    )
    findings.append(_padding_finding(backbone, wave, rate))
    findings.append(_order_finding(backbone, wave, rate, tm))
    findings.append(Finding("speed", True, f"{per_clip * 1000:.1f} ms per {seconds:g} s clip"))
    return findings


def _padding_finding(backbone: Any, wave: torch.Tensor, rate: int) -> Finding:
    short = wave.shape[1] // 2
    batch = backbone.embed(wave, rate, torch.tensor([short, wave.shape[1]]))
    alone = backbone.embed(wave[:1, :short], rate, torch.tensor([short]))
    keep = ~alone.padding_mask[0]
    n_alone = int(keep.sum())
    n_batch = int((~batch.padding_mask[0]).sum())
    fix = (
        "compute each clip only from its first lengths[i] samples and mark tokens beyond "
        "them True in padding_mask (or run clips one at a time)"
    )
    if n_alone != n_batch:
        return Finding(
            "padding",
            False,
            f"a half-length clip has {n_alone} real tokens alone "
            f"but {n_batch} inside a padded batch: {fix}",
        )
    a = alone.tokens[0][keep]
    b = (
        batch.tokens[0][: alone.tokens.shape[1]][keep]
        if batch.tokens.shape[1] >= alone.tokens.shape[1]
        else None
    )
    if b is None:
        return Finding(
            "padding", False, f"the padded batch has fewer tokens than the clip alone: {fix}"
        )
    diff = float((a - b).abs().max()) / max(float(a.abs().max()), 1e-6)
    ok = diff <= 1e-3
    return Finding(
        "padding",
        ok,
        f"clip in a padded batch vs alone: relative difference "
        f"{diff:.3g}" + ("" if ok else f" (padding leaks into the clip): {fix}"),
    )


def _order_finding(backbone: Any, wave: torch.Tensor, rate: int, tm: Any) -> Finding:
    t, f = tm.grid
    if t < 4:
        return Finding("time order", True, f"grid {tm.grid}: too few time rows to test")
    n = wave.shape[1]
    changed = wave.clone()
    g = torch.Generator().manual_seed(1)
    changed[:, 3 * n // 4 :] = 0.3 * torch.randn(2, n - 3 * n // 4, generator=g)
    other = backbone.embed(changed, rate, torch.tensor([n, n]))
    per_row = (other.tokens - tm.tokens).abs().mean(-1).reshape(2, t, f).mean((0, 2))
    share = float(per_row[t // 2 :].sum() / per_row.sum().clamp_min(1e-12))
    ok = share >= 0.7
    return Finding(
        "time order",
        ok,
        f"changing the last quarter of a clip puts {share:.0%} of the token change "
        f"in the last half of the time rows (expected >= 70%)"
        + ("" if ok else f": the grid is not in time order; {FIX_ORDER}"),
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m orchestrator.check",
        description="Check that an encoder keeps the benchmark's contract (see README, "
        "'Benchmark your own encoder').",
    )
    p.add_argument(
        "items",
        nargs="+",
        metavar="encoder=REF",
        help="encoder=REF (a built-in name, file.py:Name, pkg.mod:Name, hf:<id>, "
        "hear:<module>), optionally checkpoint=PATH",
    )
    p.add_argument("--seconds", type=float, default=4.0, help="clip length (default 4)")
    args = p.parse_args(argv)
    opts = dict(item.split("=", 1) for item in args.items if "=" in item)
    bad = [
        i for i in args.items if "=" not in i or i.split("=", 1)[0] not in ("encoder", "checkpoint")
    ]
    if bad or "encoder" not in opts:
        print(
            f"error: expected encoder=REF [checkpoint=PATH], got {' '.join(args.items)!r}; "
            f"e.g. python -m orchestrator.check encoder=my_encoder.py:MyEncoder",
            file=sys.stderr,
        )
        return 2
    from backbones.user import UserEncoderError
    from probes.registry import RegistryError

    try:
        findings = run_checks(opts["encoder"], opts.get("checkpoint"), args.seconds)
    except (UserEncoderError, RegistryError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for fd in findings:
        print(f"{'ok  ' if fd.ok else 'FAIL'} {fd.check:12s} {fd.detail}")
    failed = [fd.check for fd in findings if not fd.ok]
    print(
        f"{opts['encoder']}: " + (f"FAILED {', '.join(failed)}" if failed else "all checks passed")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(main())
