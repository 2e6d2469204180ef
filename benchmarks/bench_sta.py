"""Peak memory and time of super token attention (STA): visionattn's cell-blocked STA vs a 9x-unfold formulation.

Two measurements, each for both implementations of the same math (the official eval path, §7.2 of
reference/backbones.md):

* ``train_step``: one SGD training step of ``stvit_small`` (cross-entropy, forward + backward + step);
* ``sta_op``: forward + backward of one stage-1 STA layer alone (8x8 super tokens) at the stage-1 map of that image
  size, the part of the step the two implementations differ in.

``unfold`` is the straightforward formulation: every pixel gathers its 3x3 neighbouring super tokens at pixel
resolution (``F.unfold`` of the super-token grid, repeated over each cell: a ``[B, C, 9, H, W]`` tensor, nine copies
of the feature map) for the association, the weighted update and the map back. ``ours`` works on the cell-blocked
layout (``[B, cells, pixels per cell, 9]`` affinities against ``[B, cells, C, 9]`` super-token neighbourhoods) and
never makes anything nine times the map.

Peak memory on CPU is the peak of live tensor storages during one call, above what was live before it (the
dispatch-mode counter of tools/benchmark.py); on CUDA ``max_memory_allocated``.

    python benchmarks/bench_sta.py --out benchmarks/results/cpu_stvit_sta_train.json
"""
import argparse
import json
import math
import platform
import statistics
import sys
import time
import types
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

import timm  # noqa: E402

from benchmark import peak_memory_bytes, time_fn  # noqa: E402
from visionattn.models.stvit import SuperTokenAttention  # noqa: E402


def _per_pixel(grid: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """[B, C, hh, ww] -> [B, C, 9, hh*h, ww*w]: the 3x3 neighbouring super tokens of every pixel's cell."""
    b, c, hh, ww = grid.shape
    nb = F.unfold(grid, 3, padding=1).reshape(b, c, 9, hh, 1, ww, 1)
    return nb.expand(b, c, 9, hh, h, ww, w).reshape(b, c, 9, hh * h, ww * w)


def unfold_sta_forward(self: SuperTokenAttention, x: torch.Tensor) -> torch.Tensor:
    """The same STA as ``SuperTokenAttention.forward``, on nine pixel-resolution copies of the neighbourhoods."""
    if not self.sampled:
        return self.refine(x)
    b, c, height, width = x.shape
    h, w = self.stoken_size
    hh, ww = math.ceil(height / h), math.ceil(width / w)
    x = F.pad(x, (0, ww * w - width, 0, hh * h - height))
    with torch.no_grad():
        stokens = F.avg_pool2d(x, (h, w))
        affinity = ((x[:, :, None] * _per_pixel(stokens, h, w)).sum(1) * self.scale).softmax(1)  # [B, 9, H, W]
        norm = F.fold(affinity.reshape(b, 9, hh, h, ww, w).sum((3, 5)).reshape(b, 9, hh * ww), (hh, ww), 3,
                      padding=1)
    weighted = (affinity[:, None] * x[:, :, None]).reshape(b, c * 9, hh, h, ww, w).sum((3, 5))
    stokens = F.fold(weighted.reshape(b, c * 9, hh * ww), (hh, ww), 3, padding=1) / (norm + 1e-12)
    stokens = self.refine(stokens)
    out = (affinity[:, None] * _per_pixel(stokens, h, w)).sum(2)
    return out[:, :, :height, :width]


def use_unfold(model: nn.Module) -> nn.Module:
    for module in model.modules():
        if isinstance(module, SuperTokenAttention):
            module.forward = types.MethodType(unfold_sta_forward, module)
    return model


def measure(fn, device, warmup, reps):
    """Median ms of ``reps`` calls after ``warmup``, then the peak of one more call; ``reps=0``: one call, timed
    while its memory is counted (large sizes on a slow CPU; the counter's per-op overhead is small against them)."""
    if reps == 0:
        start = time.perf_counter()
        peak = peak_memory_bytes(fn, device)
        return dict(ms=round(1000 * (time.perf_counter() - start), 1), peak_mb=round(peak / 2 ** 20, 1))
    times = time_fn(fn, device, warmup, reps, 1)
    return dict(ms=round(1000 * statistics.median(times), 1), peak_mb=round(peak_memory_bytes(fn, device) / 2 ** 20, 1))


def bench_train_step(impl, img_size, batch, device, warmup, reps):
    torch.manual_seed(0)
    model = timm.create_model("stvit_small").to(device).train()
    if impl == "unfold":
        use_unfold(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
    x = torch.randn(batch, 3, img_size, img_size, device=device)
    target = torch.randint(0, 1000, (batch,), device=device)

    def step():
        F.cross_entropy(model(x), target).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return measure(step, device, warmup, reps)


def bench_sta_op(impl, img_size, batch, device, warmup, reps):
    torch.manual_seed(0)
    dim, size = 64, math.ceil(img_size / 4)  # stvit_small stage 1: 64 channels, stride 4, 8x8 super tokens
    attn = SuperTokenAttention(dim, 1, (8, 8)).to(device)
    if impl == "unfold":
        use_unfold(attn)
    x = torch.randn(batch, dim, size, size, device=device, requires_grad=True)

    def step():
        attn(x).sum().backward()
        x.grad = None
        attn.zero_grad(set_to_none=True)
    return measure(step, device, warmup, reps)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cases", nargs="*", default=["224x8", "1024x1"], help="IMGxBATCH")
    parser.add_argument("--note", default="")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = []
    for case in args.cases:
        img_size, batch = (int(v) for v in case.split("x"))
        for what, fn in (("sta_op", bench_sta_op), ("train_step", bench_train_step)):
            warmup, reps = (1, 2) if img_size <= 256 else (0, 0)
            row = dict(what=what, img_size=img_size, batch_size=batch)
            for impl in ("ours", "unfold"):
                result = fn(impl, img_size, batch, device, warmup, reps)
                row[f"{impl}_ms"], row[f"{impl}_peak_mb"] = result["ms"], result["peak_mb"]
            row["peak_ratio"] = round(row["ours_peak_mb"] / row["unfold_peak_mb"], 3)
            print(json.dumps(row), flush=True)
            rows.append(row)
    env = dict(torch=torch.__version__, timm=timm.__version__, python=platform.python_version(),
               machine=platform.machine(), processor=platform.processor() or None, threads=args.threads,
               device=str(device), dtype="float32", note=args.note)
    if args.out:
        Path(args.out).write_text(json.dumps(dict(environment=env, rows=rows), indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
