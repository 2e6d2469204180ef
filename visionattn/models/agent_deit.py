"""Agent-DeiT: DeiT with agent attention, as timm's ``VisionTransformer``, for any input size.

Paper: "Agent Attention: On the Integration of Softmax and Linear Attention", Han et al., ECCV 2024
(https://arxiv.org/abs/2312.08874). Official code and weights: https://github.com/LeapLabTHU/Agent-Attention
(``agent_transformer/models/agent_deit.py``, configs ``cfgs/agent_deit_{t,s,b,s_448}.yaml``; no licence file).
This file is an independent implementation; it loads the official checkpoints through ``checkpoint_filter_fn``.

The model *is* timm's ``VisionTransformer`` (class token, learned position embedding, pre-norm blocks, final norm,
token pooling), so timm's whole ViT API comes with it: ``forward_intermediates`` per block, pruning, parameter
groups, ``features_only``. Only the blocks differ: agent blocks (``attn_type`` 'A') run
:class:`~visionattn.layers.agent.AgentAttention2d` over the patch grid with the class token as a prefix token
(agents pooled from the patch queries, the class token with its own ``ac_bias`` / ``ca_bias``, the depthwise conv
on the patch tokens only); 'B' blocks are plain DeiT attention. Official settings: DeiT-T/S agent blocks
everywhere with 49 agents (7x7); DeiT-B agent blocks 0-3 with 81 agents (9x9), plain blocks after.

What differs from the official classification code (nothing changes the output at the pretraining size):

* Any input size: ``dynamic_img_size`` and ``dynamic_img_pad`` are on by default (timm's position-embedding
  resampling; images padded on the bottom/right to a multiple of the patch), and the agent biases are resized to
  the patch grid bilinearly, as the official downstream backbones do. The official model asserts 224 (448).
* ``agent_shape`` (per block) pools another agent grid than the pretraining one; biases follow bilinearly.
* ``drop_rate`` is timm's head dropout; the official ``drop_rate`` (after position embedding and in blocks) is
  ``pos_drop_rate`` / ``proj_drop_rate``.

How blocks learn the patch grid: timm's ViT hands blocks token sequences only, so :meth:`AgentVisionTransformer.
_pos_embed` (the one place that still sees the ``[B, H, W, C]`` map) records ``(H, W)`` on every block before they
run. The consequence: with activation checkpointing, two forward passes at different sizes before one backward
recompute the first pass with the second grid; the token-count check then raises unless both grids have the same
number of patches.
"""
import logging
from functools import partial
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import Attention, DropPath, LayerNorm, LayerScale, Mlp, resample_abs_pos_embed
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model, register_notrace_function
from timm.models.vision_transformer import VisionTransformer

from ..layers.agent import AgentAttention2d
from ._helpers import check_converted, unwrap_state_dict
from .agent_swin import load_family_checkpoint, resize_agent_biases

__all__ = ["AgentVisionTransformer", "AgentViTBlock", "checkpoint_filter_fn"]

_logger = logging.getLogger(__name__)

AgentShape = Optional[Union[int, Tuple[int, int]]]


# A leaf for FX (timm's resampling branches on the sizes). torch.fx.wrap as well as timm's registry: the traced
# forward is timm's VisionTransformer's, whose module globals timm's autowrap list would patch, not these.
@torch.fx.wrap
@register_notrace_function
def resample_pos_embed_to_grid(pos_embed: torch.Tensor, grid_h: int, grid_w: int, old_size: List[int],
                               num_prefix_tokens: int) -> torch.Tensor:
    """timm's ``resample_abs_pos_embed`` to a ``grid_h x grid_w`` patch grid (identity at the pretraining grid)."""
    return resample_abs_pos_embed(pos_embed, new_size=[grid_h, grid_w], old_size=old_size,
                                  num_prefix_tokens=num_prefix_tokens)


