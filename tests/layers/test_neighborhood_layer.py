"""NeighborhoodAttention2d against a dense masked-attention oracle written here from the NATTEN 0.14 rule."""
import pytest
import torch
import torch.nn.functional as F

from visionattn.layers import NeighborhoodAttention2d


def _start(index, length, kernel, dilation):
    # NATTEN 0.14 get_window_start (reference/backbones.md §3.2), per axis.
    radius = kernel // 2
    if dilation == 1:
        return min(max(index - radius, 0), length - kernel)
    if index - radius * dilation < 0:
        return index % dilation
    if index + radius * dilation >= length:
        a = (length // dilation) * dilation
        b = length - a
        m = index % dilation
        return length - b + m - 2 * radius * dilation if m < b else a + m - kernel * dilation
    return index - radius * dilation


def dense_oracle(module, x):
    """Full [N, N] logits with -inf outside each window and the rpb placed by relative offset (float64)."""
    batch, height, width, dim = x.shape
    (kh, kw), (dy, dx) = module.kernel_size, module.dilation
    ph, pw = max(height, kh * dy), max(width, kw * dx)
    x = F.pad(x.double(), (0, 0, 0, pw - width, 0, ph - height))
    heads, hd = module.num_heads, dim // module.num_heads
    w = {n: p.detach().double() for n, p in module.named_parameters()}
    qkv = F.linear(x, w["qkv.weight"], w.get("qkv.bias")).reshape(batch, ph * pw, 3, heads, hd)
    q, k, v = qkv.permute(2, 0, 3, 1, 4)  # [B, heads, N, hd]
    logits = (q @ k.transpose(-1, -2)) * hd ** -0.5
    bias = torch.full((heads, ph * pw, ph * pw), float("-inf"), dtype=torch.float64)
    for i in range(ph):
        sy = _start(i, ph, kh, dy)
        for j in range(pw):
            sx = _start(j, pw, kw, dx)
            for a in range(kh):
                for b in range(kw):
                    r, c = sy + a * dy, sx + b * dx
                    value = w["rpb"][:, a + (sy - i) // dy + kh - 1, b + (sx - j) // dx + kw - 1] if "rpb" in w else 0.0
                    bias[:, i * pw + j, r * pw + c] = value
    out = ((logits + bias).softmax(-1) @ v).transpose(1, 2).reshape(batch, ph, pw, dim)[:, :height, :width]
    return F.linear(out, w["proj.weight"], w["proj.bias"])


@pytest.mark.parametrize("size, kernel, dilation, rpb", [
    ((9, 11), 3, 1, True),
    ((10, 13), 5, 2, True),
    ((8, 12), (3, 5), (2, 2), False),
    ((5, 9), 3, 4, True),   # smaller than kernel*dilation: padded bottom/right, cropped after
    ((2, 3), 7, 1, True),   # both axes padded
])
@pytest.mark.parametrize("batch", [1, 2])
def test_layer_matches_dense_oracle(size, kernel, dilation, rpb, batch):
    torch.manual_seed(0)
    module = NeighborhoodAttention2d(16, 2, kernel, dilation=dilation, rpb=rpb).eval()
    x = torch.randn(batch, *size, 16)
    out = module(x)
    assert out.shape == x.shape
    torch.testing.assert_close(out.double(), dense_oracle(module, x), atol=2e-5, rtol=1e-4)


def test_parameter_layout_and_init():
    torch.manual_seed(0)
    module = NeighborhoodAttention2d(64, 4, 7)
    shapes = {n: tuple(p.shape) for n, p in module.state_dict().items()}
    assert shapes == {
        "qkv.weight": (192, 64), "qkv.bias": (192,), "rpb": (4, 13, 13), "proj.weight": (64, 64), "proj.bias": (64,),
    }
    assert 0.015 < module.rpb.std().item() < 0.025 and module.rpb.abs().max().item() <= 2.0
    no_bias = NeighborhoodAttention2d(64, 4, 7, rpb=False, qkv_bias=False)
    assert set(no_bias.state_dict()) == {"qkv.weight", "proj.weight", "proj.bias"}


def test_backward_reaches_every_parameter():
    torch.manual_seed(0)
    module = NeighborhoodAttention2d(16, 2, 3, dilation=2)
    x = torch.randn(2, 7, 9, 16, requires_grad=True)
    module(x).square().sum().backward()
    for name, p in module.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert x.grad.abs().sum() > 0


def test_pad_small_false_raises():
    module = NeighborhoodAttention2d(16, 2, 3, dilation=4, pad_small=False)
    with pytest.raises(ValueError, match="kernel_size\\*dilation"):
        module(torch.randn(1, 5, 12, 16))


def test_attention_dropout_only_in_training():
    torch.manual_seed(0)
    module = NeighborhoodAttention2d(16, 2, 3, attn_drop=0.5)
    x = torch.randn(1, 6, 6, 16)
    module.eval()
    torch.testing.assert_close(module(x), module(x))
    module.train()
    assert not torch.allclose(module(x), module.eval()(x))


@pytest.mark.parametrize("kwargs, error", [
    (dict(dim=10, num_heads=3, kernel_size=3), ValueError),
    (dict(dim=16, num_heads=2, kernel_size=4), ValueError),
    (dict(dim=16, num_heads=2, kernel_size=3, dilation=0), ValueError),
    (dict(dim=16, num_heads=2, kernel_size="3"), TypeError),
])
def test_bad_construction_raises(kwargs, error):
    with pytest.raises(error):
        NeighborhoodAttention2d(**kwargs)


def test_bad_input_raises():
    module = NeighborhoodAttention2d(16, 2, 3)
    with pytest.raises(ValueError, match="B, H, W, 16"):
        module(torch.randn(1, 16, 8, 8))
