"""Exact PyTorch 2-D neighborhood attention (NATTEN <= 0.14 semantics): the oracle and the CPU path.

How it stays exact, lean and fast on CPU:

- Dilation is removed first: an axis with dilation ``d`` splits into ``d`` interleaved groups (coordinate mod
  ``d``) and NATTEN's windows live inside a group, so each group pair is a plain dilation-1 problem on a smaller
  map. When the map divides evenly the groups are folded into the batch; otherwise the groups of each length
  class are gathered and folded (:class:`DilationGroups`).
- In a dilation-1 problem the window of query ``i`` starts at ``clamp(i - r, 0, L - k)``. For a tile of query
  rows we gather the ``kh`` key rows of every query row (contiguous copies), and for a block of query columns we
  multiply the queries against the block's key columns plus halo with one batched GEMM, then keep each query's
  ``kw`` band with ``gather``. GEMMs over a slightly wider band beat gathering ``kh*kw`` key vectors per query.
- Nothing of size ``[B, H, W, heads, kh*kw, dim]`` is ever built; tiles are bounded by ``tile_elements``.
- Training keeps what the Triton kernels keep: the forward pass (:func:`na2d_reference_forward`) returns the
  output and the per-query log-sum-exp, and the backward pass (:func:`na2d_reference_backward`) recomputes each
  tile's logits from q, k, rpb and the log-sum-exp and forms dq, dk, dv and d(rpb) by hand (flash-attention's
  ``ds = p * (dp - rowsum(dO * O))``). No autograd graph, no per-tile checkpoint re-running the forward.
- :func:`na2d_reference` is the differentiable-by-autograd form, kept for attention dropout (a random op that
  the hand-written backward does not replay); it checkpoints its tiles.
"""
from __future__ import annotations

import functools
from typing import List, Optional, Tuple

import torch
from torch.utils.checkpoint import checkpoint

# Elements allowed in one tile's largest temporary (the [.., kh, cols, band] logits / key rows).
DEFAULT_TILE_ELEMENTS = 1 << 24
# Query columns per GEMM block, in multiples of kw; the key band is the block plus kw - 1 columns, so the GEMMs
# spend (block + kw - 1) / kw times the useful FLOPs. 4*kw measured best at DiNAT shapes on CPU.
DEFAULT_COLUMN_BLOCK_KERNELS = 4


def window_starts(length: int, kernel_size: int, dilation: int) -> torch.Tensor:
    """Window start of every coordinate on one axis, shape ``[length]`` (int64).

    Each axis splits into ``dilation`` interleaved groups (coordinate mod dilation). Inside its group a query
    at group index ``j`` uses the window starting at group index ``clamp(j - r, 0, n_group - k)``, so the
    window shifts inward at borders. This equals NATTEN 0.14's ``get_window_start`` for every dilation.
    """
    coords = torch.arange(length)
    group = coords % dilation
    index_in_group = coords // dilation
    group_len = (length - group + dilation - 1) // dilation
    radius = kernel_size // 2
    start_in_group = torch.minimum((index_in_group - radius).clamp_min(0), group_len - kernel_size)
    return start_in_group * dilation + group


