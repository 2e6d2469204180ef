"""Loading a checkpoint never runs code from it unless the user opts in (issue 17).

Every loading path gets the same malicious file: a real training checkpoint plus one pickled callable that would
``touch`` a marker file. Each path must refuse it, naming the offending global and the opt-in, without the marker
appearing; with the opt-in the file loads (and the marker appears: the opt-in really is a full load). Files written
by timm's ``CheckpointSaver`` and the official checkpoint layouts of every family must still load without it.
"""
import argparse
import io
import os
import pathlib
import shlex
import sys
import types
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import timm
import torch

import visionattn  # noqa: F401  (registers the families, routes timm's loaders)
from visionattn import checkpoint as ckpt
from visionattn.checkpoint import (
    TRUST_ENV, CheckpointReadError, UntrustedCheckpointError, load_checkpoint_file, trusted_checkpoints,
)
from visionattn.models import _helpers

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import convert_checkpoint  # noqa: E402
import train  # noqa: E402
import validate  # noqa: E402

SYSTEM = f"{os.system.__module__}.system"  # posix.system on Linux
SMALL = dict(depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1), embed_dim=16)


class _Touch:
    """Unpickling this runs ``os.system('touch <marker>')``: what a malicious checkpoint would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, ("touch " + shlex.quote(self.marker),)


def write_evil(path, state_dict, marker, wrapped=True):
    """A loadable checkpoint (``state_dict`` inside, as timm / the official scripts save it) plus the payload."""
    content = {"state_dict": state_dict, "epoch": 0, "payload": _Touch(marker)} if wrapped else \
        dict(state_dict, payload=_Touch(marker))
    torch.save(content, path)
    return path


@pytest.fixture(autouse=True)
def _no_trust_from_environment(monkeypatch):
    monkeypatch.delenv(TRUST_ENV, raising=False)


def _assert_refusal(err, marker):
    text = str(err)
    assert SYSTEM in text and "--trust-checkpoint" in text and TRUST_ENV in text, text
    assert not Path(marker).exists(), "the payload ran"


# ------------------------------------------------------------------------------------------------------------------
# visionattn's loader
# ------------------------------------------------------------------------------------------------------------------

def test_loader_refuses_pickled_callable_and_opt_ins_load_it(tmp_path, monkeypatch):
    marker = tmp_path / "marker"
    path = write_evil(tmp_path / "evil.pth", {"w": torch.ones(3)}, marker)
    for load in (load_checkpoint_file, _helpers.load_checkpoint_file):  # the name every family calls
        with pytest.raises(UntrustedCheckpointError) as info:
            load(path)
        _assert_refusal(info.value, marker)
        assert SYSTEM in info.value.offending and isinstance(info.value, RuntimeError)
    # an explicit False wins over the environment
    monkeypatch.setenv(TRUST_ENV, "1")
    with pytest.raises(UntrustedCheckpointError):
        load_checkpoint_file(path, trust_checkpoint=False)
    assert not marker.exists()
    # the three opt-ins: environment, argument, context
    for opt_in in ("env", "argument", "context"):
        if opt_in == "env":
            loaded = load_checkpoint_file(path)
        elif opt_in == "argument":
            monkeypatch.delenv(TRUST_ENV)
            loaded = load_checkpoint_file(path, trust_checkpoint=True)
        else:
            with trusted_checkpoints():
                loaded = load_checkpoint_file(path)
        assert torch.equal(loaded["state_dict"]["w"], torch.ones(3))
        assert marker.exists(), opt_in  # the opt-in is a real, full load
        marker.unlink()


def test_torn_and_empty_files_are_named(tmp_path):
    path = tmp_path / "ok.pth"
    torch.save({"state_dict": {"w": torch.arange(1000.0)}}, path)
    data = path.read_bytes()
    (tmp_path / "torn.pth").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.pth").write_bytes(b"")
    for name in ("torn.pth", "empty.pth"):
        with pytest.raises(CheckpointReadError, match=name):
            load_checkpoint_file(tmp_path / name)
        assert ckpt.verify_checkpoint_file(tmp_path / name) is not None
    assert ckpt.verify_checkpoint_file(path) is None
    with pytest.raises(FileNotFoundError):
        load_checkpoint_file(tmp_path / "missing.pth")


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "last.pth.tar"
    ckpt.save_checkpoint_file({"v": torch.tensor(1)}, path)

    def fail(f):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt  # e.g. Ctrl-C in the middle of a save

    with pytest.raises(KeyboardInterrupt):
        ckpt.atomic_write(path, fail)
    assert load_checkpoint_file(path)["v"].item() == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pth.tar"]  # no temporary file left
    ckpt.save_checkpoint_file({"v": torch.tensor(2)}, path)
    assert load_checkpoint_file(path)["v"].item() == 2
    assert (path.stat().st_mode & 0o777) == (0o666 & ~_umask())


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ------------------------------------------------------------------------------------------------------------------
# timm's loaders: pretrained_cfg_overlay=dict(file=...) (plain, checkpoint_filter_fn, custom_load), URL, load_checkpoint
# ------------------------------------------------------------------------------------------------------------------

def test_timm_loaders_are_routed_through_visionattn():
    from timm.models import _builder, _helpers as timm_helpers, _hub

    # fails loudly if a timm upgrade changes the internals the routing relies on
    assert timm_helpers._torch_load.func is ckpt._routed_torch_load
    assert _hub._torch_load is timm_helpers._torch_load
    assert _builder.load_state_dict_from_url.func is ckpt._routed_load_from_url


@pytest.mark.parametrize("name,kwargs", [
    ("resnet10t", dict(num_classes=10)),   # timm's own model: timm.models.load_state_dict
    ("nat_mini", SMALL),                   # a visionattn family: load_state_dict, then checkpoint_filter_fn
    ("gc_vit_xxtiny", SMALL),              # custom_load: GCViT.load_pretrained -> load_checkpoint_file
])
def test_pretrained_cfg_overlay_file_is_refused_then_trusted(name, kwargs, tmp_path, monkeypatch):
    marker = tmp_path / "marker"
    torch.manual_seed(0)
    source = timm.create_model(name, **kwargs)
    path = write_evil(tmp_path / "evil.pth", source.state_dict(), marker)
    overlay = dict(file=str(path), num_classes=kwargs.get("num_classes", 1000))
    with pytest.raises(UntrustedCheckpointError) as info:
        timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)
    _assert_refusal(info.value, marker)
    monkeypatch.setenv(TRUST_ENV, "1")
    model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)
    assert marker.exists()
    for key, value in source.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value, msg=key)


def test_pretrained_url_of_a_training_checkpoint_loads_without_opt_in(tmp_path):
    """An official-style file at a pretrained URL (model under 'model', argparse args, numpy max_accuracy): torch.hub
    alone refuses the Namespace; through visionattn's allow-list it loads, then checkpoint_filter_fn unwraps it."""
    torch.manual_seed(0)
    source = timm.create_model("nat_mini", **SMALL)
    path = tmp_path / "nat_official.pth"
    torch.save({"model": source.state_dict(), "args": argparse.Namespace(model="nat_mini", lr=1e-3),
                "max_accuracy": np.float64(81.8), "epoch": 299}, path)
    old_hub = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    try:
        model = timm.create_model("nat_mini", pretrained=True, **SMALL,
                                  pretrained_cfg_overlay=dict(url=path.as_uri(), hf_hub_id=None))
    finally:
        torch.hub.set_dir(old_hub)
    for key, value in source.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value, msg=key)