class PlainAttention(Attention):
    """timm's ``Attention`` (DeiT's plain blocks) with the agent blocks' calling convention."""

    def forward_tokens(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        return self.forward(x)


class AgentViTBlock(nn.Module):
    """A pre-norm ViT block whose attention is agent attention (``attn_type='A'``) or plain ('B').

    ``[B, P + H*W, C] -> [B, P + H*W, C]``; the patch grid ``(H, W)`` is ``grid_size``, which the model sets before
    the blocks run. Parameter names are timm's ``Block`` (and the official ones): ``norm1``, ``attn.*``,
    ``norm2``, ``mlp.fc1/fc2``.
    """

    def __init__(
            self,
            dim: int,
            num_heads: int,
            mlp_ratio: float = 4.0,
            qkv_bias: bool = True,
            proj_bias: bool = True,
            proj_drop: float = 0.0,
            attn_drop: float = 0.0,
            init_values: Optional[float] = None,
            drop_path: float = 0.0,
            act_layer=nn.GELU,
            norm_layer=LayerNorm,
            mlp_layer=Mlp,
            attn_type: str = "A",
            agent_num: int = 49,
            agent_shape: AgentShape = None,
            bias_size: Union[int, Tuple[int, int]] = 14,
            num_prefix_tokens: int = 1,
            device=None,
            dtype=None,
    ) -> None:
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        if attn_type not in ("A", "B"):
            raise ValueError(f"AgentViTBlock: attn_type must be 'A' (agent) or 'B' (plain), got {attn_type!r}")
        self.attn_type = attn_type
        self.grid_size: Tuple[int, int] = (1, 1)
        self.norm1 = norm_layer(dim, **dd)
        if attn_type == "A":
            if not proj_bias:
                raise ValueError("AgentViTBlock: agent blocks have a proj bias (proj_bias=False is not supported)")
            self.attn = AgentAttention2d(
                dim, num_heads, agent_num=agent_num, bias_size=bias_size, agent_shape=agent_shape,
                projections="qkv", qkv_bias=qkv_bias, num_prefix_tokens=num_prefix_tokens, attn_drop=attn_drop,
                proj_drop=proj_drop, **dd)
        else:
            self.attn = PlainAttention(
                dim, num_heads=num_heads, qkv_bias=qkv_bias, proj_bias=proj_bias, attn_drop=attn_drop,
                proj_drop=proj_drop, **dd)
        self.ls1 = LayerScale(dim, init_values=init_values, **dd) if init_values else nn.Identity()
        self.drop_path1 = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = norm_layer(dim, **dd)
        self.mlp = mlp_layer(
            in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=act_layer, bias=proj_bias,
            drop=proj_drop, **dd)
        self.ls2 = LayerScale(dim, init_values=init_values, **dd) if init_values else nn.Identity()
        self.drop_path2 = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(
            self, x: torch.Tensor, attn_mask: Optional[torch.Tensor] = None, is_causal: bool = False,
    ) -> torch.Tensor:
        # real values only: under FX tracing timm's forward hands the blocks its (unused) arguments as proxies
        if isinstance(attn_mask, torch.Tensor) or (isinstance(is_causal, bool) and is_causal):
            raise ValueError("AgentViTBlock: attn_mask / is_causal are not supported by agent attention")
        height, width = self.grid_size
        x = x + self.drop_path1(self.ls1(self.attn.forward_tokens(self.norm1(x), height, width)))
        x = x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))
        return x


def _block_fn(
        attn_types: Sequence[str],
        agent_nums: Sequence[int],
        agent_shapes: Sequence[AgentShape],
        bias_size: Tuple[int, int],
        num_prefix_tokens: int,
        dim: int,
        num_heads: int,
        depth: int = 0,
        qk_norm: bool = False,
        scale_attn_norm: bool = False,
        scale_mlp_norm: bool = False,
        attn_layer=None,
        **kwargs,
) -> AgentViTBlock:
    """timm's ``block_fn``: VisionTransformer passes the block index as ``depth``."""
    if qk_norm or scale_attn_norm or scale_mlp_norm:
        raise ValueError("AgentVisionTransformer: qk_norm / scale_attn_norm / scale_mlp_norm are not supported")
    return AgentViTBlock(
        dim, num_heads, attn_type=attn_types[depth], agent_num=agent_nums[depth], agent_shape=agent_shapes[depth],
        bias_size=bias_size, num_prefix_tokens=num_prefix_tokens, **kwargs)


