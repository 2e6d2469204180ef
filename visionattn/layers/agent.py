"""Agent attention: a few pooled agent tokens aggregate the keys and values, then broadcast back to every query.

Paper: "Agent Attention: On the Integration of Softmax and Linear Attention" (ECCV 2024), official code
LeapLabTHU/Agent-Attention (``agent_transformer/models/agent_{swin,pvt,deit,cswin}.py`` and the downstream
backbones ``downstream/*/models/backbones/agent_{swin,pvt}.py``). One layer serves every variant:

* Swin / PVT: ``forward(x)`` on a ``[B, H, W, C]`` map (Swin's fused ``qkv``; PVT's ``q`` + ``kv`` with an optional
  spatial reduction ``sr`` of K/V). A window or a CSWin stripe is just a batch entry of its own map.
* DeiT: ``forward_tokens(x, height, width)`` on ``[B, P + H*W, C]`` with ``num_prefix_tokens=P`` (the class token):
  the agents are pooled from the patch queries only, the prefix tokens attend and are attended with their own
  biases (``ac_bias``, ``ca_bias``), the depthwise conv adds to the patch tokens only.
* CSWin (``qkv`` and ``proj`` on the block): ``projections="none"`` and :meth:`AgentAttention2d.attend` on projected
  ``q, k, v``.

Position biases, with the official parameter names and shapes (``A = agent_num = p*p`` pretraining agents, a
pretraining map ``Wh x Ww`` given by ``bias_size``):
``an_bias``/``na_bias`` ``[heads, A, 7, 7]``, ``ah_bias`` ``[1, heads, A, Wh/sr, 1]``, ``aw_bias``
``[1, heads, A, 1, Ww/sr]``, ``ha_bias`` ``[1, heads, Wh, 1, A]``, ``wa_bias`` ``[1, heads, 1, Ww, A]``, DeiT's
``ac_bias`` ``[1, heads, A, P]`` and ``ca_bias`` ``[1, heads, P, A]``. For an ``h x w`` map and an agent grid
``a1 x a2`` they are resized as the official downstream backbones do: ``an`` and ``ah + aw`` (``na`` and
``ha + wa``) bilinearly (``align_corners=False``) over the map to ``h x w`` (the key map ``h/sr x w/sr`` for the
agent->key bias), summed, then bilinearly over the agent grid ``p x p -> a1 x a2``. At the pretraining map and agent
grid every resize is the identity, which is the official classification code. The resized biases are cached per
shape when no gradient is needed (see ``bias_cache_size``).
"""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import register_notrace_function, trunc_normal_
from torch.fx._symbolic_trace import is_fx_symbolic_tracing

__all__ = ["AgentAttention2d", "agent_position_biases"]

_PROJECTIONS = ("qkv", "q_kv", "none")


def _pair(value: Union[int, Sequence[int]], name: str) -> Tuple[int, int]:
    if isinstance(value, bool):
        raise TypeError(f"AgentAttention2d: {name} must be an int or a pair of ints, got {value!r}")
    if isinstance(value, int):
        value = (value, value)
    if not isinstance(value, (tuple, list)) or len(value) != 2 or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise TypeError(f"AgentAttention2d: {name} must be an int or a pair of ints, got {value!r}")
    if value[0] < 1 or value[1] < 1:
        raise ValueError(f"AgentAttention2d: {name} must be positive, got {tuple(value)}")
    return int(value[0]), int(value[1])


