"""AgentAttention2d against a float64 re-statement of agent attention written here from the paper and the official
code (reference/backbones.md §8.2, §8.6): adaptive-pool bins by hand, explicit per-head softmaxes, the biases
resized as the official downstream backbone does (each bias bilinearly over the map, then over the agent grid),
the 3x3 depthwise conv as an explicit sum of taps. The layer is only used to read its weights."""
import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from visionattn.layers import AgentAttention2d


def _adaptive_pool(x, out_h, out_w):
    """x [C, H, W] -> [C, out_h, out_w], PyTorch's adaptive bins [floor(i H / o), ceil((i + 1) H / o))."""
    channels, height, width = x.shape
    out = torch.zeros(channels, out_h, out_w, dtype=x.dtype)
    for i in range(out_h):
        h0, h1 = (i * height) // out_h, math.ceil((i + 1) * height / out_h)
        for j in range(out_w):
            w0, w1 = (j * width) // out_w, math.ceil((j + 1) * width / out_w)
            out[:, i, j] = x[:, h0:h1, w0:w1].mean(dim=(1, 2))
    return out


def _bilinear(x, size):
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _over_agents(bias, pool, agent_shape):
    """[heads, p*p, L] -> [heads, a1*a2, L], as the official downstream code (bilinear over the agent grid)."""
    heads, _, length = bias.shape
    grid = bias.reshape(heads, pool, pool, length).permute(0, 3, 1, 2)
    grid = _bilinear(grid, agent_shape)
    return grid.reshape(heads, length, -1).permute(0, 2, 1)


def _dwc(x, weight, bias):
    """Depthwise conv, zero padding k // 2, explicit taps: x [C, H, W], weight [C, 1, k, k]."""
    channels, height, width = x.shape
    k = weight.shape[-1]
    pad = k // 2
    padded = torch.zeros(channels, height + 2 * pad, width + 2 * pad, dtype=x.dtype)
    padded[:, pad:pad + height, pad:pad + width] = x
    out = bias[:, None, None].clone().expand(channels, height, width).clone()
    for dy in range(k):
        for dx in range(k):
            out += padded[:, dy:dy + height, dx:dx + width] * weight[:, 0, dy, dx][:, None, None]
    return out


def _softmax(x):
    x = x - x.max(dim=-1, keepdim=True).values
    return x.exp() / x.exp().sum(dim=-1, keepdim=True)


def oracle_agent(layer, x, height, width):
    """Float64 agent attention of ``x`` ``[B, P + h*w, C]`` with the weights of ``layer``."""
    w = {k: v.detach().double() for k, v in layer.state_dict().items()}
    x = x.double()
    batch, _, channels = x.shape
    heads, prefix, pool = layer.num_heads, layer.num_prefix_tokens, layer.pool_size
    head_dim = channels // heads
    scale = head_dim ** -0.5
    a1, a2 = layer.agent_shape
    out_all = []
    for b in range(batch):
        tokens = x[b]
        if "qkv.weight" in w:
            qkv = tokens @ w["qkv.weight"].T + (w["qkv.bias"] if "qkv.bias" in w else 0)
            q, k, v = qkv[:, :channels], qkv[:, channels:2 * channels], qkv[:, 2 * channels:]
            kv_h, kv_w = height, width
        else:
            q = tokens @ w["q.weight"].T + w["q.bias"]
            kv_tokens, kv_h, kv_w = tokens, height, width
            if "sr.weight" in w:
                sr = layer.sr_ratio
                grid = tokens.T.reshape(channels, height, width)
                kv_h, kv_w = height // sr, width // sr
                reduced = torch.zeros(channels, kv_h, kv_w, dtype=torch.float64)
                for i in range(kv_h):
                    for j in range(kv_w):
                        patch = grid[:, i * sr:(i + 1) * sr, j * sr:(j + 1) * sr]  # [C, sr, sr]
                        reduced[:, i, j] = torch.einsum("cij,ocij->o", patch, w["sr.weight"]) + w["sr.bias"]
                kv_tokens = reduced.reshape(channels, -1).T
                mean = kv_tokens.mean(-1, keepdim=True)
                var = ((kv_tokens - mean) ** 2).mean(-1, keepdim=True)
                kv_tokens = (kv_tokens - mean) / torch.sqrt(var + layer.norm.eps) * w["norm.weight"] + w["norm.bias"]
            kv = kv_tokens @ w["kv.weight"].T + w["kv.bias"]
            k, v = kv[:, :channels], kv[:, channels:]
        q_map = q[prefix:].T.reshape(channels, height, width)
        agents = _adaptive_pool(q_map, a1, a2).reshape(channels, -1).T  # [A', C]

        # biases, the downstream way: each over the map, then each over the agent grid
        bias1 = _over_agents(_bilinear(w["an_bias"], (kv_h, kv_w)).flatten(2), pool, (a1, a2)) + _over_agents(
            _bilinear((w["ah_bias"] + w["aw_bias"])[0], (kv_h, kv_w)).flatten(2), pool, (a1, a2))
        bias2 = _over_agents(_bilinear(w["na_bias"], (height, width)).flatten(2), pool, (a1, a2)) + _over_agents(
            _bilinear((w["ha_bias"] + w["wa_bias"])[0].permute(0, 3, 1, 2), (height, width)).flatten(2),
            pool, (a1, a2))
        bias2 = bias2.transpose(1, 2)  # [heads, n, A']
        if prefix:
            ac = _over_agents(w["ac_bias"][0], pool, (a1, a2))  # [heads, A', P]
            ca = _over_agents(w["ca_bias"][0].transpose(1, 2), pool, (a1, a2)).transpose(1, 2)  # [heads, P, A']
            bias1 = torch.cat([ac, bias1], dim=-1)
            bias2 = torch.cat([ca, bias2], dim=1)

        out = torch.zeros(q.shape[0], channels, dtype=torch.float64)
        for h in range(heads):
            cs = slice(h * head_dim, (h + 1) * head_dim)
            agent_v = _softmax((agents[:, cs] * scale) @ k[:, cs].T + bias1[h]) @ v[:, cs]
            out[:, cs] = _softmax((q[:, cs] * scale) @ agents[:, cs].T + bias2[h]) @ agent_v
        v_map = v[prefix:].T.reshape(channels, kv_h, kv_w)
        if (kv_h, kv_w) != (height, width):
            v_map = _bilinear(v_map[None], (height, width))[0]
        out[prefix:] += _dwc(v_map, w["dwc.weight"], w["dwc.bias"]).reshape(channels, -1).T
        if "proj.weight" in w:
            out = out @ w["proj.weight"].T + w["proj.bias"]
        out_all.append(out)
    return torch.stack(out_all)


