"""GC ViT: Global Context Vision Transformers, for any input size.

Paper: "Global Context Vision Transformers", Hatamizadeh, Yin, Heinrich, Kautz, Molchanov, ICML 2023
(https://arxiv.org/abs/2206.09959). Official code and weights: https://github.com/NVlabs/GCVit (code under the
NVIDIA Source Code License-NC, weights CC-BY-NC-SA-4.0). This file is an independent implementation of the same
architecture; it loads the official checkpoints and timm's ``gcvit_*`` checkpoints through ``checkpoint_filter_fn``.

Architecture (as the official classification model): a stride-2 conv stem plus a ``ReduceSize`` block (stride 4
overall), then four stages of blocks that alternate local window attention (even blocks) with global-query window
attention (odd blocks), both with a Swin-style relative-position bias, pre-norm, layer scale and a GELU MLP. The
global query of a stage is made once, from the stage input, by fused-MBConv blocks with max pooling.

What differs from the official classification code (none of it changes the output at the pretraining size):

* Any input size. Feature maps are zero-padded to a multiple of the window after ``norm1`` and cropped back after
  attention, and the global query is bicubically resized to the window when the pooled map does not match it, as
  the official detection backbone does. Window sizes are per-stage constructor arguments (an int or an (h, w)
  pair per stage); ``query_pool`` says which stages' query generators max-pool (the official detection backbone,
  with window 24 everywhere, pools in stages 0-2: pass ``query_pool=(True, True, True, False)``).
* Downsampling sits at the start of stages 1-3 (timm's layout) instead of at the end of levels 0-2, so stage
  outputs are the features at strides 4/8/16/32; the global query is made from the downsampled map, which is the
  official next-level input, so the computation is the same.
* Attention runs through ``F.scaled_dot_product_attention`` with the relative-position bias as a float mask.
* Relative-position tables are resized bicubically when a checkpoint made for another window is loaded.
"""
from __future__ import annotations

import logging
import math
import re
from typing import Dict, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import ClassifierHead, DropPath, LayerNorm2d, LayerScale, Mlp, trunc_normal_
from timm.models import generate_default_cfgs, register_model, register_notrace_function
from timm.models._manipulate import checkpoint

from ._contract import StagedBackbone, create_backbone
from ._helpers import check_converted, load_checkpoint_file, resize_rel_pos_table, unwrap_state_dict

__all__ = ["GCViT", "checkpoint_filter_fn"]

_logger = logging.getLogger(__name__)

WindowArg = Union[int, Tuple[int, int], Sequence[Union[int, Tuple[int, int]]]]


def _pair(value, name: str) -> Tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
        raise ValueError(f"{name} must be a positive int or an (h, w) pair of positive ints, got {value!r}")
    return int(value[0]), int(value[1])


def _per_stage_windows(window_size: WindowArg, num_stages: int) -> Tuple[Tuple[int, int], ...]:
    """Normalise ``window_size`` (one int, one (h, w) pair, or one of either per stage) to per-stage pairs."""
    if isinstance(window_size, int) and not isinstance(window_size, bool):
        return tuple(_pair(window_size, "window_size") for _ in range(num_stages))
    if isinstance(window_size, (tuple, list)) and len(window_size) == num_stages:
        return tuple(_pair(w, f"window_size[{i}]") for i, w in enumerate(window_size))
    is_pair = isinstance(window_size, (tuple, list)) and len(window_size) == 2
    if is_pair and all(isinstance(w, int) for w in window_size):
        return tuple(_pair(tuple(window_size), "window_size") for _ in range(num_stages))
    raise ValueError(
        f"window_size must be an int, an (h, w) pair, or one int / pair per stage ({num_stages} stages), "
        f"got {window_size!r}")


def _per_stage(values, num_stages: int, name: str) -> tuple:
    values = tuple(values)
    if len(values) != num_stages:
        raise ValueError(f"{name} needs one value per stage ({num_stages} stages, from depths), got {values!r}")
    return values


