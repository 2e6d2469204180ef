#!/usr/bin/env python3
"""Top-5 classes of a model for each image: check a trained or pretrained model by hand.

    python tools/infer.py img1.png img2.jpg --model test_gc_vit --checkpoint output/train/demo_main/model_best.pth.tar
    python tools/infer.py cat.jpg --model gc_vit_tiny --pretrained

Class names come from the checkpoint (``tools/train.py`` stores the dataset's class names in its ``args``), from
``--class-names``, or for ImageNet-1k models (1000 classes, e.g. ``--pretrained``) from timm's ImageNet info;
otherwise classes print as their index. The preprocessing is the model's eval transform at the size the checkpoint
was trained at (``--img-size`` etc. override it). Prints, per image, its path and ``top-k`` lines
``probability%  name  (index)``; ``--json`` prints one JSON list instead.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import List, Optional, Sequence

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import timm  # noqa: E402
from PIL import Image  # noqa: E402
from timm.data import create_transform, resolve_data_config  # noqa: E402
from timm.models import get_pretrained_cfg_value  # noqa: E402

import visionattn  # noqa: E402,F401  (registers the families)
from visionattn.checkpoint import CheckpointReadError, UntrustedCheckpointError, trusted_checkpoints  # noqa: E402
from visionattn.models._helpers import load_checkpoint_file, unwrap_state_dict  # noqa: E402

from train import KeyValue  # noqa: E402

_logger = logging.getLogger("infer")

# what the training run's args say about preprocessing, passed on to timm's resolve_data_config
_DATA_KEYS = ("img_size", "input_size", "crop_pct", "mean", "std", "interpolation")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="top-k classes of a model for each image")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--model", required=True, help="timm model name")
    p.add_argument("--model-kwargs", nargs="*", action=KeyValue, default=None,
                   help="model args, key=value (default: those of the training run, from the checkpoint)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", default="", help="training checkpoint (tools/train.py), state dict or .safetensors")
    src.add_argument("--pretrained", action="store_true", help="timm's pretrained weights of --model")
    p.add_argument("--use-ema", action="store_true", help="the EMA weights of a training checkpoint")
    p.add_argument("--trust-checkpoint", action="store_true", help="allow a full pickle load (runs code from the file: "
                   "only for files you trust)")
    p.add_argument("--class-names", default="", help="text file with one class name per line, in label order")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--img-size", type=int, default=None)
    p.add_argument("--crop-pct", type=float, default=None)
    p.add_argument("--device", default=None, help="(default: cuda when available)")
    p.add_argument("--json", action="store_true", help="print one JSON list of {image, top: [{index, name, prob}]}")
    return p


def imagenet_names() -> List[str]:
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return [info.index_to_description(i) for i in range(info.num_classes())]


def resolve_class_names(num_classes: int, from_checkpoint: Sequence[str], names_file: str) -> List[str]:
    """Names for the model's outputs: ``--class-names`` file, the checkpoint's, ImageNet-1k's, else indices."""
    if names_file:
        names = [line.strip() for line in Path(names_file).read_text().splitlines() if line.strip()]
        if len(names) != num_classes:
            raise ValueError(f"--class-names {names_file}: {len(names)} names, but the model has {num_classes} classes")
        return names
    if from_checkpoint and len(from_checkpoint) == num_classes:
        return list(from_checkpoint)
    if num_classes == 1000:
        return imagenet_names()
    return [str(i) for i in range(num_classes)]


def load_training_checkpoint(path: str, use_ema: bool, trust_checkpoint: Optional[bool]):
    """``(state_dict, train_args dict)`` of a checkpoint file; train args are ``{}`` for plain weights."""
    checkpoint = load_checkpoint_file(path, trust_checkpoint=trust_checkpoint)
    train_args = checkpoint.get("args") if isinstance(checkpoint, dict) else None
    train_args = vars(train_args) if isinstance(train_args, argparse.Namespace) else dict(train_args or {})
    if use_ema and "state_dict_ema" not in checkpoint:
        raise ValueError(f"--use-ema: {path} has no 'state_dict_ema' (train with --model-ema)")
    return unwrap_state_dict(checkpoint, prefer_ema=use_ema), train_args


