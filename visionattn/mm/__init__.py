"""OpenMMLab adapters (mmdet 3.3 / mmsegmentation 1.2).

``import visionattn.mm`` (or ``custom_imports = dict(imports=['visionattn.mm'])`` in a config):

- registers every visionattn model family in timm (it imports ``visionattn``);
- registers :class:`VisionAttnBackbone` in ``mmdet.registry.MODELS`` and ``mmseg.registry.MODELS``
  (whichever of the two is installed);
- allow-lists the few non-tensor types mmengine pickles into its checkpoints, so that ``--resume``
  works with ``torch.load(weights_only=True)``, torch's default; routes mmengine's checkpoint loading through
  :func:`visionattn.checkpoint.load_checkpoint_file` (a file that pickles code is refused unless the user opts in)
  and makes its local checkpoint saves atomic (see :mod:`visionattn.mm.serialization`).

Install the stack with ``bash tools/install_openmmlab.sh``. ``import visionattn`` alone never imports
OpenMMLab.
"""
import visionattn  # noqa: F401  (registers the model families in timm)

from .backbone import VisionAttnBackbone
from .serialization import (
    MMENGINE_SAFE_GLOBALS, allow_mmengine_checkpoints, find_resume_checkpoint, make_mmengine_saves_atomic,
    route_mmengine_loading,
)
from ._registry import REGISTERED_IN, register

register()
allow_mmengine_checkpoints()
route_mmengine_loading()
make_mmengine_saves_atomic()

__all__ = ["VisionAttnBackbone", "MMENGINE_SAFE_GLOBALS", "allow_mmengine_checkpoints", "find_resume_checkpoint",
           "REGISTERED_IN", "register"]
