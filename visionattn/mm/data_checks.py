"""Annotations that point at missing files are named before training starts, not at some step mid-epoch.

mmdet / mmseg datasets read the annotation file up front but open each image only when its sample is drawn, so a
COCO ``file_name`` (or an ADE label map) that does not exist stops a run whenever that sample comes up, possibly
hours in. :func:`check_data_files` checks every ``img_path`` / ``seg_map_path`` of a dataset (a ``stat`` per file)
and raises ``FileNotFoundError`` naming the missing ones, or, with ``skip=True`` (``--skip-bad-images``), drops those
samples with a count. :class:`DataFilesHook` runs it on the runner's datasets in ``before_run``.
"""
from __future__ import annotations

import logging
import os
from typing import Iterator, List

from mmengine.hooks import Hook

_logger = logging.getLogger(__name__)

_PATH_KEYS = ("img_path", "seg_map_path")


def _base_datasets(dataset) -> Iterator:
    """The mmengine ``BaseDataset`` objects inside dataset wrappers (Concat / Repeat / ClassBalanced)."""
    inner = getattr(dataset, "datasets", None)
    if isinstance(inner, (list, tuple)):
        for d in inner:
            yield from _base_datasets(d)
    elif getattr(dataset, "dataset", None) is not None and not hasattr(dataset, "get_data_info"):
        yield from _base_datasets(dataset.dataset)
    elif hasattr(dataset, "get_data_info"):
        yield dataset


def _describe(dataset) -> str:
    ann = getattr(dataset, "ann_file", "") or ""
    return f"{type(dataset).__name__}({ann})" if ann else type(dataset).__name__


def check_data_files(dataset, skip: bool = False) -> int:
    """Check that every file a dataset's annotations name exists; returns how many samples were dropped.

    Raises ``FileNotFoundError`` listing the missing files (first 10 and the count) unless ``skip``; with ``skip``
    the samples are removed (``get_subset_``) and the count is logged. Remote paths (``s3://...``) are not checked.
    """
    dropped = 0
    for base in _base_datasets(dataset):
        if hasattr(base, "full_init"):
            base.full_init()
        missing: List[str] = []
        keep: List[int] = []
        for index in range(len(base)):
            info = base.get_data_info(index)
            absent = [info[k] for k in _PATH_KEYS
                      if isinstance(info.get(k), str) and "://" not in info[k] and not os.path.exists(info[k])]
            if absent:
                missing.extend(absent)
            else:
                keep.append(index)
        if not missing:
            continue
        shown = ", ".join(missing[:10]) + (f", ... ({len(missing)} in all)" if len(missing) > 10 else "")
        if not skip:
            raise FileNotFoundError(
                f"{_describe(base)}: {len(missing)} file(s) named in the annotations do not exist: {shown}. Fix the "
                "annotation file or data_root / data_prefix, or pass --skip-bad-images to leave those samples out.")
        _logger.warning("%s: leaving out %d sample(s) whose files do not exist (--skip-bad-images): %s",
                        _describe(base), len(base) - len(keep), shown)
        dropped += len(base) - len(keep)
        base.get_subset_(keep)
    return dropped


class DataFilesHook(Hook):
    """Runs :func:`check_data_files` on the runner's built train / val / test datasets before the run."""

    priority = "VERY_HIGH"

    def __init__(self, skip: bool = False):
        self.skip = skip

    def before_run(self, runner) -> None:
        from mmengine.runner import BaseLoop

        for name in ("_train_loop", "_val_loop", "_test_loop"):
            loop = getattr(runner, name, None)
            dataloader = getattr(loop, "dataloader", None) if isinstance(loop, BaseLoop) else None
            if dataloader is not None and check_data_files(dataloader.dataset, skip=self.skip):
                _refresh_sampler(dataloader)


def _refresh_sampler(dataloader) -> None:
    """Recompute a built ``DefaultSampler``'s sizes after samples were dropped from its dataset."""
    from mmengine.dataset import DefaultSampler

    sampler = getattr(getattr(dataloader, "batch_sampler", None), "sampler", None) or dataloader.sampler
    if isinstance(sampler, DefaultSampler):
        epoch = sampler.epoch
        DefaultSampler.__init__(sampler, sampler.dataset, shuffle=sampler.shuffle, seed=sampler.seed,
                                round_up=sampler.round_up)
        sampler.epoch = epoch
