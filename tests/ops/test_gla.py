"""Gated linear attention: the chunked reference and the Triton kernels against independent oracles.

Oracles: a float64 token-by-token recurrence written here (``_recurrence``), the masked-matmul form of
causal linear attention (zero gates), and sequence flipping for the reverse / bidirectional scans.
"""
import pytest
import torch
import torch.nn.functional as F

from visionattn.ops.gla import GLA_BACKENDS, bigla, gla
from visionattn.ops.gla.reference import gla_recurrent, gla_reference


def _recurrence(q, k, v, g, scale, reverse=False):
    """float64 oracle written independently of the library: S_t = diag(e^g_t) S_{t-1} + k_t v_t^T."""
    q, k, v, g = (t.double() for t in (q, k, v, g))
    batch, length, heads, dk = q.shape
    state = torch.zeros(batch, heads, dk, v.shape[-1], dtype=torch.float64)
    out = torch.zeros(batch, length, heads, v.shape[-1], dtype=torch.float64)
    for t in (reversed(range(length)) if reverse else range(length)):
        state = g[:, t].exp()[..., None] * state + k[:, t, :, :, None] * v[:, t, :, None, :]
        out[:, t] = scale * (q[:, t, :, :, None] * state).sum(-2)
    return out


def _inputs(batch, length, heads, dk, dv, dtype=torch.float64, gate_scale=1.0, seed=0, n_gates=1):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, length, heads, dk, generator=gen, dtype=torch.float64)
    k = torch.randn(batch, length, heads, dk, generator=gen, dtype=torch.float64)
    v = torch.randn(batch, length, heads, dv, generator=gen, dtype=torch.float64)
    gates = [F.logsigmoid(torch.randn(batch, length, heads, dk, generator=gen, dtype=torch.float64) + 2) * gate_scale
             for _ in range(n_gates)]
    return [t.to(dtype) for t in (q, k, v, *gates)]


def _rel_rms(ref, out):
    ref, out = ref.double(), out.double()
    return ((ref - out).norm() / ref.norm().clamp_min(1e-30)).item()


# ----------------------------------------------------------------------------------------------------------------
# reference backend


@pytest.mark.parametrize("length", [1, 17, 63, 65, 130])
@pytest.mark.parametrize("reverse", [False, True])
def test_reference_matches_recurrence(length, reverse):
    q, k, v, g = _inputs(2, length, 2, 8, 12, gate_scale=3.0, seed=length)
    out = gla(q, k, v, g, scale=0.37, reverse=reverse, backend="reference")
    expected = _recurrence(q, k, v, g, 0.37, reverse)
    assert out.dtype == torch.float64 and out.shape == (2, length, 2, 12)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)


def test_reference_default_scale_and_library_oracle_agree():
    q, k, v, g = _inputs(1, 70, 3, 16, 8, seed=3)
    out = gla(q, k, v, g)  # CPU default backend is the reference; default scale dk ** -0.5
    torch.testing.assert_close(out, _recurrence(q, k, v, g, 16 ** -0.5), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(gla_recurrent(q, k, v, g, reverse=True), _recurrence(q, k, v, g, 0.25, True))


def test_reference_strong_decay_is_exact():
    # log gates near -30 per step: exp(G_i - G_j) underflows far from the diagonal, never overflows.
    q, k, v, g = _inputs(1, 100, 1, 8, 8, seed=5)
    g = g * 0 - 30.0 + torch.rand_like(g)
    out = gla(q, k, v, g, backend="reference")
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, _recurrence(q, k, v, g, 8 ** -0.5), rtol=1e-9, atol=1e-12)


