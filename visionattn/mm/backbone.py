"""``VisionAttnBackbone``: any timm model (ours or timm's) as an mmdet 3 / mmseg 1 backbone.

The timm model is built whole (``timm.create_model``), its classifier and final norm are pruned with
``prune_intermediate_layers``, and the feature maps come from ``forward_intermediates``. Parameter names
therefore stay those of the timm model (under ``model.``), so ``paramwise_cfg`` rules such as
``rpb`` / ``relative_position_bias_table`` / ``norm`` with ``decay_mult=0`` match, and the family's own
``checkpoint_filter_fn`` can convert official classification checkpoints. Models without
``forward_intermediates`` fall back to timm's ``features_only`` wrapper (no ``checkpoint=`` there).

Like the official detection backbones of these families, each output gets its own LayerNorm
(``out_norms``), which the classification checkpoints do not hold.
"""
from __future__ import annotations

import logging
import os
import re
import sys
from typing import Dict, List, Optional, Sequence, Tuple, Union

import timm
import torch
import torch.nn as nn
from mmengine.model import BaseModule
from timm.layers import LayerNorm2d

from visionattn.checkpoint import download_checkpoint, trusted_checkpoints
from visionattn.models._helpers import check_converted, load_checkpoint_file, unwrap_state_dict

_logger = logging.getLogger(__name__)

_BATCH_NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm)


def _stem_pattern(model: nn.Module) -> Optional[str]:
    """The regex timm's ``group_matcher`` gives for the stem (patch embedding), if the model has one."""
    matcher = getattr(model, "group_matcher", None)
    if matcher is None:
        return None
    stem = matcher(coarse=True).get("stem")
    if isinstance(stem, (list, tuple)):
        stem = "|".join(s[0] if isinstance(s, (list, tuple)) else s for s in stem)
    return stem


class _ParamHolder(nn.Module):
    """Lets a loose parameter be frozen like a module (it is not registered here, only referenced)."""

    def __init__(self, param: nn.Parameter):
        super().__init__()
        self._held = [param]

    def parameters(self, recurse: bool = True):
        return iter(self._held)


