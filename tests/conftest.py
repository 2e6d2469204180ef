import importlib.util
import os

import pytest
import torch

# The Triton kernels run on CPU only under the interpreter, which must be chosen before triton is
# imported. On a CUDA machine the kernels are compiled for real.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Under pytest-xdist every worker gets one thread: two workers with two threads each on two cores
# oversubscribe and slow everything (OpenMMLab steps by up to 10x).
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
else:
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def pytest_collection_modifyitems(config, items):
    has_cuda = torch.cuda.is_available()
    has_mm = all(importlib.util.find_spec(m) is not None for m in ("mmcv", "mmdet", "mmseg"))
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    skip_mm = pytest.mark.skip(reason="needs OpenMMLab (tools/install_openmmlab.sh)")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)
        if "mm" in item.keywords and not has_mm:
            item.add_marker(skip_mm)