def agent_check_map(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``x`` unchanged if it is ``[B, H, W, dim]``, else a ValueError (an FX leaf)."""
    if x.dim() != 4 or x.shape[-1] != dim:
        raise ValueError(f"AgentAttention2d: x must be [B, H, W, C={dim}] (channels last), got {list(x.shape)}")
    return x


def agent_check_tokens(x: torch.Tensor, dim: int, num_prefix_tokens: int, height: int, width: int) -> torch.Tensor:
    """``x`` unchanged if it is ``[B, P + height * width, dim]``, else a ValueError (an FX leaf)."""
    if x.dim() != 3 or x.shape[-1] != dim or x.shape[1] != num_prefix_tokens + height * width:
        raise ValueError(
            f"AgentAttention2d: x must be [B, {num_prefix_tokens} + height * width, C={dim}] for the {height}x{width} "
            f"map, got {list(x.shape)}"
        )
    return x


for _fn in (agent_check_map, agent_check_tokens):
    torch.fx.wrap(_fn.__name__)
    register_notrace_function(_fn)


def _resize_agent_grid(bias: torch.Tensor, pool_size: int, agent_shape: Tuple[int, int]) -> torch.Tensor:
    """``[heads, p*p, L]`` -> ``[heads, a1*a2, L]``, bilinear over the agent grid (identity at ``p x p``)."""
    heads, length = bias.shape[0], bias.shape[-1]
    grid = bias.reshape(heads, pool_size, pool_size, length).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=agent_shape, mode="bilinear", align_corners=False)
    return grid.reshape(heads, length, agent_shape[0] * agent_shape[1]).transpose(1, 2)


def agent_position_biases(
        an_bias: torch.Tensor, na_bias: torch.Tensor, ah_bias: torch.Tensor, aw_bias: torch.Tensor,
        ha_bias: torch.Tensor, wa_bias: torch.Tensor, ac_bias: Optional[torch.Tensor],
        ca_bias: Optional[torch.Tensor], map_size: Tuple[int, int], kv_size: Tuple[int, int],
        agent_shape: Tuple[int, int], pool_size: int,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """The two additive attention biases for an ``h x w`` query map, an ``hk x wk`` key map and an agent grid.

    Args: the official bias parameters (shapes in the module docstring; ``ac_bias``/``ca_bias`` None without
    prefix tokens), ``map_size = (h, w)``, ``kv_size = (hk, wk)``, ``agent_shape = (a1, a2)`` and the pretraining
    grid side ``pool_size = p`` (``agent_num = p * p``).

    Returns:
        ``agent_bias`` ``[heads, a1*a2, P + hk*wk]`` (agents attending the keys, prefix keys first) and
        ``query_bias`` ``[heads, P + h*w, a1*a2]`` (queries attending the agents, prefix queries first).
    """
    # agents -> keys: over the key map, then over the agent grid
    agent_bias = F.interpolate(an_bias, size=kv_size, mode="bilinear", align_corners=False) + F.interpolate(
        (ah_bias + aw_bias).squeeze(0), size=kv_size, mode="bilinear", align_corners=False)
    agent_bias = _resize_agent_grid(agent_bias.flatten(2), pool_size, agent_shape)
    # queries -> agents
    query_bias = F.interpolate(na_bias, size=map_size, mode="bilinear", align_corners=False) + F.interpolate(
        (ha_bias + wa_bias).squeeze(0).permute(0, 3, 1, 2), size=map_size, mode="bilinear", align_corners=False)
    query_bias = _resize_agent_grid(query_bias.flatten(2), pool_size, agent_shape).transpose(1, 2)
    if ac_bias is not None:
        prefix = _resize_agent_grid(ac_bias.squeeze(0), pool_size, agent_shape)  # [heads, A', P]
        agent_bias = torch.cat([prefix, agent_bias], dim=-1)
    if ca_bias is not None:
        prefix = _resize_agent_grid(ca_bias.squeeze(0).transpose(1, 2), pool_size, agent_shape)
        query_bias = torch.cat([prefix.transpose(1, 2), query_bias], dim=1)
    return agent_bias, query_bias


class AgentAttention2d(nn.Module):
    """Agent attention over a 2-D map (optionally after prefix tokens), with the official parameter layout.

    With ``s = head_dim ** -0.5``, per head, for queries Q ``[P + n, d]``, keys/values K, V ``[P + nk, d]``:

    1. agents ``A = AdaptiveAvgPool2d(a1 x a2)`` of the patch queries as a ``[C, h, w]`` map (all channels, before
       the head split; the adaptive bins overlap when the map is not a multiple of the grid);
    2. ``V_A = softmax(s A K^T + agent_bias) V`` (``scaled_dot_product_attention``, float mask);
    3. ``O = softmax(s Q A^T + query_bias) V_A`` (the same);
    4. ``O[patches] += DWC(V)``: a depthwise ``kernel_size`` conv (with bias) over V as a ``[C, hk, wk]`` map,
       bilinearly upsampled to ``h x w`` first when K/V are spatially reduced; then ``proj``.

    Args:
        dim: channels C.
        num_heads: heads; C must be a multiple of it.
        agent_num: pretraining agent count ``p * p`` (a square); sizes the biases.
        bias_size: the pretraining map ``(Wh, Ww)`` (int or pair) the map biases are stored at: the stage map of
            Swin / PVT / CSWin at their pretraining resolution, DeiT's patch grid.
        agent_shape: the agent grid pooled at run time (default ``p x p``); e.g. the downstream ``(9, 9)``.
        projections: ``"qkv"`` (one fused ``qkv`` Linear: Swin, DeiT), ``"q_kv"`` (``q`` and ``kv``: PVT) or
            ``"none"`` (no projections and no ``proj``; call :meth:`attend`: CSWin).
        qkv_bias: bias of the input projections.
        sr_ratio: spatial reduction of K/V (``"q_kv"`` only): a ``sr x sr`` stride-``sr`` conv ``sr`` then ``norm``
            (LayerNorm, ``norm_eps``) before ``kv``, as PVT.
        num_prefix_tokens: tokens before the map (DeiT's class token); adds ``ac_bias`` / ``ca_bias``.
        kernel_size: the depthwise conv on V.
        attn_drop, proj_drop: dropout of both attention maps / after ``proj``.
        bias_cache_size: resized biases kept per module, keyed by the map, key map and agent grid and the bias
            parameters' storage and version (an in-place update or a new state dict invalidates them); used only
            when no gradient is needed (``no_grad`` / ``inference_mode``, or frozen biases), in eager mode (FX,
            TorchScript, ``torch.compile`` and ``export`` recompute). 0 disables. Not part of the state dict.
    """

    __jit_ignored_attributes__ = ["_bias_cache"]

    def __init__(
            self,
            dim: int,
            num_heads: int,
            agent_num: int = 49,
            bias_size: Union[int, Sequence[int]] = 7,
            agent_shape: Optional[Union[int, Sequence[int]]] = None,
            projections: str = "qkv",
            qkv_bias: bool = True,
            sr_ratio: int = 1,
            num_prefix_tokens: int = 0,
            kernel_size: int = 3,
            attn_drop: float = 0.0,
            proj_drop: float = 0.0,
            norm_eps: float = 1e-5,
            bias_cache_size: int = 1,
            device=None,
            dtype=None,
    ) -> None:
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        for name, value in (("dim", dim), ("num_heads", num_heads), ("agent_num", agent_num),
                            ("sr_ratio", sr_ratio), ("num_prefix_tokens", num_prefix_tokens),
                            ("kernel_size", kernel_size), ("bias_cache_size", bias_cache_size)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"AgentAttention2d: {name} must be an int, got {value!r}")
        if dim < 1 or num_heads < 1 or dim % num_heads != 0:
            raise ValueError(f"AgentAttention2d: dim ({dim}) must be a positive multiple of num_heads ({num_heads})")
        pool_size = int(round(agent_num ** 0.5))
        if agent_num < 1 or pool_size * pool_size != agent_num:
            raise ValueError(f"AgentAttention2d: agent_num must be a positive square (p * p agents), got {agent_num}")
        if projections not in _PROJECTIONS:
            raise ValueError(f"AgentAttention2d: projections must be one of {_PROJECTIONS}, got {projections!r}")
        if sr_ratio < 1:
            raise ValueError(f"AgentAttention2d: sr_ratio must be >= 1, got {sr_ratio}")
        if sr_ratio > 1 and (projections != "q_kv" or num_prefix_tokens):
            raise ValueError("AgentAttention2d: sr_ratio > 1 needs projections='q_kv' and no prefix tokens (PVT)")
        if num_prefix_tokens < 0 or kernel_size < 1 or kernel_size % 2 == 0 or bias_cache_size < 0:
            raise ValueError(
                f"AgentAttention2d: num_prefix_tokens ({num_prefix_tokens}) and bias_cache_size ({bias_cache_size}) "
                f"must be >= 0 and kernel_size ({kernel_size}) a positive odd int"
            )
        bias_h, bias_w = _pair(bias_size, "bias_size")
        if bias_h < sr_ratio or bias_w < sr_ratio:
            raise ValueError(f"AgentAttention2d: bias_size {(bias_h, bias_w)} is smaller than sr_ratio {sr_ratio}")
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.agent_num = agent_num
        self.pool_size = pool_size
        self.bias_size = (bias_h, bias_w)
        self.agent_shape: Tuple[int, int] = (pool_size, pool_size)
        self.set_agent_shape(agent_shape)
        self.projections = projections
        self.sr_ratio = sr_ratio
        self.num_prefix_tokens = num_prefix_tokens
        self.attn_drop = float(attn_drop)
        self.bias_cache_size = bias_cache_size
        self._bias_cache: Dict[tuple, Tuple[torch.Tensor, torch.Tensor]] = {}

        # absent modules are None attributes (TorchScript prunes the branches that test them)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias, **dd) if projections == "qkv" else None
        self.q = nn.Linear(dim, dim, bias=qkv_bias, **dd) if projections == "q_kv" else None
        self.kv = nn.Linear(dim, dim * 2, bias=qkv_bias, **dd) if projections == "q_kv" else None
        self.sr = nn.Conv2d(dim, dim, kernel_size=sr_ratio, stride=sr_ratio, **dd) if sr_ratio > 1 else None
        self.norm = nn.LayerNorm(dim, eps=norm_eps, **dd) if sr_ratio > 1 else None
        self.proj = nn.Linear(dim, dim, **dd) if projections != "none" else None
        self.proj_drop = nn.Dropout(proj_drop)
        self.dwc = nn.Conv2d(dim, dim, kernel_size=kernel_size, padding=kernel_size // 2, groups=dim, **dd)

        heads, kv_h, kv_w = num_heads, bias_h // sr_ratio, bias_w // sr_ratio
        self.an_bias = nn.Parameter(torch.zeros(heads, agent_num, 7, 7, **dd))
        self.na_bias = nn.Parameter(torch.zeros(heads, agent_num, 7, 7, **dd))
        self.ah_bias = nn.Parameter(torch.zeros(1, heads, agent_num, kv_h, 1, **dd))
        self.aw_bias = nn.Parameter(torch.zeros(1, heads, agent_num, 1, kv_w, **dd))
        self.ha_bias = nn.Parameter(torch.zeros(1, heads, bias_h, 1, agent_num, **dd))
        self.wa_bias = nn.Parameter(torch.zeros(1, heads, 1, bias_w, agent_num, **dd))
        if num_prefix_tokens:
            self.ac_bias = nn.Parameter(torch.zeros(1, heads, agent_num, num_prefix_tokens, **dd))
            self.ca_bias = nn.Parameter(torch.zeros(1, heads, num_prefix_tokens, agent_num, **dd))
        else:
            self.ac_bias = None
            self.ca_bias = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The official initialisation of the biases (truncated normal, std 0.02); Linear/conv layers keep theirs
        (the models re-initialise them)."""
        for bias in self._bias_parameters():
            trunc_normal_(bias, std=0.02)

    def _bias_parameters(self) -> List[torch.Tensor]:
        biases = [self.an_bias, self.na_bias, self.ah_bias, self.aw_bias, self.ha_bias, self.wa_bias]
        if self.ac_bias is not None and self.ca_bias is not None:
            biases += [self.ac_bias, self.ca_bias]
        return biases

    @torch.jit.ignore
    def set_agent_shape(self, agent_shape: Optional[Union[int, Sequence[int]]] = None) -> None:
        """Pool a ``(a1, a2)`` agent grid from now on (None: the pretraining ``p x p``); the biases follow."""
        self.agent_shape = (self.pool_size, self.pool_size) if agent_shape is None else _pair(
            agent_shape, "agent_shape")
        self.clear_bias_cache()

    @torch.jit.ignore
    def clear_bias_cache(self) -> None:
        self._bias_cache = {}

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, num_heads={self.num_heads}, agent_num={self.agent_num}, "
                f"agent_shape={self.agent_shape}, bias_size={self.bias_size}, sr_ratio={self.sr_ratio}, "
                f"num_prefix_tokens={self.num_prefix_tokens}")

    # -- biases ------------------------------------------------------------------------------------------------
    def compute_position_biases(
            self, height: int, width: int, kv_height: int, kv_width: int,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """:func:`agent_position_biases` of this module's parameters (no cache)."""
        return agent_position_biases(
            self.an_bias, self.na_bias, self.ah_bias, self.aw_bias, self.ha_bias, self.wa_bias,
            self.ac_bias, self.ca_bias, (height, width), (kv_height, kv_width), self.agent_shape,
            self.pool_size)

    def position_biases(
            self, height: int, width: int, kv_height: int, kv_width: int,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """The biases for this map, from the cache when it may be used (see ``bias_cache_size``)."""
        if torch.jit.is_scripting():
            return self.compute_position_biases(height, width, kv_height, kv_width)
        if torch.compiler.is_compiling() or is_fx_symbolic_tracing() or self.bias_cache_size == 0 or (
                torch.is_grad_enabled() and any(p.requires_grad for p in self._bias_parameters())):
            return self.compute_position_biases(height, width, kv_height, kv_width)
        return self._cached_position_biases(height, width, kv_height, kv_width)

    @torch.jit.ignore
    def _cached_position_biases(
            self, height: int, width: int, kv_height: int, kv_width: int,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        params = self._bias_parameters()
        key = (int(height), int(width), int(kv_height), int(kv_width), self.agent_shape,
               params[0].device, params[0].dtype, tuple((p.data_ptr(), p._version) for p in params))
        cached = self._bias_cache.get(key)
        if cached is None:
            cached = self.compute_position_biases(height, width, kv_height, kv_width)
            while len(self._bias_cache) >= self.bias_cache_size:
                self._bias_cache.pop(next(iter(self._bias_cache)))
            self._bias_cache[key] = cached
        return cached

    # -- forward -----------------------------------------------------------------------------------------------
    def attend(
            self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, height: int, width: int,
            kv_height: int, kv_width: int,
    ) -> torch.Tensor:
        """Agent attention of projected tokens, before ``proj``.

        Args:
            q: ``[B, P + height * width, C]``, prefix tokens first, then the map row by row.
            k, v: ``[B, P + kv_height * kv_width, C]`` (the map after the spatial reduction, if any).

        Returns:
            ``[B, P + height * width, C]``: both attentions plus the depthwise conv of V on the map tokens.
        """
        batch, num_tokens, channels = q.shape[0], q.shape[1], q.shape[2]
        num_kv = k.shape[1]
        heads, head_dim, prefix = self.num_heads, self.head_dim, self.num_prefix_tokens
        q_map = q[:, prefix:].reshape(batch, height, width, channels).permute(0, 3, 1, 2)
        agents = F.adaptive_avg_pool2d(q_map, self.agent_shape).flatten(2).transpose(1, 2)  # [B, A, C]
        agents = agents.reshape(batch, -1, heads, head_dim).transpose(1, 2)
        q = q.reshape(batch, num_tokens, heads, head_dim).transpose(1, 2)
        k = k.reshape(batch, num_kv, heads, head_dim).transpose(1, 2)
        v = v.reshape(batch, num_kv, heads, head_dim).transpose(1, 2)

        agent_bias, query_bias = self.position_biases(height, width, kv_height, kv_width)
        dropout = self.attn_drop if self.training else 0.0
        agent_v = F.scaled_dot_product_attention(
            agents, k, v, attn_mask=agent_bias.to(q.dtype).unsqueeze(0), dropout_p=dropout, scale=self.scale)
        out = F.scaled_dot_product_attention(
            q, agents, agent_v, attn_mask=query_bias.to(q.dtype).unsqueeze(0), dropout_p=dropout, scale=self.scale)
        # an explicit copy: the fused kernels return [B, N, heads, d]-strided outputs, so a plain reshape is traced
        # as a view that the math decomposition of torch.onnx cannot take (as in GC ViT)
        out = out.transpose(1, 2).clone(memory_format=torch.contiguous_format).reshape(batch, num_tokens, channels)

        v_map = v[:, :, prefix:].transpose(1, 2).reshape(batch, kv_height, kv_width, channels).permute(0, 3, 1, 2)
        if self.sr_ratio > 1:
            v_map = F.interpolate(v_map, size=(height, width), mode="bilinear", align_corners=False)
        local = self.dwc(v_map).flatten(2).transpose(1, 2)  # [B, h*w, C]
        if prefix:
            return torch.cat([out[:, :prefix], out[:, prefix:] + local], dim=1)
        return out + local

    def forward_tokens(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """``[B, P + height * width, C]`` (prefix tokens first, then the map row by row) -> the same shape."""
        x = agent_check_tokens(x, self.dim, self.num_prefix_tokens, height, width)
        batch, num_tokens, channels = x.shape[0], x.shape[1], x.shape[2]
        kv_height, kv_width = height, width
        if self.qkv is not None:
            qkv = self.qkv(x).reshape(batch, num_tokens, 3, channels)
            q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        elif self.q is not None and self.kv is not None:
            q = self.q(x)
            kv_in = x
            if self.sr is not None and self.norm is not None:
                reduced = self.sr(x.transpose(1, 2).reshape(batch, channels, height, width))
                kv_height, kv_width = reduced.shape[2], reduced.shape[3]
                kv_in = self.norm(reduced.flatten(2).transpose(1, 2))
            kv = self.kv(kv_in).reshape(batch, kv_in.shape[1], 2, channels)
            k, v = kv[:, :, 0], kv[:, :, 1]
        else:
            raise ValueError("AgentAttention2d: projections='none' has no projections; call attend(q, k, v, ...)")
        out = self.attend(q, k, v, height, width, kv_height, kv_width)
        if self.proj is not None:
            out = self.proj_drop(self.proj(out))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, H, W, C]`` -> ``[B, H, W, C]`` (no prefix tokens; use :meth:`forward_tokens` with them)."""
        x = agent_check_map(x, self.dim)
        batch, height, width = x.shape[0], x.shape[1], x.shape[2]
        out = self.forward_tokens(x.reshape(batch, height * width, self.dim), height, width)
        return out.reshape(batch, height, width, self.dim)
