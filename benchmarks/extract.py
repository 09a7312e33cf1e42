"""Token-map extraction throughput per encoder, and the GPU-hours to extract the 14 datasets.

CPU (always): per encoder at the chosen size (base by default, random init: speed does not
depend on the weights), the front end (Kaldi fbank / mel) and the encoder are timed separately
on 10 s clips, plus FLAC decode and 32 -> 16 kHz resampling per clip, and the encoder FLOPs per
10.24 s window (torch.utils.flop_counter).

CUDA (when a GPU is visible): per encoder, dtype (fp32 / bf16 / fp16 autocast) and batch size,
(a) model only (features already on the GPU) and (b) end to end: FLAC decode + front end in
DataLoader CPU workers, pinned memory, non-blocking transfer, overlapped with the GPU. If (b) is
well below (a), decode/fbank on the CPU bounds extraction, not the model.

    python benchmarks/extract.py                      # CPU, all nine, base, 2 batches of 2
    python benchmarks/extract.py --encoders eat beats --batches 1 --threads 2
    python benchmarks/extract.py --device cuda --batch-sizes 16 32 64 128 --workers 12

Prints markdown tables; nothing is timed in tests.
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

# benchmarks/probes.py would shadow the probes package: this folder off the path, the repo first.
HERE = Path(__file__).resolve().parent
sys.path[:] = [str(HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]
import torch
import torchaudio
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode

from backbones import BACKBONES, Backbone, create_backbone
from backbones.frontend import Frontend
from backbones.spec import FrontendSpec

log = logging.getLogger("benchmarks.extract")

# (key, clips to embed over all splits, mean encoder windows per clip, where the count comes from)
# Counts are the public split sizes (approximate where a mirror differs); every clip of up to
# 10.24 s is one window under the clip-length policy (backbones/frontend.py). Windows are
# 10.24 s units: ASiT runs 5.92 s windows (its position table is never resized), so its 10 s
# timing covers two of them and its hours for <= 5.92 s clips are an upper bound (about 2x).
DATASETS: tuple[tuple[str, int, float, str], ...] = (
    ("as20k", 39_400, 1.0, "AudioSet balanced train ~20.5k + eval ~18.9k available, 10 s"),
    ("fsd50k", 51_197, 3.0, "dev 40,966 + eval 10,231; 0.3-30 s, padded to 30 s = 3 windows"),
    ("desed", 13_000, 1.0, "DESED strong/weak/synthetic + validation + public eval (approx.)"),
    ("spass", 5_000, 1.0, "SPASS soundscapes (approx.)"),
    ("urban", 10_000, 1.0, "URBAN-SED 6k train / 2k validate / 2k test, 10 s"),
    ("birdset_test", 117_116, 1.0, "HSN/POW/PER/NES/SNE/UHH/NBP 5 s test segments (approx.)"),
    ("birdset_train", 162_048, 1.0, "422 classes x 64 shots x (1 + 5 mixup variants), 5 s"),
    ("esc50", 2_000, 1.0, "ESC-50, 5 s"),
    ("sc2", 100_503, 1.0, "Speech Commands v2 (12-class) train/valid/test, 1 s"),
)


@dataclass(frozen=True)
class CpuRow:
    encoder: str
    frontend_ms: float
    model_ms: float
    clips_per_s: float
    gflops_per_window: float


def synthetic_clips(n: int, seconds: float, sr: int = 16_000) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    t = torch.arange(int(seconds * sr)) / sr
    return 0.05 * torch.randn(n, t.numel(), generator=g) + 0.1 * torch.sin(2 * torch.pi * 440 * t)


def flac_bytes(wave: torch.Tensor, sr: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wave.numpy(), sr, format="FLAC")
    return buf.getvalue()


def time_decode_and_resample(seconds: float, reps: int) -> tuple[float, float]:
    """ms per clip: FLAC decode of a 16 kHz clip, and 32 -> 16 kHz resampling (BirdSet)."""
    data = flac_bytes(synthetic_clips(1, seconds)[0], 16_000)
    t0 = time.perf_counter()
    for _ in range(reps):
        sf.read(io.BytesIO(data), dtype="float32")
    dec = (time.perf_counter() - t0) / reps * 1e3
    w32 = synthetic_clips(1, seconds, 32_000)
    t0 = time.perf_counter()
    for _ in range(reps):
        torchaudio.functional.resample(w32, 32_000, 16_000)
    return dec, (time.perf_counter() - t0) / reps * 1e3


def gflops_per_window(bb: Backbone) -> float:
    feats, frames = bb.features(synthetic_clips(1, 10.0), 16_000)
    counter = FlopCounterMode(display=False)
    with counter:
        bb.embed_features(feats, frames)
    return counter.get_total_flops() / 1e9


def time_frontend(bb: Backbone, reps: int, seconds: float) -> float:
    """Median ms per clip of the front end alone (one clip at a time, as a CPU worker does)."""
    clip = synthetic_clips(1, seconds)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        bb.features(clip, 16_000)
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3


def bench_cpu(
    name: str, size: str, batch: int, batches: int, seconds: float, fe_reps: int
) -> CpuRow:
    bb = create_backbone(name, checkpoint="random", size=size)
    clips = synthetic_clips(batch, seconds)
    bb.embed_features(*bb.features(clips, 16_000))  # warm-up
    t_front = t_model = 0.0
    for _ in range(batches):
        t0 = time.perf_counter()
        feats, frames = bb.features(clips, 16_000)
        t1 = time.perf_counter()
        bb.embed_features(feats, frames)
        t_model += time.perf_counter() - t1
        t_front += t1 - t0
    n = batch * batches
    return CpuRow(
        name,
        time_frontend(bb, fe_reps, seconds),
        t_model / n * 1e3,
        n / (t_front + t_model),
        gflops_per_window(bb),
    )


class FlacClips(Dataset):
    """Decode + front end in a worker: what a real extraction does per clip on the CPU."""

    def __init__(self, data: bytes, n: int, spec: FrontendSpec) -> None:
        self.data, self.n, self.spec = data, n, spec
        self.frontend: Frontend | None = None

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.frontend is None:
            torch.set_num_threads(1)
            self.frontend = Frontend(self.spec)
        wave, _ = sf.read(io.BytesIO(self.data), dtype="float32")
        w = torch.from_numpy(np.ascontiguousarray(wave)).unsqueeze(0)
        feats, frames = self.frontend(w, torch.tensor([w.shape[1]]))
        return feats[0], frames[0]


def _accel_loop(
    bb: Backbone, loader: Iterator[tuple[torch.Tensor, torch.Tensor]], dtype: torch.dtype | None
) -> int:
    dev = bb.device
    n = 0
    for feats, frames in loader:
        feats = feats.to(dev, non_blocking=True)
        with torch.autocast(dev.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            bb.embed_features(feats, frames)
        n += feats.shape[0]
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return n


def bench_accel(
    name: str,
    size: str,
    batch_sizes: list[int],
    dtypes: list[str],
    batches: int,
    workers: int,
    device: str = "cuda",
) -> list[dict[str, object]]:
    """Model-only vs end-to-end (CPU workers) throughput; ``device="cpu"`` smoke-tests it."""
    bb = create_backbone(name, checkpoint="random", size=size).to(device)
    cuda = device == "cuda"
    data = flac_bytes(synthetic_clips(1, 10.0)[0], 16_000)
    rows: list[dict[str, object]] = []
    dmap = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    for dname in dtypes:
        for bs in batch_sizes:
            feats, frames = bb.features(synthetic_clips(bs, 10.0), 16_000)
            feats = feats.to(device)
            model_only = [(feats, frames)] * batches
            _accel_loop(bb, iter(model_only[:1]), dmap[dname])  # warm-up / autotune
            t0 = time.perf_counter()
            n = _accel_loop(bb, iter(model_only), dmap[dname])
            model_cps = n / (time.perf_counter() - t0)
            loader = DataLoader(
                FlacClips(data, bs * (batches + 2), bb.spec.frontend),
                batch_size=bs,
                num_workers=workers,
                pin_memory=cuda,
                prefetch_factor=4 if workers else None,
                persistent_workers=False,
            )
            it = iter(loader)
            _accel_loop(bb, iter([next(it), next(it)]), dmap[dname])  # start the workers
            t0 = time.perf_counter()
            n = _accel_loop(bb, it, dmap[dname])
            e2e_cps = n / (time.perf_counter() - t0)
            mem = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
            rows.append(
                {
                    "encoder": name,
                    "dtype": dname,
                    "batch": bs,
                    "model_cps": model_cps,
                    "e2e_cps": e2e_cps,
                    "peak_gib": mem,
                    "bound": "cpu decode+fbank" if e2e_cps < 0.8 * model_cps else "model",
                }
            )
            if cuda:
                torch.cuda.reset_peak_memory_stats()
    return rows


def print_datasets() -> float:
    """Print the dataset table; return the encoder windows per encoder."""
    total_clips = sum(c for _, c, _, _ in DATASETS)
    total_windows = sum(c * w for _, c, w, _ in DATASETS)
    print(
        f"\n### The 14 datasets: {total_clips:,} clips, {total_windows:,.0f} windows per encoder\n"
    )
    print("| dataset | clips | windows/clip | source |\n| --- | ---: | ---: | --- |")
    for key, clips, w, src in DATASETS:
        print(f"| {key} | {clips:,} | {w:g} | {src} |")
    return total_windows


def print_hours(windows_per_s: dict[str, float], total_windows: float, label: str) -> None:
    print(f"\n### Hours to extract all 14 datasets ({label})\n")
    print("| encoder | windows/s | hours |\n| --- | ---: | ---: |")
    total = 0.0
    for name, wps in windows_per_s.items():
        hours = total_windows / wps / 3600
        total += hours
        print(f"| {name} | {wps:,.1f} | {hours:,.2f} |")
    print(f"| **all {len(windows_per_s)}** | | **{total:,.2f}** |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--encoders", nargs="*", default=BACKBONES.names())
    p.add_argument("--size", default="base", choices=["base", "tiny"])
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--batch", type=int, default=2, help="CPU batch size")
    p.add_argument("--batches", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--fe-reps", type=int, default=15, help="front-end timings (median)")
    p.add_argument("--batch-sizes", type=int, nargs="*", default=[16, 32, 64, 128])
    p.add_argument("--dtypes", nargs="*", default=["fp32", "bf16", "fp16"])
    p.add_argument("--workers", type=int, default=12, help="CPU workers feeding the GPU")
    p.add_argument(
        "--loader-smoke",
        action="store_true",
        help="run the GPU benchmark's code path on the CPU (tiny check, no GPU)",
    )
    p.add_argument(
        "--gpu-tflops",
        type=float,
        default=250.0,
        help="assumed sustained bf16 TFLOP/s for the FLOP-based GPU estimate",
    )
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    use_cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())

    dec, res = time_decode_and_resample(10.0, 5)
    print(
        f"## CPU ({args.threads} thread(s), torch {torch.__version__}, size={args.size}, "
        f"batch {args.batch} x {args.batches} of 10 s clips)\n"
    )
    print(f"FLAC decode {dec:.2f} ms/clip; 32->16 kHz resample {res:.2f} ms/clip (10 s)\n")
    print("| encoder | front end ms/clip (median) | model ms/clip | clips/s | GFLOP/window |")
    print("| --- | ---: | ---: | ---: | ---: |")
    rows = []
    for name in args.encoders:
        r = bench_cpu(name, args.size, args.batch, args.batches, 10.0, args.fe_reps)
        rows.append(r)
        print(
            f"| {r.encoder} | {r.frontend_ms:.1f} | {r.model_ms:.0f} | {r.clips_per_s:.2f} | "
            f"{r.gflops_per_window:.1f} |",
            flush=True,
        )
    total_windows = print_datasets()
    print_hours(
        {r.encoder: r.clips_per_s for r in rows},
        total_windows,
        f"CPU, {args.threads} thread(s), measured",
    )
    cpu_ms = max(r.frontend_ms for r in rows) + dec  # BirdSet (32 kHz) adds the resample
    feed = args.workers * 1e3 / cpu_ms
    print(
        f"\nCPU side per 10 s clip (FLAC decode + slowest front end): {cpu_ms:.1f} ms/core -> "
        f"{1e3 / cpu_ms:,.0f} clips/s per core, {feed:,.0f} clips/s with {args.workers} workers."
    )
    gpu_model = {r.encoder: args.gpu_tflops * 1e3 / r.gflops_per_window for r in rows}
    print_hours(
        gpu_model,
        total_windows,
        f"GPU model only, from measured FLOPs at an assumed "
        f"{args.gpu_tflops:g} TFLOP/s sustained; NOT measured",
    )
    print_hours(
        {k: min(v, feed) for k, v in gpu_model.items()},
        total_windows,
        f"GPU fed by {args.workers} CPU workers: min(model, decode+front end); estimate",
    )
    if use_cuda or args.loader_smoke:
        device = "cuda" if use_cuda else "cpu"
        title = torch.cuda.get_device_name() if use_cuda else "CPU smoke run of the GPU path"
        print(f"\n## {device.upper()} ({title}, {args.workers} CPU workers)\n")
        print("| encoder | dtype | batch | model clips/s | end-to-end clips/s | peak GiB | bound |")
        print("| --- | --- | ---: | ---: | ---: | ---: | --- |")
        for name in args.encoders:
            for r in bench_accel(
                name, args.size, args.batch_sizes, args.dtypes, args.batches, args.workers, device
            ):
                print(
                    f"| {r['encoder']} | {r['dtype']} | {r['batch']} | {r['model_cps']:,.0f} | "
                    f"{r['e2e_cps']:,.0f} | {r['peak_gib']:.1f} | {r['bound']} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
