"""BiGatedLinearAttention2d (ViG's GLA2D) against a float64 computation written here from the paper / official
math (reference/backbones.md §6.2, §6.6): explicit 3x3 depthwise sums, explicit per-token forward and backward
scans, explicit RMSNorm, per-head gated mix. The layer's own modules are only used to read the weights."""
import importlib.util

import pytest
import torch

import visionattn
from visionattn.layers import BiGatedLinearAttention2d


def _rms(x, weight, eps):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * weight


def oracle_gla2d(layer, x):
    """Float64 GLA2D on ``x`` ``[B, H, W, C]`` with the weights of ``layer``, token by token."""
    w = {k: v.detach().double() for k, v in layer.state_dict().items()}
    x = x.double()
    batch, height, width, channels = x.shape
    heads, dk, dv = layer.num_heads, layer.head_k_dim, layer.head_v_dim
    silu = lambda t: t / (1 + torch.exp(-t))  # noqa: E731

    # depthwise 3x3, zero padding 1, no bias: explicit sum over the 9 taps
    padded = torch.zeros(batch, height + 2, width + 2, channels, dtype=torch.float64)
    padded[:, 1:-1, 1:-1] = x
    kernel = w["in_proj.0.weight"][:, 0]  # [C, 3, 3]
    local = torch.zeros_like(x)
    for dy in range(3):
        for dx in range(3):
            local += padded[:, dy:dy + height, dx:dx + width] * kernel[:, dy, dx]
    if isinstance(layer.in_proj[1], torch.nn.SiLU):
        local = silu(local)
    tokens = local.reshape(batch, height * width, channels)  # raster order: row by row

    qkv = tokens @ w["qkv_proj.weight"].T
    key_dim = heads * dk
    q, k, v = qkv[..., :key_dim], qkv[..., key_dim:2 * key_dim], qkv[..., 2 * key_dim:]
    gate_logits = (tokens @ w["gk_proj.0.weight"].T) @ w["gk_proj.1.weight"].T + w["gk_proj.1.bias"]
    log_gates = -torch.log1p(torch.exp(-gate_logits)) / 16.0  # logsigmoid / 16
    g_fwd, g_bwd = log_gates[..., :key_dim], log_gates[..., key_dim:]

    length = height * width
    out = torch.zeros(batch, length, heads, dv, dtype=torch.float64)
    scale = dk ** -0.5
    for b in range(batch):
        for h in range(heads):
            ks, vs = slice(h * dk, (h + 1) * dk), slice(h * dv, (h + 1) * dv)
            state = torch.zeros(dk, dv, dtype=torch.float64)
            fwd = []
            for t in range(length):  # forward scan
                state = torch.exp(g_fwd[b, t, ks])[:, None] * state + torch.outer(k[b, t, ks], v[b, t, vs])
                fwd.append(scale * q[b, t, ks] @ state)
            state = torch.zeros(dk, dv, dtype=torch.float64)
            bwd = [None] * length
            for t in range(length - 1, -1, -1):  # backward scan, gates indexed by original position
                state = torch.exp(g_bwd[b, t, ks])[:, None] * state + torch.outer(k[b, t, ks], v[b, t, vs])
                bwd[t] = scale * q[b, t, ks] @ state
            for t in range(length):
                out[b, t, h] = (fwd[t] + bwd[t]) / 2

    mix = torch.sigmoid(tokens @ w["g_proj.weight"].T + w["g_proj.bias"]).reshape(batch, length, heads, dv)
    normed_o = _rms(out, w["g_norm.weight"], layer.g_norm.eps)
    normed_local = _rms(tokens.reshape(batch, length, heads, dv), w["l_norm.weight"], layer.l_norm.eps)
    mixed = (normed_o * mix + normed_local * (1 - mix)).reshape(batch, length, heads * dv)
    if isinstance(layer.out_act, torch.nn.SiLU):
        mixed = silu(mixed)
    return (mixed @ w["o_proj.weight"].T).reshape(batch, height, width, channels)