def test_pretrained_url_and_timm_load_checkpoint_are_refused(tmp_path):
    marker = tmp_path / "marker"
    model = timm.create_model("resnet10t", num_classes=10)
    path = write_evil(tmp_path / "evil.pth", model.state_dict(), marker)
    hub = tmp_path / "hub"
    old_hub = torch.hub.get_dir()
    torch.hub.set_dir(str(hub))
    try:  # a file:// URL goes through the same download + load as https://
        with pytest.raises(UntrustedCheckpointError) as info:
            timm.create_model("resnet10t", pretrained=True, num_classes=10,
                              pretrained_cfg_overlay=dict(url=path.as_uri(), hf_hub_id=None, num_classes=10))
        _assert_refusal(info.value, marker)
    finally:
        torch.hub.set_dir(old_hub)
    assert (hub / "checkpoints" / "evil.pth").is_file()  # it was downloaded, then refused
    with pytest.raises(UntrustedCheckpointError):
        timm.models.load_checkpoint(model, str(path))
    # timm's CheckpointSaver resume reads the file's bookkeeping; a refused file means starting fresh
    saver = timm.utils.CheckpointSaver(model, None, checkpoint_dir=str(tmp_path))
    assert saver.load_state_dict_from_checkpoint(str(path)) is False
    assert not marker.exists()


# ------------------------------------------------------------------------------------------------------------------
# the tools
# ------------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from visionattn.data import demo

    root = tmp_path_factory.mktemp("data")
    return demo.generate("classification", root / "cls", train_per_class=2, val_per_class=1, image_size=32)


