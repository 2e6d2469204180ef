"""Backend choice shared by every op: an ordered list of backends, each able to say why it refuses."""
from __future__ import annotations

import logging
import os
from typing import Callable, Optional, Sequence, Set, Tuple

import torch

_logger = logging.getLogger(__name__)

ENV_BACKEND = "VISIONATTN_BACKEND"


def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def triton_interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def triton_supports(device: torch.device) -> Tuple[bool, str]:
    """Whether the Triton kernels can run on tensors of ``device``, and if not, why."""
    if not triton_available():
        return False, "triton is not installed"
    if device.type == "cuda":
        return True, ""
    if device.type == "cpu" and triton_interpreting():
        return True, ""
    return False, (
        f"Triton kernels need a CUDA device (got {device.type!r}); on CPU they only run under "
        "TRITON_INTERPRET=1 (set before triton is imported)"
    )


def reference_supports(device: torch.device) -> Tuple[bool, str]:
    return True, ""


_warned: Set[Tuple[str, str]] = set()


def warn_fallback(op_name: str, reason: str) -> None:
    """Log once per (op, reason), at WARNING level, that the automatic choice fell back from Triton to the
    reference backend: speed and memory change, so it must not happen silently."""
    key = (op_name, reason)
    if key in _warned:
        return
    _warned.add(key)
    _logger.warning("%s: falling back from the triton backend to the reference backend: %s", op_name, reason)


SupportFn = Callable[[torch.device], Tuple[bool, str]]


def choose_backend(
        op_name: str,
        backend: Optional[str],
        device: torch.device,
        backends: Sequence[Tuple[str, SupportFn]],
) -> str:
    """Pick a backend for ``op_name``.

    An explicit ``backend`` (or the ``VISIONATTN_BACKEND`` environment variable) wins and raises if it
    cannot run. Otherwise Triton is used on CUDA and the reference everywhere else (the interpreter is
    for tests, never a default).
    """
    names = [name for name, _ in backends]
    requested = backend if backend is not None else os.environ.get(ENV_BACKEND) or None
    if requested is not None:
        if requested not in names:
            source = "backend" if backend is not None else ENV_BACKEND
            raise ValueError(f"{op_name}: {source}={requested!r} is not one of {names}")
        ok, why = dict(backends)[requested](device)
        if not ok:
            raise ValueError(f"{op_name}: backend {requested!r} cannot run here: {why}")
        return requested
    for name, supports in backends:
        if name == "triton" and device.type != "cuda":
            continue
        ok, why = supports(device)
        if ok:
            return name
        _logger.debug("%s: backend %s refused: %s", op_name, name, why)
    raise ValueError(f"{op_name}: no backend among {names} can run on {device}")
