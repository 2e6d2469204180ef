"""Ahead-of-time compilation of the Triton kernels for real GPUs, without one.

``triton.compile(ASTSource(...), target=GPUTarget("cuda", arch, 32))`` runs Triton's whole pipeline down to a
cubin (ptxas bundled with Triton) for sm_80 (A100) and sm_90 (H100 / H200) on a CPU-only machine. For every
kernel configuration the registered models use (dtype fp16 / bf16 / fp32, head dims, kernel size, dilation) this
module records what the hardware would see: shared memory per block, registers per thread, and ptxas' spill
bytes, and checks them against the device limits.

Results are cached in a JSON table (``benchmarks/results/triton_aot.json``); each row is keyed by the kernel's
Triton cache key (its source and that of every ``@triton.jit`` function it calls), the Triton version, the
configuration and the launch options, so only kernels whose source changed are compiled again.

    python -m visionattn.ops._aot [--table PATH] [--force]    # (re)build the table, print it
"""
from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import re
import subprocess
import tempfile
from typing import Dict, Iterable, List, Optional, Tuple

DEFAULT_TABLE = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "results", "triton_aot.json")

# Per-block limits (bytes of shared memory a block may opt into; registers per thread) and per-SM register file.
LIMITS: Dict[int, Dict[str, int]] = {
    80: dict(smem_per_block=163 * 1024, smem_per_sm=164 * 1024, regs_per_thread=255, regs_per_sm=65536,
             name="A100 (sm_80)"),
    90: dict(smem_per_block=227 * 1024, smem_per_sm=228 * 1024, regs_per_thread=255, regs_per_sm=65536,
             name="H100/H200 (sm_90)"),
}
ARCHS = (80, 90)
DTYPES = ("float16", "bfloat16", "float32")
# A kernel "spills badly" above this many bytes of spill stores per thread (a few scalars around a loop are
# harmless; a spilled tile is not).
MAX_SPILL_BYTES = 64
# Known residual spills, per kernel (bytes of spill stores per thread): the GLA gradient kernel recomputes the
# in-chunk scores and holds [4, 64, dk] fp32 operand tiles of the sub-chunk products (it spilled 18 KB per thread
# before its diagonal loops stopped being unrolled and the directions were split into two launches).
SPILL_BUDGET = {"gla_grads": 2048}
# Known and not yet fixed: in float32 the GLA chunk kernels run their 3-D dots as IEEE fp32 FMA loops (no tensor
# cores), and ptxas then allocates only 32-64 registers per thread and spills kilobytes at 4, 8 or 16 warps. The
# fp32 GLA path is correct on GPUs but slow; train with bf16 / fp16 autocast (no spill beyond SPILL_BUDGET).
SPILL_EXEMPT = {("gla_states", "float32"), ("gla_output", "float32"), ("gla_dstates", "float32"),
                ("gla_grads", "float32")}

_TRITON_PTR = {"float16": "*fp16", "bfloat16": "*bf16", "float32": "*fp32"}


# ------------------------------------------------------------------------------------------- configurations


def model_configs(names: Optional[Iterable[str]] = None) -> Tuple[List[tuple], List[tuple]]:
    """The (head_dim, kernel_size, dilation) triples of every ``NeighborhoodAttention2d`` and the (dk, dv) pairs
    of every ``BiGatedLinearAttention2d`` in the registered visionattn models (built on the meta device), plus
    the architectures their pretrained tags imply (e.g. DiNAT-L 384 dilations, 11x11 kernels)."""
    import timm
    import torch
    from timm.models import _registry

    importlib.import_module("visionattn.models")  # registers the models
    from visionattn.layers.gla import BiGatedLinearAttention2d
    from visionattn.layers.neighborhood import NeighborhoodAttention2d
    from visionattn.models import nat

    if names is None:
        names = sorted(n for n, mod in _registry._model_to_module.items() if mod in ("nat", "vig", "gc_vit"))
    builds = [(name, {}) for name in names]
    for tag, kwargs in getattr(nat, "_TAG_MODEL_ARGS", {}).items():
        if tag.split(".")[0] in names:
            builds.append((tag.split(".")[0], dict(kwargs)))
    na, gla = set(), set()
    for name, kwargs in builds:
        with torch.device("meta"):
            model = timm.create_model(name, **kwargs)
        for module in model.modules():
            if isinstance(module, NeighborhoodAttention2d):
                na.add((module.head_dim, tuple(module.kernel_size), tuple(module.dilation)))
            elif isinstance(module, BiGatedLinearAttention2d):
                gla.add((module.head_k_dim, module.head_v_dim))
    return sorted(na), sorted(gla)


