"""train.py / validate.py / convert_checkpoint.py end to end on a tiny demo subset."""
import csv
import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import train  # noqa: E402
import validate  # noqa: E402

from visionattn.data import demo  # noqa: E402


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return demo.generate("classification", root / "cls", train_per_class=3, val_per_class=2, image_size=32)


COMMON = ["--model", "resnet10t", "--batch-size", "8", "--img-size", "32", "--workers", "0", "--no-progress",
          "--warmup-epochs", "1", "--lr", "1e-3", "--seed", "0"]


@pytest.fixture(scope="module")
def first_run(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    result = train.main(COMMON + ["--data-dir", str(tiny_data), "--epochs", "1", "--output", str(out),
                                  "--experiment", "run", "--model-ema"])
    return Path(result["output"]), result


def _summary(run: Path):
    with open(run / "summary.csv") as f:
        return list(csv.DictReader(f))


def test_train_writes_timm_run_folder(first_run):
    run, result = first_run
    rows = _summary(run)
    assert list(rows[0]) == ["epoch", "train_loss", "eval_loss", "eval_top1", "eval_top5", "lr"]
    assert [r["epoch"] for r in rows] == ["0"]
    for name in ("args.yaml", "last.pth.tar", "model_best.pth.tar"):
        assert (run / name).is_file(), name
    ckpt = torch.load(run / "last.pth.tar", map_location="cpu", weights_only=False)
    assert ckpt["epoch"] == 0 and "optimizer" in ckpt and "state_dict_ema" in ckpt


def test_resume_continues_from_saved_epoch_with_optimizer_state(first_run, tiny_data, tmp_path):
    run, _ = first_run
    before = torch.load(run / "last.pth.tar", map_location="cpu", weights_only=False)
    result = train.main(COMMON + ["--data-dir", str(tiny_data), "--epochs", "3", "--output", str(tmp_path),
                                  "--experiment", "resumed", "--resume", str(run / "last.pth.tar")])
    rows = _summary(Path(result["output"]))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    # The learning rate at the resumed epoch is the schedule's value for a 3-epoch cosine run at epoch 1
    # (after the 1-epoch warm-up), not the warm-up value a fresh run would start with.
    from timm.scheduler import CosineLRScheduler
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1e-3)
    sched = CosineLRScheduler(opt, t_initial=3, lr_min=1e-6, warmup_t=1, warmup_lr_init=1e-5)
    sched.step(1)
    assert float(rows[0]["lr"]) == pytest.approx(opt.param_groups[0]["lr"])
    # Optimizer state continued: AdamW step counts go on from the first run's.
    after = torch.load(Path(result["output"]) / "last.pth.tar", map_location="cpu", weights_only=False)
    step_before = next(iter(before["optimizer"]["state"].values()))["step"]
    step_after = next(iter(after["optimizer"]["state"].values()))["step"]
    assert step_after == step_before * 3


def test_validate_reproduces_eval_top1(first_run, tiny_data, capsys):
    run, _ = first_run
    best = max(_summary(run), key=lambda r: float(r["eval_top1"]))
    results = validate.main(["--model", "resnet10t", "--checkpoint", str(run / "model_best.pth.tar"), "--use-ema",
                             "--data-dir", str(tiny_data), "--img-size", "32", "--crop-pct", "1.0", "--workers", "0"])
    assert results["top1"] == pytest.approx(float(best["eval_top1"]), abs=1e-3)
    assert results["img_size"] == 32 and results["param_count"] > 0


def test_validate_prints_json(first_run, tiny_data, capsys):
    run, _ = first_run
    validate.main(["--model", "resnet10t", "--checkpoint", str(run / "last.pth.tar"), "--data-dir", str(tiny_data),
                   "--img-size", "32", "--workers", "0"])
    out = capsys.readouterr().out
    payload = json.loads(out[out.index("{"):])
    assert {"top1", "top5", "param_count", "img_size"} <= set(payload)


def _error_of(fn, argv, capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        fn(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err


def test_unknown_model_is_one_clear_error(tiny_data, capsys):
    err = _error_of(train.main, ["--model", "resnet_does_not_exist", "--data-dir", str(tiny_data)], capsys)
    assert "is not a registered timm model" in err


def test_missing_data_dir_is_one_clear_error(tmp_path, capsys):
    err = _error_of(train.main, ["--model", "resnet10t", "--data-dir", str(tmp_path / "nope")], capsys)
    assert "does not exist" in err
    (tmp_path / "flat").mkdir()
    err = _error_of(train.main, ["--model", "resnet10t", "--data-dir", str(tmp_path / "flat")], capsys)
    assert "has no 'train' folder" in err


def test_checkpoint_for_another_model_is_one_clear_error(first_run, tiny_data, capsys):
    run, _ = first_run
    err = _error_of(validate.main, ["--model", "resnet18", "--checkpoint", str(run / "last.pth.tar"),
                                    "--data-dir", str(tiny_data), "--workers", "0"], capsys)
    assert "does not match" in err and ("missing keys" in err or "wrong shapes" in err)
