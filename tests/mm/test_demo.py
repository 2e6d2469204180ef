"""The demo configs train end to end through tools/mm_train.py on the built-in demo data (a short schedule),
evaluate with CocoMetric / IoUMetric, resume from a Runner checkpoint (torch.load weights_only, torch's
default) and are evaluated again by tools/mm_test.py."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.mm, pytest.mark.slow]
pytest.importorskip("mmdet")
pytest.importorskip("mmseg")

REPO = Path(__file__).resolve().parents[2]


def run_tool(args, tmp_path, timeout=900):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=timeout)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    return output


def test_detection_demo_trains_resumes_and_tests(tmp_path):
    config = str(REPO / "configs" / "mmdet" / "demo" / "mask_rcnn_davit_demo_shapes.py")
    work = tmp_path / "det"
    short = ["train_dataloader.dataset.indices=8", "val_dataloader.dataset.indices=4", "train_cfg.val_interval=1",
             "default_hooks.checkpoint.interval=1", "default_hooks.logger.interval=1"]
    out = run_tool([str(REPO / "tools" / "mm_train.py"), config, "--work-dir", str(work),
                    "--cfg-options", "train_cfg.max_epochs=1", *short], tmp_path)
    assert "Epoch(train) [1][2/2]" in out and "loss_mask" in out
    assert "coco/bbox_mAP" in out and "coco/segm_mAP" in out
    assert (work / "epoch_1.pth").is_file()

    out = run_tool([str(REPO / "tools" / "mm_train.py"), config, "--work-dir", str(work), "--resume",
                    "--cfg-options", "train_cfg.max_epochs=2", *short], tmp_path)
    assert "resumed epoch: 1" in out
    assert "Epoch(train) [2][2/2]" in out and "Epoch(train) [1]" not in out
    assert (work / "epoch_2.pth").is_file()

    out = run_tool([str(REPO / "tools" / "mm_test.py"), config, str(work / "epoch_2.pth"), "--work-dir",
                    str(tmp_path / "det_test"), "--cfg-options", "test_dataloader.dataset.indices=4"], tmp_path)
    metrics = json.loads([line for line in out.splitlines() if line.startswith("{")][-1])
    assert {"coco/bbox_mAP", "coco/segm_mAP"} <= set(metrics)
    assert all(-1.0 <= float(v) <= 1.0 for k, v in metrics.items() if k.startswith("coco/"))


def test_segmentation_demo_trains_and_evaluates(tmp_path):
    config = str(REPO / "configs" / "mmseg" / "demo" / "upernet_davit_demo_shapes.py")
    out = run_tool([str(REPO / "tools" / "mm_train.py"), config, "--work-dir", str(tmp_path / "seg"),
                    "--cfg-options", "train_cfg.max_iters=3", "train_cfg.val_interval=3",
                    "default_hooks.checkpoint.interval=3", "default_hooks.logger.interval=1",
                    "val_dataloader.dataset.indices=4"], tmp_path)
    assert "Iter(train) [3/3]" in out and "decode.loss_ce" in out
    assert "mIoU" in out
    assert (tmp_path / "seg" / "iter_3.pth").is_file()
