"""na2d against oracles it did not produce: a per-query float64 brute force written from NATTEN 0.14's
``get_window_start`` rule (reference/backbones.md §3.2), full attention (SDPA), and hand-derived gradients."""
import pytest
import torch
import torch.nn.functional as F

from visionattn.ops import NA_BACKENDS, na2d


# ----------------------------------------------------------------------------------------------------------
# Brute force: the written rule, one query at a time, float64.

def _natten_window_start(index: int, length: int, kernel: int, dilation: int) -> int:
    """NATTEN 0.14 ``get_window_start``, transcribed from the piecewise rule in reference/backbones.md §3.2."""
    radius = kernel // 2
    if dilation <= 1:
        start = max(index - radius, 0)
        if index + radius >= length:
            start += length - index - radius - 1
        return start
    if index - radius * dilation < 0:
        return index % dilation
    if index + radius * dilation >= length:
        imodd = index % dilation
        a = (length // dilation) * dilation
        b = length - a
        if imodd < b:
            return length - b + imodd - 2 * radius * dilation
        return a + imodd - kernel * dilation
    return index - radius * dilation


def brute_force_na2d(q, k, v, kernel_size, dilation, rpb, scale):
    """``[B, H, W, heads, dim]`` float64 output, looping over queries."""
    q, k, v = q.double(), k.double(), v.double()
    rpb = rpb.double() if rpb is not None else None
    batch, height, width, heads, dim = q.shape
    kh, kw = kernel_size
    dy, dx = dilation
    out = torch.zeros_like(q)
    for i in range(height):
        sy = _natten_window_start(i, height, kh, dy)
        rows = [sy + a * dy for a in range(kh)]
        for j in range(width):
            sx = _natten_window_start(j, width, kw, dx)
            cols = [sx + b * dx for b in range(kw)]
            keys = torch.stack([k[:, r, c] for r in rows for c in cols], dim=1)  # [B, kk, heads, dim]
            vals = torch.stack([v[:, r, c] for r in rows for c in cols], dim=1)
            logits = torch.einsum("bhd,bnhd->bhn", q[:, i, j], keys) * scale
            if rpb is not None:
                bias = torch.stack([
                    rpb[:, (r - i) // dy + kh - 1, (c - j) // dx + kw - 1] for r in rows for c in cols
                ], dim=1)  # [heads, kk]
                logits = logits + bias
            attn = logits.softmax(-1)
            out[:, i, j] = torch.einsum("bhn,bnhd->bhd", attn, vals)
    return out


def _inputs(batch, height, width, heads, dim, kernel_size, with_rpb, dtype=torch.float32, seed=0, grad=False):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(batch, height, width, heads, dim, generator=g).to(dtype) for _ in range(3))
    kh, kw = kernel_size
    rpb = torch.randn(heads, 2 * kh - 1, 2 * kw - 1, generator=g).to(dtype) if with_rpb else None
    if grad:
        for t in (q, k, v, rpb):
            if t is not None:
                t.requires_grad_(True)
    return q, k, v, rpb


# ----------------------------------------------------------------------------------------------------------
# The brute force's window rule checked by hand on one small case, so the oracle itself is pinned.

def test_window_rule_hand_cases():
    # L=10, k=3, d=1: shift inward at both ends.
    assert [_natten_window_start(i, 10, 3, 1) for i in range(10)] == [0, 0, 1, 2, 3, 4, 5, 6, 7, 7]
    # L=7, k=3, d=2: groups {0,2,4,6} (4 long) and {1,3,5} (3 long, window = whole group).
    assert [_natten_window_start(i, 7, 3, 2) for i in range(7)] == [0, 1, 0, 1, 2, 1, 2]
    # L=10, k=3, d=3: groups {0,3,6,9} {1,4,7} {2,5,8}.
    assert [_natten_window_start(i, 10, 3, 3) for i in range(10)] == [0, 1, 2, 0, 1, 2, 3, 1, 2, 3]


# ----------------------------------------------------------------------------------------------------------
# Reference backend against the brute force.

REFERENCE_CASES = [
    # (B, H, W, heads, dim, kernel, dilation)
    (1, 7, 7, 1, 8, (3, 3), (1, 1)),
    (2, 9, 11, 2, 8, (3, 3), (1, 1)),
    (2, 9, 11, 2, 8, (5, 5), (1, 1)),
    (1, 9, 11, 2, 4, (3, 5), (2, 2)),
    (2, 10, 13, 1, 4, (3, 3), (3, 4)),
    (1, 13, 17, 2, 4, (3, 3), (4, 4)),
    (1, 11, 9, 1, 6, (5, 3), (2, 3)),
    (1, 12, 15, 3, 5, (7, 5), (1, 2)),
    (2, 12, 12, 2, 4, (3, 3), (2, 3)),   # divisible: groups folded into the batch
]


@pytest.mark.parametrize("with_rpb", [True, False], ids=["rpb", "norpb"])
@pytest.mark.parametrize("case", REFERENCE_CASES, ids=lambda c: "B{}-{}x{}-h{}-d{}-k{}-dil{}".format(*c))
def test_reference_matches_brute_force(case, with_rpb):
    batch, height, width, heads, dim, kernel, dilation = case
    q, k, v, rpb = _inputs(batch, height, width, heads, dim, kernel, with_rpb, dtype=torch.float64)
    scale = dim ** -0.5
    expected = brute_force_na2d(q, k, v, kernel, dilation, rpb, scale)
    got = na2d(q, k, v, kernel, dilation, rpb=rpb, backend="reference")
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, expected, atol=1e-12, rtol=1e-10)


