"""Agent-CSWin: official checkpoint layout, parameter counts, stripe attention, any input size, timm contract.

Oracles: key names/shapes and parameter counts dumped from the official LeapLabTHU code
(tests/fixtures/official_keys/agent_cswin_*.json), a float64 brute-force cross-shaped stripe attention written here
from the CSWin definition (explicit loops over stripes, only real tokens in each, LePE as a zero-padded conv over
the stripe), and per-image equalities. The full official models were compared on CPU outside the project (random
weights in the official layout -> checkpoint_filter_fn -> every stage output and the logits at 224: max |diff|
<= 1.5e-5 on stage outputs of magnitude ~10).
"""
import json
import re
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import timm

import visionattn.models  # noqa: F401  (registers the models)
from visionattn.models.agent_cswin import AgentCSWin, LePEAttention, checkpoint_filter_fn

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "official_keys"
FIXTURE_MODELS = {
    "agent_cswin_tiny": "agent_cswin_tiny", "agent_cswin_small": "agent_cswin_small",
    "agent_cswin_base": "agent_cswin_base", "agent_cswin_base_384": "agent_cswin_base.in1k_384",
}
# official code (backbones.md §8.6); the README rounds to 21 / 33 / 73
OFFICIAL_PARAMS = {"agent_cswin_tiny": 20458672, "agent_cswin_small": 32814100, "agent_cswin_base": 73249696}

# small model on the same code paths: agent stages (global, agents), a two-branch stripe stage, a one-branch stage
SMALL = dict(embed_dim=16, depths=(1, 1, 2, 1), num_heads=(1, 2, 2, 4), agent_num=(4, 4, 9, 9), img_size=64,
             split_size=(1, 2, 2, 2), drop_path_rate=0.0)


def _small(**kwargs):
    torch.manual_seed(0)
    model = timm.create_model("agent_cswin_tiny", **dict(SMALL, **kwargs))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("_bias"):
                p.normal_(0, 0.5)
    return model


def _randn(*shape, seed=1):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _to_official(state_dict):
    """Our keys -> the official names (the inverse of the filter, written independently)."""
    out = {}
    for key, value in state_dict.items():
        key = key.replace("stem.conv.", "stage1_conv_embed.0.").replace("stem.norm.", "stage1_conv_embed.2.")
        key = re.sub(r"^stages\.(\d+)\.downsample\.", lambda m: f"merge{m.group(1)}.", key)
        key = re.sub(r"^stages\.(\d+)\.blocks\.(\d+)\.", lambda m: f"stage{int(m.group(1)) + 1}.{m.group(2)}.", key)
        key = key.replace(".attn.dwc.", ".attns.0.get_v.").replace(".attn.", ".attns.0.")
        key = key.replace("head.fc.", "head.")
        out[key] = value
    return out


# -- official checkpoints ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("fixture", sorted(FIXTURE_MODELS))
def test_official_keys_convert_and_load(fixture):
    data = json.loads((FIXTURES / f"{fixture}.json").read_text())
    official = {k: torch.empty(shape, device="meta") for k, shape in data["keys"].items()}
    model = timm.create_model(FIXTURE_MODELS[fixture], device="meta")
    converted = checkpoint_filter_fn({"model": official, "state_dict_ema": official, "epoch": 300}, model)
    model.load_state_dict(converted, strict=True, assign=True)
    assert sum(p.numel() for p in model.parameters()) == data["num_params"]


@pytest.mark.parametrize("name", sorted(OFFICIAL_PARAMS))
def test_parameter_counts(name):
    model = timm.create_model(name, device="meta")
    assert sum(p.numel() for p in model.parameters()) == OFFICIAL_PARAMS[name]


def test_official_values_land_on_the_right_keys():
    model = _small()
    ours = model.state_dict()
    official = _to_official(ours)
    assert "stage1.0.attns.0.get_v.weight" in official and "stage3.0.attns.1.get_v.weight" in official
    converted = checkpoint_filter_fn({"model": official}, model)
    assert set(converted) == set(ours)
    for key, value in ours.items():
        assert converted[key] is value, key


def test_official_settings():
    tiny = timm.create_model("agent_cswin_tiny", device="meta")
    assert tiny.attn_type == ("AA", "AAAA", "B" * 18, "B") and tiny.agent_num == (9, 16, 49, 49)
    assert tuple(tiny.stages[0].blocks[0].attn.ah_bias.shape) == (1, 2, 9, 56, 1)
    assert len(tiny.stages[2].blocks[0].attns) == 2 and len(tiny.stages[3].blocks[0].attns) == 1
    big = timm.create_model("agent_cswin_base.in1k_384", device="meta")
    assert tuple(big.stages[1].blocks[0].attn.ha_bias.shape) == (1, 8, 48, 1, 16)
    assert big.split_size == (1, 2, 12, 12) and len(big.stages[2].blocks[0].attns) == 2


def test_filter_rejects_foreign_checkpoints():
    model = _small()
    with pytest.raises(ValueError, match="not an Agent-CSWin checkpoint"):
        checkpoint_filter_fn({"patch_embed.proj.weight": torch.zeros(1)}, model)
    official = _to_official(model.state_dict())
    official["stage2.0.attns.0.an_bias"] = torch.zeros(2, 9, 7, 7)
    with pytest.raises(ValueError, match="an_bias"):
        checkpoint_filter_fn(official, model)


