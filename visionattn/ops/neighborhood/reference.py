"""Exact PyTorch 2-D neighborhood attention (NATTEN <= 0.14 semantics): the oracle and the CPU path.

How it stays exact, lean and fast on CPU:

- Dilation is removed first: an axis with dilation ``d`` splits into ``d`` interleaved groups (coordinate mod
  ``d``) and NATTEN's windows live inside a group, so each group pair is a plain dilation-1 problem on a smaller
  map. When the map divides evenly the groups are folded into the batch; otherwise each group runs on its own.
- In a dilation-1 problem the window of query ``i`` starts at ``clamp(i - r, 0, L - k)``. For a tile of query
  rows we gather the ``kh`` key rows of every query row (contiguous copies), and for a block of query columns we
  multiply the queries against the block's key columns plus halo with one batched GEMM, then keep each query's
  ``kw`` band with ``gather``. GEMMs over a slightly wider band beat gathering ``kh*kw`` key vectors per query.
- Nothing of size ``[B, H, W, heads, kh*kw, dim]`` is ever built; tiles are bounded by ``tile_elements``, and
  under autograd each tile is checkpointed so training memory is bounded as well.
"""
from __future__ import annotations

import functools
from typing import Optional, Tuple

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


@functools.lru_cache(maxsize=128)
def _axis_tables(length: int, kernel_size: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Dilation-1 tables for one axis.

    Returns:
        starts ``[length]``: window start per query; keys ``[length, k]``: key coordinate per window slot;
        bias ``[length, k]``: index into the ``2k - 1`` bias axis per window slot.
    """
    starts = window_starts(length, kernel_size, 1)
    slots = torch.arange(kernel_size)
    keys = starts[:, None] + slots[None, :]
    bias = keys - torch.arange(length)[:, None] + kernel_size - 1
    return starts, keys, bias


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _row_tile(
        q_rows: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rpb: Optional[torch.Tensor],
        row0: int, kernel_size: Tuple[int, int], scale: float, column_block: int, dropout_p: float,
) -> torch.Tensor:
    """Dilation-1 neighborhood attention for the query rows ``[row0, row0 + T)``.

    Args:
        q_rows: ``[N, heads, T, W, dim]`` queries of the tile (compute dtype).
        k, v: ``[N, heads, H, W, dim]`` whole maps (compute dtype).
        rpb: ``[heads, 2kh-1, 2kw-1]`` or None.

    Returns:
        ``[N, heads, T, W, dim]``.
    """
    n, heads, rows, width, dim = q_rows.shape
    height = k.shape[2]
    kh, kw = kernel_size
    device = q_rows.device
    _, keys_y, bias_y = _axis_tables(height, kh)
    starts_x, _, bias_x = _axis_tables(width, kw)
    key_rows = keys_y[row0:row0 + rows].reshape(-1).to(device)
    q_rows = q_rows * scale
    slots_x = torch.arange(kw, device=device)
    slots_y = torch.arange(kh, device=device)
    outputs = []
    for col0 in range(0, width, column_block):
        col1 = min(width, col0 + column_block)
        cols = col1 - col0
        band0 = int(starts_x[col0])
        band1 = int(starts_x[col1 - 1]) + kw
        band = band1 - band0
        # The kh key rows of every query row, restricted to the block's key columns: [N, h, T, kh*band, dim].
        # (Advanced indexing with a slice copies whole rows; index_select on the sliced view is much slower.)
        k_band = k[:, :, key_rows, band0:band1].reshape(n, heads, rows, kh * band, dim)
        v_band = v[:, :, key_rows, band0:band1].reshape(n, heads, rows, kh * band, dim)
        # Flat position of window slot (a, b) of each query column inside [kh, band]: [cols, kh*kw].
        start = starts_x[col0:col1].to(device) - band0
        index = (slots_y[None, :, None] * band + start[:, None, None] + slots_x[None, None, :]).reshape(cols, kh * kw)
        index = index.expand(n, heads, rows, cols, kh * kw)
        logits = torch.matmul(q_rows[:, :, :, col0:col1], k_band.transpose(-1, -2))  # [N, h, T, cols, kh*band]
        logits = logits.gather(-1, index)                                             # [N, h, T, cols, kh*kw]
        if rpb is not None:
            by = bias_y[row0:row0 + rows].to(device)
            bx = bias_x[col0:col1].to(device)
            bias = rpb[:, by[:, None, :, None], bx[None, :, None, :]]                 # [h, T, cols, kh, kw]
            logits = logits.add_(bias.reshape(1, heads, rows, cols, kh * kw))
        attn = torch.softmax(logits, dim=-1)
        if dropout_p > 0:
            attn = torch.nn.functional.dropout(attn, p=dropout_p, training=True)
        dense = attn.new_zeros(n, heads, rows, cols, kh * band).scatter_(-1, index, attn)
        outputs.append(torch.matmul(dense, v_band))                                   # [N, h, T, cols, dim]
    return torch.cat(outputs, dim=3) if len(outputs) > 1 else outputs[0]


def _na2d_dilation1(
        q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rpb: Optional[torch.Tensor],
        kernel_size: Tuple[int, int], scale: float, tile_elements: int, column_block: int, dropout_p: float,
        use_checkpoint: bool,
) -> torch.Tensor:
    """``q, k, v``: ``[N, heads, H, W, dim]`` -> ``[N, heads, H, W, dim]``, dilation 1."""
    n, heads, height, width, dim = q.shape
    kh, kw = kernel_size
    column_block = max(1, min(width, column_block))
    band = min(width, column_block + kw - 1)
    per_row = n * heads * kh * band * max(column_block, dim)
    rows = max(1, min(height, tile_elements // max(1, per_row)))
    checkpointed = use_checkpoint and rows < height
    outputs = []
    for row0 in range(0, height, rows):
        row1 = min(height, row0 + rows)
        args = (q[:, :, row0:row1], k, v, rpb, row0, (kh, kw), scale, column_block, dropout_p)
        if checkpointed:
            outputs.append(checkpoint(_row_tile, *args, use_reentrant=False))
        else:
            outputs.append(_row_tile(*args))
    return torch.cat(outputs, dim=2) if len(outputs) > 1 else outputs[0]


def na2d_reference(
        q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernel_size: Tuple[int, int], dilation: Tuple[int, int],
        rpb: Optional[torch.Tensor], scale: float, tile_elements: int = DEFAULT_TILE_ELEMENTS,
        column_block: Optional[int] = None, dropout_p: float = 0.0,
) -> torch.Tensor:
    """2-D neighborhood attention in PyTorch. Arguments are already validated by ``visionattn.ops.na2d``.

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
    dy, dx = dilation
    compute = _compute_dtype(q.dtype)
    if column_block is None:
        column_block = DEFAULT_COLUMN_BLOCK_KERNELS * kernel_size[1]
    use_checkpoint = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (q, k, v, rpb))
    rpb_c = rpb.to(compute) if rpb is not None else None

    def heads_first(t: torch.Tensor) -> torch.Tensor:  # [B, H, W, heads, dim] -> [B, heads, H, W, dim]
        return t.to(compute).permute(0, 3, 1, 2, 4)

    def run(qg: torch.Tensor, kg: torch.Tensor, vg: torch.Tensor) -> torch.Tensor:
        return _na2d_dilation1(
            qg.contiguous(), kg.contiguous(), vg.contiguous(), rpb_c, kernel_size, scale, tile_elements,
            column_block, dropout_p, use_checkpoint,
        )

    if dy == 1 and dx == 1:
        out = run(heads_first(q), heads_first(k), heads_first(v))
        return out.permute(0, 2, 3, 1, 4).to(q.dtype)

    if height % dy == 0 and width % dx == 0:
        # Fold the dy*dx groups into the batch: [B, H, W, h, d] -> [B*dy*dx, h, H/dy, W/dx, d].
        gh, gw = height // dy, width // dx

        def fold(t: torch.Tensor) -> torch.Tensor:
            t = t.to(compute).view(batch, gh, dy, gw, dx, heads, dim).permute(0, 2, 4, 5, 1, 3, 6)
            return t.reshape(batch * dy * dx, heads, gh, gw, dim)

        out = run(fold(q), fold(k), fold(v))
        out = out.view(batch, dy, dx, heads, gh, gw, dim).permute(0, 4, 1, 5, 2, 3, 6)
        return out.reshape(batch, height, width, heads, dim).to(q.dtype)

    # Uneven split: on each axis the first ``L mod d`` groups are one longer than the rest. Groups of equal length
    # form a class; each (row class, column class) pair is gathered, folded into the batch and run at once.
    qh, kh_, vh = heads_first(q), heads_first(k), heads_first(v)
    out = qh.new_zeros(height, width, batch, heads, dim)  # index_put writes the two leading dims
    for rows_index in _group_classes(height, dy, q.device):
        for cols_index in _group_classes(width, dx, q.device):
            n_rows, g_rows = rows_index.shape[1], rows_index.shape[0]
            n_cols, g_cols = cols_index.shape[1], cols_index.shape[0]
            flat_rows, flat_cols = rows_index.reshape(-1), cols_index.reshape(-1)

            def gather(t: torch.Tensor) -> torch.Tensor:
                t = t[:, :, flat_rows[:, None], flat_cols[None, :]]
                t = t.view(batch, heads, g_rows, n_rows, g_cols, n_cols, dim).permute(0, 2, 4, 1, 3, 5, 6)
                return t.reshape(batch * g_rows * g_cols, heads, n_rows, n_cols, dim)

            res = run(gather(qh), gather(kh_), gather(vh))
            res = res.view(batch, g_rows, g_cols, heads, n_rows, n_cols, dim).permute(0, 3, 1, 4, 2, 5, 6)
            res = res.reshape(batch, heads, g_rows * n_rows, g_cols * n_cols, dim)
            out = out.index_put((flat_rows[:, None], flat_cols[None, :]), res.permute(2, 3, 0, 1, 4))
    return out.permute(2, 0, 1, 3, 4).to(q.dtype)


@functools.lru_cache(maxsize=128)
def _group_classes_cpu(length: int, dilation: int) -> Tuple[torch.Tensor, ...]:
    long_groups = length % dilation
    short_len = length // dilation
    classes = []
    for groups, n in ((range(0, long_groups), short_len + 1), (range(long_groups, dilation), short_len)):
        if len(groups) and n > 0:
            g = torch.tensor(list(groups))
            classes.append(g[:, None] + dilation * torch.arange(n)[None, :])
    return tuple(classes)


def _group_classes(length: int, dilation: int, device: torch.device) -> Tuple[torch.Tensor, ...]:
    """Coordinates of each dilation group, grouped by group length: tensors ``[groups, n]`` (at most two)."""
    return tuple(c.to(device) for c in _group_classes_cpu(length, dilation))
