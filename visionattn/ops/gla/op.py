"""``gla`` and ``bigla`` as PyTorch custom operators in the ``visionattn`` namespace.

Schemas (arguments already normalised by ``visionattn.ops.gla`` / ``bigla``; ``backend`` is ``"reference"`` or
``"triton"``)::

    visionattn::gla(Tensor q, Tensor k, Tensor v, Tensor log_gate, float scale, bool reverse, str backend) -> Tensor
    visionattn::bigla(Tensor q, Tensor k, Tensor v, Tensor log_gate_fwd, Tensor log_gate_bwd, float scale,
                      str backend) -> Tensor
    visionattn::gla_backward(Tensor grad_out, Tensor q, Tensor k, Tensor v, Tensor log_gate, float scale,
                             bool reverse, str backend) -> (Tensor dq, Tensor dk, Tensor dv, Tensor dlog_gate)
    visionattn::bigla_backward(Tensor grad_out, Tensor q, Tensor k, Tensor v, Tensor log_gate_fwd,
                               Tensor log_gate_bwd, float scale, str backend)
                               -> (Tensor dq, Tensor dk, Tensor dv, Tensor dlog_gate_fwd, Tensor dlog_gate_bwd)

Layouts: ``q, k, log_gate*`` ``[B, L, heads, dk]``, ``v, out, grad_out`` ``[B, L, heads, dv]``; the output has the
dtype of ``q``, each gradient the dtype of its input (the gates may be float32 under fp16/bf16 q/k/v).

``gla`` and ``bigla`` carry their autograd formula (``register_autograd``): they save their inputs only, and the
backward operators recompute the chunk states and in-chunk scores (both backends). All four operators have fake
(meta) implementations, so models build and run on the ``meta`` device and trace under Dynamo / ``torch.export``
without graph breaks. The Triton kernels are launched inside the operators (opaque to Inductor).
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor

from .reference import bigla_reference_backward, bigla_reference_forward, gla_reference_backward, \
    gla_reference_forward

_BACKENDS = ("reference", "triton")


def _check_backend(op: str, backend: str) -> None:
    if backend not in _BACKENDS:
        raise ValueError(f"visionattn::{op}: backend must be one of {_BACKENDS} (already resolved), got {backend!r}")


def _like(t: Tensor) -> Tensor:
    return torch.empty_like(t, memory_format=torch.contiguous_format)


@torch.library.custom_op("visionattn::gla", mutates_args=())
def gla_op(q: Tensor, k: Tensor, v: Tensor, log_gate: Tensor, scale: float, reverse: bool, backend: str) -> Tensor:
    _check_backend("gla", backend)
    if backend == "triton":
        from .triton import gla_forward
        return gla_forward(q.contiguous(), k.contiguous(), v.contiguous(), log_gate.contiguous(), None, scale,
                           1 if reverse else 0)
    return gla_reference_forward(q, k, v, log_gate, scale, reverse)


@gla_op.register_fake
def _gla_fake(q, k, v, log_gate, scale, reverse, backend):
    return v.new_empty(v.shape, dtype=q.dtype)


@torch.library.custom_op("visionattn::gla_backward", mutates_args=())
def gla_backward_op(
        grad_out: Tensor, q: Tensor, k: Tensor, v: Tensor, log_gate: Tensor, scale: float, reverse: bool, backend: str,
) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    _check_backend("gla_backward", backend)
    if backend == "triton":
        from .triton import gla_backward
        dq, dk, dv, dg, _ = gla_backward(q.contiguous(), k.contiguous(), v.contiguous(), log_gate.contiguous(), None,
                                         grad_out.contiguous(), scale, 1 if reverse else 0)
        return dq, dk, dv, dg
    return gla_reference_backward(grad_out, q, k, v, log_gate, scale, reverse)


@gla_backward_op.register_fake
def _gla_backward_fake(grad_out, q, k, v, log_gate, scale, reverse, backend):
    return _like(q), _like(k), _like(v), _like(log_gate)


@torch.library.custom_op("visionattn::bigla", mutates_args=())
def bigla_op(
        q: Tensor, k: Tensor, v: Tensor, log_gate_fwd: Tensor, log_gate_bwd: Tensor, scale: float, backend: str,
) -> Tensor:
    _check_backend("bigla", backend)
    if backend == "triton":
        from .triton import gla_forward
        return gla_forward(q.contiguous(), k.contiguous(), v.contiguous(), log_gate_fwd.contiguous(),
                           log_gate_bwd.contiguous(), scale, 2)
    return bigla_reference_forward(q, k, v, log_gate_fwd, log_gate_bwd, scale)


@bigla_op.register_fake
def _bigla_fake(q, k, v, log_gate_fwd, log_gate_bwd, scale, backend):
    return v.new_empty(v.shape, dtype=q.dtype)


@torch.library.custom_op("visionattn::bigla_backward", mutates_args=())
def bigla_backward_op(
        grad_out: Tensor, q: Tensor, k: Tensor, v: Tensor, log_gate_fwd: Tensor, log_gate_bwd: Tensor, scale: float,
        backend: str,
) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    _check_backend("bigla_backward", backend)
    if backend == "triton":
        from .triton import gla_backward
        return gla_backward(q.contiguous(), k.contiguous(), v.contiguous(), log_gate_fwd.contiguous(),
                            log_gate_bwd.contiguous(), grad_out.contiguous(), scale, 2)
    return bigla_reference_backward(grad_out, q, k, v, log_gate_fwd, log_gate_bwd, scale)


@bigla_backward_op.register_fake
def _bigla_backward_fake(grad_out, q, k, v, log_gate_fwd, log_gate_bwd, scale, backend):
    return _like(q), _like(k), _like(v), _like(log_gate_fwd), _like(log_gate_bwd)


def _gla_setup(ctx, inputs, output) -> None:
    q, k, v, log_gate, scale, reverse, backend = inputs
    ctx.save_for_backward(q, k, v, log_gate)
    ctx.scale, ctx.reverse, ctx.backend = scale, reverse, backend


def _gla_grad(ctx, grad_out):
    q, k, v, log_gate = ctx.saved_tensors
    dq, dk, dv, dg = torch.ops.visionattn.gla_backward(grad_out, q, k, v, log_gate, ctx.scale, ctx.reverse,
                                                       ctx.backend)
    return dq, dk, dv, dg, None, None, None


def _bigla_setup(ctx, inputs, output) -> None:
    q, k, v, log_gate_fwd, log_gate_bwd, scale, backend = inputs
    ctx.save_for_backward(q, k, v, log_gate_fwd, log_gate_bwd)
    ctx.scale, ctx.backend = scale, backend


def _bigla_grad(ctx, grad_out):
    q, k, v, log_gate_fwd, log_gate_bwd = ctx.saved_tensors
    grads = torch.ops.visionattn.bigla_backward(grad_out, q, k, v, log_gate_fwd, log_gate_bwd, ctx.scale, ctx.backend)
    return (*grads, None, None)


gla_op.register_autograd(_gla_grad, setup_context=_gla_setup)
bigla_op.register_autograd(_bigla_grad, setup_context=_bigla_setup)
