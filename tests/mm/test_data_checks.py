"""A COCO annotation that points at a missing image is named before training (or left out with a count)."""
import logging

import pytest

pytestmark = pytest.mark.mm
pytest.importorskip("mmdet")

from visionattn.data import demo  # noqa: E402
from visionattn.mm.data_checks import DataFilesHook, check_data_files  # noqa: E402


@pytest.fixture()
def coco_with_a_missing_image(tmp_path):
    root = demo.generate("coco", tmp_path / "coco", train_images=5, val_images=2, image_size=64)
    missing = root / "train" / "train_00002.png"
    missing.unlink()
    return root, missing


def _dataset(root):
    from mmdet.datasets import CocoDataset

    return CocoDataset(data_root=str(root), ann_file="annotations/instances_train.json", data_prefix=dict(img="train/"),
                       metainfo=dict(classes=demo.DENSE_CLASSES), pipeline=[], filter_cfg=None)


def test_missing_image_is_named(coco_with_a_missing_image):
    root, missing = coco_with_a_missing_image
    dataset = _dataset(root)
    with pytest.raises(FileNotFoundError) as info:
        check_data_files(dataset)
    assert str(missing) in str(info.value) and "1 file(s)" in str(info.value) and "--skip-bad-images" in str(info.value)
    assert len(dataset) == 5


def test_missing_image_is_skipped_and_counted(coco_with_a_missing_image, caplog):
    from mmengine.dataset import ConcatDataset

    root, missing = coco_with_a_missing_image
    dataset = ConcatDataset([_dataset(root)])  # wrappers are looked through
    with caplog.at_level(logging.WARNING):
        assert check_data_files(dataset, skip=True) == 1
    assert str(missing) in caplog.text
    inner = dataset.datasets[0]
    assert len(inner) == 4
    assert all(info["img_path"] != str(missing) for info in (inner.get_data_info(i) for i in range(len(inner))))


def test_hook_checks_the_runner_datasets_before_the_run(coco_with_a_missing_image):
    from mmengine.runner import BaseLoop

    root, missing = coco_with_a_missing_image

    class Loop(BaseLoop):
        def run(self):
            pass

    class FakeRunner:
        pass

    from mmengine.dataset import DefaultSampler
    from torch.utils.data import DataLoader

    dataset = _dataset(root)
    runner = FakeRunner()
    runner._train_loop = Loop(runner, DataLoader(dataset, batch_size=2, collate_fn=list,
                                                 sampler=DefaultSampler(dataset, shuffle=True, seed=0)))
    with pytest.raises(FileNotFoundError, match="train_00002.png"):
        DataFilesHook().before_run(runner)
    DataFilesHook(skip=True).before_run(runner)
    assert len(runner._train_loop.dataloader.dataset) == 4 and len(runner._train_loop.dataloader.sampler) == 4
