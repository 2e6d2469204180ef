"""SG-Former: Self-guided Transformer with Evolving Token Reallocation, for any input size.

Paper: "SG-Former: Self-guided Transformer with Evolving Token Reallocation", Ren, Yang, Wang, Zhou, Liu, Zou,
ICCV 2023 (https://arxiv.org/abs/2308.12216). Official code and weights: https://github.com/OliverRensu/SG-Former
(no licence file; weights on Google Drive). This file is an independent implementation of the same architecture; it
loads the official checkpoints (plain, or the ``state_dict`` / ``state_dict_ema`` of timm's CheckpointSaver, EMA
preferred as the official evaluation does) through ``checkpoint_filter_fn``.

Architecture (as the official classification model): a conv stem (three 3x3 convs with GroupNorm, stride 4) with
LayerNorm and a learned position embedding; four stages of pre-norm blocks with a locally-enhanced position
encoding (LePE) and a DWConv MLP, each stage ending with its own LayerNorm; stages 2-4 start with a conv
``PatchMerging`` downsampler. In stages 1-3 blocks come in pairs:

* a *hybrid-scale* block: half the heads attend globally to the map reduced by a stride-``sr`` conv, the other half
  locally inside 7x7 windows; their attention, averaged over heads and queries, is the *significance map*;
* a *significance-guided* block: tokens are sorted by significance (row-major and column-major, one for each half
  of the heads) and runs of consecutive sorted tokens are merged by learned ``Linear(group -> 1)`` layers into the
  keys and values: the least significant tokens coarsely, the most significant finely.

Stage 4 is plain global attention.

What differs from the official code (none of it changes the output at 224x224, where the official code runs):

* **Any input size.** The position embedding (learned on the 56x56 grid of a 224 input) is bicubically resized to
  the stem's grid. For the windowed (local) half, maps are zero-padded at the bottom / right to a multiple of the
  window and cropped back; padded keys are masked out of the softmax and padded queries are left out of the local
  significance. For the global half, maps are zero-padded to a multiple of ``sr`` before the reducing conv, and
  each token's global significance is the value of the reduced cell that contains it (the official nearest
  upsampling, exactly, at 224).
* **Reallocation rule for any token count N.** The sorted tokens are split at the official boundaries: at
  ``N // 4`` and ``N // 4 * 3`` (three merges, stages with ``sr`` 8 and 4) or at ``N // 2`` (two merges, ``sr``
  2). The group size ``g`` of each merge is fixed by its weights (196 / 56 / 28, 49 / 14 / 7, 2 / 1). A part of
  ``n`` tokens gives ``ceil(n / g)`` merged tokens; when ``g`` does not divide ``n`` the last group is completed by
  repeating the part's last (most significant) token. An empty part gives no tokens. At 224 every group is full, so
  this is the official computation; for other sizes the number of keys scales with N as in the official code.
* **Deterministic sort.** Tokens are ordered by a stable sort, so equal significances keep token order (row-major
  index for the first half of the heads, column-major index for the second). The official ``torch.sort`` orders
  ties arbitrarily, which makes even its float32 output depend on the rest of the batch; without ties (float64)
  the two agree.
* Attention without a significance map (guided and stage-4 blocks) runs through ``F.scaled_dot_product_attention``.
"""
import logging
import math
import re
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import ClassifierHead, DropPath, trunc_normal_
from timm.models import generate_default_cfgs, register_model, register_notrace_function
from timm.models._manipulate import checkpoint

from ._contract import StagedBackbone, create_backbone, factory_kwargs
from ._helpers import check_converted, load_checkpoint_file, unwrap_state_dict

__all__ = ["SGFormer", "checkpoint_filter_fn", "reallocate_tokens"]

_logger = logging.getLogger(__name__)

# official group sizes of the learned merges, by the stage's spatial-reduction ratio
MERGE_GROUPS = {8: (196, 56, 28), 4: (49, 14, 7), 2: (2, 1)}


def sincos_pos_embed_2d(dim: int, grid: Tuple[int, int]) -> torch.Tensor:
    """MAE's fixed 2-D sin-cos table ``[grid_h * grid_w, dim]`` (the official initialisation of ``pos_embed``)."""
    gh, gw = grid
    ys, xs = torch.meshgrid(torch.arange(gh, dtype=torch.float64), torch.arange(gw, dtype=torch.float64),
                            indexing="ij")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))

    def one_d(pos: torch.Tensor) -> torch.Tensor:
        out = pos.reshape(-1, 1) * omega[None]
        return torch.cat([out.sin(), out.cos()], dim=1)

    # MAE's meshgrid(w, h) puts the column coordinate first
    return torch.cat([one_d(xs), one_d(ys)], dim=1).float()


