"""GC ViT: timm parity, official checkpoint layout, parameter counts, any input size, timm contract.

Oracles: timm's own ``gcvit_*`` implementation (an independent Apache-2.0 re-implementation), key names/shapes and
parameter counts dumped from the official NVlabs code (tests/fixtures/official_keys), a float64 brute-force
window attention written here from the paper's definition (per-window loops, explicit relative offsets, explicit
zero padding), and per-image / checkpointed-vs-plain equalities.
"""
import argparse
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import timm
import timm.optim
from timm.models import group_parameters

import visionattn.models  # noqa: F401  (registers the models)
from visionattn.models.gc_vit import GCViT, GCViTBlock, checkpoint_filter_fn

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "official_keys"

# fixture file -> our model name
FIXTURE_MODELS = {
    "gc_vit_xxtiny": "gc_vit_xxtiny", "gc_vit_xtiny": "gc_vit_xtiny", "gc_vit_tiny": "gc_vit_tiny",
    "gc_vit_tiny2": "gc_vit_tiny2", "gc_vit_small": "gc_vit_small", "gc_vit_small2": "gc_vit_small2",
    "gc_vit_base": "gc_vit_base", "gc_vit_large": "gc_vit_large",
    "gc_vit_large_384_21k": "gc_vit_large_384", "gc_vit_large_512_21k": "gc_vit_large_512",
}
# NVlabs/GCVit README, millions
PUBLISHED_M = {"gc_vit_xxtiny": 12, "gc_vit_xtiny": 20, "gc_vit_tiny": 28, "gc_vit_tiny2": 34, "gc_vit_small": 51,
               "gc_vit_small2": 68, "gc_vit_base": 90, "gc_vit_large": 201}

# a small GC ViT for fast structural tests (same code paths: layer scale, both attention kinds, pooling queries)
SMALL = dict(embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), window_size=(4, 3, 2, 2), mlp_ratio=2,
             layer_scale=0.5)


