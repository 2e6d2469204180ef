"""mmengine checkpoints through visionattn's checkpoint policy (:mod:`visionattn.checkpoint`).

Loading. mmengine 0.10.7 reads checkpoints with ``torch.load`` and no ``weights_only``: torch's default
(weights-only) refuses its Runner checkpoints, while ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` would re-enable arbitrary
pickle loading for everything. Instead:

- :func:`allow_mmengine_checkpoints` allow-lists the plain data types a Runner checkpoint pickles beside the tensors:
  mmengine's ``HistoryBuffer`` (the message hub), numpy arrays/scalars/dtypes, ``ConfigDict``. ``HistoryBuffer``
  pickles its four default statistics functions as ``getattr(HistoryBuffer, 'min')`` ...; rather than allowing
  ``builtins.getattr`` (which could reach anything), a stand-in registered under that name returns exactly those four
  functions and refuses everything else. Files written by a process that never imported ``visionattn.mm`` load too.
- :func:`route_mmengine_loading` registers :func:`load_from_local` / :func:`load_from_http` as mmengine's
  ``CheckpointLoader`` schemes, so ``Runner.resume``, ``load_from``, ``init_cfg=dict(type='Pretrained')`` and
  ``mmengine.runner.load_checkpoint`` go through :func:`visionattn.checkpoint.load_checkpoint_file`: a file that
  pickles anything else is refused with an error naming it, unless the user opts in
  (``--trust-checkpoint`` on the tools, ``VISIONATTN_TRUST_CHECKPOINT=1``).

Saving. mmengine writes ``epoch_N.pth`` by opening the final name and writing into it, so a process killed in the
middle of a save leaves a torn file. :func:`make_mmengine_saves_atomic` replaces its ``save_checkpoint`` for local
paths with :func:`visionattn.checkpoint.save_checkpoint_file` (temporary file, fsync, rename).
:func:`find_resume_checkpoint` picks the newest complete checkpoint of a work dir for ``--resume``.
"""
from __future__ import annotations

import glob
import logging
import os
import pickle
import re
from typing import Any, List, Optional

import torch

from visionattn.checkpoint import (
    SAFE_GLOBALS, download_checkpoint, load_checkpoint_file, save_checkpoint_file, verify_checkpoint_file,
)

_logger = logging.getLogger(__name__)

_DEFAULT_STATISTICS = ("min", "max", "current", "mean")


def _history_buffer_statistic(owner, name):
    """Stand-in for ``builtins.getattr`` in weights-only loads: only ``HistoryBuffer``'s default statistics."""
    from mmengine.logging.history_buffer import HistoryBuffer

    if owner is HistoryBuffer and name in _DEFAULT_STATISTICS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f"Unsupported global: GLOBAL builtins.getattr was not an allowed global by default (only "
        f"getattr(HistoryBuffer, {'/'.join(_DEFAULT_STATISTICS)}) is allowed, not getattr({owner!r}, {name!r}))")


def _mmengine_globals() -> List[Any]:
    from mmengine.logging.history_buffer import HistoryBuffer

    found: List[Any] = [HistoryBuffer, (_history_buffer_statistic, "builtins.getattr")]
    try:
        from mmengine.config.config import ConfigDict  # some Runner metas carry a ConfigDict
        found.append(ConfigDict)
    except ImportError:  # pragma: no cover
        pass
    return found


#: visionattn's allow-list (argparse.Namespace, numpy, ...) plus mmengine's own plain-data types.
MMENGINE_SAFE_GLOBALS: List[Any] = list(SAFE_GLOBALS) + _mmengine_globals()


def _history_buffer_getstate(self) -> dict:
    """``HistoryBuffer`` state without the default statistics functions (restored by ``__setstate__``)."""
    state = {k: v for k, v in self.__dict__.items() if k != "statistics_methods"}
    custom = {k: v for k, v in type(self)._statistics_methods.items() if k not in _DEFAULT_STATISTICS}
    if custom:
        state["statistics_methods"] = custom
    return state


def allow_mmengine_checkpoints() -> None:
    """Let ``torch.load(weights_only=True)`` read mmengine Runner checkpoints (idempotent).

    Adds :data:`MMENGINE_SAFE_GLOBALS` to torch's allow-list and stops ``HistoryBuffer`` from pickling its
    default statistics functions in the checkpoints written from now on.
    """
    from mmengine.logging.history_buffer import HistoryBuffer

    torch.serialization.add_safe_globals(MMENGINE_SAFE_GLOBALS)
    HistoryBuffer.__getstate__ = _history_buffer_getstate


# --------------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------------

