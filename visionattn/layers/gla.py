"""ViG's GLA2D layer: bidirectional gated linear attention over a 2-D map with gated locality injection.

Paper: "ViG: Linear-complexity Visual Sequence Learning with Gated Linear Attention" (AAAI 2025),
official code hustvl/ViG (``classification/models/vig_h.py:GLA2D``, ``vig.py:GatedLinearAttention``).
The parameter names (``in_proj``, ``qkv_proj``, ``gk_proj``, ``g_proj``, ``g_norm``, ``l_norm``, ``o_proj``)
are the official ones, so a block's ``op.*`` / ``attn.*`` entries load unchanged (2-D weights; the 1x1-conv
shaped ``[out, in, 1, 1]`` copies the official ``Linear2d`` also accepts are flattened by the model converters).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import register_notrace_function

from .. import ops
from ..ops._dispatch import triton_available
from ..ops.gla import TRITON_MAX_DK, TRITON_MAX_DV

__all__ = ["BiGatedLinearAttention2d", "Fp32RmsNorm", "swiglu_linear"]


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _rms_forward(x: torch.Tensor, weight: torch.Tensor, eps: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(x * rstd * weight, rstd)`` in the compute dtype (the op order of ``F.rms_norm``'s CPU composite)."""
    xc = x.to(_compute_dtype(x.dtype))
    rstd = torch.rsqrt(xc.pow(2).mean(-1, keepdim=True) + eps)
    return xc * rstd * weight.to(xc.dtype), rstd


