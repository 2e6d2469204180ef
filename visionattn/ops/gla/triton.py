"""Triton gated linear attention: causal, reverse and fused bidirectional, forward and backward.

Two-level chunking after the GLA paper (https://arxiv.org/abs/2312.06635) and flash-linear-attention's
``chunk_gla``: chunks of 64 tokens, sub-chunks of 16, in-chunk cumulative log gates in base 2 (``exp2``).
Every exponentiated gate difference is ``<= 0``: off-diagonal sub-chunk pairs are rescaled against a reference
row of the query sub-chunk, so both matmul operands carry factors ``<= 1`` (tensor cores, batched 3-D
``tl.dot``), and the 16x16 diagonal blocks are computed elementwise in fp32.

Kernels (all handle one direction, the reverse one, or both; ``DIRS`` = 0 forward, 1 reverse, 2 both):

- ``_states_kernel``, grid ``(B*heads, n_dirs)``: walks the chunks in scan order and stores the fp32 state
  entering each chunk (``[B*heads, n_dirs, NT, BK, BV]``). Reads k, v, gates only.
- ``_output_kernel``, grid ``(NT, B*heads)``: one program per chunk reads its q/k/v tile once and adds the
  output of every direction from the stored states (the bidirectional mean is formed in registers).
- ``_dstates_kernel``, grid ``(B*heads, n_dirs)``: the reverse state recurrence, storing the gradient of the
  state leaving each chunk.
- ``_grads_kernel``, grid ``(NT, B*heads)``, one launch per direction: one program per chunk reads q/k/v/dO and
  forms that direction's dq, dk, dv (the bidirectional ones are summed afterwards) and gate gradient. The gate gradient needs no pass over the
  sequence: ``dlog_gate_t = sum_{m >= t in chunk} (q.dq - k.dk)_m + sum_v(S_out * dS_out)``, where the last term
  is the derivative through the state leaving the chunk.

The reverse direction uses the same chunk boundaries as the forward one (no flipped copies): chunks are
walked right to left and the in-chunk cumulative gate is a reverse cumsum, so masks and reference rows mirror.
The backward pass recomputes the states instead of saving them.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .._dispatch import triton_interpreting

CHUNK = 64
SUB_CHUNK = 16
LOG2E = 1.4426950408889634


# ------------------------------------------------------------------------------------------------- kernels


@triton.jit
def _dot(a, b, DT: tl.constexpr):
    if DT == tl.float32:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="ieee")
    else:
        return tl.dot(a.to(DT), b.to(DT), out_dtype=tl.float32)


@triton.jit
def _load_tile(ptr, base, n, L, stride_t, D, BT: tl.constexpr, BD: tl.constexpr):
    """Rows ``n*BT ... n*BT+BT-1`` (zero beyond L) and columns ``0 ... BD-1`` (zero beyond D) as fp32."""
    rows = n * BT + tl.arange(0, BT)
    cols = tl.arange(0, BD)
    mask = (rows[:, None] < L) & (cols[None, :] < D)
    return tl.load(ptr + base + rows[:, None] * stride_t + cols[None, :], mask=mask, other=0.0).to(tl.float32)


@triton.jit
def _store_tile(ptr, base, n, L, stride_t, D, val, BT: tl.constexpr, BD: tl.constexpr):
    rows = n * BT + tl.arange(0, BT)
    cols = tl.arange(0, BD)
    mask = (rows[:, None] < L) & (cols[None, :] < D)
    tl.store(ptr + base + rows[:, None] * stride_t + cols[None, :], val.to(ptr.dtype.element_ty), mask=mask)


@triton.jit
def _cumgate(g2, REVERSE: tl.constexpr):
    """In-chunk inclusive cumulative base-2 log gate, in scan order."""
    if REVERSE:
        return tl.cumsum(g2, axis=0, reverse=True)
    else:
        return tl.cumsum(g2, axis=0)


@triton.jit
def _sub_chunk_refs(cum, REVERSE: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr, BK: tl.constexpr):
    """Per sub-chunk reference gates ``[NS, BK]`` and the rescaled-key factor ``[NS, BT, BK]``.

    The reference is the sub-chunk row that comes first in scan order; a query row of the sub-chunk has
    ``cum <= ref`` and a key of an earlier (in scan order) sub-chunk has ``cum >= ref``, so both
    ``exp2(cum_q - ref)`` and ``exp2(ref - cum_k)`` are <= 1. The key factor is zero outside earlier sub-chunks.
    """
    NS: tl.constexpr = BT // BC
    rows = tl.arange(0, BC)
    cum3 = tl.reshape(cum, (NS, BC, BK))
    if REVERSE:
        REF: tl.constexpr = BC - 1
    else:
        REF: tl.constexpr = 0
    ref = tl.sum(tl.where(rows[None, :, None] == REF, cum3, 0.0), axis=1)  # [NS, BK]
    key_block = tl.arange(0, BT) // BC
    q_block = tl.arange(0, NS)
    if REVERSE:
        earlier = key_block[None, :] > q_block[:, None]
    else:
        earlier = key_block[None, :] < q_block[:, None]
    k_fac = tl.where(earlier[:, :, None], tl.exp2(tl.minimum(ref[:, None, :] - cum[None, :, :], 0.0)), 0.0)
    return ref, k_fac


@triton.jit
def _intra_scores(q, k, cum, DT: tl.constexpr, REVERSE: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr,
                  BK: tl.constexpr):
    """Masked in-chunk scores ``A[i, j] = sum_c q_ic k_jc exp2(cum_ic - cum_jc)`` for j before-or-at i: [BT, BT]."""
    NS: tl.constexpr = BT // BC
    rows = tl.arange(0, BC)
    q3 = tl.reshape(q, (NS, BC, BK))
    k3 = tl.reshape(k, (NS, BC, BK))
    cum3 = tl.reshape(cum, (NS, BC, BK))
    ref, k_fac = _sub_chunk_refs(cum, REVERSE, BT, BC, BK)
    q_scaled = q3 * tl.exp2(cum3 - ref[:, None, :])
    k_scaled = k[None, :, :] * k_fac
    scores = _dot(q_scaled, tl.trans(k_scaled, (0, 2, 1)), DT)  # [NS, BC, BT]
    diag = tl.zeros((NS, BC, BC), dtype=tl.float32)
    for j in range(BC):
        kj = tl.sum(tl.where(rows[None, :, None] == j, k3, 0.0), axis=1)  # [NS, BK]
        cj = tl.sum(tl.where(rows[None, :, None] == j, cum3, 0.0), axis=1)
        w = tl.sum(q3 * kj[:, None, :] * tl.exp2(tl.minimum(cum3 - cj[:, None, :], 0.0)), axis=2)  # [NS, BC]
        if REVERSE:
            w = tl.where(rows[None, :] <= j, w, 0.0)
        else:
            w = tl.where(rows[None, :] >= j, w, 0.0)
        diag = tl.where(rows[None, None, :] == j, w[:, :, None], diag)
    blocks = tl.arange(0, NS)
    diag4 = tl.where(blocks[:, None, None, None] == blocks[None, None, :, None], diag[:, :, None, :], 0.0)
    scores = scores + tl.reshape(diag4, (NS, BC, BT))
    return tl.reshape(scores, (BT, BT))


@triton.jit
def _intra_grads(dscores, q, k, cum, DT: tl.constexpr, REVERSE: tl.constexpr, BT: tl.constexpr,
                 BC: tl.constexpr, BK: tl.constexpr):
    """Given dL/dA (masked, [BT, BT]), the in-chunk parts of dq and dk ([BT, BK] each)."""
    NS: tl.constexpr = BT // BC
    rows = tl.arange(0, BC)
    blocks = tl.arange(0, NS)
    q3 = tl.reshape(q, (NS, BC, BK))
    k3 = tl.reshape(k, (NS, BC, BK))
    cum3 = tl.reshape(cum, (NS, BC, BK))
    ref, k_fac = _sub_chunk_refs(cum, REVERSE, BT, BC, BK)
    q_fac = tl.exp2(cum3 - ref[:, None, :])  # [NS, BC, BK]
    k_scaled = k[None, :, :] * k_fac  # [NS, BT, BK]
    ds3 = tl.reshape(dscores, (NS, BC, BT))
    # off-diagonal sub-chunk pairs (k_fac is zero elsewhere)
    dq3 = _dot(ds3, k_scaled, DT) * q_fac  # [NS, BC, BK]
    t = _dot(tl.trans(ds3, (0, 2, 1)), q3 * q_fac, DT)  # [NS, BT, BK]
    dk = tl.sum(t * k_fac, axis=0)  # [BT, BK]
    # diagonal sub-chunks, elementwise in fp32
    ds4 = tl.reshape(ds3, (NS, BC, NS, BC))
    ds_diag = tl.sum(tl.where(blocks[:, None, None, None] == blocks[None, None, :, None], ds4, 0.0), axis=2)
    dk3 = tl.zeros((NS, BC, BK), dtype=tl.float32)
    for j in range(BC):
        dsj = tl.sum(tl.where(rows[None, None, :] == j, ds_diag, 0.0), axis=2)  # [NS, BC]: dA[i, j], i in block
        kj = tl.sum(tl.where(rows[None, :, None] == j, k3, 0.0), axis=1)  # [NS, BK]
        cj = tl.sum(tl.where(rows[None, :, None] == j, cum3, 0.0), axis=1)
        if REVERSE:
            dsj = tl.where(rows[None, :] <= j, dsj, 0.0)
        else:
            dsj = tl.where(rows[None, :] >= j, dsj, 0.0)
        decay = tl.exp2(tl.minimum(cum3 - cj[:, None, :], 0.0))  # [NS, BC, BK]
        dq3 += dsj[:, :, None] * kj[:, None, :] * decay
        wk = tl.sum(dsj[:, :, None] * q3 * decay, axis=1)  # [NS, BK]
        dk3 = tl.where(rows[None, :, None] == j, wk[:, None, :], dk3)
    dq = tl.reshape(dq3, (BT, BK))
    dk = dk + tl.reshape(dk3, (BT, BK))
    return dq, dk


@triton.jit
def _causal_mask(REVERSE: tl.constexpr, BT: tl.constexpr):
    r = tl.arange(0, BT)
    if REVERSE:
        return r[None, :] >= r[:, None]
    else:
        return r[None, :] <= r[:, None]


@triton.jit
def _states_one_dir(k_ptr, v_ptr, g_ptr, h_ptr, k_base, v_base, h_base, L, NT, stride_k, stride_v, K, V,
                    DT: tl.constexpr, REVERSE: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr,
                    BV: tl.constexpr):
    state = tl.zeros((BK, BV), dtype=tl.float32)
    hk = tl.arange(0, BK)
    hv = tl.arange(0, BV)
    for i in range(NT):
        if REVERSE:
            n = NT - 1 - i
        else:
            n = i
        tl.store(h_ptr + h_base + n * BK * BV + hk[:, None] * BV + hv[None, :], state)
        k = _load_tile(k_ptr, k_base, n, L, stride_k, K, BT, BK)
        v = _load_tile(v_ptr, v_base, n, L, stride_v, V, BT, BV)
        g2 = _load_tile(g_ptr, k_base, n, L, stride_k, K, BT, BK) * 1.4426950408889634
        cum = _cumgate(g2, REVERSE)
        total = tl.sum(g2, axis=0)
        k_out = k * tl.exp2(total[None, :] - cum)
        state = state * tl.exp2(total)[:, None] + _dot(tl.trans(k_out), v, DT)


@triton.jit
def _states_kernel(k_ptr, v_ptr, g0_ptr, g1_ptr, h_ptr, L, H, NT, K, V,
                   DIRS: tl.constexpr, DT: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr):
    i_bh = tl.program_id(0)
    i_dir = tl.program_id(1)
    b = (i_bh // H).to(tl.int64)
    hd = (i_bh % H).to(tl.int64)
    stride_k = H * K
    stride_v = H * V
    k_base = b * L * stride_k + hd * K
    v_base = b * L * stride_v + hd * V
    n_dirs = 2 if DIRS == 2 else 1
    h_base = (i_bh.to(tl.int64) * n_dirs + i_dir) * NT * BK * BV
    if DIRS == 0:
        _states_one_dir(k_ptr, v_ptr, g0_ptr, h_ptr, k_base, v_base, h_base, L, NT, stride_k, stride_v, K, V,
                        DT, False, BT, BK, BV)
    elif DIRS == 1:
        _states_one_dir(k_ptr, v_ptr, g0_ptr, h_ptr, k_base, v_base, h_base, L, NT, stride_k, stride_v, K, V,
                        DT, True, BT, BK, BV)
    else:
        if i_dir == 0:
            _states_one_dir(k_ptr, v_ptr, g0_ptr, h_ptr, k_base, v_base, h_base, L, NT, stride_k, stride_v, K, V,
                            DT, False, BT, BK, BV)
        else:
            _states_one_dir(k_ptr, v_ptr, g1_ptr, h_ptr, k_base, v_base, h_base, L, NT, stride_k, stride_v, K, V,
                            DT, True, BT, BK, BV)


@triton.jit
def _output_one_dir(q, k, v, g_ptr, h_ptr, k_base, h_off, n, L, stride_k, K,
                    DT: tl.constexpr, REVERSE: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr,
                    BK: tl.constexpr, BV: tl.constexpr):
    g2 = _load_tile(g_ptr, k_base, n, L, stride_k, K, BT, BK) * 1.4426950408889634
    cum = _cumgate(g2, REVERSE)
    hk = tl.arange(0, BK)
    hv = tl.arange(0, BV)
    state = tl.load(h_ptr + h_off + hk[:, None] * BV + hv[None, :])
    out = _dot(q * tl.exp2(cum), state, DT)
    scores = _intra_scores(q, k, cum, DT, REVERSE, BT, BC, BK)
    out += _dot(scores, v, DT)
    return out


@triton.jit
def _output_kernel(q_ptr, k_ptr, v_ptr, g0_ptr, g1_ptr, h_ptr, o_ptr, scale, L, H, NT, K, V,
                   DIRS: tl.constexpr, DT: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr, BK: tl.constexpr,
                   BV: tl.constexpr):
    n = tl.program_id(0)
    i_bh = tl.program_id(1)
    b = (i_bh // H).to(tl.int64)
    hd = (i_bh % H).to(tl.int64)
    stride_k = H * K
    stride_v = H * V
    k_base = b * L * stride_k + hd * K
    v_base = b * L * stride_v + hd * V
    n_dirs = 2 if DIRS == 2 else 1
    h_off0 = ((i_bh.to(tl.int64) * n_dirs) * NT + n) * BK * BV
    q = _load_tile(q_ptr, k_base, n, L, stride_k, K, BT, BK) * scale
    k = _load_tile(k_ptr, k_base, n, L, stride_k, K, BT, BK)
    v = _load_tile(v_ptr, v_base, n, L, stride_v, V, BT, BV)
    if DIRS == 0:
        out = _output_one_dir(q, k, v, g0_ptr, h_ptr, k_base, h_off0, n, L, stride_k, K, DT, False, BT, BC, BK, BV)
    elif DIRS == 1:
        out = _output_one_dir(q, k, v, g0_ptr, h_ptr, k_base, h_off0, n, L, stride_k, K, DT, True, BT, BC, BK, BV)
    else:
        out = _output_one_dir(q, k, v, g0_ptr, h_ptr, k_base, h_off0, n, L, stride_k, K, DT, False, BT, BC, BK, BV)
        h_off1 = h_off0 + NT * BK * BV
        out += _output_one_dir(q, k, v, g1_ptr, h_ptr, k_base, h_off1, n, L, stride_k, K, DT, True, BT, BC, BK,
                               BV)
        out = out * 0.5
    _store_tile(o_ptr, v_base, n, L, stride_v, V, out, BT, BV)


@triton.jit
def _dstates_one_dir(q_ptr, g_ptr, do_ptr, dh_ptr, k_base, v_base, h_base, scale, do_scale, L, NT, stride_k,
                     stride_v, K, V, DT: tl.constexpr, REVERSE: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr,
                     BV: tl.constexpr):
    dstate = tl.zeros((BK, BV), dtype=tl.float32)
    hk = tl.arange(0, BK)
    hv = tl.arange(0, BV)
    for i in range(NT):
        # walk against the scan: the forward scan's last chunk first
        if REVERSE:
            n = i
        else:
            n = NT - 1 - i
        tl.store(dh_ptr + h_base + n * BK * BV + hk[:, None] * BV + hv[None, :], dstate)
        q = _load_tile(q_ptr, k_base, n, L, stride_k, K, BT, BK) * scale
        do = _load_tile(do_ptr, v_base, n, L, stride_v, V, BT, BV) * do_scale
        g2 = _load_tile(g_ptr, k_base, n, L, stride_k, K, BT, BK) * 1.4426950408889634
        cum = _cumgate(g2, REVERSE)
        total = tl.sum(g2, axis=0)
        dstate = dstate * tl.exp2(total)[:, None] + _dot(tl.trans(q * tl.exp2(cum)), do, DT)


@triton.jit
def _dstates_kernel(q_ptr, g0_ptr, g1_ptr, do_ptr, dh_ptr, scale, do_scale, L, H, NT, K, V,
                    DIRS: tl.constexpr, DT: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr):
    i_bh = tl.program_id(0)
    i_dir = tl.program_id(1)
    b = (i_bh // H).to(tl.int64)
    hd = (i_bh % H).to(tl.int64)
    stride_k = H * K
    stride_v = H * V
    k_base = b * L * stride_k + hd * K
    v_base = b * L * stride_v + hd * V
    n_dirs = 2 if DIRS == 2 else 1
    h_base = (i_bh.to(tl.int64) * n_dirs + i_dir) * NT * BK * BV
    if DIRS == 0:
        _dstates_one_dir(q_ptr, g0_ptr, do_ptr, dh_ptr, k_base, v_base, h_base, scale, do_scale, L, NT, stride_k,
                         stride_v, K, V, DT, False, BT, BK, BV)
    elif DIRS == 1:
        _dstates_one_dir(q_ptr, g0_ptr, do_ptr, dh_ptr, k_base, v_base, h_base, scale, do_scale, L, NT, stride_k,
                         stride_v, K, V, DT, True, BT, BK, BV)
    else:
        if i_dir == 0:
            _dstates_one_dir(q_ptr, g0_ptr, do_ptr, dh_ptr, k_base, v_base, h_base, scale, do_scale, L, NT,
                             stride_k, stride_v, K, V, DT, False, BT, BK, BV)
        else:
            _dstates_one_dir(q_ptr, g1_ptr, do_ptr, dh_ptr, k_base, v_base, h_base, scale, do_scale, L, NT,
                             stride_k, stride_v, K, V, DT, True, BT, BK, BV)


@triton.jit
def _grads_one_dir(q, k, v, do, g_ptr, dg_ptr, h_ptr, dh_ptr, k_base, h_off, n, L, stride_k, K,
                   DT: tl.constexpr, REVERSE: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr, BK: tl.constexpr,
                   BV: tl.constexpr):
    """One direction's share of dq, dk, dv for one chunk; stores this direction's gate gradient."""
    g2 = _load_tile(g_ptr, k_base, n, L, stride_k, K, BT, BK) * 1.4426950408889634
    cum = _cumgate(g2, REVERSE)
    total = tl.sum(g2, axis=0)
    hk = tl.arange(0, BK)
    hv = tl.arange(0, BV)
    state = tl.load(h_ptr + h_off + hk[:, None] * BV + hv[None, :])  # entering the chunk
    dstate = tl.load(dh_ptr + h_off + hk[:, None] * BV + hv[None, :])  # gradient of the state leaving it
    q_fac = tl.exp2(cum)
    k_fac = tl.exp2(total[None, :] - cum)
    k_out = k * k_fac
    scores = _intra_scores(q, k, cum, DT, REVERSE, BT, BC, BK)
    dscores = tl.where(_causal_mask(REVERSE, BT), _dot(do, tl.trans(v), DT), 0.0)
    dv = _dot(tl.trans(scores), do, DT) + _dot(k_out, dstate, DT)
    dq_in, dk_in = _intra_grads(dscores, q, k, cum, DT, REVERSE, BT, BC, BK)
    dq = q_fac * _dot(do, tl.trans(state), DT) + dq_in
    dk = k_fac * _dot(v, tl.trans(dstate), DT) + dk_in
    # gate gradient: in-chunk cumulative sum of q.dq - k.dk against the scan, plus the path through S_out
    state_out = state * tl.exp2(total)[:, None] + _dot(tl.trans(k_out), v, DT)
    boundary = tl.sum(state_out * dstate, axis=1)  # [BK]
    dcum = q * dq - k * dk
    if REVERSE:
        dg = tl.cumsum(dcum, axis=0)
    else:
        dg = tl.cumsum(dcum, axis=0, reverse=True)
    dg = dg + boundary[None, :]
    _store_tile(dg_ptr, k_base, n, L, stride_k, K, dg, BT, BK)
    return dq, dk, dv


@triton.jit
def _grads_kernel(q_ptr, k_ptr, v_ptr, g_ptr, do_ptr, h_ptr, dh_ptr, dq_ptr, dk_ptr, dv_ptr, dg_ptr, scale, do_scale,
                  L, H, NT, K, V, H_DIRS, H_DIR, DT: tl.constexpr, REVERSE: tl.constexpr, BT: tl.constexpr,
                  BC: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr):
    """One direction's dq, dk, dv and gate gradient for one chunk. The states of this direction are slice ``H_DIR``
    of ``H_DIRS`` in ``h`` / ``dh``; the bidirectional backward launches it once per direction (a program then
    holds one direction's tiles, not both: half the registers)."""
    n = tl.program_id(0)
    i_bh = tl.program_id(1)
    b = (i_bh // H).to(tl.int64)
    hd = (i_bh % H).to(tl.int64)
    stride_k = H * K
    stride_v = H * V
    k_base = b * L * stride_k + hd * K
    v_base = b * L * stride_v + hd * V
    h_off = ((i_bh.to(tl.int64) * H_DIRS + H_DIR) * NT + n) * BK * BV
    q = _load_tile(q_ptr, k_base, n, L, stride_k, K, BT, BK) * scale
    k = _load_tile(k_ptr, k_base, n, L, stride_k, K, BT, BK)
    v = _load_tile(v_ptr, v_base, n, L, stride_v, V, BT, BV)
    do = _load_tile(do_ptr, v_base, n, L, stride_v, V, BT, BV) * do_scale
    dq, dk, dv = _grads_one_dir(q, k, v, do, g_ptr, dg_ptr, h_ptr, dh_ptr, k_base, h_off, n, L, stride_k, K,
                                DT, REVERSE, BT, BC, BK, BV)
    _store_tile(dq_ptr, k_base, n, L, stride_k, K, dq * scale, BT, BK)
    _store_tile(dk_ptr, k_base, n, L, stride_k, K, dk, BT, BK)
    _store_tile(dv_ptr, v_base, n, L, stride_v, V, dv, BT, BV)


# ------------------------------------------------------------------------------------------------- launchers


def _dot_dtype(dtype: torch.dtype):
    # bf16 tl.dot is wrong in the Triton interpreter (triton-lang/triton#11584): upcast there.
    if dtype == torch.float32 or (dtype == torch.bfloat16 and triton_interpreting()):
        return tl.float32
    return tl.float16 if dtype == torch.float16 else tl.bfloat16


def _meta(q: torch.Tensor, v: torch.Tensor):
    batch, length, heads, dk = q.shape
    dv = v.shape[-1]
    return dict(
        batch=batch, length=length, heads=heads, dk=dk, dv=dv, nt=triton.cdiv(length, CHUNK),
        bk=max(16, triton.next_power_of_2(dk)), bv=max(16, triton.next_power_of_2(dv)),
    )


def launch_options(dk: int, dv: int, dtype) -> dict:
    """Launch options per kernel for head dims ``dk``, ``dv`` and a dtype (torch dtype or its name), chosen from
    the ahead-of-time table (``benchmarks/results/triton_aot.json``, ``python -m visionattn.ops._aot``) so that
    no kernel spills registers on sm_80 / sm_90."""
    scan = dict(num_warps=4, num_stages=1)
    # the chunk kernels hold [4, 64, dk] and [64, 64] fp32 tiles: 8 warps halve the registers per thread
    chunk = dict(num_warps=8, num_stages=1)
    return dict(gla_states=scan, gla_output=chunk, gla_dstates=scan, gla_grads=chunk)


def _states(k, v, g0, g1, dirs: int, m: dict, dt) -> torch.Tensor:
    n_dirs = 2 if dirs == 2 else 1
    h = torch.empty(m["batch"] * m["heads"], n_dirs, m["nt"], m["bk"], m["bv"], device=k.device, dtype=torch.float32)
    _states_kernel[(m["batch"] * m["heads"], n_dirs)](
        k, v, g0, g1 if g1 is not None else g0, h, m["length"], m["heads"], m["nt"], m["dk"], m["dv"],
        DIRS=dirs, DT=dt, BT=CHUNK, BK=m["bk"], BV=m["bv"], **launch_options(m["dk"], m["dv"], k.dtype)["gla_states"])
    return h


def gla_forward(q, k, v, g0, g1, scale: float, dirs: int) -> torch.Tensor:
    """Output ``[B, L, heads, dv]``; inputs contiguous heads-last. ``dirs``: 0 forward, 1 reverse, 2 both (mean)."""
    m = _meta(q, v)
    dt = _dot_dtype(q.dtype)
    h = _states(k, v, g0, g1, dirs, m, dt)
    out = torch.empty_like(v)
    _output_kernel[(m["nt"], m["batch"] * m["heads"])](
        q, k, v, g0, g1 if g1 is not None else g0, h, out, scale, m["length"], m["heads"], m["nt"], m["dk"],
        m["dv"], DIRS=dirs, DT=dt, BT=CHUNK, BC=SUB_CHUNK, BK=m["bk"], BV=m["bv"],
        **launch_options(m["dk"], m["dv"], q.dtype)["gla_output"])
    return out


def gla_backward(q, k, v, g0, g1, do, scale: float, dirs: int):
    """Gradients ``(dq, dk, dv, dg0, dg1 or None)``; the states are recomputed, not saved by the forward pass."""
    m = _meta(q, v)
    dt = _dot_dtype(q.dtype)
    n_dirs = 2 if dirs == 2 else 1
    do_scale = 0.5 if dirs == 2 else 1.0
    g1_arg = g1 if g1 is not None else g0
    h = _states(k, v, g0, g1, dirs, m, dt)
    dh = torch.empty_like(h)
    _dstates_kernel[(m["batch"] * m["heads"], n_dirs)](
        q, g0, g1_arg, do, dh, scale, do_scale, m["length"], m["heads"], m["nt"], m["dk"], m["dv"],
        DIRS=dirs, DT=dt, BT=CHUNK, BK=m["bk"], BV=m["bv"], **launch_options(m["dk"], m["dv"], q.dtype)["gla_dstates"])
    dg0 = torch.empty_like(g0)
    dg1 = torch.empty_like(g1) if g1 is not None else None
    options = launch_options(m["dk"], m["dv"], q.dtype)["gla_grads"]
    if dirs == 2:
        # one launch per direction into fp32 partials, summed here
        parts = [torch.empty(2, *t.shape, device=t.device, dtype=torch.float32) for t in (q, k, v)]
        outs = [(parts[0][i], parts[1][i], parts[2][i]) for i in range(2)]
    else:
        outs = [(torch.empty_like(q), torch.empty_like(k), torch.empty_like(v))]
    for h_dir, (reverse, gate, dgate) in enumerate(
            [(False, g0, dg0), (True, g1, dg1)] if dirs == 2 else [(dirs == 1, g0, dg0)]):
        dq_, dk_, dv_ = outs[h_dir]
        _grads_kernel[(m["nt"], m["batch"] * m["heads"])](
            q, k, v, gate, do, h, dh, dq_, dk_, dv_, dgate, scale, do_scale, m["length"], m["heads"], m["nt"],
            m["dk"], m["dv"], n_dirs, h_dir, DT=dt, REVERSE=reverse, BT=CHUNK, BC=SUB_CHUNK, BK=m["bk"],
            BV=m["bv"], **options)
    if dirs == 2:
        dq, dk, dv = (part.sum(0).to(t.dtype) for part, t in zip(parts, (q, k, v)))
    else:
        dq, dk, dv = outs[0]
    return dq, dk, dv, dg0, dg1
