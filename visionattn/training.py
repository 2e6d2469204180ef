"""Guards for training loops (used by ``tools/train.py`` / ``tools/validate.py``): a NaN/Inf loss stops with what
to do, a requested AMP dtype the device cannot use is said, ``--resume auto`` finds the run to continue.

Checkpoint loading and atomic saving live in :mod:`visionattn.checkpoint`; unreadable images in
:mod:`visionattn.data.checks`.
"""
from __future__ import annotations

import argparse
import logging
import math
import os
from typing import Optional

import torch

from visionattn.checkpoint import resolve_resume

_logger = logging.getLogger(__name__)

__all__ = ["NonFiniteLossError", "check_finite_loss", "resolve_amp_dtype", "resolve_resume_args"]


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or Inf; raised before the step that would write it into the weights."""


def check_finite_loss(loss: torch.Tensor, epoch: int, step: int, optimizer: torch.optim.Optimizer,
                      args: Optional[argparse.Namespace] = None, num_updates: Optional[int] = None) -> None:
    """Raise :class:`NonFiniteLossError` naming the epoch, step, learning rate and what to try, if ``loss`` is
    not finite. Call it before ``backward()``: the weights (and every saved checkpoint) are then still finite.

    Reads the loss back to the host (one sync per step, as logging the loss does anyway).
    """
    value = float(loss.detach().float().item())
    if math.isfinite(value):
        return
    lr = optimizer.param_groups[0]["lr"]
    amp = bool(getattr(args, "amp", False))
    where = f"epoch {epoch}, step {step}" + (f" (update {num_updates})" if num_updates is not None else "")
    hints = []
    if amp:
        hints.append("train without --amp" + (" (or with --amp-dtype bfloat16)"
                                              if getattr(args, "amp_dtype", "") == "float16" else ""))
    hints.append(f"a lower --lr (e.g. {lr / 3:.1e})")
    if getattr(args, "clip_grad", None) is None:
        hints.append("--clip-grad 1.0")
    hints.append("a longer --warmup-epochs")
    precision = f", AMP {getattr(args, 'amp_dtype', '')}" if amp else ""
    raise NonFiniteLossError(
        f"loss is {value} at {where}, learning rate {lr:.3e}{precision}. Training stopped before this step "
        "touched the weights; the checkpoints already written are intact "
        f"(resume with --resume auto once fixed). Try: {'; '.join(hints)}.")


def resolve_amp_dtype(amp: bool, amp_dtype: str, device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype for ``--amp`` / ``--amp-dtype`` on ``device``; None when AMP is off.

    CPU autocast runs in bfloat16 here (float16 on CPU is slow or unsupported and would need a loss scaler): a
    float16 request on CPU is turned into bfloat16 and said so, never silently.
    """
    if amp_dtype not in ("bfloat16", "float16"):
        raise ValueError(f"--amp-dtype must be 'bfloat16' or 'float16', got {amp_dtype!r}")
    if not amp:
        if amp_dtype == "float16":
            _logger.warning("--amp-dtype float16 has no effect without --amp; running in float32")
        return None
    if device.type == "cpu" and amp_dtype == "float16":
        _logger.warning("--amp-dtype float16 on CPU: autocast runs in bfloat16 instead (CPU float16 autocast is "
                        "slow and needs a loss scaler); pass --amp-dtype bfloat16 to silence this")
        return torch.bfloat16
    return getattr(torch, amp_dtype)


def resolve_resume_args(args: argparse.Namespace) -> None:
    """Resolve ``args.resume`` ('auto', a run folder or a file) in place (see
    :func:`visionattn.checkpoint.resolve_resume`). When a run folder is continued, ``args.output`` /
    ``args.experiment`` are set to it, so the run keeps writing there. Raises ValueError for a bad value."""
    path, folder = resolve_resume(args.resume, args.output, getattr(args, "experiment", "") or "",
                                  getattr(args, "model", None))
    args.resume = path
    if folder is not None:
        folder = os.path.abspath(folder)
        args.output, args.experiment = os.path.dirname(folder), os.path.basename(folder)