def _rms_backward(
        grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, rstd: torch.Tensor,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(dx, dweight)`` of ``x * rstd * weight`` in the compute dtype, from the input and ``rstd`` only."""
    xhat = x.to(rstd.dtype) * rstd
    grad = grad.to(rstd.dtype)
    gw = grad * weight.to(rstd.dtype)
    dx = rstd * (gw - xhat * (gw * xhat).mean(-1, keepdim=True))
    dweight = (grad * xhat).reshape(-1, x.shape[-1]).sum(0)
    return dx, dweight


class _RmsNormFn(torch.autograd.Function):
    # saves the input and the per-row rstd (the CPU composite of F.rms_norm also keeps x * rstd)
    @staticmethod
    def forward(ctx, x, weight, eps):
        out, rstd = _rms_forward(x, weight, eps)
        ctx.save_for_backward(x, weight, rstd)
        return out.to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        x, weight, rstd = ctx.saved_tensors
        dx, dweight = _rms_backward(grad, x, weight, rstd)
        return dx.to(x.dtype), dweight.to(weight.dtype), None


def fp32_rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm over the last dim in float32 (float64 for float64), cast back to the dtype of ``x``.

    Autograd keeps the input and the per-row rstd only (the backward is written out)."""
    if torch.jit.is_scripting():
        compute = torch.float64 if x.dtype == torch.float64 else torch.float32
        return F.rms_norm(x.to(compute), [x.shape[-1]], weight.to(compute), eps).to(x.dtype)
    return _RmsNormFn.apply(x, weight, eps)


def gla2d_check_input(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``x`` unchanged if it is ``[B, H, W, dim]``, else a ValueError (an FX leaf)."""
    if x.dim() != 4 or x.shape[-1] != dim:
        raise ValueError(
            f"BiGatedLinearAttention2d: x must be [B, H, W, C={dim}] (channels last), got {list(x.shape)}"
        )
    return x


class _SwiGLULinearFn(torch.autograd.Function):
    # saves the fc1 output and the weight; silu(gate) * value (the weight's input) is recomputed in backward
    @staticmethod
    def forward(ctx, gate_value, weight):
        gate, value = gate_value.chunk(2, dim=-1)
        ctx.save_for_backward(gate_value, weight)
        return F.linear(F.silu(gate) * value, weight)

    @staticmethod
    def backward(ctx, grad):
        gate_value, weight = ctx.saved_tensors
        gate, value = gate_value.chunk(2, dim=-1)
        sig = torch.sigmoid(gate)
        silu = gate * sig
        hidden = (silu * value).to(grad.dtype)
        dweight = grad.reshape(-1, grad.shape[-1]).t().mm(hidden.reshape(-1, hidden.shape[-1]))
        dhidden = (grad @ weight.to(grad.dtype)).to(gate_value.dtype)
        dgate = dhidden * value * (sig * (1 + gate * (1 - sig)))
        return torch.cat([dgate, dhidden * silu], dim=-1), dweight.to(weight.dtype)


def swiglu_linear(gate_value: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``F.linear(silu(gate) * value, weight)`` (no bias), ``[gate, value] = gate_value.chunk(2, -1)``.

    Autograd keeps ``gate_value`` and ``weight`` only: the product, the linear's input, is recomputed in backward
    (elementwise), so the ``hidden``-wide activation is not stored."""
    if torch.jit.is_scripting():
        gate, value = gate_value.chunk(2, dim=-1)
        return F.linear(F.silu(gate) * value, weight)
    return _SwiGLULinearFn.apply(gate_value, weight)


class _LogGateFn(torch.autograd.Function):
    # saves the output only: d/dz logsigmoid(z) = sigmoid(-z) = -expm1(logsigmoid(z))
    @staticmethod
    def forward(ctx, gate_logits, normalizer):
        out = F.logsigmoid(gate_logits.to(_compute_dtype(gate_logits.dtype))) / normalizer
        ctx.save_for_backward(out)
        ctx.normalizer = normalizer
        ctx.in_dtype = gate_logits.dtype
        return out

    @staticmethod
    def backward(ctx, grad):
        out, = ctx.saved_tensors
        return (grad * torch.expm1(out * ctx.normalizer) / -ctx.normalizer).to(ctx.in_dtype), None


def gla2d_log_gates(gate_logits: torch.Tensor, normalizer: float) -> torch.Tensor:
    """``logsigmoid(gate_logits) / normalizer`` in float32 (float64 for float64): logsigmoid of an fp16 logit
    loses the small decays that matter over long scans. Autograd keeps the output only (which the scan keeps)."""
    if torch.jit.is_scripting():
        compute = torch.float64 if gate_logits.dtype == torch.float64 else torch.float32
        return F.logsigmoid(gate_logits.to(compute)) / normalizer
    return _LogGateFn.apply(gate_logits, normalizer)


class _MixFn(torch.autograd.Function):
    # saves o, local and the gate logits; both RMSNorms, the sigmoid, the mix and the SiLU are recomputed
    @staticmethod
    def forward(ctx, o, local, mix_logits, g_weight, l_weight, g_eps, l_eps, out_act):
        o_norm, g_rstd = _rms_forward(o, g_weight, g_eps)
        l_norm, l_rstd = _rms_forward(local, l_weight, l_eps)
        mix = torch.sigmoid(mix_logits)
        out = o_norm.to(o.dtype) * mix + l_norm.to(local.dtype) * (1 - mix)
        ctx.save_for_backward(o, local, mix_logits, g_weight, l_weight, g_rstd, l_rstd)
        ctx.out_act = out_act
        return F.silu(out) if out_act else out

    @staticmethod
    def backward(ctx, grad):
        o, local, mix_logits, g_weight, l_weight, g_rstd, l_rstd = ctx.saved_tensors
        mix = torch.sigmoid(mix_logits)
        o_norm = (o.to(g_rstd.dtype) * g_rstd * g_weight.to(g_rstd.dtype)).to(o.dtype)
        l_norm = (local.to(l_rstd.dtype) * l_rstd * l_weight.to(l_rstd.dtype)).to(local.dtype)
        if ctx.out_act:
            out = o_norm * mix + l_norm * (1 - mix)
            sig = torch.sigmoid(out)
            grad = grad * (sig * (1 + out * (1 - sig)))
        dmix = grad * (o_norm - l_norm)
        dlogits = dmix * mix * (1 - mix)
        do, dg_weight = _rms_backward(grad * mix, o, g_weight, g_rstd)
        dlocal, dl_weight = _rms_backward(grad * (1 - mix), local, l_weight, l_rstd)
        return (do.to(o.dtype), dlocal.to(local.dtype), dlogits, dg_weight.to(g_weight.dtype),
                dl_weight.to(l_weight.dtype), None, None, None)


def gla2d_mix(
        o: torch.Tensor, local: torch.Tensor, mix_logits: torch.Tensor, g_weight: torch.Tensor, l_weight: torch.Tensor,
        g_eps: float, l_eps: float, out_act: bool,
) -> torch.Tensor:
    """``silu?(g_norm(o) * s + l_norm(local) * (1 - s))``, ``s = sigmoid(mix_logits)`` (all ``[..., head_v_dim]``).

    Autograd keeps ``o``, ``local``, ``mix_logits`` and the per-row rstds; the rest is recomputed in backward."""
    if torch.jit.is_scripting():
        mix = torch.sigmoid(mix_logits)
        out = fp32_rms_norm(o, g_weight, g_eps) * mix + fp32_rms_norm(local, l_weight, l_eps) * (1 - mix)
        return F.silu(out) if out_act else out
    return _MixFn.apply(o, local, mix_logits, g_weight, l_weight, g_eps, l_eps, out_act)


def gla2d_bigla(
        q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, gate_fwd: torch.Tensor, gate_bwd: torch.Tensor,
        backend: Optional[str], triton_max_dk: int, triton_max_dv: int,
) -> torch.Tensor:
    """``visionattn.ops.bigla`` in eager and FX; in TorchScript the ``visionattn::bigla`` operator with the backend
    resolved here (an explicit ``backend`` is used as given; otherwise Triton on CUDA for fp16/bf16/fp32 inputs
    within ``triton_max_dk`` / ``triton_max_dv``, the reference elsewhere; ``VISIONATTN_BACKEND`` is not read in
    TorchScript)."""
    if torch.jit.is_scripting():
        if backend is None:
            chosen = "reference"
            if q.is_cuda and q.dtype != torch.float64 and q.shape[-1] <= triton_max_dk \
                    and v.shape[-1] <= triton_max_dv:
                chosen = "triton"
        else:
            chosen = backend
        return torch.ops.visionattn.bigla(q, k, v, gate_fwd, gate_bwd, q.shape[-1] ** -0.5, chosen)
    return ops.bigla(q, k, v, gate_fwd, gate_bwd, backend=backend)


for _fn in (fp32_rms_norm, swiglu_linear, gla2d_check_input, gla2d_log_gates, gla2d_mix, gla2d_bigla):
    torch.fx.wrap(_fn.__name__)
    register_notrace_function(_fn)


class Fp32RmsNorm(nn.Module):
    """RMSNorm over the last dim, computed in float32 (float64 for float64) and cast back (fp16 squares overflow).

    ``y = x / sqrt(mean(x^2) + eps) * weight``; input ``[..., dim]``.
    """

    def __init__(self, dim: int, eps: float = 1e-6, device=None, dtype=None) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fp32_rms_norm(x, self.weight, self.eps)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


class BiGatedLinearAttention2d(nn.Module):
    """Bidirectional gated linear attention over a ``[B, H, W, C]`` map (ViG's GLA2D).

    1. ``local = DWConv3x3(x)`` (no bias; SiLU after it when ``conv_act``); every projection reads ``local``.
    2. ``q, k`` (``C * expand_k`` channels) and ``v`` (``C * expand_v``) from ``qkv_proj``, split into heads.
    3. Direction-wise log-gates from the low-rank ``gk_proj`` (C -> ``gate_low_rank_dim`` -> 2 * key_dim):
       the first half is the forward gate, the second the backward gate, ``logsigmoid(.) / gate_logit_normalizer``.
    4. ``o = visionattn.ops.bigla(q, k, v, g_fwd, g_bwd)`` over the raster-flattened map (row-major,
       ``L = H * W``): the mean of a forward and a backward scan, each including the token itself.
    5. Per head: ``o = g_norm(o) * s + l_norm(local) * (1 - s)``, ``s = sigmoid(g_proj(local))``.
    6. Optional SiLU (``out_act``), then ``o_proj``.

    Args:
        dim: channels C.
        num_heads: heads; ``C * expand_k`` and ``C`` must be multiples of it.
        expand_k: key/query width as a fraction of C (ViG: 0.5).
        expand_v: value width as a fraction of C; must be 1.0 (the local branch is mixed into the value heads).
        gate_low_rank_dim: rank of the gate projection (ViG: 16).
        gate_logit_normalizer: divides ``logsigmoid`` (ViG: 16).
        conv_act: SiLU after the depthwise conv (official ``use_act_in_conv``).
        out_act: SiLU before ``o_proj`` (official ``use_out_act``).
        norm_eps: eps of ``l_norm`` (official ``rms_norm_eps`` = 1e-6).
        out_norm_eps: eps of ``g_norm``; default ``norm_eps``. Plain ViG's released eval path halves ``o``
            once more before ``g_norm``, which equals ``out_norm_eps = 4 * norm_eps``.
        backend: passed to ``visionattn.ops.bigla`` (None: Triton on CUDA, reference elsewhere).
    """

    def __init__(
            self,
            dim: int,
            num_heads: int,
            expand_k: float = 0.5,
            expand_v: float = 1.0,
            gate_low_rank_dim: int = 16,
            gate_logit_normalizer: float = 16.0,
            conv_act: bool = False,
            out_act: bool = False,
            norm_eps: float = 1e-6,
            out_norm_eps: Optional[float] = None,
            backend: Optional[str] = None,
            device=None,
            dtype=None,
    ) -> None:
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"BiGatedLinearAttention2d: dim must be a positive int, got {dim!r}")
        if not isinstance(num_heads, int) or num_heads < 1:
            raise ValueError(f"BiGatedLinearAttention2d: num_heads must be a positive int, got {num_heads!r}")
        key_dim, value_dim = int(dim * expand_k), int(dim * expand_v)
        if value_dim != dim:
            raise ValueError(
                f"BiGatedLinearAttention2d: expand_v must be 1.0 (value width == dim, since the local branch is "
                f"mixed into the value heads), got {expand_v}"
            )
        if key_dim < num_heads or key_dim % num_heads != 0:
            raise ValueError(
                f"BiGatedLinearAttention2d: dim * expand_k = {key_dim} must be a positive multiple of "
                f"num_heads = {num_heads}"
            )
        if dim % num_heads != 0:
            raise ValueError(f"BiGatedLinearAttention2d: dim ({dim}) must be a multiple of num_heads ({num_heads})")
        if gate_logit_normalizer <= 0:
            raise ValueError(
                f"BiGatedLinearAttention2d: gate_logit_normalizer must be > 0, got {gate_logit_normalizer}"
            )
        self.dim = dim
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.value_dim = value_dim
        self.head_k_dim = key_dim // num_heads
        self.head_v_dim = value_dim // num_heads
        self.gate_logit_normalizer = float(gate_logit_normalizer)
        self.backend = backend
        # head dims the Triton kernels take here (0: no Triton); read by the TorchScript path of gla2d_bigla
        self._triton_max_dk, self._triton_max_dv = (TRITON_MAX_DK, TRITON_MAX_DV) if triton_available() else (0, 0)

        self.in_proj = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size=3, padding=1, groups=dim, bias=False, **dd),
            nn.SiLU() if conv_act else nn.Identity(),
        )
        self.qkv_proj = nn.Linear(dim, 2 * key_dim + value_dim, bias=False, **dd)
        self.gk_proj = nn.Sequential(
            nn.Linear(dim, gate_low_rank_dim, bias=False, **dd),
            nn.Linear(gate_low_rank_dim, 2 * key_dim, bias=True, **dd),
        )
        self.o_proj = nn.Linear(value_dim, dim, bias=False, **dd)
        self.g_norm = Fp32RmsNorm(self.head_v_dim, eps=norm_eps if out_norm_eps is None else out_norm_eps, **dd)
        self.l_norm = Fp32RmsNorm(self.head_v_dim, eps=norm_eps, **dd)
        self.g_proj = nn.Linear(dim, value_dim, bias=True, **dd)
        self.out_act = nn.SiLU() if out_act else nn.Identity()  # kept for the module tree; applied in gla2d_mix
        self._out_act = bool(out_act)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # the official initialisation: small xavier gains on every projection
        gain = 2 ** -2.5
        for weight in (self.qkv_proj.weight, self.in_proj[0].weight, self.g_proj.weight, self.o_proj.weight,
                       self.gk_proj[0].weight, self.gk_proj[1].weight):
            nn.init.xavier_uniform_(weight, gain=gain)
        nn.init.zeros_(self.gk_proj[1].bias)
        nn.init.zeros_(self.g_proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``[B, H, W, C]`` -> ``[B, H, W, C]``."""
        x = gla2d_check_input(x, self.dim)
        batch, height, width = x.shape[0], x.shape[1], x.shape[2]
        length, heads = height * width, self.num_heads
        local = self.in_proj(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1).reshape(batch, length, self.dim)

        q, k, v = self.qkv_proj(local).split([self.key_dim, self.key_dim, self.value_dim], dim=-1)
        q = q.reshape(batch, length, heads, self.head_k_dim)
        k = k.reshape(batch, length, heads, self.head_k_dim)
        v = v.reshape(batch, length, heads, self.head_v_dim)
        gates = gla2d_log_gates(self.gk_proj(local), self.gate_logit_normalizer)
        gate_fwd, gate_bwd = gates.chunk(2, dim=-1)
        gate_fwd = gate_fwd.reshape(batch, length, heads, self.head_k_dim)
        gate_bwd = gate_bwd.reshape(batch, length, heads, self.head_k_dim)

        o = gla2d_bigla(q, k, v, gate_fwd, gate_bwd, self.backend, self._triton_max_dk,
                        self._triton_max_dv)  # [B, L, heads, dv]

        shape = (batch, length, heads, self.head_v_dim)
        o = gla2d_mix(o, local.reshape(shape), self.g_proj(local).reshape(shape), self.g_norm.weight,
                      self.l_norm.weight, self.g_norm.eps, self.l_norm.eps, self._out_act)
        return self.o_proj(o.reshape(batch, length, self.value_dim)).reshape(batch, height, width, self.dim)
