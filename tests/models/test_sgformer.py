"""SG-Former: official checkpoint layout, parameter counts, reallocation rule, any input size, timm contract.

Oracles: key names / shapes and parameter counts dumped from the official code (tests/fixtures/official_keys,
OliverRensu/SG-Former@b982803), an official-layout mapping written here independently of the converter and checked
against those keys, a hand-computed token reallocation, and per-image / repeated-run equalities. Output parity with
the official code itself (float64, 224, every stage) was shown by running it outside the project; the official
code has no licence, so it is not vendored here.
"""
import argparse
import importlib
import json
import re
import sys
from pathlib import Path

import pytest
import torch
import timm

from visionattn.models.sgformer import SGFormer, checkpoint_filter_fn, reallocate_tokens

importlib.import_module("visionattn.models")  # registers the models

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "official_keys"
VARIANTS = ("sgformer_s", "sgformer_m", "sgformer_b")
# the official code's counts (backbones.md §5.6); the paper rounds them to 23 / 39 / 78 M
OFFICIAL_PARAMS = {"sgformer_s": 22_545_981, "sgformer_m": 38_689_316, "sgformer_b": 77_950_293}

# a small SG-Former with every block kind (hybrid / guided with 3 and 2 merges / global), official merge groups
TINY = dict(embed_dims=(16, 32, 64, 64), depths=(2, 2, 2, 1), num_heads=(2, 2, 4, 4))


def _fixture(name):
    return json.loads((FIXTURES / f"{name}.json").read_text())


def _to_official(key: str) -> str:
    """Our key -> the official one, written from the official module names (the inverse of the converter)."""
    m = re.match(r"stem\.conv(\d)\.(conv|norm)\.(.*)", key)
    if m:
        return f"patch_embed1.conv.{2 * (int(m.group(1)) - 1)}.{'c' if m.group(2) == 'conv' else 'bn'}.{m.group(3)}"
    if key.startswith("stem.norm."):
        return "patch_embed1.norm." + key[len("stem.norm."):]
    m = re.match(r"stages\.(\d)\.downsample\.(conv\d)\.(conv|norm)\.(.*)", key)
    if m:
        return f"patch_embed{int(m.group(1)) + 1}.{m.group(2)}.{'c' if m.group(3) == 'conv' else 'bn'}.{m.group(4)}"
    m = re.match(r"stages\.(\d)\.blocks\.(\d+)\.(.*)", key)
    if m:
        rest = m.group(3).replace("attn.lepe.", "attn.").replace("mlp.dwconv.", "mlp.dwconv.dwconv.")
        rest = re.sub(r"attn\.merge\.(\d)\.", lambda g: f"attn.f{int(g.group(1)) + 1}.", rest)
        return f"block{int(m.group(1)) + 1}.{m.group(2)}.{rest}"
    m = re.match(r"stages\.(\d)\.norm\.(.*)", key)
    if m:
        return f"norm{int(m.group(1)) + 1}.{m.group(2)}"
    if key.startswith("head.fc."):
        return "head." + key[len("head.fc."):]
    return key  # pos_embed


