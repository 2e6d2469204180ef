"""Exact PyTorch 2-D neighborhood attention (NATTEN <= 0.14 semantics): the oracle and the CPU path.

The map is processed in tiles of query rows. For each tile the keys and values of every query's window are
gathered with one ``index_select`` (flat indices precomputed per axis), so memory grows with the tile, never
with ``[B, H, W, heads, kh*kw, dim]`` for the whole map. When gradients are needed each tile runs under
activation checkpointing, so training memory stays bounded by the tile as well.
"""
from __future__ import annotations

import functools
from typing import Optional, Tuple

import torch
from torch.utils.checkpoint import checkpoint

# Elements of the gathered key tile ([B, heads, rows*W*kh*kw, dim]) allowed at once.
DEFAULT_TILE_ELEMENTS = 1 << 23


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


@functools.lru_cache(maxsize=64)
def _axis_tables(length: int, kernel_size: int, dilation: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Key coordinate and bias index per (query coordinate, window slot): two ``[length, kernel_size]`` tables."""
    starts = window_starts(length, kernel_size, dilation)
    slots = torch.arange(kernel_size)
    keys = starts[:, None] + slots[None, :] * dilation
    bias = (keys - torch.arange(length)[:, None]) // dilation + kernel_size - 1
    return keys, bias


@functools.lru_cache(maxsize=64)
def _flat_tables(
        height: int, width: int, kernel_size: Tuple[int, int], dilation: Tuple[int, int],
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Flat key index ``[H, W, kh*kw]`` into ``H*W`` and flat bias index ``[H, W, kh*kw]`` into ``(2kh-1)(2kw-1)``."""
    kh, kw = kernel_size
    keys_y, bias_y = _axis_tables(height, kh, dilation[0])
    keys_x, bias_x = _axis_tables(width, kw, dilation[1])
    flat_keys = keys_y[:, None, :, None] * width + keys_x[None, :, None, :]
    flat_bias = bias_y[:, None, :, None] * (2 * kw - 1) + bias_x[None, :, None, :]
    return flat_keys.reshape(height, width, kh * kw), flat_bias.reshape(height, width, kh * kw)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _attend_rows(
        q_rows: torch.Tensor, k_flat: torch.Tensor, v_flat: torch.Tensor, rpb_flat: Optional[torch.Tensor],
        key_index: torch.Tensor, bias_index: Optional[torch.Tensor], scale: float, dropout_p: float = 0.0,
) -> torch.Tensor:
    """One tile of query rows.

    Args:
        q_rows: ``[B, heads, T, dim]`` queries of the tile (T = rows * W), compute dtype.
        k_flat, v_flat: ``[B, heads, H*W, dim]`` all keys and values, compute dtype.
        rpb_flat: ``[heads, (2kh-1)*(2kw-1)]`` or None.
        key_index, bias_index: ``[T, kk]`` flat indices for the tile.

    Returns:
        ``[B, heads, T, dim]`` in the compute dtype.
    """
    batch, heads, tokens, dim = q_rows.shape
    kk = key_index.shape[-1]
    flat = key_index.reshape(-1)
    keys = k_flat.index_select(2, flat).view(batch, heads, tokens, kk, dim)
    values = v_flat.index_select(2, flat).view(batch, heads, tokens, kk, dim)
    logits = torch.matmul(keys, (q_rows * scale).unsqueeze(-1)).squeeze(-1)  # [B, heads, T, kk]
    if rpb_flat is not None:
        logits = logits + rpb_flat.index_select(1, bias_index.reshape(-1)).view(1, heads, tokens, kk)
    attn = torch.softmax(logits, dim=-1)
    if dropout_p > 0:
        attn = torch.nn.functional.dropout(attn, p=dropout_p, training=True)
    return torch.matmul(attn.unsqueeze(-2), values).squeeze(-2)


def na2d_reference(
        q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernel_size: Tuple[int, int], dilation: Tuple[int, int],
        rpb: Optional[torch.Tensor], scale: float, tile_elements: int = DEFAULT_TILE_ELEMENTS, dropout_p: float = 0.0,
) -> torch.Tensor:
    """2-D neighborhood attention in PyTorch. Arguments are already validated by ``visionattn.ops.na2d``.

    Args:
        q, k, v: ``[B, H, W, heads, dim]``.
        kernel_size, dilation: ``(kh, kw)``, ``(dy, dx)``.
        rpb: ``[heads, 2kh-1, 2kw-1]`` or None.
        scale: multiplier of ``q . k``.
        tile_elements: bound on the gathered key tile's element count (memory knob).
        dropout_p: dropout probability on the attention weights (0 disables it).

    Returns:
        ``[B, H, W, heads, dim]`` in the dtype of ``q``.
    """
    batch, height, width, heads, dim = q.shape
    kh, kw = kernel_size
    compute = _compute_dtype(q.dtype)
    key_index, bias_index = _flat_tables(height, width, (kh, kw), tuple(dilation))
    key_index = key_index.to(q.device)
    bias_index = bias_index.to(q.device)

    def to_heads_first(t: torch.Tensor) -> torch.Tensor:
        return t.to(compute).permute(0, 3, 1, 2, 4).reshape(batch, heads, height * width, dim)

    q_flat, k_flat, v_flat = to_heads_first(q), to_heads_first(k), to_heads_first(v)
    rpb_flat = rpb.to(compute).reshape(heads, -1) if rpb is not None else None

    per_row = max(1, batch * heads * width * kh * kw * dim)
    rows = max(1, min(height, tile_elements // per_row))
    use_checkpoint = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (q, k, v, rpb)
    ) and rows < height
    outputs = []
    for row0 in range(0, height, rows):
        row1 = min(height, row0 + rows)
        t0, t1 = row0 * width, row1 * width
        args = (
            q_flat[:, :, t0:t1], k_flat, v_flat, rpb_flat,
            key_index[row0:row1].reshape(-1, kh * kw), bias_index[row0:row1].reshape(-1, kh * kw), scale, dropout_p,
        )
        if use_checkpoint:
            outputs.append(checkpoint(_attend_rows, *args, use_reentrant=False))
        else:
            outputs.append(_attend_rows(*args))
    out = torch.cat(outputs, dim=2) if len(outputs) > 1 else outputs[0]
    return out.view(batch, heads, height, width, dim).permute(0, 2, 3, 1, 4).to(q.dtype)
