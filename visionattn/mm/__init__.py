"""OpenMMLab adapters (mmdet 3.3 / mmsegmentation 1.2).

``import visionattn.mm`` (or ``custom_imports = dict(imports=['visionattn.mm'])`` in a config):

- registers every visionattn model family in timm (it imports ``visionattn``);
- registers :class:`VisionAttnBackbone` in ``mmdet.registry.MODELS`` and ``mmseg.registry.MODELS``
  (whichever of the two is installed);
- allow-lists the few non-tensor types mmengine pickles into its checkpoints, so that ``--resume``
  works with ``torch.load(weights_only=True)``, torch's default (see :mod:`visionattn.mm.serialization`).

Install the stack with ``bash tools/install_openmmlab.sh``. ``import visionattn`` alone never imports
OpenMMLab.
"""
import visionattn  # noqa: F401  (registers the model families in timm)

from .backbone import VisionAttnBackbone
from .serialization import MMENGINE_SAFE_GLOBALS, allow_mmengine_checkpoints
from ._registry import REGISTERED_IN, register

register()
allow_mmengine_checkpoints()

__all__ = ["VisionAttnBackbone", "MMENGINE_SAFE_GLOBALS", "allow_mmengine_checkpoints", "REGISTERED_IN", "register"]
