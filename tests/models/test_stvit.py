"""STViT: official checkpoint layout, parameter counts, super token attention against the formula, any input size,
timm contract.

Oracles: key names/shapes and trainable parameter counts dumped from the official hhb072/STViT code
(tests/fixtures/official_keys), a float64 re-statement of super token attention written here from the paper /
backbones.md §7.2 on the pixel grid (every pixel gathers its 3x3 neighbouring super tokens: the 9-fold unfold the
implementation avoids), and per-image / checkpointed-vs-plain / repeat equalities. The logits and stage outputs
of the official code itself were compared outside the test suite (the official code is not vendored): max abs
stage difference 3e-4 (relative 3e-6) for stvit_base at 224, recorded in
benchmarks/results/cpu_stvit_official_parity.json.
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

from visionattn.models.stvit import STViT, SuperTokenAttention, checkpoint_filter_fn

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "official_keys"
VARIANTS = ["stvit_small", "stvit_base", "stvit_large"]
PUBLISHED_M = {"stvit_small": 25, "stvit_base": 52, "stvit_large": 95}  # official README, millions

# a small STViT for fast structural tests (same code paths: both STA kinds, layer scale, projection head)
SMALL = dict(embed_dim=(16, 32, 48, 64), depths=(1, 2, 1, 1), num_heads=(1, 2, 3, 4), stoken_size=(4, 2, 1, 1),
             layer_scale=(None, None, 0.5, 0.5), proj_dim=96)


def _load_fixture(name):
    return json.loads((FIXTURES / f"{name}.json").read_text())


def _randomise(model, seed=0):
    """Non-trivial norms, running stats, biases and layer scales, so equalities cannot pass by accident."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) * 0.5 + 0.75)
            elif name.endswith(("running_mean", "bias")):
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
            elif t.ndim == 1:
                t.copy_(torch.rand(t.shape, generator=g) * 0.5 + 0.5)
    return model


# -- official checkpoint layout ------------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", VARIANTS)
def test_official_keys_convert_and_load(variant):
    """Official names/shapes -> our filter -> strict load (meta tensors: keys and shapes are what is checked)."""
    keys = _load_fixture(variant)["keys"]
    official = {k: torch.empty(shape, device="meta") for k, shape in keys.items()}
    with torch.device("meta"):
        model = timm.create_model(variant)
    converted = checkpoint_filter_fn({"model": official, "epoch": 3}, model)
    model.load_state_dict(converted, strict=True, assign=True)
    # every official tensor is used but the fixed identity kernels of the unfold / fold convs
    kernels = [k for k in keys if k.endswith(("attn.unfold.weights", "attn.fold.weights"))]
    assert len(kernels) == 2 * sum(len(s.blocks) for s in model.stages)
    assert len(converted) == len(keys) - len(kernels)


@pytest.mark.parametrize("variant", VARIANTS)
def test_parameter_counts(variant):
    with torch.device("meta"):
        model = timm.create_model(variant)
    count = sum(p.numel() for p in model.parameters())
    assert count == _load_fixture(variant)["num_params"]  # the official trainable count
    assert abs(count / 1e6 - PUBLISHED_M[variant]) < 0.6, count


