"""NAT and DiNAT: Neighborhood Attention Transformer and Dilated Neighborhood Attention Transformer.

Papers:
    Neighborhood Attention Transformer, Hassani et al., CVPR 2023, https://arxiv.org/abs/2204.07143
    Dilated Neighborhood Attention Transformer, Hassani & Shi, 2022, https://arxiv.org/abs/2209.15001
Official code and weights (MIT): https://github.com/SHI-Labs/Neighborhood-Attention-Transformer
    (classification/nat.py, classification/dinat.py, detection/nat.py; read at d334f5b).

One model class serves both families: DiNAT is NAT with per-layer dilations. The architecture is the
official one (two-conv tokenizer stem, pre-norm neighborhood-attention blocks with optional layer scale,
strided-conv downsamplers, final norm, average pool, linear head), so official weights give official
outputs. Differences from the official code, none of which changes the math:

* Layout follows timm: ``stages.{i}`` holds the downsampler that *enters* stage i (the official code keeps
  it at the end of ``levels.{i-1}``), so a stage's output is the pre-downsample map the official
  detection backbone returns. ``checkpoint_filter_fn`` maps official keys (``levels.*``, ``head.*``).
* The classifier is timm's ``ClassifierHead`` (``head.fc``); ``drop_rate`` is head dropout as in timm,
  ``proj_drop_rate`` is the official ``drop_rate`` inside blocks.
* ``kernel_size`` and ``dilations`` can be given per stage or per layer (nested lists), so detection and
  segmentation dilations (which differ from ImageNet's) are constructor arguments.
* Attention runs on ``visionattn.ops.na2d`` through ``NeighborhoodAttention2d`` (Triton on CUDA, exact
  PyTorch elsewhere); maps smaller than ``kernel_size * dilation`` are zero-padded as NATTEN 0.14 did.
* The detection backbone's per-stage output norms (``norm0..3``) are not part of this classification
  model; ``features_only`` returns the raw stage outputs as timm does for Swin.
"""
from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import ClassifierHead, DropPath, Mlp, trunc_normal_
from timm.models import generate_default_cfgs, register_model

from ..layers import NeighborhoodAttention2d
from ._contract import StagedBackbone, create_backbone, run_blocks
from ._helpers import check_converted, resize_rel_pos_table, unwrap_state_dict

__all__ = ["NAT", "checkpoint_filter_fn"]

IntOrPair = Union[int, Tuple[int, int]]
PerLayer = Union[None, int, Sequence[Union[None, int, Sequence[IntOrPair]]]]