def test_convert_checkpoint_tool(tmp_path):
    sys.path.insert(0, str(ROOT / "tools"))
    import convert_checkpoint

    model = _small().eval()
    path = tmp_path / "official.pth"
    torch.save({"model": _to_official(model.state_dict()), "epoch": 1}, path)
    converted, state_dict = convert_checkpoint.convert("agent_cswin_tiny", str(path), model_kwargs=SMALL)
    x = _randn(1, 3, 64, 80)
    with torch.no_grad():
        torch.testing.assert_close(converted.eval()(x), model(x))


# -- stripe attention against a brute-force oracle -----------------------------------------------------------------

def _stripe_oracle(branch, q, k, v):
    """Loops over stripes of real tokens only; LePE is a zero-padded 3x3 depthwise conv over each stripe."""
    q, k, v = q.double(), k.double(), v.double()
    b, h, w, c = q.shape
    heads, d = branch.num_heads, c // branch.num_heads
    size = branch.split_size
    if branch.direction == 0:
        stripes = [(slice(0, h), slice(j, min(j + size, w))) for j in range(0, w, size)]
    elif branch.direction == 1:
        stripes = [(slice(i, min(i + size, h)), slice(0, w)) for i in range(0, h, size)]
    else:
        stripes = [(slice(0, h), slice(0, w))]
    out = torch.zeros_like(q)
    for rows, cols in stripes:
        qs, ks, vs = (t[:, rows, cols] for t in (q, k, v))
        sh, sw = qs.shape[1], qs.shape[2]
        lepe = F.conv2d(vs.permute(0, 3, 1, 2), branch.get_v.weight.double(), branch.get_v.bias.double(), padding=1,
                        groups=c).permute(0, 2, 3, 1)
        qh, kh, vh = (t.reshape(b, sh * sw, heads, d).transpose(1, 2) for t in (qs, ks, vs))
        attn = torch.softmax(qh @ kh.transpose(-2, -1) * d ** -0.5, dim=-1)
        res = (attn @ vh).transpose(1, 2).reshape(b, sh, sw, c)
        out[:, rows, cols] = res + lepe
    return out


@pytest.mark.parametrize("direction, size", [(0, 3), (1, 3), (-1, 7), (0, 4), (1, 2)])
@pytest.mark.parametrize("hw", [(6, 9), (7, 5), (11, 13)])
def test_stripe_attention_matches_brute_force(direction, size, hw):
    torch.manual_seed(0)
    branch = LePEAttention(8, 2, direction, size).eval()
    with torch.no_grad():
        branch.get_v.bias.normal_()
        q, k, v = (_randn(2, *hw, 8, seed=s) for s in range(3))
        ours = branch(q, k, v)
    torch.testing.assert_close(ours.double(), _stripe_oracle(branch, q, k, v), atol=1e-5, rtol=1e-5)


# -- any input size ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [(64, 64), (224, 224), (97, 131), (512, 512)])
@pytest.mark.parametrize("agent_shapes", [None, ((3, 3), (4, 3), (2, 2), (3, 3))])
def test_forward_any_size_and_agent_grid(size, agent_shapes):
    model = _small(agent_shapes=agent_shapes).eval()
    with torch.no_grad():
        out = model(_randn(1, 3, *size))
        feats = model.forward_intermediates(_randn(1, 3, *size), intermediates_only=True)
    assert out.shape == (1, 1000) and torch.isfinite(out).all()
    side = [((size[0] - 3) // 4 + 1, (size[1] - 3) // 4 + 1)]
    for _ in range(3):
        side.append((-(-side[-1][0] // 2), -(-side[-1][1] // 2)))
    assert [tuple(f.shape[-2:]) for f in feats] == side


def test_downstream_agent_grids_at_800x1216():
    model = _small(depths=(1, 1, 1, 1), embed_dim=8, num_heads=(1, 1, 2, 2)).eval()
    model.set_agent_shapes([(9, 9), (12, 12), (14, 14), (7, 7)])
    assert model.stages[1].blocks[0].attn.agent_shape == (12, 12)
    with torch.no_grad():
        feats = model.forward_intermediates(_randn(1, 3, 800, 1216), intermediates_only=True)
    assert feats[0].shape == (1, 8, 200, 304) and all(torch.isfinite(f).all() for f in feats)


def test_features_only():
    torch.manual_seed(0)
    model = timm.create_model("agent_cswin_tiny", features_only=True, **SMALL).eval()
    with torch.no_grad():
        feats = model(_randn(2, 3, 97, 131))
    assert [tuple(f.shape) for f in feats] == [(2, 16, 24, 33), (2, 32, 12, 17), (2, 64, 6, 9), (2, 128, 3, 5)]
    assert model.feature_info.reduction() == [4, 8, 16, 32]


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


def test_device_dtype_kwargs_and_meta():
    model = timm.create_model("agent_cswin_tiny", dtype=torch.float64, **SMALL)
    assert all(p.dtype == torch.float64 for p in model.parameters())
    assert model(_randn(1, 3, 64, 48).double()).dtype == torch.float64
    meta = timm.create_model("agent_cswin_base", device="meta")
    assert all(p.device.type == "meta" for p in meta.parameters())


def test_bad_arguments():
    with pytest.raises(ValueError, match="attn_type"):
        AgentCSWin(**dict(SMALL, attn_type="AAB"))
    with pytest.raises(ValueError, match=r"attn_type\[2\]"):
        AgentCSWin(**dict(SMALL, attn_type=("A", "A", "ABA", "B")))
    with pytest.raises(ValueError, match="agent_num"):
        AgentCSWin(**dict(SMALL, agent_num=(4, 5, 9, 9)))
    with pytest.raises(ValueError, match="img_size"):
        AgentCSWin(**dict(SMALL, img_size=(64, 96)))
