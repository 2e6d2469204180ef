"""Fused 2-D neighborhood attention in Triton: forward (online softmax, RPB in-kernel, log-sum-exp saved) and
backward (dq + d(rpb), then dk + dv), with NATTEN <= 0.14 window semantics.

Layout: q, k, v, out ``[B, H, W, heads, dim]`` contiguous; lse and delta ``[B, H, W, heads]`` float32.

Dilation is handled by grouping: a program owns a tile of queries from one dilation group (coordinates
``gy + dy*i``, ``gx + dx*j``), where the problem is plain dilation-1 neighborhood attention on the group's
``n_gy x n_gx`` sub-map. In group coordinates a query at ``(i, j)`` sees the keys ``[sy, sy + kh) x [sx, sx + kw)``
with ``sy = clamp(i - kh//2, 0, n_gy - kh)``, and its bias entry for key ``(u, v)`` is
``rpb[u - i + kh - 1, v - j + kw - 1]``.

Forward and dq programs hold a ``BLOCK_QH x BLOCK_QW`` query tile and walk the key rows of its halo one at a time
(``BLOCK_QW + kw - 1`` key columns per row). The dk/dv program holds a ``BLOCK_KH x BLOCK_KW`` key tile and walks
the query rows that can see it, one query row segment at a time. Tile sizes are keyword arguments; there is no
autotuning (it crashes the interpreter). The dilation is a runtime argument (one binary serves every dilation
> 1; Triton specializes 1), the kernel size a compile-time one.
"""
from __future__ import annotations

import functools
from typing import Optional, Tuple

import torch
import triton
import triton.language as tl

from .._dispatch import triton_interpreting
from .reference import window_starts


# ------------------------------------------------------------------------------------------------------------
# Kernels


@triton.jit
def _group_extent(length, group, dilation):
    return (length - group + dilation - 1) // dilation


