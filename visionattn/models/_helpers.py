"""Checkpoint conversion helpers shared by every family's ``checkpoint_filter_fn``."""
from __future__ import annotations

import os
from typing import Dict, Iterable, Mapping, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from visionattn.checkpoint import load_checkpoint_file as _load_checkpoint_file

_WRAPPER_KEYS = ("state_dict_ema", "model_ema", "state_dict", "model", "module")


def unwrap_state_dict(checkpoint: Mapping, prefer_ema: bool = False) -> Dict[str, torch.Tensor]:
    """Return the plain state dict inside a training checkpoint.

    Official checkpoints come plain or wrapped in ``model`` / ``state_dict`` (with optimizer and
    epoch beside them); DDP adds a ``module.`` prefix to every key.
    """
    if not isinstance(checkpoint, Mapping):
        raise TypeError(f"checkpoint must be a mapping (a state dict), got {type(checkpoint).__name__}")
    state_dict = checkpoint
    order = _WRAPPER_KEYS if prefer_ema else _WRAPPER_KEYS[2:]
    for key in order:
        if key in state_dict and isinstance(state_dict[key], Mapping):
            state_dict = state_dict[key]
            break
    if state_dict and all(k.startswith("module.") for k in state_dict):
        state_dict = {k[len("module."):]: v for k, v in state_dict.items()}
    return dict(state_dict)


def check_converted(
        state_dict: Mapping[str, torch.Tensor],
        model: nn.Module,
        source: str = "checkpoint",
        classifier: Optional[str] = "head",
) -> None:
    """Raise one ValueError naming every missing, unexpected and mis-shaped key.

    ``load_state_dict(strict=True)`` reports keys but stops at the first shape error; a converter
    should say everything that is wrong at once. Keys under ``classifier`` are exempt: timm drops or
    re-initialises the classifier itself when ``num_classes`` differs from the checkpoint's.
    """
    def exempt(key: str) -> bool:
        return classifier is not None and key.startswith(classifier + ".")

    expected = {k: v for k, v in model.state_dict().items() if not exempt(k)}
    state_dict = {k: v for k, v in state_dict.items() if not exempt(k)}
    missing = sorted(k for k in expected if k not in state_dict)
    unexpected = sorted(k for k in state_dict if k not in expected)
    mis_shaped = sorted(
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in state_dict if k in expected and tuple(state_dict[k].shape) != tuple(expected[k].shape)
    )
    if not (missing or unexpected or mis_shaped):
        return
    lines = [f"{source} does not match {type(model).__name__} after conversion:"]
    for title, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", mis_shaped)):
        if keys:
            shown = ", ".join(keys[:12]) + (f", ... ({len(keys)} in all)" if len(keys) > 12 else "")
            lines.append(f"  {title}: {shown}")
    lines.append("  (is this checkpoint for another model or variant?)")
    raise ValueError("\n".join(lines))


def resize_rel_pos_table(table: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """Bicubically resize a relative-position table ``[heads, h, w]`` to ``[heads, *size]``."""
    if table.ndim != 3:
        raise ValueError(f"table must be [heads, h, w], got shape {tuple(table.shape)}")
    if tuple(table.shape[-2:]) == tuple(size):
        return table
    dtype = table.dtype
    resized = F.interpolate(table.unsqueeze(0).float(), size=size, mode="bicubic", align_corners=False)
    return resized.squeeze(0).to(dtype)


def drop_keys(state_dict: Mapping[str, torch.Tensor], patterns: Iterable[str]) -> Dict[str, torch.Tensor]:
    """Drop buffers that a checkpoint carries but the model recomputes (e.g. relative index tables)."""
    patterns = tuple(patterns)
    return {k: v for k, v in state_dict.items() if not any(p in k for p in patterns)}


def load_checkpoint_file(path: "os.PathLike[str] | str", map_location: str = "cpu", *,
                         trust_checkpoint: Optional[bool] = None) -> Dict:
    """Load a ``.safetensors``, ``.pth`` or ``.pth.tar`` file without running code from it.

    The name every family's loader calls; the policy lives in :func:`visionattn.checkpoint.load_checkpoint_file`:
    ``weights_only=True`` with a small allow-list (argparse.Namespace, numpy scalars, ...), a file that needs more
    is refused with :class:`visionattn.checkpoint.UntrustedCheckpointError` naming what it pickles, unless the user
    opts in (``trust_checkpoint=True``, ``VISIONATTN_TRUST_CHECKPOINT=1``, ``--trust-checkpoint``).
    """
    return _load_checkpoint_file(path, map_location=map_location, trust_checkpoint=trust_checkpoint)
