"""STViT / SViT: Vision Transformer with Super Token Sampling, for any input size.

Paper: "Vision Transformer with Super Token Sampling", Huang, Zhou, Cao, Liu, He, CVPR 2023
(https://arxiv.org/abs/2211.11167; the paper calls it SViT, the code STViT). Official code and weights:
https://github.com/hhb072/STViT (no licence file). This file is an independent implementation of the same
architecture; it loads the official checkpoints through ``checkpoint_filter_fn``.

Architecture (as the official classification model): a four-conv stem (stride 4, each conv followed by GELU then
BatchNorm), four stages of blocks ``x + dwconv(x)`` -> ``x + STA(LN(x))`` -> ``x + ConvFFN(BN(x))``, conv + BN
downsampling, and a 1x1-conv / BN / Swish projection to 1024 channels before average pooling and the classifier.
Stages 1-2 use super token attention (STA, super tokens of 8x8 and 4x4 pixels); stages 3-4 plain global MHSA.

What differs from the official code (none of it changes the output):

* STA (:func:`super_token_sample`, :func:`super_token_upsample`) is the official eval-path math on the same
  cell-blocked layout, written without the identity-kernel conv "unfold"/"fold" parameters: the 3x3 neighbourhood
  of a super token is gathered with ``F.unfold`` on the (small) super-token grid, the scatter back with ``F.fold``.
  Nothing of the size of the pixel map is ever made 9 times, in forward or backward.
* The fixed ``attn.unfold.weights`` / ``attn.fold.weights`` of the official state dict are dropped on load.
* Downsampling sits at the start of stages 1-3 (timm's layout) instead of at the end of levels 0-2, so stage
  outputs are the features at strides 4/8/16/32.
* The projection (1x1 conv, BN, Swish) is the model's final "norm": ``forward_features`` returns the projected
  ``[B, 1024, H/32, W/32]`` map, stage outputs (``features_only``) are the un-projected stage maps.
* The refine attention runs through ``F.scaled_dot_product_attention``.
"""
import logging
import re
from typing import Dict, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import ClassifierHead, DropPath, LayerNorm2d, LayerScale2d
from timm.models import generate_default_cfgs, register_model, register_notrace_function

from ._contract import StagedBackbone, create_backbone, run_blocks
from ._helpers import check_converted, load_checkpoint_file, unwrap_state_dict

__all__ = ["STViT", "SuperTokenAttention", "super_token_sample", "super_token_upsample", "checkpoint_filter_fn"]

_logger = logging.getLogger(__name__)


# -- super token attention ----------------------------------------------------------------------------------------

