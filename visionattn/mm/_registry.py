"""Registration of the adapter in the OpenMMLab registries that are installed."""
from __future__ import annotations

import importlib
import logging
from typing import List

from .backbone import VisionAttnBackbone

_logger = logging.getLogger(__name__)

# (registry module, package that owns it); mmdet and mmseg each keep their own MODELS registry.
_REGISTRIES = (("mmdet.registry", "mmdet"), ("mmseg.registry", "mmseg"))

REGISTERED_IN: List[str] = []


def register() -> List[str]:
    """Register ``VisionAttnBackbone`` in every installed one of mmdet's and mmseg's ``MODELS``.

    Returns the packages it is registered in. Safe to call again. Raises ImportError when neither
    mmdet nor mmseg is installed (run ``bash tools/install_openmmlab.sh``).
    """
    for module_name, package in _REGISTRIES:
        if package in REGISTERED_IN:
            continue
        try:
            registry = importlib.import_module(module_name).MODELS
        except ImportError as err:
            _logger.debug("%s not available (%s); VisionAttnBackbone not registered there", package, err)
            continue
        if registry.module_dict.get("VisionAttnBackbone") is not VisionAttnBackbone:
            registry.register_module(name="VisionAttnBackbone", module=VisionAttnBackbone, force=True)
        REGISTERED_IN.append(package)
    if not REGISTERED_IN:
        raise ImportError("visionattn.mm needs mmdet or mmsegmentation: run `bash tools/install_openmmlab.sh`")
    return list(REGISTERED_IN)