def _tool_error(fn, argv, capsys):
    with pytest.raises(SystemExit) as exc:
        fn(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err


def test_convert_checkpoint_refuses_then_trusts(tmp_path, capsys):
    marker = tmp_path / "marker"
    torch.manual_seed(0)
    source = timm.create_model("nat_mini", **SMALL)
    path = write_evil(tmp_path / "evil.pth", source.state_dict(), marker)
    argv = ["--model", "nat_mini", "--checkpoint", str(path), "--out", str(tmp_path / "out.safetensors"),
            "--model-kwargs", "depths=[1,1,1,1]", "num_heads=[1,1,1,1]", "embed_dim=16"]
    err = _tool_error(convert_checkpoint.main, argv, capsys)
    assert SYSTEM in err and "--trust-checkpoint" in err and not marker.exists()
    out = convert_checkpoint.main(argv + ["--trust-checkpoint"])
    assert marker.exists()
    converted = load_checkpoint_file(out)  # safetensors: only tensors, no opt-in ever again
    torch.testing.assert_close(converted["stages.0.blocks.0.attn.qkv.weight"],
                               source.state_dict()["stages.0.blocks.0.attn.qkv.weight"])


def test_validate_and_train_refuse(tiny_data, tmp_path, capsys):
    marker = tmp_path / "marker"
    model = timm.create_model("resnet10t", num_classes=10)
    path = write_evil(tmp_path / "evil.pth.tar", model.state_dict(), marker)
    common = ["--model", "resnet10t", "--data-dir", str(tiny_data), "--img-size", "32", "--workers", "0"]
    err = _tool_error(validate.main, common + ["--checkpoint", str(path)], capsys)
    assert SYSTEM in err and "--trust-checkpoint" in err
    train_argv = common + ["--epochs", "1", "--batch-size", "4", "--no-progress", "--output", str(tmp_path / "out")]
    with pytest.raises(UntrustedCheckpointError, match="--trust-checkpoint"):
        train.main(train_argv + ["--initial-checkpoint", str(path)])
    with pytest.raises(UntrustedCheckpointError, match="--trust-checkpoint"):
        train.main(train_argv + ["--resume", str(path)])
    assert not marker.exists()
    # with the opt-in, validate loads it (the payload runs: that is what the opt-in means)
    results = validate.main(common + ["--checkpoint", str(path), "--trust-checkpoint"])
    assert marker.exists() and 0.0 <= results["top1"] <= 100.0


# ------------------------------------------------------------------------------------------------------------------
# files that must keep loading without the opt-in
# ------------------------------------------------------------------------------------------------------------------

def test_checkpoint_saver_files_load_without_opt_in(tmp_path):
    """Our saver's files (args, EMA, optimizer, AMP scaler, history, RNG state) and timm's own saver's files."""
    from timm.utils import CheckpointSaver, ModelEmaV3, NativeScaler

    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    args = argparse.Namespace(model="linear", lr=1e-3, input_size=(3, 32, 32), model_kwargs={"a": [1, 2]},
                              output=pathlib.Path(tmp_path), device="cpu", mean=None)
    for saver_class, folder in ((ckpt.SafeCheckpointSaver, "ours"), (CheckpointSaver, "timm")):
        out = tmp_path / folder
        out.mkdir()
        saver = saver_class(model, optimizer, args=args, model_ema=ModelEmaV3(model), amp_scaler=NativeScaler("cpu"),
                            checkpoint_dir=str(out), recovery_dir=str(out), max_history=2)
        saver.save_checkpoint(0, metric=50.0)
        saver.save_checkpoint(1, metric=60.0)
        for name in ("last.pth.tar", "checkpoint-1.pth.tar", "model_best.pth.tar"):
            loaded = load_checkpoint_file(out / name, trust_checkpoint=False)
            assert loaded["epoch"] == 1 and loaded["args"].model == "linear", name
            assert torch.equal(loaded["state_dict"]["weight"], model.weight.detach())
        assert sorted(p.name for p in out.iterdir()) == [
            "checkpoint-0.pth.tar", "checkpoint-1.pth.tar", "last.pth.tar", "model_best.pth.tar"]
    # ours stay readable by plain timm / torch (weights_only with only argparse.Namespace allowed, as timm does)
    with torch.serialization.safe_globals([argparse.Namespace, pathlib.PosixPath]):
        plain = torch.load(tmp_path / "ours" / "last.pth.tar", weights_only=True)
    assert "rng_state" in plain["saver"]


def _official_tensors(n=3):
    return OrderedDict((f"layers.{i}.weight", torch.randn(4, 4)) for i in range(n))


def _write_yacs_config_checkpoint(path):
    """An Agent-Attention / Swin style file: ``config`` is a pickled yacs CfgNode (yacs is not installed here)."""
    yacs, config = types.ModuleType("yacs"), types.ModuleType("yacs.config")

    class CfgNode(dict):  # the parts of yacs 0.1.8's CfgNode that decide how it pickles
        def __init__(self, init_dict=None):
            super().__init__(init_dict or {})
            self.__dict__["__immutable__"] = False
            self.__dict__["__deprecated_keys__"] = set()
            self.__dict__["__renamed_keys__"] = {}
            self.__dict__["__new_allowed__"] = False

    CfgNode.__module__, CfgNode.__qualname__ = "yacs.config", "CfgNode"
    config.CfgNode, yacs.config = CfgNode, config
    sys.modules.update({"yacs": yacs, "yacs.config": config})
    try:
        cfg = CfgNode({"MODEL": CfgNode({"TYPE": "agent_swin", "DROP_PATH_RATE": 0.2}),
                       "TRAIN": CfgNode({"EPOCHS": 300, "BASE_LR": 5e-4, "WARMUP_EPOCHS": 20})})
        cfg.__dict__["__immutable__"] = True
        torch.save({"model": _official_tensors(), "optimizer": {}, "lr_scheduler": {"last_epoch": 299},
                    "max_accuracy": 82.6, "epoch": 299, "config": cfg}, path)
    finally:
        del sys.modules["yacs"], sys.modules["yacs.config"]


def _as_numpy1_pickle(path):
    """Rewrite a torch zip checkpoint as numpy 1.x pickled it (``numpy.core.multiarray`` instead of ``numpy._core``)."""
    src = zipfile.ZipFile(path)
    records = {info.filename: src.read(info.filename) for info in src.infolist()}
    src.close()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as out:
        for name, data in records.items():
            if name.endswith("data.pkl"):
                assert b"numpy._core.multiarray" in data
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            out.writestr(name, data)
    path.write_bytes(buffer.getvalue())


@pytest.mark.parametrize("layout", ["nat_plain", "gc_vit_timm_saver", "deit_style_numpy1", "agent_yacs"])
def test_official_layouts_load_without_opt_in(layout, tmp_path):
    """The layouts of /work/shared/reference/backbones.md: NAT/DiNAT plain state dicts; GC ViT / SG-Former timm
    CheckpointSaver dicts with ``args``; STViT / ViG DeiT-style dicts with ``args``, numpy ``max_accuracy`` and paths
    (as numpy 1.x pickled them); Agent attention's Swin-style dict with a yacs ``config``."""
    path = tmp_path / "official.pth"
    tensors = _official_tensors()
    args = argparse.Namespace(model="x", lr=5e-4, output_dir=pathlib.Path("/ckpt/run"), device="cuda:0",
                              input_size=224, mean=(0.485, 0.456, 0.406), aa="rand-m9-mstd0.5-inc1", smoothing=0.1)
    if layout == "nat_plain":
        torch.save(tensors, path)
    elif layout == "gc_vit_timm_saver":
        torch.save({"epoch": 309, "arch": "gc_vit_tiny", "state_dict": tensors, "optimizer": {"state": {}},
                    "version": 2, "args": args, "amp_scaler": {"scale": 65536.0, "growth_factor": 2.0},
                    "state_dict_ema": tensors, "metric": 83.4}, path)
    elif layout == "deit_style_numpy1":
        torch.save({"model": tensors, "model_ema": tensors, "optimizer": {}, "lr_scheduler": {"base_lrs": [1e-3]},
                    "epoch": 299, "scaler": {}, "args": args, "max_accuracy": np.float64(82.7),
                    "seed": np.int64(0), "mean": np.array([0.485, 0.456, 0.406])}, path)
        _as_numpy1_pickle(path)
    else:
        _write_yacs_config_checkpoint(path)
    loaded = load_checkpoint_file(path, trust_checkpoint=False)
    state_dict = _helpers.unwrap_state_dict(loaded)
    for key, value in tensors.items():
        if layout != "agent_yacs":
            assert torch.equal(state_dict[key], value), key
        assert state_dict[key].shape == (4, 4)
    if layout == "deit_style_numpy1":
        assert float(loaded["max_accuracy"]) == 82.7 and loaded["args"].output_dir == pathlib.PurePosixPath("/ckpt/run")
    if layout == "agent_yacs":
        assert loaded["config"]["MODEL"]["TYPE"] == "agent_swin" and loaded["config"]["TRAIN"]["EPOCHS"] == 300
