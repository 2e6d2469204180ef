"""Agent-PVT: Pyramid Vision Transformer with agent attention, for any input size and any agent grid.

Paper: "Agent Attention: On the Integration of Softmax and Linear Attention", ECCV 2024
(https://arxiv.org/abs/2312.08874). Official code and weights: https://github.com/LeapLabTHU/Agent-Attention
(``agent_transformer/models/agent_pvt.py``, cfgs ``agent_pvt_{t,s,m,b}.yaml``; downstream backbone
``downstream/detection/mmdet/models/backbones/agent_pvt.py``). An independent implementation of the same model
that loads the official checkpoints through ``checkpoint_filter_fn``.

PVT v1 widths 64/128/320/512, heads 1/2/5/8, MLP ratios 8/8/4/4; ``attn_type`` per stage (``A`` agent attention
with ``agent_sr_ratios`` spatial reduction, 1 in every official config; ``B`` PVT attention with ``sr_ratios``
8/4/2/1); agents ``9-16-49-49``. Patch-embed LayerNorms eps 1e-5, block norms 1e-6, no final norm (the head
averages the stage-4 tokens).

What differs from the official classification code (nothing at the pretraining size): any input size (position
embeddings and agent biases resized bilinearly to the map, as the official downstream backbone does; odd maps
are padded before each stride-2 patch embedding), ``agent_shapes`` per stage for the downstream agent grids
(e.g. ``((12, 12), (16, 16), (28, 28), (28, 28))``), timm's stage layout (stage ``i`` holds ``patch_embed{i+1}``,
``pos_embed{i+1}`` and ``block{i+1}``), ``F.scaled_dot_product_attention``.
"""
import re
from typing import Dict, Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import ClassifierHead, DropPath, Mlp, trunc_normal_
from timm.models import generate_default_cfgs, register_model

from ..layers.agent import AgentAttention2d
from ._contract import StagedBackbone, create_backbone, run_blocks
from ._helpers import check_converted, unwrap_state_dict
from .agent_swin import (AgentShapes, load_family_checkpoint, per_stage_agent_shapes, resize_agent_biases,
                         tag_input_size)

__all__ = ["AgentPVT", "checkpoint_filter_fn"]


