"""ViG-H and plain ViG: official checkpoint layout, parameter counts, shapes, timm contract.

Oracles: key names/shapes dumped from the official hustvl/ViG model code (tests/fixtures/official_keys), the
official parameter counts, and a float64 functional re-implementation of the official forward written here
from the definitions (reference/backbones.md §6), reading the *official* key layout, so that the converter and
the model are checked together. (Parity with the official code itself, run under /tmp with a recurrence in
place of its fla kernels, was checked once: max |diff| ~1e-13 in float64; see the commit log.)
"""
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import timm
import timm.optim

import visionattn.models  # noqa: F401  (registers the models)
from visionattn.models.vig import HierarchicalViG, ViG, checkpoint_filter_fn

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "official_keys"
MANIFEST = Path(__file__).resolve().parents[2] / "weights" / "manifest.json"

HIER = {  # official configs (classification/configs/vig-h/*.yaml)
    "vig_h_tiny": dict(embed=96, depths=(2, 2, 5, 2), heads=(3, 6, 12, 24)),
    "vig_h_small": dict(embed=96, depths=(2, 2, 17, 2), heads=(3, 6, 12, 24)),
    "vig_h_base": dict(embed=128, depths=(2, 2, 17, 2), heads=(4, 8, 16, 32)),
}
PLAIN = {  # classification/configs/vig/*.yaml
    "vig_tiny": dict(embed=192, depth=12, heads=3),
    "vig_small": dict(embed=384, depth=12, heads=6),
    "vig_base": dict(embed=768, depth=12, heads=12),
}
OFFICIAL_PARAMS = {  # counted from the official model code
    "vig_h_tiny": 28_600_680, "vig_h_small": 50_051_688, "vig_h_base": 88_904_360,
    "vig_tiny": 5_834_536, "vig_small": 22_615_144, "vig_base": 89_022_184,
}
PUBLISHED_M = {"vig_h_tiny": 29, "vig_h_small": 50, "vig_h_base": 89, "vig_tiny": 6, "vig_small": 23, "vig_base": 89}


# --------------------------------------------------------------------------------------------------------------
# Official key layouts, written from the official module structure; checked against the dumped fixtures.

