"""The data path of a probe trial, before and after #17, side by side at the paper's shapes.

Why: ``gpu_share_h200.txt`` measured trials bound by the data path (fp16 memory map cast to
float32 with numpy every batch of every epoch, then copied from pageable memory), the GPU busy
1-15 %. This prints, per shape (as20k: N=512, D=768, C=527; fsd50k: N=1536, D=768, C=200) and
probe (linear, mhca, protobin J=10):

- data path per clip and epoch (read + cast + copy, no probe) for each placement of
  ``probes/resident.py``: ``memmap`` (today's), ``fp16`` (resident, cast per batch on the
  device), ``fp32`` (resident float32), ``stream`` (chunked, prefetched on CUDA);
- the probe step floor: training steps on one batch already on the device;
- a whole trial (``probes.fit``, validation after every epoch) on the new path (``auto``)
  and on today's (``memmap``), its ratio to the floor, and the GPU busy % (floor / trial, CUDA);
- peak memory (CUDA: max allocated; CPU: the resident copy's bytes);
- on CUDA, trials per hour at 1, 2 and 4 trials per GPU (``benchmarks/gpu_share.py``
  workers with the new placement), and with ``--write-costs`` the ``gpu_memory`` table and
  ``probe_data_ms_per_clip`` in ``benchmarks/costs.json`` (the dry-run price and
  ``ray.gpus_per_trial: auto`` read them). A CPU run never writes costs.json.

    python benchmarks/gpu_data.py --device cpu                # a few minutes on 2 cores
    python benchmarks/gpu_data.py --device cuda --write-costs # the GPU run (see README)

CPU defaults are reduced (``--clips 64 --val 32 --epochs 1 --batch 32 --steps 3``; per-clip
costs hardly depend on them); CUDA defaults ``--clips 4096 --val 1024 --epochs 3 --batch 128
--steps 20`` (the paper's batch).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:] = [str(HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]

SHAPES = {"as20k": (512, 768, 527), "fsd50k": (1536, 768, 200)}  # tokens, dim, classes
PLACEMENTS = ("memmap", "fp16", "fp32", "stream")


def _split(folder: Path, name: str, n: int, tokens: int, dim: int, classes: int):
    from probes import ProbeData

    rng = np.random.default_rng(len(name))
    path = folder / f"{name}.npy"
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(n, tokens, dim))
    for start in range(0, n, 64):
        stop = min(n, start + 64)
        mm[start:stop] = rng.standard_normal((stop - start, tokens, dim), np.float32)
    mm.flush()
    labels = (rng.random((n, classes)) < 0.02).astype(np.float32)
    labels[np.arange(n), rng.integers(0, classes, n)] = 1.0
    return ProbeData(tokens=np.load(path, mmap_mode="r"), labels=labels, task="multilabel")


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def data_ms_per_clip(data, device: str, batch: int, repeats: int) -> dict[str, float]:
    """Shuffled epochs of batches (read, cast to float32, on the device), no probe, for each
    placement: the best of ``repeats`` epochs, placements interleaved (a shared machine's
    load then hits them alike). Placing a split is not timed (once per worker)."""
    import torch

    from probes.data import iter_batches
    from probes.resident import place

    dev = torch.device(device)
    placed = {pl: place(data, pl, dev, budget=1 << 62) for pl in PLACEMENTS}
    best = dict.fromkeys(PLACEMENTS, float("inf"))
    for _ in range(repeats):
        for pl in PLACEMENTS:
            gen = torch.Generator().manual_seed(0)
            _sync(device)
            started = time.perf_counter()
            for _batch in iter_batches(placed[pl], batch, dev, gen):
                pass  # a float32 batch on the device, as the probe gets it
            _sync(device)
            best[pl] = min(best[pl], 1000 * (time.perf_counter() - started) / len(data))
    return best


def _probe(name: str, dim: int, classes: int):
    from probes import create_probe

    extra = {"prototypes_per_class": 10} if name == "protobin" else {}
    return create_probe(name, embed_dim=dim, num_classes=classes, **extra)


def floor_ms_per_clip(name: str, data, device: str, batch: int, steps: int) -> tuple[float, int]:
    """Training steps (forward, loss, backward, AdamW) on one batch already on the device:
    ms per clip, and (CUDA) the probe's peak bytes at this shape (what gpu_pack sizes by)."""
    import torch

    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    from probes.losses import make_loss
    from probes.train import make_optimizer

    probe = _probe(name, data.embed_dim, data.num_classes).to(device)
    x = torch.from_numpy(np.array(data.tokens[:batch], dtype=np.float32)).to(device)
    y = torch.from_numpy(np.asarray(data.labels[:batch])).to(device)
    loss_fn, opt = make_loss("auto", "multilabel"), make_optimizer(probe, 1e-3, 1e-4)
    for i in range(steps + 1):
        if i == 1:  # the first step warms up (allocations, kernels)
            _sync(device)
            started = time.perf_counter()
        loss = loss_fn(probe(x, cls=None, padding_mask=None, grid=None), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _sync(device)
    peak = torch.cuda.max_memory_allocated() if device == "cuda" else 0
    return 1000 * (time.perf_counter() - started) / (steps * batch), int(peak)


def trial(name: str, train, val, placement: str, device: str, args) -> tuple[float, float]:
    """A whole trial (fit with validation each epoch): ms per train clip and epoch, peak MB.
    Placing the splits is not timed: a worker does it once for all its trials on them."""
    import torch

    from probes import TrainConfig, fit
    from probes.resident import place, placement_of, split_bytes

    dev = torch.device(device)
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    train_p, val_p = place(train, placement, dev), place(val, placement, dev)  # once per worker
    _sync(device)
    started = time.perf_counter()
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch, device=device)
    fit(_probe(name, train.embed_dim, train.num_classes), train_p, val_p, cfg)
    _sync(device)
    ms = 1000 * (time.perf_counter() - started) / (len(train) * args.epochs)
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() / 1e6
    else:
        peak = sum(split_bytes(d, placement_of(d)) for d in (train_p, val_p)
                   if placement_of(d) in ("fp16", "fp32")) / 1e6  # fmt: skip
    return ms, peak


