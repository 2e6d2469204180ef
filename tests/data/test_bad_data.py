"""Unreadable images are named (or skipped and counted behind --skip-bad-images), never silently replaced."""
import io
import logging
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from timm.data import ImageDataset, create_dataset

from visionattn.data import demo
from visionattn.data.checks import BadImageError, check_images, skipped_images

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bad_folder(tmp_path_factory):
    """The demo ImageFolder (2 train images per class, 32x32) plus a corrupt JPEG and a truncated PNG."""
    root = demo.generate("classification", tmp_path_factory.mktemp("bad") / "cls", train_per_class=2,
                         val_per_class=1, image_size=32)
    good = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 10, 10)).save(good, format="JPEG")
    data = good.getvalue()
    corrupt = root / "train" / "circle" / "circle_corrupt.jpg"
    corrupt.write_bytes(data[:20] + bytes(range(256)) * 4)  # a JPEG header, then garbage
    png = (root / "train" / "square" / "square_00000.png").read_bytes()
    truncated = root / "train" / "square" / "square_truncated.png"
    truncated.write_bytes(png[: len(png) // 2])
    return root, corrupt, truncated


def _index_of(dataset, path):
    return next(i for i in range(len(dataset)) if dataset.filename(i, absolute=True) == str(path))


def test_timm_alone_silently_substitutes(bad_folder):
    """The behaviour being fixed: timm's ImageDataset returns another image for a bad file (a warning, no name)."""
    root, corrupt, truncated = bad_folder
    dataset = create_dataset("", root=str(root), split="train", is_training=True)
    assert type(dataset) is ImageDataset
    for path in (corrupt, truncated):
        image, _ = dataset[_index_of(dataset, path)]
        assert isinstance(image, Image.Image)


def test_bad_images_are_named(bad_folder):
    root, corrupt, truncated = bad_folder
    dataset = check_images(create_dataset("", root=str(root), split="train", is_training=True))
    for path in (corrupt, truncated):
        with pytest.raises(BadImageError, match="--skip-bad-images") as info:
            dataset[_index_of(dataset, path)]
        assert str(path) in str(info.value)
    image, target = dataset[0]  # good files decode as before, with timm's class indices
    assert image.size == (32, 32) and image.mode == "RGB" and target == dataset.reader.class_to_idx["arrow"]
    assert dataset.reader.class_to_idx == create_dataset("", root=str(root), split="train").reader.class_to_idx


def test_skip_counts_bad_images_across_workers(bad_folder):
    root, corrupt, truncated = bad_folder
    dataset = check_images(create_dataset("", root=str(root), split="train", is_training=True), skip=True)
    dataset.transform = lambda image: torch.zeros(1)
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=2)
    seen = sum(len(targets) for _, targets in loader)
    assert seen == len(dataset) == 22  # bad samples replaced by the next readable one
    assert sorted(skipped_images(dataset)) == sorted([str(corrupt), str(truncated)])


def test_train_names_a_bad_image_or_skips_and_reports(bad_folder, tmp_path, caplog):
    sys.path.insert(0, str(ROOT / "tools"))
    import train

    root, corrupt, truncated = bad_folder
    argv = ["--model", "resnet10t", "--data-dir", str(root), "--img-size", "32", "--batch-size", "2", "--epochs", "1",
            "--workers", "0", "--no-progress", "--output", str(tmp_path), "--seed", "0"]
    with pytest.raises(BadImageError) as info:
        train.main(argv + ["--experiment", "strict"])
    assert str(corrupt) in str(info.value) or str(truncated) in str(info.value)
    with caplog.at_level(logging.WARNING):
        result = train.main(argv + ["--experiment", "skip", "--skip-bad-images"])
    assert result["epochs"] == 1
    assert "skipped 2 unreadable image(s) in the train data" in caplog.text
    assert str(corrupt) in caplog.text and str(truncated) in caplog.text
