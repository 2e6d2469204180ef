"""Built-in demo data: procedurally drawn shapes in the on-disk formats real data uses.

Three data sets, each deterministic for a given seed (same seed, same bytes), generated on first use
into ``$VISIONATTN_DATA`` (default ``~/.cache/visionattn``):

- ``classification``: ImageFolder layout ``train/<class>/*.png`` and ``val/<class>/*.png``, 10 shape
  classes on textured backgrounds with occluders, for ``timm.data.create_dataset``.
- ``coco``: ``annotations/instances_{train,val}.json`` (COCO format: boxes, polygon masks, 5
  categories) with images in ``train/`` and ``val/``, for pycocotools / mmdet's ``CocoDataset``.
- ``ade``: ADE20K layout ``images/{training,validation}/*.jpg`` and
  ``annotations/{training,validation}/*.png`` (uint8 label maps, 0 = background, which mmseg's
  ``reduce_zero_label=True`` ignores; 1..5 the shape classes).

CLI: ``python -m visionattn.data.demo --out DIR [--kind classification coco ade] [--seed 0]``.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

_logger = logging.getLogger(__name__)

CLASSIFICATION_CLASSES = (
    "circle", "square", "triangle", "star", "ring", "cross", "hexagon", "diamond", "arrow", "crescent",
)
DENSE_CLASSES = ("circle", "square", "triangle", "star", "ring")
KINDS = ("classification", "coco", "ade")

# Bumped whenever the drawing changes, so a stale cache is regenerated rather than silently reused.
FORMAT_VERSION = 2

_DEFAULT_SIZES = {
    "classification": dict(train_per_class=220, val_per_class=60, image_size=64),
    "coco": dict(train_images=160, val_images=40, image_size=128),
    "ade": dict(train_images=160, val_images=40, image_size=128),
}

Point = Tuple[float, float]


def default_root() -> Path:
    return Path(os.environ.get("VISIONATTN_DATA", Path.home() / ".cache" / "visionattn")).expanduser()


# --------------------------------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------------------------------

def _regular_polygon(cx: float, cy: float, radius: float, sides: int, angle: float) -> List[Point]:
    return [
        (cx + radius * math.cos(angle + 2 * math.pi * i / sides), cy + radius * math.sin(angle + 2 * math.pi * i / sides))
        for i in range(sides)
    ]


def _rotate(points: Sequence[Point], cx: float, cy: float, angle: float) -> List[Point]:
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + (x - cx) * c - (y - cy) * s, cy + (x - cx) * s + (y - cy) * c) for x, y in points]


def shape_polygon(kind: str, cx: float, cy: float, radius: float, angle: float) -> List[Point]:
    """Outline of a shape as one simple polygon (image coordinates)."""
    if kind == "circle":
        return _regular_polygon(cx, cy, radius, 32, angle)
    if kind == "square":
        return _regular_polygon(cx, cy, radius, 4, angle + math.pi / 4)
    if kind == "triangle":
        return _regular_polygon(cx, cy, radius, 3, angle - math.pi / 2)
    if kind == "hexagon":
        return _regular_polygon(cx, cy, radius, 6, angle)
    if kind == "diamond":
        pts = [(cx, cy - radius), (cx + 0.6 * radius, cy), (cx, cy + radius), (cx - 0.6 * radius, cy)]
        return _rotate(pts, cx, cy, angle)
    if kind == "star":
        pts = []
        for i in range(10):
            r = radius if i % 2 == 0 else 0.42 * radius
            a = angle - math.pi / 2 + math.pi * i / 5
            pts.append((cx + r * math.cos(a), cy + r * math.sin(a)))
        return pts
    if kind == "cross":
        w = 0.33 * radius
        pts = [(-w, -radius), (w, -radius), (w, -w), (radius, -w), (radius, w), (w, w), (w, radius), (-w, radius),
               (-w, w), (-radius, w), (-radius, -w), (-w, -w)]
        return _rotate([(cx + x, cy + y) for x, y in pts], cx, cy, angle)
    if kind == "arrow":
        pts = [(-radius, -0.25 * radius), (0.1 * radius, -0.25 * radius), (0.1 * radius, -0.7 * radius), (radius, 0),
               (0.1 * radius, 0.7 * radius), (0.1 * radius, 0.25 * radius), (-radius, 0.25 * radius)]
        return _rotate([(cx + x, cy + y) for x, y in pts], cx, cy, angle)
    if kind == "ring":
        # An annulus with a narrow slit, so that it stays one simple polygon (valid COCO polygon).
        gap, n = 0.18, 28
        outer = [(cx + radius * math.cos(angle + gap + (2 * math.pi - 2 * gap) * i / n),
                  cy + radius * math.sin(angle + gap + (2 * math.pi - 2 * gap) * i / n)) for i in range(n + 1)]
        inner = [(cx + 0.55 * radius * math.cos(angle + gap + (2 * math.pi - 2 * gap) * i / n),
                  cy + 0.55 * radius * math.sin(angle + gap + (2 * math.pi - 2 * gap) * i / n)) for i in range(n, -1, -1)]
        return outer + inner
    if kind == "crescent":
        n = 24
        outer = [(cx + radius * math.cos(math.pi / 2 + math.pi * i / n), cy + radius * math.sin(math.pi / 2 + math.pi * i / n))
                 for i in range(n + 1)]
        inner = [(cx - 0.2 * radius + 0.55 * radius * math.cos(math.pi / 2 + math.pi * i / n),
                  cy + radius * math.sin(math.pi / 2 + math.pi * i / n)) for i in range(n, -1, -1)]
        return _rotate(outer + inner, cx, cy, angle)
    raise ValueError(f"unknown shape kind {kind!r}; valid: {CLASSIFICATION_CLASSES}")


def _background(rng: np.random.RandomState, size: int) -> np.ndarray:
    """Textured background: low-frequency colour noise, optionally with stripes or a checker pattern."""
    grid = rng.randint(3, 7)
    coarse = rng.uniform(60, 195, size=(grid, grid, 3)).astype(np.uint8)
    img = np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC), dtype=np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    pattern = rng.randint(3)
    if pattern == 0:
        period, theta = rng.uniform(4, 14), rng.uniform(0, math.pi)
        img += 10 * np.sin(2 * math.pi * (xx * math.cos(theta) + yy * math.sin(theta)) / period)[..., None]
    elif pattern == 1:
        cell = rng.randint(4, 12)
        img += 8 * (((xx // cell) + (yy // cell)) % 2 * 2 - 1)[..., None]
    img += rng.normal(0, 4, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _contrasting_colour(rng: np.random.RandomState, background: np.ndarray) -> Tuple[int, int, int]:
    mean = background.reshape(-1, 3).mean(0)
    for _ in range(20):
        colour = rng.randint(0, 256, size=3)
        if np.abs(colour - mean).sum() > 180:
            break
    return tuple(int(c) for c in colour)


def _draw_occluders(rng: np.random.RandomState, draw: ImageDraw.ImageDraw, size: int, box: Tuple[float, ...],
                    count: int) -> None:
    """Small bars and blobs that partly cover the object (never most of it)."""
    x0, y0, x1, y1 = box
    for _ in range(count):
        w, h = rng.uniform(0.1, 0.25) * (x1 - x0 + 1), rng.uniform(0.1, 0.25) * (y1 - y0 + 1)
        ox, oy = rng.uniform(x0 - w / 2, x1 - w / 2), rng.uniform(y0 - h / 2, y1 - h / 2)
        colour = tuple(int(c) for c in rng.randint(0, 256, size=3))
        if rng.rand() < 0.5:
            draw.rectangle([ox, oy, ox + w, oy + h], fill=colour)
        else:
            draw.ellipse([ox, oy, ox + w, oy + h], fill=colour)


def _bbox(points: Sequence[Point], size: int) -> Tuple[float, float, float, float]:
    xs = [min(max(x, 0.0), size - 1.0) for x, _ in points]
    ys = [min(max(y, 0.0), size - 1.0) for _, y in points]
    return min(xs), min(ys), max(xs), max(ys)


def draw_classification_image(label: int, rng: np.random.RandomState, size: int = 64) -> Image.Image:
    """One classification image: a shape of class ``label`` with random colour, size, position and pose."""
    kind = CLASSIFICATION_CLASSES[label]
    bg = _background(rng, size)
    img = Image.fromarray(bg)
    draw = ImageDraw.Draw(img)
    radius = rng.uniform(0.26, 0.44) * size
    cx, cy = rng.uniform(radius * 0.8, size - radius * 0.8, size=2)
    angle = rng.uniform(0, 2 * math.pi) if kind not in ("circle",) else 0.0
    points = shape_polygon(kind, cx, cy, radius, angle)
    draw.polygon(points, fill=_contrasting_colour(rng, bg))
    _draw_occluders(rng, draw, size, _bbox(points, size), count=rng.randint(0, 2))
    return img


def _place_objects(rng: np.random.RandomState, size: int, max_objects: int) -> List[Tuple[str, float, float, float, float]]:
    """Non-overlapping objects for dense tasks, so polygon masks equal the visible masks."""
    objects = []
    for _ in range(max_objects * 10):
        if len(objects) == max_objects:
            break
        radius = rng.uniform(0.09, 0.22) * size
        cx, cy = rng.uniform(radius, size - radius, size=2)
        if any(math.hypot(cx - ox, cy - oy) < radius + orad + 2 for _, ox, oy, orad, _ in objects):
            continue
        kind = DENSE_CLASSES[rng.randint(len(DENSE_CLASSES))]
        objects.append((kind, cx, cy, radius, rng.uniform(0, 2 * math.pi)))
    return objects


def _draw_scene(rng: np.random.RandomState, size: int):
    bg = _background(rng, size)
    img = Image.fromarray(bg)
    draw = ImageDraw.Draw(img)
    labels = Image.new("L", (size, size), 0)
    label_draw = ImageDraw.Draw(labels)
    objects = []
    for kind, cx, cy, radius, angle in _place_objects(rng, size, max_objects=rng.randint(1, 5)):
        points = shape_polygon(kind, cx, cy, radius, angle)
        draw.polygon(points, fill=_contrasting_colour(rng, bg))
        label_draw.polygon(points, fill=DENSE_CLASSES.index(kind) + 1)
        objects.append((kind, points))
    return img, labels, objects


def _polygon_area(points: Sequence[Point]) -> float:
    return 0.5 * abs(sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(points, list(points[1:]) + [points[0]])))


# --------------------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------------------

def _split_seed(seed: int, split: str, index: int) -> int:
    return (seed * 1_000_003 + {"train": 1, "val": 2}[split] * 100_003 + index) % (2 ** 32)


def write_classification(out: Path, seed: int = 0, train_per_class: int = 220, val_per_class: int = 60,
                         image_size: int = 64) -> Path:
    for split, per_class in (("train", train_per_class), ("val", val_per_class)):
        for label, name in enumerate(CLASSIFICATION_CLASSES):
            folder = out / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                rng = np.random.RandomState(_split_seed(seed, split, label * 100_000 + i))
                draw_classification_image(label, rng, image_size).save(folder / f"{name}_{i:05d}.png", optimize=False)
    return out


def write_coco(out: Path, seed: int = 0, train_images: int = 160, val_images: int = 40, image_size: int = 128) -> Path:
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    categories = [dict(id=i + 1, name=name, supercategory="shape") for i, name in enumerate(DENSE_CLASSES)]
    for split, count in (("train", train_images), ("val", val_images)):
        (out / split).mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for i in range(count):
            rng = np.random.RandomState(_split_seed(seed, split, i))
            img, _, objects = _draw_scene(rng, image_size)
            file_name = f"{split}_{i:05d}.png"
            img.save(out / split / file_name, optimize=False)
            images.append(dict(id=i + 1, file_name=file_name, width=image_size, height=image_size))
            for kind, points in objects:
                x0, y0, x1, y1 = _bbox(points, image_size)
                flat = [round(min(max(c, 0.0), image_size - 1.0), 2) for p in points for c in p]
                annotations.append(dict(
                    id=len(annotations) + 1, image_id=i + 1, category_id=DENSE_CLASSES.index(kind) + 1,
                    bbox=[round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
                    area=round(_polygon_area(points), 2), segmentation=[flat], iscrowd=0,
                ))
        data = dict(info=dict(description="visionattn demo shapes", version=FORMAT_VERSION), licenses=[],
                    images=images, annotations=annotations, categories=categories)
        (out / "annotations" / f"instances_{split}.json").write_text(json.dumps(data))
    return out


def write_ade(out: Path, seed: int = 0, train_images: int = 160, val_images: int = 40, image_size: int = 128) -> Path:
    for split, folder, count in (("train", "training", train_images), ("val", "validation", val_images)):
        (out / "images" / folder).mkdir(parents=True, exist_ok=True)
        (out / "annotations" / folder).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            rng = np.random.RandomState(_split_seed(seed + 7919, split, i))
            img, labels, _ = _draw_scene(rng, image_size)
            stem = f"ADE_{folder}_{i:08d}"
            img.save(out / "images" / folder / f"{stem}.jpg", quality=95)
            labels.save(out / "annotations" / folder / f"{stem}.png", optimize=False)
    return out


_WRITERS = {"classification": write_classification, "coco": write_coco, "ade": write_ade}


def generate(kind: str, out: Path, seed: int = 0, **sizes) -> Path:
    """Write the ``kind`` demo data set to ``out`` (replacing what is there)."""
    if kind not in _WRITERS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    out = Path(out)
    params = dict(_DEFAULT_SIZES[kind], **sizes)
    # Write into a temporary sibling and rename, so an interrupted run never leaves a half data set
    # that later looks complete.
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        _WRITERS[kind](tmp, seed=seed, **params)
        marker = dict(kind=kind, seed=seed, version=FORMAT_VERSION, **params)
        (tmp / "demo.json").write_text(json.dumps(marker, sort_keys=True))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def ensure_demo(kind: str, root: Optional[os.PathLike] = None, seed: int = 0, **sizes) -> Path:
    """Path of the ``kind`` demo data set under ``root``, generating it on first use."""
    if kind not in _WRITERS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    root = Path(root) if root is not None else default_root()
    out = root / f"demo_{kind}"
    wanted = dict(kind=kind, seed=seed, version=FORMAT_VERSION, **dict(_DEFAULT_SIZES[kind], **sizes))
    marker = out / "demo.json"
    if marker.exists():
        try:
            if json.loads(marker.read_text()) == json.loads(json.dumps(wanted, sort_keys=True)):
                return out
        except json.JSONDecodeError:
            pass
    _logger.info("generating demo %s data in %s", kind, out)
    return generate(kind, out, seed=seed, **sizes)


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Generate visionattn's built-in demo data sets.")
    parser.add_argument("--out", type=Path, default=None, help="root folder (default: $VISIONATTN_DATA or ~/.cache/visionattn)")
    parser.add_argument("--kind", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for kind in args.kind:
        print(ensure_demo(kind, args.out, seed=args.seed))


if __name__ == "__main__":
    main()
