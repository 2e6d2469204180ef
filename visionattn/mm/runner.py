"""Config loading shared by tools/mm_train.py and tools/mm_test.py."""
from __future__ import annotations

import os
import os.path as osp
from typing import Optional


def load_config(path: str, launcher: str = "none", cfg_options: Optional[dict] = None,
                work_dir: Optional[str] = None):
    """``Config.fromfile`` with the launcher, ``--cfg-options`` and the work dir applied.

    The work dir defaults to ``work_dirs/<config name>`` (mmdet's and mmseg's convention) unless the
    config or ``work_dir`` sets one. Under torchrun (``launcher='pytorch'``) on a machine without CUDA the
    run is set up for CPU (:func:`setup_cpu_distributed`).
    """
    from mmengine.config import Config

    cfg = Config.fromfile(path)
    cfg.launcher = launcher
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if work_dir:
        cfg.work_dir = work_dir
    elif cfg.get("work_dir", None) is None:
        cfg.work_dir = osp.join("work_dirs", osp.splitext(osp.basename(path))[0])
    setup_cpu_distributed(cfg)
    return cfg


def setup_cpu_distributed(cfg) -> bool:
    """Let ``torchrun ... --launcher pytorch`` train and test on CPU: gloo, and DDP without device ids.

    mmengine 0.10.7 assumes CUDA under the pytorch launcher: its ``init_dist`` calls ``torch.cuda.set_device``
    and its DDP wrapper passes ``device_ids=[LOCAL_RANK]``, both of which fail without a GPU. On such a machine
    the gloo process group is started here (mmengine then skips its own ``init_dist``) and
    ``model_wrapper_cfg`` wraps the model in ``MMDistributedDataParallel`` with ``device_ids=None``. The
    samplers split the data by rank as usual; every evaluator gathers the results of all ranks (duplicates
    padded by the sampler are cut off at the data set's length). A no-op with CUDA, or without a launcher.

    Returns whether the CPU setup was applied.
    """
    import torch

    if cfg.get("launcher", "none") != "pytorch" or torch.cuda.is_available():
        return False
    import torch.distributed as dist

    if not dist.is_initialized():
        missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
        if missing:
            raise RuntimeError(f"--launcher pytorch needs torchrun's environment (missing {missing}); run "
                               "`torchrun --nproc-per-node N tools/mm_train.py CONFIG --launcher pytorch`")
        dist.init_process_group(backend="gloo")
    env_cfg = cfg.get("env_cfg", None) or {}
    env_cfg.setdefault("dist_cfg", {})["backend"] = "gloo"
    cfg.env_cfg = env_cfg
    if cfg.get("model_wrapper_cfg", None) is None:
        cfg.model_wrapper_cfg = dict(type="MMDistributedDataParallel", device_ids=None, broadcast_buffers=False,
                                     find_unused_parameters=cfg.get("find_unused_parameters", False))
    return True
