"""2-D (dilated) neighborhood attention module, with the parameter layout of NATTEN 0.14 / the NAT repo."""
from __future__ import annotations

from typing import Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import trunc_normal_

from ..ops.neighborhood import na2d

__all__ = ["NeighborhoodAttention2d"]


def _pair(value: Union[int, Sequence[int]], name: str) -> Tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return value, value
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return int(value[0]), int(value[1])
    raise TypeError(f"NeighborhoodAttention2d: {name} must be an int or a pair of ints, got {value!r}")


class NeighborhoodAttention2d(nn.Module):
    """Neighborhood attention over a ``[B, H, W, C]`` map: qkv projection, ``na2d``, output projection.

    Parameter names (``qkv``, ``rpb``, ``proj``) match the official NAT / DiNAT checkpoints, so their
    ``attn.*`` entries load unchanged. With ``pad_small=True`` a map smaller than ``kernel_size * dilation``
    is zero-padded bottom/right before the qkv projection and cropped after, as NATTEN 0.14's module did
    (DiNAT detection relies on it: the padded tokens take part as keys with qkv = bias).
    """

    def __init__(
            self,
            dim: int,
            num_heads: int,
            kernel_size: Union[int, Sequence[int]],
            dilation: Union[int, Sequence[int]] = 1,
            rpb: bool = True,
            qkv_bias: bool = True,
            attn_drop: float = 0.0,
            proj_drop: float = 0.0,
            pad_small: bool = True,
    ) -> None:
        super().__init__()
        if num_heads < 1 or dim % num_heads != 0:
            raise ValueError(
                f"NeighborhoodAttention2d: dim ({dim}) must be a positive multiple of num_heads ({num_heads})"
            )
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.dilation = _pair(dilation, "dilation")
        if any(k < 1 or k % 2 == 0 for k in self.kernel_size):
            raise ValueError(f"NeighborhoodAttention2d: kernel_size must be odd and positive, got {self.kernel_size}")
        if any(d < 1 for d in self.dilation):
            raise ValueError(f"NeighborhoodAttention2d: dilation must be positive, got {self.dilation}")
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.pad_small = pad_small
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        kh, kw = self.kernel_size
        if rpb:
            self.rpb = nn.Parameter(torch.zeros(num_heads, 2 * kh - 1, 2 * kw - 1))
            trunc_normal_(self.rpb, std=0.02, mean=0.0, a=-2.0, b=2.0)
        else:
            self.register_parameter("rpb", None)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, num_heads={self.num_heads}, kernel_size={self.kernel_size}, dilation={self.dilation}, "
            f"rpb={self.rpb is not None}, pad_small={self.pad_small}"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``[B, H, W, C]`` -> ``[B, H, W, C]``."""
        if x.dim() != 4 or x.shape[-1] != self.dim:
            raise ValueError(f"NeighborhoodAttention2d: expected input [B, H, W, {self.dim}], got {tuple(x.shape)}")
        batch, height, width, _ = x.shape
        min_h = self.kernel_size[0] * self.dilation[0]
        min_w = self.kernel_size[1] * self.dilation[1]
        pad_b = max(0, min_h - height) if self.pad_small else 0
        pad_r = max(0, min_w - width) if self.pad_small else 0
        if pad_b or pad_r:
            x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        padded_h, padded_w = height + pad_b, width + pad_r
        qkv = self.qkv(x).reshape(batch, padded_h, padded_w, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.unbind(3)
        dropout_p = self.attn_drop if self.training else 0.0
        x = na2d(q, k, v, self.kernel_size, self.dilation, rpb=self.rpb, scale=self.scale, dropout_p=dropout_p)
        x = x.reshape(batch, padded_h, padded_w, self.dim)
        if pad_b or pad_r:
            x = x[:, :height, :width]
        return self.proj_drop(self.proj(x))