def load_from_local(filename, map_location=None):
    """mmengine ``CheckpointLoader`` scheme for local files, through :func:`load_checkpoint_file`."""
    filename = os.path.expanduser(filename)
    if not os.path.isfile(filename):
        raise FileNotFoundError(f"{filename} can not be found.")
    return load_checkpoint_file(filename, map_location=map_location if map_location is not None else "cpu")


def load_from_http(filename, map_location=None, model_dir=None, progress=False):
    """mmengine ``CheckpointLoader`` scheme for http(s) URLs: download once (rank 0 first), then load safely."""
    from mmengine.dist import get_dist_info

    rank, world_size = get_dist_info()
    local = download_checkpoint(filename, model_dir, progress) if rank == 0 else None
    if world_size > 1:
        torch.distributed.barrier()
        if rank > 0:
            local = download_checkpoint(filename, model_dir, progress)
    return load_checkpoint_file(local, map_location=map_location if map_location is not None else "cpu")


def route_mmengine_loading() -> None:
    """Make mmengine's ``CheckpointLoader`` load local files and URLs (also ``open-mmlab://``, ``torchvision://``,
    ``mmcls://``, which resolve to URLs) through :func:`load_checkpoint_file` (idempotent)."""
    from mmengine.runner import checkpoint as mm_checkpoint

    mm_checkpoint.CheckpointLoader.register_scheme(prefixes="", loader=load_from_local, force=True)
    mm_checkpoint.CheckpointLoader.register_scheme(prefixes=("http://", "https://"), loader=load_from_http, force=True)
    mm_checkpoint.load_from_local = load_from_local  # the model-zoo schemes call these module-level names
    mm_checkpoint.load_from_http = load_from_http


# --------------------------------------------------------------------------------------------------
# saving and resuming
# --------------------------------------------------------------------------------------------------

_MM_SAVE: dict = {}


def make_mmengine_saves_atomic() -> None:
    """Route mmengine's ``save_checkpoint`` for local paths through an atomic save (idempotent).

    Other backends (``s3://``, ``pavi://``, explicit ``backend_args``) keep mmengine's own writer.
    """
    if _MM_SAVE:
        return
    import mmengine.runner as mm_runner
    from mmengine.runner import checkpoint as mm_checkpoint
    from mmengine.runner import runner as mm_runner_module

    original = mm_checkpoint.save_checkpoint

    def save_checkpoint(checkpoint, filename, file_client_args=None, backend_args=None):
        if file_client_args is None and backend_args is None and "://" not in str(filename):
            os.makedirs(os.path.dirname(os.path.abspath(filename)), exist_ok=True)
            save_checkpoint_file(checkpoint, filename)
            return
        original(checkpoint, filename, file_client_args=file_client_args, backend_args=backend_args)

    save_checkpoint.__doc__ = (original.__doc__ or "") + "\n\n(visionattn: local files are written atomically.)"
    for module in (mm_checkpoint, mm_runner, mm_runner_module):
        if getattr(module, "save_checkpoint", None) is original:
            module.save_checkpoint = save_checkpoint
    _MM_SAVE.update(original=original, atomic=save_checkpoint)


def _step_of(path: str) -> Optional[int]:
    match = re.fullmatch(r"(?:epoch|iter)_(\d+)\.pth", os.path.basename(path))
    return int(match.group(1)) if match else None


def find_resume_checkpoint(work_dir: str) -> Optional[str]:
    """The newest complete Runner checkpoint of ``work_dir`` (``epoch_N.pth`` / ``iter_N.pth``, highest N first,
    and the file ``last_checkpoint`` names), skipping truncated or corrupt ones with a message; None if none.

    mmengine's own ``--resume`` trusts ``last_checkpoint`` blindly; this also survives a torn checkpoint or a
    ``last_checkpoint`` written only in part.
    """
    candidates: List[str] = sorted((p for p in glob.glob(os.path.join(glob.escape(work_dir), "*_*.pth"))
                                    if _step_of(p) is not None), key=lambda p: (_step_of(p), p), reverse=True)
    last_file = os.path.join(work_dir, "last_checkpoint")
    if os.path.isfile(last_file):
        with open(last_file) as f:
            named = f.read().strip()
        if named:
            local = named if os.path.isfile(named) else os.path.join(work_dir, os.path.basename(named))
            if _step_of(local) is None and os.path.isfile(local):  # a custom filename_tmpl: only last_checkpoint knows
                candidates.insert(0, local)
    for path in candidates:
        problem = verify_checkpoint_file(path)
        if problem is None:
            return path
        _logger.warning("not resuming from %s: %s", path, problem)
    return None