def _round_up(value, multiple):
    return multiple * ((value + multiple - 1) // multiple)


def _gla_shapes(prefix, c, low_rank=16):
    return {
        prefix + "in_proj.0.weight": [c, 1, 3, 3], prefix + "qkv_proj.weight": [2 * c, c],
        prefix + "gk_proj.0.weight": [low_rank, c], prefix + "gk_proj.1.weight": [c, low_rank],
        prefix + "gk_proj.1.bias": [c], prefix + "o_proj.weight": [c, c],
        prefix + "g_norm.weight": None, prefix + "l_norm.weight": None,
        prefix + "g_proj.weight": [c, c], prefix + "g_proj.bias": [c],
    }


def official_hier_shapes(embed, depths, heads, num_classes=1000):
    dims = [embed * 2 ** i for i in range(len(depths))]
    s = {"patch_embed.0.weight": [dims[0] // 2, 3, 3, 3], "patch_embed.0.bias": [dims[0] // 2],
         "patch_embed.2.weight": [dims[0] // 2], "patch_embed.2.bias": [dims[0] // 2],
         "patch_embed.5.weight": [dims[0], dims[0] // 2, 3, 3], "patch_embed.5.bias": [dims[0]],
         "patch_embed.7.weight": [dims[0]], "patch_embed.7.bias": [dims[0]]}
    for i, (c, depth, h) in enumerate(zip(dims, depths, heads)):
        hidden = _round_up(int(c * 4 * 2 / 3), 32)
        for j in range(depth):
            p = f"layers.{i}.blocks.{j}."
            s.update({p + "norm.weight": [c], p + "norm.bias": [c]})
            g = _gla_shapes(p + "op.", c)
            g[p + "op.g_norm.weight"] = g[p + "op.l_norm.weight"] = [c // h]
            s.update(g)
            s.update({p + "norm2.weight": [c], p + "norm2.bias": [c],
                      p + "mlp.fc1.weight": [2 * hidden, c], p + "mlp.fc2.weight": [c, hidden]})
        if i < len(depths) - 1:
            s.update({f"layers.{i}.downsample.1.weight": [dims[i + 1], c, 3, 3],
                      f"layers.{i}.downsample.1.bias": [dims[i + 1]],
                      f"layers.{i}.downsample.3.weight": [dims[i + 1]],
                      f"layers.{i}.downsample.3.bias": [dims[i + 1]]})
    s.update({"classifier.norm.weight": [dims[-1]], "classifier.norm.bias": [dims[-1]],
              "classifier.head.weight": [num_classes, dims[-1]], "classifier.head.bias": [num_classes]})
    return s


def official_plain_shapes(embed, depth, heads, grid=14, num_classes=1000):
    c = embed
    hidden = _round_up(int(c * 4 * 2 / 3), 256)
    s = {"pos_embed": [1, grid * grid, c],
         "patch_embed.proj.0.weight": [c // 2, 3, 9, 9], "patch_embed.proj.0.bias": [c // 2],
         "patch_embed.proj.1.weight": [c // 2], "patch_embed.proj.1.bias": [c // 2],
         "patch_embed.proj.3.weight": [c, c // 2, 3, 3], "patch_embed.proj.3.bias": [c],
         "patch_embed.proj.4.weight": [c], "patch_embed.proj.4.bias": [c],
         "head.weight": [num_classes, c], "head.bias": [num_classes], "norm.weight": [c]}
    for i in range(depth):
        p = f"blocks.{i}."
        g = _gla_shapes(p + "attn.", c)
        g[p + "attn.g_norm.weight"] = g[p + "attn.l_norm.weight"] = [c // heads]
        s.update(g)
        s.update({p + "attn_norm.weight": [c], p + "mlp_norm.weight": [c],
                  p + "mlp.gate_proj.weight": [2 * hidden, c], p + "mlp.down_proj.weight": [c, hidden]})
    return s


def _fixture(name):
    return json.loads((FIXTURES / f"{name}.json").read_text())


@pytest.mark.parametrize("name", list(HIER) + list(PLAIN))
def test_fixture_matches_written_layout(name):
    """The layout the oracle reads is the official one (names and shapes dumped from the official code)."""
    cfg = HIER.get(name) or PLAIN[name]
    written = official_hier_shapes(**cfg) if name in HIER else official_plain_shapes(**cfg)
    assert _fixture(name)["keys"] == written


def _random_sd(shapes, seed=0, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in shapes.items():
        if device == "meta":
            out[key] = torch.empty(shape, device="meta")
        elif key.endswith(("norm.weight", ".2.weight", ".7.weight", ".3.weight", ".1.weight", ".4.weight")) \
                and len(shape) == 1:
            out[key] = 1 + 0.2 * torch.randn(shape, generator=gen)
        else:
            fan_in = max(1, int(torch.tensor(shape[1:]).prod().item())) if len(shape) > 1 else 1
            out[key] = torch.randn(shape, generator=gen) * (0.2 if len(shape) == 1 else fan_in ** -0.5)
    return out


@pytest.mark.parametrize("name", list(HIER) + list(PLAIN))
def test_fixture_converts_and_loads_strictly(name):
    with torch.device("meta"):
        model = timm.create_model(name)
    keys = _fixture(name)["keys"]
    sd = {k: torch.empty(v, device="meta") for k, v in keys.items()}
    converted = checkpoint_filter_fn(sd, model)
    model.load_state_dict(converted, strict=True, assign=True)
    assert len(converted) == len(keys)


@pytest.mark.parametrize("name", list(OFFICIAL_PARAMS))
def test_parameter_counts(name):
    with torch.device("meta"):
        model = timm.create_model(name)
    count = sum(p.numel() for p in model.parameters())
    assert count == OFFICIAL_PARAMS[name]
    assert round(count / 1e6) == PUBLISHED_M[name]
    assert count == sum(torch.Size(s).numel() for s in _fixture(name)["keys"].values())


# --------------------------------------------------------------------------------------------------------------
# Float64 functional forward of the official models, from the definitions, on the official key layout.

def _scan(q, k, v, g, reverse):
    batch, length, heads, dk = q.shape
    state = q.new_zeros(batch, heads, dk, v.shape[-1])
    out = q.new_zeros(batch, length, heads, v.shape[-1])
    for t in (range(length - 1, -1, -1) if reverse else range(length)):
        state = state * torch.exp(g[:, t])[..., None] + k[:, t, :, :, None] * v[:, t, :, None, :]
        out[:, t] = torch.einsum("bhk,bhkv->bhv", q[:, t] * dk ** -0.5, state)
    return out


def _rms(x, w, eps=1e-6):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def _official_gla2d(sd, p, x, heads, conv_act=False, out_act=False, eval_halves_again=False):
    """Official GLA2D on an NCHW map ``x`` (eval path), returns NCHW."""
    batch, c, height, width = x.shape
    local = F.conv2d(x, sd[p + "in_proj.0.weight"], padding=1, groups=c)
    if conv_act:
        local = F.silu(local)
    tokens = local.flatten(2).transpose(1, 2)
    qkv = tokens @ sd[p + "qkv_proj.weight"].T
    kd = c // 2
    split = lambda t, d: t.reshape(batch, -1, heads, d)  # noqa: E731
    q = split(qkv[..., :kd], kd // heads)
    k = split(qkv[..., kd:2 * kd], kd // heads)
    v = split(qkv[..., 2 * kd:], c // heads)
    gk = F.logsigmoid((tokens @ sd[p + "gk_proj.0.weight"].T) @ sd[p + "gk_proj.1.weight"].T
                      + sd[p + "gk_proj.1.bias"]) / 16
    g_f, g_b = split(gk[..., :kd], kd // heads), split(gk[..., kd:], kd // heads)
    o = (_scan(q, k, v, g_f, False) + _scan(q, k, v, g_b, True)) / 2
    if eval_halves_again:
        o = o / 2
    gate = torch.sigmoid(tokens @ sd[p + "g_proj.weight"].T + sd[p + "g_proj.bias"])
    o = _rms(o, sd[p + "g_norm.weight"]) * split(gate, c // heads) + \
        _rms(split(tokens, c // heads), sd[p + "l_norm.weight"]) * (1 - split(gate, c // heads))
    o = o.reshape(batch, -1, c)
    if out_act:
        o = F.silu(o)
    return (o @ sd[p + "o_proj.weight"].T).transpose(1, 2).reshape(batch, c, height, width)


def _ln2d(x, sd, p):
    normed = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), sd[p + "weight"], sd[p + "bias"], 1e-5)
    return normed.permute(0, 3, 1, 2)


def official_hier_forward(sd, x, depths, heads):
    x = F.conv2d(x, sd["patch_embed.0.weight"], sd["patch_embed.0.bias"], stride=2, padding=1)
    x = F.gelu(_ln2d(x, sd, "patch_embed.2."))
    x = _ln2d(F.conv2d(x, sd["patch_embed.5.weight"], sd["patch_embed.5.bias"], stride=2, padding=1), sd,
              "patch_embed.7.")
    stages = []
    for i, depth in enumerate(depths):
        for j in range(depth):
            p = f"layers.{i}.blocks.{j}."
            x = x + _official_gla2d(sd, p + "op.", _ln2d(x, sd, p + "norm."), heads[i])
            gate, y = F.conv2d(_ln2d(x, sd, p + "norm2."), sd[p + "mlp.fc1.weight"][:, :, None, None]).chunk(2, 1)
            x = x + F.conv2d(F.silu(gate) * y, sd[p + "mlp.fc2.weight"][:, :, None, None])
        stages.append(x)
        if i < len(depths) - 1:
            x = F.conv2d(x, sd[f"layers.{i}.downsample.1.weight"], sd[f"layers.{i}.downsample.1.bias"], stride=2,
                         padding=1)
            x = _ln2d(x, sd, f"layers.{i}.downsample.3.")
    x = _ln2d(x, sd, "classifier.norm.").mean((2, 3))
    return stages, x @ sd["classifier.head.weight"].T + sd["classifier.head.bias"]


def official_plain_forward(sd, x, depth, heads, conv_act, out_act, grid=4):
    x = F.conv2d(x, sd["patch_embed.proj.0.weight"], sd["patch_embed.proj.0.bias"], stride=8, padding=1)
    x = F.silu(_ln2d(x, sd, "patch_embed.proj.1."))
    x = F.conv2d(x, sd["patch_embed.proj.3.weight"], sd["patch_embed.proj.3.bias"], stride=2, padding=1)
    x = _ln2d(x, sd, "patch_embed.proj.4.")
    batch, c, h, w = x.shape
    pos = sd["pos_embed"].reshape(1, grid, grid, c).permute(0, 3, 1, 2)
    if (h, w) != (grid, grid):
        # the official resize_pos_embed interpolates in float32 and casts back
        pos = F.interpolate(pos.float(), size=(h, w), mode="bicubic", align_corners=False).to(pos.dtype)
    x = (x + pos).flatten(2).transpose(1, 2)  # [B, L, C]
    blocks = []
    for i in range(depth):
        p = f"blocks.{i}."
        normed = _rms(x, sd[p + "attn_norm.weight"]).transpose(1, 2).reshape(batch, c, h, w)
        attn = _official_gla2d(sd, p + "attn.", normed, heads, conv_act, out_act, eval_halves_again=True)
        x = x + attn.flatten(2).transpose(1, 2)
        gate, y = (_rms(x, sd[p + "mlp_norm.weight"]) @ sd[p + "mlp.gate_proj.weight"].T).chunk(2, -1)
        x = x + (F.silu(gate) * y) @ sd[p + "mlp.down_proj.weight"].T
        blocks.append(x)
    x = _rms(x, sd["norm.weight"]).mean(1)
    return blocks, x @ sd["head.weight"].T + sd["head.bias"]


TINY_H = dict(embed=16, depths=(1, 1, 2, 1), heads=(1, 2, 2, 4))
TINY_P = dict(embed=16, depth=2, heads=2)


def _tiny_hier(**kw):
    args = dict(embed_dim=TINY_H["embed"], depths=TINY_H["depths"], num_heads=TINY_H["heads"], num_classes=5,
                drop_path_rate=0.0, backend="reference")
    args.update(kw)
    return HierarchicalViG(**args)


def _tiny_plain(**kw):
    args = dict(img_size=64, embed_dim=TINY_P["embed"], depth=TINY_P["depth"], num_heads=TINY_P["heads"],
                conv_act=True, out_act=True, num_classes=5, drop_path_rate=0.0, backend="reference")
    args.update(kw)
    return ViG(**args)


def test_hierarchical_matches_official_forward_float64():
    sd = _random_sd(official_hier_shapes(TINY_H["embed"], TINY_H["depths"], TINY_H["heads"], num_classes=5), seed=1)
    sd = {k: v.double() for k, v in sd.items()}
    model = _tiny_hier().double().eval()
    model.load_state_dict(checkpoint_filter_fn(dict(sd), model))
    x = torch.randn(2, 3, 29, 37, dtype=torch.float64)  # odd, non-square
    want_stages, want_logits = official_hier_forward(sd, x, TINY_H["depths"], TINY_H["heads"])
    with torch.no_grad():
        _, stages = model.forward_intermediates(x)
        logits = model(x)
    assert [s.shape[-2:] for s in stages] == [(8, 10), (4, 5), (2, 3), (1, 2)]
    for got, want in zip(stages, want_stages):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(logits, want_logits, rtol=1e-9, atol=1e-9)


def test_plain_matches_official_eval_forward_float64():
    shapes = official_plain_shapes(TINY_P["embed"], TINY_P["depth"], TINY_P["heads"], grid=4, num_classes=5)
    sd = {k: v.double() for k, v in _random_sd(shapes, seed=2).items()}
    model = _tiny_plain().double().eval()
    model.load_state_dict(checkpoint_filter_fn(dict(sd), model))
    x = torch.randn(2, 3, 75, 53, dtype=torch.float64)  # grid 5x3: the 4x4 pos_embed is resized
    want_blocks, want_logits = official_plain_forward(sd, x, TINY_P["depth"], TINY_P["heads"], True, True)
    with torch.no_grad():
        blocks = model.forward_intermediates(x, output_fmt="NHWC", intermediates_only=True)
        logits = model(x)
    for got, want in zip(blocks, want_blocks):
        torch.testing.assert_close(got.flatten(1, 2), want, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(logits, want_logits, rtol=1e-9, atol=1e-9)


# --------------------------------------------------------------------------------------------------------------
# Converter: wrappers, legacy names, 1x1-conv weights, clear errors.

def test_converter_wrappers_legacy_names_and_conv_shaped_weights():
    shapes = official_hier_shapes(TINY_H["embed"], TINY_H["depths"], TINY_H["heads"], num_classes=5)
    sd = _random_sd(shapes, seed=3)
    model = _tiny_hier()
    want = checkpoint_filter_fn(dict(sd), model)

    legacy = {}
    for key, value in sd.items():
        key = key.replace("patch_embed.0.", "patch_embed.proj.").replace("patch_embed.2.", "patch_embed.norm.")
        key = key.replace(".op.", ".self_attention.").replace(".blocks.0.norm.", ".blocks.0.ln_1.")
        key = key.replace("classifier.norm.", "norm.").replace("classifier.head.", "head.")
        if key.endswith(("qkv_proj.weight", "mlp.fc1.weight", "g_proj.weight")):
            value = value[:, :, None, None]  # Linear2d stored as a 1x1 conv
        legacy["module." + key] = value
    legacy["module.outnorm0.weight"] = torch.ones(16)
    got = checkpoint_filter_fn({"model": legacy, "epoch": 3}, model)
    assert got.keys() == want.keys()
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=0, atol=0)
    # our own layout passes through unchanged
    assert checkpoint_filter_fn(model.state_dict(), model).keys() == model.state_dict().keys()


def test_converter_reports_every_problem():
    shapes = official_hier_shapes(TINY_H["embed"], TINY_H["depths"], TINY_H["heads"], num_classes=5)
    sd = _random_sd(shapes, seed=4)
    del sd["layers.0.blocks.0.op.g_norm.weight"]
    sd["layers.1.blocks.0.op.qkv_proj.weight"] = torch.zeros(3, 3)
    sd["layers.0.blocks.0.op.rotary.freqs"] = torch.zeros(2)
    with pytest.raises(ValueError) as err:
        checkpoint_filter_fn(sd, _tiny_hier())
    text = str(err.value)
    assert "stages.0.blocks.0.attn.g_norm.weight" in text
    assert "stages.1.blocks.0.attn.qkv_proj.weight" in text
    assert "rotary.freqs" in text
    with pytest.raises(ValueError, match="another model or variant"):
        checkpoint_filter_fn(_random_sd(official_plain_shapes(**TINY_P, grid=4)), _tiny_hier())


def test_plain_converter_resizes_pos_embed():
    shapes = official_plain_shapes(TINY_P["embed"], TINY_P["depth"], TINY_P["heads"], grid=4, num_classes=5)
    sd = _random_sd(shapes, seed=5)
    model = _tiny_plain(img_size=96)  # grid 6x6
    out = checkpoint_filter_fn(sd, model)
    assert out["pos_embed"].shape == (1, 36, 16)
    want = F.interpolate(sd["pos_embed"].reshape(1, 4, 4, 16).permute(0, 3, 1, 2), size=(6, 6), mode="bicubic",
                         align_corners=False).flatten(2).transpose(1, 2)
    torch.testing.assert_close(out["pos_embed"], want)


# --------------------------------------------------------------------------------------------------------------
# Full-size shapes, features, the timm contract.

def test_vig_h_tiny_forward_224_and_features_only():
    torch.manual_seed(0)
    model = timm.create_model("vig_h_tiny", features_only=True).eval()
    assert model.feature_info.reduction() == [4, 8, 16, 32]
    assert model.feature_info.channels() == [96, 192, 384, 768]
    with torch.no_grad():
        feats = model(torch.randn(1, 3, 224, 224))
    assert [tuple(f.shape) for f in feats] == [(1, 96, 56, 56), (1, 192, 28, 28), (1, 384, 14, 14), (1, 768, 7, 7)]
    assert all(torch.isfinite(f).all() for f in feats)


def test_vig_h_tiny_logits_224():
    torch.manual_seed(0)
    model = timm.create_model("vig_h_tiny").eval()
    with torch.no_grad():
        y = model(torch.randn(1, 3, 224, 224))
    assert y.shape == (1, 1000) and torch.isfinite(y).all()


def test_odd_non_square_inputs():
    torch.manual_seed(0)
    model = timm.create_model("vig_h_tiny", num_classes=3).eval()
    plain = timm.create_model("vig_tiny", num_classes=3).eval()
    x = torch.randn(1, 3, 97, 131)
    with torch.no_grad():
        assert model(x).shape == (1, 3)
        assert model.forward_features(x).shape == (1, 768, 4, 5)
        assert plain.forward_features(x).shape == (1, 6, 8, 192)  # 97 -> 12 -> 6, 131 -> 16 -> 8
        assert torch.isfinite(plain(x)).all()


def test_plain_features_only_and_intermediates():
    torch.manual_seed(0)
    plain = timm.create_model("vig_tiny", features_only=True, out_indices=(3, 11), depth=12, embed_dim=32,
                              num_heads=2).eval()
    with torch.no_grad():
        out = plain(torch.randn(1, 3, 64, 80))
    assert [tuple(o.shape) for o in out] == [(1, 32, 4, 5), (1, 32, 4, 5)]


def test_forward_intermediates_consistent_with_forward_features():
    torch.manual_seed(0)
    for model in (_tiny_hier().eval(), _tiny_plain().eval()):
        x = torch.randn(2, 3, 48, 64)
        with torch.no_grad():
            final, inters = model.forward_intermediates(x, norm=True)
            features = model.forward_features(x)
        torch.testing.assert_close(final, features)
        last = inters[-1] if isinstance(model, HierarchicalViG) else inters[-1].permute(0, 2, 3, 1)
        torch.testing.assert_close(last, features)
        only = model.forward_intermediates(x, indices=[1], intermediates_only=True, stop_early=True)
        assert len(only) == 1


@pytest.mark.parametrize("make", [_tiny_hier, _tiny_plain])
def test_backward_reaches_every_parameter(make):
    torch.manual_seed(0)
    model = make(drop_path_rate=0.1).train()
    model(torch.randn(2, 3, 40, 56)).square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("make", [_tiny_hier, _tiny_plain])
def test_batch_of_two_equals_singles(make):
    torch.manual_seed(0)
    model = make().eval()
    x = torch.randn(2, 3, 45, 38)
    with torch.no_grad():
        both = model(x)
        singles = torch.cat([model(x[:1]), model(x[1:])])
    torch.testing.assert_close(both, singles, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("make", [_tiny_hier, _tiny_plain])
def test_grad_checkpointing_same_result(make):
    torch.manual_seed(0)
    model = make().eval()
    x = torch.randn(1, 3, 40, 40)
    y0 = model(x)
    y0.sum().backward()
    grads0 = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.set_grad_checkpointing(True)
    y1 = model(x)
    y1.sum().backward()
    torch.testing.assert_close(y1, y0)
    for g0, p in zip(grads0, model.parameters()):
        torch.testing.assert_close(p.grad, g0, rtol=1e-4, atol=1e-6)


def test_classifier_reset_decay_and_groups():
    hier, plain = _tiny_hier(), _tiny_plain()
    assert hier.get_classifier().out_features == 5 and plain.get_classifier().out_features == 5
    hier.reset_classifier(0)
    plain.reset_classifier(0)
    x = torch.randn(1, 3, 32, 32)
    assert hier(x).shape == (1, 128) and plain(x).shape == (1, 16)
    hier.reset_classifier(7)
    assert hier(x).shape == (1, 7)
    assert plain.no_weight_decay() == {"pos_embed"} and hier.no_weight_decay() == set()
    for model in (hier, plain):
        groups = timm.models.group_parameters(model, model.group_matcher())
        assert sum(len(names) for names in groups.values()) == len(list(model.parameters()))
        param_groups = timm.optim.param_groups_layer_decay(model, weight_decay=0.05, layer_decay=0.8)
        assert sum(len(g["params"]) for g in param_groups) == len(list(model.parameters()))


def test_pretrained_cfgs_and_manifest():
    manifest = json.loads(MANIFEST.read_text())["vig"]
    assert {row["model"] for row in manifest} == set(OFFICIAL_PARAMS)
    for row in manifest:
        cfg = timm.models.get_pretrained_cfg(f"{row['model']}.{row['tag']}")
        assert cfg.url == row["url"] and row["url"].startswith("https://huggingface.co/hustvl/ViG/resolve/main/")
        assert cfg.license == row["license"] == "apache-2.0"
        assert len(row["sha256"]) == 64


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_autocast_512_is_finite(dtype):
    torch.manual_seed(0)
    model = timm.create_model("vig_h_tiny", backend="reference").eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=dtype):
        y = model(torch.randn(1, 3, 512, 512))
    assert y.dtype == dtype and torch.isfinite(y).all()