@register_notrace_function
def super_token_sample(
        x: torch.Tensor, stoken_size: Tuple[int, int], scale: float, eps: float = 1e-12,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Sample super tokens from a pixel map (STA steps 1-4, one association iteration).

    Args:
        x: pixel map ``[B, C, H, W]``; zero-padded right/bottom to multiples of ``stoken_size``.
        stoken_size: ``(h, w)`` pixels per super token.
        scale: association logit scale (the official ``C ** -0.5``, the full channel dim).
        eps: added to the (detached) normaliser.

    Returns:
        ``(stokens, affinity)``: super tokens ``[B, C, hh, ww]`` (hh = ceil(H / h), ww = ceil(W / w)) and the
        association ``[B, hh * ww, h * w, 9]`` of every pixel of a cell with the 3x3 neighbouring super tokens of
        its cell (neighbour ``ky * 3 + kx`` is the cell at offset ``(ky - 1, kx - 1)``; off-grid neighbours are
        zero vectors, so they take softmax mass and contribute nothing). The association is computed without
        gradient, as in the official code; gradient reaches ``x`` through the weighted sum only.
    """
    b, c, height, width = x.shape
    h, w = stoken_size
    x = F.pad(x, (0, (w - width % w) % w, 0, (h - height % h) % h))
    hh, ww = x.shape[2] // h, x.shape[3] // w
    # [B, cells, pixels of a cell, C]: one copy of the map, the layout both matmuls work on
    pixels = x.reshape(b, c, hh, h, ww, w).permute(0, 2, 4, 3, 5, 1).reshape(b, hh * ww, h * w, c)
    with torch.no_grad():
        stokens = F.avg_pool2d(x, (h, w))  # padding zeros included, as the official adaptive pool
        neighbours = F.unfold(stokens, 3, padding=1).reshape(b, c, 9, hh * ww).permute(0, 3, 1, 2)  # [B,N,C,9]
        affinity = ((pixels @ neighbours) * scale).softmax(-1)  # [B, N, hw, 9]
        norm = F.fold(affinity.sum(2).transpose(1, 2), (hh, ww), 3, padding=1)  # [B, 1, hh, ww]
    weighted = (pixels.transpose(-1, -2) @ affinity).permute(0, 2, 3, 1).reshape(b, c * 9, hh * ww)  # [B,C*9,N]
    stokens = F.fold(weighted, (hh, ww), 3, padding=1)  # scatter-add to the neighbours, off-grid ones dropped
    return stokens / (norm + eps), affinity


@register_notrace_function
def super_token_upsample(
        stokens: torch.Tensor, affinity: torch.Tensor, stoken_size: Tuple[int, int], height: int, width: int,
) -> torch.Tensor:
    """Map super tokens back to pixels (STA step 6): ``x_p = sum_j A[p, j] S_j`` over the 3x3 neighbours, cropped.

    ``stokens [B, C, hh, ww]``, ``affinity [B, hh * ww, h * w, 9]`` (from :func:`super_token_sample`) ->
    ``[B, C, height, width]``.
    """
    b, c, hh, ww = stokens.shape
    h, w = stoken_size
    neighbours = F.unfold(stokens, 3, padding=1).reshape(b, c, 9, hh * ww).permute(0, 3, 1, 2)  # [B, N, C, 9]
    x = neighbours @ affinity.transpose(-1, -2)  # [B, N, C, hw]
    x = x.reshape(b, hh, ww, c, h, w).permute(0, 3, 1, 4, 2, 5).reshape(b, c, hh * h, ww * w)
    return x[:, :, :height, :width]


class ConvAttention(nn.Module):
    """Global multi-head self-attention on a map, with 1x1-conv qkv and projection. ``[B, C, H, W]`` in and out.

    Channels of ``qkv`` are ordered per head ``[q | k | v]`` (the official layout), not ``(3, heads, head_dim)``.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, attn_drop: float = 0.,
                 proj_drop: float = 0., device=None, dtype=None):
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        if num_heads < 1 or dim % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide dim={dim}")
        self.num_heads = num_heads
        self.qkv = nn.Conv2d(dim, dim * 3, 1, bias=qkv_bias, **dd)
        self.attn_drop = attn_drop
        self.proj = nn.Conv2d(dim, dim, 1, **dd)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(x).reshape(b, self.num_heads, 3 * (c // self.num_heads), h * w).transpose(-1, -2)
        q, k, v = qkv.chunk(3, dim=-1)  # [B, heads, N, head_dim]
        x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.)
        x = x.transpose(-1, -2).reshape(b, c, h, w)
        return self.proj_drop(self.proj(x))


class SuperTokenAttention(nn.Module):
    """STA: sample super tokens, refine them with global MHSA, map them back. ``[B, C, H, W]`` in and out.

    With ``stoken_size == (1, 1)`` it is plain global MHSA over all pixels (the official ``direct_forward``).
    """

    def __init__(self, dim: int, num_heads: int, stoken_size: Tuple[int, int], qkv_bias: bool = True,
                 attn_drop: float = 0., proj_drop: float = 0., device=None, dtype=None):
        super().__init__()
        self.stoken_size = (int(stoken_size[0]), int(stoken_size[1]))
        if min(self.stoken_size) < 1:
            raise ValueError(f"stoken_size must be positive, got {stoken_size!r}")
        self.sampled = max(self.stoken_size) > 1
        self.scale = dim ** -0.5
        self.refine = ConvAttention(dim, num_heads, qkv_bias, attn_drop, proj_drop, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.sampled:
            return self.refine(x)
        stokens, affinity = super_token_sample(x, self.stoken_size, self.scale)
        return super_token_upsample(self.refine(stokens), affinity, self.stoken_size, x.shape[2], x.shape[3])


# -- blocks --------------------------------------------------------------------------------------------------------

class ConvMlp(nn.Module):
    """1x1 conv -> GELU -> (h + dwconv3x3(h)) -> 1x1 conv. ``[B, C, H, W]`` in and out."""

    def __init__(self, dim: int, hidden: int, drop: float = 0., device=None, dtype=None):
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1, **dd)
        self.act = nn.GELU()
        self.conv = nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden, **dd)
        self.fc2 = nn.Conv2d(hidden, dim, 1, **dd)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.act(self.fc1(x)))
        x = x + self.conv(x)
        return self.drop(self.fc2(x))


