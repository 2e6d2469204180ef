"""Time ``visionattn.ops.gla`` and ``bigla`` forward and forward+backward per backend at ViG shapes.

Rows also include flash-linear-attention's ``chunk_gla`` when it is importable on CUDA (backend ``fla``; the
bidirectional case is ViG's recipe: a second call on flipped copies, then the mean).

Effective FLOPs follow reference/kernels.md §7, per head and direction: forward ``2*L*C*(dk+dv) + 4*L*dk*dv``
with chunk C = 64; the backward is counted as 2.5x the forward. Bytes are the minimum HBM traffic: forward
reads q, k, v and the gates and writes out; forward+backward adds dO, re-reads the inputs and writes dq, dk, dv
and the gate gradients. A fused bidirectional kernel reads q, k, v once, so ``bigla`` bytes count them once.

    python benchmarks/bench_gla.py --device cuda --dtype bfloat16 --batch 32 --out benchmarks/results/gla.json
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import device_peaks, time_ms  # noqa: E402

_logger = logging.getLogger(__name__)

CHUNK = 64

# (name, L, heads, dk, dv): ViG-T stages at 224^2 (56x56, 28x28, 14x14, 7x7) and a 1024^2 input at stride 4.
VIG_SHAPES = [
    ("vig_56x56", 3136, 3, 16, 32),
    ("vig_28x28", 784, 6, 16, 32),
    ("vig_14x14", 196, 12, 16, 32),
    ("vig_7x7", 49, 24, 16, 32),
    ("hires_256x256", 65536, 3, 16, 32),
]

def _fla_fns():
    """``(gla_fn, bigla_fn)`` wrapping fla's chunk_gla, or None when fla is not importable."""
    try:
        from fla.ops.gla import chunk_gla
    except Exception:  # noqa: BLE001 - fla is optional; any import failure means "no comparison row"
        return None

    def one(q, k, v, g, reverse=False):
        if reverse:
            q, k, v, g = (t.flip(1) for t in (q, k, v, g))
        out = chunk_gla(q, k, v, g, scale=q.shape[-1] ** -0.5)
        out = out[0] if isinstance(out, tuple) else out
        return out.flip(1) if reverse else out

    def gla_fn(q, k, v, g):
        return one(q, k, v, g)

    def bigla_fn(q, k, v, gf, gb):
        return (one(q, k, v, gf) + one(q, k, v, gb, reverse=True)) * 0.5

    return gla_fn, bigla_fn


def flops_bytes(op: str, batch: int, length: int, heads: int, dk: int, dv: int, elem: int, gate_elem: int):
    """Effective FLOPs and minimum bytes ``(flops_fwd, flops_fwd_bwd, bytes_fwd, bytes_fwd_bwd)``."""
    dirs = 2 if op == "bigla" else 1
    per_dir = 2.0 * length * CHUNK * (dk + dv) + 4.0 * length * dk * dv
    flops_fwd = batch * heads * per_dir * dirs
    tokens = batch * heads * length
    qkv = tokens * (2 * dk + dv) * elem
    gates = tokens * dk * gate_elem * dirs
    out = tokens * dv * elem
    bytes_fwd = qkv + gates + out
    bytes_fwd_bwd = bytes_fwd + (qkv + gates + out) + (qkv + gates)  # re-read inputs + dO, write the gradients
    return flops_fwd, flops_fwd * 3.5, bytes_fwd, bytes_fwd_bwd