class VisionAttnBackbone(BaseModule):
    """A timm model's multi-scale feature maps for OpenMMLab detectors and segmentors.

    Args:
        model_name: any name ``timm.list_models()`` knows, e.g. ``"dinat_tiny"``, ``"gc_vit_tiny"``,
            ``"davit_tiny"``.
        out_indices: feature levels to return (indices into the model's ``feature_info``; 0 = stride 4
            for the hierarchical families).
        out_norms: add a LayerNorm over channels to every returned level (as the official detection
            backbones do). They are new parameters, not in classification checkpoints.
        frozen_stages: -1 trains everything; 0 freezes the stem; ``k >= 1`` freezes the stem and
            the first ``k`` stages (with their output norms). Frozen parts stay in eval mode.
        norm_eval: keep batch/group norms in eval mode while training (frozen running statistics).
        with_cp: gradient checkpointing per stage (``model.set_grad_checkpointing``): less memory,
            one more forward in the backward pass; same outputs and gradients.
        drop_path_rate: stochastic depth rate forwarded to ``timm.create_model`` (None: the model's
            default).
        pretrained: load timm's pretrained weights (``model_name`` may carry a tag, ``"davit_tiny.msft_in1k"``)
            in ``init_weights()``.
        checkpoint: path or URL of a classification checkpoint in the official layout or ours,
            converted by the family's ``checkpoint_filter_fn`` and checked strictly (only the
            classifier may differ) in ``init_weights()``. Loaded without running code from the file
            (:func:`visionattn.checkpoint.load_checkpoint_file`).
        trust_checkpoint: allow a full pickle load of ``checkpoint`` (or of timm's ``pretrained`` weights) if it
            holds more than tensors and plain data. Only for files you trust. None: follow
            ``$VISIONATTN_TRUST_CHECKPOINT``.
        model_kwargs: forwarded to ``timm.create_model`` (``kernel_size``, ``dilations``, ``window_size``,
            ``img_size``, ...).
        init_cfg: not supported (use ``pretrained`` / ``checkpoint``); must be None.

    Inputs are ``[B, 3, H, W]`` images; the output is a tuple of ``[B, C_i, H / s_i, W / s_i]`` maps, one
    per ``out_indices`` entry, with ``C_i`` in ``self.out_channels`` and ``s_i`` in ``self.out_strides``.
    """

    def __init__(
            self,
            model_name: str,
            out_indices: Sequence[int] = (0, 1, 2, 3),
            out_norms: bool = True,
            frozen_stages: int = -1,
            norm_eval: bool = False,
            with_cp: bool = False,
            drop_path_rate: Optional[float] = None,
            pretrained: bool = False,
            checkpoint: Optional[str] = None,
            model_kwargs: Optional[Dict] = None,
            init_cfg: Optional[Dict] = None,
            trust_checkpoint: Optional[bool] = None,
    ):
        if init_cfg is not None:
            raise ValueError(
                "VisionAttnBackbone does not take init_cfg; load weights with pretrained=True (timm's weights) "
                f"or checkpoint='path or URL' (official or visionattn layout). Got init_cfg={init_cfg!r}"
            )
        super().__init__(init_cfg=None)
        if not isinstance(model_name, str) or not model_name:
            raise TypeError(f"model_name must be a timm model name (str), got {model_name!r}")
        base_name = model_name.split(".")[0]
        if base_name not in timm.list_models():
            raise ValueError(
                f"model_name {model_name!r} is not registered in timm; did you `import visionattn`? "
                f"close matches: {timm.list_models('*' + base_name.split('_')[0] + '*')[:12]}"
            )
        if isinstance(out_indices, int) or not all(isinstance(i, int) for i in out_indices) or not out_indices:
            raise TypeError(f"out_indices must be a non-empty sequence of ints, got {out_indices!r}")
        if not isinstance(frozen_stages, int) or frozen_stages < -1:
            raise ValueError(f"frozen_stages must be an int >= -1 (-1 freezes nothing), got {frozen_stages!r}")
        if model_kwargs is not None and not isinstance(model_kwargs, dict):
            raise TypeError(
                f"model_kwargs must be a dict of timm.create_model kwargs, got {type(model_kwargs).__name__}")
        if pretrained and checkpoint:
            raise ValueError("give pretrained=True or checkpoint=..., not both")
        for forbidden in ("features_only", "out_indices", "pretrained", "num_classes"):
            if model_kwargs and forbidden in model_kwargs:
                raise ValueError(f"model_kwargs must not contain {forbidden!r}; use the backbone's own argument")

        self.model_name = model_name
        self.model_kwargs = dict(model_kwargs or {})
        if drop_path_rate is not None:
            self.model_kwargs["drop_path_rate"] = float(drop_path_rate)
        self.pretrained = bool(pretrained)
        self.checkpoint = checkpoint
        self.trust_checkpoint = trust_checkpoint
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp

        model = timm.create_model(base_name, pretrained=False, **self.model_kwargs)
        feature_info = list(getattr(model, "feature_info", None) or [])
        self.uses_intermediates = hasattr(model, "forward_intermediates") and bool(feature_info)
        if not self.uses_intermediates:
            # timm's features_only wrapper (FeatureListNet) with every level; out_indices are picked in forward.
            del model
            model = timm.create_model(base_name, pretrained=False, features_only=True, **self.model_kwargs)
            info = model.feature_info
            every = tuple(range(len(info.info)))
            feature_info = [dict(num_chs=info.info[i]["num_chs"], reduction=info.info[i]["reduction"],
                                 module=info.info[i]["module"]) for i in every]
            if tuple(info.out_indices) != every:
                del model
                model = timm.create_model(base_name, pretrained=False, features_only=True, out_indices=every,
                                          **self.model_kwargs)
        num_levels = len(feature_info)
        bad = [i for i in out_indices if not -num_levels <= i < num_levels]
        if bad:
            raise ValueError(f"out_indices {tuple(out_indices)} out of range for {model_name} ({num_levels} levels)")
        self.out_indices = tuple(i % num_levels for i in out_indices)
        if frozen_stages > num_levels:
            raise ValueError(f"frozen_stages={frozen_stages} but {model_name} has {num_levels} stages")
        self.stage_modules = [info["module"] for info in feature_info]
        self.out_channels = [feature_info[i]["num_chs"] for i in self.out_indices]
        self.out_strides = [feature_info[i]["reduction"] for i in self.out_indices]

        if self.uses_intermediates:
            model.prune_intermediate_layers(list(self.out_indices), prune_norm=True, prune_head=True)
        elif self.checkpoint:
            raise ValueError(f"{model_name} has no forward_intermediates; checkpoint= is not supported for it")
        if with_cp:
            model.set_grad_checkpointing(True)
        self.model = model
        self.out_norms = nn.ModuleList(
            LayerNorm2d(c, eps=1e-5) if out_norms else nn.Identity() for c in self.out_channels
        )
        self._freeze_stages()

    # ----------------------------------------------------------------------------------------------
    # freezing
    # ----------------------------------------------------------------------------------------------
    def _frozen_modules(self) -> List[nn.Module]:
        """Modules frozen by ``frozen_stages``: the stem, stages ``0..frozen_stages-1`` and their out norms."""
        if self.frozen_stages < 0:
            return []
        modules: List[nn.Module] = []
        if self.uses_intermediates:
            pattern = _stem_pattern(self.model)
            if pattern is None:
                raise ValueError(
                    f"{self.model_name} has no group_matcher, so its stem is unknown; use frozen_stages=-1")
            regex = re.compile(pattern)
            children = dict(self.model.named_children())
            for name in sorted({n.split(".")[0] for n, _ in self.model.named_parameters() if regex.match(n)}):
                # a stem parameter held directly by the model (cls_token, pos_embed) is wrapped to be frozen too
                modules.append(children[name] if name in children else _ParamHolder(getattr(self.model, name)))
            for i in range(self.frozen_stages):
                if i < len(self.stage_modules) and self._has_module(self.stage_modules[i]):
                    modules.append(self.model.get_submodule(self.stage_modules[i]))
        else:
            # timm's FeatureListNet keeps the model's top-level modules in forward order (dots become '_').
            children = list(self.model.named_children())
            stage_names = [m.replace(".", "_") for m in self.stage_modules]
            first_stage = next((k for k, (n, _) in enumerate(children) if n in stage_names), len(children))
            modules.extend(m for _, m in children[:first_stage])
            for i in range(self.frozen_stages):
                modules.extend(m for n, m in children if n == stage_names[i])
        for k, level in enumerate(self.out_indices):
            if level < self.frozen_stages:
                modules.append(self.out_norms[k])
        return modules

    def _has_module(self, name: str) -> bool:
        try:
            self.model.get_submodule(name)
            return True
        except AttributeError:
            return False

    def _freeze_stages(self) -> None:
        for module in self._frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> "VisionAttnBackbone":
        """Switch train/eval mode, keeping frozen parts (and, with ``norm_eval``, batch norms) in eval."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BATCH_NORMS):
                    module.eval()
        return self

    # ----------------------------------------------------------------------------------------------
    # weights
    # ----------------------------------------------------------------------------------------------
    def init_weights(self) -> None:
        """Load ``pretrained`` / ``checkpoint`` weights; otherwise keep timm's initialisation.

        mmengine's default would call ``init_weights`` on the timm model, which for some timm models
        re-initialises from scratch, so it is not delegated.
        """
        if self.checkpoint:
            self.load_checkpoint(self.checkpoint)
        elif self.pretrained:
            with trusted_checkpoints(self.trust_checkpoint):
                full = timm.create_model(self.model_name, pretrained=True, **self.model_kwargs)
            self._copy_from_full(full)
        self._is_init = True

    def _copy_from_full(self, full: nn.Module) -> None:
        full_state = full.state_dict()
        own = self.model.state_dict()
        missing = [k for k in own if k not in full_state]
        if missing:
            raise ValueError(f"weights for {self.model_name} lack {missing[:8]} ({len(missing)} keys)")
        self.model.load_state_dict({k: full_state[k] for k in own}, strict=True)

    def load_checkpoint(self, checkpoint: Union[str, os.PathLike]) -> None:
        """Load a classification checkpoint (file path or URL) into the backbone, strictly.

        The family's ``checkpoint_filter_fn`` converts the official layout; a ``backbone.`` prefix (a
        detector/segmentor checkpoint) is stripped. Every key except the classifier must match.
        """
        if not self.uses_intermediates:
            raise ValueError(f"{self.model_name} has no forward_intermediates; checkpoint= is not supported for it")
        path = os.fspath(checkpoint)
        if re.match(r"^(https?|ftp)://", path):
            path = download_checkpoint(path)
        state_dict = unwrap_state_dict(load_checkpoint_file(path, trust_checkpoint=self.trust_checkpoint))
        if any(k.startswith("backbone.") for k in state_dict):  # a whole detector / segmentor checkpoint
            state_dict = {k[len("backbone."):]: v for k, v in state_dict.items() if k.startswith("backbone.")}
            if all(k.startswith(("model.", "out_norms.")) for k in state_dict):
                self.load_state_dict(state_dict, strict=True)  # our own adapter's layout
                return
        full = timm.create_model(self.model_name.split(".")[0], pretrained=False, **self.model_kwargs)
        filter_fn = getattr(sys.modules.get(type(full).__module__), "checkpoint_filter_fn", None)
        if filter_fn is not None:
            state_dict = filter_fn(state_dict, full)
        check_converted(state_dict, full, source=f"checkpoint {checkpoint}", classifier="head")
        full.load_state_dict(state_dict, strict=False)  # only classifier keys can be absent (checked above)
        self._copy_from_full(full)

    # ----------------------------------------------------------------------------------------------
    # forward
    # ----------------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """``[B, 3, H, W]`` -> tuple of ``[B, C_i, H_i, W_i]`` feature maps, one per ``out_indices`` entry."""
        if self.uses_intermediates:
            features = self.model.forward_intermediates(
                x, indices=list(self.out_indices), norm=False, intermediates_only=True, output_fmt="NCHW")
        else:
            every = self.model(x)
            features = [every[i] for i in self.out_indices]
        return tuple(norm(f) for norm, f in zip(self.out_norms, features))