def _relative_position_index(window_size: Tuple[int, int], device=None) -> torch.Tensor:
    """Swin's index ``[N, N]`` (N = wh * ww) into a ``[(2wh - 1) * (2ww - 1), heads]`` bias table."""
    wh, ww = window_size
    coords = torch.stack(torch.meshgrid(
        torch.arange(wh, device=device), torch.arange(ww, device=device), indexing="ij")).flatten(1)  # [2, N]
    delta = coords[:, :, None] - coords[:, None, :]  # [2, N, N], query minus key
    return (delta[0] + wh - 1) * (2 * ww - 1) + (delta[1] + ww - 1)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation with Linear layers (no bias) and GELU, reduction 0.25. ``[B, C, H, W]`` in and out."""

    def __init__(self, dim: int, rd_ratio: float = 0.25, device=None, dtype=None):
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        rd_dim = int(dim * rd_ratio)
        self.fc1 = nn.Linear(dim, rd_dim, bias=False, **dd)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(rd_dim, dim, bias=False, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = torch.sigmoid(self.fc2(self.act(self.fc1(x.mean(dim=(2, 3))))))
        return x * scale[:, :, None, None]


class FusedMBConv(nn.Module):
    """Residual fused-MBConv: ``x + pw(se(gelu(dw3x3(x))))``, all convs without bias. ``[B, C, H, W]`` in and out."""

    def __init__(self, dim: int, device=None, dtype=None):
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        self.conv_dw = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim, bias=False, **dd)
        self.act = nn.GELU()
        self.se = SqueezeExcite(dim, **dd)
        self.conv_pw = nn.Conv2d(dim, dim, 1, 1, 0, bias=False, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_pw(self.se(self.act(self.conv_dw(x))))


class ReduceSize(nn.Module):
    """LN -> fused-MBConv -> 3x3 stride-2 conv -> LN. ``[B, C, H, W]`` -> ``[B, C_out, ceil(H/2), ceil(W/2)]``."""

    def __init__(self, dim: int, dim_out: int, norm_eps: float = 1e-5, device=None, dtype=None):
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        self.norm1 = LayerNorm2d(dim, eps=norm_eps, **dd)
        self.mbconv = FusedMBConv(dim, **dd)
        self.reduction = nn.Conv2d(dim, dim_out, 3, 2, 1, bias=False, **dd)
        self.norm2 = LayerNorm2d(dim_out, eps=norm_eps, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm2(self.reduction(self.mbconv(self.norm1(x))))


class Stem(nn.Module):
    """3x3 stride-2 conv (with bias) then a dimension-keeping ``ReduceSize``. ``[B, 3, H, W]`` -> stride 4."""

    def __init__(self, in_chans: int, dim: int, norm_eps: float = 1e-5, device=None, dtype=None):
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        self.conv = nn.Conv2d(in_chans, dim, 3, 2, 1, **dd)
        self.down = ReduceSize(dim, dim, norm_eps=norm_eps, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.conv(x))


@register_notrace_function
def resize_to_window(x: torch.Tensor, window_size: Tuple[int, int]) -> torch.Tensor:
    """Bicubically resize ``[B, C, h, w]`` to the window unless it already is.

    A shape test, so FX keeps it a leaf (registered no-trace; its name must not start with ``_`` for that).
    """
    if x.shape[-2] != window_size[0] or x.shape[-1] != window_size[1]:
        x = F.interpolate(x, size=[window_size[0], window_size[1]], mode="bicubic", align_corners=False)
    return x


class GlobalQueryGen(nn.Module):
    """Global query of a stage: fused-MBConv blocks (each followed by a 3x3 stride-2 max pool when ``pool``).

    The result is bicubically resized to the window when its size differs (any input size; the official detection
    backbone does the same). ``[B, C, H, W]`` -> ``[B, wh, ww, C]``.
    """

    def __init__(
            self, dim: int, num_blocks: int, pool: bool, window_size: Tuple[int, int], device=None, dtype=None):
        super().__init__()
        self.blocks = nn.ModuleList([FusedMBConv(dim, device=device, dtype=dtype) for _ in range(num_blocks)])
        self.pool = pool
        self.window_size = window_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
            if self.pool:
                x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
        return resize_to_window(x, self.window_size).permute(0, 2, 3, 1)


class WindowAttention(nn.Module):
    """Window attention with a relative-position bias; with ``use_global`` the query is the stage's global query.

    Input ``[B * nW, N, C]`` windows (image-major: window i belongs to image i // nW), N = wh * ww; the global
    query is ``[B, heads, N, head_dim]``. Output ``[B * nW, N, C]``.
    """

    def __init__(
            self,
            dim: int,
            num_heads: int,
            window_size: Tuple[int, int],
            use_global: bool = False,
            qkv_bias: bool = True,
            attn_drop: float = 0.,
            proj_drop: float = 0.,
            device=None,
            dtype=None,
    ):
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.window_size = window_size
        self.use_global = use_global
        self.qkv = nn.Linear(dim, dim * (2 if use_global else 3), bias=qkv_bias, **dd)
        num_rel = (2 * window_size[0] - 1) * (2 * window_size[1] - 1)
        self.relative_position_bias_table = nn.Parameter(torch.zeros(num_rel, num_heads, **dd))
        n = window_size[0] * window_size[1]
        self.register_buffer(
            "relative_position_index", torch.empty(n, n, device=device, dtype=torch.long), persistent=False)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim, **dd)
        self.proj_drop = nn.Dropout(proj_drop)
        trunc_normal_(self.relative_position_bias_table, std=.02)
        self.init_non_persistent_buffers()

    def init_non_persistent_buffers(self) -> None:
        """Fill the relative-position index (after ``to_empty``: ``timm.models.reinit_non_persistent_buffers``)."""
        index = self.relative_position_index
        with torch.no_grad():
            index.copy_(_relative_position_index(self.window_size, device=index.device))

    def relative_position_bias(self) -> torch.Tensor:
        """``[heads, N, N]`` bias added to the attention logits."""
        n = self.window_size[0] * self.window_size[1]
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        return bias.permute(2, 0, 1)

    def forward(self, x: torch.Tensor, q_global: Optional[torch.Tensor] = None) -> torch.Tensor:
        num_windows_total, n, c = x.shape
        if self.use_global:
            if q_global is None:
                raise ValueError("WindowAttention(use_global=True) needs q_global [B, heads, N, head_dim]")
            kv = self.qkv(x).reshape(num_windows_total, n, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
            k, v = kv.unbind(0)
            batch = q_global.shape[0]
            # every window of image b attends with image b's query (windows are image-major)
            q = q_global.unsqueeze(1).expand(batch, num_windows_total // batch, -1, -1, -1)
            q = q.reshape(num_windows_total, self.num_heads, n, self.head_dim)
        else:
            qkv = self.qkv(x).reshape(num_windows_total, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
            q, k, v = qkv.unbind(0)
        bias = self.relative_position_bias().unsqueeze(0).to(q.dtype)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=self.attn_drop if self.training else 0.)
        # an explicit copy: the fused CPU/CUDA kernels return [.., N, heads, d]-strided outputs, so a plain reshape
        # is traced as a view that the math decomposition (torch.onnx) cannot take
        x = x.transpose(1, 2).clone(memory_format=torch.contiguous_format).reshape(num_windows_total, n, c)
        return self.proj_drop(self.proj(x))


def window_partition(x: torch.Tensor, window_size: Tuple[int, int]) -> torch.Tensor:
    """``[B, H, W, C]`` (H, W multiples of the window) -> ``[B * nW, wh * ww, C]``, image-major, row-major."""
    b, h, w, c = x.shape
    wh, ww = window_size
    x = x.view(b, h // wh, wh, w // ww, ww, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, wh * ww, c)


def window_reverse(windows: torch.Tensor, window_size: Tuple[int, int], h: int, w: int) -> torch.Tensor:
    """``[B * nW, wh * ww, C]`` -> ``[B, H, W, C]``; inverse of ``window_partition``."""
    wh, ww = window_size
    c = windows.shape[-1]
    x = windows.view(-1, h // wh, w // ww, wh, ww, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, h, w, c)


class GCViTBlock(nn.Module):
    """Pre-norm block: (global-query) window attention and MLP, each with layer scale and drop path.

    ``[B, H, W, C]`` in and out, any H and W (padded to the window and cropped back).
    """

    def __init__(
            self,
            dim: int,
            num_heads: int,
            window_size: Tuple[int, int],
            use_global: bool,
            mlp_ratio: float = 3.,
            qkv_bias: bool = True,
            layer_scale: Optional[float] = None,
            proj_drop: float = 0.,
            attn_drop: float = 0.,
            drop_path: float = 0.,
            norm_eps: float = 1e-5,
            device=None,
            dtype=None,
    ):
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        self.window_size = window_size
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps, **dd)
        self.attn = WindowAttention(
            dim, num_heads, window_size, use_global=use_global, qkv_bias=qkv_bias,
            attn_drop=attn_drop, proj_drop=proj_drop, **dd)
        self.ls1 = LayerScale(dim, layer_scale, **dd) if layer_scale is not None else nn.Identity()
        self.drop_path1 = DropPath(drop_path) if drop_path > 0. else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps, **dd)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU, drop=proj_drop, **dd)
        self.ls2 = LayerScale(dim, layer_scale, **dd) if layer_scale is not None else nn.Identity()
        self.drop_path2 = DropPath(drop_path) if drop_path > 0. else nn.Identity()

    def _attention(self, x: torch.Tensor, q_global: Optional[torch.Tensor]) -> torch.Tensor:
        # pad and crop unconditionally (zero-size pads are no-ops): no Python branch on the map size, so FX,
        # TorchScript and dynamic-shape torch.compile see one graph for every input size
        _, h, w, _ = x.shape
        wh, ww = self.window_size
        pad_h, pad_w = (wh - h % wh) % wh, (ww - w % ww) % ww
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
        windows = self.attn(window_partition(x, self.window_size), q_global)
        x = window_reverse(windows, self.window_size, h + pad_h, w + pad_w)
        return x[:, :h, :w, :].contiguous()

    def forward(self, x: torch.Tensor, q_global: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = x + self.drop_path1(self.ls1(self._attention(self.norm1(x), q_global)))
        x = x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))
        return x


class GCViTStage(nn.Module):
    """Optional ``ReduceSize`` downsample, the global query generator, then the blocks.

    ``[B, C_in, H, W]`` -> ``[B, C, H', W']`` (H' = ceil(H / 2) when downsampling).
    """

    def __init__(
            self,
            dim_in: int,
            dim: int,
            depth: int,
            num_heads: int,
            window_size: Tuple[int, int],
            downsample: bool,
            query_blocks: int,
            query_pool: bool,
            mlp_ratio: float = 3.,
            qkv_bias: bool = True,
            layer_scale: Optional[float] = None,
            proj_drop: float = 0.,
            attn_drop: float = 0.,
            drop_path: Sequence[float] = (),
            norm_eps: float = 1e-5,
            device=None,
            dtype=None,
    ):
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        self.downsample = ReduceSize(dim_in, dim, norm_eps=norm_eps, **dd) if downsample else nn.Identity()
        self.global_query = GlobalQueryGen(dim, query_blocks, query_pool, window_size, **dd)
        self.num_heads = num_heads
        self.blocks = nn.ModuleList([
            GCViTBlock(
                dim, num_heads, window_size, use_global=i % 2 == 1, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                layer_scale=layer_scale, proj_drop=proj_drop, attn_drop=attn_drop,
                drop_path=drop_path[i] if len(drop_path) else 0., norm_eps=norm_eps, **dd)
            for i in range(depth)
        ])
        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        q = self.global_query(x)  # [B, wh, ww, C], from the un-normalised stage input
        b, wh, ww, c = q.shape
        q = q.reshape(b, wh * ww, self.num_heads, c // self.num_heads).transpose(1, 2)  # [B, heads, N, head_dim]
        x = x.permute(0, 2, 3, 1)
        for block in self.blocks:
            if self.grad_checkpointing and not torch.jit.is_scripting():
                x = checkpoint(block, x, q)
            else:
                x = block(x, q)
        return x.permute(0, 3, 1, 2).contiguous()


class GCViT(StagedBackbone):
    """Global Context ViT for any input size.

    ``forward``: ``[B, in_chans, H, W]`` -> ``[B, num_classes]``; ``forward_features``: -> ``[B, C4, H/32, W/32]``
    (ceil at every stride-2 step), final LayerNorm applied.
    """

    stage_extra_pattern = r"downsample|global_query"
    no_weight_decay_patterns = ("relative_position_bias_table",)

    def __init__(
            self,
            in_chans: int = 3,
            num_classes: int = 1000,
            global_pool: str = "avg",
            embed_dim: int = 64,
            depths: Sequence[int] = (3, 4, 19, 5),
            num_heads: Sequence[int] = (2, 4, 8, 16),
            window_size: WindowArg = (7, 7, 14, 7),
            mlp_ratio: float = 3.,
            qkv_bias: bool = True,
            layer_scale: Optional[float] = None,
            query_blocks: Optional[Sequence[int]] = None,
            query_pool: Optional[Sequence[bool]] = None,
            drop_rate: float = 0.,
            proj_drop_rate: float = 0.,
            attn_drop_rate: float = 0.,
            drop_path_rate: float = 0.,
            norm_eps: float = 1e-5,
            device=None,
            dtype=None,
    ):
        """
        Args:
            window_size: one int or (h, w) pair for every stage, or one per stage. Pretraining uses (7, 7, 14, 7);
                the official detection backbone 24 everywhere (tables are resized on load).
            query_blocks: fused-MBConv blocks in each stage's global query generator (official: 3, 2, 1, 1).
            query_pool: whether each stage's query generator max-pools after every block (official
                classification: True, True, False, False; official detection with window 24: True, True, True, False).
            layer_scale: initial LayerScale value, or None for no layer scale (xxtiny ... tiny2).
        """
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        if not isinstance(in_chans, int) or in_chans < 1:
            raise ValueError(f"in_chans must be a positive int, got {in_chans!r}")
        if not isinstance(embed_dim, int) or embed_dim < 1:
            raise ValueError(f"embed_dim must be a positive int, got {embed_dim!r}")
        depths = tuple(int(d) for d in depths)
        num_stages = len(depths)
        if num_stages < 1 or any(d < 1 for d in depths):
            raise ValueError(f"depths must be a non-empty sequence of positive ints, got {depths!r}")
        num_heads = _per_stage(num_heads, num_stages, "num_heads")
        windows = _per_stage_windows(window_size, num_stages)
        default_blocks = (3, 2, 1, 1) if num_stages == 4 else tuple(max(1, 3 - i) for i in range(num_stages))
        query_blocks = _per_stage(query_blocks if query_blocks is not None else default_blocks, num_stages,
                                  "query_blocks")
        if any(not isinstance(q, int) or q < 1 for q in query_blocks):
            raise ValueError(f"query_blocks must be positive ints, got {query_blocks!r}")
        default_pool = tuple(i < 2 for i in range(num_stages))
        query_pool = _per_stage(query_pool if query_pool is not None else default_pool, num_stages, "query_pool")
        dims = [embed_dim * 2 ** i for i in range(num_stages)]
        for i, (dim, heads) in enumerate(zip(dims, num_heads)):
            if heads < 1 or dim % heads:
                raise ValueError(f"num_heads[{i}]={heads} must divide the stage width {dim} (embed_dim * 2**{i})")

        self.num_classes = num_classes
        self.in_chans = in_chans
        self.global_pool = global_pool
        self.drop_rate = drop_rate
        self.window_size = windows
        self.num_features = self.head_hidden_size = dims[-1]

        self.stem = Stem(in_chans, embed_dim, norm_eps=norm_eps, **dd)
        # drop path rises linearly over all blocks, as in the official code
        dpr = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()
        stages, self.feature_info = [], []
        for i in range(num_stages):
            stages.append(GCViTStage(
                dim_in=dims[max(i - 1, 0)], dim=dims[i], depth=depths[i], num_heads=num_heads[i],
                window_size=windows[i], downsample=i > 0, query_blocks=query_blocks[i], query_pool=bool(query_pool[i]),
                mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, layer_scale=layer_scale, proj_drop=proj_drop_rate,
                attn_drop=attn_drop_rate, drop_path=dpr[sum(depths[:i]):sum(depths[:i + 1])], norm_eps=norm_eps,
                **dd))
            self.feature_info.append(dict(num_chs=dims[i], reduction=2 ** (i + 2), module=f"stages.{i}"))
        self.stages = nn.Sequential(*stages)
        self.norm = LayerNorm2d(self.num_features, eps=norm_eps, **dd)
        self.head = ClassifierHead(self.num_features, num_classes, pool_type=global_pool, drop_rate=drop_rate, **dd)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        # the official init: truncated normal Linear weights, zero biases; convs keep PyTorch's default
        if isinstance(module, nn.Linear):
            trunc_normal_(module.weight, std=.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def load_pretrained(self, checkpoint_path: str) -> None:
        """Load an official, timm or visionattn GC ViT checkpoint file into this model.

        timm calls this for pretrained cfgs with ``custom_load`` (the official ``.pth.tar`` files carry training
        state beside the weights, which timm's ``weights_only`` URL loader refuses). A classifier of another size
        is left at its initialisation, as timm does when ``num_classes`` differs.
        """
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

_MBCONV_OFFICIAL = {"conv.0": "conv_dw", "conv.2.fc.0": "se.fc1", "conv.2.fc.2": "se.fc2", "conv.3": "conv_pw"}


def _official_mbconv(rest: str) -> str:
    for old, new in _MBCONV_OFFICIAL.items():
        if rest.startswith(old + "."):
            return new + rest[len(old):]
    return rest


def _official_reduce(rest: str) -> str:
    """Key inside an official ``ReduceSize`` -> ours (``conv.*`` is the fused-MBConv)."""
    return "mbconv." + _official_mbconv(rest) if rest.startswith("conv.") else rest


def _convert_official(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    out = {}
    for key, value in state_dict.items():
        if key.endswith("relative_position_index"):
            continue
        new = key
        if key.startswith("patch_embed.proj."):
            new = "stem.conv." + key[len("patch_embed.proj."):]
        elif key.startswith("patch_embed.conv_down."):
            new = "stem.down." + _official_reduce(key[len("patch_embed.conv_down."):])
        elif key.startswith("levels."):
            m = re.match(r"levels\.(\d+)\.(\w+)\.(.*)", key)
            level, part, rest = int(m.group(1)), m.group(2), m.group(3)
            if part == "downsample":
                new = f"stages.{level + 1}.downsample." + _official_reduce(rest)
            elif part == "q_global_gen":
                m2 = re.match(r"to_q_global\.(\d+)\.(.*)", rest)
                new = f"stages.{level}.global_query.blocks.{m2.group(1)}." + _official_mbconv(m2.group(2))
            else:  # blocks.{j}.*
                rest = re.sub(r"\.gamma([12])$", lambda g: f".ls{g.group(1)}.gamma", rest)
                new = f"stages.{level}.{part}.{rest}"
        elif key.startswith("head."):
            new = "head.fc." + key[len("head."):]
        out[new] = value
    return out


def _convert_timm(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    out = {}
    last_stage = max(int(k.split(".")[1]) for k in state_dict if k.startswith("stages."))
    for key, value in state_dict.items():
        if key.endswith("relative_position_index"):
            continue
        new = key.replace("stem.conv1.", "stem.conv.").replace(".conv_block.", ".mbconv.")
        new = new.replace(".attn.rel_pos.", ".attn.")
        new = re.sub(r"\.global_block\.blocks\.conv(\d+)\.",
                     lambda g: f".global_query.blocks.{int(g.group(1)) - 1}.", new)
        if new.startswith(f"stages.{last_stage}.norm."):
            new = "norm." + new[len(f"stages.{last_stage}.norm."):]
        if ".se.fc" in new and value.ndim == 4:
            value = value.flatten(1)  # timm's SE uses 1x1 convs, ours (as the official) Linear layers
        out[new] = value
    return out


def checkpoint_filter_fn(state_dict: Mapping, model: GCViT) -> Dict[str, torch.Tensor]:
    """Convert an official NVIDIA GC ViT checkpoint or a timm ``gcvit_*`` checkpoint to this model's keys.

    The layout is detected from the keys (``patch_embed.*`` official, ``stem.conv1.*`` timm, ``stem.conv.*``
    already ours). Relative-position tables ``[(2wh-1)(2ww-1), heads]`` made for another window are resized
    bicubically to the model's windows. Raises ``ValueError`` listing every mismatch that remains.
    """
    state_dict = unwrap_state_dict(state_dict)
    if "patch_embed.proj.weight" in state_dict:
        source, state_dict = "official GC ViT checkpoint", _convert_official(state_dict)
    elif "stem.conv1.weight" in state_dict:
        source, state_dict = "timm gcvit checkpoint", _convert_timm(state_dict)
    elif "stem.conv.weight" in state_dict:
        source = "visionattn gc_vit checkpoint"
        state_dict = {k: v for k, v in state_dict.items() if not k.endswith("relative_position_index")}
    else:
        raise ValueError(
            "state_dict is not a GC ViT checkpoint: expected 'patch_embed.proj.weight' (official NVIDIA), "
            "'stem.conv1.weight' (timm gcvit) or 'stem.conv.weight' (visionattn) among its keys")

    model_sd = model.state_dict()
    for key, value in list(state_dict.items()):
        if not key.endswith("relative_position_bias_table") or key not in model_sd:
            continue
        target = model_sd[key]
        if value.shape == target.shape:
            continue
        module = model.get_submodule(key.rsplit(".", 1)[0])
        wh, ww = module.window_size
        side = math.isqrt(value.shape[0])
        if value.ndim != 2 or side * side != value.shape[0] or value.shape[1] != target.shape[1]:
            continue  # left for check_converted to report
        table = value.t().reshape(value.shape[1], side, side)
        table = resize_rel_pos_table(table, (2 * wh - 1, 2 * ww - 1))
        state_dict[key] = table.reshape(value.shape[1], -1).t().contiguous()
        _logger.info("resized %s from window %d to %s", key, (side + 1) // 2, (wh, ww))
    check_converted(state_dict, model, source=source, classifier="head")
    return state_dict


# -- model creation ----------------------------------------------------------------------------------------------

def _create_gc_vit(variant: str, pretrained: bool = False, **kwargs) -> GCViT:
    return create_backbone(
        GCViT, variant, pretrained, checkpoint_filter_fn, num_stages=len(kwargs.get("depths", (3, 4, 19, 5))), **kwargs)


_NV_HF = "https://huggingface.co/nvidia/GCViT/resolve/main/"
_TIMM_GH = "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-weights-morevit/"


def _nv_cfg(url: str, **kwargs) -> Dict:
    return _cfg(url, custom_load=True, **kwargs)


def _cfg(url: str = "", **kwargs) -> Dict:
    return {
        "url": url, "num_classes": 1000, "input_size": (3, 224, 224), "pool_size": (7, 7),
        "crop_pct": 0.875, "interpolation": "bicubic", "fixed_input_size": False,
        "mean": IMAGENET_DEFAULT_MEAN, "std": IMAGENET_DEFAULT_STD,
        "first_conv": "stem.conv", "classifier": "head.fc",
        "license": "cc-by-nc-sa-4.0", "origin_url": "https://github.com/NVlabs/GCVit",
        "paper_ids": "arXiv:2206.09959", "paper_name": "Global Context Vision Transformers",
        **kwargs,
    }


def _timm_cfg(name: str, file: str) -> Dict:
    return _cfg(_TIMM_GH + file, hf_hub_id=f"timm/{name}.in1k",
                notes=("older NVIDIA release, converted by timm",))


default_cfgs = generate_default_cfgs({
    # current official weights (NVlabs/GCVit README, ImageNet-1K)
    "gc_vit_xxtiny.nv_in1k": _nv_cfg(_NV_HF + "gcvit_1k_xxtiny.pth.tar", crop_pct=1.0),
    "gc_vit_xtiny.nv_in1k": _nv_cfg(_NV_HF + "gcvit_1k_xtiny.pth.tar"),
    "gc_vit_tiny.nv_in1k": _nv_cfg(_NV_HF + "gcvit_1k_tiny.pth.tar", crop_pct=1.0),
    "gc_vit_tiny2.nv_in1k": _nv_cfg(_NV_HF + "gcvit_1k_tiny2.pth.tar"),
    "gc_vit_small.nv_in1k": _nv_cfg(_NV_HF + "gcvit_1k_small.pth.tar"),
    "gc_vit_small2.nv_in1k": _nv_cfg(_NV_HF + "gcvit_1k_small2.pth.tar"),
    "gc_vit_base.nv_in1k": _nv_cfg(_NV_HF + "gcvit_1k_base.pth.tar", crop_pct=1.0),
    "gc_vit_large.nv_in1k": _nv_cfg(_NV_HF + "gcvit_1k_large.pth.tar", crop_pct=1.0),
    # official ImageNet-21K pretrained, ImageNet-1K fine-tuned
    "gc_vit_large.nv_in21k_ft_in1k": _nv_cfg(
        "https://drive.google.com/uc?export=download&id=1maGDr6mJkLyRTUkspMzCgSlhDzNRFGEf", crop_pct=1.0),
    "gc_vit_large_384.nv_in21k_ft_in1k": _nv_cfg(
        _NV_HF + "gcvit_21k_large_384.pth.tar", input_size=(3, 384, 384), pool_size=(12, 12), crop_pct=1.0,
        crop_mode="squash"),
    "gc_vit_large_512.nv_in21k_ft_in1k": _nv_cfg(
        _NV_HF + "gcvit_21k_large_512.pth.tar", input_size=(3, 512, 512), pool_size=(16, 16), crop_pct=1.0,
        crop_mode="squash"),
    # the older NVIDIA release as converted and hosted by timm (loaded through the timm branch of the filter)
    "gc_vit_xxtiny.in1k": _timm_cfg("gcvit_xxtiny", "gcvit_xxtiny_224_nvidia-d1d86009.pth"),
    "gc_vit_xtiny.in1k": _timm_cfg("gcvit_xtiny", "gcvit_xtiny_224_nvidia-274b92b7.pth"),
    "gc_vit_tiny.in1k": _timm_cfg("gcvit_tiny", "gcvit_tiny_224_nvidia-ac783954.pth"),
    "gc_vit_small.in1k": _timm_cfg("gcvit_small", "gcvit_small_224_nvidia-4e98afa2.pth"),
    "gc_vit_base.in1k": _timm_cfg("gcvit_base", "gcvit_base_224_nvidia-f009139b.pth"),
})


@register_model
def gc_vit_xxtiny(pretrained: bool = False, **kwargs) -> GCViT:
    args = dict(embed_dim=64, depths=(2, 2, 6, 2), num_heads=(2, 4, 8, 16), mlp_ratio=3)
    return _create_gc_vit("gc_vit_xxtiny", pretrained, **dict(args, **kwargs))


@register_model
def gc_vit_xtiny(pretrained: bool = False, **kwargs) -> GCViT:
    args = dict(embed_dim=64, depths=(3, 4, 6, 5), num_heads=(2, 4, 8, 16), mlp_ratio=3)
    return _create_gc_vit("gc_vit_xtiny", pretrained, **dict(args, **kwargs))


@register_model
def gc_vit_tiny(pretrained: bool = False, **kwargs) -> GCViT:
    args = dict(embed_dim=64, depths=(3, 4, 19, 5), num_heads=(2, 4, 8, 16), mlp_ratio=3)
    return _create_gc_vit("gc_vit_tiny", pretrained, **dict(args, **kwargs))


@register_model
def gc_vit_tiny2(pretrained: bool = False, **kwargs) -> GCViT:
    args = dict(embed_dim=64, depths=(3, 4, 29, 5), num_heads=(2, 4, 8, 16), mlp_ratio=3)
    return _create_gc_vit("gc_vit_tiny2", pretrained, **dict(args, **kwargs))


@register_model
def gc_vit_small(pretrained: bool = False, **kwargs) -> GCViT:
    args = dict(embed_dim=96, depths=(3, 4, 19, 5), num_heads=(3, 6, 12, 24), mlp_ratio=2, layer_scale=1e-5)
    return _create_gc_vit("gc_vit_small", pretrained, **dict(args, **kwargs))


@register_model
def gc_vit_small2(pretrained: bool = False, **kwargs) -> GCViT:
    args = dict(embed_dim=96, depths=(3, 4, 23, 5), num_heads=(3, 6, 12, 24), mlp_ratio=3, layer_scale=1e-5)
    return _create_gc_vit("gc_vit_small2", pretrained, **dict(args, **kwargs))


@register_model
def gc_vit_base(pretrained: bool = False, **kwargs) -> GCViT:
    args = dict(embed_dim=128, depths=(3, 4, 19, 5), num_heads=(4, 8, 16, 32), mlp_ratio=2, layer_scale=1e-5)
    return _create_gc_vit("gc_vit_base", pretrained, **dict(args, **kwargs))


@register_model
def gc_vit_large(pretrained: bool = False, **kwargs) -> GCViT:
    args = dict(embed_dim=192, depths=(3, 4, 19, 5), num_heads=(6, 12, 24, 48), mlp_ratio=2, layer_scale=1e-5)
    return _create_gc_vit("gc_vit_large", pretrained, **dict(args, **kwargs))


@register_model
def gc_vit_large_384(pretrained: bool = False, **kwargs) -> GCViT:
    """GC ViT-L with the windows of the official 384x384 ImageNet-21K fine-tune."""
    args = dict(embed_dim=192, depths=(3, 4, 19, 5), num_heads=(6, 12, 24, 48), mlp_ratio=2, layer_scale=1e-5,
                window_size=(12, 12, 24, 12))
    return _create_gc_vit("gc_vit_large_384", pretrained, **dict(args, **kwargs))


@register_model
def gc_vit_large_512(pretrained: bool = False, **kwargs) -> GCViT:
    """GC ViT-L with the windows of the official 512x512 ImageNet-21K fine-tune."""
    args = dict(embed_dim=192, depths=(3, 4, 19, 5), num_heads=(6, 12, 24, 48), mlp_ratio=2, layer_scale=1e-5,
                window_size=(16, 16, 32, 16))
    return _create_gc_vit("gc_vit_large_512", pretrained, **dict(args, **kwargs))


# -- demo-only model ---------------------------------------------------------------------------------------------

default_cfgs.update(generate_default_cfgs({
    # no weights: trained by the main job (``python tools/train.py``) on the built-in demo data
    "test_gc_vit.untrained": _cfg(
        num_classes=10, input_size=(3, 48, 48), pool_size=(2, 2), crop_pct=1.0, license="apache-2.0",
        origin_url="", notes=("demo-only: sized for the demo data (64x64 images, trained at 48x48), not an official "
                              "model",)),
}))


@register_model
def test_gc_vit(pretrained: bool = False, **kwargs) -> GCViT:
    """Demo-only GC ViT (like timm's ``test_*`` models): the main job's model, sized for 64x64 demo images.

    Not an official variant and without weights; ``python tools/train.py`` trains it on the demo data at 48x48.
    Windows fit the 12/6/3/2 maps of a 48x48 input; one pooled query block makes stage 0's global query
    window-sized.
    """
    args = dict(embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), window_size=(6, 6, 3, 2), mlp_ratio=2,
                query_blocks=(1, 1, 1, 1), query_pool=(True, False, False, False))
    return _create_gc_vit("test_gc_vit", pretrained, **dict(args, **kwargs))
