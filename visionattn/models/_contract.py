"""timm's model contract, written once for every hierarchical family.

A family model subclasses :class:`StagedBackbone` (an ``nn.Module``) and sets, in ``__init__``:

* ``self.stem``: input -> first stage's input (override :meth:`forward_stem` if it needs more, e.g. a
  position embedding);
* ``self.stages``: an ``nn.Sequential`` of stages; each stage has a ``grad_checkpointing`` attribute that its
  ``forward`` honours (:func:`run_blocks` does it);
* ``self.norm``: the final norm, applied to the last stage's output (``nn.Identity`` when stages end normed);
* ``self.head``: a timm ``ClassifierHead`` (or anything with ``fc``, ``reset(num_classes, pool_type,
  in_features=, device=, dtype=)`` and ``forward(x, pre_logits=)``);
* ``self.feature_info``: one ``dict(num_chs, reduction, module)`` per stage;
* ``self.num_classes``, ``self.in_chans``, ``self.global_pool``, ``self.num_features`` / ``self.head_hidden_size``;
* ``self.output_fmt``: layout of stage outputs and features, ``"NCHW"`` or ``"NHWC"``.

Class attributes tune the parameter groups: ``stem_pattern`` (regex of the stem's parameter names for
``group_matcher``), ``stage_extra_pattern`` (per-stage modules that belong with the stage's first group, e.g.
the downsampler) and ``no_weight_decay_patterns`` (substrings of parameter names kept out of weight decay;
every norm layer's parameters are added by type through ``no_weight_decay_norms``).

Device and dtype follow timm's ``dd`` convention: constructors take ``device=None, dtype=None`` and pass
``**dd`` to every parameter and buffer they create; the classifier is rebuilt on the model's own device and
dtype (:func:`timm.layers.get_device_dtype`). Computed non-persistent buffers (relative-position indices) are
created empty on ``device`` and filled by the module's ``init_non_persistent_buffers()`` (timm's
``reinit_non_persistent_buffers`` calls it after ``to_empty``); drop-path rates come from Python arithmetic or a
CPU ``torch.linspace``, never from tensors on the target device, so a model builds on ``meta``.

What timm's test suite (``tools/timm_suite.py``), ``torch.compile`` and ``torch.export`` need of a family:

* FX (``feature_cls='fx'``, timm's tracer): no Python branch on a tensor's shape in traced code. Either make the
  code branch-free (pad / crop by amounts that may be zero) or put the shape logic in a module-level function
  registered with ``timm.layers.register_notrace_function``, whose name must not start with ``_`` (torch.fx's
  auto-wrapping skips such names), or in a module registered with ``register_notrace_module``.
* TorchScript: :func:`run_blocks` takes a module, which TorchScript cannot type, so a stage guards the call (see
  its docstring); optional parameters are ``None`` attributes tested with ``is not None``; no ``tuple(x.shape)``.
  The class that defines the root ``forward`` (this one, or a family class overriding it) must live in a file
  without ``from __future__ import annotations``: FX writes a string annotation into its generated code as a type
  name that TorchScript cannot resolve (``test_model_forward_fx_torchscript``).
* ``torch.compile(fullgraph=True)`` / ``torch.export``: no ``.item()`` / ``int(tensor)`` / ``.tolist()`` in the
  forward path; attention kernels go through the ``visionattn::*`` custom operators (``visionattn.ops``).
"""

from typing import Any, Dict, List, Optional, Set, Tuple, Union

import torch
import torch.nn as nn
from timm.layers import get_device_dtype
from timm.models import build_model_with_cfg, checkpoint_seq
from timm.models._features import feature_take_indices

__all__ = ["StagedBackbone", "run_blocks", "check_output_fmt", "create_backbone", "factory_kwargs"]

_NORM_TYPES = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._NormBase)


def factory_kwargs(device=None, dtype=None) -> Dict[str, Any]:
    """The ``dd`` dict every constructor passes to the layers it builds."""
    return {"device": device, "dtype": dtype}


def check_output_fmt(output_fmt: str) -> None:
    if output_fmt not in ("NCHW", "NHWC"):
        raise ValueError(f"output_fmt must be 'NCHW' or 'NHWC', got {output_fmt!r}")


def run_blocks(blocks: nn.Module, x: torch.Tensor, grad_checkpointing: bool) -> torch.Tensor:
    """Run an ``nn.Sequential`` of blocks, through activation checkpointing when asked.

    TorchScript cannot compile a call that passes a module, so a scriptable stage guards the call::

        if torch.jit.is_scripting():
            return self.blocks(x)
        return run_blocks(self.blocks, x, self.grad_checkpointing)
    """
    if grad_checkpointing and not torch.jit.is_scripting():
        return checkpoint_seq(blocks, x)
    return blocks(x)