def test_official_values_land_on_the_right_keys(tmp_path):
    """Random official stvit_base tensors, saved like a released checkpoint (``model`` beside training state) and
    loaded through timm's pretrained path: hand-picked keys must arrive unchanged at the hand-mapped places."""
    keys = _load_fixture("stvit_base")["keys"]
    g = torch.Generator().manual_seed(0)
    off = {k: torch.randn(shape, generator=g) if "num_batches" not in k else torch.zeros(shape, dtype=torch.long)
           for k, shape in keys.items()}
    path = tmp_path / "stvit-base-224.pth"
    torch.save({"model": off, "model_ema": None, "epoch": 299, "args": argparse.Namespace(model="stvit_base")}, path)
    model = timm.create_model("stvit_base.in1k", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    sd = model.state_dict()
    expect = {
        "stem.0.weight": "patch_embed.proj.0.weight",
        "stem.11.running_var": "patch_embed.proj.11.running_var",
        "stages.0.blocks.3.pos_embed.weight": "layers.0.blocks.3.pos_embed.conv.weight",
        "stages.1.blocks.2.norm1.weight": "layers.1.blocks.2.norm1.norm.weight",
        "stages.1.blocks.2.attn.refine.qkv.weight": "layers.1.blocks.2.attn.stoken_refine.qkv.weight",
        "stages.2.blocks.13.attn.refine.proj.bias": "layers.2.blocks.13.attn.stoken_refine.proj.bias",
        "stages.2.blocks.0.norm2.running_mean": "layers.2.blocks.0.norm2.running_mean",
        "stages.3.blocks.5.mlp.conv.weight": "layers.3.blocks.5.mlp2.conv.conv.weight",
        "stages.3.blocks.5.mlp.fc2.weight": "layers.3.blocks.5.mlp2.fc2.weight",
        "stages.1.downsample.0.weight": "layers.0.downsample.proj.0.weight",
        "stages.3.downsample.1.running_var": "layers.2.downsample.proj.1.running_var",
        "norm.0.weight": "proj.weight",
        "norm.1.weight": "norm.weight",
        "head.fc.weight": "head.weight",
    }
    for ours_key, official_key in expect.items():
        assert torch.equal(sd[ours_key], off[official_key]), ours_key
    assert torch.equal(sd["stages.2.blocks.4.ls1.gamma"], off["layers.2.blocks.4.gamma_1"].flatten())
    # another classifier size: the backbone still loads, the classifier keeps its initialisation
    other = timm.create_model("stvit_base.in1k", pretrained=True, num_classes=10,
                              pretrained_cfg_overlay=dict(file=str(path)))
    assert torch.equal(other.stem[0].weight, off["patch_embed.proj.0.weight"])
    assert other.head.fc.weight.shape == (10, 1024)


def test_filter_rejects_foreign_and_mismatched_checkpoints():
    model = STViT(**SMALL)
    with pytest.raises(ValueError, match="not an STViT checkpoint"):
        checkpoint_filter_fn({"conv1.weight": torch.zeros(1)}, model)
    sd = dict(model.state_dict())
    sd.pop("stages.1.blocks.0.norm2.weight")
    with pytest.raises(ValueError, match="missing keys: stages.1.blocks.0.norm2.weight"):
        checkpoint_filter_fn(sd, model)


# -- super token attention against the formula ---------------------------------------------------------------------

def _neighbours_per_pixel(stokens, h, w):
    """[B, C, hh, ww] -> [B, C, 9, hh*h, ww*w]: for every pixel, the super tokens of the 3x3 cells around its cell
    (neighbour (dy + 1) * 3 + (dx + 1) is the cell at offset (dy, dx)); cells off the grid are zero vectors."""
    b, c, hh, ww = stokens.shape
    padded = F.pad(stokens, (1, 1, 1, 1))
    cy = torch.arange(hh * h) // h
    cx = torch.arange(ww * w) // w
    out = []
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            out.append(padded[:, :, cy + 1 + dy][:, :, :, cx + 1 + dx])
    return torch.stack(out, 2)


def _sta_oracle(x, stoken_size, refine):
    """§7.2 on the pixel grid: pad, average-pool, associate (no gradient), weighted update with a detached
    normaliser (contributions to off-grid cells dropped), refine, map back, crop."""
    b, c, height, width = x.shape
    h, w = stoken_size
    hh, ww = math.ceil(height / h), math.ceil(width / w)
    xp = F.pad(x, (0, ww * w - width, 0, hh * h - height))
    s0 = xp.reshape(b, c, hh, h, ww, w).mean((3, 5))
    nb = _neighbours_per_pixel(s0, h, w)
    affinity = ((xp[:, :, None] * nb).sum(1) / math.sqrt(c)).softmax(1).detach()  # [B, 9, Hp, Wp]
    num = x.new_zeros(b, c, hh, ww)
    den = x.new_zeros(b, 1, hh, ww)
    j = 0
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            a = affinity[:, j:j + 1]
            per_cell = (a * xp).reshape(b, c, hh, h, ww, w).sum((3, 5))  # from the pixels of cell q to q + (dy, dx)
            mass = a.reshape(b, 1, hh, h, ww, w).sum((3, 5))
            for qy in range(hh):
                for qx in range(ww):
                    my, mx = qy + dy, qx + dx
                    if 0 <= my < hh and 0 <= mx < ww:
                        num[:, :, my, mx] += per_cell[:, :, qy, qx]
                        den[:, :, my, mx] += mass[:, :, qy, qx]
            j += 1
    stokens = refine(num / (den.detach() + 1e-12))
    out = (affinity[:, None] * _neighbours_per_pixel(stokens, h, w)).sum(2)
    return out[:, :, :height, :width]


@pytest.mark.parametrize("size,stoken_size", [
    ((16, 16), (4, 4)),  # multiple of the super token size
    ((13, 18), (4, 4)),  # not a multiple: padding on both sides
    ((5, 7), (8, 8)),  # smaller than one super token: a 1x1 grid
    ((11, 9), (2, 3)),  # non-square super tokens
])
def test_sta_matches_float64_formula_forward_and_backward(size, stoken_size):
    torch.manual_seed(0)
    dim, heads = 12, 3
    attn = SuperTokenAttention(dim, heads, stoken_size).double()
    with torch.no_grad():
        for p in attn.parameters():
            p.normal_(0, 0.3)
    x = torch.randn(2, dim, *size, dtype=torch.float64, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    out = attn(x)
    ref = _sta_oracle(x_ref, stoken_size, attn.refine)
    torch.testing.assert_close(out, ref, atol=1e-10, rtol=1e-10)
    weights = torch.randn_like(out)
    grads = torch.autograd.grad((out * weights).sum(), [x] + list(attn.parameters()))
    grads_ref = torch.autograd.grad((ref * weights).sum(), [x_ref] + list(attn.parameters()))
    for g, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g, g_ref, atol=1e-10, rtol=1e-10)
    assert grads[0].abs().sum() > 0


def test_sta_size_one_is_global_attention():
    torch.manual_seed(0)
    attn = SuperTokenAttention(8, 2, (1, 1)).double()
    x = torch.randn(1, 8, 5, 6, dtype=torch.float64)
    qkv = attn.refine.qkv(x).reshape(1, 2, 12, 30)
    q, k, v = qkv[:, :, :4], qkv[:, :, 4:8], qkv[:, :, 8:]  # official per-head [q | k | v] channel layout
    a = (q.transpose(-1, -2) @ k / 2.0).softmax(-1)  # [B, heads, N_q, N_k], scale head_dim ** -0.5
    ref = attn.refine.proj((v @ a.transpose(-1, -2)).reshape(1, 8, 5, 6))
    torch.testing.assert_close(attn(x), ref)


# -- any input size, features, training ----------------------------------------------------------------------------

def test_forward_sizes_and_features_only():
    model = timm.create_model("stvit_small", **SMALL).eval()
    with torch.no_grad():
        for size in [(224, 224), (97, 131), (512, 512), (1, 1)]:
            y = model(torch.randn(1, 3, *size))
            assert y.shape == (1, 1000) and torch.isfinite(y).all(), size
    feats_model = timm.create_model("stvit_small", features_only=True, **SMALL).eval()
    assert feats_model.feature_info.reduction() == [4, 8, 16, 32]
    assert feats_model.feature_info.channels() == [16, 32, 48, 64]
    with torch.no_grad():
        feats = feats_model(torch.randn(1, 3, 200, 296))
    # stride-2 convs with padding 1 round up: 200 -> 100 -> 50 -> 25 -> 13 -> 7, 296 -> ... -> 74 -> 37 -> 19 -> 10
    assert [tuple(f.shape) for f in feats] == [(1, 16, 50, 74), (1, 32, 25, 37), (1, 48, 13, 19), (1, 64, 7, 10)]
    feats_model = timm.create_model("stvit_small", features_only=True, out_indices=(1, 3), **SMALL)
    assert feats_model.feature_info.reduction() == [8, 32]


def test_batch_equals_singles_and_repeat_is_identical():
    torch.manual_seed(0)
    model = _randomise(STViT(**SMALL)).eval()
    x = torch.cat([torch.randn(1, 3, 72, 104), torch.rand(1, 3, 72, 104) * 4 - 1])  # two very different images
    with torch.no_grad():
        batched = model.forward_intermediates(x, intermediates_only=True)
        again = model.forward_intermediates(x, intermediates_only=True)
        singles = [model.forward_intermediates(x[i:i + 1], intermediates_only=True) for i in range(2)]
    for s, feat in enumerate(batched):
        assert torch.equal(feat, again[s])
        for i in range(2):
            torch.testing.assert_close(feat[i:i + 1], singles[i][s], atol=1e-5, rtol=1e-5, msg=f"stage {s} image {i}")


def test_backward_reaches_every_parameter_and_checkpointing_matches():
    torch.manual_seed(0)
    model = STViT(num_classes=5, **SMALL).train()
    x = torch.randn(2, 3, 70, 90)
    model(x).square().sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    for name, grad in grads.items():
        assert grad is not None and grad.abs().sum() > 0, name
    model.zero_grad()
    model.set_grad_checkpointing(True)
    model(x).square().sum().backward()  # BN batch statistics are the same: same batch
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads[name], atol=1e-5, rtol=1e-4, msg=name)


