"""``na2d`` as PyTorch custom operators in the ``visionattn`` namespace.

Schemas (arguments already normalised by ``visionattn.ops.na2d``; ``backend`` is ``"reference"`` or ``"triton"``)::

    visionattn::na2d(Tensor q, Tensor k, Tensor v, Tensor? rpb, int[] kernel_size, int[] dilation, float scale,
                     str backend) -> Tensor
    visionattn::na2d_forward(Tensor q, Tensor k, Tensor v, Tensor? rpb, int[] kernel_size, int[] dilation,
                             float scale, str backend) -> (Tensor out, Tensor lse)
    visionattn::na2d_backward(Tensor grad_out, Tensor q, Tensor k, Tensor v, Tensor? rpb, Tensor out, Tensor lse,
                              int[] kernel_size, int[] dilation, float scale, str backend, bool rpb_grad)
                              -> (Tensor dq, Tensor dk, Tensor dv, Tensor drpb)

Layouts: ``q, k, v, out, grad_out`` ``[B, H, W, heads, dim]``; ``rpb`` ``[heads, 2kh-1, 2kw-1]``; ``lse``
``[B, H, W, heads]`` (float32, float64 for float64 inputs). ``drpb`` has the shape and dtype of ``rpb``, and shape
``[0]`` when there is no rpb or ``rpb_grad`` is false.

``na2d`` is the stable entry that models, TorchScript and exported graphs call. Like ``aten::scaled_dot_product_
attention`` over ``_scaled_dot_product_flash_attention`` it is ``CompositeImplicitAutograd``: it returns
``na2d_forward(...)[0]``, so the log-sum-exp the backward pass needs is saved without being part of the public
schema. ``na2d_forward`` carries the autograd formula (``register_autograd``: saves q, k, v, rpb, out and lse,
and calls ``na2d_backward``); both inner operators have fake (meta) implementations, so models build and run on
the ``meta`` device and trace under Dynamo / ``torch.export`` without graph breaks. The Triton kernels are launched
inside the operators (opaque to Inductor, which calls them as extern kernels).
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import Tensor

from .reference import na2d_reference_backward, na2d_reference_forward

_BACKENDS = ("reference", "triton")


def _check_backend(backend: str) -> None:
    if backend not in _BACKENDS:
        raise ValueError(f"visionattn::na2d: backend must be one of {_BACKENDS} (already resolved), got {backend!r}")


def _lse_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


@torch.library.custom_op("visionattn::na2d_forward", mutates_args=())
def na2d_forward(
        q: Tensor, k: Tensor, v: Tensor, rpb: Optional[Tensor], kernel_size: List[int], dilation: List[int],
        scale: float, backend: str,
) -> Tuple[Tensor, Tensor]:
    _check_backend(backend)
    ks, dil = (int(kernel_size[0]), int(kernel_size[1])), (int(dilation[0]), int(dilation[1]))
    if backend == "triton":
        from .triton import na2d_triton_forward
        return na2d_triton_forward(q.contiguous(), k.contiguous(), v.contiguous(),
                                   rpb.contiguous() if rpb is not None else None, ks, dil, scale)
    return na2d_reference_forward(q, k, v, rpb, ks, dil, scale)


@na2d_forward.register_fake
def _na2d_forward_fake(q, k, v, rpb, kernel_size, dilation, scale, backend):
    return torch.empty_like(q, memory_format=torch.contiguous_format), \
        q.new_empty(q.shape[:4], dtype=_lse_dtype(q.dtype))


@torch.library.custom_op("visionattn::na2d_backward", mutates_args=())
def na2d_backward(
        grad_out: Tensor, q: Tensor, k: Tensor, v: Tensor, rpb: Optional[Tensor], out: Tensor, lse: Tensor,
        kernel_size: List[int], dilation: List[int], scale: float, backend: str, rpb_grad: bool,
) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    _check_backend(backend)
    ks, dil = (int(kernel_size[0]), int(kernel_size[1])), (int(dilation[0]), int(dilation[1]))
    rpb_grad = rpb_grad and rpb is not None
    if backend == "triton":
        from .triton import na2d_triton_backward
        dq, dk, dv, drpb = na2d_triton_backward(
            q.contiguous(), k.contiguous(), v.contiguous(), rpb.contiguous() if rpb is not None else None,
            out.contiguous(), lse.contiguous(), grad_out.contiguous(), ks, dil, scale, rpb_grad)
    else:
        dq, dk, dv, drpb = na2d_reference_backward(grad_out, q, k, v, rpb, out, lse, ks, dil, scale, rpb_grad)
    if drpb is None:
        drpb = q.new_empty(0)
    return dq, dk, dv, drpb


@na2d_backward.register_fake
def _na2d_backward_fake(grad_out, q, k, v, rpb, out, lse, kernel_size, dilation, scale, backend, rpb_grad):
    grads = tuple(torch.empty_like(t, memory_format=torch.contiguous_format) for t in (q, k, v))
    drpb = torch.empty_like(rpb, memory_format=torch.contiguous_format) if rpb is not None and rpb_grad \
        else q.new_empty(0)
    return (*grads, drpb)


def _setup_context(ctx, inputs, output) -> None:
    q, k, v, rpb, kernel_size, dilation, scale, backend = inputs
    out, lse = output
    ctx.save_for_backward(q, k, v, rpb, out, lse)
    ctx.kernel_size, ctx.dilation, ctx.scale, ctx.backend = list(kernel_size), list(dilation), scale, backend
    ctx.has_rpb = rpb is not None


def _backward(ctx, grad_out, grad_lse):
    q, k, v, rpb, out, lse = ctx.saved_tensors
    rpb_grad = ctx.has_rpb and ctx.needs_input_grad[3]
    dq, dk, dv, drpb = torch.ops.visionattn.na2d_backward(
        grad_out, q, k, v, rpb, out, lse, ctx.kernel_size, ctx.dilation, ctx.scale, ctx.backend, rpb_grad)
    return dq, dk, dv, (drpb if rpb_grad else None), None, None, None, None


na2d_forward.register_autograd(_backward, setup_context=_setup_context)


torch.library.define(
    "visionattn::na2d",
    "(Tensor q, Tensor k, Tensor v, Tensor? rpb, int[] kernel_size, int[] dilation, float scale, str backend) "
    "-> Tensor",
)


@torch.library.impl("visionattn::na2d", "CompositeImplicitAutograd")
def _na2d_composite(q, k, v, rpb, kernel_size, dilation, scale, backend):
    return torch.ops.visionattn.na2d_forward(q, k, v, rpb, kernel_size, dilation, scale, backend)[0]