class STViTBlock(nn.Module):
    """``x + dwconv(x)``; ``x + ls1(STA(LN(x)))``; ``x + ls2(ConvMlp(BN(x)))``. ``[B, C, H, W]`` in and out."""

    def __init__(
            self,
            dim: int,
            num_heads: int,
            stoken_size: Tuple[int, int],
            mlp_ratio: float = 4.,
            qkv_bias: bool = True,
            layer_scale: Optional[float] = None,
            proj_drop: float = 0.,
            attn_drop: float = 0.,
            drop_path: float = 0.,
            device=None,
            dtype=None,
    ):
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        self.pos_embed = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim, **dd)
        self.norm1 = LayerNorm2d(dim, eps=1e-6, **dd)
        self.attn = SuperTokenAttention(dim, num_heads, stoken_size, qkv_bias, attn_drop, proj_drop, **dd)
        self.ls1 = LayerScale2d(dim, layer_scale, **dd) if layer_scale is not None else nn.Identity()
        self.drop_path1 = DropPath(drop_path) if drop_path > 0. else nn.Identity()
        self.norm2 = nn.BatchNorm2d(dim, **dd)
        self.mlp = ConvMlp(dim, int(dim * mlp_ratio), drop=proj_drop, **dd)
        self.ls2 = LayerScale2d(dim, layer_scale, **dd) if layer_scale is not None else nn.Identity()
        self.drop_path2 = DropPath(drop_path) if drop_path > 0. else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos_embed(x)
        x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x))))
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))


def _conv_bn(dim_in: int, dim_out: int, stride: int, dd: Dict) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(dim_in, dim_out, 3, stride, 1, **dd), nn.BatchNorm2d(dim_out, **dd))


class STViTStage(nn.Module):
    """Optional conv3x3-s2 + BN downsample, then the blocks. ``[B, C_in, H, W]`` -> ``[B, C, H', W']``."""

    def __init__(self, dim_in: int, dim: int, depth: int, downsample: bool, drop_path: Sequence[float] = (),
                 device=None, dtype=None, **block_kwargs):
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        self.downsample = _conv_bn(dim_in, dim, 2, dd) if downsample else nn.Identity()
        self.blocks = nn.Sequential(*[
            STViTBlock(dim, drop_path=drop_path[i] if len(drop_path) else 0., **block_kwargs, **dd)
            for i in range(depth)
        ])
        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        if torch.jit.is_scripting():  # run_blocks takes a module, which TorchScript cannot type
            return self.blocks(x)
        return run_blocks(self.blocks, x, self.grad_checkpointing)


