"""The Agent-PVT heads the generic Mask R-CNN / UperNet tests do not cover: RetinaNet (mmdet 3) and Semantic FPN
(mmseg 1), built from the repository's configs with agent_pvt_tiny and the official downstream agent grids
(12-16-28-28): one training step with finite losses and gradients reaching the backbone, then prediction on a
2-image batch of odd, different sizes."""
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.mm
pytest.importorskip("mmdet")
pytest.importorskip("mmseg")

from mmengine.config import Config  # noqa: E402
from mmengine.optim import OptimWrapper  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

import visionattn.mm  # noqa: E402,F401

REPO = Path(__file__).resolve().parents[2]
RETINANET = REPO / "configs" / "mmdet" / "agent_pvt" / "retinanet_agent_pvt_tiny_fpn_1x_coco.py"
SEM_FPN = REPO / "configs" / "mmseg" / "agent_pvt" / "fpn_agent_pvt_tiny_512x512_40k_ade20k.py"


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _backbone_reached(grad_sums, backbone):
    assert all(torch.isfinite(torch.tensor(v)) for v in grad_sums.values())
    reached = [n for n, v in grad_sums.items() if v > 0]
    assert len(reached) >= 0.9 * sum(1 for p in backbone.parameters() if p.requires_grad), len(reached)


def _record_grad_sums(module):
    sums = {}
    for name, param in module.named_parameters():
        if param.requires_grad:
            param.register_hook(lambda grad, name=name: sums.__setitem__(name, float(grad.abs().sum())))
    return sums


def _no_download(cfg):
    cfg.model.backbone.checkpoint = None
    return cfg


def test_retinanet_agent_pvt_train_step_and_predict():
    from mmdet.registry import MODELS
    from mmdet.testing import demo_mm_inputs

    cfg = _no_download(Config.fromfile(str(RETINANET)))
    init_default_scope("mmdet")
    torch.manual_seed(0)
    detector = MODELS.build(cfg.model)
    detector.init_weights()
    attn = detector.backbone.model.stages[0].blocks[0].attn
    assert attn.agent_shape == (12, 12) and attn.agent_num == 9
    shapes = [(3, 97, 131), (3, 83, 109)]
    data = demo_mm_inputs(batch_size=2, image_shapes=shapes, num_items=[3, 2], num_classes=80)
    grad_sums = _record_grad_sums(detector.backbone)
    detector.train()
    log_vars = detector.train_step(data, OptimWrapper(torch.optim.SGD(detector.parameters(), lr=1e-3)))
    for key in ("loss", "loss_cls", "loss_bbox"):
        assert torch.isfinite(torch.as_tensor(log_vars[key])), f"{key} = {log_vars[key]}"
    _backbone_reached(grad_sums, detector.backbone)
    detector.eval()
    with torch.no_grad():
        results = detector.test_step(data)
    assert len(results) == 2 and all(torch.isfinite(r.pred_instances.bboxes).all() for r in results)


def test_semantic_fpn_agent_pvt_train_step_and_predict():
    from mmengine.model import revert_sync_batchnorm
    from mmengine.structures import PixelData
    from mmseg.registry import MODELS
    from mmseg.structures import SegDataSample

    cfg = _no_download(Config.fromfile(str(SEM_FPN)))
    cfg.model.data_preprocessor.size = None
    cfg.model.data_preprocessor.size_divisor = 32
    init_default_scope("mmseg")
    torch.manual_seed(0)
    segmentor = revert_sync_batchnorm(MODELS.build(cfg.model))
    segmentor.init_weights()
    generator = torch.Generator().manual_seed(0)
    inputs, samples = [], []
    for height, width in [(99, 133), (85, 111)]:
        inputs.append(torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=generator))
        sample = SegDataSample()
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 150, (1, height, width), generator=generator))
        sample.set_metainfo(dict(img_shape=(height, width), ori_shape=(height, width), pad_shape=(height, width),
                                 scale_factor=(1.0, 1.0), flip=False, img_path=None))
        samples.append(sample)
    data = dict(inputs=inputs, data_samples=samples)
    grad_sums = _record_grad_sums(segmentor.backbone)
    segmentor.train()
    log_vars = segmentor.train_step(data, OptimWrapper(torch.optim.SGD(segmentor.parameters(), lr=1e-3)))
    assert torch.isfinite(torch.as_tensor(log_vars["loss"]))
    _backbone_reached(grad_sums, segmentor.backbone)
    segmentor.eval()
    with torch.no_grad():
        results = segmentor.test_step(data)
    assert [tuple(r.pred_sem_seg.data.shape[-2:]) for r in results] == [(99, 133), (85, 111)]
