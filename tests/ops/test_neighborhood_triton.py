"""Triton na2d (forward, dq/dk/dv/drpb) against the float64 PyTorch reference, which is itself pinned to a
brute force in test_neighborhood.py. On CPU the kernels run in the Triton interpreter (tiny shapes)."""
import pytest
import torch

from visionattn.ops import na2d
from visionattn.ops._dispatch import triton_supports

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
pytestmark = pytest.mark.skipif(not triton_supports(DEVICE)[0], reason="triton cannot run here")

# Relative tolerances (max |error| / max |reference| per tensor), set from what the kernels achieve against the
# float64 oracle on the same rounded inputs: fp32 ~5e-7 (interpreter; on GPU the fp32 dots are IEEE too), fp16
# ~5e-4 and bf16 ~5e-3 (one rounding of p / ds before the dot and of the output). A 3% error in any gradient
# fails every dtype. NATTEN's own tolerances (reference/kernels.md §1.5: fp32 dq atol 1e-2) cannot see that.
TOLERANCES = {
    torch.float32: 1e-5,
    torch.float16: 4e-3,
    torch.bfloat16: 2e-2,
}


def _assert_rel(got, expected, rel, name):
    err = ((got - expected).abs().max() / expected.abs().max().clamp_min(1e-30)).item()
    assert err <= rel, f"{name}: relative error {err:.2e} > {rel:.0e}"


def _case(batch, height, width, heads, dim, kernel, with_rpb, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(batch, height, width, heads, dim, generator=g) for _ in range(3))
    rpb = torch.randn(heads, 2 * kernel[0] - 1, 2 * kernel[1] - 1, generator=g) if with_rpb else None
    grad_out = torch.randn(batch, height, width, heads, dim, generator=g) * 0.05
    return q, k, v, rpb, grad_out


def _run(fn, q, k, v, rpb, grad_out, dtype, device):
    leaves = [t.to(device=device, dtype=dtype).requires_grad_(True) for t in (q, k, v)]
    rpb_leaf = rpb.to(device=device, dtype=torch.float32 if dtype != torch.float64 else dtype).requires_grad_(True) \
        if rpb is not None else None
    out = fn(*leaves, rpb_leaf)
    grads = torch.autograd.grad(out, [*leaves, *( [rpb_leaf] if rpb_leaf is not None else [])],
                                grad_out.to(device=device, dtype=dtype))
    return out, grads


def _compare(case, dtype, kernel, dilation, tiles):
    q, k, v, rpb, grad_out = case
    scale = q.shape[-1] ** -0.5
    from visionattn.ops.neighborhood.triton import na2d_triton

    def triton_fn(q_, k_, v_, rpb_):
        return na2d_triton(q_, k_, v_, kernel, dilation, rpb_, scale, **tiles)

    def reference_fn(q_, k_, v_, rpb_):
        return na2d(q_, k_, v_, kernel, dilation, rpb=rpb_, scale=scale, backend="reference")

    # The oracle sees the same (rounded) inputs, in float64.
    rounded = [t.to(dtype).double() for t in (q, k, v)]
    out_ref, grads_ref = _run(reference_fn, *rounded, rpb.double() if rpb is not None else None,
                              grad_out.to(dtype).double(), torch.float64, torch.device("cpu"))
    out_tri, grads_tri = _run(triton_fn, q, k, v, rpb, grad_out, dtype, DEVICE)
    assert out_tri.dtype == dtype and out_tri.shape == q.shape
    rel = TOLERANCES[dtype]
    _assert_rel(out_tri.cpu().double(), out_ref, rel, "out")
    for name, got, expected in zip(("dq", "dk", "dv"), grads_tri, grads_ref):
        assert got.dtype == dtype, name
        _assert_rel(got.cpu().double(), expected, rel, name)
    if rpb is not None:
        _assert_rel(grads_tri[3].cpu().double(), grads_ref[3], max(rel, 1e-5), "drpb")