# -- timm contract -------------------------------------------------------------------------------------------------

def test_timm_contract():
    model = timm.create_model("stvit_small", **SMALL).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits = model(x)
        pre = model.forward_head(model.forward_features(x), pre_logits=True)
        final, inter = model.forward_intermediates(x, indices=(0, 2), norm=True)
        nhwc = model.forward_intermediates(x, indices=1, output_fmt="NHWC", intermediates_only=True)
        early = model.forward_intermediates(x, indices=[1], stop_early=True, intermediates_only=True)
        full = model.forward_intermediates(x, indices=[1], intermediates_only=True)
    assert logits.shape == (2, 1000) and pre.shape == (2, 96)
    assert [t.shape[1] for t in inter] == [16, 48] and final.shape == (2, 96, 2, 2)
    assert nhwc[0].shape == (2, 2, 2, 64)
    torch.testing.assert_close(early[0], full[0])
    assert model.get_classifier().out_features == 1000
    model.reset_classifier(7)
    assert model(x).shape == (2, 7)
    model.reset_classifier(0)
    assert model(x).shape == (2, 96)
    groups = timm.optim.create_optimizer_v2(model, "adamw", lr=1e-3, weight_decay=0.05, layer_decay=0.8)
    assert len(groups.param_groups) > 4
    for coarse in (True, False):
        grouped = group_parameters(model, model.group_matcher(coarse=coarse))
        assert sum(len(v) for v in grouped.values()) == len(list(model.named_parameters()))
    kept = model.prune_intermediate_layers(indices=(1,))
    assert kept == [1] and len(model.stages) == 2
    with torch.no_grad():
        assert model.forward_intermediates(x, intermediates_only=True)[-1].shape == (2, 32, 8, 8)


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="num_heads"):
        STViT(**dict(SMALL, num_heads=(3, 2, 3, 4)))
    with pytest.raises(ValueError, match="stoken_size"):
        STViT(**dict(SMALL, stoken_size=(4, 0, 1, 1)))
    with pytest.raises(ValueError, match="embed_dim"):
        STViT(**dict(SMALL, embed_dim=(16, 32)))


