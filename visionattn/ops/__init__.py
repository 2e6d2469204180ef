"""Functional ops: fused Triton kernels, exact PyTorch references, and backend dispatch."""
