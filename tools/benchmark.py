#!/usr/bin/env python3
"""Throughput, peak memory and GFLOPs of models (ours and timm's), or of the fused ops.

    python tools/benchmark.py --models nat_tiny dinat_tiny swin_tiny_patch4_window7_224 --img-size 224 -b 8
    python tools/benchmark.py --models vig_h_tiny deit_tiny_patch16_224 --img-size 1024 -b 1 --train-only
    python tools/benchmark.py --op na2d --device cuda --dtype bfloat16      # kernels: benchmarks/bench_na2d.py

Each measurement: warm-up iterations, then ``--reps`` timed runs of ``--iters`` iterations each; the
median is reported. Inference runs under ``torch.inference_mode``; training is forward + backward +
SGD step. Peak memory is ``max_memory_allocated`` on CUDA and the live tensor bytes on CPU.
Results go to the terminal as a table and optionally to JSON / CSV / a PNG plot.
"""
from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import logging
import platform
import statistics
import sys
import time
import weakref
from contextlib import nullcontext
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

import timm  # noqa: E402

import visionattn  # noqa: E402,F401

_logger = logging.getLogger("benchmark")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_fn(fn: Callable[[], None], device: torch.device, warmup: int, reps: int, iters: int) -> List[float]:
    """Seconds per iteration for each of ``reps`` timed runs."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        for _ in range(iters):
            fn()
        synchronize(device)
        times.append((time.perf_counter() - start) / iters)
    return times


def peak_memory_bytes(fn: Callable[[], None], device: torch.device) -> int:
    """Peak bytes allocated by tensors during one call of ``fn``, above what was live before it."""
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    with LiveTensorBytes() as tracker:
        fn()
    return tracker.peak


class LiveTensorBytes(TorchDispatchMode):
    """Peak bytes of CPU tensor storages created while active and still alive (freed ones are subtracted).

    The CPU allocator keeps no statistics and the profiler's memory events are not reliable across torch
    versions, so every op's output storage is counted and released through a weakref finaliser.
    """

    def __init__(self):
        super().__init__()
        self.live = 0
        self.peak = 0
        self._sizes: Dict[int, int] = {}

    def _free(self, key: int) -> None:
        self.live -= self._sizes.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_leaves(out):
            if not isinstance(tensor, torch.Tensor) or tensor.device.type != "cpu":
                continue
            storage = tensor.untyped_storage()
            key, size = id(storage), storage.nbytes()
            if size == 0 or key in self._sizes:
                continue
            self._sizes[key] = size
            self.live += size
            self.peak = max(self.peak, self.live)
            weakref.finalize(storage, self._free, key)
        return out


def count_gflops(model: nn.Module, example: torch.Tensor) -> Optional[float]:
    """Forward GFLOPs for one image (``torch.utils.flop_counter``; counts matmuls and convs)."""
    from torch.utils.flop_counter import FlopCounterMode

    try:
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(example[:1])
        return counter.get_total_flops() / 1e9
    except Exception as err:  # a model whose op has no FLOP formula still gets timed
        _logger.warning("FLOP count failed: %s", err)
        return None


def build_model(name: str, img_size: int, device: torch.device, args) -> nn.Module:
    kwargs = dict(args.model_kwargs or {})
    if name in (args.pass_img_size or ()):
        kwargs["img_size"] = img_size
    return timm.create_model(name, num_classes=1000, **kwargs).to(device)


def benchmark_model(name: str, img_size: int, batch_size: int, device: torch.device, dtype: torch.dtype, args) -> Dict:
    model = build_model(name, img_size, device, args)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    param_count = sum(p.numel() for p in model.parameters())
    x = torch.randn(batch_size, 3, img_size, img_size, device=device)
    target = torch.randint(0, 1000, (batch_size,), device=device)
    amp = dtype != torch.float32
    autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if amp else nullcontext
    row = dict(model=name, img_size=img_size, batch_size=batch_size, device=str(device),
               dtype=str(dtype).split(".")[-1], params_m=round(param_count / 1e6, 3))

    model.eval()
    row["gflops"] = round(count_gflops(model, x), 3) if not args.no_flops else None
    # Eager always; with --compile the same model again under torch.compile (columns suffixed _compiled; the first
    # call, which compiles, is timed separately as *_compile_s and excluded from the rates).
    variants = [("", model)] + ([("_compiled", torch.compile(model))] if args.compile else [])

    if not args.train_only:
        for suffix, run_model in variants:
            def infer():
                with torch.inference_mode(), autocast():
                    run_model(x)
            if suffix:
                start = time.perf_counter()
                infer()
                synchronize(device)
                row["infer_compile_s"] = round(time.perf_counter() - start, 2)
            times = time_fn(infer, device, args.warmup, args.reps, args.iters)
            row[f"infer_ms{suffix}"] = round(1000 * statistics.median(times), 3)
            row[f"infer_img_s{suffix}"] = round(batch_size / statistics.median(times), 2)
            if not args.no_memory:
                row[f"infer_peak_mb{suffix}"] = round(peak_memory_bytes(infer, device) / 2 ** 20, 1)

    if not args.infer_only:
        model.train()
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
        loss_fn = nn.CrossEntropyLoss()
        for suffix, run_model in variants:
            def train_step():
                with autocast():
                    loss = loss_fn(run_model(x), target)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            if suffix:
                start = time.perf_counter()
                train_step()
                synchronize(device)
                row["train_compile_s"] = round(time.perf_counter() - start, 2)
            times = time_fn(train_step, device, args.warmup, args.reps, args.iters)
            row[f"train_ms{suffix}"] = round(1000 * statistics.median(times), 3)
            row[f"train_img_s{suffix}"] = round(batch_size / statistics.median(times), 2)
            if not args.no_memory:
                row[f"train_peak_mb{suffix}"] = round(peak_memory_bytes(train_step, device) / 2 ** 20, 1)
    return row


def load_op_benchmark(op: str):
    path = ROOT / "benchmarks" / f"bench_{op}.py"
    if not path.is_file():
        raise SystemExit(f"--op {op!r}: no {path.relative_to(ROOT)}; available: "
                         f"{sorted(p.stem[6:] for p in (ROOT / 'benchmarks').glob('bench_*.py'))}")
    spec = importlib.util.spec_from_file_location(f"bench_{op}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cell(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else ("" if value is None else str(value))


def format_table(rows: List[Dict]) -> str:
    if not rows:
        return "(no results)"
    columns = list(dict.fromkeys(k for row in rows for k in row))
    widths = {c: max(len(c), *(len(_cell(row.get(c))) for row in rows)) for c in columns}
    lines = ["| " + " | ".join(c.ljust(widths[c]) for c in columns) + " |",
             "|" + "|".join("-" * (widths[c] + 2) for c in columns) + "|"]
    lines += ["| " + " | ".join(_cell(row.get(c)).ljust(widths[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def plot(rows: List[Dict], path: str) -> None:
    """Peak memory (left) and img/s (right) against image size, one line per model; training figures where
    measured, else inference."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mode = "train" if any(r.get("train_img_s") for r in rows) else "infer"
    panels = [(f"{mode}_peak_mb", f"{mode} peak tensor memory (MB)"), (f"{mode}_img_s", f"{mode} img/s")]
    panels = [(key, label) for key, label in panels if any(r.get(key) for r in rows)]
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.5), squeeze=False)
    for ax, (key, label) in zip(axes[0], panels):
        for model in dict.fromkeys(r["model"] for r in rows):
            points = sorted((r["img_size"], r[key]) for r in rows if r["model"] == model and r.get(key))
            if points:
                ax.plot(*zip(*points), marker="o", label=model)
        ax.set_xlabel("image size (px)")
        ax.set_ylabel(label)
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    batch = sorted({r["batch_size"] for r in rows})
    fig.suptitle(f"{mode}, batch {','.join(map(str, batch))}, {rows[0]['device']} {rows[0]['dtype']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def build_parser() -> argparse.ArgumentParser:
    from train import KeyValue

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["resnet18", "deit_tiny_patch16_224", "swin_tiny_patch4_window7_224"])
    p.add_argument("--model-kwargs", nargs="*", action=KeyValue, default=None)
    p.add_argument("--op", default=None, help="benchmark a fused op instead of models (na2d, gla)")
    p.add_argument("--backends", nargs="+", default=None,
                   help="op backends to time (default: reference and triton on CUDA, reference elsewhere)")
    p.add_argument("--img-size", type=int, nargs="+", default=[224])
    p.add_argument("--batch-size", "-b", type=int, nargs="+", default=[8])
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    p.add_argument("--compile", action="store_true",
                   help="also time the model under torch.compile: adds *_compiled columns beside the eager ones")
    p.add_argument("--pass-img-size", nargs="*", default=None, metavar="MODEL",
                   help="models built with img_size=<image size> (e.g. deit_tiny_patch16_224 at 1024)")
    p.add_argument("--note", default="", help="free text stored in the JSON environment (e.g. machine load)")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--iters", type=int, default=1, help="iterations per timed run")
    p.add_argument("--infer-only", action="store_true")
    p.add_argument("--train-only", action="store_true")
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--no-flops", action="store_true")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--json", default="", help="write results here")
    p.add_argument("--csv", default="")
    p.add_argument("--plot", default="", help="write a PNG plot of peak memory and img/s against image size")
    return p


