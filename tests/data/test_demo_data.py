import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visionattn.data import demo

SMALL = {
    "classification": dict(train_per_class=3, val_per_class=2),
    "coco": dict(train_images=6, val_images=3),
    "ade": dict(train_images=6, val_images=3),
}


def _digest(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("kind", demo.KINDS)
def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path, kind):
    a = demo.generate(kind, tmp_path / "a", seed=3, **SMALL[kind])
    b = demo.generate(kind, tmp_path / "b", seed=3, **SMALL[kind])
    c = demo.generate(kind, tmp_path / "c", seed=4, **SMALL[kind])
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)
    assert len(_digest(a)) > 5


def test_ensure_demo_generates_once_and_regenerates_on_other_parameters(tmp_path):
    path = demo.ensure_demo("classification", tmp_path, **SMALL["classification"])
    marker = (path / "demo.json").stat().st_mtime_ns
    assert demo.ensure_demo("classification", tmp_path, **SMALL["classification"]) == path
    assert (path / "demo.json").stat().st_mtime_ns == marker
    demo.ensure_demo("classification", tmp_path, train_per_class=4, val_per_class=2)
    assert len(list((path / "train" / "star").glob("*.png"))) == 4


def test_default_sizes_meet_the_main_job_minimum():
    sizes = demo._DEFAULT_SIZES["classification"]
    assert len(demo.CLASSIFICATION_CLASSES) == 10
    assert sizes["train_per_class"] * 10 >= 2000 and sizes["val_per_class"] * 10 >= 500
    assert sizes["image_size"] >= 64


def test_classification_is_an_image_folder_timm_reads(tmp_path):
    from timm.data import create_dataset

    root = demo.generate("classification", tmp_path / "cls", **SMALL["classification"])
    train = create_dataset("", root=str(root), split="train")
    val = create_dataset("", root=str(root), split="val")
    assert len(train) == 30 and len(val) == 20
    assert sorted(train.reader.class_to_idx) == sorted(demo.CLASSIFICATION_CLASSES)
    img, label = train[0]
    assert img.size == (64, 64) and img.mode == "RGB" and 0 <= label < 10


def test_coco_annotations_load_with_pycocotools(tmp_path):
    pycocotools = pytest.importorskip("pycocotools.coco")
    root = demo.generate("coco", tmp_path / "coco", **SMALL["coco"])
    for split, count in (("train", 6), ("val", 3)):
        coco = pycocotools.COCO(str(root / "annotations" / f"instances_{split}.json"))
        assert len(coco.getImgIds()) == count
        assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(demo.DENSE_CLASSES)
        anns = coco.loadAnns(coco.getAnnIds())
        assert len(anns) >= count
        for ann in anns:
            info = coco.loadImgs(ann["image_id"])[0]
            assert (root / split / info["file_name"]).is_file()
            mask = coco.annToMask(ann)
            x, y, w, h = ann["bbox"]
            assert w > 2 and h > 2 and mask.sum() > 0
            ys, xs = np.nonzero(mask)
            # The polygon mask lies inside its box (to rasterisation rounding).
            assert xs.min() >= x - 1 and xs.max() <= x + w + 1 and ys.min() >= y - 1 and ys.max() <= y + h + 1


def test_ade_layout_and_label_maps(tmp_path):
    root = demo.generate("ade", tmp_path / "ade", **SMALL["ade"])
    for folder, count in (("training", 6), ("validation", 3)):
        images = sorted((root / "images" / folder).glob("*.jpg"))
        labels = sorted((root / "annotations" / folder).glob("*.png"))
        assert len(images) == len(labels) == count
        assert [p.stem for p in images] == [p.stem for p in labels]
        for image, label in zip(images, labels):
            img, lab = Image.open(image), np.array(Image.open(label))
            assert img.mode == "RGB" and lab.dtype == np.uint8 and lab.shape == img.size[::-1]
            assert set(np.unique(lab)) <= set(range(len(demo.DENSE_CLASSES) + 1))
            assert (lab > 0).any() and (lab == 0).any()


def test_bad_kind_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="kind must be one of"):
        demo.ensure_demo("imagenet", tmp_path)


def test_cli_writes_the_requested_kinds(tmp_path, capsys):
    demo.main(["--out", str(tmp_path), "--kind", "coco"])
    out = capsys.readouterr().out.strip()
    assert out.endswith("demo_coco")
    data = json.loads((tmp_path / "demo_coco" / "annotations" / "instances_val.json").read_text())
    assert data["images"] and data["annotations"]
