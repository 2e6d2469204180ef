"""2-D (dilated) neighborhood attention module, with the parameter layout of NATTEN 0.14 / the NAT repo."""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import register_notrace_function, trunc_normal_

from ..ops._dispatch import triton_available
from ..ops.neighborhood import TRITON_MAX_DIM, na2d

__all__ = ["NeighborhoodAttention2d"]


def _pair(value: Union[int, Sequence[int]], name: str) -> Tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return value, value
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return int(value[0]), int(value[1])
    raise TypeError(f"NeighborhoodAttention2d: {name} must be an int or a pair of ints, got {value!r}")


def na_check_and_pad(x: torch.Tensor, dim: int, min_h: int, min_w: int, pad_small: bool) -> torch.Tensor:
    """Check ``x`` is ``[B, H, W, dim]`` and, with ``pad_small``, zero-pad it bottom/right to at least
    ``min_h x min_w``. Shape logic, so a leaf for FX (``torch.fx.wrap`` and timm's notrace registry)."""
    if x.dim() != 4 or x.shape[-1] != dim:
        raise ValueError(f"NeighborhoodAttention2d: expected input [B, H, W, {dim}], got {list(x.shape)}")
    pad_b = max(0, min_h - x.shape[1]) if pad_small else 0
    pad_r = max(0, min_w - x.shape[2]) if pad_small else 0
    if pad_b > 0 or pad_r > 0:
        x = F.pad(x, [0, 0, 0, pad_r, 0, pad_b])
    return x


def na_attend(
        qkv: torch.Tensor, rpb: Optional[torch.Tensor], kernel_size: List[int], dilation: List[int], scale: float,
        dropout_p: float, triton_max_dim: int,
) -> torch.Tensor:
    """``qkv`` ``[B, H, W, 3, heads, dim]`` -> ``[B, H, W, heads * dim]`` through ``na2d``.

    Eager and FX call ``visionattn.ops.na2d`` (checks, backend choice, dropout); TorchScript calls the
    ``visionattn::na2d`` operator with the backend resolved here (Triton on CUDA for fp16/bf16/fp32 and head dims
    up to ``triton_max_dim``, the reference otherwise; ``VISIONATTN_BACKEND`` is not read in TorchScript).
    """
    batch, height, width = qkv.shape[0], qkv.shape[1], qkv.shape[2]
    q, k, v = qkv.unbind(3)
    if torch.jit.is_scripting():
        if dropout_p > 0.0:
            raise RuntimeError("NeighborhoodAttention2d: attention dropout is not available in TorchScript; "
                               "call eval() (or build with attn_drop=0) before scripting")
        backend = "reference"
        if q.is_cuda and q.dtype != torch.float64 and q.shape[-1] <= triton_max_dim:
            backend = "triton"
        out = torch.ops.visionattn.na2d(q, k, v, rpb, kernel_size, dilation, scale, backend)
    else:
        out = na2d(q, k, v, kernel_size, dilation, rpb=rpb, scale=scale, dropout_p=dropout_p)
    return out.reshape(batch, height, width, -1)


torch.fx.wrap("na_check_and_pad")
torch.fx.wrap("na_attend")
register_notrace_function(na_check_and_pad)
register_notrace_function(na_attend)


class NeighborhoodAttention2d(nn.Module):
    """Neighborhood attention over a ``[B, H, W, C]`` map: qkv projection, ``na2d``, output projection.

    Parameter names (``qkv``, ``rpb``, ``proj``) match the official NAT / DiNAT checkpoints, so their
    ``attn.*`` entries load unchanged. With ``pad_small=True`` a map smaller than ``kernel_size * dilation``
    is zero-padded bottom/right before the qkv projection and cropped after, as NATTEN 0.14's module did
    (DiNAT detection relies on it: the padded tokens take part as keys with qkv = bias).

    TorchScript-scriptable, FX-traceable (shape logic and the op call are FX leaves) and built on any
    ``device`` / ``dtype`` (timm's convention; ``meta`` works).
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
            device=None,
            dtype=None,
    ) -> None:
        super().__init__()
        dd = dict(device=device, dtype=dtype)
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
        self.attn_drop = float(attn_drop)
        # head dims the Triton kernels take here (0: no Triton); read by the TorchScript path of na_attend
        self._triton_max_dim = TRITON_MAX_DIM if triton_available() else 0
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias, **dd)
        kh, kw = self.kernel_size
        if rpb:
            self.rpb = nn.Parameter(torch.zeros(num_heads, 2 * kh - 1, 2 * kw - 1, **dd))
            trunc_normal_(self.rpb, std=0.02, mean=0.0, a=-2.0, b=2.0)
        else:
            self.register_parameter("rpb", None)
        self.proj = nn.Linear(dim, dim, **dd)
        self.proj_drop = nn.Dropout(proj_drop)

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, num_heads={self.num_heads}, kernel_size={self.kernel_size}, dilation={self.dilation}, "
            f"rpb={self.rpb is not None}, pad_small={self.pad_small}"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``[B, H, W, C]`` -> ``[B, H, W, C]``."""
        height, width = x.shape[1], x.shape[2]
        kernel_size = [self.kernel_size[0], self.kernel_size[1]]
        dilation = [self.dilation[0], self.dilation[1]]
        x = na_check_and_pad(x, self.dim, kernel_size[0] * dilation[0], kernel_size[1] * dilation[1], self.pad_small)
        batch, padded_h, padded_w = x.shape[0], x.shape[1], x.shape[2]
        qkv = self.qkv(x).reshape(batch, padded_h, padded_w, 3, self.num_heads, self.head_dim)
        dropout_p = self.attn_drop if self.training else 0.0
        x = na_attend(qkv, self.rpb, kernel_size, dilation, self.scale, dropout_p, self._triton_max_dim)
        x = x[:, :height, :width]  # a no-op view unless the map was padded
        return self.proj_drop(self.proj(x))