# (B, H, W, heads, dim, kernel, dilation, rpb, tiles). Maps are not tile multiples; dims 16 and 24 (masked).
INTERPRETER_CASES = [
    (2, 9, 11, 2, 16, (3, 3), (1, 1), True, dict(block_qh=8, block_qw=8, block_kh=8, block_kw=8)),
    (1, 10, 11, 2, 24, (5, 3), (2, 1), True, dict(block_qh=4, block_qw=4, block_kh=4, block_kw=4)),
    (1, 10, 13, 1, 16, (3, 3), (2, 3), False, dict()),
    (1, 9, 11, 1, 16, (5, 5), (1, 2), True, dict(block_qh=4, block_qw=8, block_kh=8, block_kw=4)),
]


@pytest.mark.parametrize("case", INTERPRETER_CASES, ids=lambda c: "B{}-{}x{}-h{}-d{}-k{}-dil{}-rpb{}".format(*c[:8]))
def test_triton_fp32_matches_reference(case):
    batch, height, width, heads, dim, kernel, dilation, with_rpb, tiles = case
    inputs = _case(batch, height, width, heads, dim, kernel, with_rpb, torch.float32)
    _compare(inputs, torch.float32, kernel, dilation, tiles)


def test_triton_fp16_matches_reference():
    inputs = _case(2, 9, 10, 2, 16, (3, 3), True, torch.float16, seed=1)
    _compare(inputs, torch.float16, (3, 3), (2, 1), dict())


def test_triton_bf16_matches_reference():
    # The interpreter runs bf16 through an fp32 dot (its bf16 dot is wrong); this checks the bf16 loads, casts and
    # stores of forward and backward. Real bf16 MMAs are covered by the gpu tests.
    inputs = _case(1, 9, 9, 2, 16, (3, 3), True, torch.bfloat16, seed=2)
    _compare(inputs, torch.bfloat16, (3, 3), (2, 2), dict())


def test_triton_rpb_without_grad_and_public_entry():
    q, k, v, rpb, grad_out = _case(1, 7, 9, 2, 16, (3, 3), True, torch.float32, seed=3)
    leaves = [t.to(DEVICE).requires_grad_(True) for t in (q, k, v)]
    out = na2d(*leaves, 3, 1, rpb=rpb.to(DEVICE), backend="triton")
    grads = torch.autograd.grad(out, leaves, grad_out.to(DEVICE))
    out_ref = na2d(q, k, v, 3, 1, rpb=rpb, backend="reference")
    torch.testing.assert_close(out.cpu(), out_ref, atol=1e-4, rtol=0)
    assert all(torch.isfinite(g).all() for g in grads)


def test_triton_rejects_float64_and_dropout():
    x = torch.randn(1, 7, 7, 1, 16, dtype=torch.float64, device=DEVICE)
    with pytest.raises(TypeError, match="reference"):
        na2d(x, x, x, 3, backend="triton")
    y = x.float()
    with pytest.raises(ValueError, match="dropout"):
        na2d(y, y, y, 3, backend="triton", dropout_p=0.1)


# ---------------------------------------------------------------------------------------------------------
# GPU only: real compilation, bf16/fp16 at DiNAT shapes (batch reduced), head dims up to 128.

GPU_CASES = [
    # (B, H, W, heads, dim, kernel, dilation)
    (2, 56, 56, 2, 32, (7, 7), (1, 1)),
    (2, 56, 56, 2, 32, (7, 7), (8, 8)),
    (2, 28, 28, 4, 32, (7, 7), (4, 4)),
    (2, 14, 14, 8, 32, (7, 7), (2, 2)),
    (2, 7, 7, 16, 32, (7, 7), (1, 1)),
    (1, 23, 37, 2, 80, (5, 7), (3, 2)),
    (1, 20, 20, 2, 128, (11, 11), (1, 1)),
]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("case", GPU_CASES, ids=lambda c: "B{}-{}x{}-h{}-d{}-k{}-dil{}".format(*c))
def test_triton_gpu_matches_reference(case, dtype):
    batch, height, width, heads, dim, kernel, dilation = case
    inputs = _case(batch, height, width, heads, dim, kernel, True, dtype, seed=4)
    _compare(inputs, dtype, kernel, dilation, dict())
