"""The shared layers are well-behaved PyTorch programs, as timm's test suite needs of every model built on them:
TorchScript (``torch.jit.script``), FX (``torch.fx.symbolic_trace`` and timm's tracer / feature extractor), built on
the ``meta`` device and in float64 (timm's ``device`` / ``dtype`` convention), ``torch.compile(fullgraph=True)``.
Every transformed module is compared with the eager one, whose numerics are pinned by the other layer tests."""
import warnings

import pytest
import torch
import torch.fx

from visionattn.layers import AgentAttention2d, BiGatedLinearAttention2d, NeighborhoodAttention2d
from visionattn.layers.gla import Fp32RmsNorm

# (constructor, args, kwargs, input shape): small maps that are not kernel multiples, padding included
LAYERS = {
    "na": (NeighborhoodAttention2d, (16, 2, 3), dict(dilation=(2, 1)), (2, 5, 7, 16)),
    "na_padded": (NeighborhoodAttention2d, (16, 2, 5), dict(dilation=2, rpb=False), (1, 4, 11, 16)),
    "bigla": (BiGatedLinearAttention2d, (16, 2), dict(conv_act=True, out_act=True), (2, 3, 5, 16)),
    "rmsnorm": (Fp32RmsNorm, (8,), dict(eps=1e-5), (2, 3, 8)),
    "agent": (AgentAttention2d, (16, 2), dict(agent_num=4, bias_size=4, agent_shape=(3, 2)), (2, 5, 7, 16)),
    "agent_pvt_sr": (AgentAttention2d, (16, 2), dict(agent_num=4, bias_size=6, projections="q_kv", sr_ratio=2),
                     (1, 6, 5, 16)),
}


def _build(name, **extra):
    cls, args, kwargs, shape = LAYERS[name]
    torch.manual_seed(0)
    layer = cls(*args, **kwargs, **extra)
    with torch.no_grad():  # away from the init values, so a dropped term shows
        for p in layer.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return layer.eval(), torch.randn(shape, dtype=extra.get("dtype") or torch.float32)


@pytest.mark.parametrize("name", list(LAYERS))
def test_torchscript(name):
    layer, x = _build(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.script is deprecated in favour of torch.compile / export
        scripted = torch.jit.script(layer)
    torch.testing.assert_close(scripted(x), layer(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", list(LAYERS))
def test_fx_symbolic_trace(name):
    layer, x = _build(name)
    traced = torch.fx.symbolic_trace(layer)
    torch.testing.assert_close(traced(x), layer(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["na", "bigla"])
def test_timm_fx_feature_extractor(name):
    from timm.models._features_fx import create_feature_extractor, get_graph_node_names

    layer, x = _build(name)
    _, nodes = get_graph_node_names(layer)
    last = {"na": "proj", "bigla": "o_proj"}[name]
    assert last in nodes, nodes
    extractor = create_feature_extractor(layer, return_nodes={last: "out"})
    expected = {}
    getattr(layer, last).register_forward_hook(lambda m, i, o: expected.update(out=o))
    layer(x)
    torch.testing.assert_close(extractor(x)["out"], expected["out"], rtol=0, atol=0)


@pytest.mark.parametrize("name", list(LAYERS))
def test_builds_and_runs_on_meta(name):
    layer, x = _build(name, device="meta")
    tensors = list(layer.parameters()) + list(layer.buffers())
    assert tensors and all(t.device.type == "meta" for t in tensors)
    out = layer(x.to("meta"))
    assert out.device.type == "meta" and out.shape == layer(x.new_empty(x.shape, device="meta")).shape
    cpu = _build(name)[0]
    assert [(n, p.shape) for n, p in layer.named_parameters()] == [(n, p.shape) for n, p in cpu.named_parameters()]


@pytest.mark.parametrize("name", list(LAYERS))
def test_builds_in_float64(name):
    layer, x = _build(name, dtype=torch.float64)
    assert all(p.dtype == torch.float64 for p in layer.parameters())
    out = layer(x)
    assert out.dtype == torch.float64
    # the same weights in float32 give the same map to float32 precision (float64 runs end to end)
    single = _build(name)[0]
    single.load_state_dict({k: v.float() for k, v in layer.state_dict().items()})
    torch.testing.assert_close(single(x.float()).double(), out, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["na", "bigla", "agent"])
def test_compile_fullgraph_no_graph_breaks(name):
    import torch._dynamo
    torch._dynamo.reset()
    layer, x = _build(name)
    layer.train()
    explanation = torch._dynamo.explain(layer)(x)
    assert explanation.graph_count == 1 and explanation.graph_break_count == 0, explanation.break_reasons
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    x_c, x_e = x.clone().requires_grad_(), x.clone().requires_grad_()
    compiled(x_c).square().sum().backward()
    layer(x_e).square().sum().backward()
    torch.testing.assert_close(x_c.grad, x_e.grad)


def test_scripted_attention_dropout_raises_in_training():
    layer = NeighborhoodAttention2d(16, 2, 3, attn_drop=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(layer)
    with pytest.raises(Exception, match="attention dropout"):
        scripted(torch.randn(1, 5, 5, 16))
    scripted.eval()
    assert scripted(torch.randn(1, 5, 5, 16)).shape == (1, 5, 5, 16)