def test_zero_gates_equal_masked_causal_linear_attention():
    q, k, v, _ = _inputs(2, 90, 2, 8, 5, seed=7)
    g = torch.zeros_like(q)
    scores = torch.einsum("blhd,bmhd->bhlm", q, k) * 0.5
    scores = scores.masked_fill(~torch.ones(90, 90, dtype=torch.bool).tril(), 0.0)
    expected = torch.einsum("bhlm,bmhv->blhv", scores, v)
    torch.testing.assert_close(gla(q, k, v, g, scale=0.5, backend="reference"), expected, rtol=1e-10, atol=1e-10)
    anti = torch.einsum("blhd,bmhd->bhlm", q, k).masked_fill(~torch.ones(90, 90, dtype=torch.bool).triu(), 0.0)
    expected_rev = torch.einsum("bhlm,bmhv->blhv", anti * 0.5, v)
    torch.testing.assert_close(gla(q, k, v, g, 0.5, reverse=True, backend="reference"), expected_rev)


@pytest.mark.parametrize("length", [1, 66])
def test_bigla_is_mean_of_directions_and_flip(length):
    q, k, v, gf, gb = _inputs(2, length, 2, 8, 4, seed=11, n_gates=2)
    out = bigla(q, k, v, gf, gb, scale=0.3, backend="reference")
    mean = (gla(q, k, v, gf, 0.3) + gla(q, k, v, gb, 0.3, reverse=True)) / 2
    torch.testing.assert_close(out, mean, rtol=1e-12, atol=1e-12)
    flipped = _recurrence(*(t.flip(1) for t in (q, k, v, gb)), 0.3).flip(1)
    direct = (_recurrence(q, k, v, gf, 0.3) + flipped) / 2
    torch.testing.assert_close(out, direct, rtol=1e-10, atol=1e-10)