def test_convert_checkpoint_tool_on_an_official_layout_file(tmp_path):
    """tools/convert_checkpoint.py: official ``{'model': ..., 'args': Namespace}`` -> safetensors -> timm load."""
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
    import convert_checkpoint

    keys = _load_fixture("stvit_small")["keys"]
    g = torch.Generator().manual_seed(1)
    off = {k: torch.randn(shape, generator=g) if "num_batches" not in k else torch.zeros(shape, dtype=torch.long)
           for k, shape in keys.items()}
    src = tmp_path / "stvit-small-224.pth"
    torch.save({"model": off, "epoch": 299, "args": argparse.Namespace(model="stvit_small")}, src)
    out = convert_checkpoint.main(["--model", "stvit_small", "--checkpoint", str(src),
                                   "--out", str(tmp_path / "stvit_small.safetensors")])
    model = timm.create_model("stvit_small.in1k", pretrained=True, pretrained_cfg_overlay=dict(file=str(out)))
    assert torch.equal(model.stages[1].blocks[4].attn.refine.qkv.weight,
                       off["layers.1.blocks.4.attn.stoken_refine.qkv.weight"])


def test_mm_norm_eval_freezes_the_batch_norms_inside_the_blocks():
    """The OpenMMLab adapter's ``norm_eval`` reaches the BNs of the stem, the blocks and the downsamplers."""
    pytest.importorskip("mmengine")
    from visionattn.mm.backbone import VisionAttnBackbone

    backbone = VisionAttnBackbone("stvit_small", norm_eval=True, model_kwargs=SMALL).train()
    norms = [m for m in backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) == 4 + sum(SMALL["depths"]) + 3  # stem, one per block, downsamplers
    assert not any(m.training for m in norms)
    before = [m.running_mean.clone() for m in norms]
    backbone(torch.randn(2, 3, 64, 64))
    assert all(torch.equal(a, m.running_mean) for a, m in zip(before, norms))
    assert VisionAttnBackbone("stvit_small", model_kwargs=SMALL).train().model.stages[0].blocks[0].norm2.training