def _per_block(value, depth: int, name: str, scalar_types: tuple) -> list:
    if value is None or isinstance(value, scalar_types) and not isinstance(value, bool):
        return [value] * depth
    if isinstance(value, str):  # attn_type: one character for all blocks, or one per block
        value = [value] * depth if len(value) == 1 else list(value)
    value = list(value)
    if len(value) != depth:
        raise ValueError(f"AgentVisionTransformer: {name} needs one entry per block ({depth} blocks), got {value!r}")
    return value


def _is_pair(value) -> bool:
    return isinstance(value, (tuple, list)) and len(value) == 2 and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value)


class AgentVisionTransformer(VisionTransformer):
    """timm's ``VisionTransformer`` with agent attention blocks.

    Input ``[B, in_chans, H, W]`` of any size (with the default ``dynamic_img_size`` / ``dynamic_img_pad``);
    blocks see ``[B, 1 + h*w, C]`` with ``(h, w) = ceil((H, W) / patch)``; logits ``[B, num_classes]``.

    Args (beyond timm's ``VisionTransformer``, whose other arguments all apply):
        attn_type: per block, 'A' (agent) or 'B' (plain attention): a string with one character per block, or one
            character for all. Official: T/S ``'A' * 12``, B ``'AAAA' + 'B' * 8``.
        agent_num: pretraining agent count (a square: 49 = 7x7, 81 = 9x9), one int or one per block. It sizes the
            biases, which are stored for the ``img_size // patch_size`` grid.
        agent_shape: the agent grid pooled at run time (default: the pretraining ``sqrt(agent_num)`` square), one
            int / ``(a1, a2)`` pair or one per block; the biases are resized to it bilinearly.
    """

    def __init__(
            self,
            img_size: Union[int, Tuple[int, int]] = 224,
            patch_size: Union[int, Tuple[int, int]] = 16,
            depth: int = 12,
            attn_type: Union[str, Sequence[str]] = "A",
            agent_num: Union[int, Sequence[int]] = 49,
            agent_shape: Union[AgentShape, Sequence[AgentShape]] = None,
            dynamic_img_size: bool = True,
            dynamic_img_pad: bool = True,
            class_token: bool = True,
            reg_tokens: int = 0,
            **kwargs,
    ) -> None:
        if "block_fn" in kwargs:
            raise TypeError("AgentVisionTransformer builds its own blocks; block_fn is not an argument")
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f"AgentVisionTransformer: depth must be a positive int, got {depth!r}")
        attn_types = _per_block(attn_type, depth, "attn_type", ())
        agent_nums = _per_block(agent_num, depth, "agent_num", (int,))
        shapes = [agent_shape] * depth if agent_shape is None or isinstance(agent_shape, int) or _is_pair(
            agent_shape) else _per_block(agent_shape, depth, "agent_shape", ())
        img_hw = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        patch_hw = (patch_size, patch_size) if isinstance(patch_size, int) else tuple(patch_size)
        bias_size = (img_hw[0] // patch_hw[0], img_hw[1] // patch_hw[1])
        num_prefix_tokens = int(bool(class_token)) + reg_tokens
        block_fn = partial(_block_fn, attn_types, agent_nums, shapes, bias_size, num_prefix_tokens)
        super().__init__(
            img_size=img_size, patch_size=patch_size, depth=depth, dynamic_img_size=dynamic_img_size,
            dynamic_img_pad=dynamic_img_pad, class_token=class_token, reg_tokens=reg_tokens, block_fn=block_fn,
            **kwargs)
        self.attn_type = "".join(attn_types)
        self.agent_num = tuple(agent_nums)

    @torch.jit.ignore
    def no_weight_decay(self):
        return {"pos_embed", "cls_token", "reg_token"} | {
            n for n, _ in self.named_parameters() if n.rsplit(".", 1)[-1].endswith("_bias") and ".attn." in n}

    @torch.jit.ignore
    def load_pretrained(self, checkpoint_path: str, prefix: str = "") -> None:
        """Load an official or visionattn checkpoint file (timm calls this for ``custom_load`` cfgs: the official
        files carry optimizer and config beside the weights). A classifier of another size is left as it is."""
        if prefix:
            raise ValueError("AgentVisionTransformer.load_pretrained: prefix is for timm's .npz files, not supported")
        load_family_checkpoint(self, checkpoint_path, checkpoint_filter_fn)

    @torch.jit.ignore
    def set_agent_shape(self, agent_shape: Union[AgentShape, Sequence[AgentShape]] = None) -> None:
        """Pool this agent grid from now on in every agent block (one value, or one per block; None: pretraining)."""
        depth = len(self.blocks)
        shapes = [agent_shape] * depth if agent_shape is None or isinstance(agent_shape, int) or _is_pair(
            agent_shape) else _per_block(agent_shape, depth, "agent_shape", ())
        for block, shape in zip(self.blocks, shapes):
            if isinstance(block.attn, AgentAttention2d):
                block.attn.set_agent_shape(shape)

    def _pos_embed(self, x: torch.Tensor) -> torch.Tensor:
        """Patch tokens (``[B, H, W, C]`` when ``dynamic_img_size``) -> prefix + patch tokens with position embedding.

        As timm's, and it tells every block the patch grid (see the module docstring).
        """
        if self.dynamic_img_size:
            grid = (x.shape[1], x.shape[2])
        else:
            grid = self.patch_embed.grid_size
        for block in self.blocks:
            block.grid_size = grid

        to_cat = []
        if self.cls_token is not None:
            to_cat.append(self.cls_token.expand(x.shape[0], -1, -1))
        if self.reg_token is not None:
            to_cat.append(self.reg_token.expand(x.shape[0], -1, -1))
        x = x.reshape(x.shape[0], -1, x.shape[-1])
        if self.pos_embed is None:
            return torch.cat(to_cat + [x], dim=1)
        pos_embed = self.pos_embed
        if self.dynamic_img_size:
            pos_embed = resample_pos_embed_to_grid(
                self.pos_embed, grid[0], grid[1], list(self.patch_embed.grid_size),
                0 if self.no_embed_class else self.num_prefix_tokens)
        if self.no_embed_class:
            x = x + pos_embed
            if len(to_cat) > 0:
                x = torch.cat(to_cat + [x], dim=1)
        else:
            if len(to_cat) > 0:
                x = torch.cat(to_cat + [x], dim=1)
            x = x + pos_embed
        return self.pos_drop(x)


# -- checkpoints ---------------------------------------------------------------------------------------------------

def checkpoint_filter_fn(state_dict: Mapping, model: AgentVisionTransformer) -> Dict[str, torch.Tensor]:
    """Convert an official Agent-DeiT checkpoint (plain, or the released file with the model under ``model``).

    The official keys are timm's ViT keys, so conversion only resizes what depends on the pretraining resolution
    when the model was built for another: ``pos_embed`` (timm's bicubic resampling) and ``ah/aw/ha/wa_bias``
    (linear, as the official fine-tuning code). Raises ``ValueError`` listing every missing, unexpected or
    mis-shaped key (classifier keys exempt).
    """
    state_dict = unwrap_state_dict(state_dict)
    if "cls_token" not in state_dict or "patch_embed.proj.weight" not in state_dict:
        raise ValueError("state_dict is not an Agent-DeiT checkpoint: no 'cls_token' / 'patch_embed.proj.weight'")
    out = dict(state_dict)
    pos_embed = out.get("pos_embed")
    if pos_embed is not None and model.pos_embed is not None and pos_embed.shape != model.pos_embed.shape:
        out["pos_embed"] = resample_abs_pos_embed(
            pos_embed, new_size=list(model.patch_embed.grid_size),
            num_prefix_tokens=0 if model.no_embed_class else model.num_prefix_tokens, verbose=True)
    resize_agent_biases(out, model)
    check_converted(out, model, source="Agent-DeiT checkpoint", classifier="head")
    return out


# -- model creation ------------------------------------------------------------------------------------------------

# Architecture a pretrained tag implies beyond its variant (the official 448 model is another config of
# agent_deit_small). Explicit kwargs still win.
_TAG_MODEL_ARGS = {"agent_deit_small.in1k_448": dict(img_size=448)}


def _create_agent_deit(variant: str, pretrained: bool = False, **kwargs) -> AgentVisionTransformer:
    tag = kwargs.get("pretrained_cfg")
    tag_args = _TAG_MODEL_ARGS.get(f"{variant}.{tag}", {}) if isinstance(tag, str) else {}
    kwargs = {**tag_args, **kwargs}
    out_indices = kwargs.pop("out_indices", 3)
    return build_model_with_cfg(
        AgentVisionTransformer, variant, pretrained, pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=out_indices, feature_cls="getter"), **kwargs)