@register_notrace_function
def resize_pos_embed(pos_embed: torch.Tensor, grid: List[int], size: List[int]) -> torch.Tensor:
    """``[1, gh * gw, C]`` learned on ``grid`` -> ``[1, H, W, C]``, bicubically resized when ``size`` differs.

    A shape test, so FX keeps it a leaf (registered no-trace; its name must not start with ``_`` for that).
    """
    c = pos_embed.shape[-1]
    pos = pos_embed.reshape(1, grid[0], grid[1], c)
    if grid[0] != size[0] or grid[1] != size[1]:
        pos = F.interpolate(pos.permute(0, 3, 1, 2), size=[size[0], size[1]], mode="bicubic", align_corners=False)
        pos = pos.permute(0, 2, 3, 1)
    return pos


@register_notrace_function
def reallocate_tokens(
        x: torch.Tensor, significance: torch.Tensor, weights: List[torch.Tensor], biases: List[torch.Tensor],
) -> torch.Tensor:
    """Significance-guided token merging: ``x [B, N, C]``, ``significance [B, N]`` (same flattening) -> ``[B, M, C]``.

    Tokens are stably sorted by ascending significance; the sorted sequence is split at ``N // 4`` and
    ``N // 4 * 3`` (three merges) or ``N // 2`` (two); merge k turns each run of ``g_k`` consecutive tokens of its
    part into one with ``Linear(g_k -> 1)`` (``weights[k]`` ``[1, g_k]``, ``biases[k]`` ``[1]``) applied along the
    token axis, shared by the channels. A part whose size ``g_k`` does not divide is completed by repeating its last
    token (the module docstring gives the rule); ``M = sum_k ceil(n_k / g_k)``.
    """
    b, n, c = x.shape
    order = torch.sort(significance, dim=1, stable=True)[1]  # [B, N]; ties keep token order
    if len(weights) == 3:
        bounds = [0, n // 4, n // 4 * 3, n]
    elif len(weights) == 2:
        bounds = [0, n // 2, n]
    else:
        raise ValueError(f"reallocate_tokens takes 2 or 3 merges, got {len(weights)}")
    merged: List[torch.Tensor] = []
    for k in range(len(weights)):
        start, end = bounds[k], bounds[k + 1]
        group = weights[k].shape[-1]
        count = (end - start + group - 1) // group
        if count == 0:
            continue
        pos = torch.arange(count * group, device=x.device).clamp(max=end - start - 1) + start
        index = order[:, pos]  # [B, count * group]
        tokens = torch.gather(x, 1, index.unsqueeze(-1).expand(b, count * group, c))
        tokens = tokens.transpose(1, 2).reshape(b, c, count, group)
        merged.append(F.linear(tokens, weights[k], biases[k]).squeeze(-1))  # [B, C, count]
    return torch.cat(merged, dim=-1).transpose(1, 2)


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """``[B, H, W, C]`` (H, W multiples of the window) -> ``[B, nW, window * window, C]``, row-major windows."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // window, window, w // window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // window) * (w // window), window * window, c)


def window_reverse(windows: torch.Tensor, window: int, h: int, w: int) -> torch.Tensor:
    """``[B, nW, window * window, C]`` -> ``[B, H, W, C]``; inverse of ``window_partition``."""
    b, _, _, c = windows.shape
    x = windows.reshape(b, h // window, w // window, window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, w, c)


class ConvNorm(nn.Module):
    """Bias-free conv + ``GroupNorm(1, C)`` (the official ``Conv2d_BN``). ``[B, C_in, H, W]`` -> ``[B, C, H', W']``."""

    def __init__(self, dim_in: int, dim: int, kernel_size: int = 1, stride: int = 1, groups: int = 1,
                 device=None, dtype=None):
        dd = factory_kwargs(device, dtype)
        super().__init__()
        self.conv = nn.Conv2d(dim_in, dim, kernel_size, stride, kernel_size // 2, groups=groups, bias=False, **dd)
        self.norm = nn.GroupNorm(1, dim, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


class Stem(nn.Module):
    """3x3 s2 -> GELU -> 3x3 -> GELU -> 3x3 s2 (each ConvNorm), then LayerNorm. ``[B, 3, H, W]`` -> ``[B, h, w, C]``."""

    def __init__(self, in_chans: int, dim: int, device=None, dtype=None):
        dd = factory_kwargs(device, dtype)
        super().__init__()
        self.conv1 = ConvNorm(in_chans, dim, 3, 2, **dd)
        self.conv2 = ConvNorm(dim, dim, 3, 1, **dd)
        self.conv3 = ConvNorm(dim, dim, 3, 2, **dd)
        self.act = nn.GELU()
        self.norm = nn.LayerNorm(dim, **dd)  # default eps 1e-5, as the official stem

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3(self.act(self.conv2(self.act(self.conv1(x)))))
        return self.norm(x.permute(0, 2, 3, 1))


class PatchMerging(nn.Module):
    """1x1 -> GELU -> depthwise 3x3 s2 -> GELU -> 1x1 (each ConvNorm). ``[B, H, W, C_in]`` -> ``[B, h, w, C]``."""

    def __init__(self, dim_in: int, dim: int, device=None, dtype=None):
        dd = factory_kwargs(device, dtype)
        super().__init__()
        self.conv1 = ConvNorm(dim_in, dim, 1, **dd)
        self.conv2 = ConvNorm(dim, dim, 3, 2, groups=dim, **dd)
        self.conv3 = ConvNorm(dim, dim, 1, **dd)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3(self.act(self.conv2(self.act(self.conv1(x.permute(0, 3, 1, 2))))))
        return x.permute(0, 2, 3, 1)


class Lepe(nn.Module):
    """Locally-enhanced position encoding ``dwconv3x3(linear(x))``. ``[B, H, W, C]`` -> ``[B, H, W, C]``."""

    def __init__(self, dim: int, device=None, dtype=None):
        dd = factory_kwargs(device, dtype)
        super().__init__()
        self.lepe_linear = nn.Linear(dim, dim, **dd)
        self.lepe_conv = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lepe_conv(self.lepe_linear(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class HybridAttention(nn.Module):
    """Hybrid-scale attention: global heads over the sr-reduced map, local heads in windows; makes the significance.

    ``[B, H, W, C]`` -> (``[B, H, W, C]``, significance ``[B, H, W]``).
    """

    def __init__(self, dim: int, num_heads: int, sr_ratio: int, window_size: int = 7, qkv_bias: bool = True,
                 attn_drop: float = 0., proj_drop: float = 0., device=None, dtype=None):
        dd = factory_kwargs(device, dtype)
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.sr_ratio = sr_ratio
        self.window_size = window_size
        self.sr = nn.Conv2d(dim, dim, sr_ratio, sr_ratio, **dd)
        self.norm = nn.LayerNorm(dim, **dd)  # default eps 1e-5, as the official
        self.act = nn.GELU()
        self.q1 = nn.Linear(dim, dim // 2, bias=qkv_bias, **dd)
        self.kv1 = nn.Linear(dim, dim, bias=qkv_bias, **dd)
        self.q2 = nn.Linear(dim, dim // 2, bias=qkv_bias, **dd)
        self.kv2 = nn.Linear(dim, dim, bias=qkv_bias, **dd)
        self.lepe = Lepe(dim, **dd)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim, **dd)
        self.proj_drop = nn.Dropout(proj_drop)

    def _global(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        b, h, w, c = x.shape
        heads, sr = self.num_heads // 2, self.sr_ratio
        q = self.q1(x).reshape(b, h * w, heads, self.head_dim).transpose(1, 2)
        pad_h, pad_w = (sr - h % sr) % sr, (sr - w % sr) % sr
        reduced = self.sr(F.pad(x, (0, 0, 0, pad_w, 0, pad_h)).permute(0, 3, 1, 2))  # [B, C, h', w']
        hr, wr = reduced.shape[-2], reduced.shape[-1]
        reduced = self.act(self.norm(reduced.flatten(2).transpose(1, 2)))
        kv = self.kv1(reduced).reshape(b, hr * wr, 2, heads, self.head_dim).permute(2, 0, 3, 1, 4)
        attn = ((q @ kv[0].transpose(-2, -1)) * self.scale).softmax(dim=-1)  # [B, heads, N, h' * w']
        out = (self.attn_drop(attn) @ kv[1]).transpose(1, 2).reshape(b, h, w, c // 2)
        # each token takes the significance of the reduced cell that contains it
        sig = attn.detach().mean(1).mean(1).reshape(b, hr, 1, wr, 1).expand(b, hr, sr, wr, sr)
        sig = sig.reshape(b, hr * sr, wr * sr)[:, :h, :w]
        return out, sig

    def _local(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        b, h, w, c = x.shape
        heads, ws = self.num_heads // 2, self.window_size
        pad_h, pad_w = (ws - h % ws) % ws, (ws - w % ws) % ws
        hp, wp = h + pad_h, w + pad_w
        qkv = torch.cat([self.q2(x), self.kv2(x)], dim=-1)  # [B, H, W, 3C/2]: q | k | v, heads inside each
        qkv = window_partition(F.pad(qkv, (0, 0, 0, pad_w, 0, pad_h)), ws)  # [B, nW, L, 3C/2]
        nw, length = qkv.shape[1], qkv.shape[2]
        qkv = qkv.reshape(b * nw, length, 3, heads, self.head_dim).permute(2, 0, 3, 1, 4)
        valid = window_partition(F.pad(x.new_ones(1, h, w, 1), (0, 0, 0, pad_w, 0, pad_h)), ws)[0, :, :, 0]  # [nW, L]
        attn = (qkv[0] @ qkv[1].transpose(-2, -1)) * self.scale  # [B * nW, heads, L, L]
        attn = attn.reshape(b, nw, heads, length, length).masked_fill(valid[None, :, None, None, :] == 0, -math.inf)
        attn = attn.softmax(dim=-1)
        out = self.attn_drop(attn).reshape(b * nw, heads, length, length) @ qkv[2]  # [B * nW, heads, L, hd]
        out = out.transpose(1, 2).reshape(b, nw, length, c // 2)
        out = window_reverse(out, ws, hp, wp)[:, :h, :w]
        # per-key attention averaged over heads and over the window's real queries
        weight = valid / valid.sum(dim=1, keepdim=True)  # [nW, L]
        sig = (attn.detach().mean(2) * weight[None, :, :, None]).sum(2)  # [B, nW, L]
        sig = window_reverse(sig.unsqueeze(-1), ws, hp, wp)[:, :h, :w, 0]
        return out, sig

    def forward(self, x: torch.Tensor, significance: Optional[torch.Tensor] = None
                ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        out_global, sig_global = self._global(x)
        out_local, sig_local = self._local(x)
        out = self.proj(torch.cat([out_global, out_local], dim=-1) + self.lepe(x))
        return self.proj_drop(out), sig_local + sig_global


class GuidedAttention(nn.Module):
    """Significance-guided attention: all N queries; keys / values from the merged sorted tokens.

    ``[B, H, W, C]`` and significance ``[B, H, W]`` -> (``[B, H, W, C]``, ``None``). The first half of the heads
    takes its keys from the row-major ordering, the second half from the column-major one.
    """

    def __init__(self, dim: int, num_heads: int, merge_groups: Sequence[int], qkv_bias: bool = True,
                 attn_drop: float = 0., proj_drop: float = 0., device=None, dtype=None):
        dd = factory_kwargs(device, dtype)
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias, **dd)
        self.kv1 = nn.Linear(dim, dim, bias=qkv_bias, **dd)
        self.kv2 = nn.Linear(dim, dim, bias=qkv_bias, **dd)
        self.merge = nn.ModuleList([nn.Linear(g, 1, **dd) for g in merge_groups])
        self.lepe = Lepe(dim, **dd)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim, **dd)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, significance: Optional[torch.Tensor] = None
                ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        if significance is None:
            raise ValueError("GuidedAttention needs the significance map of the hybrid block before it")
        b, h, w, c = x.shape
        n, heads = h * w, self.num_heads // 2
        weights = [m.weight for m in self.merge]
        biases = [m.bias for m in self.merge]
        seq_row = reallocate_tokens(x.reshape(b, n, c), significance.reshape(b, n), weights, biases)
        seq_col = reallocate_tokens(x.transpose(1, 2).reshape(b, n, c), significance.transpose(1, 2).reshape(b, n),
                                    weights, biases)
        kv1 = self.kv1(seq_row).reshape(b, -1, 2, heads, self.head_dim).permute(2, 0, 3, 1, 4)
        kv2 = self.kv2(seq_col).reshape(b, -1, 2, heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q = self.q(x).reshape(b, n, self.num_heads, self.head_dim).transpose(1, 2)
        k = torch.cat([kv1[0], kv2[0]], dim=1)
        v = torch.cat([kv1[1], kv2[1]], dim=1)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.)
        out = out.transpose(1, 2).reshape(b, h, w, c)
        return self.proj_drop(self.proj(out + self.lepe(x))), None


class GlobalAttention(nn.Module):
    """Plain multi-head self-attention with LePE (stage 4). ``[B, H, W, C]`` -> (``[B, H, W, C]``, ``None``)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, attn_drop: float = 0.,
                 proj_drop: float = 0., device=None, dtype=None):
        dd = factory_kwargs(device, dtype)
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias, **dd)
        self.kv = nn.Linear(dim, dim * 2, bias=qkv_bias, **dd)
        self.lepe = Lepe(dim, **dd)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim, **dd)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, significance: Optional[torch.Tensor] = None
                ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        b, h, w, c = x.shape
        n = h * w
        q = self.q(x).reshape(b, n, self.num_heads, self.head_dim).transpose(1, 2)
        kv = self.kv(x).reshape(b, n, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, kv[0], kv[1], dropout_p=self.attn_drop if self.training else 0.)
        out = out.transpose(1, 2).reshape(b, h, w, c)
        return self.proj_drop(self.proj(out + self.lepe(x))), None