def _share_rows(folder: Path, name: str, args, shape) -> dict[int, float]:
    """Trials per hour at 1, 2, 4 trials per GPU (gpu_share.py workers, new placement)."""
    import gpu_share

    tokens, dim, classes = shape
    share = argparse.Namespace(
        device="cuda", trials=4, train=args.clips, val=args.val, tokens=tokens, dim=dim,
        classes=classes, prototypes=10, epochs=args.epochs, batch=args.batch, threads=2,
        timeout=900.0, placement="auto",
    )  # fmt: skip
    gpu_share._make_split(folder, "train", args.clips, share)
    gpu_share._make_split(folder, "val", args.val, share)
    return {k: gpu_share.run_level(folder, name, k, share)["trials_per_hour"] for k in (1, 2, 4)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    p.add_argument("--probes", nargs="+", default=["linear", "mhca", "protobin"])
    p.add_argument("--clips", type=int, help="train clips (cpu 64, cuda 4096)")
    p.add_argument("--val", type=int, help="validation clips (cpu 32, cuda 1024)")
    p.add_argument("--epochs", type=int, help="epochs per trial (cpu 1, cuda 3)")
    p.add_argument("--batch", type=int, help="batch size of the trials (cpu 32, cuda 128)")
    p.add_argument("--data-batch", type=int, default=128, help="batch of the data path rows")
    p.add_argument("--repeats", type=int, default=5, help="data path epochs (best is kept)")
    p.add_argument("--steps", type=int, help="steps timed for the floor (cpu 3, cuda 20)")
    p.add_argument("--write-costs", action="store_true", help="CUDA only: update costs.json")
    args = p.parse_args(argv)
    cpu = args.device == "cpu"
    args.clips = args.clips or (64 if cpu else 4096)
    args.val = args.val or (32 if cpu else 1024)
    args.epochs = args.epochs or (1 if cpu else 3)
    args.batch = args.batch or (32 if cpu else 128)
    args.steps = args.steps or (3 if cpu else 20)
    import torch

    if not cpu and not torch.cuda.is_available():
        raise SystemExit("--device cuda but no CUDA device is visible; use --device cpu")
    if args.write_costs and cpu:
        raise SystemExit("--write-costs needs --device cuda: costs.json holds GPU measurements")
    name = "cpu" if cpu else torch.cuda.get_device_name(0)
    print(f"device {name}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{args.clips} train / {args.val} val clips, trial batch {args.batch}, data path "
          f"batch {args.data_batch}, {args.epochs} epochs")  # fmt: skip
    data_rows, rows, peaks = [], [], {}
    for shape_name in args.shapes:
        tokens, dim, classes = SHAPES[shape_name]
        with tempfile.TemporaryDirectory() as tmp:
            train = _split(Path(tmp), "train", args.clips, tokens, dim, classes)
            val = _split(Path(tmp), "val", args.val, tokens, dim, classes)
            per = data_ms_per_clip(train, args.device, args.data_batch, args.repeats)
            data_rows.append((shape_name, per))
            print(f"data path {shape_name}: {per}", flush=True)
            for probe in args.probes:
                floor, probe_peak = floor_ms_per_clip(
                    probe, train, args.device, args.batch, args.steps
                )
                new, peak = trial(probe, train, val, "auto", args.device, args)
                old, _ = trial(probe, train, val, "memmap", args.device, args)
                share = {} if cpu else _share_rows(Path(tmp), probe, args, SHAPES[shape_name])
                rows.append((shape_name, probe, floor, new, old, peak, share))
                peaks.setdefault(shape_name, {})[probe] = probe_peak
                print(f"measured {rows[-1]}", flush=True)
    print("\n| shape | memmap (today) ms/clip/epoch | resident fp16 | resident fp32 | stream "
          "| today / best |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for shape_name, per in data_rows:
        best = min(per[p] for p in PLACEMENTS if p != "memmap")
        print(f"| {shape_name} | {per['memmap']:.3f} | {per['fp16']:.3f} | {per['fp32']:.3f} | "
              f"{per['stream']:.3f} | {per['memmap'] / best:.1f}x |")  # fmt: skip
    print("\n| shape | probe | step floor ms/clip | trial new ms/clip/epoch | new / floor "
          "| trial today | today / new | busy % (GPU) | trials/h at 1, 2, 4 per GPU "
          "| peak MB |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for shape_name, probe, floor, new, old, peak, share in rows:
        busy = "-" if cpu else f"{100 * floor / new:.0f}"
        tph = ", ".join(f"{share[k]:.0f}" for k in (1, 2, 4)) if share else "-"
        print(f"| {shape_name} | {probe} | {floor:.3f} | {new:.3f} | {new / floor:.2f} | "
              f"{old:.3f} | {old / new:.1f}x | {busy} | {tph} | {peak:.0f} |")  # fmt: skip
    if args.write_costs:
        _write_costs(name, data_rows, peaks)


def _write_costs(device: str, data_rows, peaks) -> None:
    """CUDA run: the new data path and the measured peaks into benchmarks/costs.json."""
    import torch

    path = HERE / "costs.json"
    costs = json.loads(path.read_text())
    as20k = dict(data_rows).get("as20k")
    if as20k is not None:
        costs["probe_data_ms_per_clip"] = round(as20k["fp16"], 4)
    free, total = torch.cuda.mem_get_info()
    torch.zeros(1, device="cuda")
    costs["gpu_memory"] = {
        "device": device,
        "gpu_bytes": int(total),
        "context_bytes": int(total - free - torch.cuda.memory_reserved()),
        "peak_bytes": peaks,
    }
    path.write_text(json.dumps(costs, indent=2) + "\n")
    print(f"wrote probe_data_ms_per_clip and gpu_memory ({device}) to {path}")


if __name__ == "__main__":
    main()
