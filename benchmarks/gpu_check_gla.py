"""One-shot GPU check for the GLA ops: correctness in bf16/fp16 at the ViG shapes, then the benchmark.

Correctness compares the Triton backend (outputs and every gradient) against the float64 reference run on the
same rounded inputs, as relative RMS error (fla's metric, reference/kernels.md §2.2, with per-dtype tolerances
from tests/ops/test_gla.py) and max abs error.
Results are written after every stage (so a timeout keeps what was done) to ``$OUT`` (or ``--out``):
``gla_gpu_check.json`` and ``bench_gla_<gpu>.json``.

    OUT=/tmp/out python benchmarks/gpu_check_gla.py
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_gla import VIG_SHAPES, format_table, run_benchmark  # noqa: E402

from visionattn.ops import bigla, gla  # noqa: E402

# Relative-RMS tolerances per dtype, the same as tests/ops/test_gla.py (a 3% error in any tensor fails).
TOL = {
    torch.float32: {"out": 1e-5, "grad": 2e-5},
    torch.float16: {"out": 3e-3, "grad": 3e-3},
    torch.bfloat16: {"out": 1.5e-2, "grad": 1.5e-2},
}


def _errors(mode, batch, length, heads, dk, dv, dtype, seed=0, gate="vig"):
    gen = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(batch, length, heads, dk, generator=gen) for _ in range(2))
    v = torch.randn(batch, length, heads, dv, generator=gen)
    if gate == "strong":  # log gates near -5 per token
        gf, gb = (-5.0 + 0.5 * torch.rand(batch, length, heads, dk, generator=gen) for _ in range(2))
    elif gate == "weak":  # near-zero decay: states sum thousands of tokens
        gf, gb = (-1e-4 * torch.rand(batch, length, heads, dk, generator=gen) for _ in range(2))
    else:  # ViG: logsigmoid(x) / 16
        gf, gb = (F.logsigmoid(torch.randn(batch, length, heads, dk, generator=gen)) / 16 for _ in range(2))
    grad_out = torch.randn(batch, length, heads, dv, generator=gen)
    leaves = [q.to(dtype), k.to(dtype), v.to(dtype), gf, gb]
    if mode != "bi":
        leaves = leaves[:4]

    def run(backend, tensors, go):
        tensors = [t.detach().clone().cuda().requires_grad_() for t in tensors]
        if mode == "bi":
            out = bigla(*tensors, backend=backend)
        else:
            out = gla(*tensors, reverse=(mode == "rev"), backend=backend)
        out.backward(go.cuda().to(out.dtype))
        return [out.detach()] + [t.grad for t in tensors]

    expected = run("reference", [t.double() for t in leaves], grad_out.double())
    torch.cuda.synchronize()
    start = time.perf_counter()
    got = run("triton", leaves, grad_out)
    torch.cuda.synchronize()
    names = ["out", "dq", "dk", "dv"] + (["dg_fwd", "dg_bwd"] if mode == "bi" else ["dg"])
    result = dict(mode=mode, dtype=str(dtype).replace("torch.", ""), batch=batch, length=length, heads=heads, dk=dk,
                  dv=dv, gate=gate, first_call_s=time.perf_counter() - start, errors={}, passed=True)
    for name, a, b in zip(names, got, expected):
        a, b = a.double(), b.double()
        finite = bool(torch.isfinite(a).all())
        rel = ((a - b).norm() / b.norm().clamp_min(1e-30)).item()
        max_abs = (a - b).abs().max().item()
        ok = finite and rel < TOL[dtype]["out" if name == "out" else "grad"]
        result["errors"][name] = dict(rel_rms=rel, max_abs=max_abs, finite=finite, passed=ok)
        result["passed"] &= ok
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    parser.add_argument("--batch", type=int, default=32, help="benchmark batch")
    parser.add_argument("--reps", type=int, default=5, help="benchmark repetitions")
    parser.add_argument("--skip-bench", action="store_true")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("gpu_check_gla.py needs a CUDA device")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    gpu = torch.cuda.get_device_name()
    report = dict(device=gpu, torch=torch.__version__, checks=[])
    try:
        import triton
        report["triton"] = triton.__version__
    except ImportError:
        pass

    def save():
        with open(out_dir / "gla_gpu_check.json", "w") as f:
            json.dump(report, f, indent=2)

    t0 = time.perf_counter()
    plan = [(mode, torch.bfloat16) for mode in ("fwd", "rev", "bi")] + [("bi", torch.float16), ("fwd", torch.float16),
                                                                        ("bi", torch.float32)]
    for mode, dtype in plan:
        for name, length, heads, dk, dv in VIG_SHAPES:
            batch = 1 if length > 10000 else 2
            if length > 10000 and (mode, dtype) != ("bi", torch.bfloat16):
                continue
            try:
                res = _errors(mode, batch, length, heads, dk, dv, dtype, seed=length)
            except Exception as exc:  # noqa: BLE001 - record and continue
                res = dict(mode=mode, dtype=str(dtype), length=length, passed=False, error=repr(exc)[:500])
            res["shape_name"] = name
            report["checks"].append(res)
            worst = max((e["rel_rms"] for e in res.get("errors", {}).values()), default=float("nan"))
            print(f"[{time.perf_counter() - t0:6.1f}s] {mode:3s} {str(dtype):15s} {name:14s} "  # noqa: T201
                  f"worst rel rms {worst:.2e} passed={res['passed']}", flush=True)
            save()
    for dtype in (torch.float16, torch.bfloat16):
        for gate in ("strong", "weak"):
            try:
                res = _errors("bi", 2, 4096, 3, 16, 32, dtype, seed=1, gate=gate)
            except Exception as exc:  # noqa: BLE001 - record and continue
                res = dict(mode="bi", dtype=str(dtype), length=4096, gate=gate, passed=False, error=repr(exc)[:500])
            res["shape_name"] = f"stability_64x64_{gate}"
            report["checks"].append(res)
            print(f"[{time.perf_counter() - t0:6.1f}s] stability {gate} {dtype} passed={res['passed']}",  # noqa: T201
                  flush=True)
            save()
    report["all_passed"] = all(c["passed"] for c in report["checks"])
    save()
    if args.skip_bench:
        return report
    rows = run_benchmark(device="cuda", dtype=torch.bfloat16, batch=args.batch, backends=("reference", "triton"),
                         warmup=2, reps=args.reps)
    print(format_table(rows), flush=True)  # noqa: T201
    tag = "".join(c for c in gpu.split()[-1].lower() if c.isalnum()) or "gpu"
    with open(out_dir / f"bench_gla_{tag}.json", "w") as f:
        json.dump(dict(device=gpu, dtype="bfloat16", batch=args.batch, torch=torch.__version__, rows=rows), f,
                  indent=2)
    print(f"done in {time.perf_counter() - t0:.1f}s; all correctness checks passed: {report['all_passed']}")  # noqa
    return report


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