class ConvMlp(nn.Module):
    """``fc2(GELU(h + dwconv3x3(h)))`` with ``h = fc1(x)``. ``[B, H, W, C]`` -> ``[B, H, W, C]``."""

    def __init__(self, dim: int, hidden: int, drop: float = 0., device=None, dtype=None):
        dd = factory_kwargs(device, dtype)
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, **dd)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden, **dd)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim, **dd)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc1(x)
        x = self.act(x + self.dwconv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))
        return self.drop(self.fc2(self.drop(x)))


class SGFormerBlock(nn.Module):
    """Pre-norm block ``x + attn(norm1(x))``, ``x + mlp(norm2(x))`` (no layer scale).

    ``kind``: ``"hybrid"`` (makes the significance map), ``"guided"`` (consumes it) or ``"global"``.
    ``[B, H, W, C]`` and the significance (or None) in; the block output and the next significance out.
    """

    def __init__(self, dim: int, num_heads: int, kind: str, sr_ratio: int = 1, merge_groups: Sequence[int] = (),
                 window_size: int = 7, mlp_ratio: float = 4., qkv_bias: bool = True, proj_drop: float = 0.,
                 attn_drop: float = 0., drop_path: float = 0., norm_eps: float = 1e-6, device=None, dtype=None):
        dd = factory_kwargs(device, dtype)
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps, **dd)
        common = dict(qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=proj_drop, **dd)
        if kind == "hybrid":
            self.attn = HybridAttention(dim, num_heads, sr_ratio, window_size, **common)
        elif kind == "guided":
            self.attn = GuidedAttention(dim, num_heads, merge_groups, **common)
        elif kind == "global":
            self.attn = GlobalAttention(dim, num_heads, **common)
        else:
            raise ValueError(f"kind must be 'hybrid', 'guided' or 'global', got {kind!r}")
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps, **dd)
        self.mlp = ConvMlp(dim, int(dim * mlp_ratio), drop=proj_drop, **dd)

    def forward(self, x: torch.Tensor, significance: Optional[torch.Tensor] = None
                ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        out, significance = self.attn(self.norm1(x), significance)
        x = x + self.drop_path(out)
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x, significance


class SGFormerStage(nn.Module):
    """Optional ``PatchMerging``, the blocks (the significance map passed along a pair), the stage LayerNorm.

    ``[B, H, W, C_in]`` -> ``[B, H', W', C]`` (H' = ceil(H / 2) when downsampling), normed.
    """

    def __init__(self, dim_in: int, dim: int, depth: int, num_heads: int, sr_ratio: int,
                 merge_groups: Optional[Sequence[int]], downsample: bool, window_size: int = 7,
                 mlp_ratio: float = 4., qkv_bias: bool = True, proj_drop: float = 0., attn_drop: float = 0.,
                 drop_path: Sequence[float] = (), norm_eps: float = 1e-6, device=None, dtype=None):
        dd = factory_kwargs(device, dtype)
        super().__init__()
        self.downsample = PatchMerging(dim_in, dim, **dd) if downsample else nn.Identity()
        blocks = []
        for j in range(depth):
            if sr_ratio == 1:
                kind = "global"
            else:
                kind = "guided" if j % 2 == 1 else "hybrid"
            blocks.append(SGFormerBlock(
                dim, num_heads, kind, sr_ratio=sr_ratio, merge_groups=merge_groups or (), window_size=window_size,
                mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, proj_drop=proj_drop, attn_drop=attn_drop,
                drop_path=drop_path[j] if len(drop_path) else 0., norm_eps=norm_eps, **dd))
        self.blocks = nn.ModuleList(blocks)
        self.norm = nn.LayerNorm(dim, eps=norm_eps, **dd)
        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        significance: Optional[torch.Tensor] = None
        for block in self.blocks:
            if self.grad_checkpointing and not torch.jit.is_scripting():
                x, significance = checkpoint(block, x, significance)
            else:
                x, significance = block(x, significance)
        return self.norm(x)


class SGFormer(StagedBackbone):
    """SG-Former for any input size.

    ``forward``: ``[B, in_chans, H, W]`` -> ``[B, num_classes]``; stage outputs and ``forward_features`` are
    normed maps ``[B, h, w, C]`` (``output_fmt = "NHWC"``) at strides 4 / 8 / 16 / 32 (ceil at every stride-2 step).
    """

    stem_pattern = r"^stem|^pos_embed"
    stage_extra_pattern = r"downsample|norm"
    output_fmt = "NHWC"

    def __init__(
            self,
            in_chans: int = 3,
            num_classes: int = 1000,
            global_pool: str = "avg",
            img_size: int = 224,
            embed_dims: Sequence[int] = (64, 128, 256, 512),
            depths: Sequence[int] = (2, 4, 16, 1),
            num_heads: Sequence[int] = (2, 4, 8, 16),
            sr_ratios: Sequence[int] = (8, 4, 2, 1),
            merge_groups: Optional[Sequence[Optional[Sequence[int]]]] = None,
            window_size: int = 7,
            mlp_ratio: float = 4.,
            qkv_bias: bool = True,
            drop_rate: float = 0.,
            proj_drop_rate: float = 0.,
            attn_drop_rate: float = 0.,
            drop_path_rate: float = 0.,
            norm_eps: float = 1e-6,
            device=None,
            dtype=None,
    ):
        """
        Args:
            img_size: the size the position embedding is learned for (its grid is img_size // 4); other input sizes
                resize it bicubically.
            sr_ratios: per stage; 1 makes a stage of plain global attention, otherwise hybrid / guided pairs.
            merge_groups: per stage, the group sizes of the guided blocks' merges (2 or 3; None for sr 1); default
                the official ones for sr 8 / 4 / 2 (196, 56, 28 / 49, 14, 7 / 2, 1).
            window_size: the local window of the hybrid blocks (official 7).
        """
        dd = factory_kwargs(device, dtype)
        super().__init__()
        if not isinstance(in_chans, int) or in_chans < 1:
            raise ValueError(f"in_chans must be a positive int, got {in_chans!r}")
        if not isinstance(img_size, int) or img_size < 4:
            raise ValueError(f"img_size must be an int >= 4, got {img_size!r}")
        if not isinstance(window_size, int) or window_size < 1:
            raise ValueError(f"window_size must be a positive int, got {window_size!r}")
        depths = tuple(int(d) for d in depths)
        num_stages = len(depths)
        if num_stages < 1 or any(d < 1 for d in depths):
            raise ValueError(f"depths must be a non-empty sequence of positive ints, got {depths!r}")
        for name, values in (("embed_dims", embed_dims), ("num_heads", num_heads), ("sr_ratios", sr_ratios)):
            if len(values) != num_stages:
                raise ValueError(f"{name} needs one value per stage ({num_stages} stages, from depths), got {values!r}")
        if merge_groups is None:
            merge_groups = [MERGE_GROUPS.get(int(sr)) if sr > 1 else None for sr in sr_ratios]
        if len(merge_groups) != num_stages:
            raise ValueError(f"merge_groups needs one entry per stage ({num_stages}), got {merge_groups!r}")
        for i, (dim, heads, sr, groups) in enumerate(zip(embed_dims, num_heads, sr_ratios, merge_groups)):
            if heads < 1 or dim % heads:
                raise ValueError(f"num_heads[{i}]={heads} must divide embed_dims[{i}]={dim}")
            if sr > 1 and heads % 2:
                raise ValueError(f"num_heads[{i}]={heads} must be even: stages with sr_ratio > 1 split the heads")
            if sr > 1 and (groups is None or len(groups) not in (2, 3) or any(g < 1 for g in groups)):
                raise ValueError(
                    f"merge_groups[{i}] must be 2 or 3 positive group sizes for sr_ratios[{i}]={sr}, got {groups!r} "
                    f"(defaults exist for sr 8, 4 and 2)")

        self.num_classes = num_classes
        self.in_chans = in_chans
        self.global_pool = global_pool
        self.drop_rate = drop_rate
        self.pos_grid = [img_size // 4, img_size // 4]
        self.num_features = self.head_hidden_size = embed_dims[-1]

        self.stem = Stem(in_chans, embed_dims[0], **dd)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.pos_grid[0] * self.pos_grid[1], embed_dims[0], **dd))
        # drop path rises linearly over all blocks, as in the official code
        dpr = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()
        stages, self.feature_info = [], []
        for i in range(num_stages):
            stages.append(SGFormerStage(
                embed_dims[max(i - 1, 0)], embed_dims[i], depths[i], num_heads[i], int(sr_ratios[i]),
                merge_groups[i], downsample=i > 0, window_size=window_size, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                proj_drop=proj_drop_rate, attn_drop=attn_drop_rate,
                drop_path=dpr[sum(depths[:i]):sum(depths[:i + 1])], norm_eps=norm_eps, **dd))
            self.feature_info.append(dict(num_chs=embed_dims[i], reduction=2 ** (i + 2), module=f"stages.{i}"))
        self.stages = nn.Sequential(*stages)
        self.norm = nn.Identity()  # every stage ends with its own norm
        self.head = ClassifierHead(self.num_features, num_classes, pool_type=global_pool, drop_rate=drop_rate,
                                   input_fmt="NHWC", **dd)
        self.init_weights()

    def init_weights(self) -> None:
        """The official initialisation: truncated-normal Linear weights, He-normal (fan-out) convs, sin-cos pos."""
        self.apply(self._init_module)
        with torch.no_grad():
            table = sincos_pos_embed_2d(self.pos_embed.shape[-1], (self.pos_grid[0], self.pos_grid[1]))
            self.pos_embed.copy_(table.unsqueeze(0).to(self.pos_embed.dtype))

    @staticmethod
    def _init_module(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            trunc_normal_(module.weight, std=.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Conv2d):
            fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
            nn.init.normal_(module.weight, 0, math.sqrt(2.0 / fan_out))
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return x + resize_pos_embed(self.pos_embed, self.pos_grid, [x.shape[1], x.shape[2]]).to(x.dtype)

    def load_pretrained(self, checkpoint_path: str) -> None:
        """Load an official (``.pth.tar`` from timm's CheckpointSaver, EMA preferred) or visionattn checkpoint.

        timm calls this for pretrained cfgs with ``custom_load``. A classifier of another size is left at its
        initialisation, as timm does when ``num_classes`` differs.
        """
        with open(checkpoint_path, "rb") as f:
            if f.read(64).lstrip().startswith(b"<"):
                raise ValueError(
                    f"{checkpoint_path} is a web page, not a checkpoint: the official SG-Former weights are in a "
                    f"Google Drive folder ({_DRIVE}); download the file and pass "
                    f"pretrained_cfg_overlay=dict(file=<path>)")
        state_dict = checkpoint_filter_fn(load_checkpoint_file(checkpoint_path), self)
        own = self.state_dict()
        head_keys = [k for k in state_dict if k.startswith("head.")]
        if any(k not in own or own[k].shape != state_dict[k].shape for k in head_keys) or not head_keys:
            for k in head_keys:
                state_dict.pop(k)
            missing, _ = self.load_state_dict(state_dict, strict=False)
            _logger.info("classifier not loaded from %s (%s)", checkpoint_path, ", ".join(missing) or "none in model")
        else:
            self.load_state_dict(state_dict, strict=True)


# -- checkpoint conversion ---------------------------------------------------------------------------------------

def _convert_official(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    out = {}
    for key, value in state_dict.items():
        new = key
        m = re.match(r"patch_embed1\.conv\.(\d)\.(c|bn)\.(.*)", key)
        if m:
            part = "conv" if m.group(2) == "c" else "norm"
            new = f"stem.conv{int(m.group(1)) // 2 + 1}.{part}.{m.group(3)}"
        elif key.startswith("patch_embed1.norm."):
            new = "stem.norm." + key[len("patch_embed1.norm."):]
        elif (m := re.match(r"patch_embed(\d)\.(conv\d)\.(c|bn)\.(.*)", key)):
            part = "conv" if m.group(3) == "c" else "norm"
            new = f"stages.{int(m.group(1)) - 1}.downsample.{m.group(2)}.{part}.{m.group(4)}"
        elif (m := re.match(r"block(\d)\.(\d+)\.(.*)", key)):
            rest = m.group(3)
            rest = re.sub(r"^attn\.f(\d)\.", lambda g: f"attn.merge.{int(g.group(1)) - 1}.", rest)
            rest = rest.replace("attn.lepe_", "attn.lepe.lepe_").replace("mlp.dwconv.dwconv.", "mlp.dwconv.")
            new = f"stages.{int(m.group(1)) - 1}.blocks.{m.group(2)}.{rest}"
        elif (m := re.match(r"norm(\d)\.(.*)", key)):
            new = f"stages.{int(m.group(1)) - 1}.norm.{m.group(2)}"
        elif key.startswith("head."):
            new = "head.fc." + key[len("head."):]
        out[new] = value
    return out


def checkpoint_filter_fn(state_dict: Mapping, model: SGFormer) -> Dict[str, torch.Tensor]:
    """Convert an official SG-Former checkpoint (or a visionattn one) to this model's keys.

    Accepts a plain state dict or a training checkpoint; of timm CheckpointSaver's ``state_dict`` and
    ``state_dict_ema`` the EMA weights are taken (the official evaluation uses them). A ``pos_embed`` of another
    grid is kept as is only if it matches the model's; otherwise it is resized bicubically. Raises ``ValueError``
    listing every mismatch that remains.
    """
    state_dict = unwrap_state_dict(state_dict, prefer_ema=True)
    if "patch_embed1.conv.0.c.weight" in state_dict:
        source, state_dict = "official SG-Former checkpoint", _convert_official(state_dict)
    elif "stem.conv1.conv.weight" in state_dict:
        source = "visionattn sgformer checkpoint"
    else:
        raise ValueError(
            "state_dict is not an SG-Former checkpoint: expected 'patch_embed1.conv.0.c.weight' (official) or "
            "'stem.conv1.conv.weight' (visionattn) among its keys")
    pos = state_dict.get("pos_embed")
    target = model.state_dict().get("pos_embed")
    if pos is not None and target is not None and pos.ndim == 3 and pos.shape != target.shape \
            and pos.shape[-1] == target.shape[-1] and math.isqrt(pos.shape[1]) ** 2 == pos.shape[1]:
        side = math.isqrt(pos.shape[1])
        resized = resize_pos_embed(pos.float(), [side, side], list(model.pos_grid))
        state_dict["pos_embed"] = resized.reshape(1, -1, pos.shape[-1]).to(pos.dtype)
        _logger.info("resized pos_embed from %dx%d to %s", side, side, model.pos_grid)
    check_converted(state_dict, model, source=source, classifier="head")
    return state_dict


# -- model creation ----------------------------------------------------------------------------------------------

def _create_sgformer(variant: str, pretrained: bool = False, **kwargs) -> SGFormer:
    return create_backbone(
        SGFormer, variant, pretrained, checkpoint_filter_fn, num_stages=len(kwargs.get("depths", (2, 4, 16, 1))),
        **kwargs)


_DRIVE = "https://drive.google.com/drive/folders/1ZJDEwxDffqqqzBC2SzhOkpWpGRweDsE4"


def _cfg(url: str = "", **kwargs) -> Dict:
    return {
        "url": url, "num_classes": 1000, "input_size": (3, 224, 224), "pool_size": (7, 7),
        "crop_pct": 0.875, "interpolation": "bicubic", "fixed_input_size": False,
        "mean": IMAGENET_DEFAULT_MEAN, "std": IMAGENET_DEFAULT_STD,
        "first_conv": "stem.conv1.conv", "classifier": "head.fc",
        # no licence file upstream (code or weights): no grant of use, so "unknown"
        "license": "unknown", "origin_url": "https://github.com/OliverRensu/SG-Former",
        "paper_ids": "arXiv:2308.12216",
        "paper_name": "SG-Former: Self-guided Transformer with Evolving Token Reallocation",
        **kwargs,
    }


def _official_cfg(file: str, top1: float, **kwargs) -> Dict:
    # the release is a Google Drive folder, not file links: download the file by hand, then
    # timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=path))
    return _cfg(_DRIVE, custom_load=True, notes=(
        f"official release {file} in the Google Drive folder; no licence upstream", f"top-1 {top1} (paper)"), **kwargs)


default_cfgs = generate_default_cfgs({
    "sgformer_s.in1k": _official_cfg("SG-Former-S", 83.2),
    "sgformer_m.in1k": _official_cfg("SG-Former-M", 84.1),
    "sgformer_b.in1k": _official_cfg("SG-Former-B", 84.7),
})


@register_model
def sgformer_s(pretrained: bool = False, **kwargs) -> SGFormer:
    args = dict(embed_dims=(64, 128, 256, 512), depths=(2, 4, 16, 1), num_heads=(2, 4, 8, 16))
    return _create_sgformer("sgformer_s", pretrained, **dict(args, **kwargs))


@register_model
def sgformer_m(pretrained: bool = False, **kwargs) -> SGFormer:
    args = dict(embed_dims=(64, 128, 256, 512), depths=(2, 6, 28, 2), num_heads=(2, 4, 8, 16))
    return _create_sgformer("sgformer_m", pretrained, **dict(args, **kwargs))


@register_model
def sgformer_b(pretrained: bool = False, **kwargs) -> SGFormer:
    args = dict(embed_dims=(96, 192, 384, 768), depths=(4, 6, 24, 2), num_heads=(4, 6, 12, 24))
    return _create_sgformer("sgformer_b", pretrained, **dict(args, **kwargs))