def _dilation_class(dilation: int) -> int:
    """Triton specializes an int argument equal to 1 (a constant) and one divisible by 16 (an alignment hint);
    every other value runs the same binary. Returns the representative compiled for ``dilation``."""
    if dilation == 1:
        return 1
    return 16 if dilation % 16 == 0 else 2


def kernel_jobs(na_configs: List[tuple], gla_configs: List[tuple]) -> List[dict]:
    """One job per (kernel, dtype, arch, compiled configuration); ``uses`` lists the model configurations that
    run it (dilations of the same specialization class share a binary)."""
    import triton

    from .gla import triton as gla_triton
    from .neighborhood import triton as na_triton

    jobs: Dict[str, dict] = {}

    def add(kernel: str, fn, dtype: str, arch: int, constants: dict, scalars: dict, options: dict, config: dict,
            use: str):
        key = json.dumps([kernel, dtype, arch, constants, scalars, options], sort_keys=True)
        job = jobs.setdefault(key, dict(kernel=kernel, fn=fn, dtype=dtype, arch=arch, constants=constants,
                                        scalars=scalars, options=options, config=config, uses=[]))
        if use not in job["uses"]:
            job["uses"].append(use)

    for head_dim, (kh, kw), (dh, dw) in na_configs:
        for dtype in DTYPES:
            fwd_tiles, bwd_tiles = na_triton.default_tiles(head_dim, dtype, (kh, kw))
            block_d = na_triton._block_d(head_dim)
            dot_fp32 = dtype == "float32"
            dil = dict(DIL_H=_dilation_class(dh), DIL_W=_dilation_class(dw))
            base = dict(KH=kh, KW=kw, HAS_RPB=True, DOT_FP32=dot_fp32, BLOCK_D=block_d)
            use = f"d={head_dim} k={kh}x{kw} dil={dh}x{dw}"
            for arch in ARCHS:
                bqh, bqw = fwd_tiles["block_qh"], fwd_tiles["block_qw"]
                bkw_halo = max(16, triton.next_power_of_2(bqw + kw - 1))
                opts = dict(num_warps=fwd_tiles["num_warps"], num_stages=fwd_tiles["num_stages"])
                cfg = dict(head_dim=head_dim, kernel_size=[kh, kw], dilation_class=[dil["DIL_H"], dil["DIL_W"]],
                           block_q=[bqh, bqw])
                add("na2d_fwd", na_triton._na2d_fwd_kernel, dtype, arch,
                    dict(base, BLOCK_QH=bqh, BLOCK_QW=bqw, BLOCK_KW=bkw_halo), dil, opts, cfg, use)
                bqh, bqw = bwd_tiles["block_qh"], bwd_tiles["block_qw"]
                opts = dict(num_warps=bwd_tiles["num_warps"], num_stages=bwd_tiles["num_stages"])
                add("na2d_bwd_dq", na_triton._na2d_bwd_dq_kernel, dtype, arch,
                    dict(base, RPB_GRAD=True, BLOCK_QH=bqh, BLOCK_QW=bqw,
                         BLOCK_KW=max(16, triton.next_power_of_2(bqw + kw - 1))), dil, opts,
                    dict(cfg, block_q=[bqh, bqw]), use)
                bkh, bkw = bwd_tiles["block_kh"], bwd_tiles["block_kw"]
                opts = dict(num_warps=bwd_tiles["kv_num_warps"], num_stages=bwd_tiles["num_stages"])
                add("na2d_bwd_dkdv", na_triton._na2d_bwd_dkdv_kernel, dtype, arch,
                    dict(base, BLOCK_KH=bkh, BLOCK_KW=bkw, BLOCK_QW=max(16, triton.next_power_of_2(bkw + kw - 1))),
                    dil, opts, dict(cfg, block_q=None, block_k=[bkh, bkw]), use)
    for dk, dv in gla_configs:
        for dtype in DTYPES:
            bk, bv = max(16, triton.next_power_of_2(dk)), max(16, triton.next_power_of_2(dv))
            launch = gla_triton.launch_options(dk, dv, dtype)
            use = f"dk={dk} dv={dv} bidirectional"
            for arch in ARCHS:
                cfg = dict(dk=dk, dv=dv, dirs=2)
                common = dict(DIRS=2, DT=dtype, BT=gla_triton.CHUNK, BK=bk, BV=bv)
                for kernel, fn, extra in (
                        ("gla_states", gla_triton._states_kernel, {}),
                        ("gla_output", gla_triton._output_kernel, dict(BC=gla_triton.SUB_CHUNK)),
                        ("gla_dstates", gla_triton._dstates_kernel, {})):
                    add(kernel, fn, dtype, arch, dict(common, **extra), {}, dict(launch[kernel]), cfg, use)
                # the bidirectional backward launches the gradient kernel once per direction (fp32 partials)
                for h_dir, reverse in ((0, False), (1, True)):
                    add("gla_grads", gla_triton._grads_kernel, dtype, arch,
                        dict(DT=dtype, REVERSE=reverse, BT=gla_triton.CHUNK, BC=gla_triton.SUB_CHUNK, BK=bk, BV=bv),
                        dict(H_DIR=h_dir), dict(launch["gla_grads"]), dict(cfg, reverse=reverse), use)
    return list(jobs.values())


