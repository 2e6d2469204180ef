#!/usr/bin/env python3
"""Top-1 / top-5 of a model on an ImageFolder validation split (like timm's validate.py).

    python tools/validate.py --model resnet10t --checkpoint output/train/RUN/model_best.pth.tar
    python tools/validate.py --model dinat_tiny --pretrained --data-dir /data/imagenet

Prints one JSON results dict with ``top1``, ``top5``, ``param_count`` and ``img_size``.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import timm  # noqa: E402
from timm.data import create_dataset, create_loader, resolve_data_config  # noqa: E402
from timm.models import get_pretrained_cfg_value  # noqa: E402

import visionattn  # noqa: E402,F401
from visionattn.checkpoint import CheckpointReadError, UntrustedCheckpointError, trusted_checkpoints  # noqa: E402
from visionattn.data.checks import check_images, report_skipped_images  # noqa: E402
from visionattn.data.demo import ensure_demo  # noqa: E402
from visionattn.models._helpers import check_converted, load_checkpoint_file, unwrap_state_dict  # noqa: E402

from train import KeyValue, evaluate, make_autocast  # noqa: E402  (same eval loop as training)

_logger = logging.getLogger("validate")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="visionattn / timm validation")
    p.add_argument("--model", required=True)
    p.add_argument("--model-kwargs", nargs="*", action=KeyValue, default={})
    p.add_argument("--checkpoint", default="", help="timm training checkpoint, state dict or .safetensors")
    p.add_argument("--use-ema", action="store_true", help="use the EMA weights of a training checkpoint")
    p.add_argument("--trust-checkpoint", action="store_true", help="allow a full pickle load of a checkpoint that "
                   "holds more than tensors and plain data (runs code from the file: only for files you trust)")
    p.add_argument("--pretrained", action="store_true")
    p.add_argument("--data-dir", default=None, help="ImageFolder root (default: demo data)")
    p.add_argument("--dataset", default="")
    p.add_argument("--split", default="val")
    p.add_argument("--num-classes", type=int, default=None)
    p.add_argument("--img-size", type=int, default=None)
    p.add_argument("--input-size", nargs=3, type=int, default=None)
    p.add_argument("--crop-pct", type=float, default=None)
    p.add_argument("--mean", type=float, nargs="+", default=None)
    p.add_argument("--std", type=float, nargs="+", default=None)
    p.add_argument("--interpolation", default="")
    p.add_argument("--batch-size", "-b", type=int, default=64)
    p.add_argument("--workers", "-j", type=int, default=2)
    p.add_argument("--skip-bad-images", action="store_true",
                   help="skip unreadable images (counted and listed) instead of stopping at the first")
    p.add_argument("--amp", action="store_true")
    p.add_argument("--amp-dtype", default="bfloat16", choices=("bfloat16", "float16"))
    p.add_argument("--device", default=None)
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--results-file", default="", help="also write the JSON here")
    return p


def classifier_names(model: torch.nn.Module) -> list:
    """Module names of the model's classifier(s), e.g. ``['head.fc']`` (from its pretrained cfg, else by identity)."""
    names = (getattr(model, "pretrained_cfg", None) or {}).get("classifier")
    if names:
        return [names] if isinstance(names, str) else list(names)
    get = getattr(model, "get_classifier", None)
    classifier = get() if get is not None else None
    return [n for n, m in model.named_modules() if classifier is not None and m is classifier and n]


def check_classifier(state_dict: dict, model: torch.nn.Module, path: str) -> None:
    """One clear ValueError when the checkpoint's classifier has another number of classes than the model's."""
    own = model.state_dict()
    for name in classifier_names(model):
        key = name + ".weight"
        if key in state_dict and key in own and state_dict[key].shape[0] != own[key].shape[0]:
            raise ValueError(
                f"checkpoint {path} classifies {state_dict[key].shape[0]} classes ({key}), but the model was built for "
                f"{own[key].shape[0]} (the dataset's class count, or --num-classes): its top-1 on this dataset would "
                "be meaningless. Evaluate it on a dataset with the checkpoint's classes, in the same order.")


def load_weights(model: torch.nn.Module, path: str, use_ema: bool, trust_checkpoint=None) -> dict:
    """Load a checkpoint strictly; a mismatch is explained in one ValueError. Returns the train args if any."""
    checkpoint = load_checkpoint_file(path, trust_checkpoint=trust_checkpoint)
    train_args = checkpoint.get("args") if isinstance(checkpoint, dict) else None
    if use_ema and "state_dict_ema" not in checkpoint:
        raise ValueError(f"--use-ema: {path} has no 'state_dict_ema' (train with --model-ema)")
    state_dict = unwrap_state_dict(checkpoint, prefer_ema=use_ema)
    check_classifier(state_dict, model, path)
    check_converted(state_dict, model, source=f"checkpoint {path}", classifier=None)
    model.load_state_dict(state_dict, strict=True)
    return vars(train_args) if isinstance(train_args, argparse.Namespace) else (train_args or {})


