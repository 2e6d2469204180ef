#!/usr/bin/env python
"""Train an mmdet 3 / mmseg 1 model from a config with mmengine's Runner.

    python tools/mm_train.py configs/mmdet/demo/mask_rcnn_davit_demo_shapes.py --work-dir runs/demo_det
    torchrun --nproc-per-node 8 tools/mm_train.py CONFIG --launcher pytorch
    python tools/mm_train.py CONFIG --resume            # the newest complete checkpoint in --work-dir (if any)
    python tools/mm_train.py CONFIG --resume PATH.pth   # a given checkpoint

Demo configs (``demo_data = 'coco' | 'ade'``) get their data generated on first use; those that start from the
main job's checkpoint (``configs/*/demo/*test_gc_vit*``) need ``python tools/train.py`` to have run first.
Install the stack first: ``bash tools/install_openmmlab.sh``.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# Run from a checkout without installing: make the repository's visionattn importable.
_REPO = Path(__file__).resolve().parents[1]
if (_REPO / "visionattn").is_dir() and str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))


def parse_args(argv=None):
    from mmengine.config import DictAction

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="config file")
    parser.add_argument("--work-dir", help="where logs and checkpoints go (default: work_dirs/<config name>)")
    parser.add_argument("--resume", nargs="?", const="auto", default=None,
                        help="resume from this checkpoint, or (no value) from the newest complete one in the work "
                             "dir; with none there yet, training starts fresh")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="allow a full pickle load of checkpoints that hold more than tensors and plain data "
                             "(runs code from the file: only for files you trust)")
    parser.add_argument("--skip-bad-images", action="store_true",
                        help="leave out samples whose files are missing (counted) instead of stopping")
    parser.add_argument("--amp", action="store_true", help="automatic mixed precision")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction,
                        help="override config entries, e.g. train_cfg.max_epochs=1 'model.backbone.with_cp=True'")
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none",
                        help="job launcher (pytorch: under torchrun)")
    parser.add_argument("--local-rank", "--local_rank", type=int, default=0)
    args = parser.parse_args(argv)
    if args.amp:
        from mmengine.device import is_cuda_available, is_mlu_available, is_npu_available

        if not (is_cuda_available() or is_npu_available() or is_mlu_available()):
            # mmengine's AmpOptimWrapper only asserts this; say it plainly instead of a bare AssertionError
            parser.error("--amp: mmengine's AmpOptimWrapper (float16 with a loss scaler) needs a CUDA, NPU or MLU "
                         "device; none is available, so train without --amp on this machine")
    os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    from mmengine.runner import Runner

    import visionattn.mm  # noqa: F401  (registers VisionAttnBackbone; safe loading, atomic saves)
    from visionattn.checkpoint import remove_stale_temp_files, trusted_checkpoints
    from visionattn.mm.data_checks import DataFilesHook
    from visionattn.mm.demo import MainJobCheckpointMissing, apply_demo_data
    from visionattn.mm.runner import load_config
    from visionattn.mm.serialization import find_resume_checkpoint

    cfg = load_config(args.config, args.launcher, args.cfg_options, args.work_dir)
    if args.amp:
        cfg.optim_wrapper.type = "AmpOptimWrapper"
        cfg.optim_wrapper.loss_scale = "dynamic"
    if args.resume == "auto":
        # the newest checkpoint that reads back completely (a torn one from a killed save is skipped)
        resume_from = find_resume_checkpoint(cfg.work_dir) if os.path.isdir(cfg.work_dir) else None
        if os.path.isdir(cfg.work_dir):
            remove_stale_temp_files(cfg.work_dir)  # what a killed save left behind
        if resume_from is not None:
            cfg.resume, cfg.load_from = True, resume_from
        else:
            print(f"--resume: no checkpoint in {cfg.work_dir} yet; starting a new run")
            cfg.resume = False
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    try:
        apply_demo_data(cfg)
    except MainJobCheckpointMissing as err:
        raise SystemExit(f"mm_train.py: {err}") from None

    with trusted_checkpoints(args.trust_checkpoint or None):
        runner = Runner.from_cfg(cfg)
        runner.register_hook(DataFilesHook(skip=args.skip_bad_images))  # missing image files named up front
        runner.train()


if __name__ == "__main__":
    sys.exit(main())
