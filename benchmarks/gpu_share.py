"""Several probe trials sharing one GPU vs one at a time: trials per hour and peak GPU memory.

``full_benchmark`` gives each trial a fraction of a GPU (``ray.gpus_per_trial: 0.25``): this
measures whether that pays. A trial here is what a sweep's trial does, without Ray: open the
split as fp16 memory maps (as the store hands them out), build the probe, ``probes.fit`` for a
few epochs with the validation pass after every epoch (batches cast to float32 on the CPU and
copied to the GPU, as ``probes.data.iter_batches`` does). ``k`` worker processes (like ``k``
Ray actors with ``num_gpus=1/k``) take trials from one queue; the same trials run at every
concurrency, so the rows compare like with like.

    python benchmarks/gpu_share.py                               # as20k shape, defaults below
    python benchmarks/gpu_share.py --probes linear protobin --concurrency 1 2 4 8 --trials 8
    python benchmarks/gpu_share.py --device cpu --train 64 --val 32 --tokens 32 --dim 64 \
        --classes 10 --trials 2 --concurrency 1 2     # smoke run without a GPU

as20k shape: N=512 tokens of D=768, C=527 classes, multi-label, batch 128, J=10 prototypes per
class for protobin. ``--train`` clips (default 4096, a fifth of as20k) keep a run short; the
per-step cost does not depend on it. Worker start-up (imports, CUDA context) is not timed: Ray
reuses its actors (``reuse_actors=True``). Prints a markdown table; nothing is timed in tests.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import queue
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Self

import numpy as np

# benchmarks/probes.py would shadow the probes package in spawned workers (they import this
# script as __mp_main__ with its folder on sys.path): put the repository first, this folder off.
HERE = Path(__file__).resolve().parent
sys.path[:] = [str(HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]


def _make_split(folder: Path, name: str, n: int, args: argparse.Namespace) -> None:
    rng = np.random.default_rng(hash(name) % 2**32)
    tokens = np.lib.format.open_memmap(
        folder / f"{name}_tokens.npy", mode="w+", dtype=np.float16, shape=(n, args.tokens, args.dim)
    )
    for start in range(0, n, 256):
        stop = min(n, start + 256)
        tokens[start:stop] = rng.standard_normal((stop - start, args.tokens, args.dim), np.float32)
    tokens.flush()
    labels = (rng.random((n, args.classes)) < 0.02).astype(np.float32)
    labels[np.arange(n), rng.integers(0, args.classes, n)] = 1.0
    np.save(folder / f"{name}_labels.npy", labels)


def _open(folder: Path, name: str):
    from probes import ProbeData

    return ProbeData(
        tokens=np.load(folder / f"{name}_tokens.npy", mmap_mode="r"),
        labels=np.load(folder / f"{name}_labels.npy"),
        task="multilabel",
    )


def _worker(folder: str, jobs, results, args: argparse.Namespace) -> None:
    """One 'actor': runs trials from ``jobs`` until it reads None; reports per-trial numbers."""
    import torch

    from probes import TrainConfig, create_probe, fit

    torch.set_num_threads(max(1, args.threads))
    train, val = _open(Path(folder), "train"), _open(Path(folder), "val")
    device = args.device
    placement = getattr(args, "placement", "memmap")  # #17: probes/resident.py
    if placement != "memmap":
        from probes.resident import place

        train = place(train, placement, torch.device(device))
        val = place(val, placement, torch.device(device))
    if device == "cuda":
        torch.zeros(1, device=device)  # CUDA context before the clock starts
    results.put("ready")
    while (job := jobs.get()) is not None:
        probe_name, seed = job
        kwargs = {"prototypes_per_class": args.prototypes} if probe_name.startswith("proto") else {}
        probe = create_probe(probe_name, embed_dim=args.dim, num_classes=args.classes, **kwargs)
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        fit(
            probe,
            train,
            val,
            TrainConfig(
                lr=1e-3, epochs=args.epochs, batch_size=args.batch, seed=seed, device=device
            ),
        )
        if device == "cuda":
            torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else 0.0
        results.put((probe_name, time.perf_counter() - started, peak))


class _GpuSampler:
    """Device-wide used memory and utilisation, sampled every 50 ms through NVML."""

    def __init__(self) -> None:
        self.peak_mib, self.util, self._stop = 0.0, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._nvml = None
        try:
            import pynvml
        except ImportError:  # a CPU run: memory comes from the workers alone
            print("(no pynvml: device-wide memory and utilisation not sampled)")
            return
        try:
            pynvml.nvmlInit()
            self._nvml, self._handle = pynvml, pynvml.nvmlDeviceGetHandleByIndex(0)
        except pynvml.NVMLError as err:
            print(f"(NVML unavailable: {err}; device-wide memory not sampled)")

    def _run(self) -> None:
        while not self._stop.is_set():
            info = self._nvml.nvmlDeviceGetMemoryInfo(self._handle)
            self.peak_mib = max(self.peak_mib, info.used / 2**20)
            self.util.append(self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu)
            time.sleep(0.05)

    def __enter__(self) -> Self:
        if self._nvml is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._nvml is not None:
            self._thread.join()


def run_level(folder: Path, probe: str, k: int, args: argparse.Namespace) -> dict:
    ctx = mp.get_context("spawn")
    jobs, results = ctx.Queue(), ctx.Queue()
    workers = [
        ctx.Process(target=_worker, args=(str(folder), jobs, results, args)) for _ in range(k)
    ]
    for w in workers:
        w.start()
    for _ in range(k):  # imports, CUDA context and memory maps are not counted
        if results.get(timeout=args.timeout) != "ready":
            raise RuntimeError("worker protocol: expected 'ready'")
    with _GpuSampler() as gpu:
        started = time.perf_counter()
        for seed in range(args.trials):
            jobs.put((probe, seed))
        for _ in range(k):
            jobs.put(None)
        done = []
        deadline = time.monotonic() + args.timeout
        while len(done) < args.trials:
            try:
                done.append(results.get(timeout=1.0))
            except queue.Empty:
                dead = [w.exitcode for w in workers if w.exitcode not in (None, 0)]
                if dead or time.monotonic() > deadline:
                    for w in workers:
                        w.kill()
                    raise SystemExit(
                        f"{probe} at {k} trials at once: a worker died (exit codes {dead}; its "
                        f"traceback is above) or {args.timeout:.0f} s passed (--timeout)"
                    ) from None
        wall = time.perf_counter() - started
        for w in workers:
            w.join()
    trial_s = [d[1] for d in done]
    return {
        "probe": probe,
        "k": k,
        "trials": len(done),
        "wall_s": wall,
        "trials_per_hour": 3600 * len(done) / wall,
        "mean_trial_s": sum(trial_s) / len(trial_s),
        "peak_trial_mib": max(d[2] for d in done),
        "peak_device_mib": gpu.peak_mib,
        "gpu_util": sum(gpu.util) / len(gpu.util) if gpu.util else float("nan"),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--probes", nargs="+", default=["linear", "protobin"])
    p.add_argument("--concurrency", nargs="+", type=int, default=[1, 2, 4, 8])
    p.add_argument("--trials", type=int, default=8, help="trials per (probe, concurrency)")
    p.add_argument("--train", type=int, default=4096)
    p.add_argument("--val", type=int, default=1024)
    p.add_argument("--tokens", type=int, default=512)
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--classes", type=int, default=527)
    p.add_argument("--prototypes", type=int, default=10)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--threads", type=int, default=2, help="CPU threads per worker")
    p.add_argument(
        "--placement", default="memmap", help="memmap (before #17) | auto | fp16 | fp32 | stream"
    )
    p.add_argument("--timeout", type=float, default=900)
    p.add_argument("--dir", default=os.environ.get("TMPDIR", tempfile.gettempdir()))
    args = p.parse_args(argv)
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("--device cuda but no CUDA device is visible; use --device cpu")
        device_name = torch.cuda.get_device_name(0)
    else:
        device_name = "cpu"
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        _make_split(folder, "train", args.train, args)
        _make_split(folder, "val", args.val, args)
        print(
            f"device {device_name}; split train {args.train} x {args.tokens} x {args.dim} fp16 "
            f"({args.train * args.tokens * args.dim * 2 / 2**30:.1f} GiB), val {args.val}, "
            f"C={args.classes}, batch {args.batch}, {args.epochs} epochs/trial, "
            f"{args.threads} CPU threads/worker; data written in {time.perf_counter() - t0:.0f} s"
        )
        rows = []
        for probe in args.probes:
            for k in args.concurrency:
                rows.append(run_level(folder, probe, k, args))
                print(f"measured: {rows[-1]}", flush=True)
    base = {r["probe"]: r["trials_per_hour"] for r in rows if r["k"] == min(args.concurrency)}
    print(
        "\n| probe | trials at once | trials | wall s | trials/hour | x vs one at a time "
        "| mean trial s | peak MiB per trial | peak MiB device | mean GPU util % |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['probe']} | {r['k']} | {r['trials']} | {r['wall_s']:.1f} | "
            f"{r['trials_per_hour']:.0f} | {r['trials_per_hour'] / base[r['probe']]:.2f} | "
            f"{r['mean_trial_s']:.1f} | {r['peak_trial_mib']:.0f} | {r['peak_device_mib']:.0f} | "
            f"{r['gpu_util']:.0f} |"
        )


if __name__ == "__main__":
    main()