class ConvTokenizer(nn.Module):
    """Stem: two 3x3 stride-2 convs (in -> C/2 -> C, with bias), then LayerNorm. ``[B, 3, H, W] -> [B, H/4, W/4, C]``.

    Padding 1 on both convs makes any input size work: each conv maps a side ``n`` to ``ceil(n / 2)``.
    """

    def __init__(
            self, in_chans: int = 3, embed_dim: int = 64, norm_layer=nn.LayerNorm, device=None, dtype=None) -> None:
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        self.proj = nn.Sequential(
            nn.Conv2d(in_chans, embed_dim // 2, kernel_size=3, stride=2, padding=1, **dd),
            nn.Conv2d(embed_dim // 2, embed_dim, kernel_size=3, stride=2, padding=1, **dd),
        )
        self.norm = norm_layer(embed_dim, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class ConvDownsampler(nn.Module):
    """3x3 stride-2 conv (no bias) then LayerNorm, NHWC: ``[B, H, W, C] -> [B, ceil(H/2), ceil(W/2), C']``."""

    def __init__(
            self, dim: int, out_dim: Optional[int] = None, norm_layer=nn.LayerNorm, device=None, dtype=None,
    ) -> None:
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        out_dim = out_dim or 2 * dim
        self.reduction = nn.Conv2d(dim, out_dim, kernel_size=3, stride=2, padding=1, bias=False, **dd)
        self.norm = norm_layer(out_dim, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.reduction(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))


class NATBlock(nn.Module):
    """Pre-norm neighborhood attention and MLP, each with a residual; optional layer scale ``gamma1``/``gamma2``.

    ``[B, H, W, C] -> [B, H, W, C]``.
    """

    def __init__(
            self,
            dim: int,
            num_heads: int,
            kernel_size: IntOrPair = 7,
            dilation: IntOrPair = 1,
            mlp_ratio: float = 4.0,
            qkv_bias: bool = True,
            proj_drop: float = 0.0,
            attn_drop: float = 0.0,
            drop_path: float = 0.0,
            act_layer=nn.GELU,
            norm_layer=nn.LayerNorm,
            layer_scale: Optional[float] = None,
            device=None,
            dtype=None,
    ) -> None:
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        self.norm1 = norm_layer(dim, **dd)
        self.attn = NeighborhoodAttention2d(
            dim,
            num_heads,
            kernel_size=kernel_size,
            dilation=dilation,
            rpb=True,
            qkv_bias=qkv_bias,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
            pad_small=True,
            **dd,
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = norm_layer(dim, **dd)
        self.mlp = Mlp(
            in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=act_layer, drop=proj_drop, **dd)
        self.layer_scale = layer_scale is not None
        # None (no parameter, no state_dict key) without layer scale: the official layout, and TorchScript drops
        # the ``is not None`` branches of a None attribute
        self.gamma1: Optional[nn.Parameter] = None
        self.gamma2: Optional[nn.Parameter] = None
        if self.layer_scale:
            self.gamma1 = nn.Parameter(torch.full((dim,), float(layer_scale), **dd))
            self.gamma2 = nn.Parameter(torch.full((dim,), float(layer_scale), **dd))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.attn(self.norm1(x))
        if self.gamma1 is not None:
            y = self.gamma1 * y
        x = x + self.drop_path(y)
        y = self.mlp(self.norm2(x))
        if self.gamma2 is not None:
            y = self.gamma2 * y
        return x + self.drop_path(y)


class NATStage(nn.Module):
    """Optional entering downsampler, then ``depth`` NAT blocks. NHWC in and out."""

    def __init__(
            self,
            dim: int,
            out_dim: int,
            depth: int,
            num_heads: int,
            kernel_sizes: Sequence[IntOrPair],
            dilations: Sequence[IntOrPair],
            downsample: bool,
            mlp_ratio: float,
            qkv_bias: bool,
            proj_drop: float,
            attn_drop: float,
            drop_path: Sequence[float],
            norm_layer,
            layer_scale: Optional[float],
            device=None,
            dtype=None,
    ) -> None:
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        self.grad_checkpointing = False
        self.downsample = ConvDownsampler(dim, out_dim, norm_layer=norm_layer, **dd) if downsample else nn.Identity()
        self.blocks = nn.Sequential(*[
            NATBlock(
                out_dim,
                num_heads,
                kernel_size=kernel_sizes[i],
                dilation=dilations[i],
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                proj_drop=proj_drop,
                attn_drop=attn_drop,
                drop_path=drop_path[i],
                norm_layer=norm_layer,
                layer_scale=layer_scale,
                **dd,
            )
            for i in range(depth)
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        if torch.jit.is_scripting():  # run_blocks takes a module, which TorchScript cannot type
            return self.blocks(x)
        return run_blocks(self.blocks, x, self.grad_checkpointing)


def _per_layer(value: PerLayer, depths: Sequence[int], name: str, default: int) -> List[List[IntOrPair]]:
    """Expand an int, a per-stage list, or a nested per-layer list into one entry per layer of each stage."""
    def is_scalar(v: Any) -> bool:
        return v is None or (isinstance(v, int) and not isinstance(v, bool)) or (
            isinstance(v, tuple) and len(v) == 2 and all(isinstance(a, int) for a in v))

    if is_scalar(value):
        value = [value] * len(depths)
    if not isinstance(value, (list, tuple)) or len(value) != len(depths):
        raise ValueError(
            f"NAT: {name} must be an int, or a list with one entry per stage ({len(depths)} stages), each an int or "
            f"a list with one entry per layer; got {value!r}"
        )
    expanded = []
    for stage, (entry, depth) in enumerate(zip(value, depths)):
        if is_scalar(entry):
            entry = [entry] * depth
        if not isinstance(entry, (list, tuple)) or len(entry) != depth or not all(is_scalar(e) for e in entry):
            raise ValueError(
                f"NAT: {name}[{stage}] must be an int or a list of {depth} ints (stage {stage} has depth {depth}), "
                f"got {entry!r}"
            )
        expanded.append([default if e is None else e for e in entry])
    return expanded


class NAT(StagedBackbone):
    """NAT / DiNAT backbone and classifier.

    Input ``[B, in_chans, H, W]`` of any size; stage ``i`` runs at stride ``4 * 2**i`` with
    ``embed_dim * 2**i`` channels (NHWC inside, ``output_fmt='NHWC'``); logits ``[B, num_classes]``.

    Args:
        depths: blocks per stage.
        num_heads: heads per stage.
        embed_dim: channels of stage 0 (doubled at each stage).
        mlp_ratio: MLP hidden size / channels.
        kernel_size: neighborhood size: an int for every layer, or one entry per stage, each an int or a list
            with one int per layer.
        dilations: same forms as ``kernel_size``; ``None`` means 1 everywhere (NAT). DiNAT uses e.g.
            ``[[1, 8, 1], [1, 4, 1, 4], [1, 2] * 3, [1] * 5]`` at 224. In both, a *tuple* of two ints is one
            ``(h, w)`` pair for every layer; per-stage values go in a list.
        layer_scale: initial value of per-channel residual scales ``gamma1``/``gamma2``; ``None`` disables them.
        drop_rate: dropout before the classifier. proj_drop_rate: dropout after attention projection and in the
            MLP (the official ``drop_rate``). attn_drop_rate: attention-probability dropout.
        drop_path_rate: stochastic depth, rising linearly over all blocks from 0.
    """

    stem_pattern = r"^patch_embed"
    no_weight_decay_patterns = (".rpb",)  # relative position biases, and (below) every LayerNorm parameter
    no_weight_decay_norms = True
    output_fmt = "NHWC"

    def __init__(
            self,
            depths: Sequence[int] = (3, 4, 18, 5),
            num_heads: Sequence[int] = (2, 4, 8, 16),
            embed_dim: int = 64,
            mlp_ratio: float = 3.0,
            kernel_size: PerLayer = 7,
            dilations: PerLayer = None,
            layer_scale: Optional[float] = None,
            in_chans: int = 3,
            num_classes: int = 1000,
            global_pool: str = "avg",
            qkv_bias: bool = True,
            drop_rate: float = 0.0,
            proj_drop_rate: float = 0.0,
            attn_drop_rate: float = 0.0,
            drop_path_rate: float = 0.2,
            norm_layer=nn.LayerNorm,
            device=None,
            dtype=None,
    ) -> None:
        dd = dict(device=device, dtype=dtype)
        super().__init__()
        depths = tuple(depths)
        num_heads = tuple(num_heads)
        if len(depths) != len(num_heads):
            raise ValueError(f"NAT: depths {depths} and num_heads {num_heads} must have one entry per stage each")
        if layer_scale is not None and not isinstance(layer_scale, (int, float)):
            raise TypeError(f"NAT: layer_scale must be a float or None, got {layer_scale!r}")
        num_stages = len(depths)
        kernel_sizes = _per_layer(kernel_size, depths, "kernel_size", 7)
        stage_dilations = _per_layer(dilations, depths, "dilations", 1)
        dims = [int(embed_dim * 2 ** i) for i in range(num_stages)]

        self.num_classes = num_classes
        self.in_chans = in_chans
        self.global_pool = global_pool
        self.embed_dim = embed_dim
        self.num_features = self.head_hidden_size = dims[-1]
        self.kernel_sizes = kernel_sizes
        self.dilations = stage_dilations

        self.patch_embed = ConvTokenizer(in_chans=in_chans, embed_dim=embed_dim, norm_layer=norm_layer, **dd)

        # Python arithmetic, not torch.linspace(...).item(): the model must build on the meta device.
        total = sum(depths)
        dpr = [drop_path_rate * i / (total - 1) if total > 1 else 0.0 for i in range(total)]
        stages = []
        self.feature_info = []
        for i in range(num_stages):
            stages.append(NATStage(
                dim=dims[max(i - 1, 0)],
                out_dim=dims[i],
                depth=depths[i],
                num_heads=num_heads[i],
                kernel_sizes=kernel_sizes[i],
                dilations=stage_dilations[i],
                downsample=i > 0,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                proj_drop=proj_drop_rate,
                attn_drop=attn_drop_rate,
                drop_path=dpr[sum(depths[:i]):sum(depths[:i + 1])],
                norm_layer=norm_layer,
                layer_scale=layer_scale,
                **dd,
            ))
            self.feature_info.append(dict(num_chs=dims[i], reduction=4 * 2 ** i, module=f"stages.{i}"))
        self.stages = nn.Sequential(*stages)

        self.norm = norm_layer(self.num_features, **dd)
        self.head = ClassifierHead(
            self.num_features, num_classes, pool_type=global_pool, drop_rate=drop_rate, input_fmt=self.output_fmt,
            **dd)

        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        # As the official code: truncated-normal linears with zero bias, unit LayerNorms; convs keep torch's init.
        if isinstance(module, nn.Linear):
            trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.patch_embed(x)


_LEVEL_DOWNSAMPLE = re.compile(r"^levels\.(\d+)\.downsample\.(.+)$")
_LEVEL_BLOCKS = re.compile(r"^levels\.(\d+)\.blocks\.")


def checkpoint_filter_fn(state_dict: Dict[str, Any], model: NAT) -> Dict[str, torch.Tensor]:
    """Convert an official NAT / DiNAT checkpoint (plain, or wrapped in ``model`` / ``state_dict``) to this layout.

    ``levels.{i}.blocks.*`` -> ``stages.{i}.blocks.*``; ``levels.{i}.downsample.*`` -> ``stages.{i+1}.downsample.*``;
    ``head.*`` -> ``head.fc.*``. A relative position bias whose kernel differs from the model's (e.g. 7x7 weights
    into an 11x11 model) is resized bicubically. Raises ``ValueError`` listing every missing, unexpected or
    mis-shaped key (classifier keys exempt: timm re-initialises a classifier of another size).
    """
    state_dict = unwrap_state_dict(state_dict)
    model_state = model.state_dict()
    out = {}
    for key, value in state_dict.items():
        match = _LEVEL_DOWNSAMPLE.match(key)
        if match:
            key = f"stages.{int(match.group(1)) + 1}.downsample.{match.group(2)}"
        else:
            key = _LEVEL_BLOCKS.sub(lambda m: f"stages.{m.group(1)}.blocks.", key)
        if key.startswith("head.") and not key.startswith("head.fc."):
            key = "head.fc." + key[len("head."):]
        target = model_state[key].shape if key in model_state else None
        if key.endswith("attn.rpb") and target is not None and value.shape != target:
            if value.ndim == 3 and value.shape[0] == target[0]:  # same heads, other kernel: resize
                value = resize_rel_pos_table(value, tuple(target[-2:]))
            # otherwise leave it: check_converted reports the mismatch with everything else
        out[key] = value
    check_converted(out, model, source="NAT/DiNAT checkpoint", classifier="head")
    return out


def _create_nat(variant: str, pretrained: bool = False, **kwargs) -> NAT:
    return create_backbone(
        NAT, variant, pretrained, checkpoint_filter_fn, num_stages=len(kwargs.get("depths", (3, 4, 18, 5))), **kwargs)


def _cfg(url: str = "", **kwargs) -> Dict[str, Any]:
    return {
        "url": url,
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "pool_size": (7, 7),
        "crop_pct": 0.875,
        "interpolation": "bicubic",
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "first_conv": "patch_embed.proj.0",
        "classifier": "head.fc",
        "license": "mit",
        "origin_url": "https://github.com/SHI-Labs/Neighborhood-Attention-Transformer",
        **kwargs,
    }


_NAT_URL = "https://shi-labs.com/projects/nat/checkpoints/CLS/"
_DINAT_URL = "https://shi-labs.com/projects/dinat/checkpoints/"
_NAT_PAPER = dict(paper_ids="arXiv:2204.07143", paper_name="Neighborhood Attention Transformer")
_DINAT_PAPER = dict(paper_ids="arXiv:2209.15001", paper_name="Dilated Neighborhood Attention Transformer")

default_cfgs = generate_default_cfgs({
    "nat_mini.in1k": _cfg(url=_NAT_URL + "nat_mini.pth", **_NAT_PAPER),
    "nat_tiny.in1k": _cfg(url=_NAT_URL + "nat_tiny.pth", **_NAT_PAPER),
    "nat_small.in1k": _cfg(url=_NAT_URL + "nat_small.pth", **_NAT_PAPER),
    "nat_base.in1k": _cfg(url=_NAT_URL + "nat_base.pth", **_NAT_PAPER),
    "dinat_mini.in1k": _cfg(url=_DINAT_URL + "imagenet1k/dinat_mini_in1k_224.pth", **_DINAT_PAPER),
    "dinat_tiny.in1k": _cfg(url=_DINAT_URL + "imagenet1k/dinat_tiny_in1k_224.pth", **_DINAT_PAPER),
    "dinat_small.in1k": _cfg(url=_DINAT_URL + "imagenet1k/dinat_small_in1k_224.pth", **_DINAT_PAPER),
    "dinat_base.in1k": _cfg(url=_DINAT_URL + "imagenet1k/dinat_base_in1k_224.pth", **_DINAT_PAPER),
    "dinat_large.in22k_ft_in1k": _cfg(url=_DINAT_URL + "imagenet1k/dinat_large_in22k_in1k_224.pth", **_DINAT_PAPER),
    "dinat_large.in22k_ft_in1k_384": _cfg(
        url=_DINAT_URL + "imagenet1k/dinat_large_in22k_in1k_384.pth", input_size=(3, 384, 384), pool_size=(12, 12),
        crop_pct=1.0, **_DINAT_PAPER),
    "dinat_large.in22k_ft_in1k_384_11x11": _cfg(
        url=_DINAT_URL + "imagenet1k/dinat_large_in22k_in1k_384_11x11.pth", input_size=(3, 384, 384),
        pool_size=(12, 12), crop_pct=1.0, **_DINAT_PAPER),
    "dinat_large.in22k": _cfg(
        url=_DINAT_URL + "imagenet22k/dinat_large_in22k_224.pth", num_classes=21841, **_DINAT_PAPER),
    "dinat_large.in22k_11x11": _cfg(
        url=_DINAT_URL + "imagenet22k/dinat_large_in22k_224_11x11interp.pth", num_classes=21841,
        notes=("7x7 weights with the rpb bicubically resized to 11x11 by the authors",), **_DINAT_PAPER),
})

# DiNAT's ImageNet dilations: every other layer dilated so its neighborhood spans the stage's map at 224
# (56 / 28 / 14 / 7 with kernel 7). The official 384 model uses 13 / 6 / 3.
DINAT_DILATIONS_224 = ([1, 8, 1], [1, 4, 1, 4], [1, 2] * 9, [1] * 5)
DINAT_DILATIONS_384 = ([1, 13, 1], [1, 6, 1, 6], [1, 3] * 9, [1] * 5)
# Downstream dilations of the official DiNAT-Tiny configs (detection/configs/dinat/mask_rcnn_dinat_tiny_3x_coco.py,
# segmentation/configs/dinat/upernet_dinat_tiny_512x512_160k_ade20k.py); pass as ``dilations=``.
DINAT_TINY_DILATIONS_COCO = ([1, 28, 1], [1, 7, 1, 14], [1, 3, 1, 5, 1, 7] * 3, [1, 3, 1, 3, 1])
DINAT_TINY_DILATIONS_ADE20K = ([1, 16, 1], [1, 4, 1, 8], [1, 2, 1, 3, 1, 4] * 3, [1, 2, 1, 2, 1])

# Architecture that a pretrained tag implies beyond its variant (the official repo registers these as separate
# models: dinat_large_384, dinat_large_384_11x11, dinat_large_21k_11x11). Explicit kwargs still win.
_TAG_MODEL_ARGS = {
    "dinat_large.in22k_ft_in1k_384": dict(dilations=DINAT_DILATIONS_384),
    "dinat_large.in22k_ft_in1k_384_11x11": dict(kernel_size=11),
    "dinat_large.in22k_11x11": dict(kernel_size=11),
}


def _model_args(variant: str, defaults: Dict[str, Any], kwargs: Dict[str, Any]) -> Dict[str, Any]:
    tag = kwargs.get("pretrained_cfg")
    tag_args = _TAG_MODEL_ARGS.get(f"{variant}.{tag}", {}) if isinstance(tag, str) else {}
    return {**defaults, **tag_args, **kwargs}


@register_model
def nat_mini(pretrained: bool = False, **kwargs) -> NAT:
    args = dict(depths=(3, 4, 6, 5), num_heads=(2, 4, 8, 16), embed_dim=64, mlp_ratio=3, drop_path_rate=0.2)
    return _create_nat("nat_mini", pretrained=pretrained, **_model_args("nat_mini", args, kwargs))


@register_model
def nat_tiny(pretrained: bool = False, **kwargs) -> NAT:
    args = dict(depths=(3, 4, 18, 5), num_heads=(2, 4, 8, 16), embed_dim=64, mlp_ratio=3, drop_path_rate=0.2)
    return _create_nat("nat_tiny", pretrained=pretrained, **_model_args("nat_tiny", args, kwargs))


@register_model
def nat_small(pretrained: bool = False, **kwargs) -> NAT:
    args = dict(
        depths=(3, 4, 18, 5), num_heads=(3, 6, 12, 24), embed_dim=96, mlp_ratio=2, drop_path_rate=0.3, layer_scale=1e-5)
    return _create_nat("nat_small", pretrained=pretrained, **_model_args("nat_small", args, kwargs))


@register_model
def nat_base(pretrained: bool = False, **kwargs) -> NAT:
    args = dict(
        depths=(3, 4, 18, 5), num_heads=(4, 8, 16, 32), embed_dim=128, mlp_ratio=2, drop_path_rate=0.5,
        layer_scale=1e-5)
    return _create_nat("nat_base", pretrained=pretrained, **_model_args("nat_base", args, kwargs))


@register_model
def dinat_mini(pretrained: bool = False, **kwargs) -> NAT:
    args = dict(
        depths=(3, 4, 6, 5), num_heads=(2, 4, 8, 16), embed_dim=64, mlp_ratio=3, drop_path_rate=0.2,
        dilations=([1, 8, 1], [1, 4, 1, 4], [1, 2] * 3, [1] * 5))
    return _create_nat("dinat_mini", pretrained=pretrained, **_model_args("dinat_mini", args, kwargs))


@register_model
def dinat_tiny(pretrained: bool = False, **kwargs) -> NAT:
    args = dict(
        depths=(3, 4, 18, 5), num_heads=(2, 4, 8, 16), embed_dim=64, mlp_ratio=3, drop_path_rate=0.2,
        dilations=DINAT_DILATIONS_224)
    return _create_nat("dinat_tiny", pretrained=pretrained, **_model_args("dinat_tiny", args, kwargs))


@register_model
def dinat_small(pretrained: bool = False, **kwargs) -> NAT:
    # No layer scale, unlike NAT-S (official dinat.py).
    args = dict(
        depths=(3, 4, 18, 5), num_heads=(3, 6, 12, 24), embed_dim=96, mlp_ratio=2, drop_path_rate=0.3,
        dilations=DINAT_DILATIONS_224)
    return _create_nat("dinat_small", pretrained=pretrained, **_model_args("dinat_small", args, kwargs))


@register_model
def dinat_base(pretrained: bool = False, **kwargs) -> NAT:
    args = dict(
        depths=(3, 4, 18, 5), num_heads=(4, 8, 16, 32), embed_dim=128, mlp_ratio=2, drop_path_rate=0.5,
        layer_scale=1e-5, dilations=DINAT_DILATIONS_224)
    return _create_nat("dinat_base", pretrained=pretrained, **_model_args("dinat_base", args, kwargs))


@register_model
def dinat_large(pretrained: bool = False, **kwargs) -> NAT:
    args = dict(
        depths=(3, 4, 18, 5), num_heads=(6, 12, 24, 48), embed_dim=192, mlp_ratio=2, drop_path_rate=0.35,
        dilations=DINAT_DILATIONS_224)
    return _create_nat("dinat_large", pretrained=pretrained, **_model_args("dinat_large", args, kwargs))
