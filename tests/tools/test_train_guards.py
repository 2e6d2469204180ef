"""No silent wrong answers: a NaN loss stops training with the step, lr and a hint (no NaN checkpoint); a NaN model
is never saved; --amp-dtype float16 on CPU says it runs bfloat16; validate.py refuses --pretrained / --checkpoint /
--num-classes whose classifier does not match the dataset."""
import argparse
import logging
import math
import sys
from pathlib import Path

import pytest
import timm
import torch

from visionattn.checkpoint import SafeCheckpointSaver, load_checkpoint_file
from visionattn.data import demo
from visionattn.training import NonFiniteLossError, resolve_amp_dtype

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import train  # noqa: E402
import validate  # noqa: E402


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    # 20 train images: 2 steps of 8 per epoch
    return demo.generate("classification", tmp_path_factory.mktemp("data") / "cls", train_per_class=2,
                         val_per_class=1, image_size=32)


def test_nan_loss_stops_with_step_lr_and_hint_and_writes_no_nan_checkpoint(tiny_data, tmp_path, monkeypatch):
    calls = {"n": 0}

    class LossTurningNaN(train.LabelSmoothingCrossEntropy):
        def forward(self, x, target):
            calls["n"] += 1
            loss = super().forward(x, target)
            return loss * float("nan") if calls["n"] == 4 else loss  # epoch 1, its second step

    monkeypatch.setattr(train, "LabelSmoothingCrossEntropy", LossTurningNaN)
    with pytest.raises(NonFiniteLossError) as info:
        train.main(["--model", "resnet10t", "--data-dir", str(tiny_data), "--img-size", "32", "--batch-size", "8",
                    "--epochs", "3", "--workers", "0", "--no-progress", "--lr", "2e-3", "--output", str(tmp_path),
                    "--experiment", "run", "--amp"])
    message = str(info.value)
    assert isinstance(info.value, FloatingPointError)
    assert "loss is nan at epoch 1, step 1 (update 3)" in message and "learning rate" in message
    assert "--amp" in message and "--lr" in message and "--clip-grad" in message
    run = tmp_path / "run"
    last = load_checkpoint_file(run / "last.pth.tar")
    assert last["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point())
    assert (run / "summary.csv").read_text().strip().splitlines()[-1].startswith("0,")


def test_saver_refuses_non_finite_weights(tmp_path):
    model = torch.nn.Linear(3, 2)
    saver = SafeCheckpointSaver(model, torch.optim.SGD(model.parameters(), lr=0.1), checkpoint_dir=str(tmp_path),
                                recovery_dir=str(tmp_path))
    saver.save_checkpoint(0, metric=1.0)
    with torch.no_grad():
        model.weight[0, 0] = math.inf
    with pytest.raises(FloatingPointError, match="weight"):
        saver.save_checkpoint(1, metric=2.0)
    assert load_checkpoint_file(tmp_path / "last.pth.tar")["epoch"] == 0


def test_amp_float16_on_cpu_is_said(caplog):
    with caplog.at_level(logging.WARNING):
        assert resolve_amp_dtype(True, "float16", torch.device("cpu")) is torch.bfloat16
    assert "bfloat16" in caplog.text and "float16" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert resolve_amp_dtype(True, "bfloat16", torch.device("cpu")) is torch.bfloat16
        assert resolve_amp_dtype(True, "float16", torch.device("cuda")) is torch.float16
    assert caplog.text == ""
    with caplog.at_level(logging.WARNING):
        assert resolve_amp_dtype(False, "float16", torch.device("cpu")) is None
    assert "no effect without --amp" in caplog.text
    # the tools' autocast really runs in the dtype that was announced
    autocast, scaler = train.make_autocast(argparse.Namespace(amp=True, amp_dtype="float16"), torch.device("cpu"))
    with autocast():
        assert torch.mm(torch.ones(2, 2), torch.ones(2, 2)).dtype is torch.bfloat16
    assert scaler is None


def _validate_error(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        validate.main(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err


def test_validate_refuses_pretrained_with_other_class_count(tiny_data, capsys):
    # the check comes before any download: this test needs no network
    err = _validate_error(["--model", "resnet10t", "--pretrained", "--data-dir", str(tiny_data), "--workers", "0"],
                          capsys)
    assert "1000 classes" in err and "has 10" in err and "chance" in err


def test_validate_refuses_checkpoint_or_num_classes_with_other_class_count(tiny_data, tmp_path, capsys):
    path = tmp_path / "five.pth"
    torch.save(timm.create_model("resnet10t", num_classes=5).state_dict(), path)
    err = _validate_error(["--model", "resnet10t", "--checkpoint", str(path), "--data-dir", str(tiny_data),
                           "--workers", "0"], capsys)
    assert "classifies 5 classes (fc.weight)" in err and "built for 10" in err
    err = _validate_error(["--model", "resnet10t", "--checkpoint", str(path), "--num-classes", "5",
                           "--data-dir", str(tiny_data), "--workers", "0"], capsys)
    assert "--num-classes 5" in err and "has 10 classes" in err
