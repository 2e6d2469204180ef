"""Functional ops: fused Triton kernels, exact PyTorch references, and backend dispatch."""
from .neighborhood import na2d, NA_BACKENDS  # noqa: F401
from .gla import gla, bigla, GLA_BACKENDS  # noqa: F401
