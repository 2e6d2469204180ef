"""Config loading shared by tools/mm_train.py and tools/mm_test.py."""
from __future__ import annotations

import os.path as osp
from typing import Optional


def load_config(path: str, launcher: str = "none", cfg_options: Optional[dict] = None,
                work_dir: Optional[str] = None):
    """``Config.fromfile`` with the launcher, ``--cfg-options`` and the work dir applied.

    The work dir defaults to ``work_dirs/<config name>`` (mmdet's and mmseg's convention) unless the
    config or ``work_dir`` sets one.
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
    return cfg
