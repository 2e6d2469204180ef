"""Point a demo config at the built-in demo data (:mod:`visionattn.data.demo`), generating it on first use.

Demo configs carry ``demo_data = 'coco'`` or ``'ade'``; their dataset paths are relative to the data set's
folder. :func:`apply_demo_data` makes every dataloader's ``data_root`` and every evaluator's ``ann_file``
absolute, so ``tools/mm_train.py`` / ``tools/mm_test.py`` run them on a fresh machine with no downloads.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from visionattn.data.demo import ensure_demo

_KINDS = ("coco", "ade")


def apply_demo_data(cfg, root: Optional[os.PathLike] = None) -> Optional[Path]:
    """Fill in the demo data paths of an mmengine ``Config`` in place; no-op for configs without ``demo_data``.

    Args:
        cfg: an ``mmengine.Config``.
        root: where the demo data lives (default ``$VISIONATTN_DATA`` or ``~/.cache/visionattn``).

    Returns the data set folder, or None when ``cfg`` is not a demo config.
    """
    kind = cfg.get("demo_data", None)
    if kind is None:
        return None
    if kind not in _KINDS:
        raise ValueError(f"demo_data must be one of {_KINDS}, got {kind!r}")
    data_root = ensure_demo(kind, root=root)
    for name in ("train_dataloader", "val_dataloader", "test_dataloader"):
        loader = cfg.get(name, None)
        if loader is not None and loader.get("dataset", None) is not None:
            loader.dataset.data_root = str(data_root)
    for name in ("val_evaluator", "test_evaluator"):
        evaluators = cfg.get(name, None)
        if evaluators is None:
            continue
        for evaluator in evaluators if isinstance(evaluators, (list, tuple)) else [evaluators]:
            ann_file = evaluator.get("ann_file", None)
            if ann_file and not os.path.isabs(ann_file):
                evaluator.ann_file = str(data_root / ann_file)
    return data_root
