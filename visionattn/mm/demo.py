"""Point a demo config at the built-in demo data (:mod:`visionattn.data.demo`), generating it on first use.

Demo configs carry ``demo_data = 'coco'`` or ``'ade'``; their dataset paths are relative to the data set's
folder. :func:`apply_demo_data` makes every dataloader's ``data_root`` and every evaluator's ``ann_file``
absolute, so ``tools/mm_train.py`` / ``tools/mm_test.py`` run them on a fresh machine with no downloads.

Demo configs that start from the main job (``main_job_checkpoint = 'output/train/demo_main/model_best.pth.tar'``,
the backbone's ``checkpoint=``) get that path resolved by :func:`resolve_backbone_checkpoint`: relative to the
working directory, else to the repository root; when the file does not exist yet, :class:`MainJobCheckpointMissing`
says to run the main job (``python tools/train.py``) first.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

from visionattn.data.demo import ensure_demo

_KINDS = ("coco", "ade")
MAIN_JOB_COMMAND = "python tools/train.py"
# the checkout this package was imported from (where tools/train.py writes output/train/...), if it is one
_REPO = Path(__file__).resolve().parents[2]


class MainJobCheckpointMissing(FileNotFoundError):
    """A demo config starts from the main job's checkpoint and that file does not exist yet."""


def resolve_backbone_checkpoint(cfg, required: bool = True,
                                roots: Optional[Sequence[os.PathLike]] = None) -> Optional[Path]:
    """Make a relative local ``model.backbone.checkpoint`` absolute, in place.

    Looked up under each of ``roots`` in turn (default: the working directory, then the repository root when
    this package runs from a checkout). A config without a backbone checkpoint, or with a URL or an absolute path,
    is left as it is (None is returned for it).

    Args:
        cfg: an ``mmengine.Config``.
        required: when the file is found nowhere, raise :class:`MainJobCheckpointMissing` (naming the places looked
            in and, for the main job's checkpoint, the command that writes it); with False the checkpoint is dropped
            instead (``checkpoint=None``: for testing a whole detector / segmentor checkpoint, which holds the
            backbone's weights anyway).

    Returns the absolute path, or None.
    """
    backbone = cfg.get("model", {}).get("backbone", None)
    checkpoint = backbone.get("checkpoint", None) if backbone is not None else None
    if not checkpoint:
        return None
    if not isinstance(checkpoint, (str, os.PathLike)):
        raise TypeError(f"model.backbone.checkpoint must be a path or URL, got {type(checkpoint).__name__}")
    checkpoint = os.fspath(checkpoint)
    if "://" in checkpoint or os.path.isabs(checkpoint):
        return None
    if roots is None:
        roots = [Path.cwd()] + ([_REPO] if (_REPO / "tools" / "train.py").is_file() else [])
    candidates = []
    for root in roots:
        candidate = (Path(root) / checkpoint).resolve()
        if candidate not in candidates:
            candidates.append(candidate)
    for candidate in candidates:
        if candidate.is_file():
            backbone.checkpoint = str(candidate)
            return candidate
    if not required:
        backbone.checkpoint = None
        return None
    looked = ", ".join(str(c) for c in candidates)
    if checkpoint == cfg.get("main_job_checkpoint", None):
        raise MainJobCheckpointMissing(
            f"this demo starts its backbone from the main job's checkpoint {checkpoint}, which does not exist yet "
            f"(looked for {looked}). Run the main job first, from the repository root: `{MAIN_JOB_COMMAND}` "
            f"(a few minutes on a CPU), then run this command again.")
    raise MainJobCheckpointMissing(f"model.backbone.checkpoint {checkpoint} not found (looked for {looked})")


def apply_demo_data(cfg, root: Optional[os.PathLike] = None, need_checkpoint: bool = True) -> Optional[Path]:
    """Fill in the demo data paths of an mmengine ``Config`` in place; no-op for configs without ``demo_data``.

    Args:
        cfg: an ``mmengine.Config``.
        root: where the demo data lives (default ``$VISIONATTN_DATA`` or ``~/.cache/visionattn``).
        need_checkpoint: passed to :func:`resolve_backbone_checkpoint` as ``required`` (the main job's checkpoint is
            checked before the data is generated).

    Returns the data set folder, or None when ``cfg`` is not a demo config.
    """
    kind = cfg.get("demo_data", None)
    if kind is None:
        return None
    if kind not in _KINDS:
        raise ValueError(f"demo_data must be one of {_KINDS}, got {kind!r}")
    resolve_backbone_checkpoint(cfg, required=need_checkpoint)
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
