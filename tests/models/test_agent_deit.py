"""Agent-DeiT: official checkpoint layout, parameter counts, any input size, timm's ViT contract.

Oracles: key names/shapes and parameter counts dumped from the official LeapLabTHU code
(tests/fixtures/official_keys/agent_deit_*.json), a float64 re-statement of the official DeiT agent attention written
here (class token with its own biases, agents pooled from the patch queries, DWC on the patch tokens), and
per-image / per-size equalities. The full official models were compared on CPU outside the project (random weights
in the official layout -> checkpoint_filter_fn -> every block output and the logits at 224: max |diff| <= 6e-6).
"""
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import timm

import visionattn.models  # noqa: F401  (registers the models)
from visionattn.models.agent_deit import AgentVisionTransformer, checkpoint_filter_fn

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "official_keys"
FIXTURE_MODELS = {
    "agent_deit_tiny": "agent_deit_tiny", "agent_deit_small": "agent_deit_small",
    "agent_deit_small_448": "agent_deit_small.in1k_448", "agent_deit_base": "agent_deit_base",
}
# official code (backbones.md §8.6); the README rounds to 6.0 / 22.7 / 87.2
OFFICIAL_PARAMS = {"agent_deit_tiny": 6015640, "agent_deit_small": 22647112, "agent_deit_base": 87204904}

# small models on the same code paths: agent blocks with a class token, a plain block, 16 agents on a 4x4 grid
SMALL = dict(img_size=64, patch_size=16, embed_dim=32, depth=3, num_heads=2, attn_type="AAB", agent_num=4)


def _small(**kwargs):
    torch.manual_seed(0)
    model = timm.create_model("agent_deit_tiny", **dict(SMALL, **kwargs))
    with torch.no_grad():  # non-trivial biases, so a mis-wired bias cannot pass
        for name, p in model.named_parameters():
            if name.endswith("_bias"):
                p.normal_(0, 0.5)
    return model


def _randn(*shape, seed=1):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# -- official checkpoints ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("fixture", sorted(FIXTURE_MODELS))
def test_official_keys_convert_and_load(fixture):
    """Official names/shapes (wrapped under ``model`` as released) -> filter -> strict load, on meta tensors."""
    data = json.loads((FIXTURES / f"{fixture}.json").read_text())
    official = {k: torch.empty(shape, device="meta") for k, shape in data["keys"].items()}
    model = timm.create_model(FIXTURE_MODELS[fixture], device="meta")
    converted = checkpoint_filter_fn({"model": official, "optimizer": {}, "epoch": 300}, model)
    model.load_state_dict(converted, strict=True, assign=True)
    assert sum(p.numel() for p in model.parameters()) == data["num_params"]


@pytest.mark.parametrize("name", sorted(OFFICIAL_PARAMS))
def test_parameter_counts(name):
    model = timm.create_model(name, device="meta")
    assert sum(p.numel() for p in model.parameters()) == OFFICIAL_PARAMS[name]


def test_official_settings():
    base = timm.create_model("agent_deit_base", device="meta")
    assert base.attn_type == "AAAA" + "B" * 8 and set(base.agent_num[:4]) == {81}
    assert tuple(base.blocks[0].attn.an_bias.shape) == (12, 81, 7, 7)
    small = timm.create_model("agent_deit_small", device="meta")
    assert small.attn_type == "A" * 12 and set(small.agent_num) == {49}
    assert tuple(small.blocks[0].attn.ah_bias.shape) == (1, 6, 49, 14, 1)
    big = timm.create_model("agent_deit_small.in1k_448", device="meta")
    assert tuple(big.blocks[0].attn.ah_bias.shape) == (1, 6, 49, 28, 1) and big.pos_embed.shape[1] == 785


def test_224_checkpoint_into_448_model_resizes_position_embedding_and_biases(tmp_path):
    small = _small()
    path = tmp_path / "official.pth"
    torch.save({"model": small.state_dict(), "epoch": 1}, path)
    big = timm.create_model("agent_deit_tiny", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)),
                            **dict(SMALL, img_size=128))
    assert big.pos_embed.shape[1] == 1 + 64 and tuple(big.blocks[0].attn.ah_bias.shape[-2:]) == (8, 1)
    ref = F.interpolate(small.blocks[0].attn.ha_bias.detach().squeeze(3).permute(0, 1, 3, 2).reshape(1, -1, 4),
                        size=8, mode="linear", align_corners=False)
    torch.testing.assert_close(big.blocks[0].attn.ha_bias.detach().squeeze(3).permute(0, 1, 3, 2).reshape(1, -1, 8),
                               ref)
    big(_randn(1, 3, 128, 128))


def test_filter_rejects_foreign_checkpoints():
    model = _small()
    with pytest.raises(ValueError, match="not an Agent-DeiT checkpoint"):
        checkpoint_filter_fn({"stem.conv.weight": torch.zeros(1)}, model)
    sd = model.state_dict()
    sd["blocks.0.attn.an_bias"] = torch.zeros(2, 9, 7, 7)
    with pytest.raises(ValueError, match="an_bias"):
        checkpoint_filter_fn(sd, model)


# -- the math ----------------------------------------------------------------------------------------------------

