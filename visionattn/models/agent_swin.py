"""Agent-Swin: Swin Transformer with agent attention, for any input size and any agent grid.

Paper: "Agent Attention: On the Integration of Softmax and Linear Attention", Han, Ye, Han, Pan, Song, Huang,
ECCV 2024 (https://arxiv.org/abs/2312.08874). Official code and weights: https://github.com/LeapLabTHU/Agent-Attention
(``agent_transformer/models/agent_swin.py``, cfgs ``agent_swin_{t,s,b}.yaml``; downstream backbone
``downstream/detection/mmdet/models/backbones/agent_swin.py``). An independent implementation of the same model
that loads the official checkpoints through ``checkpoint_filter_fn``.

Per stage, ``attn_type`` gives the block kind: ``A`` agent blocks (global over the stage map: the official
``WINDOW_SIZE`` 56 clamps the window to the map and turns the shift off), ``B`` Swin window blocks (window
``max(7, img_size // 32)``, shift on odd blocks where the pretraining map exceeds the window), ``M<k>`` the first
``k`` blocks agent, the rest Swin. T ``AAAB``, S ``AABB``, B ``AAMB2`` with agents ``9-16-49-49``.

What differs from the official classification code (nothing at the pretraining size):

* Any input size: agent blocks run over the whole (unpadded) map with their biases resized bilinearly to it, window
  blocks pad to a multiple of the window (the shift mask is built for the padded map), as the official downstream
  backbone does; patch merging pads odd maps.
* ``agent_shapes``: the agent grid pooled per stage, e.g. the downstream ``((9, 9), (12, 12), (14, 14), (7, 7))``;
  the biases are resized over the agent grid as the official downstream backbone does.
* Downsampling sits at the start of stages 1-3 (timm's layout), so stage outputs are the maps at strides
  4/8/16/32 before merging; attention runs through ``F.scaled_dot_product_attention``.
"""
import logging
import math
import re
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import ClassifierHead, DropPath, Mlp, trunc_normal_
from timm.models import generate_default_cfgs, get_pretrained_cfg, register_model, register_notrace_function

from ..layers.agent import AgentAttention2d
from ._contract import StagedBackbone, create_backbone, run_blocks
from ._helpers import check_converted, load_checkpoint_file, resize_rel_pos_table, unwrap_state_dict

__all__ = ["AgentSwinTransformer", "checkpoint_filter_fn", "block_types", "resize_agent_biases",
           "load_family_checkpoint"]

_logger = logging.getLogger(__name__)

AgentShapes = Optional[Sequence[Optional[Union[int, Tuple[int, int]]]]]


def block_types(attn_type: str, depths: Sequence[int]) -> List[List[str]]:
    """The official ``ATTN_TYPE`` string -> ``'A'`` / ``'B'`` per block (``'AAMB2'``: stage 3 blocks 0-1 agent)."""
    if not isinstance(attn_type, str):
        raise TypeError(f"attn_type must be a string such as 'AAAB' or 'AAMB2', got {attn_type!r}")
    num_stages = len(depths)
    head, tail = attn_type[:num_stages], attn_type[num_stages:]
    if len(head) != num_stages or any(c not in "ABM" for c in head) or (tail and not tail.isdigit()) or (
            "M" in head) != bool(tail):
        raise ValueError(f"attn_type must be {num_stages} letters of A/B/M (M followed by the count of agent "
                         f"blocks, e.g. 'AAMB2'), got {attn_type!r}")
    out = []
    for kind, depth in zip(head, depths):
        if kind == "M":
            out.append(["A" if j < int(tail) else "B" for j in range(depth)])
        else:
            out.append([kind] * depth)
    return out