def _randomise(model, seed=0):
    """Non-trivial norms, biases, layer scales and bias tables, so parity cannot pass by accident."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1 and ("norm" in name or "gamma" in name):
                p.copy_(torch.randn(p.shape, generator=g) * 0.2 + (0.5 if "gamma" in name else 1.0))
            elif p.ndim == 1:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            elif "relative_position_bias_table" in name:
                p.copy_(torch.randn(p.shape, generator=g))
    return model


def _load_fixture(name):
    return json.loads((FIXTURES / f"{name}.json").read_text())


# -- timm parity -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("variant, timm_kwargs", [
    ("xxtiny", dict(layer_scale=0.5)),  # layer scale on, to cover ls*.gamma
    ("tiny", dict()),
])
def test_timm_parity(variant, timm_kwargs, tmp_path):
    torch.manual_seed(0)
    ref = _randomise(timm.create_model(f"gcvit_{variant}", **timm_kwargs)).eval()
    path = tmp_path / "timm.pth"
    torch.save(ref.state_dict(), path)
    # through timm's pretrained path, which calls our checkpoint_filter_fn and then a strict load
    ours = timm.create_model(f"gc_vit_{variant}", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)),
                             **timm_kwargs).eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        ref_final, ref_feats = ref.forward_intermediates(x)
        ref_logits = ref.forward_head(ref_final)
        our_final, our_feats = ours.forward_intermediates(x)
        our_logits = ours.forward_head(our_final)
    # timm's last stage carries the final norm, ours applies it after the stage
    our_feats[-1] = ours.norm(our_feats[-1])
    for i, (a, b) in enumerate(zip(ref_feats, our_feats)):
        assert a.shape == b.shape
        torch.testing.assert_close(b, a, atol=2e-5, rtol=1e-5, msg=f"stage {i}")
    torch.testing.assert_close(our_logits, ref_logits, atol=2e-5, rtol=1e-5)
    print(f"timm parity gcvit_{variant}: max abs logit diff {(our_logits - ref_logits).abs().max().item():.3g}")


def test_timm_parity_other_size():
    """timm built for 160x160 (windows 5/5/10/5) against ours given the same windows: same output."""
    torch.manual_seed(1)
    ref = _randomise(timm.create_model("gcvit_xxtiny", img_size=160)).eval()
    ours = timm.create_model("gc_vit_xxtiny", window_size=(5, 5, 10, 5)).eval()
    ours.load_state_dict(checkpoint_filter_fn(ref.state_dict(), ours), strict=True)
    x = torch.randn(2, 3, 160, 160)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), atol=2e-5, rtol=1e-5)


# -- official checkpoint layout ----------------------------------------------------------------------------------

@pytest.mark.parametrize("fixture", list(FIXTURE_MODELS))
def test_official_keys_convert_and_load(fixture):
    """Official names/shapes -> our filter -> strict load (meta tensors: keys and shapes are what is checked)."""
    keys = _load_fixture(fixture)["keys"]
    official = {k: torch.empty(shape, device="meta") for k, shape in keys.items()}
    with torch.device("meta"):
        model = timm.create_model(FIXTURE_MODELS[fixture])
    converted = checkpoint_filter_fn(official, model)
    model.load_state_dict(converted, strict=True, assign=True)
    # every official tensor is used (only the recomputed index buffers are dropped)
    assert len(converted) == len([k for k in keys if not k.endswith("relative_position_index")])


def test_official_values_land_on_the_right_keys(tmp_path):
    """Real random official xxtiny tensors, saved like a released .pth.tar (training state beside the weights) and
    loaded through timm's pretrained path: hand-picked keys must arrive unchanged at the hand-mapped places."""
    keys = _load_fixture("gc_vit_xxtiny")["keys"]
    g = torch.Generator().manual_seed(0)
    off = {k: torch.randn(shape, generator=g) if "index" not in k else torch.zeros(shape, dtype=torch.long)
           for k, shape in keys.items()}
    path = tmp_path / "gcvit_1k_xxtiny.pth.tar"
    torch.save({"state_dict": off, "epoch": 3, "args": argparse.Namespace(model="gc_vit_xxtiny")}, path)
    model = timm.create_model("gc_vit_xxtiny.nv_in1k", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    sd = model.state_dict()
    # another classifier size: the backbone still loads, the classifier keeps its initialisation
    other = timm.create_model("gc_vit_xxtiny.nv_in1k", pretrained=True, num_classes=10,
                              pretrained_cfg_overlay=dict(file=str(path)))
    assert torch.equal(other.stem.conv.weight, off["patch_embed.proj.weight"])
    assert other.head.fc.weight.shape == (10, 512)
    expect = {
        "stem.conv.weight": "patch_embed.proj.weight",
        "stem.down.mbconv.se.fc1.weight": "patch_embed.conv_down.conv.2.fc.0.weight",
        "stem.down.mbconv.conv_pw.weight": "patch_embed.conv_down.conv.3.weight",
        "stem.down.reduction.weight": "patch_embed.conv_down.reduction.weight",
        "stages.1.downsample.mbconv.conv_dw.weight": "levels.0.downsample.conv.0.weight",
        "stages.3.downsample.norm2.weight": "levels.2.downsample.norm2.weight",
        "stages.0.global_query.blocks.2.se.fc2.weight": "levels.0.q_global_gen.to_q_global.2.conv.2.fc.2.weight",
        "stages.2.blocks.5.attn.relative_position_bias_table": "levels.2.blocks.5.attn.relative_position_bias_table",
        "stages.2.blocks.5.attn.qkv.weight": "levels.2.blocks.5.attn.qkv.weight",
        "norm.weight": "norm.weight",
        "head.fc.weight": "head.weight",
    }
    for ours_key, official_key in expect.items():
        assert torch.equal(sd[ours_key], off[official_key]), ours_key
    assert sd["stages.2.blocks.5.attn.qkv.weight"].shape[0] == 2 * 256  # odd block: global query, only k and v


def test_official_layer_scale_and_resize_into_window_24():
    """gamma1/2 -> ls1/ls2; 224 tables [(2w-1)^2, heads] resized bicubically (per head, as an image) to window 24."""
    keys = _load_fixture("gc_vit_small")["keys"]
    g = torch.Generator().manual_seed(0)
    official = {k: torch.randn(shape, generator=g) for k, shape in keys.items()
                if k.startswith("levels.0.") and ".downsample." not in k}  # a one-stage model: no downsample
    model = GCViT(num_classes=0, embed_dim=96, depths=(3,), num_heads=(3,), window_size=24, mlp_ratio=2,
                  layer_scale=1e-5, query_blocks=(3,), query_pool=(True,))
    official.update({k: torch.randn(shape, generator=g) for k, shape in keys.items()
                     if k.startswith("patch_embed.")})
    official.update({"norm.weight": torch.ones(96), "norm.bias": torch.zeros(96)})
    sd = checkpoint_filter_fn(official, model)
    model.load_state_dict(sd, strict=True)
    assert torch.equal(model.stages[0].blocks[1].ls2.gamma, official["levels.0.blocks.1.gamma2"])
    table = official["levels.0.blocks.1.attn.relative_position_bias_table"]  # [13 * 13, 3]
    assert table.shape == (169, 3)
    expected = F.interpolate(table.t().reshape(1, 3, 13, 13), size=(47, 47), mode="bicubic", align_corners=False)
    expected = expected.reshape(3, 47 * 47).t()
    torch.testing.assert_close(model.stages[0].blocks[1].attn.relative_position_bias_table.detach(), expected)


def test_filter_rejects_foreign_and_mismatched_checkpoints():
    model = GCViT(**SMALL)
    with pytest.raises(ValueError, match="not a GC ViT checkpoint"):
        checkpoint_filter_fn({"conv1.weight": torch.zeros(1)}, model)
    sd = dict(model.state_dict())
    sd.pop("stages.1.blocks.0.norm1.weight")
    with pytest.raises(ValueError, match="missing keys: stages.1.blocks.0.norm1.weight"):
        checkpoint_filter_fn(sd, model)


# -- parameter counts --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fixture", list(FIXTURE_MODELS))
def test_parameter_counts(fixture):
    with torch.device("meta"):
        model = timm.create_model(FIXTURE_MODELS[fixture])
    count = sum(p.numel() for p in model.parameters())
    assert count == _load_fixture(fixture)["num_params"]
    if fixture in PUBLISHED_M:
        assert abs(count / 1e6 - PUBLISHED_M[fixture]) < 1.1, count


# -- brute-force oracle for the block: padding, window order, relative positions, global query per image -------

def _block_oracle(block, x, q_global):
    """float64 loops: norm1, zero-pad, per-window attention with explicit (dy, dx) bias, crop, residuals."""
    block = block.double()
    x, q_global = x.double(), q_global.double()
    b, h, w, c = x.shape
    wh, ww = block.window_size
    heads = block.attn.num_heads
    hd = c // heads
    table = block.attn.relative_position_bias_table  # [(2wh-1)(2ww-1), heads]
    hp, wp = math.ceil(h / wh) * wh, math.ceil(w / ww) * ww
    xn = torch.zeros(b, hp, wp, c, dtype=torch.float64)
    xn[:, :h, :w] = F.layer_norm(x, (c,), block.norm1.weight, block.norm1.bias, block.norm1.eps)
    out = torch.zeros_like(xn)
    coords = [(i, j) for i in range(wh) for j in range(ww)]
    bias = torch.empty(heads, wh * ww, wh * ww, dtype=torch.float64)
    for a, (ia, ja) in enumerate(coords):
        for k, (ib, jb) in enumerate(coords):
            bias[:, a, k] = table[(ia - ib + wh - 1) * (2 * ww - 1) + (ja - jb + ww - 1)]
    for n in range(b):
        for y0 in range(0, hp, wh):
            for x0 in range(0, wp, ww):
                tokens = xn[n, y0:y0 + wh, x0:x0 + ww].reshape(-1, c)
                proj = block.attn.qkv(tokens)
                if block.attn.use_global:
                    k_, v_ = proj.split(c, dim=-1)
                    q_ = q_global[n].reshape(-1, c)  # this image's query, same for all of its windows
                else:
                    q_, k_, v_ = proj.split(c, dim=-1)
                res = []
                for hh in range(heads):
                    sl = slice(hh * hd, (hh + 1) * hd)
                    logits = q_[:, sl] @ k_[:, sl].t() / math.sqrt(hd) + bias[hh]
                    res.append(logits.softmax(-1) @ v_[:, sl])
                out[n, y0:y0 + wh, x0:x0 + ww] = block.attn.proj(torch.cat(res, -1)).reshape(wh, ww, c)
    gamma1 = block.ls1.gamma if hasattr(block.ls1, "gamma") else 1.0
    gamma2 = block.ls2.gamma if hasattr(block.ls2, "gamma") else 1.0
    x = x + gamma1 * out[:, :h, :w]
    return x + gamma2 * block.mlp(F.layer_norm(x, (c,), block.norm2.weight, block.norm2.bias, block.norm2.eps))


@pytest.mark.parametrize("use_global", [False, True])
@pytest.mark.parametrize("size, window", [((9, 11), (4, 4)), ((5, 7), (3, 5)), ((4, 6), (2, 3))])
def test_block_matches_float64_brute_force(use_global, size, window):
    torch.manual_seed(0)
    dim, heads, batch = 12, 3, 2
    block = _randomise(GCViTBlock(dim, heads, window, use_global=use_global, mlp_ratio=2, layer_scale=0.7)).eval()
    x = torch.randn(batch, *size, dim)
    q_global = torch.randn(batch, heads, window[0] * window[1], dim // heads)  # [B, heads, N, head_dim]
    q_img = q_global.transpose(1, 2).reshape(batch, *window, dim)  # the same query as an image, heads-major channels
    with torch.no_grad():
        got = block(x, q_global if use_global else None)
        want = _block_oracle(block, x, q_img)
    torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=1e-5)


# -- any input size ----------------------------------------------------------------------------------------------

def test_forward_sizes_and_features_only():
    model = timm.create_model("gc_vit_xxtiny").eval()
    with torch.no_grad():
        for size in [(224, 224), (320, 320), (200, 296)]:
            y = model(torch.randn(1, 3, *size))
            assert y.shape == (1, 1000) and torch.isfinite(y).all(), size
    feats_model = timm.create_model("gc_vit_xxtiny", features_only=True).eval()
    assert feats_model.feature_info.reduction() == [4, 8, 16, 32]
    assert feats_model.feature_info.channels() == [64, 128, 256, 512]
    with torch.no_grad():
        feats = feats_model(torch.randn(1, 3, 200, 296))
    # stride-2 convs with padding 1 round up: 200 -> 100 -> 50 -> 25 -> 13 -> 7, 296 -> ... -> 74 -> 37 -> 19 -> 10
    assert [tuple(f.shape) for f in feats] == [(1, 64, 50, 74), (1, 128, 25, 37), (1, 256, 13, 19), (1, 512, 7, 10)]
    feats_model = timm.create_model("gc_vit_xxtiny", features_only=True, out_indices=(1, 3))
    assert feats_model.feature_info.reduction() == [8, 32]


def test_window_24_everywhere_at_512():
    """The official detection setting: windows 24 in all stages, loading a 224 checkpoint (tables resized)."""
    src = _randomise(timm.create_model("gc_vit_xxtiny"))
    model = timm.create_model("gc_vit_xxtiny", window_size=24, query_pool=(True, True, True, False),
                              features_only=True).eval()
    sd = checkpoint_filter_fn(src.state_dict(), timm.create_model("gc_vit_xxtiny", window_size=24))
    assert sd["stages.0.blocks.0.attn.relative_position_bias_table"].shape == (47 * 47, 2)
    sd = {"model." + k: v for k, v in sd.items() if not k.startswith(("head.", "norm."))}  # FeatureGetterNet
    model.load_state_dict(sd, strict=True)
    with torch.no_grad():
        feats = model(torch.randn(1, 3, 512, 512))
    assert [tuple(f.shape) for f in feats] == [(1, 64, 128, 128), (1, 128, 64, 64), (1, 256, 32, 32), (1, 512, 16, 16)]
    assert all(torch.isfinite(f).all() for f in feats)


def test_global_query_is_window_sized_for_any_map():
    model = GCViT(**SMALL)
    gen = model.stages[0].global_query
    for size in [(8, 8), (13, 29), (3, 5)]:
        q = gen(torch.randn(2, 16, *size))
        assert q.shape == (2, 4, 4, 16)


def test_batch_equals_singles():
    torch.manual_seed(0)
    model = _randomise(GCViT(**SMALL)).eval()
    x = torch.cat([torch.randn(1, 3, 72, 104), torch.rand(1, 3, 72, 104) * 4 - 1])  # two very different images
    with torch.no_grad():
        batched = model.forward_intermediates(x, intermediates_only=True)
        singles = [model.forward_intermediates(x[i:i + 1], intermediates_only=True) for i in range(2)]
    for s, feat in enumerate(batched):
        for i in range(2):
            torch.testing.assert_close(feat[i:i + 1], singles[i][s], atol=1e-5, rtol=1e-5, msg=f"stage {s} image {i}")


def test_backward_reaches_every_parameter_and_checkpointing_matches():
    torch.manual_seed(0)
    model = GCViT(num_classes=5, **SMALL).train()
    x = torch.randn(2, 3, 70, 90)
    model(x).square().sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    for name, grad in grads.items():
        assert grad is not None and grad.abs().sum() > 0, name
    model.zero_grad()
    model.set_grad_checkpointing(True)
    model(x).square().sum().backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads[name], atol=1e-5, rtol=1e-4, msg=name)


