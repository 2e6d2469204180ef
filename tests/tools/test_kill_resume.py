"""tools/train.py survives SIGKILL: killed in the middle of an epoch, and in the middle of a checkpoint save (a slow
save), ``--resume auto`` with the same command line finishes the run, and the result equals an uninterrupted run of
the same seed: same epochs in summary.csv (each once), same losses and top-1, bitwise-equal final weights (the RNG
state is saved with each checkpoint, so the resumed epochs draw the same data order and augmentations)."""
import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from visionattn.checkpoint import load_checkpoint_file, newest_good_checkpoint, verify_checkpoint_file

ROOT = Path(__file__).resolve().parents[2]
HOOKS = Path(__file__).resolve().parent / "_kill_hooks.py"
TRAIN = ROOT / "tools" / "train.py"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from visionattn.data import demo

    # 30 train images (3 steps of 8 per epoch, timm drops the last partial batch), 20 val images, 32x32
    return demo.generate("classification", tmp_path_factory.mktemp("data") / "cls", train_per_class=3,
                         val_per_class=2, image_size=32)


def _command(data, output):
    # One command line for the first run and every restart: --resume auto starts fresh when there is nothing yet.
    return [sys.executable, str(HOOKS), str(TRAIN), "--model", "resnet10t", "--data-dir", str(data), "--img-size", "32",
            "--batch-size", "8", "--epochs", "3", "--warmup-epochs", "1", "--lr", "2e-3", "--workers", "0",
            "--seed", "0", "--no-progress", "--checkpoint-hist", "2", "--output", str(output), "--experiment", "run",
            "--resume", "auto"]


def _env(**extra):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("KILL_AT", None)
    env.update(extra)
    return env


def _run(data, output, timeout=600):
    result = subprocess.run(_command(data, output), env=_env(), capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    return result.stdout + result.stderr


def _run_and_kill(data, output, kill_at, tmp_path, timeout=600):
    ready = tmp_path / f"ready-{kill_at.replace(':', '-')}"
    proc = subprocess.Popen(_command(data, output), env=_env(KILL_AT=kill_at, KILL_READY=str(ready)),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + timeout
    while not ready.exists():
        if proc.poll() is not None:
            pytest.fail(f"the run ended before reaching {kill_at}:\n{proc.stdout.read()[-5000:]}")
        if time.time() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {kill_at}")
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    proc.stdout.close()


def _summary(run):
    with open(run / "summary.csv") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def uninterrupted(tiny_data, tmp_path_factory):
    output = tmp_path_factory.mktemp("uninterrupted")
    _run(tiny_data, output)
    return output / "run"


def _assert_same_as_uninterrupted(run, reference):
    rows, expected = _summary(run), _summary(reference)
    assert [r["epoch"] for r in rows] == ["0", "1", "2"]  # every epoch once, none lost, none doubled
    for row, ref in zip(rows, expected):
        for key in ("train_loss", "eval_loss", "eval_top1", "eval_top5", "lr"):
            assert float(row[key]) == pytest.approx(float(ref[key]), rel=1e-6, abs=1e-6), (row["epoch"], key)
    final, ref_final = load_checkpoint_file(run / "last.pth.tar"), load_checkpoint_file(reference / "last.pth.tar")
    assert final["epoch"] == ref_final["epoch"] == 2
    for key, value in ref_final["state_dict"].items():
        assert torch.equal(final["state_dict"][key], value), key
    assert not list(run.glob(".*.tmp")) and not (run / "tmp.pth.tar").exists()


def test_kill_mid_epoch_then_resume_auto(tiny_data, uninterrupted, tmp_path):
    output = tmp_path / "out"
    _run_and_kill(tiny_data, output, "step:5", tmp_path)  # epoch 1, its second step
    run = output / "run"
    assert load_checkpoint_file(run / "last.pth.tar")["epoch"] == 0
    log = _run(tiny_data, output)
    assert "continuing" in log and "last.pth.tar" in log
    _assert_same_as_uninterrupted(run, uninterrupted)


def test_kill_mid_save_then_resume_auto(tiny_data, uninterrupted, tmp_path):
    output = tmp_path / "out"
    _run_and_kill(tiny_data, output, "save:2", tmp_path)  # the save of epoch 1, half written
    run = output / "run"
    assert verify_checkpoint_file(run / "tmp.pth.tar") is not None  # the torn half-save
    assert verify_checkpoint_file(run / "last.pth.tar") is None  # last.pth.tar is still the whole epoch 0
    assert load_checkpoint_file(run / "last.pth.tar")["epoch"] == 0
    assert [r["epoch"] for r in _summary(run)] == ["0", "1"]  # epoch 1 was logged before its save was cut
    _run(tiny_data, output)
    _assert_same_as_uninterrupted(run, uninterrupted)


def test_resume_auto_skips_a_torn_checkpoint(uninterrupted, tmp_path, caplog):
    """A torn newest file (e.g. copied while being written) is skipped for the newest one that reads back."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(uninterrupted, run)
    kept = {p.name: load_checkpoint_file(p, mmap=True)["epoch"] for p in run.glob("checkpoint-*.pth.tar")}
    data = (run / "last.pth.tar").read_bytes()
    (run / "last.pth.tar").write_bytes(data[: len(data) * 2 // 3])
    with caplog.at_level("WARNING"):
        chosen = newest_good_checkpoint(run)
    assert Path(chosen).name == max(kept, key=kept.get)
    assert "last.pth.tar" in caplog.text


def test_resolve_resume_values(tmp_path):
    from visionattn.checkpoint import resolve_resume

    def run_folder(name, model, epoch):
        folder = tmp_path / "out" / name
        folder.mkdir(parents=True)
        (folder / "args.yaml").write_text(f"model: {model}\n")
        torch.save({"epoch": epoch, "state_dict": {"w": torch.zeros(1)}}, folder / "last.pth.tar")
        return folder

    old = run_folder("a-resnet10t", "resnet10t", 4)
    time.sleep(0.05)
    other = run_folder("b-nat_mini", "nat_mini", 7)
    out = str(tmp_path / "out")
    assert resolve_resume("", out) == ("", None)
    # auto without --experiment: the newest run of the same model
    assert resolve_resume("auto", out, "", "resnet10t") == (str(old / "last.pth.tar"), str(old))
    assert resolve_resume("auto", out, "", "nat_mini") == (str(other / "last.pth.tar"), str(other))
    # auto with --experiment: that folder, or a fresh start there
    assert resolve_resume("auto", out, "new", "resnet10t") == ("", str(tmp_path / "out" / "new"))
    # a run folder, a file, and what is neither
    assert resolve_resume(str(old), out) == (str(old / "last.pth.tar"), str(old))
    assert resolve_resume(str(old / "last.pth.tar"), out) == (str(old / "last.pth.tar"), None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no readable training checkpoint"):
        resolve_resume(str(tmp_path / "empty"), out)
    with pytest.raises(ValueError, match="not a checkpoint file, a run folder or 'auto'"):
        resolve_resume(str(tmp_path / "nope.pth"), out)