def test_reference_gradcheck():
    gen = torch.Generator().manual_seed(1)
    shape = (1, 19, 1, 3)
    q, k = (torch.randn(shape, generator=gen, dtype=torch.float64, requires_grad=True) for _ in range(2))
    v = torch.randn(1, 19, 1, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    g = (-(torch.rand(shape, generator=gen, dtype=torch.float64) + 0.05)).requires_grad_()
    # chunk 8 / sub-chunk 4 so that 19 tokens cross chunk and sub-chunk boundaries at a small cost
    for reverse in (False, True):
        fn = lambda *a: gla_reference(*a, 0.7, reverse, chunk_size=8, sub_chunk_size=4)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (q, k, v, g), eps=1e-6, atol=1e-7, fast_mode=True)
    gf = (-(torch.rand(1, 5, 1, 3, dtype=torch.float64) + 0.05)).requires_grad_()
    small = [torch.randn(1, 5, 1, 3, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    assert torch.autograd.gradcheck(lambda *a: bigla(*a, backend="reference"), (*small, gf, gf.detach().clone()),
                                    fast_mode=True)


@pytest.mark.parametrize("reverse", [False, True])
def test_reference_gradients_match_recurrence(reverse):
    q, k, v, g = _inputs(2, 130, 2, 8, 12, gate_scale=2.0, seed=13)
    leaves = [t.clone().requires_grad_() for t in (q, k, v, g)]
    grad_out = torch.randn(2, 130, 2, 12, dtype=torch.float64)
    out = gla(*leaves, scale=0.4, reverse=reverse, backend="reference")
    grads = torch.autograd.grad(out, leaves, grad_out)
    leaves_ref = [t.clone().requires_grad_() for t in (q, k, v, g)]
    grads_ref = torch.autograd.grad(_recurrence(*leaves_ref, 0.4, reverse), leaves_ref, grad_out)
    for name, a, b in zip(("dq", "dk", "dv", "dg"), grads, grads_ref):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9, msg=name)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("gate", ["strong", "weak"])
def test_reference_long_sequence_stability(dtype, gate):
    """L = 4096 (a 64x64 map): no inf/NaN forward or backward, and close to float64."""
    torch.manual_seed(0)
    batch, length, heads, dk, dv = 1, 4096, 2, 16, 32
    q, k = torch.randn(2, batch, length, heads, dk)
    v = torch.randn(batch, length, heads, dv)
    if gate == "strong":
        g = -5.0 + 0.5 * torch.rand(batch, length, heads, dk)
    else:
        g = -1e-4 * torch.rand(batch, length, heads, dk)
    leaves = [t.to(dtype).requires_grad_() for t in (q, k, v, g)]
    out = gla(*leaves, backend="reference")
    assert out.dtype == dtype
    grad_out = torch.randn_like(out) * 0.01
    out.backward(grad_out)
    assert torch.isfinite(out).all()
    for t in leaves:
        assert torch.isfinite(t.grad).all()
    out_bi = bigla(leaves[0], leaves[1], leaves[2], leaves[3], leaves[3], backend="reference")
    assert torch.isfinite(out_bi).all()
    expected = gla(*(t.detach().double() for t in leaves), backend="reference")
    assert _rel_rms(expected, out) < 0.01


def test_reference_state_memory_is_linear():
    # The largest intermediate must scale with L, not L^2: 4x the tokens may use at most ~4x the memory.
    def peak(length):
        q, k, v, g = _inputs(1, length, 1, 16, 32, dtype=torch.float32)
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            gla(q, k, v, g, backend="reference")
        return max(e.cpu_memory_usage for e in prof.key_averages())
    small, large = peak(1024), peak(4096)
    assert large < 5 * small


# ----------------------------------------------------------------------------------------------------------------
# argument checks


def test_checks_raise_clear_errors():
    q, k, v, g = _inputs(1, 10, 2, 8, 4, dtype=torch.float32)
    with pytest.raises(ValueError, match="4 dims"):
        gla(q[0], k, v, g)
    with pytest.raises(ValueError, match="k shape"):
        gla(q, k[..., :4], v, g)
    with pytest.raises(ValueError, match="v must have shape"):
        gla(q, k, v[:, :5], g)
    with pytest.raises(ValueError, match="log_gate shape"):
        gla(q, k, v, g[:, :3])
    with pytest.raises(TypeError, match="dtype"):
        gla(q, k.half(), v, g)
    with pytest.raises(TypeError, match="q must be"):
        gla(q.int(), k.int(), v.int(), g)
    with pytest.raises(TypeError, match="torch.Tensor"):
        gla(q, k, v, 0.5)
    with pytest.raises(ValueError, match="<= 0"):
        gla(q, k, v, g.abs() + 0.1)
    with pytest.raises(ValueError, match="log_gate_bwd"):
        bigla(q, k, v, g, g.abs() + 0.1)
    with pytest.raises(ValueError, match="is on"):
        gla(q, k, v, g.to("meta"))
    with pytest.raises(ValueError, match="not one of"):
        gla(q, k, v, g, backend="cuda")
    with pytest.raises(ValueError, match="at least 1"):
        gla(q[:, :0], k[:, :0], v[:, :0], g[:, :0])
    with pytest.raises(TypeError, match="reverse"):
        gla(q, k, v, g, reverse=1)
    with pytest.raises(ValueError, match="float16, bfloat16 or float32"):
        gla(q.double(), k.double(), v.double(), g, backend="triton")
    assert set(GLA_BACKENDS) == {"reference", "triton"}


# ----------------------------------------------------------------------------------------------------------------
# triton backend (TRITON_INTERPRET=1 on CPU; compiled on CUDA)

# Relative-RMS tolerances per dtype, set from what the kernels achieve against the float64 oracle on the same
# rounded inputs (interpreter): fp32 out ~3e-7, grads ~7e-7 (gate grads 7e-6 under strong decay); fp16 ~4.5e-4;
# bf16 ~3.8e-3. A 3% error in any output or gradient fails every dtype; fla's 4e-3 (reference/kernels.md 2.2)
# could not see it in fp32.
_TRITON_TOL = {
    torch.float32: {"out": 1e-5, "grad": 2e-5},
    torch.float16: {"out": 3e-3, "grad": 3e-3},
    torch.bfloat16: {"out": 1.5e-2, "grad": 1.5e-2},
}


def _run(fn, leaves, grad_out):
    leaves = [t.detach().clone().requires_grad_() for t in leaves]
    out = fn(*leaves)
    out.backward(grad_out.to(out.dtype))
    return [out.detach()] + [t.grad for t in leaves]


def _check_triton(mode, batch, length, heads, dk, dv, dtype, gate_scale=1.0, seed=0, device="cpu", tol=None):
    q, k, v, gf, gb = _inputs(batch, length, heads, dk, dv, gate_scale=gate_scale, seed=seed, n_gates=2)
    grad_out = torch.randn(batch, length, heads, dv, generator=torch.Generator().manual_seed(seed + 1),
                           dtype=torch.float64)
    if mode == "bi":
        leaves = [q, k, v, gf, gb]

        def call(backend):
            return lambda *a: bigla(*a, backend=backend)
    else:
        leaves = [q, k, v, gf]

        def call(backend):
            return lambda *a: gla(*a, reverse=(mode == "rev"), backend=backend)
    # the oracle: float64 reference on the same (rounded) inputs; it is itself checked against the recurrence
    rounded = [t.to(dtype) for t in leaves]
    expected = _run(call("reference"), [t.double() for t in rounded], grad_out)
    got = _run(call("triton"), [t.to(device) for t in rounded], grad_out.to(device))
    names = ["out", "dq", "dk", "dv"] + (["dg_fwd", "dg_bwd"] if mode == "bi" else ["dg"])
    tol = tol or _TRITON_TOL[dtype]
    for name, a, b in zip(names, got, expected):
        assert a.dtype == dtype and a.shape == b.shape, name
        assert torch.isfinite(a).all(), name
        err = _rel_rms(b, a.cpu())
        limit = tol["out"] if name == "out" else tol["grad"]
        # (an exactly-zero reference, e.g. the first token's forward gate gradient, is met to 1e-6 absolute)
        assert err < limit or (a.cpu().double() - b).abs().max() <= 1e-6, f"{mode} {name}: rel rms {err:.2e}"


@pytest.mark.parametrize("mode", ["fwd", "rev", "bi"])
@pytest.mark.parametrize("batch,length", [(2, 70), (1, 17)])
def test_triton_fp32_matches_reference(mode, batch, length):
    _check_triton(mode, batch, length, 2, 16, 32, torch.float32, seed=length)


@pytest.mark.parametrize("mode", ["fwd", "rev", "bi"])
def test_triton_fp16_matches_reference(mode):
    _check_triton(mode, 2, 45, 2, 16, 32, torch.float16, seed=3)


@pytest.mark.parametrize("length", [1, 64])
def test_triton_edge_lengths(length):
    _check_triton("bi", 1, length, 1, 16, 16, torch.float32, seed=4)


def test_triton_padded_head_dims_and_strong_decay():
    # dk = 20 and dv = 24 are padded to 32 inside the kernels; log gates near -5 per step
    _check_triton("bi", 1, 80, 2, 20, 24, torch.float32, gate_scale=40.0, seed=6)


def test_triton_bf16_upcast_in_interpreter():
    _check_triton("bi", 1, 33, 2, 16, 32, torch.bfloat16, seed=8)


def test_triton_explicit_choice_and_limits():
    q, k, v, g = _inputs(1, 8, 1, 128, 16, dtype=torch.float32)
    with pytest.raises(ValueError, match="dk <= 64"):
        gla(q, k, v, g, backend="triton")
    # the automatic choice on CPU never picks the interpreter
    q, k, v, g = _inputs(1, 8, 1, 16, 16, dtype=torch.float32)
    torch.testing.assert_close(gla(q, k, v, g), gla_reference(q, k, v, g, 0.25))


_VIG_SHAPES = [(3136, 3, 16, 32), (784, 6, 16, 32), (196, 12, 16, 32), (49, 24, 16, 32)]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", _VIG_SHAPES, ids=lambda s: f"L{s[0]}-h{s[1]}")
@pytest.mark.parametrize("mode", ["fwd", "rev", "bi"])
def test_triton_gpu_vig_shapes(mode, shape, dtype):
    length, heads, dk, dv = shape
    _check_triton(mode, 2, length, heads, dk, dv, dtype, seed=length, device="cuda")


def test_bench_gla_rows_on_cpu():
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_gla.py"
    spec = importlib.util.spec_from_file_location("bench_gla_under_test", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = bench.run_benchmark(device="cpu", dtype=torch.float32, batch=1, backends=("reference", "triton"),
                               warmup=0, reps=1, shapes=[("tiny", 20, 1, 16, 16)])
    assert len(rows) == 4 and all(r["error"] is None for r in rows), rows
    expected = {(o, b) for o in ("gla", "bigla") for b in ("reference", "triton")}
    assert {(r["op"], r["backend"]) for r in rows} == expected
    for r in rows:
        assert r["ms_fwd"] > 0 and r["ms_fwd_bwd"] > 0 and r["tflops_fwd"] > 0 and r["gbps_fwd_bwd"] > 0
    flops_fwd, _, bytes_fwd, _ = bench.flops_bytes("gla", 1, 64, 1, 16, 32, 2, 4)
    assert flops_fwd == 2 * 64 * 64 * 48 + 4 * 64 * 16 * 32  # hand-computed: 2*L*C*(dk+dv) + 4*L*dk*dv
    assert bytes_fwd == 64 * (2 * 16 + 32) * 2 + 64 * 16 * 4 + 64 * 32 * 2


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("gate", ["strong", "weak"])
def test_triton_gpu_long_sequence_stability(dtype, gate):
    torch.manual_seed(0)
    shape = (2, 4096, 3, 16)
    q, k = (torch.randn(shape, device="cuda") for _ in range(2))
    v = torch.randn(2, 4096, 3, 32, device="cuda")
    noise = torch.rand(shape, device="cuda")
    g = (-5.0 + 0.5 * noise) if gate == "strong" else -1e-4 * noise
    grad_out = torch.randn(2, 4096, 3, 32, device="cuda") * 0.01
    results = {}
    for backend, cast in (("triton", dtype), ("reference", torch.float64)):
        leaves = [t.to(cast).requires_grad_() for t in (q.to(dtype), k.to(dtype), v.to(dtype))]
        gates = [g.clone().requires_grad_(), g.clone().requires_grad_()]
        out = bigla(*leaves, *gates, backend=backend)
        out.backward(grad_out.to(out.dtype))
        results[backend] = [out.detach()] + [t.grad for t in leaves + gates]
    for a, b in zip(results["triton"], results["reference"]):
        assert torch.isfinite(a).all()
        assert _rel_rms(b.cpu(), a.cpu()) < 0.01


def test_triton_noncontiguous_views_and_shared_gate():
    # q/k/v as views of one fused projection, and the same gate tensor for both directions (grads add up)
    gen = torch.Generator().manual_seed(2)
    qkv = torch.randn(2, 30, 2, 64, generator=gen)
    gate = F.logsigmoid(torch.randn(2, 30, 2, 16, generator=gen))
    results = {}
    for backend in ("reference", "triton"):
        fused = qkv.clone().requires_grad_()
        g = gate.clone().requires_grad_()
        q, k, v = fused.split([16, 16, 32], -1)
        out = bigla(q, k, v, g, g, backend=backend)
        out.backward(torch.ones_like(out))
        results[backend] = (out.detach(), fused.grad, g.grad)
    for a, b in zip(results["triton"], results["reference"]):
        assert _rel_rms(b, a) < 1e-5
