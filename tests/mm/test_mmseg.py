"""UperNet (mmseg 1) with each family's smallest model as backbone: one training step with finite losses and
gradients reaching the backbone (a 2-image batch of odd, different sizes), then prediction at those sizes."""
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.mm
pytest.importorskip("mmseg")

from mmengine.config import Config  # noqa: E402
from mmengine.model import revert_sync_batchnorm  # noqa: E402
from mmengine.optim import OptimWrapper  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmengine.structures import PixelData  # noqa: E402

import visionattn.mm  # noqa: E402,F401

from _smallest import SMALLEST, skip_unless_registered  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
BASE = REPO / "configs" / "mmseg" / "_base_" / "upernet_512x512_160k_ade20k.py"
IMAGE_SHAPES = [(99, 133), (85, 111)]
NUM_CLASSES = 150


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def build_segmentor(model_name):
    from mmseg.registry import MODELS

    cfg = Config.fromfile(str(BASE))
    init_default_scope("mmseg")
    backbone = MODELS.build(dict(cfg.model.backbone, model_name=model_name, drop_path_rate=0.1))
    cfg.model.backbone.model_name = model_name
    cfg.model.backbone.drop_path_rate = 0.1
    cfg.model.decode_head.in_channels = backbone.out_channels
    cfg.model.auxiliary_head.in_channels = backbone.out_channels[2]
    # a narrower decode head than ADE20K's 512 channels: same code paths, a fraction of the CPU time
    cfg.model.decode_head.channels = 64
    cfg.model.auxiliary_head.channels = 32
    # no fixed 512x512 padding: pad to the stride only, so odd sizes stay odd until the stride padding
    cfg.model.data_preprocessor.size = None
    cfg.model.data_preprocessor.size_divisor = 32
    torch.manual_seed(0)
    return revert_sync_batchnorm(MODELS.build(cfg.model))  # SyncBN needs a process group; BN on one CPU


def make_batch():
    from mmseg.structures import SegDataSample

    generator = torch.Generator().manual_seed(0)
    inputs, samples = [], []
    for height, width in IMAGE_SHAPES:
        inputs.append(torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=generator))
        sample = SegDataSample()
        labels = torch.randint(0, NUM_CLASSES, (1, height, width), generator=generator)
        labels[:, :5] = 255  # some ignored pixels
        sample.gt_sem_seg = PixelData(data=labels)
        sample.set_metainfo(dict(img_shape=(height, width), ori_shape=(height, width), pad_shape=(height, width),
                                 scale_factor=(1.0, 1.0), flip=False, img_path=None))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def record_grad_sums(module):
    """Sum of |grad| per parameter, recorded during backward (the optimizer step clears .grad afterwards)."""
    sums = {}
    for name, param in module.named_parameters():
        if param.requires_grad:
            param.register_hook(lambda grad, name=name: sums.__setitem__(name, float(grad.abs().sum())))
    return sums


@pytest.mark.parametrize("model_name", SMALLEST)
def test_upernet_train_step_and_predict(model_name):
    skip_unless_registered(model_name)
    segmentor = build_segmentor(model_name)
    segmentor.init_weights()
    optim = OptimWrapper(torch.optim.SGD(segmentor.parameters(), lr=1e-3))
    grad_sums = record_grad_sums(segmentor.backbone)
    segmentor.train()
    log_vars = segmentor.train_step(make_batch(), optim)
    for key in ("loss", "decode.loss_ce", "aux.loss_ce"):
        assert key in log_vars, key
        assert torch.isfinite(torch.as_tensor(log_vars[key])), f"{key} = {log_vars[key]}"
    # random labels over 150 classes: the cross entropy starts near log(150)
    assert 2.0 < float(log_vars["decode.loss_ce"]) < 10.0
    # the backward pass reached (nearly) every backbone parameter, with finite gradients
    assert all(torch.isfinite(torch.tensor(v)) for v in grad_sums.values())
    reached = [n for n, v in grad_sums.items() if v > 0]
    assert len(reached) >= 0.9 * sum(1 for p in segmentor.backbone.parameters() if p.requires_grad), len(reached)

    # mmseg's test-time preprocessor takes one image size per batch (its test batches are one image per
    # device), so the two odd, different sizes are predicted one after the other.
    segmentor.eval()
    batch = make_batch()
    with torch.no_grad():
        results = [segmentor.test_step(dict(inputs=[image], data_samples=[sample]))[0]
                   for image, sample in zip(batch["inputs"], batch["data_samples"])]
    for result, (height, width) in zip(results, IMAGE_SHAPES):
        assert result.pred_sem_seg.data.shape == (1, height, width)
        assert result.seg_logits.data.shape == (NUM_CLASSES, height, width)
        assert int(result.pred_sem_seg.data.max()) < NUM_CLASSES
