"""Timing and device-peak helpers shared by the op benchmarks (bench_na2d.py, bench_gla.py)."""
from __future__ import annotations

import time
from typing import Callable, Optional, Tuple

import torch

# Dense peaks (reference/kernels.md §7): bf16/fp16 tensor TFLOP/s and HBM TB/s.
PEAKS = {"H200": (989.0, 4.8), "H100": (989.0, 3.35), "A100": (312.0, 2.0)}


def device_peaks(device: torch.device) -> Optional[Tuple[float, float]]:
    """``(TFLOP/s, TB/s)`` of a known GPU, else None (CPU, unknown GPUs)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, peaks in PEAKS.items():
        if key in name:
            return peaks
    return None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(fn: Callable[[], object], device: torch.device, warmup: int, reps: int) -> float:
    """Mean milliseconds per call over ``reps`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    sync(device)
    return (time.perf_counter() - start) / reps * 1e3
