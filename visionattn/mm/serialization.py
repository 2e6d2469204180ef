"""Let ``torch.load(weights_only=True)`` (torch's default) read mmengine Runner checkpoints.

mmengine 0.10.7 calls ``torch.load`` without ``weights_only``; its checkpoints pickle the message hub
(``HistoryBuffer`` objects holding numpy arrays and scalars) beside the tensors, so resuming fails with
``Unsupported global: GLOBAL mmengine.logging.history_buffer.HistoryBuffer``. Rather than switching the
safe loader off for everything (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``), only these plain data types
are allow-listed.
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


def allow_mmengine_checkpoints() -> None:
    """Add :data:`MMENGINE_SAFE_GLOBALS` to torch's ``weights_only`` allow-list (idempotent)."""
    torch.serialization.add_safe_globals(MMENGINE_SAFE_GLOBALS)