def _randomise(layer, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(p + 0.3 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return layer


@pytest.mark.parametrize("batch,height,width,dim,heads,conv_act,out_act", [
    (1, 3, 5, 8, 2, False, False),
    (2, 4, 3, 12, 3, True, True),
    (2, 1, 7, 8, 1, False, True),
])
def test_layer_matches_float64_oracle(batch, height, width, dim, heads, conv_act, out_act):
    torch.manual_seed(0)
    layer = _randomise(BiGatedLinearAttention2d(dim, heads, conv_act=conv_act, out_act=out_act,
                                                backend="reference")).double()
    x = torch.randn(batch, height, width, dim, dtype=torch.float64)
    got = layer(x)
    want = oracle_gla2d(layer, x)
    assert got.shape == (batch, height, width, dim)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_layer_float32_close_to_oracle_and_out_norm_eps():
    torch.manual_seed(1)
    layer = _randomise(BiGatedLinearAttention2d(16, 2, out_norm_eps=4e-6, backend="reference"), seed=1)
    assert layer.g_norm.eps == 4e-6 and layer.l_norm.eps == 1e-6
    x = torch.randn(2, 5, 6, 16)
    torch.testing.assert_close(layer(x).double(), oracle_gla2d(layer, x), rtol=1e-4, atol=1e-5)


def test_backward_directions_are_not_swapped():
    # a gate layout error (halves swapped, or the backward gate flipped) changes the output: make the two
    # halves very different and check against the oracle at a length where it matters
    torch.manual_seed(2)
    layer = BiGatedLinearAttention2d(8, 2, backend="reference").double()
    with torch.no_grad():
        layer.gk_proj[1].bias[:4] = 6.0    # forward: almost no decay
        layer.gk_proj[1].bias[4:] = -40.0  # backward: strong decay
        layer.qkv_proj.weight.normal_()
    x = torch.randn(1, 3, 4, 8, dtype=torch.float64)
    torch.testing.assert_close(layer(x), oracle_gla2d(layer, x), rtol=1e-10, atol=1e-10)
    swapped = BiGatedLinearAttention2d(8, 2, backend="reference").double()
    swapped.load_state_dict(layer.state_dict())
    with torch.no_grad():
        swapped.gk_proj[1].bias.copy_(layer.gk_proj[1].bias.roll(4))
    assert (swapped(x) - layer(x)).abs().max() > 1e-3


def test_layer_calls_ops_bigla(monkeypatch):
    calls = []
    real = visionattn.ops.bigla

    def spy(*args, **kwargs):
        calls.append((args[0].shape, kwargs.get("backend")))
        return real(*args, **kwargs)

    monkeypatch.setattr(visionattn.ops, "bigla", spy)
    layer = BiGatedLinearAttention2d(8, 2, backend="reference")
    layer(torch.randn(2, 3, 5, 8))
    assert calls == [(torch.Size([2, 15, 2, 2]), "reference")]


def test_backward_reaches_every_parameter():
    torch.manual_seed(3)
    layer = _randomise(BiGatedLinearAttention2d(8, 2, conv_act=True, out_act=True, backend="reference"), seed=3)
    x = torch.randn(2, 3, 4, 8, requires_grad=True)
    layer(x).square().sum().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    assert x.grad.abs().sum() > 0


def test_gradients_match_float64_oracle():
    torch.manual_seed(4)
    layer = _randomise(BiGatedLinearAttention2d(8, 2, backend="reference"), seed=4).double()
    x = torch.randn(1, 3, 3, 8, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(1, 3, 3, 8, dtype=torch.float64)
    (layer(x) * weight).sum().backward()
    got = x.grad.clone()
    x.grad = None
    (oracle_gla2d(layer, x) * weight).sum().backward()
    torch.testing.assert_close(got, x.grad, rtol=1e-9, atol=1e-10)


def test_argument_errors():
    with pytest.raises(ValueError, match="expand_v"):
        BiGatedLinearAttention2d(8, 2, expand_v=2.0)
    with pytest.raises(ValueError, match="num_heads"):
        BiGatedLinearAttention2d(12, 5)
    with pytest.raises(ValueError, match="channels last"):
        BiGatedLinearAttention2d(8, 2)(torch.randn(1, 8, 3, 3))


def _triton_available():
    return importlib.util.find_spec("visionattn.ops.gla.triton") is not None


@pytest.mark.skipif(not _triton_available(), reason="the triton GLA backend (visionattn/ops/gla/triton.py) is absent")
def test_triton_matches_reference_tiny():
    """Triton (interpreter on CPU, compiled on CUDA) against the reference backend, forward and gradients."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(5)
    ref = _randomise(BiGatedLinearAttention2d(32, 2, backend="reference"), seed=5).to(device)
    tri = BiGatedLinearAttention2d(32, 2, backend="triton").to(device)
    tri.load_state_dict(ref.state_dict())
    x = torch.randn(1, 5, 7, 32, device=device)
    x_ref, x_tri = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_ref, y_tri = ref(x_ref), tri(x_tri)
    torch.testing.assert_close(y_tri, y_ref, rtol=2e-3, atol=2e-4)
    weight = torch.randn_like(y_ref)
    (y_ref * weight).sum().backward()
    (y_tri * weight).sum().backward()
    torch.testing.assert_close(x_tri.grad, x_ref.grad, rtol=2e-3, atol=2e-4)
    for (name, p_ref), p_tri in zip(ref.named_parameters(), tri.parameters()):
        torch.testing.assert_close(p_tri.grad, p_ref.grad, rtol=2e-3, atol=5e-4, msg=name)


@pytest.mark.parametrize("out_act", [False, True])
def test_memory_lean_autograd_functions_gradcheck(out_act):
    """The hand-written backwards (RMSNorm, log-gates, output mix, SwiGLU + down projection) in float64, and the
    float32 RMSNorm against F.rms_norm."""
    from visionattn.layers.gla import fp32_rms_norm, gla2d_log_gates, gla2d_mix, swiglu_linear

    torch.manual_seed(0)

    def rand(*shape, scale=1.0):
        return (scale * torch.randn(*shape, dtype=torch.float64)).requires_grad_()

    assert torch.autograd.gradcheck(lambda x, w: fp32_rms_norm(x, w, 1e-6), (rand(2, 5, 8), rand(8)))
    assert torch.autograd.gradcheck(lambda z: gla2d_log_gates(z, 16.0), (rand(3, 10, scale=5.0),))
    assert torch.autograd.gradcheck(swiglu_linear, (rand(2, 3, 10), rand(4, 5)))
    assert torch.autograd.gradcheck(
        lambda o, loc, m, gw, lw: gla2d_mix(o, loc, m, gw, lw, 1e-6, 4e-6, out_act),
        (rand(2, 5, 3, 8), rand(2, 5, 3, 8), rand(2, 5, 3, 8), rand(8), rand(8)),
    )
    x, w = torch.randn(4, 7, 16, requires_grad=True), torch.randn(16, requires_grad=True)
    ref = torch.nn.functional.rms_norm(x, [16], w, 1e-6)
    out = fp32_rms_norm(x, w, 1e-6)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    grad = torch.randn_like(ref)
    for a, b in zip(torch.autograd.grad(out, (x, w), grad), torch.autograd.grad(ref, (x, w), grad)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
