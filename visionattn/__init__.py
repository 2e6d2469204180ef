"""visionattn: efficient-attention vision backbones for timm and OpenMMLab.

``import visionattn`` registers every model family in timm's registry, and routes timm's checkpoint loaders
through :mod:`visionattn.checkpoint` (weights-only loading; code in a file runs only with an explicit opt-in, see
SECURITY.md). OpenMMLab is only imported by ``visionattn.mm``.
"""
__version__ = "0.1.0"

from . import ops, layers, models  # noqa: F401  (models registers the timm entrypoints)
from . import data  # noqa: F401
from .checkpoint import route_timm_loading

route_timm_loading()  # timm's own checkpoint loaders follow visionattn's policy too (see SECURITY.md)
