"""Exact PyTorch gated linear attention: the chunked CPU path and the token-by-token oracle.

Layout is heads-last: ``q, k, log_gate: [B, L, heads, dk]``, ``v, out: [B, L, heads, dv]``.
The recurrence is ``S_t = diag(exp(g_t)) S_{t-1} + k_t v_t^T`` and ``o_t = scale * q_t^T S_t`` with
``S_0 = 0``; ``reverse=True`` runs it from ``t = L - 1`` down to ``0``.

The chunked form (chunk 64, sub-chunk 16) follows the two-level algorithm of the GLA paper
(https://arxiv.org/abs/2312.06635): with ``G`` the in-chunk inclusive cumulative log gate,
every decay factor that is exponentiated is ``exp(G_later - G_earlier) <= 1``, so nothing overflows
however strong the decay is. Sub-chunk pairs off the diagonal are batched matmuls of operands rescaled
against the first row of the query sub-chunk (both factors <= 1); the diagonal 16x16 blocks recurse once
more (sub-blocks of 4) and only the 4x4 diagonal blocks are computed elementwise. Everything runs in fp32
(fp64 for fp64 inputs); the output has the input dtype.

Training memory: the forward pass keeps nothing but its inputs (the custom operator saves q, k, v and the
gates); the backward pass (:func:`gla_reference_backward`) recomputes the chunk states and, one group of chunks at
a time, the in-chunk scores, and forms the gradients by hand:

- ``dS_n = diag(exp(G_n)) dS_{n+1} + (q_n * exp(cum_n))^T dO_n`` (reverse state recurrence over chunks);
- ``dv = A^T dO + k_out dS_out``, ``dq = exp(cum) * (dO S_in^T) + intra``, ``dk = exp(G - cum) * (v dS_out^T) +
  intra``, with the in-chunk parts formed through the same sub-chunk factorisation as the scores;
- the gate gradient needs no pass over the sequence: ``d log_gate_t = sum_{m >= t in chunk} (q.dq - k.dk)_m +
  rowsum(S_out * dS_out)`` (every term of the output carries ``exp(B_i - B_j)`` with ``B`` the global cumulative
  gate, so ``dL/dB_i = q_i dq_i - k_i dk_i``; the chunk's suffix beyond its end is the state term).

Temporaries are bounded by ``group_elements`` (chunks are processed in groups), so peak memory is linear in L.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch

CHUNK_SIZE = 64
SUB_CHUNK_SIZE = 16
# Elements allowed in one group of chunks' largest temporaries.
DEFAULT_GROUP_ELEMENTS = 1 << 23


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _block_sizes(chunk_size: int, sub_chunk_size: int) -> Tuple[int, ...]:
    """Nested block sizes, e.g. (64, 16, 4): matmul levels down to blocks of at most 4 tokens."""
    sizes = [chunk_size, sub_chunk_size]
    while sizes[-1] > 4 and sizes[-1] % 4 == 0:
        sizes.append(sizes[-1] // 4)
    return tuple(sizes)


def _earlier_mask(s: int, sub: int, device: torch.device) -> torch.Tensor:
    """``[ns, s]``: key position in a sub-block strictly before the query sub-block."""
    key_block = torch.arange(s, device=device) // sub
    return key_block[None, :] < torch.arange(s // sub, device=device)[:, None]


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
    earlier = _earlier_mask(s, sub, q.device)
    k_exponent = (ref - cum.unsqueeze(-3)).masked_fill(~earlier[..., None], float("-inf"))  # [..., n, ns, s, dk]
    scores = q_scaled @ (k.unsqueeze(-3) * torch.exp(k_exponent)).transpose(-1, -2)  # [..., n, ns, sub, s]
    diag = _intra_chunk_scores(q_sub, k_sub, cum_sub, sizes[1:])  # [..., n, ns, sub, sub]
    eye = torch.eye(ns, dtype=q.dtype, device=q.device)
    scores = scores.reshape(*lead, ns, sub, ns, sub) + diag.unsqueeze(-2) * eye[:, None, :, None]
    return scores.reshape(*lead, s, s)


def _intra_chunk_grads(
        dscores: torch.Tensor, q: torch.Tensor, k: torch.Tensor, cum: torch.Tensor, sizes: Tuple[int, ...],
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Gradients of :func:`_intra_chunk_scores` with respect to ``q`` and ``k`` (``cum`` held fixed).

    ``dscores``: ``[..., n, s, s]``, zero above the diagonal. Returns ``(dq, dk)``, each ``[..., n, s, dk]``:
    ``dq_i = sum_j dA_ij k_j exp(cum_i - cum_j)``, ``dk_j = sum_i dA_ij q_i exp(cum_i - cum_j)``, through the same
    factorisation as the forward (every exponentiated difference is <= 0).
    """
    s = q.shape[-2]
    if len(sizes) == 1:
        causal = torch.ones(s, s, dtype=torch.bool, device=q.device).tril()
        exponent = (cum.unsqueeze(-2) - cum.unsqueeze(-3)).masked_fill(~causal[..., None], float("-inf"))
        weighted = dscores.unsqueeze(-1) * torch.exp(exponent)  # [..., s(i), s(j), dk]
        return (weighted * k.unsqueeze(-3)).sum(-2), (weighted * q.unsqueeze(-2)).sum(-3)
    sub = sizes[1]
    ns = s // sub
    lead = q.shape[:-2]
    dk = q.shape[-1]
    q_sub = q.reshape(*lead, ns, sub, dk)
    k_sub = k.reshape(*lead, ns, sub, dk)
    cum_sub = cum.reshape(*lead, ns, sub, dk)
    ref = cum_sub[..., :1, :]
    q_fac = torch.exp(cum_sub - ref)  # [..., ns, sub, dk]
    earlier = _earlier_mask(s, sub, q.device)
    k_fac = torch.exp((ref - cum.unsqueeze(-3)).masked_fill(~earlier[..., None], float("-inf")))  # [.., ns, s, dk]
    ds_rows = dscores.reshape(*lead, ns, sub, s)
    dq = (ds_rows @ (k.unsqueeze(-3) * k_fac)) * q_fac  # [..., ns, sub, dk]
    dk_full = ((ds_rows.transpose(-1, -2) @ (q_sub * q_fac)) * k_fac).sum(-3)  # [..., s, dk]
    ds_diag = torch.diagonal(dscores.reshape(*lead, ns, sub, ns, sub), dim1=-4, dim2=-2).movedim(-1, -3)
    dq_diag, dk_diag = _intra_chunk_grads(ds_diag, q_sub, k_sub, cum_sub, sizes[1:])
    return (dq + dq_diag).reshape(*lead, s, dk), dk_full + dk_diag.reshape(*lead, s, dk)