def _official_state_dict(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {_to_official(k): torch.randn(v.shape, generator=g) for k, v in model.state_dict().items()}


def _tiny(**kwargs):
    return SGFormer(**dict(TINY, **kwargs))


# -- official checkpoint layout ----------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", VARIANTS)
def test_parameter_counts(variant):
    with torch.device("meta"):
        model = timm.create_model(variant)
    count = sum(p.numel() for p in model.parameters())
    assert count == OFFICIAL_PARAMS[variant] == _fixture(variant)["num_params"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_official_keys_convert_and_load(variant):
    """Official names / shapes -> our filter -> strict load; every official tensor is used."""
    keys = _fixture(variant)["keys"]
    official = {k: torch.empty(shape, device="meta") for k, shape in keys.items()}
    with torch.device("meta"):
        model = timm.create_model(variant)
    converted = checkpoint_filter_fn(official, model)
    model.load_state_dict(converted, strict=True, assign=True)
    assert len(converted) == len(keys)
    # the test's own inverse mapping gives exactly the official names and shapes
    assert {_to_official(k): list(v.shape) for k, v in model.state_dict().items()} == keys


def test_random_official_state_dict_converts_and_loads_every_variant_small():
    """Real tensors (not meta): a random official-layout state dict lands value for value on the mapped keys."""
    model = _tiny()
    official = _official_state_dict(model)
    converted = checkpoint_filter_fn(official, model)
    model.load_state_dict(converted, strict=True)
    sd = model.state_dict()
    for ours, theirs in (("stem.conv1.conv.weight", "patch_embed1.conv.0.c.weight"),
                         ("stem.conv3.norm.bias", "patch_embed1.conv.4.bn.bias"),
                         ("stages.1.downsample.conv2.conv.weight", "patch_embed2.conv2.c.weight"),
                         ("stages.0.blocks.1.attn.merge.2.weight", "block1.1.attn.f3.weight"),
                         ("stages.2.blocks.1.attn.merge.1.bias", "block3.1.attn.f2.bias"),
                         ("stages.0.blocks.0.attn.lepe.lepe_conv.weight", "block1.0.attn.lepe_conv.weight"),
                         ("stages.3.blocks.0.mlp.dwconv.weight", "block4.0.mlp.dwconv.dwconv.weight"),
                         ("stages.3.norm.weight", "norm4.weight"), ("head.fc.weight", "head.weight"),
                         ("pos_embed", "pos_embed")):
        assert torch.equal(sd[ours], official[theirs]), ours


def test_checkpoint_saver_file_prefers_ema(tmp_path):
    """A released-style .pth.tar (timm CheckpointSaver: state_dict, state_dict_ema, args, ...) loads the EMA
    weights through timm's pretrained path and through tools/convert_checkpoint.py."""
    model = _tiny()
    ema = _official_state_dict(model, seed=1)
    raw = {k: v + 1 for k, v in ema.items()}
    path = tmp_path / "sgformer_tiny.pth.tar"
    torch.save({"epoch": 3, "arch": "sgformer_s", "state_dict": raw, "optimizer": {}, "version": 2,
                "args": argparse.Namespace(model="sgformer_s"), "amp_scaler": {}, "state_dict_ema": ema,
                "metric": 80.0}, path)
    loaded = timm.create_model("sgformer_s.in1k", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)),
                               **TINY)
    assert torch.equal(loaded.stages[0].blocks[1].attn.merge[0].weight, ema["block1.1.attn.f1.weight"])
    other = timm.create_model("sgformer_s.in1k", pretrained=True, num_classes=7,
                              pretrained_cfg_overlay=dict(file=str(path)), **TINY)
    assert torch.equal(other.pos_embed, ema["pos_embed"]) and other.head.fc.weight.shape == (7, 64)

    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import convert_checkpoint
    finally:
        sys.path.remove(str(ROOT / "tools"))
    converted_model, sd = convert_checkpoint.convert("sgformer_s", str(path), model_kwargs=TINY)
    assert torch.equal(sd["stem.norm.weight"], ema["patch_embed1.norm.weight"])


def test_filter_rejects_foreign_and_mismatched_checkpoints():
    model = _tiny()
    with pytest.raises(ValueError, match="not an SG-Former checkpoint"):
        checkpoint_filter_fn({"conv1.weight": torch.zeros(1)}, model)
    sd = dict(model.state_dict())
    sd.pop("stages.1.blocks.1.attn.merge.0.weight")
    with pytest.raises(ValueError, match="missing keys: stages.1.blocks.1.attn.merge.0.weight"):
        checkpoint_filter_fn(sd, model)


def test_pos_embed_of_another_grid_is_resized():
    model = _tiny(img_size=160)  # grid 40
    official = _official_state_dict(_tiny())  # grid 56
    sd = checkpoint_filter_fn(official, model)
    assert sd["pos_embed"].shape == (1, 40 * 40, 16)
    model.load_state_dict(sd, strict=True)


# -- the reallocation rule ---------------------------------------------------------------------------------------

def test_reallocation_hand_computed():
    """N = 10, merges of 3 / 2 / 2: parts [0, 2), [2, 6), [6, 10) of the sorted tokens (at N // 4, N // 4 * 3);
    incomplete groups are completed by repeating their part's last token; equal significances keep token order."""
    x = torch.arange(10, dtype=torch.float64).reshape(1, 10, 1) * 10 + 1  # token i has value 10 i + 1
    sig = torch.tensor([[5., 1., 1., 0., 9., 3., 3., 3., 7., 2.]], dtype=torch.float64)
    # stable ascending order: 3, 1, 2, 9, 5, 6, 7, 0, 8, 4
    weights = [torch.tensor([[1., 10., 100.]], dtype=torch.float64), torch.tensor([[1., 10.]], dtype=torch.float64),
               torch.tensor([[1., -1.]], dtype=torch.float64)]
    biases = [torch.zeros(1, dtype=torch.float64)] * 3
    out = reallocate_tokens(x, sig, weights, biases)[0, :, 0]
    v = [10 * i + 1 for i in (3, 1, 2, 9, 5, 6, 7, 0, 8, 4)]
    expected = [
        v[0] + 10 * v[1] + 100 * v[1],  # part 1 = sorted[0:2], one group of 3, last token repeated
        v[2] + 10 * v[3], v[4] + 10 * v[5],  # part 2 = sorted[2:6], groups of 2
        v[6] - v[7], v[8] - v[9],  # part 3 = sorted[6:10]
    ]
    assert out.tolist() == expected