class SpatialReductionAttention(nn.Module):
    """PVT attention (``B`` blocks): K/V from a ``sr x sr`` stride-``sr`` conv + LayerNorm. ``[B, H, W, C]``."""

    def __init__(self, dim: int, num_heads: int, sr_ratio: int, qkv_bias: bool = True, attn_drop: float = 0.,
                 proj_drop: float = 0., device=None, dtype=None):
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        self.num_heads = num_heads
        self.attn_drop = attn_drop
        self.q = nn.Linear(dim, dim, bias=qkv_bias, **dd)
        self.kv = nn.Linear(dim, dim * 2, bias=qkv_bias, **dd)
        self.proj = nn.Linear(dim, dim, **dd)
        self.proj_drop = nn.Dropout(proj_drop)
        self.sr = nn.Conv2d(dim, dim, kernel_size=sr_ratio, stride=sr_ratio, **dd) if sr_ratio > 1 else None
        self.norm = nn.LayerNorm(dim, **dd) if sr_ratio > 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, height, width, channels = x.shape
        heads = self.num_heads
        q = self.q(x).reshape(batch, height * width, heads, channels // heads).transpose(1, 2)
        kv_in = x.reshape(batch, height * width, channels)
        if self.sr is not None and self.norm is not None:
            kv_in = self.norm(self.sr(x.permute(0, 3, 1, 2)).flatten(2).transpose(1, 2))
        kv = self.kv(kv_in).reshape(batch, -1, 2, heads, channels // heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, kv[0], kv[1], dropout_p=self.attn_drop if self.training else 0.)
        out = out.transpose(1, 2).reshape(batch, height, width, channels)
        return self.proj_drop(self.proj(out))


class AgentPVTBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, kind: str, sr_ratio: int, bias_size: int, agent_num: int,
                 agent_shape, mlp_ratio: float, qkv_bias: bool = True, proj_drop: float = 0., attn_drop: float = 0.,
                 drop_path: float = 0., device=None, dtype=None):
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        self.kind = kind
        self.norm1 = nn.LayerNorm(dim, eps=1e-6, **dd)
        if kind == "A":
            self.attn = AgentAttention2d(
                dim, num_heads, agent_num=agent_num, bias_size=bias_size, agent_shape=agent_shape,
                projections="q_kv", qkv_bias=qkv_bias, sr_ratio=sr_ratio, attn_drop=attn_drop, proj_drop=proj_drop,
                **dd)
        else:
            self.attn = SpatialReductionAttention(dim, num_heads, sr_ratio, qkv_bias=qkv_bias, attn_drop=attn_drop,
                                                  proj_drop=proj_drop, **dd)
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6, **dd)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU, drop=proj_drop, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """``[B, C, H, W]`` -> ``[B, H/p, W/p, D]``: conv p x p stride p (odd sizes padded), LayerNorm (eps 1e-5)."""

    def __init__(self, in_chans: int, dim: int, patch_size: int, device=None, dtype=None):
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size, **dd)
        self.norm = nn.LayerNorm(dim, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch_size
        x = F.pad(x, (0, (p - x.shape[3] % p) % p, 0, (p - x.shape[2] % p) % p))
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class AgentPVTStage(nn.Module):
    """Patch embedding (``[B, C_in, H, W]`` or the previous stage's NHWC map), position embedding, blocks."""

    def __init__(self, dim_in: int, dim: int, patch_size: int, grid: int, kinds: Sequence[str], num_heads: int,
                 sr_ratio: int, agent_sr_ratio: int, agent_num: int, agent_shape, mlp_ratio: float,
                 qkv_bias: bool = True, proj_drop: float = 0., attn_drop: float = 0., drop_path: Sequence[float] = (),
                 nhwc_input: bool = True, device=None, dtype=None):
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        self.nhwc_input = nhwc_input
        self.grid = grid
        self.patch_embed = PatchEmbed(dim_in, dim, patch_size, **dd)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid, dim, **dd))
        trunc_normal_(self.pos_embed, std=.02)
        self.blocks = nn.Sequential(*[
            AgentPVTBlock(dim, num_heads, kind, agent_sr_ratio if kind == "A" else sr_ratio, grid, agent_num,
                          agent_shape, mlp_ratio, qkv_bias=qkv_bias, proj_drop=proj_drop, attn_drop=attn_drop,
                          drop_path=drop_path[j] if len(drop_path) else 0., **dd)
            for j, kind in enumerate(kinds)])
        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.nhwc_input:
            x = x.permute(0, 3, 1, 2)
        x = self.patch_embed(x)
        batch, height, width, channels = x.shape
        # bilinear to the map (the identity at the pretraining grid), as the official code
        pos = self.pos_embed.reshape(1, self.grid, self.grid, channels).permute(0, 3, 1, 2)
        pos = F.interpolate(pos, size=(height, width), mode="bilinear", align_corners=False)
        x = x + pos.permute(0, 2, 3, 1)
        if torch.jit.is_scripting():
            return self.blocks(x)
        return run_blocks(self.blocks, x, self.grad_checkpointing)


