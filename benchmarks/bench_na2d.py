"""Time ``visionattn.ops.na2d`` forward and forward+backward per backend at DiNAT shapes.

Rows also include NATTEN (``natten.na2d``, no RPB: NATTEN >= 0.20 has none) and PyTorch FlexAttention (RPB as a
``score_mod``, the neighborhood as a block mask) when they are importable on CUDA, as comparison points.

Effective FLOPs follow reference/kernels.md §7: forward ``4 * N * k^2 * dim`` per head (N = H*W),
backward ``10 * N * k^2 * dim``. Bytes are the minimum HBM traffic: forward reads q, k, v and writes out
(``4 * N * dim`` elements per head) plus the fp32 LSE; forward+backward adds dO, dq, dk, dv and re-reads
q, k, v, out (``8 * N * dim`` more).

    python benchmarks/bench_na2d.py --device cuda --dtype bfloat16 --batch 32 --out benchmarks/results/na2d.json
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import device_peaks, time_ms  # noqa: E402

_logger = logging.getLogger(__name__)

# (H, W, heads, dim, kernel, dilations): DiNAT-T/-M stages at 224^2 (dilations of the ImageNet models).
DINAT_SHAPES = [
    (56, 56, 2, 32, 7, (1, 8)),
    (28, 28, 4, 32, 7, (1, 4)),
    (14, 14, 8, 32, 7, (1, 2)),
    (7, 7, 16, 32, 7, (1,)),
]

def _window_starts(length: int, kernel: int, dilation: int, device: torch.device) -> torch.Tensor:
    from visionattn.ops.neighborhood.reference import window_starts
    return window_starts(length, kernel, dilation).to(device)


def _flex_fn(height: int, width: int, kernel: int, dilation: int, device: torch.device):
    """FlexAttention with NATTEN 0.14 windows and RPB; None when unavailable."""
    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention
    except ImportError:
        return None
    start_y = _window_starts(height, kernel, dilation, device)
    start_x = _window_starts(width, kernel, dilation, device)
    n = height * width

    def mask_mod(b, h, q_idx, kv_idx):
        qy, qx = q_idx // width, q_idx % width
        ky, kx = kv_idx // width, kv_idx % width
        dy, dx = ky - start_y[qy], kx - start_x[qx]
        return ((dy >= 0) & (dy < kernel * dilation) & (dy % dilation == 0)
                & (dx >= 0) & (dx < kernel * dilation) & (dx % dilation == 0))

    block_mask = create_block_mask(mask_mod, None, None, n, n, device=device)
    compiled = torch.compile(flex_attention)

    def run(q, k, v, rpb):
        def score_mod(score, b, h, q_idx, kv_idx):
            # Clamped: partially masked blocks evaluate score_mod outside the window too.
            qy, qx = q_idx // width, q_idx % width
            ky, kx = kv_idx // width, kv_idx % width
            by = ((ky - qy) // dilation + kernel - 1).clamp(0, 2 * kernel - 2)
            bx = ((kx - qx) // dilation + kernel - 1).clamp(0, 2 * kernel - 2)
            return score + rpb[h, by, bx]

        batch, _, _, heads, dim = q.shape
        flat = [t.reshape(batch, n, heads, dim).transpose(1, 2) for t in (q, k, v)]
        out = compiled(*flat, score_mod=score_mod, block_mask=block_mask)
        return out.transpose(1, 2).reshape(batch, height, width, heads, dim)

    return run


def _natten_fn(kernel: int, dilation: int):
    try:
        import natten
    except ImportError:
        return None
    if not hasattr(natten, "na2d"):
        return None

    def run(q, k, v, rpb):
        return natten.na2d(q, k, v, kernel_size=kernel, dilation=dilation)

    return run


def run_benchmark(
        device: str = "cuda",
        dtype: torch.dtype = torch.bfloat16,
        batch: int = 32,
        backends: Sequence[str] = ("reference", "triton"),
        warmup: int = 3,
        reps: int = 10,
        shapes: Optional[Sequence[tuple]] = None,
        extras: bool = True,
) -> List[Dict]:
    """Benchmark na2d; returns one row per (backend, shape, dilation).

    Args:
        device, dtype, batch: where and what to run.
        backends: visionattn backends to time ("reference", "triton").
        warmup, reps: timing iterations.
        shapes: ``(H, W, heads, dim, kernel, dilations)`` tuples; default DiNAT's four stages.
        extras: also time NATTEN and FlexAttention when importable on CUDA.

    Returns:
        Rows with op, backend, shape, batch, heads, dim, kernel, dilation, dtype, ms_fwd, ms_fwd_bwd,
        tflops_fwd, tflops_fwd_bwd, gbps_fwd, gbps_fwd_bwd, pct_peak_flops_fwd, pct_peak_bw_fwd, error.
    """
    from visionattn.ops import na2d

    dev = torch.device(device)
    shapes = DINAT_SHAPES if shapes is None else shapes
    peaks = device_peaks(dev)
    elem = torch.tensor([], dtype=dtype).element_size()
    rows: List[Dict] = []
    for height, width, heads, dim, kernel, dilations in shapes:
        for dilation in dilations:
            if height < kernel * dilation or width < kernel * dilation:
                continue
            gen = torch.Generator(device="cpu").manual_seed(0)
            q, k, v = (torch.randn(batch, height, width, heads, dim, generator=gen).to(dev, dtype) for _ in range(3))
            rpb = (torch.randn(heads, 2 * kernel - 1, 2 * kernel - 1, generator=gen) * 0.02).to(dev)
            grad_out = torch.randn_like(q)
            candidates: Dict[str, Optional[Callable]] = {}
            for name in backends:
                candidates[name] = (lambda name_: lambda q_, k_, v_, r_: na2d(
                    q_, k_, v_, kernel, dilation, rpb=r_, backend=name_))(name)
            if extras and dev.type == "cuda":
                candidates["natten"] = _natten_fn(kernel, dilation)
                try:
                    candidates["flex"] = _flex_fn(height, width, kernel, dilation, dev)
                except Exception as exc:  # noqa: BLE001 - a comparison point must not stop the benchmark
                    _logger.info("flex unavailable: %s", exc)
                    candidates["flex"] = None
            tokens = batch * heads * height * width
            flops_fwd = 4.0 * tokens * kernel * kernel * dim
            flops_bwd = 10.0 * tokens * kernel * kernel * dim
            bytes_fwd = 4.0 * tokens * dim * elem + tokens * 4
            bytes_fwd_bwd = bytes_fwd + 8.0 * tokens * dim * elem + tokens * 8
            for name, fn in candidates.items():
                if fn is None:
                    continue
                row = dict(op="na2d", backend=name, shape=f"{batch}x{height}x{width}x{heads}x{dim}", batch=batch,
                           height=height, width=width, heads=heads, dim=dim, kernel=kernel, dilation=dilation,
                           dtype=str(dtype).replace("torch.", ""), device=str(dev), error=None)
                try:
                    with torch.no_grad():
                        ms_fwd = time_ms(lambda: fn(q, k, v, rpb), dev, warmup, reps)
                    leaves = [t.detach().requires_grad_(True) for t in (q, k, v)]
                    rpb_leaf = rpb.detach().requires_grad_(True)

                    def fwd_bwd():
                        out = fn(*leaves, rpb_leaf)
                        torch.autograd.grad(out, [*leaves, rpb_leaf], grad_out, allow_unused=True)

                    ms_fwd_bwd = time_ms(fwd_bwd, dev, warmup, reps)
                except Exception as exc:  # noqa: BLE001 - one failing backend is a row, not a crash
                    row["error"] = f"{type(exc).__name__}: {exc}"[:300]
                    rows.append(row)
                    if dev.type == "cuda":
                        torch.cuda.empty_cache()
                    continue
                row.update(
                    ms_fwd=ms_fwd, ms_fwd_bwd=ms_fwd_bwd,
                    tflops_fwd=flops_fwd / ms_fwd / 1e9, tflops_fwd_bwd=(flops_fwd + flops_bwd) / ms_fwd_bwd / 1e9,
                    gbps_fwd=bytes_fwd / ms_fwd / 1e6, gbps_fwd_bwd=bytes_fwd_bwd / ms_fwd_bwd / 1e6,
                )
                if peaks is not None:
                    row["pct_peak_flops_fwd"] = 100.0 * row["tflops_fwd"] / peaks[0]
                    row["pct_peak_bw_fwd"] = 100.0 * row["gbps_fwd"] / (peaks[1] * 1e3)
                rows.append(row)
    return rows


def format_table(rows: List[Dict]) -> str:
    header = (f"{'backend':<10}{'shape':<18}{'k':>3}{'dil':>4}{'fwd ms':>10}{'f+b ms':>10}{'TFLOP/s':>9}{'GB/s':>9}"
              f"{'%bw':>6}")
    lines = [header]
    for r in rows:
        if r.get("error"):
            lines.append(
                f"{r['backend']:<10}{r['shape']:<18}{r['kernel']:>3}{r['dilation']:>4}  error: {r['error'][:60]}"
            )
            continue
        pct = r.get("pct_peak_bw_fwd")
        lines.append(
            f"{r['backend']:<10}{r['shape']:<18}{r['kernel']:>3}{r['dilation']:>4}{r['ms_fwd']:>10.3f}"
            f"{r['ms_fwd_bwd']:>10.3f}{r['tflops_fwd']:>9.2f}{r['gbps_fwd']:>9.1f}"
            f"{(f'{pct:.1f}' if pct is not None else '-'):>6}"
        )
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> List[Dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--backends", default="reference,triton")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--no-extras", action="store_true", help="skip NATTEN / FlexAttention rows")
    parser.add_argument("--out", default=None, help="write the rows as JSON here")
    args = parser.parse_args(argv)
    rows = run_benchmark(
        device=args.device, dtype=getattr(torch, args.dtype), batch=args.batch,
        backends=tuple(b for b in args.backends.split(",") if b), warmup=args.warmup, reps=args.reps,
        extras=not args.no_extras,
    )
    print(format_table(rows))  # noqa: T201 - CLI output
    if args.out:
        with open(args.out, "w") as f:
            json.dump(dict(device=args.device, rows=rows), f, indent=2)
    return rows


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()