def _stem(in_chans: int, dim: int, dd: Dict) -> nn.Sequential:
    """conv3x3 s2 -> GELU -> BN -> conv3x3 -> GELU -> BN -> conv3x3 s2 -> GELU -> BN -> conv3x3 -> GELU -> BN."""
    layers = []
    for c_in, c_out, stride in ((in_chans, dim // 2, 2), (dim // 2, dim // 2, 1), (dim // 2, dim, 2), (dim, dim, 1)):
        layers += [nn.Conv2d(c_in, c_out, 3, stride, 1, **dd), nn.GELU(), nn.BatchNorm2d(c_out, **dd)]
    return nn.Sequential(*layers)


def _per_stage(values, num_stages: int, name: str) -> tuple:
    values = tuple(values) if isinstance(values, (tuple, list)) else (values,) * num_stages
    if len(values) != num_stages:
        raise ValueError(f"{name} needs one value per stage ({num_stages} stages, from depths), got {values!r}")
    return values


class STViT(StagedBackbone):
    """Super token ViT for any input size.

    ``forward``: ``[B, in_chans, H, W]`` -> ``[B, num_classes]``; ``forward_features``: -> ``[B, proj_dim, H/32,
    W/32]`` (ceil at every stride-2 step), after the 1x1-conv / BN / Swish projection (the model's ``norm``).
    """

    stem_pattern = r"^stem"

    def __init__(
            self,
            in_chans: int = 3,
            num_classes: int = 1000,
            global_pool: str = "avg",
            embed_dim: Sequence[int] = (64, 128, 320, 512),
            depths: Sequence[int] = (3, 5, 9, 3),
            num_heads: Sequence[int] = (1, 2, 5, 8),
            stoken_size: Sequence = (8, 4, 1, 1),
            mlp_ratio: float = 4.,
            qkv_bias: bool = True,
            layer_scale: Sequence[Optional[float]] = (None, None, None, None),
            proj_dim: int = 1024,
            drop_rate: float = 0.,
            proj_drop_rate: float = 0.,
            attn_drop_rate: float = 0.,
            drop_path_rate: float = 0.,
            device=None,
            dtype=None,
    ):
        """
        Args:
            embed_dim, num_heads: per stage.
            stoken_size: super token size per stage, an int or an (h, w) pair; 1 means global MHSA.
            layer_scale: per stage, the initial LayerScale value or None for none (official: base and large use
                1e-6 in stages 3-4, small none).
            proj_dim: channels of the 1x1-conv projection before pooling.
        """
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        if not isinstance(in_chans, int) or in_chans < 1:
            raise ValueError(f"in_chans must be a positive int, got {in_chans!r}")
        depths = tuple(int(d) for d in depths)
        num_stages = len(depths)
        if num_stages < 1 or any(d < 1 for d in depths):
            raise ValueError(f"depths must be a non-empty sequence of positive ints, got {depths!r}")
        dims = _per_stage(embed_dim, num_stages, "embed_dim")
        num_heads = _per_stage(num_heads, num_stages, "num_heads")
        layer_scale = _per_stage(layer_scale, num_stages, "layer_scale")
        sizes = []
        for i, s in enumerate(_per_stage(stoken_size, num_stages, "stoken_size")):
            s = (s, s) if isinstance(s, int) else tuple(s)
            if len(s) != 2 or not all(isinstance(v, int) and v >= 1 for v in s):
                raise ValueError(f"stoken_size[{i}] must be a positive int or an (h, w) pair, got {s!r}")
            sizes.append(s)
        for i, (dim, heads) in enumerate(zip(dims, num_heads)):
            if heads < 1 or dim % heads:
                raise ValueError(f"num_heads[{i}]={heads} must divide embed_dim[{i}]={dim}")

        self.num_classes = num_classes
        self.in_chans = in_chans
        self.global_pool = global_pool
        self.drop_rate = drop_rate
        self.num_features = self.head_hidden_size = proj_dim

        self.stem = _stem(in_chans, dims[0], dd)
        # drop path rises linearly over all blocks, as in the official code
        dpr = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()
        stages, self.feature_info = [], []
        for i in range(num_stages):
            stages.append(STViTStage(
                dims[max(i - 1, 0)], dims[i], depths[i], downsample=i > 0,
                drop_path=dpr[sum(depths[:i]):sum(depths[:i + 1])], num_heads=num_heads[i], stoken_size=sizes[i],
                mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, layer_scale=layer_scale[i], proj_drop=proj_drop_rate,
                attn_drop=attn_drop_rate, **dd))
            self.feature_info.append(dict(num_chs=dims[i], reduction=2 ** (i + 2), module=f"stages.{i}"))
        self.stages = nn.Sequential(*stages)
        self.norm = nn.Sequential(
            nn.Conv2d(dims[-1], proj_dim, 1, **dd), nn.BatchNorm2d(proj_dim, **dd), nn.SiLU())
        self.head = ClassifierHead(proj_dim, num_classes, pool_type=global_pool, drop_rate=drop_rate, **dd)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        # the official init: truncated normal Linear weights, zero biases; convs and norms keep PyTorch's default
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    @torch.jit.ignore
    def load_pretrained(self, checkpoint_path: str) -> None:
        """Load an official (``{'model': ..., 'model_ema': ..., ...}``) or visionattn STViT checkpoint file.

        timm calls this for pretrained cfgs with ``custom_load``. A classifier of another size is left at its
        initialisation, as timm does when ``num_classes`` differs.
        """
        state_dict = checkpoint_filter_fn(load_checkpoint_file(checkpoint_path), self)
        own = self.state_dict()
        head_keys = [k for k in state_dict if k.startswith("head.")]
        if not head_keys or any(k not in own or own[k].shape != state_dict[k].shape for k in head_keys):
            for k in head_keys:
                state_dict.pop(k)
            missing, _ = self.load_state_dict(state_dict, strict=False)
            _logger.info("classifier not loaded from %s (%s)", checkpoint_path, ", ".join(missing) or "none in model")
        else:
            self.load_state_dict(state_dict, strict=True)


# -- checkpoint conversion -----------------------------------------------------------------------------------------

_BLOCK_RENAMES = (
    ("pos_embed.conv.", "pos_embed."), ("norm1.norm.", "norm1."), ("attn.stoken_refine.", "attn.refine."),
    ("mlp2.conv.conv.", "mlp.conv."), ("mlp2.", "mlp."),
)


def _convert_official(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    out = {}
    for key, value in state_dict.items():
        if key.endswith(("attn.unfold.weights", "attn.fold.weights")):
            continue  # fixed identity kernels, not learned
        new = key
        if key.startswith("patch_embed.proj."):
            new = "stem." + key[len("patch_embed.proj."):]
        elif key.startswith("layers."):
            m = re.match(r"layers\.(\d+)\.(downsample\.proj|blocks)\.(.*)", key)
            if m is None:
                out[key] = value  # left for check_converted to report
                continue
            level, part, rest = int(m.group(1)), m.group(2), m.group(3)
            if part == "downsample.proj":
                new = f"stages.{level + 1}.downsample.{rest}"
            else:
                for old, repl in _BLOCK_RENAMES:
                    if old in rest:
                        rest = rest.replace(old, repl, 1)
                        break
                m2 = re.match(r"(\d+)\.gamma_([12])$", rest)
                if m2 is not None:
                    rest, value = f"{m2.group(1)}.ls{m2.group(2)}.gamma", value.reshape(-1)
                new = f"stages.{level}.blocks.{rest}"
        elif key.startswith("proj."):
            new = "norm.0." + key[len("proj."):]
        elif key.startswith("norm."):
            new = "norm.1." + key[len("norm."):]
        elif key.startswith("head."):
            new = "head.fc." + key[len("head."):]
        out[new] = value
    return out


def checkpoint_filter_fn(state_dict: Mapping, model: STViT) -> Dict[str, torch.Tensor]:
    """Convert an official hhb072/STViT checkpoint (plain or wrapped in ``model``) to this model's keys.

    The layout is detected from the keys (``patch_embed.proj.0.weight`` official, ``stem.0.weight`` already ours).
    The fixed identity kernels ``attn.unfold.weights`` / ``attn.fold.weights`` are dropped. Raises ``ValueError``
    listing every mismatch that remains.
    """
    state_dict = unwrap_state_dict(state_dict)
    if "patch_embed.proj.0.weight" in state_dict:
        source, state_dict = "official STViT checkpoint", _convert_official(state_dict)
    elif "stem.0.weight" in state_dict:
        source = "visionattn stvit checkpoint"
    else:
        raise ValueError(
            "state_dict is not an STViT checkpoint: expected 'patch_embed.proj.0.weight' (official hhb072/STViT) "
            "or 'stem.0.weight' (visionattn) among its keys")
    check_converted(state_dict, model, source=source, classifier="head")
    return state_dict


# -- model creation ------------------------------------------------------------------------------------------------

def _create_stvit(variant: str, pretrained: bool = False, **kwargs) -> STViT:
    return create_backbone(
        STViT, variant, pretrained, checkpoint_filter_fn, num_stages=len(kwargs.get("depths", (3, 5, 9, 3))),
        **kwargs)


def _cfg(url: str = "", **kwargs) -> Dict:
    return {
        "url": url, "num_classes": 1000, "input_size": (3, 224, 224), "pool_size": (7, 7),
        "crop_pct": 0.875, "interpolation": "bicubic", "fixed_input_size": False,
        "mean": IMAGENET_DEFAULT_MEAN, "std": IMAGENET_DEFAULT_STD,
        "first_conv": "stem.0", "classifier": "head.fc",
        "origin_url": "https://github.com/hhb072/STViT", "paper_ids": "arXiv:2211.11167",
        "paper_name": "Vision Transformer with Super Token Sampling",
        "custom_load": True,
        **kwargs,
    }


_DRIVE = "https://drive.google.com/drive/folders/1uaT5OarQd9iPrnFufHocHpM3zhyTcetB"


def _drive_cfg(file: str, top1: float, **kwargs) -> Dict:
    # the official README links only a Google Drive folder, which timm cannot download from: fetch the file by
    # hand and pass pretrained_cfg_overlay=dict(file=PATH) (custom_load goes through checkpoint_filter_fn)
    return _cfg(_DRIVE, notes=(f"official {file} from the Google Drive folder of the README (ImageNet-1K top-1 "
                               f"{top1}); no licence file in the official repository",), **kwargs)


# official ImageNet-1K weights (hhb072/STViT README); 384 models are fine-tuned from the 224 ones
default_cfgs = generate_default_cfgs({
    "stvit_small.in1k": _drive_cfg("stvit-small-224.pth", 83.6),
    "stvit_small.in1k_384": _drive_cfg("stvit-small-384.pth", 85.0, input_size=(3, 384, 384), pool_size=(12, 12),
                                       crop_pct=1.0),
    "stvit_base.in1k": _drive_cfg("stvit-base-224.pth", 84.8),
    "stvit_base.in1k_384": _drive_cfg("stvit-base-384.pth", 86.0, input_size=(3, 384, 384), pool_size=(12, 12),
                                      crop_pct=1.0),
    "stvit_large.in1k": _drive_cfg("stvit-large-224.pth", 85.3),
    "stvit_large.in1k_384": _drive_cfg("stvit-large-384.pth", 86.4, input_size=(3, 384, 384), pool_size=(12, 12),
                                       crop_pct=1.0),
})


@register_model
def stvit_small(pretrained: bool = False, **kwargs) -> STViT:
    args = dict(embed_dim=(64, 128, 320, 512), depths=(3, 5, 9, 3), num_heads=(1, 2, 5, 8))
    return _create_stvit("stvit_small", pretrained, **dict(args, **kwargs))


@register_model
def stvit_base(pretrained: bool = False, **kwargs) -> STViT:
    args = dict(embed_dim=(96, 192, 384, 512), depths=(4, 6, 14, 6), num_heads=(2, 3, 6, 8),
                layer_scale=(None, None, 1e-6, 1e-6))
    return _create_stvit("stvit_base", pretrained, **dict(args, **kwargs))


@register_model
def stvit_large(pretrained: bool = False, **kwargs) -> STViT:
    args = dict(embed_dim=(96, 192, 448, 640), depths=(4, 7, 19, 8), num_heads=(2, 3, 7, 10),
                layer_scale=(None, None, 1e-6, 1e-6))
    return _create_stvit("stvit_large", pretrained, **dict(args, **kwargs))