def _randomise(layer, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(p + 0.3 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return layer.eval()


CASES = {
    # pretraining map and grid: every resize is the identity (the official classification code)
    "swin_pretrain": (dict(dim=16, num_heads=2, agent_num=4, bias_size=6), (6, 6)),
    # odd non-square map, another agent grid (the downstream adaptation)
    "swin_downstream": (dict(dim=16, num_heads=2, agent_num=9, bias_size=(6, 8), agent_shape=(4, 2)), (7, 5)),
    "pvt": (dict(dim=12, num_heads=3, agent_num=4, bias_size=5, projections="q_kv"), (5, 5)),
    "pvt_sr": (dict(dim=8, num_heads=2, agent_num=4, bias_size=(8, 6), projections="q_kv", sr_ratio=2), (7, 6)),
    "deit_cls": (dict(dim=12, num_heads=2, agent_num=9, bias_size=4, num_prefix_tokens=1), (4, 4)),
    "deit_cls_resized": (dict(dim=12, num_heads=2, agent_num=9, bias_size=4, num_prefix_tokens=1,
                              agent_shape=2), (5, 3)),
    "kernel5": (dict(dim=8, num_heads=1, agent_num=1, bias_size=3, kernel_size=5, qkv_bias=False), (4, 3)),
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_matches_float64_oracle(name, dtype):
    kwargs, (height, width) = CASES[name]
    torch.manual_seed(0)
    layer = _randomise(AgentAttention2d(**kwargs, dtype=dtype))
    prefix = layer.num_prefix_tokens
    x = torch.randn(2, prefix + height * width, kwargs["dim"], dtype=dtype)
    expected = oracle_agent(layer, x, height, width)
    out = layer.forward_tokens(x, height, width)
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.double(), expected, **tol)
    if not prefix:  # the map entry point is the same computation
        out_map = layer(x.reshape(2, height, width, -1))
        torch.testing.assert_close(out_map.reshape(out.shape), out, rtol=0, atol=0)


def test_attend_without_projections_is_the_core():
    """projections='none' (CSWin: qkv and proj on the block): attend(q, k, v) equals the projected layer's core."""
    torch.manual_seed(0)
    full = _randomise(AgentAttention2d(16, 2, agent_num=4, bias_size=5, dtype=torch.float64))
    bare = AgentAttention2d(16, 2, agent_num=4, bias_size=5, projections="none", dtype=torch.float64).eval()
    assert not hasattr(bare, "qkv") or bare.qkv is None
    missing = bare.load_state_dict(full.state_dict(), strict=False)
    assert missing.missing_keys == [] and set(missing.unexpected_keys) == {
        "qkv.weight", "qkv.bias", "proj.weight", "proj.bias"}
    x = torch.randn(2, 25, 16, dtype=torch.float64)
    q, k, v = (x @ full.qkv.weight.T + full.qkv.bias).chunk(3, dim=-1)
    out = full.proj(bare.attend(q, k, v, 5, 5, 5, 5))
    torch.testing.assert_close(out, full.forward_tokens(x, 5, 5), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="attend"):
        bare(x.reshape(2, 5, 5, 16))


def test_bias_cache_reused_invalidated_and_outside_state_dict():
    torch.manual_seed(0)
    layer = _randomise(AgentAttention2d(8, 2, agent_num=4, bias_size=4, bias_cache_size=2))
    x = torch.randn(1, 5, 6, 8)
    keys = set(layer.state_dict())
    with torch.no_grad():
        first = layer(x)
        biases = layer.position_biases(5, 6, 5, 6)
        assert layer.position_biases(5, 6, 5, 6)[0] is biases[0]  # cached, not recomputed
        assert len(layer._bias_cache) == 1
        layer(torch.randn(1, 4, 4, 8))
        layer(torch.randn(1, 3, 3, 8))
        assert len(layer._bias_cache) == 2  # bounded
        torch.testing.assert_close(layer(x), first, rtol=0, atol=0)
    assert set(layer.state_dict()) == keys
    # new values (in place, as an optimizer step or load_state_dict does) invalidate the entry
    state = {k: v + 0.1 if k.endswith("_bias") else v for k, v in layer.state_dict().items()}
    layer.load_state_dict(state)
    with torch.no_grad():
        again = layer(x)
    torch.testing.assert_close(again.double(), oracle_agent(layer, x.reshape(1, 30, 8), 5, 6).reshape(1, 5, 6, 8),
                               rtol=1e-4, atol=1e-5)
    assert not torch.allclose(again, first)
    # a new agent grid too
    layer.set_agent_shape((2, 3))
    with torch.no_grad():
        out = layer(x)
    torch.testing.assert_close(out.double(), oracle_agent(layer, x.reshape(1, 30, 8), 5, 6).reshape(1, 5, 6, 8),
                               rtol=1e-4, atol=1e-5)
    # with gradients needed nothing is cached and every parameter gets a gradient
    layer.clear_bias_cache()
    layer.train()
    layer(x).square().sum().backward()
    assert layer._bias_cache == {}
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in layer.parameters())
    disabled = AgentAttention2d(8, 2, agent_num=4, bias_size=4, bias_cache_size=0).eval()
    with torch.no_grad():
        disabled(x)
    assert disabled._bias_cache == {}


def test_batch_entries_are_independent():
    torch.manual_seed(0)
    layer = _randomise(AgentAttention2d(8, 2, agent_num=4, bias_size=4, num_prefix_tokens=1))
    x = torch.randn(3, 1 + 20, 8)
    together = layer.forward_tokens(x, 4, 5)
    for i in range(3):
        torch.testing.assert_close(layer.forward_tokens(x[i:i + 1], 4, 5), together[i:i + 1])


def test_device_dtype_kwargs():
    layer = AgentAttention2d(8, 2, agent_num=4, bias_size=4, projections="q_kv", sr_ratio=2, device="meta",
                             dtype=torch.float64)
    assert all(p.device.type == "meta" and p.dtype == torch.float64 for p in layer.parameters())
    out = layer(torch.empty(2, 6, 5, 8, device="meta", dtype=torch.float64))
    assert out.shape == (2, 6, 5, 8) and out.device.type == "meta"


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(dim=8, num_heads=3), ValueError, "multiple of num_heads"),
    (dict(dim=8, num_heads=2, agent_num=8), ValueError, "square"),
    (dict(dim=8, num_heads=2, agent_num=4.0), TypeError, "agent_num"),
    (dict(dim=8, num_heads=2, projections="qkvv"), ValueError, "projections"),
    (dict(dim=8, num_heads=2, sr_ratio=2), ValueError, "sr_ratio"),
    (dict(dim=8, num_heads=2, bias_size=(4, 4, 4)), TypeError, "bias_size"),
    (dict(dim=8, num_heads=2, bias_size=0), ValueError, "bias_size"),
    (dict(dim=8, num_heads=2, agent_shape="3"), TypeError, "agent_shape"),
    (dict(dim=8, num_heads=2, kernel_size=4), ValueError, "kernel_size"),
])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        AgentAttention2d(**kwargs)


