"""NAT / DiNAT models: official checkpoint layout, parameter counts, shapes, timm contract, backends.

Oracles: key names/shapes dumped from the official model code (tests/fixtures/official_keys), the published
parameter counts, a float64 re-implementation of the official forward written here from the papers' and
NATTEN 0.14's definitions (brute-force per-query neighborhood attention), and per-image / per-backend
equalities.
"""
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import timm

import visionattn.models  # noqa: F401  (registers the models)
from visionattn.models.nat import NAT, DINAT_TINY_DILATIONS_COCO, checkpoint_filter_fn

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "official_keys"

# fixture file -> model name (with pretrained tag where the architecture differs from the variant default)
FIXTURE_MODELS = {
    "nat_mini": "nat_mini",
    "nat_tiny": "nat_tiny",
    "nat_small": "nat_small",
    "nat_base": "nat_base",
    "dinat_mini": "dinat_mini",
    "dinat_tiny": "dinat_tiny",
    "dinat_small": "dinat_small",
    "dinat_base": "dinat_base",
    "dinat_large": "dinat_large",
    "dinat_large_384_11x11": "dinat_large.in22k_ft_in1k_384_11x11",
    "dinat_large_21k": "dinat_large.in22k",
}

# Published sizes (classification/NAT.md, DiNAT.md), in millions.
PUBLISHED_M = {
    "nat_mini": 20, "nat_tiny": 28, "nat_small": 51, "nat_base": 90,
    "dinat_mini": 20, "dinat_tiny": 28, "dinat_small": 51, "dinat_base": 90, "dinat_large": 200,
}


def _fixture(name):
    return json.loads((FIXTURES / f"{name}.json").read_text())


def _tiny_nat(**kwargs):
    """A few-block NAT/DiNAT with every architectural feature: layer scale, dilations, small-map padding."""
    args = dict(
        depths=(1, 2, 1, 1), num_heads=(2, 2, 4, 4), embed_dim=16, mlp_ratio=2.0, kernel_size=3,
        dilations=([2], [1, 3], [1], [1]), layer_scale=0.5, drop_path_rate=0.0, num_classes=7,
    )
    args.update(kwargs)
    return NAT(**args)


# --------------------------------------------------------------------------------------------------------------
# Independent float64 oracle: the official forward, written from the definitions (not from visionattn code).

