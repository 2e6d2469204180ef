"""Mask R-CNN (mmdet 3) with each family's smallest model as backbone: one training step with finite losses
and gradients reaching the backbone, then prediction on a 2-image batch of odd, different sizes."""
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.mm
pytest.importorskip("mmdet")

from mmengine.config import Config  # noqa: E402
from mmengine.optim import OptimWrapper  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

import visionattn.mm  # noqa: E402,F401

from _smallest import SMALLEST, skip_unless_registered  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
BASE = REPO / "configs" / "mmdet" / "_base_" / "mask_rcnn_fpn_3x_coco.py"
IMAGE_SHAPES = [(3, 97, 131), (3, 83, 109)]  # odd, different sizes: padded to 32 inside, rescaled back


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def build_detector(model_name):
    from mmdet.registry import MODELS

    cfg = Config.fromfile(str(BASE))
    init_default_scope("mmdet")
    backbone = MODELS.build(dict(cfg.model.backbone, model_name=model_name, drop_path_rate=0.1))
    cfg.model.backbone.model_name = model_name
    cfg.model.backbone.drop_path_rate = 0.1
    cfg.model.neck.in_channels = backbone.out_channels
    # fewer sampled RoIs / proposals than the COCO schedule: same code paths, a fraction of the CPU time
    cfg.model.train_cfg.rcnn.sampler.num = 64
    cfg.model.train_cfg.rpn_proposal.max_per_img = 200
    cfg.model.test_cfg.rpn.max_per_img = 100
    torch.manual_seed(0)
    return MODELS.build(cfg.model)


def record_grad_sums(module):
    """Sum of |grad| per parameter, recorded during backward (the optimizer step clears .grad afterwards)."""
    sums = {}
    for name, param in module.named_parameters():
        if param.requires_grad:
            param.register_hook(lambda grad, name=name: sums.__setitem__(name, float(grad.abs().sum())))
    return sums


@pytest.mark.parametrize("model_name", SMALLEST)
def test_mask_rcnn_train_step_and_predict(model_name):
    skip_unless_registered(model_name)
    from mmdet.testing import demo_mm_inputs

    detector = build_detector(model_name)
    detector.init_weights()
    data = demo_mm_inputs(batch_size=2, image_shapes=IMAGE_SHAPES, num_items=[3, 2], num_classes=80,
                          with_mask=True)
    optim = OptimWrapper(torch.optim.SGD(detector.parameters(), lr=1e-3))
    grad_sums = record_grad_sums(detector.backbone)
    detector.train()
    log_vars = detector.train_step(data, optim)
    for key in ("loss", "loss_rpn_cls", "loss_rpn_bbox", "loss_cls", "loss_bbox", "loss_mask"):
        assert key in log_vars, key
        assert torch.isfinite(torch.as_tensor(log_vars[key])), f"{key} = {log_vars[key]}"
    # the backward pass reached (nearly) every backbone parameter, with finite gradients
    assert all(torch.isfinite(torch.tensor(v)) for v in grad_sums.values())
    reached = [n for n, v in grad_sums.items() if v > 0]
    assert len(reached) >= 0.9 * sum(1 for p in detector.backbone.parameters() if p.requires_grad), len(reached)

    detector.eval()
    with torch.no_grad():
        results = detector.test_step(data)
    assert len(results) == 2
    for result, (_, height, width) in zip(results, IMAGE_SHAPES):
        pred = result.pred_instances
        n = len(pred)
        assert pred.bboxes.shape == (n, 4) and pred.scores.shape == (n,) and pred.labels.shape == (n,)
        assert pred.masks.shape[1:] == (height, width)  # masks come back at the original image size
        if n:
            assert torch.isfinite(pred.bboxes).all()
            assert float(pred.bboxes[:, 2].max()) <= width + 1e-3 and float(pred.bboxes[:, 3].max()) <= height + 1e-3
            assert float(pred.bboxes[:, :2].min()) >= -1e-3