def test_bad_input_shapes():
    layer = AgentAttention2d(8, 2, agent_num=4, bias_size=4)
    with pytest.raises(ValueError, match=r"\[B, H, W, C=8\]"):
        layer(torch.randn(2, 16, 8))
    with pytest.raises(ValueError, match="C=8"):
        layer(torch.randn(2, 4, 4, 6))
    with pytest.raises(ValueError, match="height \\* width"):
        layer.forward_tokens(torch.randn(2, 17, 8), 4, 4)


def test_torchscript_fx_and_compile_match_eager():
    torch.manual_seed(0)
    layer = _randomise(AgentAttention2d(8, 2, agent_num=4, bias_size=4, num_prefix_tokens=0))
    x = torch.randn(2, 5, 3, 8)
    expected = layer(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(layer)
    torch.testing.assert_close(scripted(x), expected, rtol=0, atol=0)
    traced = torch.fx.symbolic_trace(layer)
    torch.testing.assert_close(traced(x), expected, rtol=0, atol=0)
    pvt = _randomise(AgentAttention2d(8, 2, agent_num=4, bias_size=4, projections="q_kv", sr_ratio=2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.testing.assert_close(torch.jit.script(pvt)(x), pvt(x), rtol=0, atol=0)
    bare = AgentAttention2d(8, 2, agent_num=4, bias_size=4, projections="none")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(bare)  # CSWin's layer scripts too