def _window_start(i, length, k, d):
    """NATTEN <= 0.14 window start on one axis (reference/backbones.md §3.2)."""
    r = k // 2
    if d == 1:
        return min(max(i - r, 0), length - k)
    if i - r * d < 0:
        return i % d
    if i + r * d >= length:
        a = (length // d) * d
        b = length - a
        return length - b + (i % d) - 2 * r * d if i % d < b else a + (i % d) - k * d
    return i - r * d


def _brute_na(q, k, v, rpb, ks, d):
    """q, k, v: [H, W, heads, dim] float64 (q scaled); per-query loop over its ks x ks neighbors."""
    H, W, heads, _ = q.shape
    out = torch.zeros_like(q)
    for i in range(H):
        rows = [_window_start(i, H, ks, d) + a * d for a in range(ks)]
        for j in range(W):
            cols = [_window_start(j, W, ks, d) + b * d for b in range(ks)]
            keys = torch.stack([k[y, x] for y in rows for x in cols])  # [ks*ks, heads, dim]
            vals = torch.stack([v[y, x] for y in rows for x in cols])
            bias = torch.stack([rpb[:, (y - i) // d + ks - 1, (x - j) // d + ks - 1] for y in rows for x in cols])
            logits = torch.einsum("hc,nhc->nh", q[i, j], keys) + bias
            out[i, j] = torch.einsum("nh,nhc->hc", logits.softmax(0), vals)
    return out


def _oracle_forward(model, image):
    """Official NAT forward for one image [3, H, W] using ``model``'s parameters; returns (stage maps, logits)."""
    sd = {k: v.double() for k, v in model.state_dict().items()}

    def ln(x, prefix):
        return F.layer_norm(x, x.shape[-1:], sd[prefix + ".weight"], sd[prefix + ".bias"], eps=1e-5)

    def lin(x, prefix):
        return x @ sd[prefix + ".weight"].T + sd[prefix + ".bias"]

    x = image.double()[None]
    x = F.conv2d(x, sd["patch_embed.proj.0.weight"], sd["patch_embed.proj.0.bias"], stride=2, padding=1)
    x = F.conv2d(x, sd["patch_embed.proj.1.weight"], sd["patch_embed.proj.1.bias"], stride=2, padding=1)
    x = ln(x[0].permute(1, 2, 0), "patch_embed.norm")
    stages = []
    for s, stage in enumerate(model.stages):
        if s > 0:
            x = F.conv2d(x.permute(2, 0, 1)[None], sd[f"stages.{s}.downsample.reduction.weight"], stride=2, padding=1)
            x = ln(x[0].permute(1, 2, 0), f"stages.{s}.downsample.norm")
        for b, block in enumerate(stage.blocks):
            p = f"stages.{s}.blocks.{b}."
            ks, d = block.attn.kernel_size[0], block.attn.dilation[0]
            heads = block.attn.num_heads
            H, W, C = x.shape
            y = ln(x, p + "norm1")
            ph, pw = max(0, ks * d - H), max(0, ks * d - W)  # NATTEN 0.14 module: zero-pad small maps
            y = F.pad(y, (0, 0, 0, pw, 0, ph))
            qkv = lin(y, p + "attn.qkv").reshape(H + ph, W + pw, 3, heads, C // heads)
            q, k, v = qkv.unbind(2)
            y = _brute_na(q * (C // heads) ** -0.5, k, v, sd[p + "attn.rpb"], ks, d)[:H, :W].reshape(H, W, C)
            y = lin(y, p + "attn.proj")
            x = x + (sd[p + "gamma1"] * y if p + "gamma1" in sd else y)
            y = lin(F.gelu(lin(ln(x, p + "norm2"), p + "mlp.fc1")), p + "mlp.fc2")
            x = x + (sd[p + "gamma2"] * y if p + "gamma2" in sd else y)
        stages.append(x)
    logits = lin(ln(x, "norm").mean((0, 1)), "head.fc")
    return stages, logits


def test_forward_matches_float64_oracle_odd_size():
    torch.manual_seed(0)
    model = _tiny_nat().eval().double()
    with torch.no_grad():
        for n, p in model.named_parameters():  # make every term matter (default gammas, zero biases hide bugs)
            p.copy_(torch.randn_like(p) * (0.3 if p.ndim != 1 else 0.5) + (1.0 if "norm" in n and "weight" in n else 0))
    image = torch.randn(3, 45, 71, dtype=torch.float64)  # maps 12x18, 6x9, 3x5, 2x3: odd, some below k*d
    ref_stages, ref_logits = _oracle_forward(model, image)
    with torch.no_grad():
        final, inters = model.forward_intermediates(image[None], output_fmt="NHWC")
        logits = model.forward_head(final)
    for ref, got in zip(ref_stages, inters):
        assert got.shape[1:] == ref.shape
        torch.testing.assert_close(got[0], ref, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(logits[0], ref_logits, rtol=1e-9, atol=1e-9)


# --------------------------------------------------------------------------------------------------------------
# Official checkpoints: layout conversion and parameter counts.

def _random_official(name, device="meta"):
    keys = _fixture(name)["keys"]
    return {k: torch.empty(shape, device=device) for k, shape in keys.items()}


@pytest.mark.parametrize("fixture", sorted(FIXTURE_MODELS))
def test_official_layout_converts_and_loads_strict(fixture):
    with torch.device("meta"):
        model = timm.create_model(FIXTURE_MODELS[fixture])
    wrapped = {"model": _random_official(fixture), "epoch": 300}
    converted = checkpoint_filter_fn(wrapped, model)
    assert set(converted) == set(model.state_dict())
    model.load_state_dict(converted, strict=True, assign=True)


def test_conversion_moves_tensors_to_the_right_keys():
    official = _random_official("nat_mini", device="cpu")
    for v in official.values():
        v.normal_()
    with torch.device("meta"):
        model = timm.create_model("nat_mini")
    converted = checkpoint_filter_fn({"state_dict": official}, model)
    # the downsampler at the end of official level i enters our stage i + 1
    assert converted["stages.1.downsample.reduction.weight"] is official["levels.0.downsample.reduction.weight"]
    assert converted["stages.3.downsample.norm.bias"] is official["levels.2.downsample.norm.bias"]
    assert converted["stages.2.blocks.5.attn.rpb"] is official["levels.2.blocks.5.attn.rpb"]
    assert converted["head.fc.weight"] is official["head.weight"]
    assert converted["patch_embed.proj.1.weight"] is official["patch_embed.proj.1.weight"]


def test_rpb_resized_bicubically_when_kernel_differs():
    small = dict(depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 4), embed_dim=16, kernel_size=7, num_classes=3)
    src = NAT(**small)
    dst = NAT(**{**small, "kernel_size": 11})
    # build the official layout straight from our keys: stages.{i}.downsample -> levels.{i-1}.downsample
    official = {}
    for k, v in src.state_dict().items():
        parts = k.split(".")
        if parts[0] == "stages" and parts[2] == "downsample":
            k = ".".join(["levels", str(int(parts[1]) - 1)] + parts[2:])
        elif parts[0] == "stages":
            k = ".".join(["levels"] + parts[1:])
        elif k.startswith("head.fc."):
            k = "head." + k[len("head.fc."):]
        official[k] = v
    table = torch.full((1, 13, 13), 0.25)
    table[0, 6, 6] = 1.0
    official["levels.0.blocks.0.attn.rpb"] = table
    converted = checkpoint_filter_fn(official, dst)
    rpb = converted["stages.0.blocks.0.attn.rpb"]
    assert rpb.shape == (1, 21, 21)
    expected = F.interpolate(table[None], size=(21, 21), mode="bicubic", align_corners=False)[0]
    torch.testing.assert_close(rpb, expected)
    assert converted["stages.3.blocks.0.attn.rpb"].shape == (4, 21, 21)
    dst.load_state_dict(converted, strict=True)


def test_conversion_reports_missing_and_unexpected_keys():
    with torch.device("meta"):
        model = timm.create_model("dinat_mini")
    official = _random_official("dinat_mini")
    del official["levels.1.blocks.2.attn.rpb"]
    official["levels.9.blocks.0.gamma1"] = torch.empty(3, device="meta")
    with pytest.raises(ValueError, match=r"(?s)missing keys: stages\.1\.blocks\.2\.attn\.rpb.*unexpected keys: "
                                         r"stages\.9\.blocks\.0\.gamma1"):
        checkpoint_filter_fn(official, model)
    with torch.device("meta"):
        other = timm.create_model("nat_small")  # layer scale, other widths
    with pytest.raises(ValueError, match="wrong shapes"):
        checkpoint_filter_fn(_random_official("dinat_mini"), other)


@pytest.mark.parametrize("name", sorted(PUBLISHED_M))
def test_parameter_counts(name):
    with torch.device("meta"):
        model = timm.create_model(name)
    count = sum(p.numel() for p in model.parameters())
    assert count == _fixture(name)["num_params"]
    assert abs(count / 1e6 - PUBLISHED_M[name]) < 1  # the papers round (51 for 50.7M) or truncate (200 for 200.9M)


def test_pretrained_tags_set_the_architecture():
    with torch.device("meta"):
        m384 = timm.create_model("dinat_large.in22k_ft_in1k_384")
        m11 = timm.create_model("dinat_large.in22k_ft_in1k_384_11x11")
        m22k = timm.create_model("dinat_large.in22k")
    assert [b.attn.dilation[0] for b in m384.stages[0].blocks] == [1, 13, 1]
    assert [b.attn.dilation[0] for b in m384.stages[2].blocks][:4] == [1, 3, 1, 3]
    assert m11.stages[1].blocks[0].attn.kernel_size == (11, 11)
    assert [b.attn.dilation[0] for b in m11.stages[0].blocks] == [1, 8, 1]
    assert m384.pretrained_cfg["input_size"] == (3, 384, 384)
    assert m22k.num_classes == 21841
    for model in (m384, m11, m22k):
        assert model.pretrained_cfg["license"] == "mit"
        assert model.pretrained_cfg["url"].startswith("https://shi-labs.com/projects/dinat/checkpoints/")


def test_local_official_file_loads_through_pretrained_cfg_overlay(tmp_path):
    official = _random_official("nat_mini", device="cpu")
    torch.manual_seed(0)
    for v in official.values():
        v.normal_()
    path = tmp_path / "nat_mini.pth"
    torch.save({"model": official}, path)
    model = timm.create_model("nat_mini", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    torch.testing.assert_close(
        model.stages[2].downsample.reduction.weight, official["levels.1.downsample.reduction.weight"])
    torch.testing.assert_close(model.head.fc.bias, official["head.bias"])
    # a different class count re-initialises only the classifier
    model = timm.create_model("nat_mini", pretrained=True, num_classes=5, pretrained_cfg_overlay=dict(file=str(path)))
    assert model.head.fc.weight.shape == (5, 512)
    torch.testing.assert_close(model.stages[0].blocks[1].attn.rpb, official["levels.0.blocks.1.attn.rpb"])


def test_manifest_rows_cover_every_pretrained_tag():
    manifest = json.loads((Path(__file__).resolve().parents[2] / "weights" / "manifest.json").read_text())
    rows = {(r["model"], r["tag"]): r for r in manifest["nat"]}
    for name in timm.list_models(["nat_*", "dinat_*"], pretrained=True):
        model, tag = name.split(".")
        if model not in PUBLISHED_M:
            continue
        row = rows[(model, tag)]
        cfg = timm.models.get_pretrained_cfg(name)
        assert row["url"] == cfg.url and row["license"] == "mit"
        assert row["img_size"] == cfg.input_size[-1]
    assert len(rows) == 13


# --------------------------------------------------------------------------------------------------------------
# Forward shapes on real variants (the smallest ones; CPU time matters).

def test_nat_mini_forward_224():
    torch.manual_seed(0)
    model = timm.create_model("nat_mini").eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 224, 224))
    assert out.shape == (1, 1000) and torch.isfinite(out).all()


def test_dinat_mini_odd_size_and_batch_of_two_equals_singles():
    torch.manual_seed(0)
    model = timm.create_model("dinat_mini").eval()  # stage 1 runs dilation 8 on a 50x74 map: padded to 56
    x = torch.randn(2, 3, 200, 296)
    with torch.no_grad():
        feats = model.forward_features(x)
        second = model.forward_features(x[1:])  # the second item is where batch-stride bugs show
    assert feats.shape == (2, 7, 10, 512)
    torch.testing.assert_close(feats[1:], second, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(feats[0], feats[1])
    logits = model.forward_head(feats)
    assert logits.shape == (2, 1000) and torch.isfinite(logits).all()


def test_features_only_dinat_tiny():
    model = timm.create_model("dinat_tiny", features_only=True).eval()
    assert model.feature_info.channels() == [64, 128, 256, 512]
    assert model.feature_info.reduction() == [4, 8, 16, 32]
    assert model.feature_info.module_name() == ["stages.0", "stages.1", "stages.2", "stages.3"]
    with torch.no_grad():
        feats = model(torch.randn(1, 3, 100, 132))
    assert [tuple(f.shape) for f in feats] == [(1, 64, 25, 33), (1, 128, 13, 17), (1, 256, 7, 9), (1, 512, 4, 5)]
    model = timm.create_model("dinat_tiny", features_only=True, out_indices=(1, 3))
    assert model.feature_info.reduction() == [8, 32]


@pytest.mark.slow
def test_dinat_tiny_coco_dilations_512():
    torch.manual_seed(0)
    # stage-1 dilation 28 needs a 196-wide map; at 512 it is 128: the layers pad, as NATTEN 0.14 did
    model = timm.create_model("dinat_tiny", features_only=True, dilations=DINAT_TINY_DILATIONS_COCO).eval()
    assert [b.attn.dilation[0] for b in model.model.stages[0].blocks] == [1, 28, 1]
    with torch.no_grad():
        feats = model(torch.randn(1, 3, 512, 512))
    assert [tuple(f.shape[1:]) for f in feats] == [(64, 128, 128), (128, 64, 64), (256, 32, 32), (512, 16, 16)]
    assert all(torch.isfinite(f).all() for f in feats)


# --------------------------------------------------------------------------------------------------------------
# timm contract on a tiny configuration.

def test_forward_intermediates_features_and_prune():
    torch.manual_seed(0)
    model = _tiny_nat().eval()
    x = torch.randn(2, 3, 37, 50)
    with torch.no_grad():
        final, inters = model.forward_intermediates(x)
        features = model.forward_features(x)
        only = model.forward_intermediates(x, indices=[0, 2], intermediates_only=True)
        normed = model.forward_intermediates(x, indices=1, norm=True, intermediates_only=True)
    assert [tuple(t.shape) for t in inters] == [(2, 16, 10, 13), (2, 32, 5, 7), (2, 64, 3, 4), (2, 128, 2, 2)]
    torch.testing.assert_close(final, features)
    torch.testing.assert_close(only[1], inters[2])
    torch.testing.assert_close(normed[0], model.norm(inters[3].permute(0, 2, 3, 1)).permute(0, 3, 1, 2))
    assert model.forward_head(final, pre_logits=True).shape == (2, 128)
    torch.testing.assert_close(model.forward_head(final, pre_logits=True), final.mean((1, 2)))

    kept = model.prune_intermediate_layers(indices=[1])
    assert kept == [1] and len(model.stages) == 2 and model.num_classes == 0
    with torch.no_grad():
        _, again = model.forward_intermediates(x, indices=[1])
        unpooled = model(x)  # timm: a pruned head has no pooling
    torch.testing.assert_close(again[0], inters[1])
    assert unpooled.shape == (2, 5, 7, 32)


def test_classifier_reset_no_weight_decay_and_groups():
    model = _tiny_nat()
    assert model.get_classifier().out_features == 7
    model.reset_classifier(4)
    assert model.get_classifier().out_features == 4 and model(torch.randn(1, 3, 32, 32)).shape == (1, 4)
    model.reset_classifier(0)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 128)

    nwd = model.no_weight_decay()
    params = dict(model.named_parameters())
    assert {n for n in params if n.endswith("attn.rpb")} <= nwd
    assert {"patch_embed.norm.weight", "stages.1.downsample.norm.bias", "stages.1.blocks.1.norm2.weight",
            "norm.weight"} <= nwd
    assert not any("qkv" in n or "fc1" in n or "gamma" in n for n in nwd)
    assert nwd <= set(params)

    for coarse in (False, True):
        groups = timm.models.group_parameters(model, model.group_matcher(coarse=coarse))
        names = [n for group in groups.values() for n in group]
        assert sorted(names) == sorted(params)  # every parameter in exactly one group
        first, last = groups[min(groups)], groups[max(groups)]
        assert "patch_embed.proj.0.weight" in first and "norm.weight" in last
        stage_of = {n: gid for gid, group in groups.items() for n in group}
        if coarse:  # one group per stage, downsampler included
            assert stage_of["stages.1.downsample.reduction.weight"] == stage_of["stages.1.blocks.1.attn.rpb"]
            assert len({stage_of[f"stages.{i}.blocks.0.norm1.weight"] for i in range(4)}) == 4
        else:  # a block per group, in depth order
            assert stage_of["stages.1.blocks.0.attn.rpb"] < stage_of["stages.1.blocks.1.attn.rpb"]


def test_grad_checkpointing_and_backward_reaches_every_parameter():
    torch.manual_seed(0)
    model = _tiny_nat().double()
    x = torch.randn(2, 3, 33, 41, dtype=torch.float64)
    model(x).square().sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    missing = [n for n, g in grads.items() if g is None or not torch.any(g != 0)]
    assert not missing, f"no gradient reached {missing}"
    model.zero_grad()
    model.set_grad_checkpointing(True)
    model(x).square().sum().backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads[n], rtol=1e-10, atol=1e-12, msg=n)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="dilations"):
        NAT(depths=(1, 2), num_heads=(1, 2), embed_dim=16, dilations=([1], [1, 2, 3]))
    with pytest.raises(ValueError, match="kernel_size"):
        NAT(depths=(1, 2), num_heads=(1, 2), embed_dim=16, kernel_size=[3, 5, 7])
    with pytest.raises(ValueError, match="num_heads"):
        NAT(depths=(1, 2, 3), num_heads=(1, 2), embed_dim=16)
    with pytest.raises(ValueError, match="output_fmt"):
        _tiny_nat().forward_intermediates(torch.randn(1, 3, 32, 32), output_fmt="NLC")


def test_per_layer_kernel_sizes():
    model = NAT(depths=(2, 1), num_heads=(1, 2), embed_dim=16, kernel_size=([3, 5], 7), num_classes=0)
    assert [b.attn.kernel_size[0] for b in model.stages[0].blocks] == [3, 5]
    assert model.stages[1].blocks[0].attn.rpb.shape == (2, 13, 13)
    assert model(torch.randn(1, 3, 20, 28)).shape == (1, 32)


# --------------------------------------------------------------------------------------------------------------
# Backends (the Triton-vs-reference whole-model test lives in tests/ops/test_model_kernels.py).

@pytest.mark.gpu
def test_cuda_default_backend_matches_cpu_reference():
    torch.manual_seed(0)
    model = timm.create_model("dinat_mini").eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        ref = model(x)
        got = model.cuda()(x.cuda()).cpu()
    torch.testing.assert_close(got, ref, rtol=2e-3, atol=2e-3)
