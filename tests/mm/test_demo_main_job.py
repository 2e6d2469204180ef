"""The det/seg demos of the two-step path (main job, then transfer): their configs resolve the main job's
checkpoint (``output/train/demo_main/model_best.pth.tar``, written by tools/train.py's saver), load it into the
backbone with no backbone key missing, and a few iterations run through tools/mm_train.py (with the prediction
pictures written); without the checkpoint the message says to run the main job first; and
``torchrun --nproc-per-node 2 tools/mm_train.py ... --launcher pytorch`` trains on CPU (gloo).

The full-length demo metrics (bbox mAP, mIoU) are measured for the notes, not here."""
import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.mm
pytest.importorskip("mmdet")
pytest.importorskip("mmseg")

import timm  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

from visionattn.checkpoint import SafeCheckpointSaver  # noqa: E402
from visionattn.mm import VisionAttnBackbone  # noqa: E402  (registers it, and the families in timm)
from visionattn.mm.demo import MainJobCheckpointMissing, resolve_backbone_checkpoint  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DET = REPO / "configs" / "mmdet" / "demo" / "mask_rcnn_test_gc_vit_demo_shapes.py"
SEG = REPO / "configs" / "mmseg" / "demo" / "upernet_test_gc_vit_demo_shapes.py"
MAIN_JOB_CHECKPOINT = Path("output") / "train" / "demo_main" / "model_best.pth.tar"
# what the classification checkpoint holds that the backbone prunes (timm's prune_intermediate_layers)
PRUNED = {"norm.weight", "norm.bias", "head.fc.weight", "head.fc.bias"}


def write_main_job_checkpoint(root: Path):
    """A randomly initialised test_gc_vit saved the way tools/train.py saves the main job (its saver, its args)."""
    torch.manual_seed(0)
    model = timm.create_model("test_gc_vit", num_classes=10)
    out = root / MAIN_JOB_CHECKPOINT.parent
    out.mkdir(parents=True)
    args = argparse.Namespace(model="test_gc_vit", num_classes=10, class_names=[f"c{i}" for i in range(10)])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    saver = SafeCheckpointSaver(model=model, optimizer=optimizer, args=args, checkpoint_dir=str(out),
                                recovery_dir=str(out))
    saver.save_checkpoint(0, metric=10.0)
    assert (root / MAIN_JOB_CHECKPOINT).is_file()
    return root / MAIN_JOB_CHECKPOINT, model.state_dict()


@pytest.mark.parametrize("config", [DET, SEG], ids=["det", "seg"])
def test_demo_backbone_starts_from_main_job_checkpoint(config, tmp_path, monkeypatch):
    path, state = write_main_job_checkpoint(tmp_path)
    monkeypatch.chdir(tmp_path)
    cfg = Config.fromfile(str(config))
    assert cfg.model.backbone.model_name == "test_gc_vit"
    assert cfg.model.backbone.checkpoint == cfg.main_job_checkpoint == str(MAIN_JOB_CHECKPOINT)
    assert resolve_backbone_checkpoint(cfg) == path.resolve()  # found under the working directory
    assert cfg.model.backbone.checkpoint == str(path.resolve())

    init_default_scope(cfg.default_scope)
    if "mmdet" in config.parts:
        from mmdet.registry import MODELS
    else:
        from mmseg.registry import MODELS
    backbone = MODELS.build(cfg.model.backbone)
    assert isinstance(backbone, VisionAttnBackbone)
    backbone.init_weights()  # strict: raises on any missing or mis-shaped backbone key
    own = backbone.model.state_dict()
    assert [k for k in own if k not in state] == []  # no backbone key missing from the main job's checkpoint
    assert set(state) - set(own) == PRUNED  # only the classifier and the final norm are left out
    assert all(torch.equal(value, state[key]) for key, value in own.items())


def test_demo_configs_look_in_each_root_in_turn(tmp_path):
    # tools/mm_train.py looks under the working directory, then the repository root (not checked here: this checkout
    # may hold a real main-job run)
    write_main_job_checkpoint(tmp_path)
    cfg = Config.fromfile(str(DET))
    assert resolve_backbone_checkpoint(cfg, roots=[tmp_path / "elsewhere", tmp_path]) == (
        tmp_path / MAIN_JOB_CHECKPOINT).resolve()


