"""2-D (dilated) neighborhood attention with relative position bias: public entry, checks and dispatch.

Semantics are those of NATTEN <= 0.14, which the official NAT / DiNAT weights were trained with: every query
attends to exactly ``kh x kw`` keys, windows shift inward at borders, dilation ``d`` splits an axis into ``d``
interleaved groups, and the bias of (query p, key s) is ``rpb[h, (s_y - p_y)/d_y + kh - 1, (s_x - p_x)/d_x + kw - 1]``.
"""
from __future__ import annotations

import operator
from typing import Optional, Sequence, Tuple, Union

import torch

from .._dispatch import choose_backend, reference_supports, triton_supports, warn_fallback
from .op import na2d_backward, na2d_forward  # registers the visionattn::na2d* operators
from .reference import na2d_reference

__all__ = ["na2d", "NA_BACKENDS", "na2d_forward", "na2d_backward"]

NA_BACKENDS: Tuple[str, ...] = ("triton", "reference")
# Register tiles of the Triton kernels hold [queries, head dim] fp32 blocks.
TRITON_MAX_DIM = 256

IntOrPair = Union[int, Sequence[int]]

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _as_int(value) -> Optional[int]:
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def _pair(value: IntOrPair, name: str) -> Tuple[int, int]:
    single = _as_int(value)
    if single is not None:
        return single, single
    if isinstance(value, (tuple, list, torch.Size)) and len(value) == 2:
        pair = tuple(_as_int(v) for v in value)
        if all(v is not None for v in pair):
            return pair  # type: ignore[return-value]
    raise TypeError(f"na2d: {name} must be an int or a pair of ints, got {value!r}")


def _triton_backend_supports(device: torch.device) -> Tuple[bool, str]:
    return triton_supports(device)


_BACKENDS = [("triton", _triton_backend_supports), ("reference", reference_supports)]


def _check_inputs(
        q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernel_size: Tuple[int, int],
        dilation: Tuple[int, int], rpb: Optional[torch.Tensor],
) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"na2d: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 5:
            raise ValueError(f"na2d: {name} must have shape [B, H, W, heads, dim] (5 dims), got {tuple(t.shape)}")
    if q.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"na2d: q must be float16, bfloat16, float32 or float64, got {q.dtype}")
    for name, t in (("k", k), ("v", v)):
        if t.shape != q.shape:
            raise ValueError(f"na2d: {name} shape {tuple(t.shape)} does not match q shape {tuple(q.shape)}")
        if t.dtype != q.dtype:
            raise TypeError(f"na2d: {name} dtype {t.dtype} does not match q dtype {q.dtype}")
        if t.device != q.device:
            raise ValueError(f"na2d: {name} is on {t.device} but q is on {q.device}")
    for name, (a, b) in (("kernel_size", kernel_size),):
        if a < 1 or b < 1 or a % 2 == 0 or b % 2 == 0:
            raise ValueError(f"na2d: {name} must be odd and positive on both axes, got {(a, b)}")
    if dilation[0] < 1 or dilation[1] < 1:
        raise ValueError(f"na2d: dilation must be positive on both axes, got {dilation}")
    _, height, width, heads, _ = q.shape
    kh, kw = kernel_size
    dy, dx = dilation
    if height < kh * dy or width < kw * dx:
        raise ValueError(
            f"na2d: the map ({height}x{width}) must be at least kernel_size*dilation = {kh * dy}x{kw * dx}; "
            "pad the input (NeighborhoodAttention2d(pad_small=True) zero-pads it for you) or lower the dilation"
        )
    if rpb is not None:
        if not isinstance(rpb, torch.Tensor):
            raise TypeError(f"na2d: rpb must be a torch.Tensor or None, got {type(rpb).__name__}")
        expected = (heads, 2 * kh - 1, 2 * kw - 1)
        if tuple(rpb.shape) != expected:
            raise ValueError(f"na2d: rpb must have shape [heads, 2*kh-1, 2*kw-1] = {expected}, got {tuple(rpb.shape)}")
        if rpb.device != q.device:
            raise ValueError(f"na2d: rpb is on {rpb.device} but q is on {q.device}")
        if not rpb.is_floating_point():
            raise TypeError(f"na2d: rpb must be a floating-point tensor, got {rpb.dtype}")


def na2d(
        q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernel_size: IntOrPair, dilation: IntOrPair = 1,
        rpb: Optional[torch.Tensor] = None, scale: Optional[float] = None, backend: Optional[str] = None,
        dropout_p: float = 0.0,
) -> torch.Tensor:
    """2-D neighborhood attention (NATTEN <= 0.14 semantics, with relative position bias).

    Args:
        q, k, v: ``[B, H, W, heads, dim]`` (heads-last), float16 / bfloat16 / float32 (float64 on the reference).
        kernel_size: odd int or ``(kh, kw)``.
        dilation: positive int or ``(dy, dx)``; requires ``H >= kh*dy`` and ``W >= kw*dx``.
        rpb: ``[heads, 2*kh-1, 2*kw-1]`` relative position bias, or None.
        scale: logit scale, default ``dim ** -0.5``.
        backend: ``"triton"`` or ``"reference"``; None picks triton on CUDA and the reference elsewhere
            (``VISIONATTN_BACKEND`` overrides the default).
        dropout_p: dropout on the attention weights (training only). Only the reference backend implements
            it; with ``dropout_p > 0`` the automatic choice is the reference and an explicit triton raises.

    Returns:
        ``[B, H, W, heads, dim]`` in the dtype of ``q``. Softmax runs in float32 (float64 for float64 input).
    """
    kernel_size = _pair(kernel_size, "kernel_size")
    dilation = _pair(dilation, "dilation")
    _check_inputs(q, k, v, kernel_size, dilation, rpb)
    if scale is None:
        scale = q.shape[-1] ** -0.5
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"na2d: dropout_p must be in [0, 1), got {dropout_p}")
    chosen = choose_backend("na2d", backend, q.device, _BACKENDS)
    if chosen == "triton":
        reason = None
        if dropout_p > 0:
            if backend is not None:
                raise ValueError("na2d: the triton backend has no attention dropout; use backend='reference'")
            reason = "attention dropout (dropout_p > 0) runs on the reference backend only"
        elif q.dtype == torch.float64:
            if backend is not None:
                raise TypeError("na2d: the triton backend takes float16, bfloat16 or float32; use backend='reference'")
            reason = "float64 inputs run on the reference backend only"
        elif q.shape[-1] > TRITON_MAX_DIM:
            if backend is not None:
                raise ValueError(f"na2d: the triton backend supports head dims up to {TRITON_MAX_DIM}, "
                                 f"got {q.shape[-1]}; use backend='reference'")
            reason = f"head dim {q.shape[-1]} > {TRITON_MAX_DIM}"
        if reason is not None:
            warn_fallback("na2d", reason)
            chosen = "reference"
    if dropout_p > 0:
        # Attention dropout stays outside the custom operator: a random op inside it would need its seed saved
        # and replayed by the hand-written backward. This path is plain autograd over checkpointed tiles.
        return na2d_reference(q, k, v, kernel_size, dilation, rpb, float(scale), dropout_p=float(dropout_p))
    return torch.ops.visionattn.na2d(q, k, v, rpb, list(kernel_size), list(dilation), float(scale), chosen)