def per_stage_agent_shapes(agent_shapes: AgentShapes, agent_num: Sequence[int]) -> List[Tuple[int, int]]:
    """``agent_shapes`` (None, or one entry per stage: None, an int side or an (h, w) pair) -> pairs."""
    num_stages = len(agent_num)
    if agent_shapes is None:
        agent_shapes = [None] * num_stages
    if len(agent_shapes) != num_stages:
        raise ValueError(f"agent_shapes must have one entry per stage ({num_stages}), got {agent_shapes!r}")
    out = []
    for shape, num in zip(agent_shapes, agent_num):
        if shape is None:
            side = math.isqrt(int(num))
            shape = (side, side)
        elif isinstance(shape, int):
            shape = (shape, shape)
        out.append((int(shape[0]), int(shape[1])))
    return out


def tag_input_size(variant: str, kwargs: Mapping) -> Optional[int]:
    """The input side of the pretrained tag asked for (``create_model('name.tag')``), else None."""
    cfg = kwargs.get("pretrained_cfg")
    if isinstance(cfg, str):
        try:
            cfg = get_pretrained_cfg(f"{variant}.{cfg}")
        except Exception:  # an unknown tag is reported by timm itself
            return None
    size = getattr(cfg, "input_size", None) if cfg is not None and not isinstance(cfg, Mapping) else (
        cfg.get("input_size") if cfg is not None else None)
    return int(size[-1]) if size else None


def _relative_position_index(window: int, device=None) -> torch.Tensor:
    coords = torch.stack(torch.meshgrid(torch.arange(window, device=device), torch.arange(window, device=device),
                                        indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return rel[:, :, 0] * (2 * window - 1) + rel[:, :, 1]


def window_regions(size: int, window: int, shift: int, device: torch.device) -> torch.Tensor:
    """Swin's shifted-window region id (0, 1, 2) of each position along one axis of length ``size``."""
    idx = torch.arange(size, device=device)
    return (idx >= size - window).long() + (idx >= size - shift).long()


@register_notrace_function
def shifted_window_mask(height: int, width: int, window: int, shift: int, device: torch.device) -> torch.Tensor:
    """``[nW, N, N]`` additive mask (0 / -100) of shifted windows on a padded ``height x width`` map (Swin's)."""
    rows = window_regions(height, window, shift, device)
    ids = rows[:, None] * 3 + window_regions(width, window, shift, device)[None, :]
    ids = ids.reshape(height // window, window, width // window, window).permute(0, 2, 1, 3)
    ids = ids.reshape(-1, window * window)
    diff = ids[:, None, :] - ids[:, :, None]
    return torch.zeros(diff.shape, device=device).masked_fill(diff != 0, -100.0)


class WindowAttention(nn.Module):
    """Swin (shifted) window attention with a relative-position bias: ``[B, H, W, C]`` -> same, any H, W."""

    def __init__(self, dim: int, num_heads: int, window: int, shift: int, qkv_bias: bool = True,
                 attn_drop: float = 0., proj_drop: float = 0., device=None, dtype=None):
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        self.num_heads = num_heads
        self.window = window
        self.shift = shift
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias, **dd)
        self.proj = nn.Linear(dim, dim, **dd)
        self.proj_drop = nn.Dropout(proj_drop)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads, **dd))
        self.register_buffer("relative_position_index", torch.empty(window * window, window * window,
                                                                    device=device, dtype=torch.long), persistent=False)
        trunc_normal_(self.relative_position_bias_table, std=.02)
        self.init_non_persistent_buffers()

    def init_non_persistent_buffers(self) -> None:
        with torch.no_grad():
            self.relative_position_index.copy_(_relative_position_index(self.window,
                                                                        self.relative_position_index.device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, height, width, channels = x.shape
        ws, shift, heads = self.window, self.shift, self.num_heads
        pad_h, pad_w = (ws - height % ws) % ws, (ws - width % ws) % ws
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
        hp, wp = height + pad_h, width + pad_w
        if shift > 0:
            x = torch.roll(x, shifts=(-shift, -shift), dims=(1, 2))
        windows = x.reshape(batch, hp // ws, ws, wp // ws, ws, channels).permute(0, 1, 3, 2, 4, 5)
        windows = windows.reshape(-1, ws * ws, channels)
        n = ws * ws
        qkv = self.qkv(windows).reshape(-1, n, 3, heads, channels // heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        bias = bias.permute(2, 0, 1).unsqueeze(0)  # [1, heads, N, N]
        if shift > 0:
            mask = shifted_window_mask(hp, wp, ws, shift, x.device).to(bias.dtype)  # [nW, N, N]
            bias = (bias + mask.unsqueeze(1)).repeat(batch, 1, 1, 1)  # image-major windows
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype),
                                             dropout_p=self.attn_drop if self.training else 0.)
        out = out.transpose(1, 2).clone(memory_format=torch.contiguous_format).reshape(-1, n, channels)  # ONNX view
        out = self.proj_drop(self.proj(out))
        out = out.reshape(batch, hp // ws, wp // ws, ws, ws, channels).permute(0, 1, 3, 2, 4, 5)
        out = out.reshape(batch, hp, wp, channels)
        if shift > 0:
            out = torch.roll(out, shifts=(shift, shift), dims=(1, 2))
        return out[:, :height, :width, :].contiguous()


class AgentSwinBlock(nn.Module):
    """Pre-norm block, ``[B, H, W, C]``: agent attention (global) or Swin window attention, then the MLP."""

    def __init__(self, dim: int, num_heads: int, kind: str, bias_size: int, agent_num: int,
                 agent_shape: Tuple[int, int], window: int, shift: int, mlp_ratio: float = 4., qkv_bias: bool = True,
                 proj_drop: float = 0., attn_drop: float = 0., drop_path: float = 0., device=None, dtype=None):
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        self.kind = kind
        self.norm1 = nn.LayerNorm(dim, **dd)
        if kind == "A":
            self.attn = AgentAttention2d(
                dim, num_heads, agent_num=agent_num, bias_size=bias_size, agent_shape=agent_shape,
                qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=proj_drop, **dd)
        else:
            self.attn = WindowAttention(dim, num_heads, window, shift, qkv_bias=qkv_bias, attn_drop=attn_drop,
                                        proj_drop=proj_drop, **dd)
        self.drop_path1 = DropPath(drop_path) if drop_path > 0. else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, **dd)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU, drop=proj_drop, **dd)
        self.drop_path2 = DropPath(drop_path) if drop_path > 0. else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path1(self.attn(self.norm1(x)))
        return x + self.drop_path2(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """``[B, H, W, C]`` -> ``[B, ceil(H/2), ceil(W/2), 2C]``: Swin's 2x2 concat (official order), LayerNorm, Linear."""

    def __init__(self, dim: int, device=None, dtype=None):
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim, **dd)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[1], x.shape[2]
        x = F.pad(x, (0, 0, 0, width % 2, 0, height % 2))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))


