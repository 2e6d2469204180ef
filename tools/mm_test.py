#!/usr/bin/env python
"""Evaluate a trained mmdet 3 / mmseg 1 checkpoint with mmengine's Runner (the config's test evaluator).

    python tools/mm_test.py configs/mmdet/demo/mask_rcnn_davit_demo_shapes.py runs/demo_det/epoch_8.pth
    torchrun --nproc-per-node 8 tools/mm_test.py CONFIG CHECKPOINT --launcher pytorch

Prints and returns the metrics (also written under ``--work-dir``).
"""
from __future__ import annotations

import argparse
import json
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
    parser.add_argument("checkpoint", help="checkpoint file (a Runner checkpoint or a plain state dict)")
    parser.add_argument("--work-dir", help="where logs and metrics go (default: work_dirs/<config name>)")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, help="override config entries")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="allow a full pickle load of a checkpoint that holds more than tensors and plain data "
                             "(runs code from the file: only for files you trust)")
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none",
                        help="job launcher (pytorch: under torchrun)")
    parser.add_argument("--local-rank", "--local_rank", type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    from mmengine.runner import Runner

    import visionattn.mm  # noqa: F401  (registers VisionAttnBackbone; safe checkpoint loading)
    from visionattn.checkpoint import trusted_checkpoints
    from visionattn.mm.data_checks import DataFilesHook
    from visionattn.mm.demo import apply_demo_data
    from visionattn.mm.runner import load_config

    cfg = load_config(args.config, args.launcher, args.cfg_options, args.work_dir)
    cfg.load_from = args.checkpoint
    apply_demo_data(cfg, need_checkpoint=False)  # the checkpoint tested holds the backbone's weights

    with trusted_checkpoints(args.trust_checkpoint or None):
        runner = Runner.from_cfg(cfg)
        runner.register_hook(DataFilesHook())  # missing image files named up front
        metrics = runner.test()
    print(json.dumps({k: float(v) if isinstance(v, (int, float)) else str(v) for k, v in metrics.items()}))
    return metrics


if __name__ == "__main__":
    main()
