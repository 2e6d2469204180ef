"""One-shot GPU check for na2d: Triton vs reference correctness in fp16/bf16 at DiNAT shapes, then the benchmark.

    OUT=/some/dir python benchmarks/gpu_check_na2d.py [--batch 32] [--quick] [--no-extras]

Writes ``$OUT/na2d_gpu_check.json`` (relative errors, max |triton - reference| / max |reference|, per shape, dtype
and tensor against the float64 reference on the same rounded inputs, pass/fail against the per-dtype tolerances of
tests/ops/test_neighborhood_triton.py, and the benchmark rows) and prints a table. Meant to fit in a few minutes.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.bench_na2d import DINAT_SHAPES, format_table, run_benchmark  # noqa: E402
from visionattn.ops import na2d  # noqa: E402

# Relative tolerance per dtype (the same as tests/ops/test_neighborhood_triton.py): a 3% error in any gradient fails.
TOLERANCES = {"float16": 4e-3, "bfloat16": 2e-2, "float32": 1e-5}


def _rel(got: torch.Tensor, expected: torch.Tensor) -> float:
    return ((got - expected).abs().max() / expected.abs().max().clamp_min(1e-30)).item()


def check_correctness(batch: int, dtypes=("float16", "bfloat16", "float32")):
    device = torch.device("cuda")
    results = []
    shapes = DINAT_SHAPES + [(23, 37, 2, 80, 5, (1, 3)), (20, 20, 2, 128, 11, (1,))]  # odd sizes, dims 80/128
    for height, width, heads, dim, kernel, dilations in shapes:
        for dilation in dilations:
            gen = torch.Generator().manual_seed(0)
            q, k, v = (torch.randn(batch, height, width, heads, dim, generator=gen) for _ in range(3))
            rpb = torch.randn(heads, 2 * kernel - 1, 2 * kernel - 1, generator=gen)
            grad_out = torch.randn(batch, height, width, heads, dim, generator=gen) * 0.05
            for dtype_name in dtypes:
                dtype = getattr(torch, dtype_name)
                # The oracle: the float64 reference on the same rounded inputs.
                ins = [t.to(dtype).to(device) for t in (q, k, v)]
                go = grad_out.to(dtype).to(device)
                outs = {}
                for backend, compute in (("reference", torch.float64), ("triton", dtype)):
                    leaves = [t.to(compute).requires_grad_(True) for t in ins]
                    rpb_leaf = rpb.to(device=device, dtype=torch.float64 if backend == "reference" else None)
                    rpb_leaf.requires_grad_(True)
                    torch.cuda.synchronize()
                    start = time.perf_counter()
                    out = na2d(*leaves, kernel, dilation, rpb=rpb_leaf, backend=backend)
                    grads = torch.autograd.grad(out, [*leaves, rpb_leaf], go.to(compute))
                    torch.cuda.synchronize()
                    outs[backend] = (out.double(), [g.double() for g in grads], time.perf_counter() - start)
                ref_out, ref_grads, _ = outs["reference"]
                tri_out, tri_grads, _ = outs["triton"]
                errors = dict(out=_rel(tri_out, ref_out))
                for name, got, exp in zip(("dq", "dk", "dv", "drpb"), tri_grads, ref_grads):
                    errors[name] = _rel(got, exp)
                tol = TOLERANCES[dtype_name]
                ok = all(err <= max(tol, 1e-5) for err in errors.values()) and all(
                    torch.isfinite(t).all().item() for t in [tri_out, *tri_grads])
                results.append(dict(shape=f"{batch}x{height}x{width}x{heads}x{dim}", kernel=kernel,
                                    dilation=dilation, dtype=dtype_name, errors=errors, tolerances=tol, ok=ok))
                print(f"{'ok ' if ok else 'BAD'} {dtype_name:<9} {results[-1]['shape']:<16} k{kernel} d{dilation} "
                      + " ".join(f"{k}={v:.2e}" for k, v in errors.items()), flush=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--check-batch", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="correctness only at batch 2, short benchmark")
    parser.add_argument("--no-extras", action="store_true", help="skip the NATTEN / FlexAttention rows")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device")
        return 1
    out_dir = os.environ.get("OUT", ".")
    report = dict(device=torch.cuda.get_device_name(), torch=torch.__version__)
    try:
        import triton
        report["triton"] = triton.__version__
    except ImportError:
        pass
    start = time.time()
    report["correctness"] = check_correctness(2 if args.quick else args.check_batch)
    report["correctness_s"] = time.time() - start
    _dump(report, out_dir)
    start = time.time()
    rows = run_benchmark(device="cuda", dtype=torch.bfloat16, batch=args.batch,
                         warmup=2 if args.quick else 3, reps=5 if args.quick else 10, extras=not args.no_extras)
    report["benchmark"] = rows
    report["benchmark_s"] = time.time() - start
    print(format_table(rows))
    _dump(report, out_dir)
    return 0 if all(r["ok"] for r in report["correctness"]) else 2


def _dump(report, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "na2d_gpu_check.json"), "w") as f:
        json.dump(report, f, indent=2)


if __name__ == "__main__":
    sys.exit(main())
