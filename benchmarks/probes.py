"""Per-probe cost of one training step: parameters, step time, peak memory; prints a table.

    python benchmarks/probes.py                                   # both shapes, all probes
    python benchmarks/probes.py --shapes as20k --batch 16 --steps 2 --probes protobin,mhca
    python benchmarks/probes.py --device cuda                     # CUDA when available

Shapes (``--batch`` / ``--tokens`` shrink them for a slow CPU; memory scales ~linearly in B):
``as20k``: B=128, N=512, D=768, C=527, J=10; ``c10``: B=128, N=512, D=768, C=10, J=20.
A step = forward, asymmetric loss, backward, AdamW step, on random tokens with a padding mask.
``protobin`` runs with its default ``memory_efficient=True`` (the similarity max computed in
prototype chunks, never the whole B x M x N tensor); ``protobin_plain`` is the literal version
(``memory_efficient=False``) side by side (likewise ``proto`` / ``proto_plain``, top-k chunked); ``--compare`` checks outputs and gradients of the two
against each other at the same shape.

Memory: CUDA reports ``max_memory_allocated`` above the inputs. On CPU each measurement runs in
a fresh subprocess that resets the kernel's peak-RSS counter (``/proc/self/clear_refs``) after
building the inputs, the probe and the optimizer, so "peak MB" is the extra resident memory of
the steps (activations, gradients, optimizer state) above that baseline.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from probes import PROBES, create_probe
from probes.losses import AsymmetricLoss
from probes.train import make_optimizer

SHAPES = {
    "as20k": {"B": 128, "N": 512, "D": 768, "C": 527, "J": 10},
    "c10": {"B": 128, "N": 512, "D": 768, "C": 10, "J": 20},
}
VARIANTS = {
    "protobin_plain": ("protobin", {"memory_efficient": False}),
    "proto_plain": ("proto", {"memory_efficient": False}),
}


def _probe(name: str, shape: dict[str, int], chunk_size: int) -> torch.nn.Module:
    base, extra = VARIANTS.get(name, (name, {}))
    hparams = dict(extra)
    if base in ("proto", "protobin"):
        hparams["prototypes_per_class"] = shape["J"]
    if base in ("proto", "protobin"):
        hparams["chunk_size"] = chunk_size
    return create_probe(base, embed_dim=shape["D"], num_classes=shape["C"], **hparams)


def _inputs(shape: dict[str, int], device: torch.device):
    g = torch.Generator().manual_seed(0)
    b, n, d, c = shape["B"], shape["N"], shape["D"], shape["C"]
    tokens = torch.randn(b, n, d, generator=g).to(device)
    mask = torch.zeros(b, n, dtype=torch.bool)
    mask[: b // 4, n // 2 :] = True  # a quarter of the clips are half padding
    labels = (torch.rand(b, c, generator=g) < 0.02).float()
    grid = (n // 8, 8) if n % 8 == 0 else (n, 1)
    return tokens, mask.to(device), labels.to(device), grid


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def measure(name: str, shape: dict[str, int], steps: int, device: str, chunk: int) -> dict:
    """Time and memory of ``steps`` training steps (after one warm-up step)."""
    dev = torch.device(device)
    torch.manual_seed(0)
    probe = _probe(name, shape, chunk).to(dev).train()
    tokens, mask, labels, grid = _inputs(shape, dev)
    loss_fn = AsymmetricLoss()
    opt = make_optimizer(probe, 1e-4, 1e-4)

    def step() -> None:
        out = probe(tokens, padding_mask=mask, grid=grid)
        loss = loss_fn(out, labels)
        aux = probe.auxiliary_loss()
        (loss if aux is None else loss + aux).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    cuda = dev.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        Path("/proc/self/clear_refs").write_text("5")
        base = _rss_kb("VmRSS") * 1024
    times = []
    for i in range(steps + 1):
        start = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize()
        if i:  # the first step allocates optimizer state and warms caches
            times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() if cuda else _rss_kb("VmHWM") * 1024
    return {
        "probe": name,
        "params": sum(p.numel() for p in probe.parameters()),
        "step_ms": 1000 * statistics.median(times) if times else float("nan"),
        "peak_mb": (peak - base) / 2**20,
    }


def compare(shape: dict[str, int], device: str, chunk: int) -> dict:
    """Max abs difference of outputs and gradients, protobin memory-efficient vs plain."""
    dev = torch.device(device)
    torch.manual_seed(0)
    plain = _probe("protobin_plain", shape, chunk).to(dev)
    fused = _probe("protobin", shape, chunk).to(dev)
    fused.load_state_dict(plain.state_dict())
    tokens, mask, labels, _ = _inputs(shape, dev)
    results = []
    for probe in (plain, fused):
        out = probe(tokens, padding_mask=mask)
        AsymmetricLoss()(out, labels).backward()
        results.append([out.detach(), probe.prototypes.grad, probe.head.weight.grad])
    names = ("logits", "grad_prototypes", "grad_head")
    return {
        n: float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))
        for n, a, b in zip(names, *results, strict=True)
    }


def _in_subprocess(args: argparse.Namespace, name: str, shape_name: str) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        name,
        "--shapes",
        shape_name,
        "--steps",
        str(args.steps),
        "--device",
        args.device,
        "--threads",
        str(args.threads),
        "--chunk-size",
        str(args.chunk_size),
    ]
    for flag in ("batch", "tokens"):
        if getattr(args, flag):
            cmd += [f"--{flag}", str(getattr(args, flag))]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"probe": name, "error": done.stderr.strip().splitlines()[-1:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _shape(args: argparse.Namespace, name: str) -> dict[str, int]:
    if name not in SHAPES:
        raise SystemExit(f"unknown shape {name!r}; valid: {', '.join(SHAPES)}")
    shape = dict(SHAPES[name])
    shape["B"] = args.batch or shape["B"]
    shape["N"] = args.tokens or shape["N"]
    return shape


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="as20k,c10")
    parser.add_argument("--probes", default=",".join([*PROBES.names(), *VARIANTS]))
    parser.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up")
    parser.add_argument("--batch", type=int, default=0, help="override B (0: the shape's)")
    parser.add_argument("--tokens", type=int, default=0, help="override N (0: the shape's)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--chunk-size", type=int, default=512)
    parser.add_argument("--compare", action="store_true", help="check protobin vs protobin_plain")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.worker:
        print(
            json.dumps(
                measure(
                    args.worker, _shape(args, args.shapes), args.steps, args.device, args.chunk_size
                )
            )
        )
        return
    probes = [p for p in args.probes.split(",") if p]
    for p in probes:
        if p not in PROBES and p not in VARIANTS:
            raise SystemExit(
                f"unknown probe {p!r}; valid: {', '.join(PROBES.names())}, {', '.join(VARIANTS)}"
            )
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print(
        f"device: {device_name}, threads: {args.threads}, timed steps: {args.steps}, "
        f"torch {torch.__version__}"
    )
    for shape_name in args.shapes.split(","):
        shape = _shape(args, shape_name)
        dims = ", ".join(f"{k}={v}" for k, v in shape.items())
        print(f"\n### {shape_name} ({dims})\n")
        print("| probe | params | step ms | peak MB |")
        print("| --- | ---: | ---: | ---: |")
        for name in probes:
            if args.device == "cuda":
                row = measure(name, shape, args.steps, args.device, args.chunk_size)
                torch.cuda.empty_cache()
            else:
                row = _in_subprocess(args, name, shape_name)
            if "error" in row:
                print(f"| {name} | failed: {row['error']} | | |")
                continue
            print(
                f"| {name} | {row['params']:,} | {row['step_ms']:.0f} | {row['peak_mb']:.0f} |",
                flush=True,
            )
        if args.compare:
            diffs = compare(shape, args.device, args.chunk_size)
            print(
                "\nprotobin (memory-efficient) vs protobin_plain, max |diff| / max |plain|: "
                + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items())
            )


if __name__ == "__main__":
    main()