def _starts_list(length: int, kernel_size: int) -> List[int]:
    """Dilation-1 window starts as Python ints (no tensor reads in the tile loops)."""
    return [min(max(i - kernel_size // 2, 0), length - kernel_size) for i in range(length)]


@functools.lru_cache(maxsize=256)
def _axis_tables(length: int, kernel_size: int, device: torch.device) -> Tuple[Tuple[int, ...], torch.Tensor,
                                                                                 torch.Tensor, torch.Tensor]:
    """Dilation-1 tables for one axis on ``device``.

    Returns:
        starts (Python ints) per query; starts ``[length]``; keys ``[length, k]``: key coordinate per window
        slot; bias ``[length, k]``: index into the ``2k - 1`` bias axis per window slot.
    """
    starts_list = tuple(_starts_list(length, kernel_size))
    with torch.inference_mode(False):  # cached: must stay usable by autograd (gather saves its index)
        starts = torch.tensor(starts_list, dtype=torch.long)
        keys = starts[:, None] + torch.arange(kernel_size)[None, :]
        bias = keys - torch.arange(length)[:, None] + kernel_size - 1
        return starts_list, starts.to(device), keys.to(device), bias.to(device)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


# ------------------------------------------------------------------------------------------------------------
# Dilation groups <-> dilation-1 problems


@functools.lru_cache(maxsize=128)
def _group_classes_cpu(length: int, dilation: int) -> Tuple[torch.Tensor, ...]:
    long_groups = length % dilation
    short_len = length // dilation
    classes = []
    with torch.inference_mode(False):
        for groups, n in ((range(0, long_groups), short_len + 1), (range(long_groups, dilation), short_len)):
            if len(groups) and n > 0:
                g = torch.tensor(list(groups))
                classes.append(g[:, None] + dilation * torch.arange(n)[None, :])
    return tuple(classes)


class DilationGroups:
    """Splits heads-first maps ``[B, heads, H, W, C]`` into dilation-1 problems ``[N, heads, h, w, C]`` and back.

    Every split tensor is a fresh contiguous copy (the one copy the GEMMs need anyway).
    """

    def __init__(self, height: int, width: int, dilation: Tuple[int, int], device: torch.device) -> None:
        self.height, self.width = height, width
        self.dy, self.dx = dilation
        self.mode = "plain" if dilation == (1, 1) else (
            "fold" if height % self.dy == 0 and width % self.dx == 0 else "classes")
        if self.mode == "classes":
            rows = [c.to(device) for c in _group_classes_cpu(height, self.dy)]
            cols = [c.to(device) for c in _group_classes_cpu(width, self.dx)]
            self.classes = [(r, c) for r in rows for c in cols]

    def split(self, t: torch.Tensor) -> List[torch.Tensor]:
        batch, heads = t.shape[:2]
        rest = t.shape[4:]
        if self.mode == "plain":
            return [t.contiguous()]
        if self.mode == "fold":
            gh, gw = self.height // self.dy, self.width // self.dx
            t = t.reshape(batch, heads, gh, self.dy, gw, self.dx, *rest).movedim((3, 5), (1, 2))
            return [t.reshape(batch * self.dy * self.dx, heads, gh, gw, *rest)]
        parts = []
        for rows, cols in self.classes:
            (g_r, n_r), (g_c, n_c) = rows.shape, cols.shape
            part = t[:, :, rows.reshape(-1)[:, None], cols.reshape(-1)[None, :]]
            part = part.reshape(batch, heads, g_r, n_r, g_c, n_c, *rest).movedim((2, 4), (1, 2))
            parts.append(part.reshape(batch * g_r * g_c, heads, n_r, n_c, *rest))
        return parts

    def merge(self, parts: List[torch.Tensor], batch: int) -> torch.Tensor:
        """Inverse of :meth:`split`: ``[B, heads, H, W, C]`` (a view where possible)."""
        heads = parts[0].shape[1]
        rest = parts[0].shape[4:]
        if self.mode == "plain":
            return parts[0]
        if self.mode == "fold":
            gh, gw = self.height // self.dy, self.width // self.dx
            t = parts[0].reshape(batch, self.dy, self.dx, heads, gh, gw, *rest).movedim((1, 2), (3, 5))
            return t.reshape(batch, heads, self.height, self.width, *rest)
        out = parts[0].new_empty(batch, heads, self.height, self.width, *rest)
        for (rows, cols), part in zip(self.classes, parts):
            (g_r, n_r), (g_c, n_c) = rows.shape, cols.shape
            part = part.reshape(batch, g_r, g_c, heads, n_r, n_c, *rest).movedim((1, 2), (2, 4))
            out[:, :, rows.reshape(-1)[:, None], cols.reshape(-1)[None, :]] = part.reshape(
                batch, heads, g_r * n_r, g_c * n_c, *rest)
        return out


def _heads_first(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``[B, H, W, heads, ...]`` -> ``[B, heads, H, W, ...]`` view in ``dtype``."""
    return t.to(dtype).movedim(3, 1)


def _heads_last(t: torch.Tensor) -> torch.Tensor:
    """``[B, heads, H, W, ...]`` -> contiguous ``[B, H, W, heads, ...]``."""
    return t.movedim(1, 3).contiguous()


# ------------------------------------------------------------------------------------------------------------
# Dilation-1 tiles


def _rows_per_tile(n: int, heads: int, height: int, kh: int, band: int, column_block: int, dim: int,
                   tile_elements: int) -> int:
    per_row = n * heads * kh * band * max(column_block, dim)
    return max(1, min(height, tile_elements // max(1, per_row)))


def _band(starts: Tuple[int, ...], col0: int, col1: int, kw: int) -> Tuple[int, int]:
    return starts[col0], starts[col1 - 1] + kw


def _slot_index(starts_x: torch.Tensor, col0: int, col1: int, band0: int, band: int, kh: int, kw: int) -> torch.Tensor:
    """Flat position of window slot (a, b) of each query column inside ``[kh, band]``: ``[cols, kh*kw]``."""
    device = starts_x.device
    start = starts_x[col0:col1] - band0
    slots_y = torch.arange(kh, device=device) * band
    slots_x = torch.arange(kw, device=device)
    return (slots_y[None, :, None] + start[:, None, None] + slots_x[None, None, :]).reshape(col1 - col0, kh * kw)


def _tile_bias(rpb: torch.Tensor, bias_y: torch.Tensor, bias_x: torch.Tensor, row0: int, rows: int, col0: int,
               col1: int) -> torch.Tensor:
    """``[heads, T, cols, kh*kw]`` bias of every (query, window slot) of the tile."""
    by = bias_y[row0:row0 + rows]
    bx = bias_x[col0:col1]
    bias = rpb[:, by[:, None, :, None], bx[None, :, None, :]]  # [h, T, cols, kh, kw]
    return bias.reshape(rpb.shape[0], rows, col1 - col0, -1)


def _tile_forward(
        q_rows: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rpb: Optional[torch.Tensor],
        row0: int, kernel_size: Tuple[int, int], scale: float, column_block: int, dropout_p: float = 0.0,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Dilation-1 neighborhood attention for the query rows ``[row0, row0 + T)``.

    Args:
        q_rows: ``[N, heads, T, W, dim]`` queries of the tile (compute dtype).
        k, v: ``[N, heads, H, W, dim]`` whole maps (compute dtype).
        rpb: ``[heads, 2kh-1, 2kw-1]`` or None.

    Returns:
        out ``[N, heads, T, W, dim]`` and log-sum-exp of the logits ``[N, heads, T, W]``.
    """
    n, heads, rows, width, dim = q_rows.shape
    height = k.shape[2]
    kh, kw = kernel_size
    device = q_rows.device
    _, _, keys_y, bias_y = _axis_tables(height, kh, device)
    starts_x_list, starts_x, _, bias_x = _axis_tables(width, kw, device)
    key_rows = keys_y[row0:row0 + rows].reshape(-1)
    q_rows = q_rows * scale
    outputs, lses = [], []
    for col0 in range(0, width, column_block):
        col1 = min(width, col0 + column_block)
        cols = col1 - col0
        band0, band1 = _band(starts_x_list, col0, col1, kw)
        band = band1 - band0
        # The kh key rows of every query row, restricted to the block's key columns: [N, h, T, kh*band, dim].
        # (Advanced indexing with a slice copies whole rows; index_select on the sliced view is much slower.)
        k_band = k[:, :, key_rows, band0:band1].reshape(n, heads, rows, kh * band, dim)
        v_band = v[:, :, key_rows, band0:band1].reshape(n, heads, rows, kh * band, dim)
        index = _slot_index(starts_x, col0, col1, band0, band, kh, kw).expand(n, heads, rows, cols, kh * kw)
        logits = torch.matmul(q_rows[:, :, :, col0:col1], k_band.transpose(-1, -2))  # [N, h, T, cols, kh*band]
        logits = logits.gather(-1, index)                                             # [N, h, T, cols, kh*kw]
        if rpb is not None:
            logits = logits + _tile_bias(rpb, bias_y, bias_x, row0, rows, col0, col1)
        lse = torch.logsumexp(logits, dim=-1)
        attn = torch.exp(logits - lse.unsqueeze(-1))
        if dropout_p > 0:
            attn = torch.nn.functional.dropout(attn, p=dropout_p, training=True)
        dense = attn.new_zeros(n, heads, rows, cols, kh * band).scatter_(-1, index, attn)
        outputs.append(torch.matmul(dense, v_band))                                   # [N, h, T, cols, dim]
        lses.append(lse)
    if len(outputs) == 1:
        return outputs[0], lses[0]
    return torch.cat(outputs, dim=3), torch.cat(lses, dim=3)


def _tile_backward(
        q_rows: torch.Tensor, do_rows: torch.Tensor, lse_rows: torch.Tensor, delta_rows: torch.Tensor,
        k: torch.Tensor, v: torch.Tensor, rpb: Optional[torch.Tensor], row0: int, kernel_size: Tuple[int, int],
        scale: float, column_block: int, dk: torch.Tensor, dv: torch.Tensor, drpb: Optional[torch.Tensor],
) -> torch.Tensor:
    """Gradients of one row tile: returns dq ``[N, heads, T, W, dim]`` and accumulates into ``dk``, ``dv``
    (``[N, heads, H, W, dim]``) and ``drpb`` (``[heads, (2kh-1)*(2kw-1)]``, or None).

    ``lse_rows``, ``delta_rows``: ``[N, heads, T, W]`` (log-sum-exp from the forward, ``rowsum(dO * O)``).
    """
    n, heads, rows, width, dim = q_rows.shape
    height = k.shape[2]
    kh, kw = kernel_size
    device = q_rows.device
    _, _, keys_y, bias_y = _axis_tables(height, kh, device)
    starts_x_list, starts_x, _, bias_x = _axis_tables(width, kw, device)
    key_rows = keys_y[row0:row0 + rows].reshape(-1)
    q_rows = q_rows * scale
    dqs = []
    for col0 in range(0, width, column_block):
        col1 = min(width, col0 + column_block)
        cols = col1 - col0
        band0, band1 = _band(starts_x_list, col0, col1, kw)
        band = band1 - band0
        k_band = k[:, :, key_rows, band0:band1].reshape(n, heads, rows, kh * band, dim)
        v_band = v[:, :, key_rows, band0:band1].reshape(n, heads, rows, kh * band, dim)
        index = _slot_index(starts_x, col0, col1, band0, band, kh, kw).expand(n, heads, rows, cols, kh * kw)
        q_blk = q_rows[:, :, :, col0:col1]
        do_blk = do_rows[:, :, :, col0:col1]
        logits = torch.matmul(q_blk, k_band.transpose(-1, -2)).gather(-1, index)     # [N, h, T, cols, kh*kw]
        if rpb is not None:
            logits = logits + _tile_bias(rpb, bias_y, bias_x, row0, rows, col0, col1)
        p = torch.exp(logits - lse_rows[:, :, :, col0:col1, None])
        dp = torch.matmul(do_blk, v_band.transpose(-1, -2)).gather(-1, index)
        ds = p * (dp - delta_rows[:, :, :, col0:col1, None])
        if drpb is not None:
            by = bias_y[row0:row0 + rows]
            bx = bias_x[col0:col1]
            flat = (by[:, None, :, None] * (2 * kw - 1) + bx[None, :, None, :]).reshape(-1)  # [T*cols*kh*kw]
            drpb.index_add_(1, flat, ds.sum(0).reshape(heads, -1))
        p_dense = p.new_zeros(n, heads, rows, cols, kh * band).scatter_(-1, index, p)
        ds_dense = ds.new_zeros(n, heads, rows, cols, kh * band).scatter_(-1, index, ds)
        dv_band = torch.matmul(p_dense.transpose(-1, -2), do_blk)                    # [N, h, T, kh*band, dim]
        dk_band = torch.matmul(ds_dense.transpose(-1, -2), q_blk)
        dqs.append(torch.matmul(ds_dense, k_band))
        dv.narrow(3, band0, band).index_add_(2, key_rows, dv_band.reshape(n, heads, rows * kh, band, dim))
        dk.narrow(3, band0, band).index_add_(2, key_rows, dk_band.reshape(n, heads, rows * kh, band, dim))
    dq = dqs[0] if len(dqs) == 1 else torch.cat(dqs, dim=3)
    return dq * scale


def _tiling(q: torch.Tensor, kernel_size: Tuple[int, int], column_block: int, tile_elements: int):
    n, heads, height, width, dim = q.shape
    kh, kw = kernel_size
    column_block = max(1, min(width, column_block))
    band = min(width, column_block + kw - 1)
    rows = _rows_per_tile(n, heads, height, kh, band, column_block, dim, tile_elements)
    return column_block, rows


def _forward_dilation1(
        q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rpb: Optional[torch.Tensor],
        kernel_size: Tuple[int, int], scale: float, tile_elements: int, column_block: int,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """``q, k, v``: ``[N, heads, H, W, dim]`` -> out ``[N, heads, H, W, dim]``, lse ``[N, heads, H, W]``."""
    height = q.shape[2]
    column_block, rows = _tiling(q, kernel_size, column_block, tile_elements)
    outs, lses = [], []
    for row0 in range(0, height, rows):
        out, lse = _tile_forward(q[:, :, row0:row0 + rows], k, v, rpb, row0, kernel_size, scale, column_block)
        outs.append(out)
        lses.append(lse)
    if len(outs) == 1:
        return outs[0], lses[0]
    return torch.cat(outs, dim=2), torch.cat(lses, dim=2)


def _backward_dilation1(
        q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rpb: Optional[torch.Tensor], do: torch.Tensor,
        lse: torch.Tensor, delta: torch.Tensor, kernel_size: Tuple[int, int], scale: float, tile_elements: int,
        column_block: int, drpb: Optional[torch.Tensor],
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    height = q.shape[2]
    column_block, rows = _tiling(q, kernel_size, column_block, tile_elements)
    dk = torch.zeros_like(k)
    dv = torch.zeros_like(v)
    dqs = []
    for row0 in range(0, height, rows):
        sl = slice(row0, row0 + rows)
        dqs.append(_tile_backward(q[:, :, sl], do[:, :, sl], lse[:, :, sl], delta[:, :, sl], k, v, rpb, row0,
                                  kernel_size, scale, column_block, dk, dv, drpb))
    dq = dqs[0] if len(dqs) == 1 else torch.cat(dqs, dim=2)
    return dq, dk, dv


def _column_block(column_block: Optional[int], kernel_size: Tuple[int, int]) -> int:
    return DEFAULT_COLUMN_BLOCK_KERNELS * kernel_size[1] if column_block is None else column_block


# ------------------------------------------------------------------------------------------------------------
# Entry points


def na2d_reference_forward(
        q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rpb: Optional[torch.Tensor], kernel_size: Tuple[int, int],
        dilation: Tuple[int, int], scale: float, tile_elements: int = DEFAULT_TILE_ELEMENTS,
        column_block: Optional[int] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Forward pass without autograd: ``(out [B, H, W, heads, dim], lse [B, H, W, heads])``, both contiguous.

    ``out`` has the dtype of ``q``; ``lse`` (log-sum-exp of each query's scaled, biased logits) is float32
    (float64 for float64 input). Arguments as in :func:`na2d_reference`.
    """
    batch, height, width, heads, dim = q.shape
    compute = _compute_dtype(q.dtype)
    column_block = _column_block(column_block, kernel_size)
    rpb_c = rpb.to(compute) if rpb is not None else None
    groups = DilationGroups(height, width, tuple(dilation), q.device)
    outs, lses = [], []
    for qg, kg, vg in zip(*(groups.split(_heads_first(t, compute)) for t in (q, k, v))):
        out, lse = _forward_dilation1(qg, kg, vg, rpb_c, kernel_size, scale, tile_elements, column_block)
        outs.append(out)
        lses.append(lse.unsqueeze(-1))
    out = _heads_last(groups.merge(outs, batch)).to(q.dtype)
    lse = _heads_last(groups.merge(lses, batch)).squeeze(-1)
    return out, lse


def na2d_reference_backward(
        grad_out: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rpb: Optional[torch.Tensor],
        out: torch.Tensor, lse: torch.Tensor, kernel_size: Tuple[int, int], dilation: Tuple[int, int], scale: float,
        rpb_grad: bool = True, tile_elements: int = DEFAULT_TILE_ELEMENTS, column_block: Optional[int] = None,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """Gradients ``(dq, dk, dv, drpb)`` from what the forward pass saved (inputs, ``out`` and ``lse``).

    Tiles are recomputed one at a time; dq, dk, dv have the dtype of ``q`` and ``drpb`` that of ``rpb`` (None
    when ``rpb`` is None or ``rpb_grad`` is False).
    """
    batch, height, width, heads, dim = q.shape
    kh, kw = kernel_size
    compute = _compute_dtype(q.dtype)
    column_block = _column_block(column_block, kernel_size)
    rpb_c = rpb.to(compute) if rpb is not None else None
    drpb = torch.zeros(heads, (2 * kh - 1) * (2 * kw - 1), dtype=compute, device=q.device) \
        if rpb is not None and rpb_grad else None
    delta = (grad_out.to(compute) * out.to(compute)).sum(-1)  # [B, H, W, heads]
    groups = DilationGroups(height, width, tuple(dilation), q.device)
    split = [groups.split(_heads_first(t, compute)) for t in (q, k, v, grad_out)]
    split += [groups.split(_heads_first(t.to(compute).unsqueeze(-1), compute)) for t in (lse, delta)]
    grads = [], [], []
    for qg, kg, vg, dog, lseg, deltag in zip(*split):
        dq, dk, dv = _backward_dilation1(qg, kg, vg, rpb_c, dog, lseg.squeeze(-1), deltag.squeeze(-1), kernel_size,
                                         scale, tile_elements, column_block, drpb)
        for acc, g in zip(grads, (dq, dk, dv)):
            acc.append(g)
    dq, dk, dv = (_heads_last(groups.merge(g, batch)).to(q.dtype) for g in grads)
    if drpb is not None:
        drpb = drpb.view(heads, 2 * kh - 1, 2 * kw - 1).to(rpb.dtype)
    return dq, dk, dv, drpb


def na2d_reference(
        q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernel_size: Tuple[int, int], dilation: Tuple[int, int],
        rpb: Optional[torch.Tensor], scale: float, tile_elements: int = DEFAULT_TILE_ELEMENTS,
        column_block: Optional[int] = None, dropout_p: float = 0.0,
) -> torch.Tensor:
    """2-D neighborhood attention in PyTorch ops, differentiable by autograd (arguments validated by
    ``visionattn.ops.na2d``). This is the attention-dropout path; without dropout ``visionattn.ops.na2d`` runs
    :func:`na2d_reference_forward` / :func:`na2d_reference_backward` inside the ``visionattn::na2d`` operator.

    Args:
        q, k, v: ``[B, H, W, heads, dim]``.
        kernel_size, dilation: ``(kh, kw)``, ``(dy, dx)``.
        rpb: ``[heads, 2kh-1, 2kw-1]`` or None.
        scale: multiplier of ``q . k``.
        tile_elements: bound on one tile's largest temporary (memory knob).
        column_block: query columns per GEMM block (speed knob), default ``4 * kw``.
        dropout_p: dropout probability on the attention weights (0 disables it).

    Returns:
        ``[B, H, W, heads, dim]`` in the dtype of ``q``. Logits and softmax run in float32 (float64 input: float64).
    """
    batch, height, width, heads, dim = q.shape
    compute = _compute_dtype(q.dtype)
    column_block = _column_block(column_block, kernel_size)
    use_checkpoint = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (q, k, v, rpb))
    rpb_c = rpb.to(compute) if rpb is not None else None
    groups = DilationGroups(height, width, tuple(dilation), q.device)
    outs = []
    for qg, kg, vg in zip(*(groups.split(_heads_first(t, compute)) for t in (q, k, v))):
        col_block, rows = _tiling(qg, kernel_size, column_block, tile_elements)
        tiles = []
        for row0 in range(0, qg.shape[2], rows):
            args = (qg[:, :, row0:row0 + rows], kg, vg, rpb_c, row0, kernel_size, scale, col_block, dropout_p)
            if use_checkpoint and rows < qg.shape[2]:
                tiles.append(checkpoint(_tile_forward, *args, use_reentrant=False)[0])
            else:
                tiles.append(_tile_forward(*args)[0])
        outs.append(tiles[0] if len(tiles) == 1 else torch.cat(tiles, dim=2))
    return _heads_last(groups.merge(outs, batch)).to(q.dtype)