def run_benchmark(
        device: str = "cuda",
        dtype: torch.dtype = torch.bfloat16,
        batch: int = 32,
        backends: Sequence[str] = ("reference", "triton"),
        warmup: int = 3,
        reps: int = 10,
        shapes: Optional[Sequence[tuple]] = None,
        ops: Sequence[str] = ("gla", "bigla"),
        extras: bool = True,
) -> List[Dict]:
    """Benchmark gla / bigla; returns one row per (op, backend, shape).

    Args:
        device, dtype, batch: where and what to run (the gates are float32, as ViG computes them).
        backends: visionattn backends to time ("reference", "triton").
        warmup, reps: timing iterations.
        shapes: ``(name, L, heads, dk, dv)`` tuples; default the ViG shapes (``VIG_SHAPES``).
        ops: "gla" (one direction) and / or "bigla".
        extras: also time fla's chunk_gla when importable on CUDA.

    Returns:
        Rows with op, backend, shape, name, batch, length, heads, dk, dv, dtype, device, ms_fwd, ms_fwd_bwd,
        tflops_fwd, tflops_fwd_bwd, gbps_fwd, gbps_fwd_bwd, pct_peak_flops_fwd, pct_peak_bw_fwd, error.
    """
    from visionattn.ops import bigla, gla

    dev = torch.device(device)
    shapes = VIG_SHAPES if shapes is None else shapes
    peaks = device_peaks(dev)
    elem = torch.tensor([], dtype=dtype).element_size()
    fla = _fla_fns() if (extras and dev.type == "cuda") else None
    rows: List[Dict] = []
    for name, length, heads, dk, dv in shapes:
        gen = torch.Generator(device="cpu").manual_seed(0)
        q, k = (torch.randn(batch, length, heads, dk, generator=gen).to(dev, dtype) for _ in range(2))
        v = torch.randn(batch, length, heads, dv, generator=gen).to(dev, dtype)
        gf, gb = (F.logsigmoid(torch.randn(batch, length, heads, dk, generator=gen)).div(16).to(dev)
                  for _ in range(2))
        grad_out = torch.randn(batch, length, heads, dv, generator=gen).to(dev, dtype)
        for op in ops:
            candidates: Dict[str, Optional[Callable]] = {}
            for backend in backends:
                if op == "gla":
                    candidates[backend] = (lambda b_: lambda q_, k_, v_, g_, h_: gla(q_, k_, v_, g_, backend=b_))(
                        backend)
                else:
                    candidates[backend] = (lambda b_: lambda q_, k_, v_, g_, h_: bigla(
                        q_, k_, v_, g_, h_, backend=b_))(backend)
            if fla is not None:
                candidates["fla"] = (lambda q_, k_, v_, g_, h_: fla[0](q_, k_, v_, g_)) if op == "gla" else (
                    lambda q_, k_, v_, g_, h_: fla[1](q_, k_, v_, g_, h_))
            flops_fwd, flops_fwd_bwd, bytes_fwd, bytes_fwd_bwd = flops_bytes(op, batch, length, heads, dk, dv, elem, 4)
            for backend, fn in candidates.items():
                row = dict(op=op, backend=backend, name=name, shape=f"{batch}x{length}x{heads}x{dk}x{dv}",
                           batch=batch, length=length, heads=heads, dk=dk, dv=dv,
                           dtype=str(dtype).replace("torch.", ""), device=str(dev), error=None)
                try:
                    with torch.no_grad():
                        ms_fwd = time_ms(lambda: fn(q, k, v, gf, gb), dev, warmup, reps)
                    leaves = [t.detach().requires_grad_(True) for t in (q, k, v, gf, gb)]
                    used = leaves if op == "bigla" else leaves[:4]

                    def fwd_bwd():
                        out = fn(*leaves)
                        torch.autograd.grad(out, used, grad_out)

                    ms_fwd_bwd = time_ms(fwd_bwd, dev, warmup, reps)
                except Exception as exc:  # noqa: BLE001 - one failing backend is a row, not a crash
                    row["error"] = f"{type(exc).__name__}: {exc}"[:300]
                    rows.append(row)
                    if dev.type == "cuda":
                        torch.cuda.empty_cache()
                    continue
                row.update(
                    ms_fwd=ms_fwd, ms_fwd_bwd=ms_fwd_bwd,
                    tflops_fwd=flops_fwd / ms_fwd / 1e9, tflops_fwd_bwd=flops_fwd_bwd / ms_fwd_bwd / 1e9,
                    gbps_fwd=bytes_fwd / ms_fwd / 1e6, gbps_fwd_bwd=bytes_fwd_bwd / ms_fwd_bwd / 1e6,
                )
                if peaks is not None:
                    row["pct_peak_flops_fwd"] = 100.0 * row["tflops_fwd"] / peaks[0]
                    row["pct_peak_bw_fwd"] = 100.0 * row["gbps_fwd"] / (peaks[1] * 1e3)
                rows.append(row)
                _logger.info("%s %s %s: fwd %.3f ms, fwd+bwd %.3f ms", op, backend, name, ms_fwd, ms_fwd_bwd)
        del q, k, v, gf, gb, grad_out
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def format_table(rows: List[Dict]) -> str:
    header = f"{'op':<7}{'backend':<11}{'shape':<22}{'fwd ms':>10}{'f+b ms':>10}{'TFLOP/s':>9}{'GB/s':>9}{'%bw':>6}"
    lines = [header]
    for r in rows:
        if r.get("error"):
            lines.append(f"{r['op']:<7}{r['backend']:<11}{r['shape']:<22}  error: {r['error'][:60]}")
            continue
        pct = r.get("pct_peak_bw_fwd")
        lines.append(
            f"{r['op']:<7}{r['backend']:<11}{r['shape']:<22}{r['ms_fwd']:>10.3f}{r['ms_fwd_bwd']:>10.3f}"
            f"{r['tflops_fwd']:>9.2f}{r['gbps_fwd']:>9.1f}{(f'{pct:.1f}' if pct is not None else '-'):>6}"
        )
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> List[Dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--backends", default="reference,triton")
    parser.add_argument("--ops", default="gla,bigla")
    parser.add_argument("--shapes", default=None, help="comma-separated shape names from VIG_SHAPES (default all)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--no-extras", action="store_true", help="skip the fla chunk_gla rows")
    parser.add_argument("--out", default=None, help="write the rows as JSON here")
    args = parser.parse_args(argv)
    shapes = None
    if args.shapes:
        wanted = set(args.shapes.split(","))
        shapes = [s for s in VIG_SHAPES if s[0] in wanted]
    rows = run_benchmark(
        device=args.device, dtype=getattr(torch, args.dtype), batch=args.batch,
        backends=tuple(b for b in args.backends.split(",") if b), warmup=args.warmup, reps=args.reps,
        shapes=shapes, ops=tuple(o for o in args.ops.split(",") if o), extras=not args.no_extras,
    )
    print(format_table(rows))  # noqa: T201 - CLI output
    if args.out:
        meta = dict(device=args.device, dtype=args.dtype, batch=args.batch, torch=torch.__version__)
        if args.device.startswith("cuda") and torch.cuda.is_available():
            meta["device_name"] = torch.cuda.get_device_name()
        with open(args.out, "w") as f:
            json.dump(dict(meta, rows=rows), f, indent=2)
    return rows


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()
