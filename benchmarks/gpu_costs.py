"""Measure the two unit costs the dry-run price is built from, on whatever device is present.

Extraction: seconds per 10 s clip for each encoder at base size (random init: speed does not
depend on the weights), front end + encoder on the device, bf16 autocast on CUDA, batch 64,
audio already decoded (decode/resample run on CPU workers beside the GPU; see
benchmarks/extract.py). Probe steps are measured by benchmarks/probes.py (B=128, N=512).

    python benchmarks/gpu_costs.py --device cuda --batch 64 --batches 4

Prints a markdown table and a JSON line to paste into benchmarks/costs.json.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from backbones import BACKBONES, create_backbone


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--size", default="base")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--batches", type=int, default=4)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--encoders", nargs="*", default=BACKBONES.names())
    args = p.parse_args()
    dev = torch.device(args.device)
    name = torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu"
    print(f"device {name}, torch {torch.__version__}, batch {args.batch}, {args.seconds} s clips")
    print("| encoder | s/clip | clips/s |\n| --- | ---: | ---: |")
    out = {}
    for enc in args.encoders:
        bb = create_backbone(enc, checkpoint="random", size=args.size).to(dev)
        sr = int(bb.spec.sample_rate)
        wave = torch.randn(args.batch, int(args.seconds * sr), device=dev) * 0.1
        lengths = torch.full((args.batch,), wave.shape[1], dtype=torch.long, device=dev)
        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else None

        def step(bb=bb) -> None:  # bound now: `del bb` below ends each encoder's turn
            with torch.no_grad():
                if ctx is not None:
                    with ctx:
                        tm = bb.embed(wave, sample_rate=sr, lengths=lengths)
                else:
                    tm = bb.embed(wave, sample_rate=sr, lengths=lengths)
                tm.tokens.float().cpu()

        step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(args.batches):
            step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        per_clip = (time.perf_counter() - t0) / (args.batches * args.batch)
        out[enc] = round(per_clip, 6)
        print(f"| {enc} | {per_clip:.5f} | {1 / per_clip:.0f} |")
        del bb
    print(json.dumps({"device": name, "extract_seconds_per_clip": out}))


if __name__ == "__main__":
    main()