# ------------------------------------------------------------------------------------------------ compiling


_FP32_POINTERS = {"lse_ptr", "delta_ptr", "dlogits_ptr", "h_ptr", "dh_ptr", "g0_ptr", "g1_ptr", "dg0_ptr",
                  "dg1_ptr", "g_ptr", "dg_ptr"}
# fp32 per-direction partials of the bidirectional gradient kernel
_FP32_POINTERS_BY_KERNEL = {"gla_grads": {"dq_ptr", "dk_ptr", "dv_ptr"}}
_FLOAT_SCALARS = {"scale", "do_scale"}


def _signature(job: dict) -> Tuple[dict, dict]:
    import triton.language as tl

    fn = job["fn"]
    signature, constexprs = {}, {}
    for index, param in enumerate(fn.params):
        name = param.name
        if param.is_constexpr or (name in job["scalars"] and job["scalars"][name] == 1):
            value = job["constants"][name] if param.is_constexpr else 1
            if name == "DT":
                value = {"float16": tl.float16, "bfloat16": tl.bfloat16, "float32": tl.float32}[value]
            signature[name] = "constexpr"
            constexprs[(index,)] = value
        elif name.endswith("_ptr"):
            fp32 = name in _FP32_POINTERS or name in _FP32_POINTERS_BY_KERNEL.get(job["kernel"], ())
            signature[name] = "*fp32" if fp32 else _TRITON_PTR[job["dtype"]]
        elif name in _FLOAT_SCALARS:
            signature[name] = "fp32"
        else:
            signature[name] = "i32"
    return signature, constexprs


def _attrs(job: dict) -> dict:
    """Alignment hints Triton's JIT would attach: pointers from torch are 16-byte aligned; an int argument
    divisible by 16 (here: a dilation class of 16) gets the same hint."""
    attrs = {}
    for index, param in enumerate(job["fn"].params):
        name = param.name
        if name.endswith("_ptr") or job["scalars"].get(name) == 16:
            attrs[(index,)] = [["tt.divisibility", 16]]
    return attrs


def _bin(tool: str) -> str:
    import triton

    return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", tool)


