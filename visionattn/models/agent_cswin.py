"""Agent-CSWin: the CSWin Transformer with agent attention, for any input size.

Paper: "Agent Attention: On the Integration of Softmax and Linear Attention", Han et al., ECCV 2024
(https://arxiv.org/abs/2312.08874), on "CSWin Transformer", Dong et al., CVPR 2022 (https://arxiv.org/abs/2107.00652).
Official code and weights: https://github.com/LeapLabTHU/Agent-Attention (``agent_transformer/models/agent_cswin.py``,
``cfgs/agent_cswin_{t,s,b,b_384}.yaml``; no licence file). This file is an independent implementation; it loads the
official checkpoints (the released files keep the model under ``model``) through ``checkpoint_filter_fn``.

Architecture (as the official classification model): a 7x7 stride-4 conv stem with LayerNorm, four stages of
pre-norm blocks (``qkv`` and ``proj`` on the block, GELU MLP) joined by 3x3 stride-2 conv + LayerNorm merges, a final
LayerNorm, average pooling and a linear head. ``attn_type`` gives each stage's blocks: 'A' = agent attention over the
whole stage map, all heads, with CSWin's LePE depthwise conv on V as the agent layer's DWC (official: stages 1-2,
``AABB``, agent counts 9-16-49-49); 'B' = CSWin's cross-shaped window attention: half the heads in vertical stripes of
width ``split_size``, half in horizontal stripes, each with LePE (one branch over the whole map when the stripe
covers the pretraining map, as in the last stage).

What differs from the official code (nothing changes the output at the pretraining size):

* Any input size. The stem and merges are convs (any size); agent blocks pool the agents from the actual map and
  resize their biases bilinearly to it (and to ``agent_shapes``, per stage), as the official downstream backbones
  do; stripe attention zero-pads the map to a multiple of ``split_size`` and masks the padded keys, so the
  output does not depend on the padding. The official model asserts its pretraining map sizes.
* Downsampling sits at the start of stages 1-3 (timm's layout), so stage outputs are the maps at strides 4-32.
* Attention runs through ``F.scaled_dot_product_attention``; the classifier is timm's ``ClassifierHead``
  (``head.fc``).
"""
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import ClassifierHead, DropPath, Mlp, trunc_normal_
from timm.models import generate_default_cfgs, register_model

from ..layers.agent import AgentAttention2d
from ._contract import StagedBackbone, create_backbone, run_blocks
from ._helpers import check_converted, unwrap_state_dict
from .agent_swin import load_family_checkpoint, resize_agent_biases

__all__ = ["AgentCSWin", "checkpoint_filter_fn"]

AgentShape = Optional[Union[int, Tuple[int, int]]]


class ConvStem(nn.Module):
    """7x7 stride-4 conv (padding 2) then LayerNorm: ``[B, 3, H, W] -> [B, H', W', C]``."""

    def __init__(self, in_chans: int, dim: int, device=None, dtype=None) -> None:
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        self.conv = nn.Conv2d(in_chans, dim, kernel_size=7, stride=4, padding=2, **dd)
        self.norm = nn.LayerNorm(dim, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x).permute(0, 2, 3, 1))


class MergeBlock(nn.Module):
    """3x3 stride-2 conv (padding 1) then LayerNorm, NHWC in and out (the official ``Merge_Block``)."""

    def __init__(self, dim: int, out_dim: int, device=None, dtype=None) -> None:
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        self.conv = nn.Conv2d(dim, out_dim, kernel_size=3, stride=2, padding=1, **dd)
        self.norm = nn.LayerNorm(out_dim, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))