@torch.no_grad()
def predict(model: torch.nn.Module, transform, paths: Sequence[str], device: torch.device, topk: int):
    """``[(probabilities [topk], indices [topk]), ...]`` per image, from softmax over the model's logits."""
    out = []
    for path in paths:
        x = transform(Image.open(path).convert("RGB")).unsqueeze(0).to(device)
        probs = model(x).float().softmax(-1)[0]
        values, indices = probs.topk(min(topk, probs.numel()))
        out.append((values.tolist(), indices.tolist()))
    return out


def main(argv=None) -> list:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not timm.is_model(args.model):
        parser.error(f"--model {args.model!r} is not a registered timm model")
    for path in args.images:
        if not Path(path).is_file():
            parser.error(f"image {path!r} is not a file")
    if args.checkpoint and not Path(args.checkpoint).is_file():
        parser.error(f"--checkpoint {args.checkpoint!r} is not a file")
    if args.topk < 1:
        parser.error("--topk must be >= 1")
    trust = args.trust_checkpoint or None

    state_dict, train_args = None, {}
    if args.checkpoint:
        try:
            state_dict, train_args = load_training_checkpoint(args.checkpoint, args.use_ema, trust)
        except (ValueError, UntrustedCheckpointError, CheckpointReadError) as err:
            parser.error(str(err))
        if train_args.get("model") not in (None, args.model):
            parser.error(f"--checkpoint {args.checkpoint} was trained as {train_args['model']!r}, not {args.model!r}")
    kwargs = dict(train_args.get("model_kwargs") or {}) if args.model_kwargs is None else dict(args.model_kwargs)
    if state_dict is not None:
        classifier = get_pretrained_cfg_value(args.model, "classifier") or "head.fc"
        classifier = classifier[0] if isinstance(classifier, (list, tuple)) else classifier
        weight = state_dict.get(classifier + ".weight")
        num_classes = train_args.get("num_classes") or (weight.shape[0] if weight is not None else None)
        if num_classes is not None:
            kwargs["num_classes"] = int(num_classes)
    try:
        with trusted_checkpoints(trust):
            model = timm.create_model(args.model, pretrained=args.pretrained, **kwargs)
    except (UntrustedCheckpointError, CheckpointReadError) as err:
        parser.error(str(err))
    if state_dict is not None:
        try:
            model.load_state_dict(state_dict, strict=True)
        except RuntimeError as err:
            parser.error(f"--checkpoint {args.checkpoint} does not fit {args.model} {kwargs or ''}: {err}")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(device).eval()

    data_args = {k: train_args.get(k) for k in _DATA_KEYS if train_args.get(k) not in (None, "")}
    data_args.update({k: v for k, v in (("img_size", args.img_size), ("crop_pct", args.crop_pct)) if v is not None})
    if args.img_size is not None:
        data_args.pop("input_size", None)
    config = resolve_data_config(data_args, model=model)
    transform = create_transform(**config, is_training=False)
    try:
        names = resolve_class_names(model.num_classes, train_args.get("class_names") or [], args.class_names)
    except ValueError as err:
        parser.error(str(err))

    results = []
    for path, (probs, indices) in zip(args.images, predict(model, transform, args.images, device, args.topk)):
        results.append(dict(image=path, top=[dict(index=i, name=names[i], prob=round(p, 6))
                                             for p, i in zip(probs, indices)]))
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for result in results:
            print(result["image"])
            for row in result["top"]:
                print(f"  {100 * row['prob']:6.2f}%  {row['name']}  ({row['index']})")
    return results


if __name__ == "__main__":
    main()