def test_reallocation_two_merges_and_official_counts():
    # the official token counts at 224: 60 / 60 / 147 keys
    for n, groups, keys in ((56 * 56, (196, 56, 28), 60), (28 * 28, (49, 14, 7), 60), (14 * 14, (2, 1), 147)):
        x = torch.randn(2, n, 3)
        out = reallocate_tokens(x, torch.rand(2, n), [torch.ones(1, g) for g in groups],
                                [torch.zeros(1) for _ in groups])
        assert out.shape == (2, keys, 3)
    # N = 7: parts of 1 / 4 / 2 tokens, each smaller than its group: one token each; N = 3: parts 0 / 0 / 3
    merges = [torch.ones(1, 196), torch.ones(1, 56), torch.ones(1, 28)], [torch.zeros(1)] * 3
    assert reallocate_tokens(torch.randn(1, 7, 2), torch.rand(1, 7), *merges).shape == (1, 3, 2)
    assert reallocate_tokens(torch.randn(1, 3, 2), torch.rand(1, 3), *merges).shape == (1, 1, 2)


# -- any input size, features, determinism -----------------------------------------------------------------------

@pytest.mark.parametrize("size", [(224, 224), (320, 320), (97, 131), (512, 512)])
def test_forward_sizes_and_features_only(size):
    torch.manual_seed(0)
    model = _tiny().eval()
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        logits = model(x)
        feats = model.forward_intermediates(x, intermediates_only=True)
    assert logits.shape == (1, 1000) and torch.isfinite(logits).all()
    h, w = (size[0] + 1) // 2, (size[1] + 1) // 2  # every stride-2 step rounds up
    for i, f in enumerate(feats):
        h, w = (h + 1) // 2, (w + 1) // 2
        assert f.shape == (1, TINY["embed_dims"][i], h, w), (i, f.shape)


def test_real_variant_at_224_and_features_only_strides():
    torch.manual_seed(0)
    model = timm.create_model("sgformer_s", features_only=True).eval()
    assert model.feature_info.reduction() == [4, 8, 16, 32]
    assert model.feature_info.channels() == [64, 128, 256, 512]
    with torch.no_grad():
        feats = model(torch.randn(1, 3, 224, 224))
    assert [tuple(f.shape) for f in feats] == [(1, 64, 56, 56), (1, 128, 28, 28), (1, 256, 14, 14), (1, 512, 7, 7)]


def test_backward_reaches_every_parameter():
    torch.manual_seed(0)
    model = _tiny(num_classes=5).train()  # no dropout / drop path: deterministic
    x = torch.randn(2, 3, 75, 90)
    model(x).square().sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    model.set_grad_checkpointing(True)
    model(x).square().sum().backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads[n], msg=n)


@pytest.mark.parametrize("size", [(224, 224), (100, 76)])
def test_batch_independent_and_deterministic(size):
    """A batch of 2 equals each image alone (the stable sort ignores the rest of the batch), twice over."""
    torch.manual_seed(0)
    model = _tiny().eval()
    x = torch.randn(2, 3, *size)
    x[1, :, : size[0] // 2] = 0.  # flat regions: ties in the significance map
    with torch.no_grad():
        both = model(x)
        alone = torch.cat([model(x[:1]), model(x[1:])])
        again = model(x)
    torch.testing.assert_close(both, alone, atol=1e-5, rtol=1e-5)
    assert torch.equal(both, again)


def test_float64_and_contract_bits():
    model = _tiny(num_classes=3).double().eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64, dtype=torch.float64)).dtype == torch.float64
    model.reset_classifier(0)
    assert model(torch.randn(1, 3, 64, 64, dtype=torch.float64)).shape == (1, 64)
    groups = model.group_matcher()
    assert groups["stem"] == r"^stem|^pos_embed"
    with pytest.raises(ValueError, match="num_heads"):
        SGFormer(**dict(TINY, num_heads=(1, 2, 4, 4)))
