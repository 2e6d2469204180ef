"""Gated linear attention (GLA), causal and bidirectional: public entry, checks and dispatch.

``gla``: ``S_t = diag(exp(g_t)) S_{t-1} + k_t v_t^T``, ``o_t = scale * q_t^T S_t``, ``S_0 = 0`` (with
``reverse=True`` the scan runs from the last token to the first).
``bigla``: ViG's bidirectional form, ``(gla(q, k, v, g_fwd) + gla(q, k, v, g_bwd, reverse=True)) / 2``; each
token's own ``k_t v_t^T`` term counts in both directions.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from .._dispatch import choose_backend, reference_supports, triton_supports, warn_fallback
from .op import bigla_backward_op, bigla_op, gla_backward_op, gla_op  # registers the visionattn::*gla* operators

__all__ = ["gla", "bigla", "GLA_BACKENDS", "gla_op", "bigla_op", "gla_backward_op", "bigla_backward_op"]

GLA_BACKENDS: Tuple[str, ...] = ("triton", "reference")

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
# Register tiles of the Triton kernels hold [4, 64, dk] and [64, dv] fp32 blocks.
TRITON_MAX_DK = 64
TRITON_MAX_DV = 128


def _triton_backend_supports(device: torch.device) -> Tuple[bool, str]:
    return triton_supports(device)


_BACKENDS = [("triton", _triton_backend_supports), ("reference", reference_supports)]


def _can_sync(t: torch.Tensor) -> bool:
    """Whether a value check may read ``t`` back to the host (the gate-sign check costs one device sync;
    it is skipped while a CUDA graph is being captured or torch.compile is tracing)."""
    if t.device.type == "meta":
        return False
    if torch.compiler.is_compiling():
        return False
    return not (t.is_cuda and torch.cuda.is_current_stream_capturing())


def _check_inputs(op: str, q, k, v, gates) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)) + tuple(gates):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(f"{op}: {name} must have shape [B, L, heads, dim] (4 dims), got {tuple(t.shape)}")
    if q.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{op}: q must be float16, bfloat16, float32 or float64, got {q.dtype}")
    batch, length, heads, _ = q.shape
    if length < 1:
        raise ValueError(f"{op}: the sequence length (dim 1 of q) must be at least 1, got {length}")
    if k.shape != q.shape:
        raise ValueError(f"{op}: k shape {tuple(k.shape)} must equal q shape {tuple(q.shape)} ([B, L, heads, dk])")
    if tuple(v.shape[:3]) != (batch, length, heads):
        raise ValueError(
            f"{op}: v must have shape [B, L, heads, dv] = [{batch}, {length}, {heads}, dv], got {tuple(v.shape)}"
        )
    for name, t in (("k", k), ("v", v)):
        if t.dtype != q.dtype:
            raise TypeError(f"{op}: {name} dtype {t.dtype} must equal q dtype {q.dtype}")
    for name, t in (("k", k), ("v", v)) + tuple(gates):
        if t.device != q.device:
            raise ValueError(f"{op}: {name} is on {t.device} but q is on {q.device}")
    for name, g in gates:
        if g.shape != q.shape:
            raise ValueError(f"{op}: {name} shape {tuple(g.shape)} must equal q shape {tuple(q.shape)}")
        if g.dtype not in _FLOAT_DTYPES:
            raise TypeError(f"{op}: {name} must be a floating-point tensor (log of the decay), got {g.dtype}")
        if _can_sync(g) and bool((g > 0).any()):
            raise ValueError(
                f"{op}: {name} must be <= 0 everywhere (it is the log of a decay in (0, 1]); "
                f"got a maximum of {g.max().item():.4g}. Use e.g. F.logsigmoid(x) / normalizer"
            )


def _choose(op: str, backend: Optional[str], q: torch.Tensor, v: torch.Tensor) -> str:
    chosen = choose_backend(op, backend, q.device, _BACKENDS)
    if chosen != "triton":
        return chosen
    reason = None
    if q.dtype not in _TRITON_DTYPES:
        reason = f"it takes float16, bfloat16 or float32 (got {q.dtype})"
    elif q.shape[-1] > TRITON_MAX_DK or v.shape[-1] > TRITON_MAX_DV:
        reason = f"it supports dk <= {TRITON_MAX_DK} and dv <= {TRITON_MAX_DV} (got {q.shape[-1]}, {v.shape[-1]})"
    if reason is None:
        return chosen
    if backend is not None:
        raise ValueError(f"{op}: the triton backend cannot take these inputs: {reason}; use backend='reference'")
    warn_fallback(op, reason)
    return "reference"


def _scale(scale: Optional[float], q: torch.Tensor, op: str) -> float:
    if scale is None:
        return q.shape[-1] ** -0.5
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise TypeError(f"{op}: scale must be a float or None, got {type(scale).__name__}")
    return float(scale)


def gla(
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        log_gate: torch.Tensor,
        scale: Optional[float] = None,
        reverse: bool = False,
        backend: Optional[str] = None,
) -> torch.Tensor:
    """Gated linear attention, one direction.

    Args:
        q, k: ``[B, L, heads, dk]``.
        v: ``[B, L, heads, dv]``.
        log_gate: ``[B, L, heads, dk]``, log of the per-channel decay (``<= 0``), any float dtype.
        scale: multiplies ``q``; default ``dk ** -0.5``.
        reverse: scan from ``t = L - 1`` down to ``0``.
        backend: ``"triton"`` or ``"reference"``; None picks triton on CUDA and the reference elsewhere
            (``VISIONATTN_BACKEND`` overrides the default).

    Returns:
        ``[B, L, heads, dv]`` in the dtype of ``q``. State and gate arithmetic run in float32 (float64 for
        float64 inputs, reference only). Differentiable in q, k, v and log_gate.
    """
    _check_inputs("gla", q, k, v, (("log_gate", log_gate),))
    if not isinstance(reverse, bool):
        raise TypeError(f"gla: reverse must be a bool, got {type(reverse).__name__}")
    scale = _scale(scale, q, "gla")
    chosen = _choose("gla", backend, q, v)
    return torch.ops.visionattn.gla(q, k, v, log_gate, scale, reverse, chosen)


def bigla(
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        log_gate_fwd: torch.Tensor,
        log_gate_bwd: torch.Tensor,
        scale: Optional[float] = None,
        backend: Optional[str] = None,
) -> torch.Tensor:
    """Bidirectional gated linear attention (ViG):
    ``(gla(q, k, v, log_gate_fwd) + gla(q, k, v, log_gate_bwd, reverse=True)) / 2``.

    Both gates are indexed by original position (``log_gate_bwd[:, t]`` decays the reverse state at token t).

    Args:
        q, k, log_gate_fwd, log_gate_bwd: ``[B, L, heads, dk]``; gates ``<= 0``.
        v: ``[B, L, heads, dv]``.
        scale: default ``dk ** -0.5``.
        backend: as in :func:`gla`. The triton backend runs both directions in the same kernels, reading each
            q/k/v tile once.

    Returns:
        ``[B, L, heads, dv]`` in the dtype of ``q``.
    """
    _check_inputs("bigla", q, k, v, (("log_gate_fwd", log_gate_fwd), ("log_gate_bwd", log_gate_bwd)))
    scale = _scale(scale, q, "bigla")
    chosen = _choose("bigla", backend, q, v)
    return torch.ops.visionattn.bigla(q, k, v, log_gate_fwd, log_gate_bwd, scale, chosen)