def training_args(path: str, trust_checkpoint=None) -> dict:
    """train.py's args stored in a training checkpoint (``{}`` for plain weights or an unreadable file)."""
    try:
        checkpoint = load_checkpoint_file(path, trust_checkpoint=trust_checkpoint)
    except (UntrustedCheckpointError, CheckpointReadError):
        return {}  # load_weights reports it
    train_args = checkpoint.get("args") if isinstance(checkpoint, dict) else None
    train_args = vars(train_args) if isinstance(train_args, argparse.Namespace) else train_args
    return dict(train_args) if isinstance(train_args, dict) else {}


def main(argv=None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not timm.is_model(args.model):
        parser.error(f"--model {args.model!r} is not a registered timm model")
    if args.checkpoint and not Path(args.checkpoint).is_file():
        parser.error(f"--checkpoint {args.checkpoint!r} is not a file")
    demo = args.data_dir is None and not args.dataset
    if args.checkpoint:
        # evaluate at the size / crop the run trained at (train.py's args in the checkpoint) unless told otherwise
        trained = training_args(args.checkpoint, args.trust_checkpoint or None)
        if args.img_size is None and args.input_size is None:
            args.img_size = trained.get("img_size")
            args.input_size = trained.get("input_size") if args.img_size is None else None
        if args.crop_pct is None:
            args.crop_pct = trained.get("crop_pct")
    if demo:
        args.data_dir = str(ensure_demo("classification"))
        if args.img_size is None and args.input_size is None:
            args.img_size = 64
        if args.crop_pct is None:
            args.crop_pct = 1.0
    elif not args.dataset and not (Path(args.data_dir) / args.split).is_dir():
        parser.error(f"--data-dir {args.data_dir!r} has no {args.split!r} folder")

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dataset = check_images(create_dataset(args.dataset, root=args.data_dir, split=args.split, is_training=False),
                           skip=args.skip_bad_images)
    num_classes_given = args.num_classes is not None
    class_to_idx = getattr(getattr(dataset, "reader", None), "class_to_idx", None)
    if num_classes_given and class_to_idx and len(class_to_idx) != args.num_classes:
        parser.error(f"--num-classes {args.num_classes} but the dataset at {args.data_dir} has {len(class_to_idx)} "
                     "classes: its labels would be scored against the wrong classifier outputs")
    if args.num_classes is None:
        args.num_classes = len(class_to_idx) if class_to_idx else None

    kwargs = dict(args.model_kwargs)
    if args.num_classes is not None:
        kwargs["num_classes"] = args.num_classes
    pretrained_classes = get_pretrained_cfg_value(args.model, "num_classes") if args.pretrained else None
    if pretrained_classes and not args.checkpoint and args.num_classes not in (None, pretrained_classes):
        # timm would drop the pretrained classifier for a random one and print a near-chance top-1, silently.
        source = "--num-classes" if num_classes_given else f"the dataset at {args.data_dir}"
        parser.error(
            f"--pretrained: {args.model}'s pretrained weights classify {pretrained_classes} classes, but {source} "
            f"has {args.num_classes}; timm would replace the classifier with a random one and top-1 would be chance "
            f"(~{100 / args.num_classes:.0f}%). Evaluate --pretrained on data with the same {pretrained_classes} "
            "classes in the same order (e.g. ImageNet val for *_in1k weights), or --checkpoint a model trained on "
            "this dataset.")
    try:
        with trusted_checkpoints(args.trust_checkpoint or None):  # timm's pretrained loaders follow the same policy
            model = timm.create_model(args.model, pretrained=args.pretrained, **kwargs)
    except (UntrustedCheckpointError, CheckpointReadError) as err:
        parser.error(str(err))
    if args.checkpoint:
        try:
            load_weights(model, args.checkpoint, args.use_ema, trust_checkpoint=args.trust_checkpoint or None)
        except (ValueError, UntrustedCheckpointError, CheckpointReadError) as err:
            parser.error(str(err))
    model.to(device).eval()
    param_count = sum(p.numel() for p in model.parameters())

    data_config = resolve_data_config(vars(args), model=model)
    loader = create_loader(dataset, input_size=data_config["input_size"], batch_size=args.batch_size,
                           is_training=False, interpolation=data_config["interpolation"], mean=data_config["mean"],
                           std=data_config["std"], crop_pct=data_config["crop_pct"], num_workers=args.workers,
                           use_prefetcher=False, device=device, persistent_workers=False)
    autocast, _ = make_autocast(args, device)
    args.rank, args.distributed, args.no_progress = 0, False, True
    started = time.time()
    metrics = evaluate(model, loader, device, autocast, args)
    skipped = report_skipped_images([dataset], names=[args.split])
    results = dict(model=args.model, top1=round(metrics["top1"], 4), top5=round(metrics["top5"], 4),
                   loss=round(metrics["loss"], 6), param_count=round(param_count / 1e6, 3),
                   img_size=data_config["input_size"][-1], crop_pct=data_config["crop_pct"],
                   interpolation=data_config["interpolation"], samples=len(dataset), skipped_images=skipped,
                   seconds=round(time.time() - started, 2))
    text = json.dumps(results, indent=2)
    print(text)
    if args.results_file:
        Path(args.results_file).write_text(text)
    return results


if __name__ == "__main__":
    main()