class PatchEmbed(nn.Module):
    """``[B, C, H, W]`` -> ``[B, H/4, W/4, D]`` (conv 4x4 stride 4, LayerNorm); odd sizes are padded."""

    def __init__(self, in_chans: int, dim: int, patch_size: int = 4, device=None, dtype=None):
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size, **dd)
        self.norm = nn.LayerNorm(dim, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch_size
        x = F.pad(x, (0, (p - x.shape[3] % p) % p, 0, (p - x.shape[2] % p) % p))
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class AgentSwinStage(nn.Module):
    def __init__(self, dim_in: int, dim: int, kinds: Sequence[str], num_heads: int, bias_size: int, agent_num: int,
                 agent_shape: Tuple[int, int], window: int, downsample: bool, mlp_ratio: float = 4.,
                 qkv_bias: bool = True, proj_drop: float = 0., attn_drop: float = 0., drop_path: Sequence[float] = (),
                 device=None, dtype=None):
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        self.downsample = PatchMerging(dim_in, **dd) if downsample else nn.Identity()
        # the official classification block: a window no smaller than the map is the map, without shift
        shift_ok = bias_size > window
        self.blocks = nn.Sequential(*[
            AgentSwinBlock(dim, num_heads, kind, bias_size, agent_num, agent_shape,
                           window if shift_ok else min(window, bias_size),
                           window // 2 if (shift_ok and j % 2 == 1) else 0,
                           mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, proj_drop=proj_drop, attn_drop=attn_drop,
                           drop_path=drop_path[j] if len(drop_path) else 0., **dd)
            for j, kind in enumerate(kinds)])
        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        if torch.jit.is_scripting():
            return self.blocks(x)
        return run_blocks(self.blocks, x, self.grad_checkpointing)


class AgentSwinTransformer(StagedBackbone):
    """Agent-Swin for any input size: ``[B, in_chans, H, W]`` -> ``[B, num_classes]``; stage outputs NHWC."""

    stem_pattern = r"^stem"
    stage_extra_pattern = r"downsample"
    no_weight_decay_patterns = ("relative_position_bias_table",)
    output_fmt = "NHWC"

    def __init__(
            self,
            img_size: int = 224,
            in_chans: int = 3,
            num_classes: int = 1000,
            global_pool: str = "avg",
            embed_dim: int = 96,
            depths: Sequence[int] = (2, 2, 6, 2),
            num_heads: Sequence[int] = (3, 6, 12, 24),
            attn_type: str = "AAAB",
            agent_num: Sequence[int] = (9, 16, 49, 49),
            agent_shapes: AgentShapes = None,
            window_size: Optional[int] = None,
            mlp_ratio: float = 4.,
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
            img_size: the pretraining resolution; sizes the agent biases (stage maps ``img_size / 4 / 2**i``) and the
                default Swin window. Inputs of any size are accepted.
            attn_type: the official ``ATTN_TYPE`` (T ``AAAB``, S ``AABB``, B ``AAMB2``).
            agent_num: pretraining agents per stage (squares), official ``9-16-49-49``.
            agent_shapes: agent grid pooled per stage (None: the pretraining grid); the official downstream
                detection/segmentation backbones use ``((9, 9), (12, 12), (14, 14), (7, 7))``.
            window_size: Swin window of ``B`` blocks; default ``max(7, img_size // 32)`` (official).
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
        if len(num_heads) != num_stages or len(agent_num) != num_stages:
            raise ValueError(f"num_heads and agent_num need one entry per stage ({num_stages})")
        kinds = block_types(attn_type, depths)
        agent_num = tuple(int(a) for a in agent_num)
        shapes = per_stage_agent_shapes(agent_shapes, agent_num)
        window = window_size if window_size is not None else max(7, img_size // 32)
        dims = [embed_dim * 2 ** i for i in range(num_stages)]

        self.num_classes = num_classes
        self.in_chans = in_chans
        self.global_pool = global_pool
        self.drop_rate = drop_rate
        self.attn_type = attn_type
        self.num_features = self.head_hidden_size = dims[-1]
        self.stem = PatchEmbed(in_chans, embed_dim, **dd)
        dpr = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()
        stages, self.feature_info = [], []
        for i in range(num_stages):
            stages.append(AgentSwinStage(
                dims[max(i - 1, 0)], dims[i], kinds[i], int(num_heads[i]), img_size // 4 // 2 ** i, agent_num[i],
                shapes[i], window, downsample=i > 0, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                proj_drop=proj_drop_rate, attn_drop=attn_drop_rate,
                drop_path=dpr[sum(depths[:i]):sum(depths[:i + 1])], **dd))
            self.feature_info.append(dict(num_chs=dims[i], reduction=2 ** (i + 2), module=f"stages.{i}"))
        self.stages = nn.Sequential(*stages)
        self.norm = nn.LayerNorm(self.num_features, **dd)
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
        """Load an official or visionattn checkpoint file (timm calls this for ``custom_load`` cfgs: the official
        files carry optimizer and config beside the weights). A classifier of another size is left as it is."""
        load_family_checkpoint(self, checkpoint_path, checkpoint_filter_fn)

    @torch.jit.ignore
    def set_agent_shapes(self, agent_shapes: AgentShapes) -> None:
        """Pool these agent grids per stage from now on (None entries: the pretraining grid)."""
        nums = [next((b.attn.agent_num for b in s.blocks if b.kind == "A"), 1) for s in self.stages]
        for stage, shape in zip(self.stages, per_stage_agent_shapes(agent_shapes, nums)):
            for block in stage.blocks:
                if block.kind == "A":
                    block.attn.set_agent_shape(shape)


def load_family_checkpoint(model: nn.Module, checkpoint_path: str, filter_fn) -> None:
    """``filter_fn`` of the file at ``checkpoint_path``, loaded strictly (the classifier only when it fits)."""
    state_dict = filter_fn(load_checkpoint_file(checkpoint_path), model)
    own = model.state_dict()
    head_keys = [k for k in state_dict if k.startswith("head.")]
    if not head_keys or any(k not in own or own[k].shape != state_dict[k].shape for k in head_keys):
        for k in head_keys:
            state_dict.pop(k)
        model.load_state_dict(state_dict, strict=False)
        _logger.info("classifier not loaded from %s", checkpoint_path)
    else:
        model.load_state_dict(state_dict, strict=True)


# -- checkpoint conversion ---------------------------------------------------------------------------------------

def resize_agent_biases(state_dict: Dict[str, torch.Tensor], model: nn.Module) -> None:
    """Resize agent map biases (``ah/aw/ha/wa``) made at another pretraining size to the model's, in place.

    Linear interpolation along the map axis, as the official ``load_pretrained`` does (``an/na`` are 7x7 always).
    """
    own = model.state_dict()
    for key, value in list(state_dict.items()):
        name = key.rsplit(".", 1)[-1]
        if name not in ("ah_bias", "aw_bias", "ha_bias", "wa_bias") or key not in own:
            continue
        target = own[key].shape
        if value.shape == target or value.ndim != 5:
            continue
        axis = {"ah_bias": 3, "aw_bias": 4, "ha_bias": 2, "wa_bias": 3}[name]
        moved = value.movedim(axis, -1)
        lead = moved.shape[:-1]
        resized = F.interpolate(moved.reshape(1, -1, moved.shape[-1]).float(), size=target[axis], mode="linear",
                                align_corners=False)
        state_dict[key] = resized.reshape(*lead, target[axis]).movedim(-1, axis).to(value.dtype).contiguous()
        _logger.info("resized %s from %s to %s", key, tuple(value.shape), tuple(target))


def _resize_rel_pos_tables(state_dict: Dict[str, torch.Tensor], model: nn.Module) -> None:
    own = model.state_dict()
    for key, value in list(state_dict.items()):
        if not key.endswith("relative_position_bias_table") or key not in own or value.shape == own[key].shape:
            continue
        side, new_side = math.isqrt(value.shape[0]), math.isqrt(own[key].shape[0])
        table = value.t().reshape(value.shape[1], side, side)
        state_dict[key] = resize_rel_pos_table(table, (new_side, new_side)).reshape(value.shape[1], -1).t().contiguous()


def checkpoint_filter_fn(state_dict: Mapping, model: AgentSwinTransformer) -> Dict[str, torch.Tensor]:
    """Official Agent-Swin checkpoint (plain, or the released file with ``model`` beside optimizer and config) ->
    this model's keys. ``layers.{i}.downsample`` moves to ``stages.{i+1}.downsample``; the recomputed
    ``relative_position_index`` / ``attn_mask`` buffers are dropped; biases of another pretraining size are resized.
    """
    state_dict = unwrap_state_dict(state_dict)
    if "patch_embed.proj.weight" in state_dict:
        source, out = "official Agent-Swin checkpoint", {}
        for key, value in state_dict.items():
            if key.endswith(("relative_position_index", "attn_mask")):
                continue
            new = key.replace("patch_embed.", "stem.", 1) if key.startswith("patch_embed.") else key
            m = re.match(r"layers\.(\d+)\.(downsample|blocks)\.(.*)", key)
            if m:
                stage = int(m.group(1)) + (1 if m.group(2) == "downsample" else 0)
                new = f"stages.{stage}.{m.group(2)}.{m.group(3)}"
            elif key.startswith("head."):
                new = "head.fc." + key[len("head."):]
            out[new] = value
        state_dict = out
    elif "stem.proj.weight" in state_dict:
        source = "visionattn agent_swin checkpoint"
    else:
        raise ValueError("state_dict is not an Agent-Swin checkpoint: expected 'patch_embed.proj.weight' (official) "
                         "or 'stem.proj.weight' (visionattn) among its keys")
    resize_agent_biases(state_dict, model)
    _resize_rel_pos_tables(state_dict, model)
    check_converted(state_dict, model, source=source, classifier="head")
    return state_dict


# -- model creation ----------------------------------------------------------------------------------------------

def _create(variant: str, pretrained: bool = False, **kwargs) -> AgentSwinTransformer:
    size = tag_input_size(variant, kwargs)
    if size is not None and size != 224:
        kwargs.setdefault("img_size", size)
    return create_backbone(AgentSwinTransformer, variant, pretrained, checkpoint_filter_fn,
                           num_stages=len(kwargs.get("depths", (2, 2, 6, 2))), **kwargs)


def _cfg(url: str = "", **kwargs) -> Dict:
    return {
        "url": url, "num_classes": 1000, "input_size": (3, 224, 224), "pool_size": (7, 7),
        "crop_pct": 0.875, "interpolation": "bicubic", "fixed_input_size": False,
        "mean": IMAGENET_DEFAULT_MEAN, "std": IMAGENET_DEFAULT_STD,
        "first_conv": "stem.proj", "classifier": "head.fc",
        "origin_url": "https://github.com/LeapLabTHU/Agent-Attention", "paper_ids": "arXiv:2312.08874",
        "paper_name": "Agent Attention: On the Integration of Softmax and Linear Attention",
        "custom_load": True, "license": "unknown",
        **kwargs,
    }


_TSINGHUA = "https://cloud.tsinghua.edu.cn/f/"

# official ImageNet-1K weights (agent_transformer/README.md); each file holds ``model`` beside optimizer and config
default_cfgs = generate_default_cfgs({
    "agent_swin_t.in1k": _cfg(_TSINGHUA + "a2ddc1190c224f768a41/?dl=1"),
    "agent_swin_s.in1k": _cfg(_TSINGHUA + "f607172c9fea4d6e99bb/?dl=1"),
    "agent_swin_b.in1k": _cfg(_TSINGHUA + "4fcd2d0114bb490483c3/?dl=1"),
    "agent_swin_s.in1k_288": _cfg(_TSINGHUA + "09760394e93b4046a25e/?dl=1", input_size=(3, 288, 288),
                                  pool_size=(9, 9), crop_pct=1.0),
    "agent_swin_b.in1k_384": _cfg(_TSINGHUA + "bb84ee9058954706a557/?dl=1", input_size=(3, 384, 384),
                                  pool_size=(12, 12), crop_pct=1.0),
})


@register_model
def agent_swin_t(pretrained: bool = False, **kwargs) -> AgentSwinTransformer:
    args = dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), attn_type="AAAB", drop_path_rate=0.2)
    return _create("agent_swin_t", pretrained, **dict(args, **kwargs))


@register_model
def agent_swin_s(pretrained: bool = False, **kwargs) -> AgentSwinTransformer:
    args = dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24), attn_type="AABB", drop_path_rate=0.3)
    return _create("agent_swin_s", pretrained, **dict(args, **kwargs))


@register_model
def agent_swin_b(pretrained: bool = False, **kwargs) -> AgentSwinTransformer:
    args = dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32), attn_type="AAMB2", drop_path_rate=0.5)
    return _create("agent_swin_b", pretrained, **dict(args, **kwargs))