# -- timm contract -----------------------------------------------------------------------------------------------

def test_timm_contract():
    model = timm.create_model("gc_vit_xxtiny", **SMALL).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits = model(x)
        pre = model.forward_head(model.forward_features(x), pre_logits=True)
        final, inter = model.forward_intermediates(x, indices=(0, 2), norm=True)
        nhwc = model.forward_intermediates(x, indices=1, output_fmt="NHWC", intermediates_only=True)
        early = model.forward_intermediates(x, indices=[1], stop_early=True, intermediates_only=True)
        full = model.forward_intermediates(x, indices=[1], intermediates_only=True)
    assert logits.shape == (2, 1000) and pre.shape == (2, 128)
    assert [t.shape[1] for t in inter] == [16, 64] and final.shape == (2, 128, 2, 2)
    assert nhwc[0].shape == (2, 2, 2, 128)
    torch.testing.assert_close(early[0], full[0])
    assert model.get_classifier().out_features == 1000
    model.reset_classifier(7)
    assert model(x).shape == (2, 7)
    model.reset_classifier(0)
    assert model(x).shape == (2, 128)
    nwd = model.no_weight_decay()
    assert nwd and all("relative_position_bias_table" in n for n in nwd)
    assert len(nwd) == sum(SMALL["depths"])
    groups = timm.optim.create_optimizer_v2(model, "adamw", lr=1e-3, weight_decay=0.05, layer_decay=0.8)
    assert len(groups.param_groups) > 4
    for coarse in (True, False):
        matcher = model.group_matcher(coarse=coarse)
        grouped = group_parameters(model, matcher)
        assert sum(len(v) for v in grouped.values()) == len(list(model.named_parameters()))
    kept = model.prune_intermediate_layers(indices=(1,))
    assert kept == [1] and len(model.stages) == 2
    with torch.no_grad():
        assert model.forward_intermediates(x, intermediates_only=True)[-1].shape == (2, 32, 8, 8)


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="window_size"):
        GCViT(**dict(SMALL, window_size=(4, 4, 4)))
    with pytest.raises(ValueError, match="num_heads"):
        GCViT(**dict(SMALL, num_heads=(3, 2, 2, 4)))
    with pytest.raises(ValueError, match="query_pool"):
        GCViT(**dict(SMALL, query_pool=(True,)))
    with pytest.raises(ValueError, match="output_fmt"):
        GCViT(**SMALL).forward_intermediates(torch.randn(1, 3, 32, 32), output_fmt="NLC")


@pytest.mark.gpu
def test_cuda_matches_cpu_and_half_precision_runs():
    torch.manual_seed(0)
    model = _randomise(timm.create_model("gc_vit_xxtiny")).eval()
    x = torch.randn(2, 3, 200, 296)
    with torch.no_grad():
        ref = model(x)
        model, x = model.cuda(), x.cuda()
        out = model(x)
        with torch.autocast("cuda", dtype=torch.float16):
            half = model(x)
    torch.testing.assert_close(out.cpu(), ref, atol=1e-3, rtol=1e-3)
    assert half.dtype == torch.float16 and torch.isfinite(half).all()
    assert (half.float().cpu() - ref).abs().max() < 0.05 * ref.abs().max()
