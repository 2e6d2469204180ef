"""The ``visionattn::*`` custom operators: ``torch.library.opcheck`` (schema, fake/meta kernels, autograd
registration, AOT dispatch), TorchScript, Dynamo ``fullgraph`` without graph breaks, ``torch.export`` and the
``meta`` device. Numerical correctness of the kernels is pinned in test_neighborhood*.py / test_gla.py; here the
compiled / scripted / exported results are compared with the eager ones."""
import warnings

import pytest
import torch
import torch.nn.functional as F

from visionattn.ops import bigla, gla, na2d
from visionattn.ops._dispatch import triton_supports

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
HAS_TRITON = triton_supports(DEVICE)[0]


def _na_args(dtype=torch.float32, grad=True, with_rpb=True, device="cpu", seed=0, batch=2):
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(batch, 7, 9, 2, 16, generator=gen, dtype=dtype).to(device).requires_grad_(grad)
               for _ in range(3))
    rpb = torch.randn(2, 5, 5, generator=gen, dtype=dtype).to(device).requires_grad_(grad) if with_rpb else None
    return q, k, v, rpb


def _gla_args(dtype=torch.float32, grad=True, device="cpu", seed=0, length=21, batch=2, heads=2):
    gen = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(batch, length, heads, 16, generator=gen, dtype=dtype) for _ in range(2))
    v = torch.randn(batch, length, heads, 16, generator=gen, dtype=dtype)
    gf, gb = (F.logsigmoid(torch.randn(batch, length, heads, 16, generator=gen, dtype=dtype) + 2) for _ in range(2))
    return [t.to(device).requires_grad_(grad) for t in (q, k, v, gf, gb)]


def _opcheck(op, args):
    result = torch.library.opcheck(op, args)
    assert all(v == "SUCCESS" for v in result.values()), result


@pytest.mark.parametrize("with_rpb", [True, False], ids=["rpb", "norpb"])
def test_opcheck_na2d(with_rpb):
    q, k, v, rpb = _na_args(with_rpb=with_rpb)
    _opcheck(torch.ops.visionattn.na2d.default, (q, k, v, rpb, [3, 3], [2, 1], 0.25, "reference"))
    rpb53 = torch.randn(2, 9, 5, requires_grad=True) if with_rpb else None
    _opcheck(torch.ops.visionattn.na2d_forward.default, (q, k, v, rpb53, [5, 3], [1, 3], 0.25, "reference"))
    with torch.no_grad():
        out, lse = torch.ops.visionattn.na2d_forward(q, k, v, rpb, [3, 3], [2, 1], 0.25, "reference")
    plain = [t.detach() if t is not None else None for t in (q, k, v, rpb)]
    _opcheck(torch.ops.visionattn.na2d_backward.default,
             (torch.randn_like(out), *plain, out, lse, [3, 3], [2, 1], 0.25, "reference", with_rpb))


def test_opcheck_gla_bigla():
    q, k, v, gf, gb = _gla_args()
    _opcheck(torch.ops.visionattn.gla.default, (q, k, v, gf, 0.25, False, "reference"))
    _opcheck(torch.ops.visionattn.gla.default, (q, k, v, gf, 0.25, True, "reference"))
    _opcheck(torch.ops.visionattn.bigla.default, (q, k, v, gf, gb, 0.25, "reference"))
    plain = [t.detach() for t in (q, k, v, gf, gb)]
    grad_out = torch.randn_like(plain[2])
    _opcheck(torch.ops.visionattn.gla_backward.default, (grad_out, *plain[:4], 0.25, True, "reference"))
    _opcheck(torch.ops.visionattn.bigla_backward.default, (grad_out, *plain, 0.25, "reference"))


@pytest.mark.skipif(not HAS_TRITON, reason="triton cannot run here")
def test_opcheck_triton():
    # one program per kernel launch where possible: the interpreter runs every program in Python
    q, k, v, rpb = _na_args(device=DEVICE, batch=1)
    _opcheck(torch.ops.visionattn.na2d.default, (q, k, v, rpb, [3, 3], [2, 1], 0.25, "triton"))
    q, k, v, gf, gb = _gla_args(device=DEVICE, batch=1, heads=1)
    _opcheck(torch.ops.visionattn.bigla.default, (q, k, v, gf, gb, 0.25, "triton"))
    _opcheck(torch.ops.visionattn.gla.default, (q, k, v, gf, 0.25, True, "triton"))


def test_opcheck_mixed_dtypes():
    # fp16 q/k/v with fp32 gates (the layers' autocast case) and an fp32 rpb with fp16 q/k/v
    q, k, v, gf, gb = _gla_args()
    half = [t.detach().half().requires_grad_() for t in (q, k, v)]
    _opcheck(torch.ops.visionattn.bigla.default, (*half, gf, gb, 0.25, "reference"))
    q, k, v, rpb = _na_args()
    half = [t.detach().half().requires_grad_() for t in (q, k, v)]
    _opcheck(torch.ops.visionattn.na2d.default, (*half, rpb, [3, 3], [1, 1], 0.25, "reference"))