def test_missing_main_job_checkpoint_says_run_the_main_job(tmp_path):
    cfg = Config.fromfile(str(SEG))
    with pytest.raises(MainJobCheckpointMissing, match=r"python tools/train\.py") as info:
        resolve_backbone_checkpoint(cfg, roots=[tmp_path])
    assert str(tmp_path / MAIN_JOB_CHECKPOINT) in str(info.value)
    # testing a whole segmentor checkpoint does not need it: the backbone checkpoint is dropped
    assert resolve_backbone_checkpoint(cfg, required=False, roots=[tmp_path]) is None
    assert cfg.model.backbone.checkpoint is None


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore",
                PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def run_tool(args, cwd, timeout=600, expect_ok=True):
    result = subprocess.run([sys.executable, *args], cwd=cwd, env=_env(), capture_output=True, text=True,
                            timeout=timeout)
    output = result.stdout + result.stderr
    assert (result.returncode == 0) == expect_ok, output[-6000:]
    return output


def test_mm_train_without_main_job_checkpoint_stops_with_the_command(tmp_path):
    missing = "output/train/not_run_yet/model_best.pth.tar"  # the repo root may hold a real main-job run
    out = run_tool([str(REPO / "tools" / "mm_train.py"), str(DET), "--work-dir", str(tmp_path / "det"),
                    "--cfg-options", f"main_job_checkpoint={missing}", f"model.backbone.checkpoint={missing}"],
                   tmp_path, timeout=300, expect_ok=False)
    assert "Run the main job first" in out and "python tools/train.py" in out
    assert "Traceback" not in out
    assert not (tmp_path / "det").exists()


def test_det_demo_runs_from_main_job_checkpoint_and_draws_predictions(tmp_path):
    write_main_job_checkpoint(tmp_path)
    work = tmp_path / "det"
    out = run_tool([str(REPO / "tools" / "mm_train.py"), str(DET), "--work-dir", str(work), "--cfg-options",
                    "train_cfg.max_epochs=1", "train_cfg.val_interval=1", "train_dataloader.dataset.indices=8",
                    "val_dataloader.dataset.indices=4", "default_hooks.logger.interval=1",
                    "default_hooks.checkpoint.interval=1"], tmp_path)
    assert "Epoch(train) [1][2/2]" in out and "loss_mask" in out and "coco/bbox_mAP" in out
    pictures = list(work.glob("*/vis_data/vis_image/*.png"))  # the config's documented picture folder
    assert pictures, sorted(str(p) for p in work.rglob("*"))


def test_seg_demo_runs_from_main_job_checkpoint_and_draws_predictions(tmp_path):
    write_main_job_checkpoint(tmp_path)
    work = tmp_path / "seg"
    out = run_tool([str(REPO / "tools" / "mm_train.py"), str(SEG), "--work-dir", str(work), "--cfg-options",
                    "train_cfg.max_iters=2", "train_cfg.val_interval=2", "default_hooks.checkpoint.interval=2",
                    "default_hooks.logger.interval=1", "val_dataloader.dataset.indices=4"], tmp_path)
    assert "Iter(train) [2/2]" in out and "decode.loss_ce" in out and "mIoU" in out
    assert list(work.glob("*/vis_data/vis_image/*.png")), sorted(str(p) for p in work.rglob("*"))


def test_mm_train_under_torchrun_two_cpu_processes(tmp_path):
    write_main_job_checkpoint(tmp_path)
    work = tmp_path / "seg_ddp"
    out = run_tool(["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                    str(REPO / "tools" / "mm_train.py"), str(SEG), "--launcher", "pytorch", "--work-dir", str(work),
                    "--cfg-options", "train_cfg.max_iters=2", "train_cfg.val_interval=2",
                    "default_hooks.checkpoint.interval=2", "default_hooks.logger.interval=1",
                    "default_hooks.visualization.draw=False", "val_dataloader.dataset.indices=5"], tmp_path)
    assert "Distributed training: True" in out and "MMDistributedDataParallel" in out
    assert "Iter(train) [2/2]" in out and "mIoU" in out
    # 2 processes split the 5 val images 3 + 3 (one padded duplicate), the metric is over the 5 distinct ones
    assert "Iter(val) [3/3]" in out
    assert (work / "iter_2.pth").is_file()  # written once, by rank 0
