"""VisionAttnBackbone: registration, outputs against timm's own feature extractor, out_indices, freezing,
norm_eval, gradient checkpointing, checkpoint loading (official layout from the key fixtures), safe globals."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import torch.nn as nn

pytestmark = pytest.mark.mm
pytest.importorskip("mmdet")
pytest.importorskip("mmseg")

import visionattn.mm  # noqa: E402
from visionattn.mm import VisionAttnBackbone  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "official_keys"
# One dual block per stage and narrow: fast on CPU, same code paths as davit_tiny.
SMALL_DAVIT = dict(depths=(1, 1, 1, 1), embed_dims=(16, 32, 48, 64), num_heads=(1, 1, 2, 2))


@pytest.fixture(autouse=True)
def _one_thread():
    # The CI cores are shared by two workers; one thread each avoids oversubscription stalls.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def make_backbone(**kwargs):
    kwargs.setdefault("model_kwargs", dict(SMALL_DAVIT))
    kwargs.setdefault("drop_path_rate", 0.0)
    torch.manual_seed(0)
    return VisionAttnBackbone("davit_tiny", **kwargs)


def layer_norm_channels_f64(x, weight, bias, eps=1e-5):
    """LayerNorm over the channel axis of [B, C, H, W], written out in float64 (the oracle)."""
    x = x.double()
    mean = x.mean(dim=1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=1, keepdim=True)
    y = (x - mean) / torch.sqrt(var + eps)
    return y * weight.double()[None, :, None, None] + bias.double()[None, :, None, None]


def test_registered_in_mmdet_and_mmseg():
    from mmdet.registry import MODELS as DET
    from mmseg.registry import MODELS as SEG

    assert DET.get("VisionAttnBackbone") is VisionAttnBackbone
    assert SEG.get("VisionAttnBackbone") is VisionAttnBackbone
    assert set(visionattn.mm.REGISTERED_IN) == {"mmdet", "mmseg"}
    built = DET.build(dict(type="VisionAttnBackbone", model_name="davit_tiny", model_kwargs=dict(SMALL_DAVIT)))
    assert isinstance(built, VisionAttnBackbone)


def test_import_visionattn_alone_imports_no_openmmlab():
    code = ("import sys, visionattn; bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('mmengine', 'mmcv', 'mmdet', 'mmseg')); print(bad); sys.exit(1 if bad else 0)")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("batch,height,width", [(1, 61, 83), (2, 64, 64), (2, 97, 45)])
def test_outputs_match_timm_features_only(batch, height, width):
    """Oracle: timm's own features_only extractor of the same model, with the same weights."""
    backbone = make_backbone(out_norms=True).eval()
    reference = timm.create_model("davit_tiny", features_only=True, **SMALL_DAVIT).eval()
    # features_only renames stages.i -> stages_i; copy by that rule (every reference key must be filled)
    own = backbone.model.state_dict()
    ref_state = {k: own[k.replace("stages_", "stages.", 1) if k.startswith("stages_") else k]
                 for k in reference.state_dict()}
    reference.load_state_dict(ref_state, strict=True)
    with torch.no_grad():
        for norm in backbone.out_norms:  # non-trivial affine parameters
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.5, 0.5)
    x = torch.randn(batch, 3, height, width)
    with torch.no_grad():
        outs = backbone(x)
        refs = reference(x)
    assert len(outs) == 4
    assert backbone.out_channels == [16, 32, 48, 64] and backbone.out_strides == [4, 8, 16, 32]
    for out, ref, norm, stride in zip(outs, refs, backbone.out_norms, (4, 8, 16, 32)):
        # DaViT pads to the stride and keeps the ceil'ed size
        assert out.shape[0] == batch and out.shape[2] == -(-height // stride) and out.shape[3] == -(-width // stride)
        expected = layer_norm_channels_f64(ref, norm.weight, norm.bias)
        torch.testing.assert_close(out.double(), expected, atol=1e-4, rtol=1e-4)


def test_without_out_norms_returns_raw_stage_outputs():
    backbone = make_backbone(out_norms=False).eval()
    x = torch.randn(2, 3, 64, 80)
    with torch.no_grad():
        outs = backbone(x)
        feats = backbone.model.stem(x)
        for i, stage in enumerate(backbone.model.stages):
            feats = stage(feats)
            torch.testing.assert_close(outs[i], feats)
    assert not any("out_norms" in n for n, _ in backbone.named_parameters())


def test_out_indices_subset_and_pruning():
    full = make_backbone(out_norms=False).eval()
    part = make_backbone(out_norms=False, out_indices=(1, 2)).eval()
    part.model.load_state_dict({k: v for k, v in full.model.state_dict().items() if k in part.model.state_dict()})
    x = torch.randn(2, 3, 77, 64)
    with torch.no_grad():
        all_outs = full(x)
        some = part(x)
    assert len(some) == 2 and part.out_channels == [32, 48] and part.out_strides == [8, 16]
    torch.testing.assert_close(some[0], all_outs[1])
    torch.testing.assert_close(some[1], all_outs[2])
    # the last stage is not needed for (1, 2): it is pruned, so no unused parameters reach DDP
    assert not any(n.startswith("model.stages.3.") for n, _ in part.named_parameters())
    assert any(n.startswith("model.stages.3.") for n, _ in full.named_parameters())
    # classifier and final norm are gone in both
    assert not any(n.startswith("model.head.fc") for n, _ in full.named_parameters())
    neg = make_backbone(out_indices=(-1,))
    assert neg.out_indices == (3,) and neg.out_channels == [64]


@pytest.mark.parametrize("frozen", [0, 2])
def test_frozen_stages(frozen):
    backbone = make_backbone(frozen_stages=frozen)
    frozen_prefixes = ["model.stem."] + [f"model.stages.{i}." for i in range(frozen)] + \
        [f"out_norms.{i}." for i in range(frozen)]
    names = [n for n, _ in backbone.named_parameters()]
    expected_frozen = {n for n in names if n.startswith(tuple(frozen_prefixes))}
    assert expected_frozen  # the rule selects something
    actual_frozen = {n for n, p in backbone.named_parameters() if not p.requires_grad}
    assert actual_frozen == expected_frozen

    backbone.train()
    for name, module in backbone.named_modules():
        if name and (name + ".").startswith(tuple(frozen_prefixes)):
            assert not module.training, f"{name} should stay in eval mode"
        elif name.startswith("model.stages.3"):
            assert module.training

    before = {n: p.detach().clone() for n, p in backbone.named_parameters()}
    optimizer = torch.optim.SGD([p for p in backbone.parameters() if p.requires_grad], lr=0.1)
    loss = sum(o.square().mean() for o in backbone(torch.randn(2, 3, 64, 64)))
    loss.backward()
    optimizer.step()
    for name, param in backbone.named_parameters():
        changed = not torch.equal(before[name], param.detach())
        if name in expected_frozen:
            assert not changed, name
    assert not torch.equal(before["model.stages.3.blocks.0.0.attn.qkv.weight"],
                           backbone.model.stages[3].blocks[0][0].attn.qkv.weight.detach())


def test_frozen_batch_norm_statistics_do_not_move():
    """With BN in the stem / downsamplers, frozen ones keep their running statistics through train()."""
    kwargs = dict(SMALL_DAVIT, norm_layer="batchnorm2d")
    backbone = make_backbone(frozen_stages=1, model_kwargs=kwargs).train()
    stem_bn = backbone.model.stem.norm
    free_bn = backbone.model.stages[2].downsample.norm
    assert isinstance(stem_bn, nn.BatchNorm2d) and isinstance(free_bn, nn.BatchNorm2d)
    stem_mean, free_mean = stem_bn.running_mean.clone(), free_bn.running_mean.clone()
    backbone(torch.randn(2, 3, 64, 64) * 3 + 1)
    torch.testing.assert_close(stem_bn.running_mean, stem_mean)
    assert not torch.equal(free_bn.running_mean, free_mean)


@pytest.mark.parametrize("norm_eval", [False, True])
def test_norm_eval(norm_eval):
    kwargs = dict(SMALL_DAVIT, norm_layer="batchnorm2d")
    backbone = make_backbone(norm_eval=norm_eval, model_kwargs=kwargs).train()
    bns = [m for m in backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 4
    means = [bn.running_mean.clone() for bn in bns]
    backbone(torch.randn(2, 3, 64, 64) * 3 + 1)
    for bn, mean in zip(bns, means):
        assert bn.training is (not norm_eval)
        assert torch.equal(bn.running_mean, mean) is norm_eval
    assert backbone.model.stages[3].training  # other modules still train


def test_with_cp_same_outputs_and_gradients_and_recomputes():
    plain = make_backbone(with_cp=False).train()
    ckpt = make_backbone(with_cp=True).train()
    ckpt.load_state_dict(plain.state_dict())
    calls = {"n": 0}

    def count(*_):
        calls["n"] += 1

    ckpt.model.stages[2].blocks[0][0].attn.register_forward_hook(count)
    x = torch.randn(2, 3, 64, 96)
    losses = []
    for model in (plain, ckpt):
        outs = model(x)
        loss = sum((o * torch.linspace(0, 1, o.shape[1])[None, :, None, None]).sum() for o in outs)
        loss.backward()
        losses.append((outs, {n: p.grad.clone() for n, p in model.named_parameters()}))
    for a, b in zip(losses[0][0], losses[1][0]):
        torch.testing.assert_close(a, b)
    for name, grad in losses[0][1].items():
        torch.testing.assert_close(losses[1][1][name], grad, atol=1e-5, rtol=1e-4)
    assert calls["n"] == 2  # forward once, recomputed once in backward


def _official_state_dict(fixture: Path):
    keys = json.loads(fixture.read_text())["keys"]
    generator = torch.Generator().manual_seed(1)
    state = {}
    for name, shape in keys.items():
        if name.endswith(("relative_position_index", "num_batches_tracked")):
            state[name] = torch.zeros(shape, dtype=torch.long)
        else:
            state[name] = torch.randn(shape, generator=generator)
    return state


def _smallest_with_fixture():
    out = []
    for name in ("vig_h_tiny", "nat_mini", "dinat_mini", "gc_vit_xxtiny"):
        out.append(pytest.param(name, id=name))
    return out


@pytest.mark.parametrize("model_name", _smallest_with_fixture())
def test_checkpoint_loads_official_layout_strictly(model_name, tmp_path):
    import visionattn  # noqa: F401

    fixture = FIXTURES / f"{model_name}.json"
    if model_name not in timm.list_models():
        pytest.skip(f"{model_name} is not registered yet")
    if not fixture.is_file():
        pytest.skip(f"no official key fixture {fixture.name} yet")
    official = _official_state_dict(fixture)
    path = tmp_path / "official.pth"
    torch.save({"model": official, "epoch": 3}, path)  # wrapped, as the official training scripts save

    backbone = VisionAttnBackbone(model_name, checkpoint=str(path))
    backbone.init_weights()
    # Oracle: every float parameter of the backbone now holds the values of one official tensor (random and
    # distinct, so a match means it was loaded, and from a tensor of the same size).
    by_values = {}
    for name, tensor in official.items():
        if tensor.is_floating_point():
            by_values.setdefault(tensor.numel(), []).append(tensor.flatten())
    for name, param in backbone.model.named_parameters():
        candidates = by_values.get(param.numel(), [])
        flat = param.detach().flatten()
        assert any(torch.equal(flat, c) for c in candidates), f"{name} was not loaded from the checkpoint"

    # A checkpoint that lacks a tensor is refused, naming what is missing.
    broken = dict(official)
    dropped = next(k for k in broken if "blocks.0" in k and k.endswith("weight"))
    del broken[dropped]
    torch.save(broken, tmp_path / "broken.pth")
    with pytest.raises(ValueError, match="missing"):
        VisionAttnBackbone(model_name, checkpoint=str(tmp_path / "broken.pth")).init_weights()


def test_checkpoint_of_a_detector_round_trips(tmp_path):
    source = make_backbone()
    with torch.no_grad():
        for p in source.parameters():
            p.add_(torch.randn_like(p))
    torch.save({"meta": {}, "state_dict": {"backbone." + k: v for k, v in source.state_dict().items()}
                | {"neck.lateral_convs.0.conv.weight": torch.zeros(1)}}, tmp_path / "det.pth")
    target = make_backbone(checkpoint=str(tmp_path / "det.pth"))
    target.init_weights()
    for (name, a), b in zip(source.state_dict().items(), target.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)


def test_init_weights_keeps_weights_without_a_checkpoint():
    backbone = make_backbone()
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    backbone.init_weights()
    for k, v in backbone.state_dict().items():
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(model_name="no_such_model_xyz"), ValueError, "not registered"),
    (dict(model_name="davit_tiny", init_cfg=dict(type="Pretrained", checkpoint="x")), ValueError, "init_cfg"),
    (dict(model_name="davit_tiny", out_indices=(0, 7)), ValueError, "out_indices"),
    (dict(model_name="davit_tiny", out_indices=3), TypeError, "out_indices"),
    (dict(model_name="davit_tiny", frozen_stages=-2), ValueError, "frozen_stages"),
    (dict(model_name="davit_tiny", model_kwargs=dict(features_only=True)), ValueError, "features_only"),
    (dict(model_name="davit_tiny", pretrained=True, checkpoint="x.pth"), ValueError, "not both"),
])
def test_argument_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        VisionAttnBackbone(**kwargs)


def _runner_like_checkpoint(path):
    from mmengine.logging import MessageHub

    hub = MessageHub.get_instance("visionattn_test_safe_globals")
    hub.update_scalar("train/loss", 1.5)
    hub.update_scalar("train/loss", np.float64(1.25))
    hub.update_info("iter", 7)
    torch.save({"meta": {"epoch": 1, "seed": np.int64(3), "mean": np.array([1.0, 2.0])},
                "state_dict": {"w": torch.ones(2)}, "message_hub": hub.state_dict()}, path)


def test_mmengine_checkpoint_loads_with_weights_only(tmp_path):
    path = tmp_path / "epoch_1.pth"
    _runner_like_checkpoint(path)
    loaded = torch.load(path, weights_only=True)  # what torch.load() does by default
    assert loaded["message_hub"]["log_scalars"]["train/loss"].current() == 1.25
    # without visionattn.mm's allow-list the same load fails: the test above can fail
    code = ("import torch, sys; import mmengine.logging\n"
            f"try:\n    torch.load({str(path)!r}, weights_only=True)\nexcept Exception as e:\n"
            "    print(type(e).__name__); sys.exit(0)\nsys.exit(1)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