def compile_job(job: dict) -> dict:
    """Compile one job for its target; shared memory from Triton's metadata (plus any static shared memory),
    registers and spill bytes from ptxas (``-v``) on the PTX Triton produced."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    signature, constexprs = _signature(job)
    src = ASTSource(fn=job["fn"], signature=signature, constexprs=constexprs, attrs=_attrs(job))
    compiled = triton.compile(src, target=GPUTarget("cuda", job["arch"], 32), options=dict(job["options"]))
    ptx = compiled.asm["ptx"]
    arch = re.search(r"\.target\s+(\S+)", ptx).group(1)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "k.ptx")
        with open(path, "w") as f:
            f.write(ptx)
        log = subprocess.run([_bin("ptxas"), "-v", f"-arch={arch}", path, "-o", os.path.join(tmp, "k.cubin")],
                             capture_output=True, text=True, check=True).stderr

    def grab(pattern: str) -> int:
        found = re.search(pattern, log)
        return int(found.group(1)) if found else 0

    static_smem = grab(r"(\d+) bytes smem")
    return dict(
        shared_bytes=int(compiled.metadata.shared) + static_smem,
        regs=grab(r"Used (\d+) registers"),
        spill_store_bytes=grab(r"(\d+) bytes spill stores"),
        spill_load_bytes=grab(r"(\d+) bytes spill loads"),
        stack_bytes=grab(r"(\d+) bytes stack frame"),
        ptx_target=arch,
    )


def job_key(job: dict) -> str:
    import triton

    payload = json.dumps(
        [job["kernel"], job["fn"].cache_key, triton.__version__, job["dtype"], job["arch"], job["constants"],
         job["scalars"], job["options"]], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def check_row(row: dict) -> List[str]:
    """Limit violations of one table row (empty when it fits)."""
    limits = LIMITS[row["arch"]]
    threads = 32 * row["options"]["num_warps"]
    problems = []
    if row["shared_bytes"] > limits["smem_per_block"]:
        problems.append(f"shared memory {row['shared_bytes']} B > {limits['smem_per_block']} B")
    if row["regs"] > limits["regs_per_thread"]:
        problems.append(f"{row['regs']} registers/thread > {limits['regs_per_thread']}")
    if row["regs"] * threads > limits["regs_per_sm"]:
        problems.append(f"{row['regs']} x {threads} threads registers > {limits['regs_per_sm']} per SM")
    budget = SPILL_BUDGET.get(row["kernel"], MAX_SPILL_BYTES)
    if row["spill_store_bytes"] > budget and (row["kernel"], row["dtype"]) not in SPILL_EXEMPT:
        problems.append(f"{row['spill_store_bytes']} B of register spill stores > {budget}")
    return problems


def build_table(path: str = DEFAULT_TABLE, force: bool = False, names: Optional[Iterable[str]] = None,
                verbose: bool = False) -> dict:
    """Load the cached table, compile the jobs whose key is not in it, save it when anything changed."""
    cached = {}
    if os.path.exists(path) and not force:
        with open(path) as f:
            cached = {row["key"]: row for row in json.load(f).get("rows", [])}
    na_configs, gla_configs = model_configs(names)
    rows, compiled = [], 0
    for job in kernel_jobs(na_configs, gla_configs):
        key = job_key(job)
        row = cached.get(key)
        if row is None:
            row = dict(key=key, kernel=job["kernel"], dtype=job["dtype"], arch=job["arch"], config=job["config"],
                       constants={k: str(v) for k, v in job["constants"].items()}, scalars=job["scalars"],
                       options=job["options"], **compile_job(job))
            compiled += 1
            if verbose:
                print(format_row(row), flush=True)
            cached[key] = row
            # save as we go (a long build that is cut off keeps what it compiled)
            _save(path, _table(na_configs, gla_configs, list(cached.values())))
        row = dict(row, uses=sorted(job["uses"]))
        rows.append(row)
    table = _table(na_configs, gla_configs, rows)
    _save(path, table)
    table["compiled"] = compiled
    return table


def _table(na_configs, gla_configs, rows) -> dict:
    import triton

    return dict(triton_version=triton.__version__, limits={str(k): v for k, v in LIMITS.items()},
                max_spill_store_bytes=MAX_SPILL_BYTES, spill_budget=SPILL_BUDGET,
                spill_exempt=sorted(list(e) for e in SPILL_EXEMPT), na_configs=[list(c) for c in na_configs],
                gla_configs=[list(c) for c in gla_configs], rows=rows)


def _save(path: str, table: dict) -> None:
    old = None
    if os.path.exists(path):
        with open(path) as f:
            old = f.read()
    text = json.dumps(table, indent=1, sort_keys=True) + "\n"
    if text != old:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)


def format_row(row: dict) -> str:
    cfg = row["config"]
    what = (f"d={cfg['head_dim']} k={cfg['kernel_size'][0]} dil~{cfg['dilation_class'][0]}" if "head_dim" in cfg
            else f"dk={cfg['dk']} dv={cfg['dv']}" + (" rev" if cfg.get("reverse") else ""))
    return (f"{row['kernel']:<14} sm_{row['arch']} {row['dtype']:<8} {what:<18} warps={row['options']['num_warps']}"
            f" smem={row['shared_bytes']:>6} regs={row['regs']:>3} spill={row['spill_store_bytes']:>4}"
            f"{'  ' + '; '.join(check_row(row)) if check_row(row) else ''}")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--table", default=DEFAULT_TABLE)
    parser.add_argument("--force", action="store_true", help="recompile every row")
    args = parser.parse_args(argv)
    table = build_table(args.table, force=args.force, verbose=True)
    print(f"{table['compiled']} compiled, {len(table['rows'])} rows")
    bad = 0
    for row in table["rows"]:
        print(format_row(row))
        bad += bool(check_row(row))
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