def _cfg(url: str = "", **kwargs) -> Dict[str, Any]:
    return {
        "url": url, "num_classes": 1000, "input_size": (3, 224, 224), "pool_size": None,
        "crop_pct": 0.875, "interpolation": "bicubic", "fixed_input_size": False,
        "mean": IMAGENET_DEFAULT_MEAN, "std": IMAGENET_DEFAULT_STD,
        "first_conv": "patch_embed.proj", "classifier": "head",
        "custom_load": True, "license": "unknown",  # no licence file in the official repository
        "origin_url": "https://github.com/LeapLabTHU/Agent-Attention",
        "paper_ids": "arXiv:2312.08874",
        "paper_name": "Agent Attention: On the Integration of Softmax and Linear Attention",
        **kwargs,
    }


_TSINGHUA = "https://cloud.tsinghua.edu.cn/f/"

default_cfgs = generate_default_cfgs({
    "agent_deit_tiny.in1k": _cfg(_TSINGHUA + "57e0904221824ee7b7af/?dl=1"),
    "agent_deit_small.in1k": _cfg(_TSINGHUA + "fdd43304372541db8ea7/?dl=1"),
    "agent_deit_small.in1k_448": _cfg(_TSINGHUA + "a228f86241c445f1969b/?dl=1", input_size=(3, 448, 448),
                                      crop_pct=1.0),
    "agent_deit_base.in1k": _cfg(_TSINGHUA + "5115f15fdd7e4ab58fbc/?dl=1"),
})


@register_model
def agent_deit_tiny(pretrained: bool = False, **kwargs) -> AgentVisionTransformer:
    args = dict(patch_size=16, embed_dim=192, depth=12, num_heads=3, attn_type="A", agent_num=49,
                drop_path_rate=0.0)
    return _create_agent_deit("agent_deit_tiny", pretrained, **dict(args, **kwargs))


@register_model
def agent_deit_small(pretrained: bool = False, **kwargs) -> AgentVisionTransformer:
    args = dict(patch_size=16, embed_dim=384, depth=12, num_heads=6, attn_type="A", agent_num=49,
                drop_path_rate=0.1)
    return _create_agent_deit("agent_deit_small", pretrained, **dict(args, **kwargs))


@register_model
def agent_deit_base(pretrained: bool = False, **kwargs) -> AgentVisionTransformer:
    args = dict(patch_size=16, embed_dim=768, depth=12, num_heads=12, attn_type="AAAA" + "B" * 8, agent_num=81,
                drop_path_rate=0.3)
    return _create_agent_deit("agent_deit_base", pretrained, **dict(args, **kwargs))