def test_reference_row_tiling_is_exact():
    from visionattn.ops.neighborhood.reference import na2d_reference
    q, k, v, rpb = _inputs(2, 11, 9, 2, 8, (3, 3), True, dtype=torch.float64)
    whole = na2d_reference(q, k, v, (3, 3), (2, 1), rpb, 0.3)
    tiled = na2d_reference(q, k, v, (3, 3), (2, 1), rpb, 0.3, tile_elements=1, column_block=2)  # 1 row, 2 columns
    torch.testing.assert_close(tiled, whole, atol=1e-13, rtol=0)
    expected = brute_force_na2d(q, k, v, (3, 3), (2, 1), rpb, 0.3)
    torch.testing.assert_close(tiled, expected, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_reference_low_precision_dtype(dtype):
    q, k, v, rpb = _inputs(2, 9, 10, 2, 16, (5, 5), True, dtype=dtype)
    got = na2d(q, k, v, 5, 1, rpb=rpb, backend="reference")
    assert got.dtype == dtype
    expected = brute_force_na2d(q, k, v, (5, 5), (1, 1), rpb, 16 ** -0.5)
    atol = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 2e-2}[dtype]
    torch.testing.assert_close(got.double(), expected, atol=atol, rtol=0)


def test_whole_map_kernel_equals_full_attention():
    # With kernel = map size and dilation 1 every query sees every key: plain softmax attention.
    q, k, v, _ = _inputs(2, 5, 7, 2, 8, (5, 7), False, dtype=torch.float64)
    got = na2d(q, k, v, (5, 7), 1, backend="reference")
    flat = [t.reshape(2, 35, 2, 8).transpose(1, 2) for t in (q, k, v)]
    expected = F.scaled_dot_product_attention(*flat).transpose(1, 2).reshape(2, 5, 7, 2, 8)
    torch.testing.assert_close(got, expected, atol=1e-12, rtol=1e-10)


def test_reference_gradcheck():
    q, k, v, rpb = _inputs(1, 6, 5, 2, 2, (3, 3), True, dtype=torch.float64, grad=True)

    def fn(q, k, v, rpb):
        return na2d(q, k, v, 3, (2, 1), rpb=rpb, backend="reference")

    assert torch.autograd.gradcheck(fn, (q, k, v, rpb), eps=1e-6, atol=1e-6, fast_mode=True)


def test_reference_tiled_checkpointed_gradients_equal_untiled():
    from visionattn.ops.neighborhood.reference import na2d_reference
    q, k, v, rpb = _inputs(2, 7, 6, 2, 3, (3, 3), True, dtype=torch.float64, grad=True)
    grad_out = torch.randn(2, 7, 6, 2, 3, dtype=torch.float64)
    tiled_out = na2d_reference(q, k, v, (3, 3), (2, 2), rpb, 0.7, tile_elements=1, column_block=1)
    tiled = torch.autograd.grad(tiled_out, (q, k, v, rpb), grad_out)
    whole = torch.autograd.grad(na2d_reference(q, k, v, (3, 3), (2, 2), rpb, 0.7), (q, k, v, rpb), grad_out)
    for t, w in zip(tiled, whole):
        torch.testing.assert_close(t, w, atol=1e-13, rtol=0)