class AgentPVT(StagedBackbone):
    """Agent-PVT for any input size: ``[B, in_chans, H, W]`` -> ``[B, num_classes]``; stage outputs NHWC."""

    stem_pattern = r"^stages\.0\.(?:patch_embed|pos_embed)"
    stage_extra_pattern = r"patch_embed|pos_embed"
    no_weight_decay_patterns = ("pos_embed",)
    output_fmt = "NHWC"

    def __init__(
            self,
            img_size: int = 224,
            in_chans: int = 3,
            num_classes: int = 1000,
            global_pool: str = "avg",
            embed_dims: Sequence[int] = (64, 128, 320, 512),
            depths: Sequence[int] = (3, 4, 6, 3),
            num_heads: Sequence[int] = (1, 2, 5, 8),
            mlp_ratios: Sequence[float] = (8, 8, 4, 4),
            sr_ratios: Sequence[int] = (8, 4, 2, 1),
            attn_type: str = "AAAA",
            agent_sr_ratios: Sequence[int] = (1, 1, 1, 1),
            agent_num: Sequence[int] = (9, 16, 49, 49),
            agent_shapes: AgentShapes = None,
            qkv_bias: bool = True,
            drop_rate: float = 0.,
            proj_drop_rate: float = 0.,
            attn_drop_rate: float = 0.,
            drop_path_rate: float = 0.1,
            device=None,
            dtype=None,
    ):
        """
        Args:
            img_size: the pretraining resolution (sizes position embeddings and agent biases); any input runs.
            attn_type: ``A``/``B`` per stage (official ``AAAA``).
            agent_sr_ratios: K/V spatial reduction of agent blocks (official ``1111``).
            agent_num: pretraining agents per stage (squares); agent_shapes: grids pooled per stage (None: those),
                the official downstream backbones use ``((12, 12), (16, 16), (28, 28), (28, 28))``.
        """
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        if isinstance(img_size, (tuple, list)):
            if len(img_size) != 2 or img_size[0] != img_size[1]:
                raise ValueError(f"img_size must be one side (square pretraining), got {img_size!r}")
            img_size = img_size[0]
        if not isinstance(img_size, int) or img_size < 32:
            raise ValueError(f"img_size must be an int >= 32, got {img_size!r}")
        depths = tuple(int(d) for d in depths)
        num_stages = len(depths)
        for name, values in (("embed_dims", embed_dims), ("num_heads", num_heads), ("mlp_ratios", mlp_ratios),
                             ("sr_ratios", sr_ratios), ("agent_sr_ratios", agent_sr_ratios),
                             ("agent_num", agent_num)):
            if len(values) != num_stages:
                raise ValueError(f"{name} needs one entry per stage ({num_stages}), got {values!r}")
        if not isinstance(attn_type, str) or len(attn_type) != num_stages or any(c not in "AB" for c in attn_type):
            raise ValueError(f"attn_type must be {num_stages} letters of A/B (e.g. 'AAAA'), got {attn_type!r}")
        agent_sr_ratios = [int(s) for s in agent_sr_ratios]
        shapes = per_stage_agent_shapes(agent_shapes, [int(a) for a in agent_num])

        self.num_classes = num_classes
        self.in_chans = in_chans
        self.global_pool = global_pool
        self.drop_rate = drop_rate
        self.attn_type = attn_type
        self.num_features = self.head_hidden_size = embed_dims[-1]
        self.stem = nn.Identity()
        dpr = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()
        stages, self.feature_info = [], []
        for i in range(num_stages):
            stages.append(AgentPVTStage(
                in_chans if i == 0 else embed_dims[i - 1], embed_dims[i], 4 if i == 0 else 2,
                img_size // 4 // 2 ** i, [attn_type[i]] * depths[i], int(num_heads[i]), int(sr_ratios[i]),
                agent_sr_ratios[i], int(agent_num[i]), shapes[i], mlp_ratios[i], qkv_bias=qkv_bias,
                proj_drop=proj_drop_rate, attn_drop=attn_drop_rate,
                drop_path=dpr[sum(depths[:i]):sum(depths[:i + 1])], nhwc_input=i > 0, **dd))
            self.feature_info.append(dict(num_chs=embed_dims[i], reduction=2 ** (i + 2), module=f"stages.{i}"))
        self.stages = nn.Sequential(*stages)
        self.norm = nn.Identity()
        self.head = ClassifierHead(self.num_features, num_classes, pool_type=global_pool, drop_rate=drop_rate,
                                   input_fmt="NHWC", **dd)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            trunc_normal_(module.weight, std=.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def load_pretrained(self, checkpoint_path: str) -> None:
        """Load an official or visionattn checkpoint file (timm's ``custom_load``)."""
        load_family_checkpoint(self, checkpoint_path, checkpoint_filter_fn)

    @torch.jit.ignore
    def set_agent_shapes(self, agent_shapes: AgentShapes) -> None:
        """Pool these agent grids per stage from now on (None entries: the pretraining grid)."""
        nums = [next((b.attn.agent_num for b in s.blocks if b.kind == "A"), 1) for s in self.stages]
        for stage, shape in zip(self.stages, per_stage_agent_shapes(agent_shapes, nums)):
            for block in stage.blocks:
                if block.kind == "A":
                    block.attn.set_agent_shape(shape)


def _resize_pos_embeds(state_dict: Dict[str, torch.Tensor], model: nn.Module) -> None:
    own = model.state_dict()
    for key, value in list(state_dict.items()):
        if not key.endswith("pos_embed") or key not in own or value.shape == own[key].shape:
            continue
        side, new_side = int(value.shape[1] ** 0.5), int(own[key].shape[1] ** 0.5)
        grid = value.reshape(1, side, side, -1).permute(0, 3, 1, 2).float()
        grid = F.interpolate(grid, size=(new_side, new_side), mode="bilinear", align_corners=False)
        state_dict[key] = grid.permute(0, 2, 3, 1).reshape(1, new_side * new_side, -1).to(value.dtype)


def checkpoint_filter_fn(state_dict: Mapping, model: AgentPVT) -> Dict[str, torch.Tensor]:
    """Official Agent-PVT checkpoint (plain, or the released file with ``model`` beside optimizer and config) ->
    this model's keys: ``patch_embed{i}`` / ``pos_embed{i}`` / ``block{i}`` -> ``stages.{i-1}.*``, ``head`` ->
    ``head.fc``; position embeddings and agent biases of another pretraining size are resized."""
    state_dict = unwrap_state_dict(state_dict)
    if "patch_embed1.proj.weight" in state_dict:
        source, out = "official Agent-PVT checkpoint", {}
        for key, value in state_dict.items():
            new = key
            m = re.match(r"(patch_embed|pos_embed|block)(\d+)(.*)", key)
            if m:
                part = {"patch_embed": "patch_embed", "pos_embed": "pos_embed", "block": "blocks"}[m.group(1)]
                new = f"stages.{int(m.group(2)) - 1}.{part}{m.group(3)}"
            elif key.startswith("head."):
                new = "head.fc." + key[len("head."):]
            out[new] = value
        state_dict = out
    elif "stages.0.patch_embed.proj.weight" in state_dict:
        source = "visionattn agent_pvt checkpoint"
    else:
        raise ValueError("state_dict is not an Agent-PVT checkpoint: expected 'patch_embed1.proj.weight' (official) "
                         "or 'stages.0.patch_embed.proj.weight' (visionattn) among its keys")
    resize_agent_biases(state_dict, model)
    _resize_pos_embeds(state_dict, model)
    check_converted(state_dict, model, source=source, classifier="head")
    return state_dict


def _create(variant: str, pretrained: bool = False, **kwargs) -> AgentPVT:
    size = tag_input_size(variant, kwargs)
    if size is not None and size != 224:
        kwargs.setdefault("img_size", size)
    return create_backbone(AgentPVT, variant, pretrained, checkpoint_filter_fn,
                           num_stages=len(kwargs.get("depths", (3, 4, 6, 3))), **kwargs)


def _cfg(url: str = "", **kwargs) -> Dict:
    return {
        "url": url, "num_classes": 1000, "input_size": (3, 224, 224), "pool_size": (7, 7),
        "crop_pct": 0.875, "interpolation": "bicubic", "fixed_input_size": False,
        "mean": IMAGENET_DEFAULT_MEAN, "std": IMAGENET_DEFAULT_STD,
        "first_conv": "stages.0.patch_embed.proj", "classifier": "head.fc", "custom_load": True,
        "license": "unknown",
        "origin_url": "https://github.com/LeapLabTHU/Agent-Attention", "paper_ids": "arXiv:2312.08874",
        "paper_name": "Agent Attention: On the Integration of Softmax and Linear Attention",
        **kwargs,
    }


_TSINGHUA = "https://cloud.tsinghua.edu.cn/f/"

# official ImageNet-1K weights (agent_transformer/README.md); each file holds ``model`` beside optimizer and config
default_cfgs = generate_default_cfgs({
    "agent_pvt_tiny.in1k": _cfg(_TSINGHUA + "13fdf0e0a7c5498c934f/?dl=1"),
    "agent_pvt_small.in1k": _cfg(_TSINGHUA + "36b8be9a8863456685a3/?dl=1"),
    "agent_pvt_medium.in1k": _cfg(_TSINGHUA + "4d00ecacf18b45f9b88c/?dl=1"),
    "agent_pvt_medium.in1k_256": _cfg(_TSINGHUA + "654df734121643b19c52/?dl=1", input_size=(3, 256, 256),
                                      pool_size=(8, 8), crop_pct=1.0),
    "agent_pvt_large.in1k": _cfg(_TSINGHUA + "040cfe0cfbbe4762ad09/?dl=1"),
})

_PVT = dict(embed_dims=(64, 128, 320, 512), num_heads=(1, 2, 5, 8), mlp_ratios=(8, 8, 4, 4), sr_ratios=(8, 4, 2, 1),
            attn_type="AAAA", agent_num=(9, 16, 49, 49))


@register_model
def agent_pvt_tiny(pretrained: bool = False, **kwargs) -> AgentPVT:
    return _create("agent_pvt_tiny", pretrained, **dict(dict(_PVT,
                                                               depths=(2, 2, 2, 2), drop_path_rate=0.1), **kwargs))


@register_model
def agent_pvt_small(pretrained: bool = False, **kwargs) -> AgentPVT:
    return _create("agent_pvt_small", pretrained, **dict(dict(_PVT,
                                                               depths=(3, 4, 6, 3), drop_path_rate=0.1), **kwargs))


@register_model
def agent_pvt_medium(pretrained: bool = False, **kwargs) -> AgentPVT:
    return _create("agent_pvt_medium", pretrained, **dict(dict(_PVT,
                                                               depths=(3, 4, 18, 3), drop_path_rate=0.3), **kwargs))


@register_model
def agent_pvt_large(pretrained: bool = False, **kwargs) -> AgentPVT:
    return _create("agent_pvt_large", pretrained, **dict(dict(_PVT,
                                                               depths=(3, 8, 27, 3), drop_path_rate=0.3), **kwargs))
