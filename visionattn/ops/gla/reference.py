"""Exact PyTorch gated linear attention: the chunked CPU path and the token-by-token oracle.

Layout is heads-last: ``q, k, log_gate: [B, L, heads, dk]``, ``v, out: [B, L, heads, dv]``.
The recurrence is ``S_t = diag(exp(g_t)) S_{t-1} + k_t v_t^T`` and ``o_t = scale * q_t^T S_t`` with
``S_0 = 0``; ``reverse=True`` runs it from ``t = L - 1`` down to ``0``.

The chunked form (chunk 64, sub-chunk 16) follows the two-level algorithm of the GLA paper
(https://arxiv.org/abs/2312.06635): with ``G`` the in-chunk inclusive cumulative log gate,
every decay factor that is exponentiated is ``exp(G_later - G_earlier) <= 1``, so nothing overflows
however strong the decay is. Sub-chunk pairs off the diagonal are batched matmuls of operands rescaled
against the first row of the query sub-chunk (both factors <= 1); the diagonal 16x16 blocks recurse once
more (sub-blocks of 4) and only the 4x4 diagonal blocks are computed elementwise. Memory is linear in L
(about ``12 * dk`` floats per token for the rescaled keys and the 4x4 blocks), and everything runs in fp32
(fp64 for fp64 inputs); the output has the input dtype.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

CHUNK_SIZE = 64
SUB_CHUNK_SIZE = 16


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _gla_chunked_fp32(
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        log_gate: torch.Tensor,
        scale: float,
        reverse: bool,
        chunk_size: int,
        sub_chunk_size: int,
) -> torch.Tensor:
    """Chunked GLA in the compute dtype. Inputs heads-last, output ``[B, L, heads, dv]`` (compute dtype)."""
    comp = _compute_dtype(q.dtype)
    if reverse:
        # The reverse scan is the forward scan of the time-reversed sequence.
        q, k, v, log_gate = (t.flip(1) for t in (q, k, v, log_gate))
    batch, length, heads, dk = q.shape
    dv = v.shape[-1]
    cs, ss = chunk_size, sub_chunk_size
    n_chunks = -(-length // cs)
    pad = n_chunks * cs - length

    def prep(t: torch.Tensor, mul: float = 1.0) -> torch.Tensor:
        t = t.to(comp).transpose(1, 2)  # [B, heads, L, d]
        if mul != 1.0:
            t = t * mul
        if pad:
            # Zero keys/values add nothing and zero log gates decay nothing, so padding at the end
            # leaves every real output of the causal scan unchanged.
            t = torch.nn.functional.pad(t, (0, 0, 0, pad))
        return t.reshape(batch, heads, n_chunks, cs, t.shape[-1])

    qc, kc, vc, gc = prep(q, scale), prep(k), prep(v), prep(log_gate)
    cum = gc.cumsum(-2)  # [B, h, N, C, dk], decreasing along C
    total = cum[..., -1:, :]  # [B, h, N, 1, dk]

    # Inter-chunk: state entering each chunk. Both exponents below are <= 0.
    k_to_end = kc * torch.exp(total - cum)
    chunk_update = k_to_end.transpose(-1, -2) @ vc  # [B, h, N, dk, dv]
    chunk_decay = torch.exp(total).squeeze(-2).unsqueeze(-1)  # [B, h, N, dk, 1]
    state = qc.new_zeros(batch, heads, dk, dv)
    states_in = []
    # unbind once: indexing inside the loop would make autograd build a full-size gradient per chunk
    for decay, update in zip(chunk_decay.unbind(2), chunk_update.unbind(2)):
        states_in.append(state)
        state = decay * state + update
    states_in = torch.stack(states_in, dim=2)  # [B, h, N, dk, dv]
    out = (qc * torch.exp(cum)) @ states_in  # [B, h, N, C, dv]

    attn = _intra_chunk_scores(qc, kc, cum, _block_sizes(cs, ss))  # [B, h, N, C, C]
    out = out + attn @ vc

    out = out.reshape(batch, heads, n_chunks * cs, dv)[:, :, :length].transpose(1, 2)
    if reverse:
        out = out.flip(1)
    return out


def _block_sizes(chunk_size: int, sub_chunk_size: int) -> Tuple[int, ...]:
    """Nested block sizes, e.g. (64, 16, 4): matmul levels down to blocks of at most 4 tokens."""
    sizes = [chunk_size, sub_chunk_size]
    while sizes[-1] > 4 and sizes[-1] % 4 == 0:
        sizes.append(sizes[-1] // 4)
    return tuple(sizes)


def _intra_chunk_scores(q: torch.Tensor, k: torch.Tensor, cum: torch.Tensor, sizes: Tuple[int, ...]) -> torch.Tensor:
    """Masked in-block scores ``A[i, j] = sum_c q_ic k_jc exp(cum_ic - cum_jc)`` for ``j <= i``.

    ``q, k, cum``: ``[..., n, s, dk]`` with ``s = sizes[0]``; returns ``[..., n, s, s]``. A block is split into
    sub-blocks of ``sizes[1]``: pairs off the diagonal are one batched matmul of operands rescaled against the
    first row of the query sub-block (``cum_q - ref <= 0`` and ``ref - cum_k <= 0``: no factor exceeds 1); the
    diagonal sub-blocks recurse, and the smallest blocks are computed elementwise.
    """
    s = q.shape[-2]
    if len(sizes) == 1:
        causal = torch.ones(s, s, dtype=torch.bool, device=q.device).tril()
        exponent = (cum.unsqueeze(-2) - cum.unsqueeze(-3)).masked_fill(~causal[..., None], float("-inf"))
        return (q.unsqueeze(-2) * k.unsqueeze(-3) * torch.exp(exponent)).sum(-1)
    sub = sizes[1]
    ns = s // sub
    lead = q.shape[:-2]
    dk = q.shape[-1]
    q_sub = q.reshape(*lead, ns, sub, dk)
    k_sub = k.reshape(*lead, ns, sub, dk)
    cum_sub = cum.reshape(*lead, ns, sub, dk)
    ref = cum_sub[..., :1, :]  # [..., n, ns, 1, dk]
    q_scaled = q_sub * torch.exp(cum_sub - ref)
    key_block = torch.arange(s, device=q.device) // sub
    earlier = key_block[None, :] < torch.arange(ns, device=q.device)[:, None]  # [ns, s]
    k_exponent = (ref - cum.unsqueeze(-3)).masked_fill(~earlier[..., None], float("-inf"))  # [..., n, ns, s, dk]
    scores = q_scaled @ (k.unsqueeze(-3) * torch.exp(k_exponent)).transpose(-1, -2)  # [..., n, ns, sub, s]
    diag = _intra_chunk_scores(q_sub, k_sub, cum_sub, sizes[1:])  # [..., n, ns, sub, sub]
    eye = torch.eye(ns, dtype=q.dtype, device=q.device)
    scores = scores.reshape(*lead, ns, sub, ns, sub) + diag.unsqueeze(-2) * eye[:, None, :, None]
    return scores.reshape(*lead, s, s)


def gla_reference(
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        log_gate: torch.Tensor,
        scale: float,
        reverse: bool = False,
        chunk_size: int = CHUNK_SIZE,
        sub_chunk_size: int = SUB_CHUNK_SIZE,
) -> torch.Tensor:
    """Chunked gated linear attention (the CPU path). Plain autograd, differentiable in all inputs.

    Args:
        q, k, log_gate: ``[B, L, heads, dk]``; ``log_gate <= 0`` is the log of the per-channel decay.
        v: ``[B, L, heads, dv]``.
        scale: multiplies ``q``.
        reverse: scan from the last token to the first.
        chunk_size, sub_chunk_size: tiling; ``chunk_size`` must be a multiple of ``sub_chunk_size``.

    Returns:
        ``[B, L, heads, dv]`` in the dtype of ``q``.
    """
    out = _gla_chunked_fp32(q, k, v, log_gate, scale, reverse, chunk_size, sub_chunk_size)
    return out.to(q.dtype)


def bigla_reference(
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        log_gate_fwd: torch.Tensor,
        log_gate_bwd: torch.Tensor,
        scale: float,
        chunk_size: int = CHUNK_SIZE,
        sub_chunk_size: int = SUB_CHUNK_SIZE,
) -> torch.Tensor:
    """Bidirectional GLA: the mean of a forward scan with ``log_gate_fwd`` and a reverse scan with
    ``log_gate_bwd`` (both indexed by original position). Shapes as in :func:`gla_reference`."""
    fwd = _gla_chunked_fp32(q, k, v, log_gate_fwd, scale, False, chunk_size, sub_chunk_size)
    bwd = _gla_chunked_fp32(q, k, v, log_gate_bwd, scale, True, chunk_size, sub_chunk_size)
    return ((fwd + bwd) * 0.5).to(q.dtype)


def gla_recurrent(
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        log_gate: torch.Tensor,
        scale: Optional[float] = None,
        reverse: bool = False,
) -> torch.Tensor:
    """Token-by-token recurrence, the test oracle (slow: a Python loop over L).

    Computes in float64 for float64 inputs and float32 otherwise; returns the dtype of ``q``.
    Shapes as in :func:`gla_reference`.
    """
    comp = _compute_dtype(q.dtype)
    if scale is None:
        scale = q.shape[-1] ** -0.5
    batch, length, heads, dk = q.shape
    dv = v.shape[-1]
    qf, kf, vf, gf = (t.to(comp) for t in (q, k, v, log_gate))
    state = qf.new_zeros(batch, heads, dk, dv)
    outs = [None] * length
    steps = range(length - 1, -1, -1) if reverse else range(length)
    for t in steps:
        state = torch.exp(gf[:, t]).unsqueeze(-1) * state + kf[:, t].unsqueeze(-1) * vf[:, t].unsqueeze(-2)
        outs[t] = scale * torch.einsum("bhk,bhkv->bhv", qf[:, t], state)
    return torch.stack(outs, dim=1).to(q.dtype)