class LePEAttention(nn.Module):
    """One branch of CSWin's cross-shaped window attention, with its locally-enhanced position encoding (LePE).

    ``q, k, v`` ``[B, H, W, C]`` (projected; C = this branch's channels) -> ``[B, H, W, C]``. The map is cut into
    stripes: ``direction`` 0 = vertical stripes ``H x split`` (whole height), 1 = horizontal ``split x W``, -1 = one
    window, the whole map. Per stripe: ``softmax(s q k^T) v + get_v(v)``, ``get_v`` a depthwise 3x3 conv over the
    stripe (zero outside it). Maps that are not a multiple of ``split`` are zero-padded and the padded keys masked.
    """

    def __init__(self, dim: int, num_heads: int, direction: int, split_size: int, attn_drop: float = 0.0,
                 device=None, dtype=None) -> None:
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        if direction not in (-1, 0, 1):
            raise ValueError(f"LePEAttention: direction must be -1 (whole map), 0 or 1, got {direction}")
        self.num_heads = num_heads
        self.direction = direction
        self.split_size = split_size
        self.scale = (dim // num_heads) ** -0.5
        self.attn_drop = float(attn_drop)
        self.get_v = nn.Conv2d(dim, dim, kernel_size=3, stride=1, padding=1, groups=dim, **dd)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        batch, height, width, channels = q.shape[0], q.shape[1], q.shape[2], q.shape[3]
        if self.direction == 0:
            win_h, win_w = height, self.split_size
        elif self.direction == 1:
            win_h, win_w = self.split_size, width
        else:
            win_h, win_w = height, width
        pad_h = (win_h - height % win_h) % win_h
        pad_w = (win_w - width % win_w) % win_w
        qkv = F.pad(torch.cat([q, k, v], dim=-1), (0, 0, 0, pad_w, 0, pad_h))
        rows, cols = (height + pad_h) // win_h, (width + pad_w) // win_w
        windows = qkv.reshape(batch, rows, win_h, cols, win_w, 3 * channels).permute(0, 1, 3, 2, 4, 5)
        num_windows, length, heads = batch * rows * cols, win_h * win_w, self.num_heads
        q, k, v = windows.reshape(num_windows, length, 3, channels).unbind(2)
        lepe = self.get_v(v.transpose(1, 2).reshape(num_windows, channels, win_h, win_w))
        lepe = lepe.flatten(2).transpose(1, 2)
        q = q.reshape(num_windows, length, heads, channels // heads).transpose(1, 2)
        k = k.reshape(num_windows, length, heads, channels // heads).transpose(1, 2)
        v = v.reshape(num_windows, length, heads, channels // heads).transpose(1, 2)
        # padded keys get -inf; every stripe keeps at least one real column / row (pad < split)
        # (ones_like of a [H, W] slice, not torch.ones(height, width): FX traces the sizes as proxies)
        valid = F.pad(torch.ones_like(qkv[0, :height, :width, 0], dtype=torch.bool), (0, pad_w, 0, pad_h))
        valid = valid.reshape(rows, win_h, cols, win_w).permute(0, 2, 1, 3).reshape(rows * cols, 1, 1, length)
        mask = torch.zeros_like(valid, dtype=q.dtype).masked_fill(~valid, float("-inf"))
        mask = mask.repeat(batch, 1, 1, 1)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.attn_drop if self.training else 0.0, scale=self.scale)
        out = out.transpose(1, 2).clone(memory_format=torch.contiguous_format).reshape(num_windows, length, channels)
        out = out + lepe
        out = out.reshape(batch, rows, cols, win_h, win_w, channels).permute(0, 1, 3, 2, 4, 5)
        out = out.reshape(batch, rows * win_h * cols * win_w, channels)
        # crop the padding by gathering the real tokens: a fresh contiguous tensor whatever the padding (a slice
        # would be contiguous only when nothing was padded, which torch.compile guards on: a recompile per parity)
        # indices from the tensors, not torch.arange(height): FX traces the sizes as proxies
        row_index = torch.ones_like(out[0, :height, 0], dtype=torch.long).cumsum(0) - 1
        col_index = torch.ones_like(out[0, :width, 0], dtype=torch.long).cumsum(0) - 1
        keep = (row_index[:, None] * (cols * win_w) + col_index[None, :]).flatten()
        return out.index_select(1, keep).reshape(batch, height, width, channels)


class AgentCSWinBlock(nn.Module):
    """Pre-norm block: ``qkv`` -> agent attention ('A') or cross-shaped stripe attention ('B') -> ``proj``; MLP.

    NHWC ``[B, H, W, C]`` in and out. Parameter names follow the official block (``qkv``, ``norm1``, ``proj``,
    ``mlp.fc1/fc2``, ``norm2``; agent attention as ``attn.*``, stripe branches as ``attns.{0,1}.get_v``).
    """

    def __init__(
            self,
            dim: int,
            num_heads: int,
            attn_type: str,
            agent_num: int,
            agent_shape: AgentShape,
            bias_size: int,
            split_size: int,
            num_branches: int,
            mlp_ratio: float = 4.0,
            qkv_bias: bool = True,
            proj_drop: float = 0.0,
            attn_drop: float = 0.0,
            drop_path: float = 0.0,
            device=None,
            dtype=None,
    ) -> None:
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        if attn_type not in ("A", "B"):
            raise ValueError(f"AgentCSWinBlock: attn_type must be 'A' or 'B', got {attn_type!r}")
        if attn_type == "B" and (num_branches not in (1, 2) or (num_branches == 2 and num_heads % 2)):
            raise ValueError(f"AgentCSWinBlock: stripes in {num_branches} branches need an even num_heads, "
                             f"got {num_heads}")
        self.dim = dim
        self.attn_type = attn_type
        self.num_branches = num_branches if attn_type == "B" else 1
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias, **dd)
        self.norm1 = nn.LayerNorm(dim, **dd)
        self.proj = nn.Linear(dim, dim, **dd)
        if attn_type == "A":
            self.attn = AgentAttention2d(
                dim, num_heads, agent_num=agent_num, bias_size=bias_size, agent_shape=agent_shape,
                projections="none", attn_drop=attn_drop, **dd)
            self.attns = None
        else:
            self.attn = None
            if self.num_branches == 1:
                branches = [LePEAttention(dim, num_heads, -1, split_size, attn_drop, **dd)]
            else:
                branches = [LePEAttention(dim // 2, num_heads // 2, i, split_size, attn_drop, **dd) for i in (0, 1)]
            self.attns = nn.ModuleList(branches)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU, drop=proj_drop, **dd)
        self.norm2 = nn.LayerNorm(dim, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, height, width, channels = x.shape[0], x.shape[1], x.shape[2], x.shape[3]
        q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)
        if self.attn is not None:
            out = self.attn.attend(
                q.reshape(batch, height * width, channels), k.reshape(batch, height * width, channels),
                v.reshape(batch, height * width, channels), height, width, height, width)
            out = out.reshape(batch, height, width, channels)
        elif self.attns is not None:
            if self.num_branches == 1:
                out = self.attns[0](q, k, v)
            else:
                half = channels // 2
                outs: List[torch.Tensor] = []
                for i, branch in enumerate(self.attns):
                    lo, hi = i * half, (i + 1) * half
                    outs.append(branch(q[..., lo:hi], k[..., lo:hi], v[..., lo:hi]))
                out = torch.cat(outs, dim=-1)
        else:
            out = q
        x = x + self.drop_path(self.proj(out))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class AgentCSWinStage(nn.Module):
    """Optional entering merge (conv 3x3 stride 2 + LayerNorm), then blocks. NHWC in and out."""

    def __init__(self, dim: int, out_dim: int, downsample: bool, blocks: List[nn.Module], device=None,
                 dtype=None) -> None:
        super().__init__()
        self.grad_checkpointing = False
        self.downsample = MergeBlock(dim, out_dim, device=device, dtype=dtype) if downsample else nn.Identity()
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        if torch.jit.is_scripting():  # run_blocks takes a module, which TorchScript cannot type
            return self.blocks(x)
        return run_blocks(self.blocks, x, self.grad_checkpointing)


def _per_stage(value, num_stages: int, name: str) -> list:
    if not isinstance(value, (str, list, tuple)) or len(value) != num_stages:
        raise ValueError(f"AgentCSWin: {name} needs one entry per stage ({num_stages} stages), got {value!r}")
    return list(value)


class AgentCSWin(StagedBackbone):
    """Agent-CSWin backbone and classifier.

    Input ``[B, in_chans, H, W]`` of any size; stage ``i`` runs at stride ``4 * 2**i`` with ``embed_dim * 2**i``
    channels (NHWC inside, ``output_fmt='NHWC'``); logits ``[B, num_classes]``.

    Args:
        depths, num_heads: blocks and heads per stage.
        embed_dim: channels of stage 0 (doubled at each stage).
        attn_type: per stage 'A' (agent attention over the whole stage map) or 'B' (cross-shaped stripes); a
            string like the official ``'AABB'``, or per stage a string with one character per block.
        agent_num: pretraining agent count per stage (squares; official ``(9, 16, 49, 49)``); sizes the biases.
        agent_shapes: per stage, the agent grid pooled at run time (None: the pretraining square), e.g. a
            downstream ``((9, 9), (12, 12), (14, 14), (7, 7))``; one value applies to every stage.
        split_size: stripe width per stage for 'B' blocks (official ``(1, 2, 7, 7)``; ``(1, 2, 12, 12)`` at 384).
        img_size: the pretraining input size: agent biases are stored for its stage maps (``img_size / 4 / 2**i``)
            and a 'B' stage whose ``split_size`` equals its pretraining map (the last stage) uses one whole-map
            branch. Any input size runs.
        drop_rate: head dropout. proj_drop_rate: MLP dropout (the official ``drop_rate``). attn_drop_rate,
        drop_path_rate: as usual (stochastic depth rising linearly from 0).
    """

    stem_pattern = r"^stem"
    stage_extra_pattern = r"downsample"
    no_weight_decay_patterns = ("an_bias", "na_bias", "ah_bias", "aw_bias", "ha_bias", "wa_bias")
    output_fmt = "NHWC"

    def __init__(
            self,
            depths: Sequence[int] = (2, 4, 18, 1),
            num_heads: Sequence[int] = (2, 4, 8, 16),
            embed_dim: int = 64,
            attn_type: Union[str, Sequence[str]] = "AABB",
            agent_num: Sequence[int] = (9, 16, 49, 49),
            agent_shapes: Union[AgentShape, Sequence[AgentShape]] = None,
            split_size: Sequence[int] = (1, 2, 7, 7),
            img_size: Union[int, Tuple[int, int]] = 224,
            mlp_ratio: float = 4.0,
            qkv_bias: bool = True,
            in_chans: int = 3,
            num_classes: int = 1000,
            global_pool: str = "avg",
            drop_rate: float = 0.0,
            proj_drop_rate: float = 0.0,
            attn_drop_rate: float = 0.0,
            drop_path_rate: float = 0.2,
            device=None,
            dtype=None,
    ) -> None:
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        depths = tuple(depths)
        num_stages = len(depths)
        num_heads = _per_stage(num_heads, num_stages, "num_heads")
        agent_num = _per_stage(agent_num, num_stages, "agent_num")
        split_size = _per_stage(split_size, num_stages, "split_size")
        attn_types = []
        for i, entry in enumerate(_per_stage(attn_type, num_stages, "attn_type")):
            entry = entry * depths[i] if len(entry) == 1 else entry
            if len(entry) != depths[i] or set(entry) - {"A", "B"}:
                raise ValueError(
                    f"AgentCSWin: attn_type[{i}] must be 'A', 'B' or one of them per block ({depths[i]}), "
                    f"got {entry!r}")
            attn_types.append(entry)
        if agent_shapes is None or isinstance(agent_shapes, int) or (
                isinstance(agent_shapes, (tuple, list)) and len(agent_shapes) == 2
                and all(isinstance(a, int) for a in agent_shapes) and num_stages != 2):
            agent_shapes = [agent_shapes] * num_stages
        agent_shapes = _per_stage(agent_shapes, num_stages, "agent_shapes")
        img_h, img_w = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        if img_h != img_w:
            raise ValueError(f"AgentCSWin: img_size (the pretraining size) must be square, got {img_size!r}")
        dims = [int(embed_dim * 2 ** i) for i in range(num_stages)]

        self.num_classes = num_classes
        self.in_chans = in_chans
        self.global_pool = global_pool
        self.embed_dim = embed_dim
        self.num_features = self.head_hidden_size = dims[-1]
        self.attn_type = tuple(attn_types)
        self.agent_num = tuple(agent_num)
        self.split_size = tuple(split_size)

        self.stem = ConvStem(in_chans, embed_dim, **dd)
        total = sum(depths)
        dpr = [drop_path_rate * i / (total - 1) if total > 1 else 0.0 for i in range(total)]
        stages, self.feature_info = [], []
        for i in range(num_stages):
            resolution = img_h // (4 * 2 ** i)
            last = i == num_stages - 1 or split_size[i] == resolution
            blocks = [
                AgentCSWinBlock(
                    dims[i], num_heads[i], attn_type=attn_types[i][j], agent_num=agent_num[i],
                    agent_shape=agent_shapes[i], bias_size=resolution, split_size=split_size[i],
                    num_branches=1 if last else 2, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, proj_drop=proj_drop_rate,
                    attn_drop=attn_drop_rate, drop_path=dpr[sum(depths[:i]) + j], **dd)
                for j in range(depths[i])
            ]
            stages.append(AgentCSWinStage(dims[max(i - 1, 0)], dims[i], i > 0, blocks, **dd))
            self.feature_info.append(dict(num_chs=dims[i], reduction=4 * 2 ** i, module=f"stages.{i}"))
        self.stages = nn.Sequential(*stages)
        self.norm = nn.LayerNorm(self.num_features, **dd)
        self.head = ClassifierHead(
            self.num_features, num_classes, pool_type=global_pool, drop_rate=drop_rate, input_fmt=self.output_fmt,
            **dd)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        # as the official code: truncated-normal linears with zero bias, unit LayerNorms; convs keep torch's init
        if isinstance(module, nn.Linear):
            trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def load_pretrained(self, checkpoint_path: str) -> None:
        """Load an official or visionattn checkpoint file (timm calls this for ``custom_load`` cfgs: the official
        files carry optimizer and config beside the weights). A classifier of another size is left as it is."""
        load_family_checkpoint(self, checkpoint_path, checkpoint_filter_fn)

    @torch.jit.ignore
    def set_agent_shapes(self, agent_shapes: Union[AgentShape, Sequence[AgentShape]] = None) -> None:
        """Pool these agent grids from now on (one value, or one per stage; None: the pretraining grids)."""
        num_stages = len(self.stages)
        if agent_shapes is None or isinstance(agent_shapes, int) or (
                len(agent_shapes) == 2 and all(isinstance(a, int) for a in agent_shapes)):
            agent_shapes = [agent_shapes] * num_stages
        agent_shapes = _per_stage(agent_shapes, num_stages, "agent_shapes")
        for stage, shape in zip(self.stages, agent_shapes):
            for block in stage.blocks:
                if block.attn is not None:
                    block.attn.set_agent_shape(shape)


# -- checkpoints ---------------------------------------------------------------------------------------------------

_OFFICIAL_BLOCK = re.compile(r"^stage(\d+)\.(\d+)\.(.+)$")
_OFFICIAL_MERGE = re.compile(r"^merge(\d+)\.(.+)$")


def _convert_official(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    out = {}
    for key, value in state_dict.items():
        if key.startswith("stage1_conv_embed."):
            key = key.replace("stage1_conv_embed.0.", "stem.conv.").replace("stage1_conv_embed.2.", "stem.norm.")
        elif _OFFICIAL_MERGE.match(key):
            m = _OFFICIAL_MERGE.match(key)
            key = f"stages.{m.group(1)}.downsample.{m.group(2)}"
        elif _OFFICIAL_BLOCK.match(key):
            m = _OFFICIAL_BLOCK.match(key)
            stage, block, rest = int(m.group(1)) - 1, int(m.group(2)), m.group(3)
            prefix = f"stages.{stage}.blocks.{block}."
            if rest.startswith("attns.0.") and f"stage{m.group(1)}.{block}.attns.0.an_bias" in state_dict:
                rest = "attn." + rest[len("attns.0."):].replace("get_v.", "dwc.")
            key = prefix + rest
        elif key.startswith("head.") and not key.startswith("head.fc."):
            key = "head.fc." + key[len("head."):]
        out[key] = value
    return out


def checkpoint_filter_fn(state_dict: Mapping, model: AgentCSWin) -> Dict[str, torch.Tensor]:
    """Convert an official Agent-CSWin checkpoint (plain, or the released file with the model under ``model``).

    ``stage1_conv_embed.{0,2}`` -> ``stem.{conv,norm}``; ``merge{i}`` -> ``stages.{i}.downsample``;
    ``stage{i}.{j}`` -> ``stages.{i-1}.blocks.{j}`` with the agent branch ``attns.0.*`` -> ``attn.*``
    (``get_v`` -> ``dwc``); ``head`` -> ``head.fc``. Agent ``ah/aw/ha/wa`` biases made for another pretraining
    size are resized linearly (the official fine-tuning rule). Raises ``ValueError`` listing every mismatch.
    """
    state_dict = unwrap_state_dict(state_dict)
    if "stage1_conv_embed.0.weight" in state_dict:
        source, state_dict = "official Agent-CSWin checkpoint", _convert_official(state_dict)
    elif "stem.conv.weight" in state_dict:
        source = "visionattn agent_cswin checkpoint"
    else:
        raise ValueError("state_dict is not an Agent-CSWin checkpoint: expected 'stage1_conv_embed.0.weight' "
                         "(official) or 'stem.conv.weight' (visionattn) among its keys")
    resize_agent_biases(state_dict, model)
    check_converted(state_dict, model, source=source, classifier="head")
    return state_dict


# -- model creation ------------------------------------------------------------------------------------------------

# Architecture a pretrained tag implies beyond its variant (the official 384 model is Agent_CSWin_96_36292_base_384
# with CSWIN_LA_SPLIT_SIZE 96-48-24-12). Explicit kwargs still win.
_TAG_MODEL_ARGS = {"agent_cswin_base.in1k_384": dict(img_size=384, split_size=(1, 2, 12, 12))}


def _create_agent_cswin(variant: str, pretrained: bool = False, **kwargs) -> AgentCSWin:
    tag = kwargs.get("pretrained_cfg")
    tag_args = _TAG_MODEL_ARGS.get(f"{variant}.{tag}", {}) if isinstance(tag, str) else {}
    kwargs = {**tag_args, **kwargs}
    return create_backbone(AgentCSWin, variant, pretrained, checkpoint_filter_fn,
                           num_stages=len(kwargs.get("depths", (2, 4, 18, 1))), **kwargs)


def _cfg(url: str = "", **kwargs) -> Dict[str, Any]:
    return {
        "url": url, "num_classes": 1000, "input_size": (3, 224, 224), "pool_size": (7, 7),
        "crop_pct": 0.9, "interpolation": "bicubic", "fixed_input_size": False,
        "mean": IMAGENET_DEFAULT_MEAN, "std": IMAGENET_DEFAULT_STD,
        "first_conv": "stem.conv", "classifier": "head.fc",
        "custom_load": True, "license": "unknown",  # no licence file in the official repository
        "origin_url": "https://github.com/LeapLabTHU/Agent-Attention",
        "paper_ids": "arXiv:2312.08874",
        "paper_name": "Agent Attention: On the Integration of Softmax and Linear Attention",
        **kwargs,
    }


_TSINGHUA = "https://cloud.tsinghua.edu.cn/f/"

default_cfgs = generate_default_cfgs({
    "agent_cswin_tiny.in1k": _cfg(_TSINGHUA + "8c562a74441e46d5902b/?dl=1"),
    "agent_cswin_small.in1k": _cfg(_TSINGHUA + "30eb8af675bc4b7a8747/?dl=1"),
    "agent_cswin_base.in1k": _cfg(_TSINGHUA + "c8035b0839b2410c8c9f/?dl=1"),
    "agent_cswin_base.in1k_384": _cfg(_TSINGHUA + "1239be0df44b47719432/?dl=1", input_size=(3, 384, 384),
                                      pool_size=(12, 12), crop_pct=1.0),
})


@register_model
def agent_cswin_tiny(pretrained: bool = False, **kwargs) -> AgentCSWin:
    args = dict(embed_dim=64, depths=(2, 4, 18, 1), num_heads=(2, 4, 8, 16), drop_path_rate=0.2)
    return _create_agent_cswin("agent_cswin_tiny", pretrained, **dict(args, **kwargs))


@register_model
def agent_cswin_small(pretrained: bool = False, **kwargs) -> AgentCSWin:
    args = dict(embed_dim=64, depths=(3, 6, 29, 2), num_heads=(2, 4, 8, 16), drop_path_rate=0.4)
    return _create_agent_cswin("agent_cswin_small", pretrained, **dict(args, **kwargs))


@register_model
def agent_cswin_base(pretrained: bool = False, **kwargs) -> AgentCSWin:
    args = dict(embed_dim=96, depths=(3, 6, 29, 2), num_heads=(4, 8, 16, 32), drop_path_rate=0.5)
    return _create_agent_cswin("agent_cswin_base", pretrained, **dict(args, **kwargs))
