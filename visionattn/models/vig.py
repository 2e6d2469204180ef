"""ViG: Linear-complexity Visual Sequence Learning with Gated Linear Attention (AAAI 2025).

Paper: https://arxiv.org/abs/2405.18425 (Liao, Wang, Zhu, Zhang, Huang).
Official code: https://github.com/hustvl/ViG (MIT), weights https://huggingface.co/hustvl/ViG (Apache-2.0).

Two families, both built on ``visionattn.layers.BiGatedLinearAttention2d`` (ViG's GLA2D) and therefore on
``visionattn.ops.bigla`` (Triton on CUDA, exact chunked PyTorch elsewhere; no fla fork, no Triton pin):

* ``vig_h_{tiny,small,base}``: hierarchical ViG-H (``classification/models/vig_h.py:HierViG``): conv stem
  (3x3 s2 -> LN2d -> GELU -> 3x3 s2 -> LN2d), four stages of GLA2D + SwiGLU blocks with 3x3 s2 conv downsamplers,
  LN2d on the last map, average pool, linear head.
* ``vig_{tiny,small,base}``: plain, DeiT-like ViG (``classification/models/vig.py:ViG``): 16x-downsampling
  conv stem, learned position embedding (resized bicubically for other input sizes), 12 RMSNorm pre-norm
  GLA + SwiGLU blocks, RMSNorm, average pool, linear head.

Differences from the official code (none changes the released weights' outputs):

* Stages follow timm's layout (a stage's downsampler leads it), so ``features_only`` taps strides 4/8/16/32;
  ``checkpoint_filter_fn`` moves the official keys (``layers.i.downsample`` -> ``stages.{i+1}.downsample``).
* Blocks run channels-last internally (LayerNorm over C == the official LN2d).
* Both directions of the scan are one ``bigla`` call in training and evaluation. The official training path
  (batch-doubled causal GLA) and eval path (forward-only fused kernel) compute the same mean, except that
  plain ViG's eval path halves it once more before ``g_norm``; plain ViG models here use ``g_norm`` eps 4e-6,
  which reproduces the released eval outputs exactly (RMSNorm(o / 2, eps) == RMSNorm(o, 4 * eps)).
"""
import logging
import math
import re
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import ClassifierHead, DropPath, LayerNorm2d, get_device_dtype, trunc_normal_
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model, register_notrace_function
from timm.models._features import feature_take_indices
from timm.models._manipulate import checkpoint, checkpoint_seq

from ..layers.gla import BiGatedLinearAttention2d, Fp32RmsNorm, swiglu_linear
from ._contract import StagedBackbone, create_backbone, run_blocks
from ._helpers import check_converted, unwrap_state_dict

__all__ = ["HierarchicalViG", "ViG", "checkpoint_filter_fn"]

_logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------------------
# Blocks
# ---------------------------------------------------------------------------------------------------------------