# ----------------------------------------------------------------------------------------------------------------
# Chunked layout


class _Chunks:
    """Inputs of one scan direction in the compute dtype, chunked: ``[B, heads, N, C, d]`` (time-reversed for the
    reverse scan; zero-padded at the end, which leaves every real output of the causal scan unchanged: zero keys
    and values add nothing, zero log gates decay nothing)."""

    def __init__(self, length: int, chunk_size: int, reverse: bool) -> None:
        self.length, self.cs, self.reverse = length, chunk_size, reverse
        self.n_chunks = -(-length // chunk_size)
        self.pad = self.n_chunks * chunk_size - length

    def pack(self, t: torch.Tensor, dtype: torch.dtype, mul: float = 1.0) -> torch.Tensor:
        batch, _, heads, dim = t.shape
        t = t.to(dtype)
        if self.reverse:
            t = t.flip(1)
        t = t.transpose(1, 2)  # [B, heads, L, d]
        if mul != 1.0:
            t = t * mul
        if self.pad:
            t = torch.nn.functional.pad(t, (0, 0, 0, self.pad))
        return t.reshape(batch, heads, self.n_chunks, self.cs, dim).contiguous()

    def unpack(self, t: torch.Tensor) -> torch.Tensor:
        """``[B, heads, N, C, d]`` -> ``[B, L, heads, d]`` (original time order)."""
        batch, heads = t.shape[:2]
        t = t.reshape(batch, heads, self.n_chunks * self.cs, t.shape[-1])[:, :, :self.length].transpose(1, 2)
        return t.flip(1) if self.reverse else t


def _groups(n_chunks: int, per_chunk: int, group_elements: int) -> List[Tuple[int, int]]:
    size = max(1, min(n_chunks, group_elements // max(1, per_chunk)))
    return [(n0, min(n_chunks, n0 + size)) for n0 in range(0, n_chunks, size)]


def _per_chunk_elements(batch: int, heads: int, cs: int, dk: int, dv: int) -> int:
    # the [C, C] scores and their gradient, the [ns, C, dk] rescaled keys and the 4x4 leaves, per chunk
    return batch * heads * (3 * cs * cs + 8 * cs * max(dk, dv))


def _states(kc: torch.Tensor, vc: torch.Tensor, gc: torch.Tensor, groups) -> Tuple[torch.Tensor, torch.Tensor,
                                                                                    torch.Tensor]:
    """States entering every chunk ``[B, h, N, dk, dv]``, chunk decays ``exp(G_n)`` ``[B, h, N, dk]`` and the
    chunk updates ``sum_j (k_j exp(G - cum_j)) v_j^T`` ``[B, h, N, dk, dv]``."""
    batch, heads, n_chunks, _, dk = kc.shape
    dv = vc.shape[-1]
    updates = kc.new_empty(batch, heads, n_chunks, dk, dv)
    totals = kc.new_empty(batch, heads, n_chunks, dk)
    for n0, n1 in groups:
        cum = gc[:, :, n0:n1].cumsum(-2)
        total = cum[..., -1:, :]
        torch.matmul((kc[:, :, n0:n1] * torch.exp(total - cum)).transpose(-1, -2), vc[:, :, n0:n1],
                     out=updates[:, :, n0:n1])
        totals[:, :, n0:n1] = total.squeeze(-2)
    decays = torch.exp(totals)
    states = kc.new_empty(batch, heads, n_chunks, dk, dv)
    state = kc.new_zeros(batch, heads, dk, dv)
    for n in range(n_chunks):
        states[:, :, n] = state
        state = torch.addcmul(updates[:, :, n], decays[:, :, n].unsqueeze(-1), state)
    return states, decays, updates


def _forward_one(
        q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_gate: torch.Tensor, scale: float, reverse: bool,
        chunk_size: int, sub_chunk_size: int, group_elements: int,
) -> torch.Tensor:
    """One scan direction, output ``[B, L, heads, dv]`` in the compute dtype."""
    comp = _compute_dtype(q.dtype)
    batch, length, heads, dk = q.shape
    dv = v.shape[-1]
    chunks = _Chunks(length, chunk_size, reverse)
    qc, kc, vc, gc = chunks.pack(q, comp, scale), chunks.pack(k, comp), chunks.pack(v, comp), chunks.pack(log_gate,
                                                                                                          comp)
    groups = _groups(chunks.n_chunks, _per_chunk_elements(batch, heads, chunk_size, dk, dv), group_elements)
    states, _, _ = _states(kc, vc, gc, groups)
    sizes = _block_sizes(chunk_size, sub_chunk_size)
    out = torch.empty_like(vc)
    for n0, n1 in groups:
        sl = slice(n0, n1)
        cum = gc[:, :, sl].cumsum(-2)
        q_blk, k_blk = qc[:, :, sl], kc[:, :, sl]
        torch.matmul(q_blk * torch.exp(cum), states[:, :, sl], out=out[:, :, sl])
        out[:, :, sl] += _intra_chunk_scores(q_blk, k_blk, cum, sizes) @ vc[:, :, sl]
    return chunks.unpack(out)


def _backward_one(
        grad_out: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_gate: torch.Tensor,
        scale: float, reverse: bool, chunk_size: int, sub_chunk_size: int, group_elements: int,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of one scan direction ``(dq, dk, dv, dlog_gate)``, heads-last, compute dtype."""
    comp = _compute_dtype(q.dtype)
    batch, length, heads, dk = q.shape
    dv = v.shape[-1]
    chunks = _Chunks(length, chunk_size, reverse)
    qc, kc, vc, gc = chunks.pack(q, comp, scale), chunks.pack(k, comp), chunks.pack(v, comp), chunks.pack(log_gate,
                                                                                                          comp)
    doc = chunks.pack(grad_out, comp)
    groups = _groups(chunks.n_chunks, _per_chunk_elements(batch, heads, chunk_size, dk, dv), group_elements)
    states, decays, updates = _states(kc, vc, gc, groups)
    # reverse recurrence: gradient of the state leaving each chunk
    dstates = torch.empty_like(states)
    q_do = torch.empty_like(states)
    for n0, n1 in groups:
        cum = gc[:, :, n0:n1].cumsum(-2)
        torch.matmul((qc[:, :, n0:n1] * torch.exp(cum)).transpose(-1, -2), doc[:, :, n0:n1], out=q_do[:, :, n0:n1])
    dstate = torch.zeros_like(states[:, :, 0])
    for n in range(chunks.n_chunks - 1, -1, -1):
        dstates[:, :, n] = dstate
        dstate = torch.addcmul(q_do[:, :, n], decays[:, :, n].unsqueeze(-1), dstate)
    del q_do
    sizes = _block_sizes(chunk_size, sub_chunk_size)
    causal = torch.ones(chunk_size, chunk_size, dtype=torch.bool, device=q.device).tril()
    dqc, dkc, dvc, dgc = (torch.empty_like(t) for t in (qc, kc, vc, gc))
    for n0, n1 in groups:
        sl = slice(n0, n1)
        q_blk, k_blk, v_blk, do_blk = qc[:, :, sl], kc[:, :, sl], vc[:, :, sl], doc[:, :, sl]
        s_in, ds_out = states[:, :, sl], dstates[:, :, sl]
        cum = gc[:, :, sl].cumsum(-2)
        total = cum[..., -1:, :]
        k_fac = torch.exp(total - cum)
        scores = _intra_chunk_scores(q_blk, k_blk, cum, sizes)
        dscores = (do_blk @ v_blk.transpose(-1, -2)).masked_fill_(~causal, 0.0)
        dvc[:, :, sl] = scores.transpose(-1, -2) @ do_blk + (k_blk * k_fac) @ ds_out
        dq_in, dk_in = _intra_chunk_grads(dscores, q_blk, k_blk, cum, sizes)
        dq = torch.exp(cum) * (do_blk @ s_in.transpose(-1, -2)) + dq_in
        dk_ = k_fac * (v_blk @ ds_out.transpose(-1, -2)) + dk_in
        s_out = torch.addcmul(updates[:, :, sl], decays[:, :, sl].unsqueeze(-1), s_in)
        boundary = (s_out * ds_out).sum(-1)  # [B, h, n, dk]
        dcum = q_blk * dq - k_blk * dk_
        dgc[:, :, sl] = dcum.flip(-2).cumsum(-2).flip(-2) + boundary.unsqueeze(-2)
        dqc[:, :, sl] = dq * scale
        dkc[:, :, sl] = dk_
    return tuple(chunks.unpack(t) for t in (dqc, dkc, dvc, dgc))


# ----------------------------------------------------------------------------------------------------------------
# Entry points (no autograd: the custom operators in op.py carry the autograd formula)


def gla_reference_forward(
        q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_gate: torch.Tensor, scale: float,
        reverse: bool = False, chunk_size: int = CHUNK_SIZE, sub_chunk_size: int = SUB_CHUNK_SIZE,
        group_elements: int = DEFAULT_GROUP_ELEMENTS,
) -> torch.Tensor:
    """Chunked GLA forward: contiguous ``[B, L, heads, dv]`` in the dtype of ``q``."""
    out = _forward_one(q, k, v, log_gate, scale, reverse, chunk_size, sub_chunk_size, group_elements)
    return out.to(q.dtype).contiguous()


def gla_reference_backward(
        grad_out: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_gate: torch.Tensor,
        scale: float, reverse: bool = False, chunk_size: int = CHUNK_SIZE, sub_chunk_size: int = SUB_CHUNK_SIZE,
        group_elements: int = DEFAULT_GROUP_ELEMENTS,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(dq, dk, dv, dlog_gate)`` from the inputs alone (everything else is recomputed), in the input dtypes."""
    grads = _backward_one(grad_out, q, k, v, log_gate, scale, reverse, chunk_size, sub_chunk_size, group_elements)
    return tuple(g.to(t.dtype).contiguous() for g, t in zip(grads, (q, k, v, log_gate)))


def bigla_reference_forward(
        q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_gate_fwd: torch.Tensor, log_gate_bwd: torch.Tensor,
        scale: float, chunk_size: int = CHUNK_SIZE, sub_chunk_size: int = SUB_CHUNK_SIZE,
        group_elements: int = DEFAULT_GROUP_ELEMENTS,
) -> torch.Tensor:
    """Mean of a forward scan with ``log_gate_fwd`` and a reverse scan with ``log_gate_bwd``."""
    fwd = _forward_one(q, k, v, log_gate_fwd, scale, False, chunk_size, sub_chunk_size, group_elements)
    bwd = _forward_one(q, k, v, log_gate_bwd, scale, True, chunk_size, sub_chunk_size, group_elements)
    return ((fwd + bwd) * 0.5).to(q.dtype).contiguous()


def bigla_reference_backward(
        grad_out: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_gate_fwd: torch.Tensor,
        log_gate_bwd: torch.Tensor, scale: float, chunk_size: int = CHUNK_SIZE, sub_chunk_size: int = SUB_CHUNK_SIZE,
        group_elements: int = DEFAULT_GROUP_ELEMENTS,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(dq, dk, dv, dlog_gate_fwd, dlog_gate_bwd)`` in the input dtypes."""
    half = grad_out.to(_compute_dtype(q.dtype)) * 0.5
    dq, dk, dv, dgf = _backward_one(half, q, k, v, log_gate_fwd, scale, False, chunk_size, sub_chunk_size,
                                    group_elements)
    dq_b, dk_b, dv_b, dgb = _backward_one(half, q, k, v, log_gate_bwd, scale, True, chunk_size, sub_chunk_size,
                                          group_elements)
    grads = (dq + dq_b, dk + dk_b, dv + dv_b, dgf, dgb)
    return tuple(g.to(t.dtype).contiguous() for g, t in zip(grads, (q, k, v, log_gate_fwd, log_gate_bwd)))


class _GLAReference(torch.autograd.Function):
    """Autograd over the hand-written backward, for direct calls with custom chunk sizes (tests, gradcheck)."""

    @staticmethod
    def forward(ctx, q, k, v, g_fwd, g_bwd, scale, reverse, chunk_size, sub_chunk_size, group_elements):
        ctx.save_for_backward(q, k, v, g_fwd, g_bwd)
        ctx.args = scale, reverse, chunk_size, sub_chunk_size, group_elements
        if g_bwd is None:
            return gla_reference_forward(q, k, v, g_fwd, scale, reverse, chunk_size, sub_chunk_size, group_elements)
        return bigla_reference_forward(q, k, v, g_fwd, g_bwd, scale, chunk_size, sub_chunk_size, group_elements)

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, g_fwd, g_bwd = ctx.saved_tensors
        scale, reverse, chunk_size, sub_chunk_size, group_elements = ctx.args
        if g_bwd is None:
            grads = gla_reference_backward(grad_out, q, k, v, g_fwd, scale, reverse, chunk_size, sub_chunk_size,
                                           group_elements) + (None,)
        else:
            grads = bigla_reference_backward(grad_out, q, k, v, g_fwd, g_bwd, scale, chunk_size, sub_chunk_size,
                                             group_elements)
        return grads + (None,) * 5


def gla_reference(
        q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_gate: torch.Tensor, scale: float,
        reverse: bool = False, chunk_size: int = CHUNK_SIZE, sub_chunk_size: int = SUB_CHUNK_SIZE,
        group_elements: int = DEFAULT_GROUP_ELEMENTS,
) -> torch.Tensor:
    """Chunked gated linear attention (the CPU path), differentiable in all inputs (hand-written backward).

    Args:
        q, k, log_gate: ``[B, L, heads, dk]``; ``log_gate <= 0`` is the log of the per-channel decay.
        v: ``[B, L, heads, dv]``.
        scale: multiplies ``q``.
        reverse: scan from the last token to the first.
        chunk_size, sub_chunk_size: tiling; ``chunk_size`` must be a multiple of ``sub_chunk_size``.
        group_elements: bound on the temporaries of one group of chunks (memory knob).

    Returns:
        ``[B, L, heads, dv]`` in the dtype of ``q``.
    """
    return _GLAReference.apply(q, k, v, log_gate, None, scale, reverse, chunk_size, sub_chunk_size, group_elements)


def bigla_reference(
        q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_gate_fwd: torch.Tensor, log_gate_bwd: torch.Tensor,
        scale: float, chunk_size: int = CHUNK_SIZE, sub_chunk_size: int = SUB_CHUNK_SIZE,
        group_elements: int = DEFAULT_GROUP_ELEMENTS,
) -> torch.Tensor:
    """Bidirectional GLA: the mean of a forward scan with ``log_gate_fwd`` and a reverse scan with
    ``log_gate_bwd`` (both indexed by original position). Shapes as in :func:`gla_reference`."""
    return _GLAReference.apply(q, k, v, log_gate_fwd, log_gate_bwd, scale, False, chunk_size, sub_chunk_size,
                               group_elements)


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
