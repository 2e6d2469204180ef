"""Let ``torch.load(weights_only=True)`` (torch's default) read mmengine Runner checkpoints.

mmengine 0.10.7 calls ``torch.load`` without ``weights_only``; its checkpoints pickle the message hub
(``HistoryBuffer`` objects holding numpy arrays and scalars) beside the tensors, so resuming fails with
``Unsupported global: GLOBAL mmengine.logging.history_buffer.HistoryBuffer``. Rather than switching the
safe loader off for everything (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``), only these plain data types
are allow-listed.

``HistoryBuffer.__getstate__`` also pickles its four default statistics functions (``HistoryBuffer.min``
...), which pickle as ``getattr(HistoryBuffer, 'min')`` and would need ``builtins.getattr`` allow-listed.
``__setstate__`` restores those defaults anyway, so once ``visionattn.mm`` is imported only custom statistics
methods are written. Checkpoints written by a process that did not import ``visionattn.mm`` still need
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` (only for files you trust).
"""
from __future__ import annotations

from typing import List

import numpy as np
import torch


def _numpy_globals() -> List[object]:
    found: List[object] = [np.ndarray, np.dtype]
    multiarray = getattr(getattr(np, "_core", None), "multiarray", None) or np.core.multiarray
    found += [multiarray._reconstruct, multiarray.scalar]
    # numpy >= 1.25 pickles dtypes by their class (np.dtypes.Float64DType, ...)
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        for name in ("Float64DType", "Float32DType", "Float16DType", "Int64DType", "Int32DType", "Int16DType",
                     "Int8DType", "UInt8DType", "UInt16DType", "UInt32DType", "UInt64DType", "BoolDType"):
            if hasattr(dtypes, name):
                found.append(getattr(dtypes, name))
    return found


def _mmengine_globals() -> List[object]:
    from mmengine.logging.history_buffer import HistoryBuffer

    found: List[object] = [HistoryBuffer]
    try:
        from mmengine.config.config import ConfigDict  # some Runner metas carry a ConfigDict
        found.append(ConfigDict)
    except ImportError:  # pragma: no cover
        pass
    return found


MMENGINE_SAFE_GLOBALS: List[object] = _numpy_globals() + _mmengine_globals()


_DEFAULT_STATISTICS = ("min", "max", "current", "mean")


def _history_buffer_getstate(self) -> dict:
    """``HistoryBuffer`` state without the default statistics functions (restored by ``__setstate__``)."""
    state = {k: v for k, v in self.__dict__.items() if k != "statistics_methods"}
    custom = {k: v for k, v in type(self)._statistics_methods.items() if k not in _DEFAULT_STATISTICS}
    if custom:
        state["statistics_methods"] = custom
    return state


def allow_mmengine_checkpoints() -> None:
    """Let ``torch.load(weights_only=True)`` read mmengine Runner checkpoints written from now on (idempotent).

    Adds :data:`MMENGINE_SAFE_GLOBALS` to torch's allow-list and stops ``HistoryBuffer`` from pickling its
    default statistics functions.
    """
    from mmengine.logging.history_buffer import HistoryBuffer

    torch.serialization.add_safe_globals(MMENGINE_SAFE_GLOBALS)
    HistoryBuffer.__getstate__ = _history_buffer_getstate
