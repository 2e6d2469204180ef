"""Every Triton kernel compiled ahead of time for sm_80 (A100) and sm_90 (H100 / H200) on this CPU-only machine, for
every configuration the registered models use, and checked against the devices' shared memory, register and spill
limits (``visionattn/ops/_aot.py``).

The results are cached in ``benchmarks/results/triton_aot.json``, keyed by each kernel's Triton cache key (its source
and its callees'), the Triton version, the configuration and the launch options: only rows whose key changed are
compiled again (seconds each; minutes after a kernel edit), so the committed table keeps CI fast. A kernel edit or
Triton upgrade without a refreshed table still passes, after compiling; commit the refreshed table
(``python -m visionattn.ops._aot``).
"""
import json
import os
import subprocess
import sys

import pytest

triton = pytest.importorskip("triton")

from visionattn.ops import _aot  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

pytestmark = pytest.mark.skipif(
    not os.path.exists(_aot._bin("ptxas")), reason="triton's bundled ptxas is missing (NVIDIA backend not installed)")


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    # work on a copy (the test never rewrites the committed table), in a process without TRITON_INTERPRET (the
    # interpreter replaces the kernels by objects that cannot be compiled)
    path = tmp_path_factory.mktemp("aot") / "triton_aot.json"
    if os.path.exists(_aot.DEFAULT_TABLE):
        path.write_text(open(_aot.DEFAULT_TABLE).read())
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    done = subprocess.run([sys.executable, "-m", "visionattn.ops._aot", "--table", str(path)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=3600)
    assert done.returncode in (0, 1), done.stderr[-3000:]
    return json.loads(path.read_text())


def test_model_configurations_are_covered(table):
    na = {tuple(map(tuple, c[1:])) + (c[0],) for c in table["na_configs"]}
    assert {(k, d) for (k, d, _) in na} >= {((7, 7), (1, 1)), ((7, 7), (8, 8))}, "NAT / DiNAT kernel 7, dilations"
    assert {tuple(c) for c in table["gla_configs"]} >= {(16, 32), (32, 64)}, "ViG-H (16, 32) and ViG (32, 64)"
    kernels = {(r["kernel"], r["dtype"], r["arch"]) for r in table["rows"]}
    for kernel in ("na2d_fwd", "na2d_bwd_dq", "na2d_bwd_dkdv", "gla_states", "gla_output", "gla_dstates",
                   "gla_grads"):
        for dtype in _aot.DTYPES:
            for arch in _aot.ARCHS:
                assert (kernel, dtype, arch) in kernels, (kernel, dtype, arch)
    used = {u for r in table["rows"] for u in r["uses"]}
    for head_dim, kernel_size, dilation in table["na_configs"]:
        assert f"d={head_dim} k={kernel_size[0]}x{kernel_size[1]} dil={dilation[0]}x{dilation[1]}" in used


def test_every_kernel_fits_a100_and_h100(table):
    problems = [f"{_aot.format_row(row)}" for row in table["rows"] if _aot.check_row(row)]
    assert not problems, "\n".join(problems)


def test_no_spill_exemption_outside_fp32_gla(table):
    assert all(kernel.startswith("gla_") and dtype == "float32" for kernel, dtype in _aot.SPILL_EXEMPT)
    # the training dtypes of every kernel stay within the spill limit
    for row in table["rows"]:
        if row["dtype"] in ("float16", "bfloat16"):
            assert row["spill_store_bytes"] <= _aot.SPILL_BUDGET.get(row["kernel"], _aot.MAX_SPILL_BYTES), \
                _aot.format_row(row)


def test_committed_table_is_current(table):
    """The committed table has a row for every current key (else the fixture compiled; refresh and commit it)."""
    with open(_aot.DEFAULT_TABLE) as f:
        committed = {row["key"] for row in json.load(f)["rows"]}
    missing = [_aot.format_row(r) for r in table["rows"] if r["key"] not in committed]
    assert not missing, "run python -m visionattn.ops._aot and commit benchmarks/results/triton_aot.json:\n" + \
        "\n".join(missing[:10])