class SwiGLU(nn.Module):
    """``fc2(silu(a) * b)`` with ``[a, b] = fc1(x)`` (gate first), no biases; channels last ``[..., C]``."""

    def __init__(self, dim: int, hidden: int, device=None, dtype=None) -> None:
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        self.fc1 = nn.Linear(dim, 2 * hidden, bias=False, **dd)
        self.fc2 = nn.Linear(hidden, dim, bias=False, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return swiglu_linear(self.fc1(x), self.fc2.weight)  # fc2 (no bias) fused: its input is recomputed


class PlainSwiGLU(nn.Module):
    """Plain ViG's SwiGLU: the same as :class:`SwiGLU` under the official names ``gate_proj`` / ``down_proj``."""

    def __init__(self, dim: int, hidden: int, device=None, dtype=None) -> None:
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        self.gate_proj = nn.Linear(dim, 2 * hidden, bias=False, **dd)
        self.down_proj = nn.Linear(hidden, dim, bias=False, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return swiglu_linear(self.gate_proj(x), self.down_proj.weight)  # down_proj fused, as SwiGLU


def _swiglu_hidden(dim: int, multiple_of: int) -> int:
    # 2/3 of 4 * dim, rounded up to a multiple (ViG-H: 32, plain ViG: 256), as the official code
    hidden = int(dim * 4 * 2 / 3)
    return multiple_of * ((hidden + multiple_of - 1) // multiple_of)


class HierarchicalBlock(nn.Module):
    """ViG-H block on ``[B, H, W, C]``: ``x + GLA2D(LN(x))``, then ``x + SwiGLU(LN(x))``."""

    def __init__(
            self,
            dim: int,
            num_heads: int,
            drop_path: float = 0.0,
            backend: Optional[str] = None,
            device=None,
            dtype=None,
    ) -> None:
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-5, **dd)
        self.attn = BiGatedLinearAttention2d(dim, num_heads, conv_act=False, out_act=False, backend=backend, **dd)
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-5, **dd)
        self.mlp = SwiGLU(dim, _swiglu_hidden(dim, 32), **dd)
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path1(self.attn(self.norm1(x)))
        return x + self.drop_path2(self.mlp(self.norm2(x)))


class Stem(nn.Module):
    """``[B, 3, H, W]`` -> ``[B, C, ceil(H/4), ceil(W/4)]``: two 3x3 stride-2 convs (any input size)."""

    def __init__(self, in_chans: int, dim: int, device=None, dtype=None) -> None:
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, dim // 2, kernel_size=3, stride=2, padding=1, **dd)
        self.norm1 = LayerNorm2d(dim // 2, eps=1e-5, **dd)
        self.act = nn.GELU()
        self.conv2 = nn.Conv2d(dim // 2, dim, kernel_size=3, stride=2, padding=1, **dd)
        self.norm2 = LayerNorm2d(dim, eps=1e-5, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm2(self.conv2(self.act(self.norm1(self.conv1(x)))))


class Downsample(nn.Module):
    """3x3 stride-2 conv + LN2d: ``[B, C, H, W]`` -> ``[B, C_out, ceil(H/2), ceil(W/2)]``."""

    def __init__(self, dim: int, out_dim: int, device=None, dtype=None) -> None:
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        self.conv = nn.Conv2d(dim, out_dim, kernel_size=3, stride=2, padding=1, **dd)
        self.norm = LayerNorm2d(out_dim, eps=1e-5, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


class HierarchicalStage(nn.Module):
    """Optional downsampler, then blocks; ``[B, C_in, H, W]`` -> ``[B, C, H', W']`` (NCHW at the boundary)."""

    def __init__(
            self,
            dim: int,
            out_dim: int,
            depth: int,
            num_heads: int,
            downsample: bool,
            drop_path: Sequence[float],
            backend: Optional[str] = None,
            device=None,
            dtype=None,
    ) -> None:
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        self.grad_checkpointing = False
        self.downsample = Downsample(dim, out_dim, **dd) if downsample else nn.Identity()
        self.blocks = nn.Sequential(*[
            HierarchicalBlock(out_dim, num_heads, drop_path=drop_path[i], backend=backend, **dd)
            for i in range(depth)
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x).permute(0, 2, 3, 1)
        if torch.jit.is_scripting():  # run_blocks takes a module, which TorchScript cannot type
            x = self.blocks(x)
        else:
            x = run_blocks(self.blocks, x, self.grad_checkpointing)
        return x.permute(0, 3, 1, 2)


class PlainBlock(nn.Module):
    """Plain ViG block on ``[B, H, W, C]``: RMSNorm pre-norm GLA2D and SwiGLU (``gate_proj`` / ``down_proj``)."""

    def __init__(
            self,
            dim: int,
            num_heads: int,
            conv_act: bool,
            out_act: bool,
            drop_path: float = 0.0,
            backend: Optional[str] = None,
            device=None,
            dtype=None,
    ) -> None:
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        self.attn_norm = Fp32RmsNorm(dim, eps=1e-6, **dd)
        self.attn = BiGatedLinearAttention2d(
            dim, num_heads, conv_act=conv_act, out_act=out_act, norm_eps=1e-6, out_norm_eps=4e-6, backend=backend,
            **dd,
        )
        self.mlp_norm = Fp32RmsNorm(dim, eps=1e-6, **dd)
        self.mlp = PlainSwiGLU(dim, _swiglu_hidden(dim, 256), **dd)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.attn_norm(x)))
        return x + self.drop_path(self.mlp(self.mlp_norm(x)))


class PlainPatchEmbed(nn.Module):
    """``[B, 3, H, W]`` -> ``[B, C, h, w]``: 9x9 stride-8 conv, LN2d, SiLU, 3x3 stride-2 conv, LN2d (224 -> 14)."""

    def __init__(self, in_chans: int, dim: int, device=None, dtype=None) -> None:
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        self.proj = nn.Sequential(
            nn.Conv2d(in_chans, dim // 2, kernel_size=9, stride=8, padding=1, **dd),
            LayerNorm2d(dim // 2, eps=1e-5, **dd),
            nn.SiLU(),
            nn.Conv2d(dim // 2, dim, kernel_size=3, stride=2, padding=1, **dd),
            LayerNorm2d(dim, eps=1e-5, **dd),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


@register_notrace_function
def resize_pos_embed(pos_embed: torch.Tensor, src_grid: Tuple[int, int], dst_grid: Tuple[int, int]) -> torch.Tensor:
    """Bicubically resize ``[1, h*w, C]`` from ``src_grid`` to ``dst_grid`` (as the official code does).

    A shape test, so FX keeps it a leaf (registered no-trace).
    """
    if src_grid[0] == dst_grid[0] and src_grid[1] == dst_grid[1]:
        return pos_embed
    channels = pos_embed.shape[-1]
    grid = pos_embed.reshape(1, src_grid[0], src_grid[1], channels).permute(0, 3, 1, 2)
    grid = F.interpolate(grid.float(), size=[dst_grid[0], dst_grid[1]], mode="bicubic", align_corners=False)
    return grid.flatten(2).transpose(1, 2).to(pos_embed.dtype)


# ---------------------------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------------------------

def _linspace(end: float, steps: int) -> List[float]:
    # stochastic depth decay rule, in Python so that models can be built on the meta device
    return [end * i / (steps - 1) if steps > 1 else 0.0 for i in range(steps)]


def _init_linear(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class HierarchicalViG(StagedBackbone):
    """ViG-H. Input ``[B, in_chans, H, W]`` of any size; features NCHW at strides 4, 8, 16, 32."""

    def __init__(
            self,
            in_chans: int = 3,
            num_classes: int = 1000,
            global_pool: str = "avg",
            embed_dim: int = 96,
            depths: Sequence[int] = (2, 2, 9, 2),
            num_heads: Sequence[int] = (3, 6, 12, 24),
            drop_rate: float = 0.0,
            drop_path_rate: float = 0.1,
            backend: Optional[str] = None,
            device=None,
            dtype=None,
    ) -> None:
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        if len(depths) != len(num_heads):
            raise ValueError(
                f"HierarchicalViG: depths {tuple(depths)} and num_heads {tuple(num_heads)} must have the same length"
            )
        num_stages = len(depths)
        dims = [embed_dim * 2 ** i for i in range(num_stages)]
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.global_pool = global_pool
        self.num_features = self.head_hidden_size = dims[-1]
        self.drop_rate = drop_rate

        self.stem = Stem(in_chans, dims[0], **dd)
        flat = _linspace(drop_path_rate, sum(depths))
        rates = [flat[sum(depths[:i]):sum(depths[:i + 1])] for i in range(num_stages)]
        stages, self.feature_info = [], []
        for i in range(num_stages):
            stages.append(HierarchicalStage(
                dims[max(i - 1, 0)], dims[i], depths[i], num_heads[i], downsample=i > 0, drop_path=rates[i],
                backend=backend, **dd,
            ))
            self.feature_info.append(dict(num_chs=dims[i], reduction=4 * 2 ** i, module=f"stages.{i}"))
        self.stages = nn.Sequential(*stages)
        # the official classifier normalises the map (LN2d) before pooling
        self.norm = LayerNorm2d(dims[-1], eps=1e-5, **dd)
        self.head = ClassifierHead(dims[-1], num_classes, pool_type=global_pool, drop_rate=drop_rate, **dd)
        self.apply(_init_linear)
        for module in self.modules():
            if isinstance(module, BiGatedLinearAttention2d):
                nn.init.xavier_uniform_(module.in_proj[0].weight, gain=2 ** -2.5)


class ViG(nn.Module):
    """Plain (isotropic) ViG. Input ``[B, in_chans, H, W]`` of any size >= 9 px; tokens on a 16x-smaller grid.

    Block outputs and ``forward_features`` are maps ``[B, h, w, C]`` (``output_fmt = "NHWC"``).
    """

    output_fmt = "NHWC"

    def __init__(
            self,
            img_size: int = 224,
            patch_size: int = 16,
            in_chans: int = 3,
            num_classes: int = 1000,
            global_pool: str = "avg",
            embed_dim: int = 192,
            depth: int = 12,
            num_heads: int = 3,
            conv_act: bool = False,
            out_act: bool = False,
            drop_rate: float = 0.0,
            pos_drop_rate: float = 0.0,
            drop_path_rate: float = 0.1,
            backend: Optional[str] = None,
            device=None,
            dtype=None,
    ) -> None:
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        if patch_size != 16:
            raise ValueError(f"ViG: only patch_size=16 (the official stem: 9x9 s8 + 3x3 s2) exists, got {patch_size}")
        if global_pool not in ("avg", ""):
            raise ValueError(f"ViG: global_pool must be 'avg' or '', got {global_pool!r}")
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.global_pool = global_pool
        self.num_features = self.head_hidden_size = self.embed_dim = embed_dim
        self.grad_checkpointing = False
        self.pos_grid = (img_size // patch_size, img_size // patch_size)

        self.patch_embed = PlainPatchEmbed(in_chans, embed_dim, **dd)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.pos_grid[0] * self.pos_grid[1], embed_dim, **dd))
        self.pos_drop = nn.Dropout(pos_drop_rate)
        rates = _linspace(drop_path_rate, depth)
        self.blocks = nn.Sequential(*[
            PlainBlock(embed_dim, num_heads, conv_act, out_act, drop_path=rates[i], backend=backend, **dd)
            for i in range(depth)
        ])
        self.feature_info = [dict(num_chs=embed_dim, reduction=16, module=f"blocks.{i}") for i in range(depth)]
        self.norm = Fp32RmsNorm(embed_dim, eps=1e-6, **dd)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(embed_dim, num_classes, **dd) if num_classes > 0 else nn.Identity()

        self.apply(_init_linear)
        for module in self.modules():
            if isinstance(module, BiGatedLinearAttention2d):
                module.reset_parameters()
        trunc_normal_(self.pos_embed, std=0.02)

    @torch.jit.ignore
    def no_weight_decay(self) -> set:
        return {"pos_embed"}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict:
        return dict(stem=r"^pos_embed|^patch_embed", blocks=[(r"^blocks\.(\d+)", None), (r"^norm", (99999,))])

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        dd = get_device_dtype(self)
        self.num_classes = num_classes
        if global_pool is not None:
            if global_pool not in ("avg", ""):
                raise ValueError(f"ViG: global_pool must be 'avg' or '', got {global_pool!r}")
            self.global_pool = global_pool
        head = nn.Linear(self.embed_dim, num_classes, **dd) if num_classes > 0 else nn.Identity()
        self.head = head.train(self.training)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).permute(0, 2, 3, 1)  # [B, h, w, C]
        grid = (x.shape[1], x.shape[2])
        pos = resize_pos_embed(self.pos_embed, self.pos_grid, grid).reshape(1, grid[0], grid[1], -1)
        return self.pos_drop(x + pos)

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = "NCHW",
            intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Block outputs as maps (NCHW or NHWC) on the 16x grid; ``norm`` applies the final RMSNorm to each."""
        if output_fmt not in ("NCHW", "NHWC"):
            raise ValueError(f"output_fmt must be 'NCHW' or 'NHWC', got {output_fmt!r}")
        intermediates = []
        take_indices, max_index = feature_take_indices(len(self.blocks), indices)
        blocks = self.blocks if torch.jit.is_scripting() or not stop_early else self.blocks[:max_index + 1]
        x = self._embed(x)
        for i, block in enumerate(blocks):
            if self.grad_checkpointing and not torch.jit.is_scripting():
                x = checkpoint(block, x)
            else:
                x = block(x)
            if i in take_indices:
                x_inter = self.norm(x) if norm else x
                intermediates.append(x_inter if output_fmt == "NHWC" else x_inter.permute(0, 3, 1, 2))
        if intermediates_only:
            return intermediates
        return self.norm(x), intermediates

    def prune_intermediate_layers(
            self,
            indices: Union[int, List[int]] = 1,
            prune_norm: bool = False,
            prune_head: bool = True,
    ) -> List[int]:
        take_indices, max_index = feature_take_indices(len(self.blocks), indices)
        self.blocks = self.blocks[:max_index + 1]
        if prune_norm:
            self.norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0, "")
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` -> normalised tokens as a map ``[B, h, w, C]`` (channels last)."""
        x = self._embed(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            x = checkpoint_seq(self.blocks, x)
        else:
            x = self.blocks(x)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.global_pool == "avg":
            x = x.mean(dim=(1, 2))
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# ---------------------------------------------------------------------------------------------------------------
# Checkpoint conversion
# ---------------------------------------------------------------------------------------------------------------

# official hustvl/ViG `_load_from_state_dict` renames for checkpoints of its earlier training code (prefix-based)
_LEGACY_PREFIXES = (
    (r"^patch_embed\.proj\.", "patch_embed.0."),
    (r"^patch_embed\.norm\.", "patch_embed.2."),
    (r"^(layers\.\d+\.blocks\.\d+)\.ln_1\.", r"\1.norm."),
    (r"^(layers\.\d+\.blocks\.\d+)\.self_attention\.", r"\1.op."),
    (r"^norm\.", "classifier.norm."),
    (r"^head\.", "classifier.head."),
)

_HIERARCHICAL_RULES = (
    (r"^patch_embed\.0\.", "stem.conv1."),
    (r"^patch_embed\.2\.", "stem.norm1."),
    (r"^patch_embed\.5\.", "stem.conv2."),
    (r"^patch_embed\.7\.", "stem.norm2."),
    (r"^layers\.(\d+)\.blocks\.(\d+)\.norm\.", r"stages.\1.blocks.\2.norm1."),
    (r"^layers\.(\d+)\.blocks\.(\d+)\.op\.", r"stages.\1.blocks.\2.attn."),
    (r"^layers\.(\d+)\.blocks\.(\d+)\.", r"stages.\1.blocks.\2."),
    (r"^classifier\.norm\.", "norm."),
    (r"^classifier\.head\.", "head.fc."),
)


def _convert_hierarchical(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    if any(k.startswith(("stem.", "stages.")) for k in state_dict):
        return dict(state_dict)  # already in this layout
    out = {}
    for key, value in state_dict.items():
        if re.match(r"^outnorm\d+\.", key):
            _logger.info("ViG-H: dropping %s (OpenMMLab Backbone_HierViG output norm)", key)
            continue
        for pattern, repl in _LEGACY_PREFIXES:
            key = re.sub(pattern, repl, key)
        match = re.match(r"^layers\.(\d+)\.downsample\.([13])\.(.*)$", key)
        if match:
            part = "conv" if match.group(2) == "1" else "norm"
            key = f"stages.{int(match.group(1)) + 1}.downsample.{part}.{match.group(3)}"
        else:
            for pattern, repl in _HIERARCHICAL_RULES:
                new_key = re.sub(pattern, repl, key)
                if new_key != key:
                    key = new_key
                    break
        out[key] = value
    return out


def checkpoint_filter_fn(state_dict: Dict, model: nn.Module) -> Dict[str, torch.Tensor]:
    """Official hustvl/ViG checkpoint (plain or wrapped in ``model`` / ``state_dict``, DDP ``module.``) -> ours.

    ViG-H: the official ``HierViG`` layout (and its legacy names ``patch_embed.proj``, ``ln_1``,
    ``self_attention``, top-level ``norm`` / ``head``) is moved to ``stem`` / ``stages`` / ``norm`` / ``head.fc``;
    ``outnorm{i}`` of the OpenMMLab wrapper are dropped. Plain ViG keeps the official names; ``pos_embed`` is
    resized bicubically to the model's grid. Both: 1x1-conv shaped weights ``[out, in, 1, 1]`` (the official
    ``Linear2d`` accepts them) are flattened. Raises one ValueError listing every missing, unexpected and
    mis-shaped key.
    """
    state_dict = unwrap_state_dict(state_dict)
    if isinstance(model, HierarchicalViG):
        state_dict = _convert_hierarchical(state_dict)
    elif isinstance(model, ViG):
        state_dict = dict(state_dict)
        pos = state_dict.get("pos_embed")
        if pos is not None and pos.ndim == 3 and pos.shape != model.pos_embed.shape:
            side = math.isqrt(pos.shape[1])
            if side * side == pos.shape[1] and pos.shape[2] == model.pos_embed.shape[2]:
                state_dict["pos_embed"] = resize_pos_embed(pos, (side, side), model.pos_grid)
    else:
        raise TypeError(f"checkpoint_filter_fn: model must be a HierarchicalViG or ViG, got {type(model).__name__}")
    expected = model.state_dict()
    for key, value in state_dict.items():
        target = expected.get(key)
        if target is not None and target.ndim == 2 and value.ndim == 4 and value.shape[2:] == (1, 1):
            state_dict[key] = value.reshape(value.shape[0], value.shape[1])
    check_converted(state_dict, model, source="ViG checkpoint", classifier="head")
    return state_dict


# ---------------------------------------------------------------------------------------------------------------
# Builders, configs, registrations
# ---------------------------------------------------------------------------------------------------------------

def _create_vig_h(variant: str, pretrained: bool = False, **kwargs) -> HierarchicalViG:
    return create_backbone(
        HierarchicalViG, variant, pretrained, checkpoint_filter_fn, num_stages=len(kwargs.get("depths", (2, 2, 9, 2))),
        **kwargs)


def _create_vig(variant: str, pretrained: bool = False, **kwargs) -> ViG:
    out_indices = kwargs.pop("out_indices", 3)
    return build_model_with_cfg(
        ViG, variant, pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=out_indices, feature_cls="getter"),
        **kwargs,
    )


_HF = "https://huggingface.co/hustvl/ViG/resolve/main/"


def _cfg(url: str = "", **kwargs) -> Dict:
    return {
        "url": url,
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "pool_size": (7, 7),
        "crop_pct": 0.875,
        "interpolation": "bicubic",
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "first_conv": "stem.conv1",
        "classifier": "head.fc",
        "license": "apache-2.0",
        "paper_ids": "arXiv:2405.18425",
        "paper_name": "ViG: Linear-complexity Visual Sequence Learning with Gated Linear Attention",
        "origin_url": "https://github.com/hustvl/ViG",
        **kwargs,
    }


def _plain_cfg(url: str = "", **kwargs) -> Dict:
    return _cfg(url, pool_size=(14, 14), first_conv="patch_embed.proj.0", classifier="head", **kwargs)


default_cfgs = generate_default_cfgs({
    "vig_h_tiny.in1k": _cfg(_HF + "vig_h_t_82p8acc.pth"),
    "vig_h_small.in1k": _cfg(_HF + "vig_h_s_83p8acc.pth"),
    "vig_h_base.in1k": _cfg(_HF + "vig_h_b_84p2acc.pth"),
    "vig_tiny.in1k": _plain_cfg(_HF + "vig_t_77p2acc.pth"),
    "vig_small.in1k": _plain_cfg(_HF + "vig_s_81p7acc.pth"),
    "vig_base.in1k": _plain_cfg(_HF + "vig_b_82p6acc.pth"),
})


@register_model
def vig_h_tiny(pretrained: bool = False, **kwargs) -> HierarchicalViG:
    args = dict(embed_dim=96, depths=(2, 2, 5, 2), num_heads=(3, 6, 12, 24), drop_path_rate=0.2)
    return _create_vig_h("vig_h_tiny", pretrained=pretrained, **dict(args, **kwargs))


@register_model
def vig_h_small(pretrained: bool = False, **kwargs) -> HierarchicalViG:
    args = dict(embed_dim=96, depths=(2, 2, 17, 2), num_heads=(3, 6, 12, 24), drop_path_rate=0.3)
    return _create_vig_h("vig_h_small", pretrained=pretrained, **dict(args, **kwargs))


@register_model
def vig_h_base(pretrained: bool = False, **kwargs) -> HierarchicalViG:
    args = dict(embed_dim=128, depths=(2, 2, 17, 2), num_heads=(4, 8, 16, 32), drop_path_rate=0.6)
    return _create_vig_h("vig_h_base", pretrained=pretrained, **dict(args, **kwargs))


@register_model
def vig_tiny(pretrained: bool = False, **kwargs) -> ViG:
    args = dict(embed_dim=192, depth=12, num_heads=3, conv_act=True, out_act=True, drop_path_rate=0.0)
    return _create_vig("vig_tiny", pretrained=pretrained, **dict(args, **kwargs))


@register_model
def vig_small(pretrained: bool = False, **kwargs) -> ViG:
    args = dict(embed_dim=384, depth=12, num_heads=6, drop_path_rate=0.2)
    return _create_vig("vig_small", pretrained=pretrained, **dict(args, **kwargs))


@register_model
def vig_base(pretrained: bool = False, **kwargs) -> ViG:
    args = dict(embed_dim=768, depth=12, num_heads=12, drop_path_rate=0.5)
    return _create_vig("vig_base", pretrained=pretrained, **dict(args, **kwargs))