def _official_deit_attention(attn, x, h, w):
    """The official DeiT agent attention (agent_deit.py AgentAttention.forward) re-stated in float64."""
    x = x.double()
    b, n, c = x.shape
    heads, d = attn.num_heads, c // attn.num_heads
    p = int(attn.agent_num ** 0.5)
    q, k, v = (x @ attn.qkv.weight.double().t() + attn.qkv.bias.double()).split(c, dim=-1)
    agents = F.adaptive_avg_pool2d(q[:, 1:].reshape(b, h, w, c).permute(0, 3, 1, 2), (p, p))
    agents = agents.reshape(b, c, -1).permute(0, 2, 1).reshape(b, p * p, heads, d).transpose(1, 2)
    q, k, v = (t.reshape(b, n, heads, d).transpose(1, 2) for t in (q, k, v))
    s = d ** -0.5
    bias1 = F.interpolate(attn.an_bias.double(), size=(h, w), mode="bilinear").reshape(1, heads, p * p, -1)
    bias1 = bias1 + (attn.ah_bias.double() + attn.aw_bias.double()).reshape(1, heads, p * p, -1)
    bias1 = torch.cat([attn.ac_bias.double(), bias1], dim=-1)
    agent_v = torch.softmax(agents * s @ k.transpose(-2, -1) + bias1, dim=-1) @ v
    bias2 = F.interpolate(attn.na_bias.double(), size=(h, w), mode="bilinear").reshape(1, heads, p * p, -1)
    bias2 = bias2.transpose(-2, -1) + (attn.ha_bias.double() + attn.wa_bias.double()).reshape(1, heads, -1, p * p)
    bias2 = torch.cat([attn.ca_bias.double(), bias2], dim=-2)
    out = (torch.softmax(q * s @ agents.transpose(-2, -1) + bias2, dim=-1) @ agent_v).transpose(1, 2).reshape(b, n, c)
    v_map = v[:, :, 1:].transpose(1, 2).reshape(b, h, w, c).permute(0, 3, 1, 2)
    local = F.conv2d(v_map, attn.dwc.weight.double(), attn.dwc.bias.double(), padding=1, groups=c)
    out = torch.cat([out[:, :1], out[:, 1:] + local.flatten(2).transpose(1, 2)], dim=1)
    return out @ attn.proj.weight.double().t() + attn.proj.bias.double()


def test_agent_block_attention_matches_official_formula():
    model = _small().eval()
    attn = model.blocks[0].attn
    x = _randn(2, 1 + 16, 32)
    with torch.no_grad():
        ours = attn.forward_tokens(x, 4, 4)
    torch.testing.assert_close(ours.double(), _official_deit_attention(attn, x, 4, 4), atol=1e-5, rtol=1e-5)


def test_blocks_receive_the_patch_grid():
    model = _small().eval()
    with torch.no_grad():
        model(_randn(1, 3, 97, 131))
    assert all(block.grid_size == (7, 9) for block in model.blocks)  # ceil(97 / 16), ceil(131 / 16)


# -- any input size ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [(64, 64), (224, 224), (97, 131), (512, 512)])
@pytest.mark.parametrize("agent_shape", [None, (3, 5)])
def test_forward_any_size_and_agent_grid(size, agent_shape):
    model = _small(agent_shape=agent_shape).eval()
    with torch.no_grad():
        out = model(_randn(1, 3, *size))
        inter = model.forward_intermediates(_randn(1, 3, *size), intermediates_only=True)
    assert out.shape == (1, 1000) and torch.isfinite(out).all()
    grid = (-(-size[0] // 16), -(-size[1] // 16))
    assert len(inter) == 3 and all(t.shape == (1, 32, *grid) for t in inter)


def test_large_non_square_input():
    model = _small(depth=1, attn_type="A").eval()
    model.set_agent_shape((9, 9))
    with torch.no_grad():
        feats = model.forward_intermediates(_randn(1, 3, 800, 1216), intermediates_only=True)
    assert feats[0].shape == (1, 32, 50, 76) and torch.isfinite(feats[0]).all()


def test_features_only():
    torch.manual_seed(0)
    model = timm.create_model("agent_deit_tiny", features_only=True, out_indices=(0, 2), **SMALL).eval()
    with torch.no_grad():
        feats = model(_randn(2, 3, 97, 131))
    assert [tuple(f.shape) for f in feats] == [(2, 32, 7, 9)] * 2
    assert model.feature_info.channels() == [32, 32] and model.feature_info.reduction() == [16, 16]


def test_backward_reaches_every_parameter():
    model = _small().train()
    model(_randn(2, 3, 97, 131)).square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing


def test_batch_equals_each_image_alone():
    model = _small().eval()
    x = _randn(2, 3, 97, 131)
    with torch.no_grad():
        both = model(x)
        alone = torch.cat([model(x[:1]), model(x[1:])])
    torch.testing.assert_close(both, alone, atol=1e-5, rtol=1e-5)


def test_grad_checkpointing_matches():
    model = _small().train()
    x = _randn(2, 3, 80, 96)
    model(x).sum().backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    model.set_grad_checkpointing(True)
    model(x).sum().backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, expected[n], atol=1e-5, rtol=1e-4, msg=n)


def test_device_dtype_kwargs_and_meta():
    model = timm.create_model("agent_deit_tiny", dtype=torch.float64, **SMALL)
    assert all(p.dtype == torch.float64 for p in model.parameters())
    assert model(_randn(1, 3, 64, 48).double()).dtype == torch.float64
    meta = timm.create_model("agent_deit_base", device="meta")
    assert all(p.device.type == "meta" for p in meta.parameters())


def test_bad_arguments():
    with pytest.raises(ValueError, match="attn_type"):
        AgentVisionTransformer(**dict(SMALL, attn_type="AB"))
    with pytest.raises(ValueError, match="attn_type"):
        AgentVisionTransformer(**dict(SMALL, attn_type="AXB"))
    with pytest.raises(ValueError, match="agent_num"):
        AgentVisionTransformer(**dict(SMALL, agent_num=5))
    with pytest.raises(ValueError, match="attn_mask"):
        _small().blocks[0](torch.zeros(1, 17, 32), attn_mask=torch.zeros(1, 1, 17, 17))