def environment(device: torch.device) -> Dict:
    env = dict(torch=torch.__version__, timm=timm.__version__, python=platform.python_version(),
               cpu=platform.processor() or platform.machine(), threads=torch.get_num_threads())
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def main(argv=None) -> List[Dict]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = DTYPES[args.dtype]
    rows: List[Dict] = []
    if args.op:
        module = load_op_benchmark(args.op)
        backends = args.backends or (("reference", "triton") if device.type == "cuda" else ("reference",))
        rows = module.run_benchmark(device=str(device), dtype=dtype, batch=args.batch_size[0], backends=tuple(backends),
                                    warmup=args.warmup, reps=args.reps)
    else:
        for name in args.models:
            if not timm.is_model(name):
                parser.error(f"--models: {name!r} is not a registered timm model")
        for name in args.models:
            for img_size in args.img_size:
                for batch_size in args.batch_size:
                    _logger.info("%s @ %d, batch %d", name, img_size, batch_size)
                    rows.append(benchmark_model(name, img_size, batch_size, device, dtype, args))
    print(format_table(rows))
    env = environment(device)
    if args.note:
        env["note"] = args.note
    if device.type == "cpu":
        try:
            import os
            env["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
        except (AttributeError, OSError):
            pass
    payload = dict(environment=env, results=rows)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(payload, indent=2))
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
            writer.writeheader()
            writer.writerows(rows)
    if args.plot:
        plot(rows, args.plot)
    return rows


if __name__ == "__main__":
    main()