def _to_fmt(x: torch.Tensor, src: str, dst: str) -> torch.Tensor:
    if src == dst:
        return x
    if dst == "NCHW":
        return x.permute(0, 3, 1, 2).contiguous()
    return x.permute(0, 2, 3, 1).contiguous()


class StagedBackbone(nn.Module):
    """stem -> stages -> norm -> head, with timm's whole model API (see the module docstring)."""

    stem_pattern: str = r"^stem"
    stage_extra_pattern: str = r"downsample"
    no_weight_decay_patterns: Tuple[str, ...] = ()
    no_weight_decay_norms: bool = False
    output_fmt: str = "NCHW"

    # -- optimizer / fine-tuning API ---------------------------------------------------------------------------
    @torch.jit.ignore
    def no_weight_decay(self) -> Set[str]:
        names = {n for n, _ in self.named_parameters() if any(p in n for p in self.no_weight_decay_patterns)}
        if self.no_weight_decay_norms:
            for module_name, module in self.named_modules():
                if isinstance(module, _NORM_TYPES):
                    names.update(f"{module_name}.{n}" for n, _ in module.named_parameters(recurse=False))
        return names

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        return dict(
            stem=self.stem_pattern,
            blocks=r"^stages\.(\d+)" if coarse else [
                (rf"^stages\.(\d+)\.(?:{self.stage_extra_pattern})", (0,)),
                (r"^stages\.(\d+)\.blocks\.(\d+)", None),
                (r"^norm", (99999,)),
            ],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for stage in self.stages:
            if hasattr(stage, "set_grad_checkpointing"):
                stage.set_grad_checkpointing(enable)
            else:
                stage.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        dd = get_device_dtype(self)
        self.num_classes = num_classes
        self.head.reset(num_classes, pool_type=global_pool, in_features=self.num_features, **dd)
        self.head_hidden_size = self.head.num_features
        if global_pool is not None:
            self.global_pool = global_pool

    # -- features ----------------------------------------------------------------------------------------------
    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.stem(x)

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = "NCHW",
            intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Stage outputs (``[B, C_i, H_i, W_i]`` for NCHW) and, unless ``intermediates_only``, the final features.

        Args:
            indices: the last n stages if an int, all if None, else these stage indices.
            norm: apply the final norm to the last stage's output when it is taken.
            stop_early: stop after the last stage taken.
            output_fmt: ``"NCHW"`` or ``"NHWC"``.
            intermediates_only: return only the list.
        """
        check_output_fmt(output_fmt)
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        last_index = len(self.stages) - 1
        stages = self.stages if torch.jit.is_scripting() or not stop_early else self.stages[:max_index + 1]
        intermediates = []
        x = self.forward_stem(x)
        i = -1
        for i, stage in enumerate(stages):
            x = stage(x)
            if i in take_indices:
                feat = self.norm(x) if norm and i == last_index else x
                intermediates.append(_to_fmt(feat, self.output_fmt, output_fmt))
        if intermediates_only:
            return intermediates
        if i == last_index:
            x = self.norm(x)
        return x, intermediates

    def prune_intermediate_layers(
            self,
            indices: Union[int, List[int]] = 1,
            prune_norm: bool = False,
            prune_head: bool = True,
    ) -> List[int]:
        """Drop the stages (and the final norm / head) not needed for the requested intermediates."""
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        if max_index < len(self.stages) - 1:
            # the final norm and the head are sized for the last stage, which is gone
            self.num_features = self.head_hidden_size = self.feature_info[max_index]["num_chs"]
            prune_norm = prune_head = True
        self.stages = self.stages[:max_index + 1]
        if prune_norm:
            self.norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0, "")
        return take_indices

    # -- forward -----------------------------------------------------------------------------------------------
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, in_chans, H, W]`` -> the last stage's normed features in ``output_fmt``."""
        return self.norm(self.stages(self.forward_stem(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Features -> pooled ``[B, head_hidden_size]`` if ``pre_logits`` else logits ``[B, num_classes]``."""
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def create_backbone(
        model_cls: type,
        variant: str,
        pretrained: bool,
        filter_fn,
        num_stages: int = 4,
        **kwargs,
) -> nn.Module:
    """``build_model_with_cfg`` with a ``features_only`` config through ``forward_intermediates``.

    The ``getter`` feature class runs ``forward_intermediates``, so maps come out NCHW whatever the model's own
    layout; ``flatten_sequential`` also serves ``feature_cls='hook'`` / ``'dict'`` / ``'fx'``.
    """
    out_indices = kwargs.pop("out_indices", tuple(range(num_stages)))
    return build_model_with_cfg(
        model_cls,
        variant,
        pretrained,
        pretrained_filter_fn=filter_fn,
        feature_cfg=dict(feature_cls="getter", flatten_sequential=True, out_indices=out_indices),
        **kwargs,
    )