@triton.jit
def _na2d_fwd_kernel(
        q_ptr, k_ptr, v_ptr, rpb_ptr, out_ptr, lse_ptr,
        H, W, HEADS, D, scale,
        DIL_H, DIL_W, KH: tl.constexpr, KW: tl.constexpr,
        TILES_H, TILES_W,
        HAS_RPB: tl.constexpr, DOT_FP32: tl.constexpr,
        BLOCK_QH: tl.constexpr, BLOCK_QW: tl.constexpr, BLOCK_KW: tl.constexpr, BLOCK_D: tl.constexpr,
):
    pid_tile = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // HEADS
    head = pid_bh % HEADS
    tile_w = pid_tile % TILES_W
    rest = pid_tile // TILES_W
    tile_h = rest % TILES_H
    rest = rest // TILES_H
    gx = rest % DIL_W
    gy = rest // DIL_W
    n_gy = _group_extent(H, gy, DIL_H)
    n_gx = _group_extent(W, gx, DIL_W)

    stride_w = HEADS * D
    stride_h = W * stride_w
    base = b.to(tl.int64) * H * stride_h + head * D

    offs_q = tl.arange(0, BLOCK_QH * BLOCK_QW)
    qi = tile_h * BLOCK_QH + offs_q // BLOCK_QW
    qj = tile_w * BLOCK_QW + offs_q % BLOCK_QW
    q_valid = (qi < n_gy) & (qj < n_gx)
    offs_d = tl.arange(0, BLOCK_D)
    d_valid = offs_d < D
    q_row_off = (qi * DIL_H + gy).to(tl.int64) * stride_h + (qj * DIL_W + gx) * stride_w
    q = tl.load(q_ptr + base + q_row_off[:, None] + offs_d[None, :],
                mask=q_valid[:, None] & d_valid[None, :], other=0.0)
    if DOT_FP32:
        q = q.to(tl.float32)

    sy = tl.minimum(tl.maximum(qi - KH // 2, 0), n_gy - KH)
    sx = tl.minimum(tl.maximum(qj - KW // 2, 0), n_gx - KW)

    row_first = tile_h * BLOCK_QH
    row_last = tl.minimum(row_first + BLOCK_QH, n_gy) - 1
    ky_lo = tl.minimum(tl.maximum(row_first - KH // 2, 0), n_gy - KH)
    ky_hi = tl.minimum(tl.maximum(row_last - KH // 2, 0), n_gy - KH) + KH
    col_first = tile_w * BLOCK_QW
    kx_lo = tl.minimum(tl.maximum(col_first - KW // 2, 0), n_gx - KW)
    kx = kx_lo + tl.arange(0, BLOCK_KW)
    kx_valid = kx < n_gx
    col_in = (kx[None, :] >= sx[:, None]) & (kx[None, :] < sx[:, None] + KW)
    bias_col = kx[None, :] - qj[:, None] + (KW - 1)

    m_i = tl.full([BLOCK_QH * BLOCK_QW], -1.0e30, dtype=tl.float32)
    l_i = tl.zeros([BLOCK_QH * BLOCK_QW], dtype=tl.float32)
    acc = tl.zeros([BLOCK_QH * BLOCK_QW, BLOCK_D], dtype=tl.float32)
    kv_col_off = (kx * DIL_W + gx) * stride_w
    for ky in range(ky_lo, ky_hi):
        kv_off = base + (ky * DIL_H + gy).to(tl.int64) * stride_h + kv_col_off
        kv_mask = kx_valid[:, None] & d_valid[None, :]
        k = tl.load(k_ptr + kv_off[:, None] + offs_d[None, :], mask=kv_mask, other=0.0)
        v = tl.load(v_ptr + kv_off[:, None] + offs_d[None, :], mask=kv_mask, other=0.0)
        if DOT_FP32:
            k = k.to(tl.float32)
            v = v.to(tl.float32)
        s = tl.dot(q, tl.trans(k), input_precision="ieee") * scale
        in_window = col_in & ((ky >= sy) & (ky < sy + KH))[:, None] & q_valid[:, None]
        if HAS_RPB:
            bias_idx = (ky - qi + (KH - 1))[:, None] * (2 * KW - 1) + bias_col
            bias = tl.load(rpb_ptr + head * (2 * KH - 1) * (2 * KW - 1) + bias_idx, mask=in_window, other=0.0)
            s += bias.to(tl.float32)
        s = tl.where(in_window, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        alpha = tl.exp(m_i - m_new)
        p = tl.exp(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision="ieee")
        m_i = m_new
    l_safe = tl.where(l_i > 0, l_i, 1.0)
    out = acc / l_safe[:, None]
    tl.store(out_ptr + base + q_row_off[:, None] + offs_d[None, :], out.to(out_ptr.dtype.element_ty),
             mask=q_valid[:, None] & d_valid[None, :])
    lse_off = ((b.to(tl.int64) * H + qi * DIL_H + gy) * W + qj * DIL_W + gx) * HEADS + head
    tl.store(lse_ptr + lse_off, m_i + tl.log(l_safe), mask=q_valid)


@triton.jit
def _na2d_bwd_dq_kernel(
        q_ptr, k_ptr, v_ptr, rpb_ptr, do_ptr, lse_ptr, delta_ptr, dq_ptr, dlogits_ptr,
        H, W, HEADS, D, scale,
        DIL_H, DIL_W, KH: tl.constexpr, KW: tl.constexpr,
        TILES_H, TILES_W,
        HAS_RPB: tl.constexpr, RPB_GRAD: tl.constexpr, DOT_FP32: tl.constexpr,
        BLOCK_QH: tl.constexpr, BLOCK_QW: tl.constexpr, BLOCK_KW: tl.constexpr, BLOCK_D: tl.constexpr,
):
    pid_tile = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // HEADS
    head = pid_bh % HEADS
    tile_w = pid_tile % TILES_W
    rest = pid_tile // TILES_W
    tile_h = rest % TILES_H
    rest = rest // TILES_H
    gx = rest % DIL_W
    gy = rest // DIL_W
    n_gy = _group_extent(H, gy, DIL_H)
    n_gx = _group_extent(W, gx, DIL_W)

    stride_w = HEADS * D
    stride_h = W * stride_w
    base = b.to(tl.int64) * H * stride_h + head * D

    offs_q = tl.arange(0, BLOCK_QH * BLOCK_QW)
    qi = tile_h * BLOCK_QH + offs_q // BLOCK_QW
    qj = tile_w * BLOCK_QW + offs_q % BLOCK_QW
    q_valid = (qi < n_gy) & (qj < n_gx)
    offs_d = tl.arange(0, BLOCK_D)
    d_valid = offs_d < D
    q_row_off = (qi * DIL_H + gy).to(tl.int64) * stride_h + (qj * DIL_W + gx) * stride_w
    qd_mask = q_valid[:, None] & d_valid[None, :]
    q = tl.load(q_ptr + base + q_row_off[:, None] + offs_d[None, :], mask=qd_mask, other=0.0)
    do = tl.load(do_ptr + base + q_row_off[:, None] + offs_d[None, :], mask=qd_mask, other=0.0)
    if DOT_FP32:
        q = q.to(tl.float32)
        do = do.to(tl.float32)
    stat_off = ((b.to(tl.int64) * H + qi * DIL_H + gy) * W + qj * DIL_W + gx) * HEADS + head
    lse = tl.load(lse_ptr + stat_off, mask=q_valid, other=0.0)
    delta = tl.load(delta_ptr + stat_off, mask=q_valid, other=0.0)

    sy = tl.minimum(tl.maximum(qi - KH // 2, 0), n_gy - KH)
    sx = tl.minimum(tl.maximum(qj - KW // 2, 0), n_gx - KW)
    row_first = tile_h * BLOCK_QH
    row_last = tl.minimum(row_first + BLOCK_QH, n_gy) - 1
    ky_lo = tl.minimum(tl.maximum(row_first - KH // 2, 0), n_gy - KH)
    ky_hi = tl.minimum(tl.maximum(row_last - KH // 2, 0), n_gy - KH) + KH
    col_first = tile_w * BLOCK_QW
    kx_lo = tl.minimum(tl.maximum(col_first - KW // 2, 0), n_gx - KW)
    kx = kx_lo + tl.arange(0, BLOCK_KW)
    kx_valid = kx < n_gx
    col_in = (kx[None, :] >= sx[:, None]) & (kx[None, :] < sx[:, None] + KW)
    bias_col = kx[None, :] - qj[:, None] + (KW - 1)
    table = (2 * KH - 1) * (2 * KW - 1)
    # Window slot of (query, key) for the d(logits) store: [BQ, BLOCK_KW] column part.
    slot_col = kx[None, :] - sx[:, None]

    dq = tl.zeros([BLOCK_QH * BLOCK_QW, BLOCK_D], dtype=tl.float32)
    kv_col_off = (kx * DIL_W + gx) * stride_w
    for ky in range(ky_lo, ky_hi):
        kv_off = base + (ky * DIL_H + gy).to(tl.int64) * stride_h + kv_col_off
        kv_mask = kx_valid[:, None] & d_valid[None, :]
        k = tl.load(k_ptr + kv_off[:, None] + offs_d[None, :], mask=kv_mask, other=0.0)
        v = tl.load(v_ptr + kv_off[:, None] + offs_d[None, :], mask=kv_mask, other=0.0)
        if DOT_FP32:
            k = k.to(tl.float32)
            v = v.to(tl.float32)
        s = tl.dot(q, tl.trans(k), input_precision="ieee") * scale
        in_window = col_in & ((ky >= sy) & (ky < sy + KH))[:, None] & q_valid[:, None]
        bias_idx = (ky - qi + (KH - 1))[:, None] * (2 * KW - 1) + bias_col
        if HAS_RPB:
            bias = tl.load(rpb_ptr + head * table + bias_idx, mask=in_window, other=0.0)
            s += bias.to(tl.float32)
        p = tl.where(in_window, tl.exp(s - lse[:, None]), 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision="ieee")
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k, input_precision="ieee")
        if RPB_GRAD:
            # Each (query, slot) is written exactly once; d(rpb) is reduced from these afterwards, deterministically.
            slot = (ky - sy)[:, None] * KW + slot_col
            tl.store(dlogits_ptr + stat_off[:, None] * (KH * KW) + slot, ds, mask=in_window)
    tl.store(dq_ptr + base + q_row_off[:, None] + offs_d[None, :], (dq * scale).to(dq_ptr.dtype.element_ty),
             mask=qd_mask)


@triton.jit
def _na2d_bwd_dkdv_kernel(
        q_ptr, k_ptr, v_ptr, rpb_ptr, do_ptr, lse_ptr, delta_ptr, dk_ptr, dv_ptr,
        H, W, HEADS, D, scale,
        DIL_H, DIL_W, KH: tl.constexpr, KW: tl.constexpr,
        TILES_H, TILES_W,
        HAS_RPB: tl.constexpr, DOT_FP32: tl.constexpr,
        BLOCK_KH: tl.constexpr, BLOCK_KW: tl.constexpr, BLOCK_QW: tl.constexpr, BLOCK_D: tl.constexpr,
):
    pid_tile = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // HEADS
    head = pid_bh % HEADS
    tile_w = pid_tile % TILES_W
    rest = pid_tile // TILES_W
    tile_h = rest % TILES_H
    rest = rest // TILES_H
    gx = rest % DIL_W
    gy = rest // DIL_W
    n_gy = _group_extent(H, gy, DIL_H)
    n_gx = _group_extent(W, gx, DIL_W)

    stride_w = HEADS * D
    stride_h = W * stride_w
    base = b.to(tl.int64) * H * stride_h + head * D

    offs_k = tl.arange(0, BLOCK_KH * BLOCK_KW)
    ki = tile_h * BLOCK_KH + offs_k // BLOCK_KW
    kj = tile_w * BLOCK_KW + offs_k % BLOCK_KW
    k_valid = (ki < n_gy) & (kj < n_gx)
    offs_d = tl.arange(0, BLOCK_D)
    d_valid = offs_d < D
    k_off = (ki * DIL_H + gy).to(tl.int64) * stride_h + (kj * DIL_W + gx) * stride_w
    kd_mask = k_valid[:, None] & d_valid[None, :]
    k = tl.load(k_ptr + base + k_off[:, None] + offs_d[None, :], mask=kd_mask, other=0.0)
    v = tl.load(v_ptr + base + k_off[:, None] + offs_d[None, :], mask=kd_mask, other=0.0)
    if DOT_FP32:
        k = k.to(tl.float32)
        v = v.to(tl.float32)

    # Query rows whose windows can contain key rows [row_first, row_last] (the window start is monotone).
    row_first = tile_h * BLOCK_KH
    row_last = tl.minimum(row_first + BLOCK_KH, n_gy) - 1
    qy_lo = tl.where(row_first <= KH - 1, 0, row_first - KH // 2)
    qy_hi = tl.where(row_last >= n_gy - KH, n_gy - 1, tl.minimum(row_last + KH // 2, n_gy - 1))
    col_first = tile_w * BLOCK_KW
    col_last = tl.minimum(col_first + BLOCK_KW, n_gx) - 1
    qx_lo = tl.where(col_first <= KW - 1, 0, col_first - KW // 2)
    qx_hi = tl.where(col_last >= n_gx - KW, n_gx - 1, tl.minimum(col_last + KW // 2, n_gx - 1))
    table = (2 * KH - 1) * (2 * KW - 1)

    dk = tl.zeros([BLOCK_KH * BLOCK_KW, BLOCK_D], dtype=tl.float32)
    dv = tl.zeros([BLOCK_KH * BLOCK_KW, BLOCK_D], dtype=tl.float32)
    for qi in range(qy_lo, qy_hi + 1):
        sy = tl.minimum(tl.maximum(qi - KH // 2, 0), n_gy - KH)
        row_in = (ki >= sy) & (ki < sy + KH) & k_valid
        for qx0 in range(qx_lo, qx_hi + 1, BLOCK_QW):
            qj = qx0 + tl.arange(0, BLOCK_QW)
            qj_valid = qj <= qx_hi
            sx = tl.minimum(tl.maximum(qj - KW // 2, 0), n_gx - KW)
            q_off = base + (qi * DIL_H + gy).to(tl.int64) * stride_h + (qj * DIL_W + gx) * stride_w
            qd_mask = qj_valid[:, None] & d_valid[None, :]
            q = tl.load(q_ptr + q_off[:, None] + offs_d[None, :], mask=qd_mask, other=0.0)
            do = tl.load(do_ptr + q_off[:, None] + offs_d[None, :], mask=qd_mask, other=0.0)
            if DOT_FP32:
                q = q.to(tl.float32)
                do = do.to(tl.float32)
            stat_off = ((b.to(tl.int64) * H + qi * DIL_H + gy) * W + qj * DIL_W + gx) * HEADS + head
            lse = tl.load(lse_ptr + stat_off, mask=qj_valid, other=0.0)
            delta = tl.load(delta_ptr + stat_off, mask=qj_valid, other=0.0)
            # [keys, queries]
            s = tl.dot(k, tl.trans(q), input_precision="ieee") * scale
            in_window = (row_in[:, None] & (kj[:, None] >= sx[None, :]) & (kj[:, None] < sx[None, :] + KW)
                         & qj_valid[None, :])
            if HAS_RPB:
                bias_idx = (ki - qi + (KH - 1))[:, None] * (2 * KW - 1) + (kj[:, None] - qj[None, :] + (KW - 1))
                bias = tl.load(rpb_ptr + head * table + bias_idx, mask=in_window, other=0.0)
                s += bias.to(tl.float32)
            p = tl.where(in_window, tl.exp(s - lse[None, :]), 0.0)
            dv += tl.dot(p.to(do.dtype), do, input_precision="ieee")
            dp = tl.dot(v, tl.trans(do), input_precision="ieee")
            ds = p * (dp - delta[None, :])
            dk += tl.dot(ds.to(q.dtype), q, input_precision="ieee")
    tl.store(dk_ptr + base + k_off[:, None] + offs_d[None, :], (dk * scale).to(dk_ptr.dtype.element_ty), mask=kd_mask)
    tl.store(dv_ptr + base + k_off[:, None] + offs_d[None, :], dv.to(dv_ptr.dtype.element_ty), mask=kd_mask)


# ------------------------------------------------------------------------------------------------------------
# Launchers


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _block_d(dim: int) -> int:
    return max(16, triton.next_power_of_2(dim))


def _dot_fp32(dtype: torch.dtype) -> bool:
    # The interpreter's bf16 dot is wrong; upcast there. fp32 inputs always dot in fp32 (no TF32).
    return dtype == torch.float32 or (dtype == torch.bfloat16 and triton_interpreting())


def default_tiles(head_dim: int, dtype, kernel_size: Tuple[int, int]) -> Tuple[dict, dict]:
    """(forward tiles, backward tiles) for a head dim, dtype (torch dtype or its name) and kernel size, chosen
    from the ahead-of-time table (``benchmarks/results/triton_aot.json``, ``python -m visionattn.ops._aot``) so
    that no kernel spills registers on sm_80 / sm_90."""
    name = str(dtype).replace("torch.", "")
    large = max(kernel_size) >= 9  # a 32-column key halo: [64, 32] score tiles
    warps = 8 if large else 4
    fwd = dict(block_qh=8, block_qw=8, num_warps=warps, num_stages=2)
    bwd = dict(block_qh=8, block_qw=8, block_kh=8, block_kw=8, num_warps=warps, kv_num_warps=4, num_stages=2)
    if name == "float32":
        # fp32 (IEEE) dk/dv tiles spill at 4 warps: 8 warps for kernel 7, a 16x4 key tile for kernel 11
        bwd.update(dict(block_kh=16, block_kw=4) if large else dict(kv_num_warps=8))
    elif large:
        bwd["kv_num_warps"] = 8
    return fwd, bwd


def _query_grid(height: int, width: int, dilation: Tuple[int, int], block_h: int, block_w: int, bh: int):
    tiles_h = _cdiv(_cdiv(height, dilation[0]), block_h)
    tiles_w = _cdiv(_cdiv(width, dilation[1]), block_w)
    return tiles_h, tiles_w, (dilation[0] * dilation[1] * tiles_h * tiles_w, bh)


def na2d_triton_forward(
        q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rpb: Optional[torch.Tensor],
        kernel_size: Tuple[int, int], dilation: Tuple[int, int], scale: float,
        block_qh: Optional[int] = None, block_qw: Optional[int] = None, num_warps: Optional[int] = None,
        num_stages: Optional[int] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """``q, k, v``: contiguous ``[B, H, W, heads, dim]`` -> (out ``[B, H, W, heads, dim]``, lse ``[B, H, W, heads]``
    float32). Tile arguments left None come from :func:`default_tiles`."""
    batch, height, width, heads, dim = q.shape
    kh, kw = kernel_size
    chosen = default_tiles(dim, q.dtype, kernel_size)[0]
    block_qh = block_qh or chosen["block_qh"]
    block_qw = block_qw or chosen["block_qw"]
    num_warps = num_warps or chosen["num_warps"]
    num_stages = num_stages or chosen["num_stages"]
    out = torch.empty_like(q)
    lse = torch.empty(batch, height, width, heads, device=q.device, dtype=torch.float32)
    tiles_h, tiles_w, grid = _query_grid(height, width, dilation, block_qh, block_qw, batch * heads)
    _na2d_fwd_kernel[grid](
        q, k, v, rpb if rpb is not None else q, out, lse,
        height, width, heads, dim, scale,
        DIL_H=dilation[0], DIL_W=dilation[1], KH=kh, KW=kw, TILES_H=tiles_h, TILES_W=tiles_w,
        HAS_RPB=rpb is not None, DOT_FP32=_dot_fp32(q.dtype),
        BLOCK_QH=block_qh, BLOCK_QW=block_qw, BLOCK_KW=max(16, triton.next_power_of_2(block_qw + kw - 1)),
        BLOCK_D=_block_d(dim), num_warps=num_warps, num_stages=num_stages,
    )
    return out, lse


def na2d_triton_backward(
        q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rpb: Optional[torch.Tensor], out: torch.Tensor,
        lse: torch.Tensor, grad_out: torch.Tensor, kernel_size: Tuple[int, int], dilation: Tuple[int, int],
        scale: float, rpb_grad: bool,
        block_qh: Optional[int] = None, block_qw: Optional[int] = None, block_kh: Optional[int] = None,
        block_kw: Optional[int] = None, num_warps: Optional[int] = None, num_stages: Optional[int] = None,
        kv_num_warps: Optional[int] = None,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """Gradients (dq, dk, dv, drpb) of ``na2d``; all tensors as in the forward, ``grad_out`` like ``out``. Tile
    arguments left None come from :func:`default_tiles`."""
    batch, height, width, heads, dim = q.shape
    kh, kw = kernel_size
    chosen = default_tiles(dim, q.dtype, kernel_size)[1]
    block_qh = block_qh or chosen["block_qh"]
    block_qw = block_qw or chosen["block_qw"]
    block_kh = block_kh or chosen["block_kh"]
    block_kw = block_kw or chosen["block_kw"]
    kv_num_warps = kv_num_warps or (num_warps if num_warps else chosen["kv_num_warps"])
    num_warps = num_warps or chosen["num_warps"]
    num_stages = num_stages or chosen["num_stages"]
    grad_out = grad_out.contiguous()
    delta = (grad_out.float() * out.float()).sum(-1)  # [B, H, W, heads]
    dq = torch.empty_like(q)
    dk = torch.empty_like(k)
    dv = torch.empty_like(v)
    has_rpb = rpb is not None
    rpb_grad = rpb_grad and has_rpb
    # d(logits) per (query, window slot), fp32 [B, H, W, heads, kh*kw]: written once each by the dq kernel.
    dlogits = torch.empty(batch, height, width, heads, kh * kw, device=q.device, dtype=torch.float32) \
        if rpb_grad else q
    dot_fp32 = _dot_fp32(q.dtype)
    block_d = _block_d(dim)

    tiles_h, tiles_w, grid = _query_grid(height, width, dilation, block_qh, block_qw, batch * heads)
    _na2d_bwd_dq_kernel[grid](
        q, k, v, rpb if has_rpb else q, grad_out, lse, delta, dq, dlogits,
        height, width, heads, dim, scale,
        DIL_H=dilation[0], DIL_W=dilation[1], KH=kh, KW=kw, TILES_H=tiles_h, TILES_W=tiles_w,
        HAS_RPB=has_rpb, RPB_GRAD=rpb_grad, DOT_FP32=dot_fp32,
        BLOCK_QH=block_qh, BLOCK_QW=block_qw, BLOCK_KW=max(16, triton.next_power_of_2(block_qw + kw - 1)),
        BLOCK_D=block_d, num_warps=num_warps, num_stages=num_stages,
    )
    tiles_h, tiles_w, grid = _query_grid(height, width, dilation, block_kh, block_kw, batch * heads)
    _na2d_bwd_dkdv_kernel[grid](
        q, k, v, rpb if has_rpb else q, grad_out, lse, delta, dk, dv,
        height, width, heads, dim, scale,
        DIL_H=dilation[0], DIL_W=dilation[1], KH=kh, KW=kw, TILES_H=tiles_h, TILES_W=tiles_w,
        HAS_RPB=has_rpb, DOT_FP32=dot_fp32,
        BLOCK_KH=block_kh, BLOCK_KW=block_kw, BLOCK_QW=max(16, triton.next_power_of_2(block_kw + kw - 1)),
        BLOCK_D=block_d, num_warps=kv_num_warps, num_stages=num_stages,
    )
    drpb = _reduce_rpb_grad(dlogits, kernel_size, dilation).to(rpb.dtype) if rpb_grad else None
    return dq, dk, dv, drpb


@functools.lru_cache(maxsize=64)
def _bias_index(
        height: int, width: int, kernel_size: Tuple[int, int], dilation: Tuple[int, int], device: torch.device,
) -> torch.Tensor:
    """Flat index into the ``(2kh-1)*(2kw-1)`` bias table per (query, window slot): ``[H*W*kh*kw]`` int64."""
    kh, kw = kernel_size
    rows = window_starts(height, kh, dilation[0])[:, None] + torch.arange(kh)[None, :] * dilation[0]
    cols = window_starts(width, kw, dilation[1])[:, None] + torch.arange(kw)[None, :] * dilation[1]
    bias_rows = (rows - torch.arange(height)[:, None]) // dilation[0] + kh - 1   # [H, kh]
    bias_cols = (cols - torch.arange(width)[:, None]) // dilation[1] + kw - 1    # [W, kw]
    index = bias_rows[:, None, :, None] * (2 * kw - 1) + bias_cols[None, :, None, :]
    return index.reshape(-1).to(device)


def _reduce_rpb_grad(
        dlogits: torch.Tensor, kernel_size: Tuple[int, int], dilation: Tuple[int, int],
) -> torch.Tensor:
    """``dlogits`` ``[B, H, W, heads, kh*kw]`` -> d(rpb) ``[heads, 2kh-1, 2kw-1]`` (float32)."""
    batch, height, width, heads, kk = dlogits.shape
    kh, kw = kernel_size
    per_position = dlogits.sum(0).permute(2, 0, 1, 3).reshape(heads, height * width * kk)
    index = _bias_index(height, width, tuple(kernel_size), tuple(dilation), dlogits.device)
    drpb = torch.zeros(heads, (2 * kh - 1) * (2 * kw - 1), device=dlogits.device, dtype=torch.float32)
    return drpb.index_add_(1, index, per_position).view(heads, 2 * kh - 1, 2 * kw - 1)


# ------------------------------------------------------------------------------------------------------------
# Autograd


class NA2dTritonFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, rpb, kernel_size, dilation, scale, tiles):
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        rpb_c = rpb.contiguous() if rpb is not None else None
        fwd_tiles = {key: tiles[key] for key in ("block_qh", "block_qw") if key in tiles}
        out, lse = na2d_triton_forward(q, k, v, rpb_c, kernel_size, dilation, scale, **fwd_tiles)
        ctx.save_for_backward(q, k, v, rpb_c, out, lse)
        ctx.kernel_size, ctx.dilation, ctx.scale, ctx.tiles = kernel_size, dilation, scale, tiles
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, rpb, out, lse = ctx.saved_tensors
        rpb_grad = rpb is not None and ctx.needs_input_grad[3]
        dq, dk, dv, drpb = na2d_triton_backward(
            q, k, v, rpb, out, lse, grad_out, ctx.kernel_size, ctx.dilation, ctx.scale, rpb_grad, **ctx.tiles,
        )
        return dq, dk, dv, drpb, None, None, None, None


def na2d_triton(
        q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernel_size: Tuple[int, int], dilation: Tuple[int, int],
        rpb: Optional[torch.Tensor], scale: float, **tiles: int,
) -> torch.Tensor:
    """Fused na2d; arguments validated by ``visionattn.ops.na2d``. ``tiles``: block_qh, block_qw, block_kh,
    block_kw (powers of two; block_qh*block_qw and block_kh*block_kw at least 16)."""
    return NA2dTritonFunction.apply(q, k, v, rpb, tuple(kernel_size), tuple(dilation), float(scale), dict(tiles))