def test_rpb_gradient_is_sum_of_dlogits_over_offsets():
    # d(out)/d(rpb[h, a, b]) = sum over queries and batch of dlogit for the key at relative offset (a, b),
    # where dlogit = attn * (dattn - sum(attn * dattn)) is computed here by hand from the brute force.
    batch, height, width, heads, dim, kernel, dil = 2, 7, 8, 2, 4, (3, 3), (2, 1)
    q, k, v, rpb = _inputs(batch, height, width, heads, dim, kernel, True, dtype=torch.float64)
    rpb.requires_grad_(True)
    grad_out = torch.randn(batch, height, width, heads, dim, dtype=torch.float64)
    out = na2d(q, k, v, kernel, dil, rpb=rpb, backend="reference")
    (got,) = torch.autograd.grad(out, rpb, grad_out)

    scale = dim ** -0.5
    expected = torch.zeros_like(rpb)
    kh, kw = kernel
    for i in range(height):
        sy = _natten_window_start(i, height, kh, dil[0])
        for j in range(width):
            sx = _natten_window_start(j, width, kw, dil[1])
            pos = [(sy + a * dil[0], sx + b * dil[1]) for a in range(kh) for b in range(kw)]
            keys = torch.stack([k[:, r, c] for r, c in pos], 1)
            vals = torch.stack([v[:, r, c] for r, c in pos], 1)
            offsets = [((r - i) // dil[0] + kh - 1, (c - j) // dil[1] + kw - 1) for r, c in pos]
            bias = torch.stack([rpb.detach()[:, oy, ox] for oy, ox in offsets], 1)
            attn = (torch.einsum("bhd,bnhd->bhn", q[:, i, j], keys) * scale + bias).softmax(-1)
            dattn = torch.einsum("bhd,bnhd->bhn", grad_out[:, i, j], vals)
            dlogit = attn * (dattn - (attn * dattn).sum(-1, keepdim=True))
            for n, (oy, ox) in enumerate(offsets):
                expected[:, oy, ox] += dlogit[:, :, n].sum(0)
    torch.testing.assert_close(got, expected, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("size, kernel, dilation", [
    ((8, 9), (3, 5), (2, 1)),   # dilation groups fold evenly into the batch
    ((9, 10), (3, 3), (2, 3)),  # uneven groups: gathered per length class
], ids=["even", "uneven"])
def test_gradients_match_brute_force_autograd(size, kernel, dilation):
    q, k, v, rpb = _inputs(2, *size, 2, 4, kernel, True, dtype=torch.float64, grad=True)
    grad_out = torch.randn(2, *size, 2, 4, dtype=torch.float64)
    out = na2d(q, k, v, kernel, dilation, rpb=rpb, scale=0.5, backend="reference")
    got = torch.autograd.grad(out, (q, k, v, rpb), grad_out)
    expected = torch.autograd.grad(brute_force_na2d(q, k, v, kernel, dilation, rpb, 0.5), (q, k, v, rpb), grad_out)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, atol=1e-11, rtol=1e-9)


# ----------------------------------------------------------------------------------------------------------
# Checks and dispatch.

def test_backends_exposed():
    assert set(NA_BACKENDS) == {"triton", "reference"}


@pytest.mark.parametrize("bad, error", [
    (dict(q=torch.randn(1, 7, 7, 8)), ValueError),                       # wrong rank
    (dict(k=torch.randn(1, 7, 8, 2, 8)), ValueError),                    # shape mismatch
    (dict(v=torch.randn(1, 7, 7, 2, 8, dtype=torch.float64)), TypeError),  # dtype mismatch
    (dict(kernel_size=4), ValueError),                                   # even kernel
    (dict(kernel_size=(3, 2)), ValueError),
    (dict(kernel_size=3.0), TypeError),
    (dict(dilation=0), ValueError),
    (dict(dilation=(1, -1)), ValueError),
    (dict(dilation=3), ValueError),                                      # 7 < 3*3: map too small
    (dict(kernel_size=(3, 9)), ValueError),                              # 7 < 9
    (dict(rpb=torch.randn(2, 3, 3)), ValueError),                        # wrong rpb shape
    (dict(rpb=torch.randn(3, 5, 5)), ValueError),                        # wrong heads
    (dict(q=torch.randint(0, 3, (1, 7, 7, 2, 8))), TypeError),          # integer input
    (dict(backend="cuda-magic"), ValueError),
    (dict(dropout_p=1.5), ValueError),
])
def test_bad_input_raises(bad, error):
    args = dict(q=torch.randn(1, 7, 7, 2, 8), k=torch.randn(1, 7, 7, 2, 8), v=torch.randn(1, 7, 7, 2, 8),
                kernel_size=3, dilation=1, rpb=torch.randn(2, 5, 5), backend="reference")
    args.update(bad)
    with pytest.raises(error):
        na2d(**args)


def test_small_map_error_points_to_padding():
    x = torch.randn(1, 5, 9, 1, 4)
    with pytest.raises(ValueError, match="pad_small"):
        na2d(x, x, x, 3, 2, backend="reference")


def test_default_backend_on_cpu_is_reference(monkeypatch):
    monkeypatch.delenv("VISIONATTN_BACKEND", raising=False)
    from visionattn.ops import _dispatch
    from visionattn.ops.neighborhood import _BACKENDS
    assert _dispatch.choose_backend("na2d", None, torch.device("cpu"), _BACKENDS) == "reference"


def test_env_override_is_honoured(monkeypatch):
    monkeypatch.setenv("VISIONATTN_BACKEND", "not-a-backend")
    x = torch.randn(1, 7, 7, 1, 4)
    with pytest.raises(ValueError, match="VISIONATTN_BACKEND"):
        na2d(x, x, x, 3)


def test_benchmark_rows_on_cpu():
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_na2d.py"
    spec = importlib.util.spec_from_file_location("bench_na2d", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = bench.run_benchmark(device="cpu", dtype=torch.float32, batch=1, backends=("reference",), warmup=0,
                               reps=1, shapes=[(7, 8, 1, 16, 3, (1, 2, 3))])
    assert [r["dilation"] for r in rows] == [1, 2]  # dilation 3 needs 9 rows: skipped
    for r in rows:
        assert r["error"] is None and r["ms_fwd"] > 0 and r["ms_fwd_bwd"] > 0 and r["tflops_fwd"] > 0
        assert r["op"] == "na2d" and r["backend"] == "reference" and r["shape"] == "1x7x8x1x16"
    assert "reference" in bench.format_table(rows)