def test_operators_reject_unresolved_backend():
    q, k, v, rpb = _na_args(grad=False)
    with pytest.raises(ValueError, match="already resolved"):
        torch.ops.visionattn.na2d(q, k, v, rpb, [3, 3], [1, 1], 0.25, "auto")
    q, k, v, gf, gb = _gla_args(grad=False)
    with pytest.raises(ValueError, match="already resolved"):
        torch.ops.visionattn.bigla(q, k, v, gf, gb, 0.25, "cuda")


def test_public_functions_call_the_operators_and_match_them():
    q, k, v, rpb = _na_args(grad=False)
    torch.testing.assert_close(na2d(q, k, v, 3, (2, 1), rpb=rpb, scale=0.3),
                               torch.ops.visionattn.na2d(q, k, v, rpb, [3, 3], [2, 1], 0.3, "reference"))
    q, k, v, gf, gb = _gla_args(grad=False)
    torch.testing.assert_close(bigla(q, k, v, gf, gb), torch.ops.visionattn.bigla(q, k, v, gf, gb, 0.25, "reference"))
    torch.testing.assert_close(gla(q, k, v, gf, reverse=True),
                               torch.ops.visionattn.gla(q, k, v, gf, 0.25, True, "reference"))


def test_torchscript_calls_the_operators():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.script is deprecated in favour of torch.compile / export

        @torch.jit.script
        def scripted(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rpb: torch.Tensor, g: torch.Tensor):
            a = torch.ops.visionattn.na2d(q, k, v, rpb, [3, 3], [2, 1], 0.25, "reference")
            flat = [t.reshape(2, 63, 2, 16) for t in (q, k, v)]
            b = torch.ops.visionattn.bigla(flat[0], flat[1], flat[2], g, g, 0.25, "reference")
            c = torch.ops.visionattn.gla(flat[0], flat[1], flat[2], g, 0.25, False, "reference")
            return a, b, c

    q, k, v, rpb = _na_args(grad=False)
    g = F.logsigmoid(torch.randn(2, 63, 2, 16))
    a, b, c = scripted(q, k, v, rpb, g)
    flat = [t.reshape(2, 63, 2, 16) for t in (q, k, v)]
    torch.testing.assert_close(a, na2d(q, k, v, 3, (2, 1), rpb=rpb, scale=0.25))
    torch.testing.assert_close(b, bigla(*flat, g, g))
    torch.testing.assert_close(c, gla(*flat, g))


def _na_fn(q, k, v, rpb):
    return na2d(q, k, v, 3, (2, 1), rpb=rpb).sin()


def _bigla_fn(q, k, v, gf, gb):
    return bigla(q, k, v, gf, gb).cos() + gla(q, k, v, gf, reverse=True)


@pytest.mark.parametrize("fn, make", [(_na_fn, lambda: _na_args()), (_bigla_fn, lambda: _gla_args())],
                         ids=["na2d", "gla"])
def test_dynamo_fullgraph_without_graph_breaks(fn, make):
    import torch._dynamo
    torch._dynamo.reset()
    args = make()
    explanation = torch._dynamo.explain(fn)(*args)
    assert explanation.graph_count == 1 and explanation.graph_break_count == 0, explanation.break_reasons
    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    out = compiled(*args)
    grads = torch.autograd.grad(out.sum(), [a for a in args if a is not None])
    plain = [a.detach().clone().requires_grad_() if a is not None else None for a in args]
    ref = fn(*plain)
    ref_grads = torch.autograd.grad(ref.sum(), [a for a in plain if a is not None])
    torch.testing.assert_close(out, ref)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r)


def test_export_keeps_the_operators():
    class Model(torch.nn.Module):
        def forward(self, q, k, v, rpb, g):
            flat = [t.reshape(2, 63, 2, 16) for t in (q, k, v)]
            return na2d(q, k, v, 3, (2, 1), rpb=rpb).sum() + bigla(*flat, g, g).sum()

    q, k, v, rpb = _na_args(grad=False)
    g = F.logsigmoid(torch.randn(2, 63, 2, 16))
    exported = torch.export.export(Model(), (q, k, v, rpb, g))
    targets = {str(n.target) for n in exported.graph.nodes}
    assert {"visionattn.na2d.default", "visionattn.bigla.default"} <= targets, targets
    torch.testing.assert_close(exported.module()(q, k, v, rpb, g), Model()(q, k, v, rpb, g))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_meta_device(dtype):
    q, k, v, rpb = (t.to("meta", dtype) if t is not None else None for t in _na_args(grad=False))
    out = na2d(q, k, v, 3, 2, rpb=rpb)
    assert out.device.type == "meta" and out.shape == q.shape and out.dtype == dtype
    q, k, v, gf, gb = (t.to("meta", dtype) for t in _gla_args(grad=False))
    out = bigla(q, k, v, gf, gb)
    assert out.device.type == "meta" and out.shape == v.shape and out.dtype == dtype
    leaves = [t.requires_grad_() for t in (q, k, v, gf)]
    out = gla(*leaves, reverse=True)
    grads = torch.autograd.grad(out.sum(), leaves)
    assert all(g.device.type == "meta" and g.shape == t.shape for g, t in zip(grads, leaves))
