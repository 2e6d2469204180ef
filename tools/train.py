#!/usr/bin/env python3
"""ImageNet-style training on timm's building blocks (single process or ``torchrun``).

With no arguments this is visionattn's main job: it trains ``test_gc_vit`` (a demo-sized GC ViT) on the
built-in demo classification data (generated on first use) with the recipe in ``MAIN_JOB_RECIPE`` and writes
timm's run folder ``output/train/demo_main/``: ``args.yaml``, ``summary.csv``, ``training_curve.png``,
``last.pth.tar`` and ``model_best.pth.tar`` (the checkpoint the OpenMMLab demo configs start from).

    python tools/train.py                                    # the demo main job
    python tools/train.py --model dinat_tiny --data-dir /data/imagenet --amp --batch-size 128
    torchrun --nproc-per-node 8 tools/train.py --model nat_mini --data-dir /data/imagenet
    torchrun --nproc-per-node 2 tools/train.py --device cpu  # DDP on CPU (gloo)

Checkpoints store the dataset's class names (``args.class_names``), which ``tools/infer.py`` prints.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections import OrderedDict
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import timm  # noqa: E402
from timm.data import Mixup, create_dataset, create_loader, resolve_data_config  # noqa: E402
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy  # noqa: E402
from timm.optim import create_optimizer_v2  # noqa: E402
from timm.scheduler import create_scheduler_v2  # noqa: E402
from timm.utils import (  # noqa: E402
    AverageMeter, ModelEmaV3, NativeScaler, accuracy, random_seed, update_summary,
)
from tqdm import tqdm  # noqa: E402

import visionattn  # noqa: E402,F401  (registers the families)
from visionattn.checkpoint import SafeCheckpointSaver, restore_rng_state, trusted_checkpoints  # noqa: E402
from visionattn.data.checks import check_images, report_skipped_images  # noqa: E402
from visionattn.data.demo import ensure_demo  # noqa: E402
from visionattn.training import check_finite_loss, resolve_amp_dtype, resolve_resume_args  # noqa: E402

_logger = logging.getLogger("train")

# The main job: a visionattn model small enough to reach >= 80% top-1 on the demo data within 6 minutes on 2 CPU
# cores, data generation included. Its recipe applies to what the command line leaves unset when the main job runs
# (demo data, default model); the recipes tried, and what they reached, are in the README.
DEFAULT_MODEL = "test_gc_vit"
DEFAULT_MODEL_KWARGS = {}
MAIN_JOB_EXPERIMENT = "demo_main"
MAIN_JOB_RECIPE = dict(epochs=40, lr=1e-3, batch_size=32, img_size=48, crop_pct=1.0, smoothing=0.1, threads=2,
                       workers=1)
# Another model on the demo data, and real data: what train.py has always used for unset arguments.
DEMO_DEFAULTS = dict(epochs=24, lr=3e-3, batch_size=64, img_size=64, crop_pct=1.0, smoothing=0.1, threads=None,
                     workers=2)
REAL_DEFAULTS = dict(epochs=300, lr=1e-3, batch_size=64, img_size=None, crop_pct=None, smoothing=0.1, threads=None,
                     workers=2)


class KeyValue(argparse.Action):
    """``--model-kwargs depths=[2,2] embed_dim=32``: values are parsed as YAML."""

    def __call__(self, parser, namespace, values, option_string=None):
        out = {}
        for item in values:
            if "=" not in item:
                parser.error(f"{option_string} expects key=value pairs, got {item!r}")
            key, value = item.split("=", 1)
            out[key] = yaml.safe_load(value)
        setattr(namespace, self.dest, out)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="visionattn / timm ImageNet-style training")
    g = p.add_argument_group("data")
    g.add_argument("--data-dir", default=None, help="ImageFolder root with train/ and val/ (default: demo data)")
    g.add_argument("--dataset", default="", help="timm dataset name ('' = ImageFolder)")
    g.add_argument("--train-split", default="train")
    g.add_argument("--val-split", default="val")
    g.add_argument("--workers", "-j", type=int, default=None, help="data loader processes (default: 2)")
    g.add_argument("--skip-bad-images", action="store_true",
                   help="skip unreadable images (counted and listed at the end) instead of stopping at the first")
    g = p.add_argument_group("model")
    g.add_argument("--model", default=None, help=f"timm model name (default: {DEFAULT_MODEL})")
    g.add_argument("--model-kwargs", nargs="*", action=KeyValue, default=None, help="extra model args, key=value")
    g.add_argument("--pretrained", action="store_true")
    g.add_argument("--initial-checkpoint", default="", help="load these weights before training")
    g.add_argument("--resume", default="", help="resume model, optimizer, scaler, epoch and RNG state from this "
                   "checkpoint; a run folder or 'auto' (the newest good checkpoint of --output/--experiment, or of "
                   "the newest run of --model) continues that run in place")
    g.add_argument("--trust-checkpoint", action="store_true", help="allow a full pickle load of checkpoints that "
                   "hold more than tensors and plain data (runs code from the file: only for files you trust)")
    g.add_argument("--no-resume-opt", action="store_true")
    g.add_argument("--num-classes", type=int, default=None)
    g.add_argument("--img-size", type=int, default=None)
    g.add_argument("--input-size", nargs=3, type=int, default=None, metavar="N")
    g.add_argument("--crop-pct", type=float, default=None)
    g.add_argument("--mean", type=float, nargs="+", default=None)
    g.add_argument("--std", type=float, nargs="+", default=None)
    g.add_argument("--interpolation", default="")
    g.add_argument("--batch-size", "-b", type=int, default=None, help="(default: 64)")
    g.add_argument("--validation-batch-size", "-vb", type=int, default=None)
    g.add_argument("--drop", type=float, default=0.0)
    g.add_argument("--drop-path", type=float, default=None)
    g.add_argument("--grad-checkpointing", action="store_true")
    g.add_argument("--channels-last", action="store_true")
    g = p.add_argument_group("optimizer and schedule")
    g.add_argument("--opt", default="adamw")
    g.add_argument("--lr", type=float, default=None, help="learning rate (default: 3e-3 for the demo, 1e-3 otherwise)")
    g.add_argument("--weight-decay", type=float, default=0.05)
    g.add_argument("--momentum", type=float, default=0.9)
    g.add_argument("--clip-grad", type=float, default=None)
    g.add_argument("--sched", default="cosine")
    g.add_argument("--epochs", type=int, default=None, help="(default: 24 for the demo, 300 otherwise)")
    g.add_argument("--warmup-epochs", type=int, default=1)
    g.add_argument("--warmup-lr", type=float, default=1e-5)
    g.add_argument("--min-lr", type=float, default=1e-6)
    g.add_argument("--cooldown-epochs", type=int, default=0)
    g.add_argument("--sched-on-updates", action="store_true")
    g = p.add_argument_group("augmentation and regularisation")
    g.add_argument("--no-aug", action="store_true")
    g.add_argument("--scale", type=float, nargs=2, default=(0.5, 1.0))
    g.add_argument("--ratio", type=float, nargs=2, default=(3.0 / 4.0, 4.0 / 3.0))
    g.add_argument("--hflip", type=float, default=0.5)
    g.add_argument("--vflip", type=float, default=0.0)
    g.add_argument("--color-jitter", type=float, default=0.2)
    g.add_argument("--aa", default=None, help="auto-augment policy, e.g. rand-m9-mstd0.5-inc1")
    g.add_argument("--reprob", type=float, default=0.0)
    g.add_argument("--smoothing", type=float, default=None, help="label smoothing (default: 0.1)")
    g.add_argument("--mixup", type=float, default=0.0)
    g.add_argument("--cutmix", type=float, default=0.0)
    g.add_argument("--mixup-prob", type=float, default=1.0)
    g.add_argument("--mixup-switch-prob", type=float, default=0.5)
    g.add_argument("--mixup-off-epoch", type=int, default=0)
    g.add_argument("--model-ema", action="store_true")
    g.add_argument("--model-ema-decay", type=float, default=0.998)
    g = p.add_argument_group("misc")
    g.add_argument("--amp", action="store_true", help="mixed precision (bf16 on CPU, --amp-dtype on GPU)")
    g.add_argument("--amp-dtype", default="bfloat16", choices=("bfloat16", "float16"))
    g.add_argument("--device", default=None, help="cuda, cpu, ... (default: cuda when available)")
    g.add_argument("--seed", type=int, default=42)
    g.add_argument("--threads", type=int, default=None, help="torch CPU threads per process (default: torch's)")
    g.add_argument("--output", default="output/train", help="root folder for run folders")
    g.add_argument("--experiment", default="", help=f"run folder name (default: {MAIN_JOB_EXPERIMENT} for the main "
                   "job, else time-model-size)")
    g.add_argument("--checkpoint-hist", type=int, default=2)
    g.add_argument("--eval-metric", default="top1")
    g.add_argument("--log-interval", type=int, default=50)
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def apply_demo_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """Fill in what the user left unset: the demo main job, or timm's usual values for real data."""
    demo = args.data_dir is None and not args.dataset
    main_job = demo and args.model is None
    if args.model is None:
        args.model = DEFAULT_MODEL
        if args.model_kwargs is None:
            args.model_kwargs = dict(DEFAULT_MODEL_KWARGS)
    args.model_kwargs = args.model_kwargs or {}
    defaults = MAIN_JOB_RECIPE if main_job else DEMO_DEFAULTS if demo else REAL_DEFAULTS
    for key, value in defaults.items():
        if key == "img_size" and args.input_size is not None:
            continue
        if getattr(args, key) is None:
            setattr(args, key, value)
    if main_job and not args.experiment:
        args.experiment = MAIN_JOB_EXPERIMENT
    if demo:
        # A short run: warm up per update so the first epoch already learns.
        args.sched_on_updates = True
    args.demo, args.main_job = demo, main_job
    return args


def prepare_demo_data(args: argparse.Namespace) -> None:
    """Generate the demo data on first use (under torchrun: rank 0 draws it while the others wait)."""
    if not args.demo:
        return
    if args.distributed and args.rank != 0:
        dist.barrier()
    args.data_dir = str(ensure_demo("classification"))
    if args.distributed and args.rank == 0:
        dist.barrier()


def set_aside_previous_run(args: argparse.Namespace) -> None:
    """A new main job in a used ``demo_main`` folder: move the old run to ``demo_main-<time>`` (nothing is deleted)."""
    folder = Path(args.output) / args.experiment
    if args.resume or args.rank != 0 or not folder.is_dir() or not any(folder.iterdir()):
        return
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(folder.stat().st_mtime))
    target = folder.with_name(f"{folder.name}-{stamp}")
    n = 1
    while target.exists():
        target, n = folder.with_name(f"{folder.name}-{stamp}-{n}"), n + 1
    folder.rename(target)
    _logger.info("previous run in %s moved to %s", folder, target)


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if not timm.is_model(args.model):
        close = timm.list_models(f"*{args.model.split('_')[0]}*")[:8]
        parser.error(f"--model {args.model!r} is not a registered timm model" + (f"; similar: {close}" if close else ""))
    if args.data_dir is not None and not args.dataset and not args.demo:
        root = Path(args.data_dir)
        if not root.is_dir():
            parser.error(f"--data-dir {args.data_dir!r} does not exist")
        for split in (args.train_split, args.val_split):
            if not (root / split).is_dir():
                parser.error(f"--data-dir {args.data_dir!r} has no {split!r} folder (expected ImageFolder layout "
                             f"{root}/{split}/<class>/*.png)")
    if args.resume:
        try:
            resolve_resume_args(args)  # 'auto' / a run folder -> its newest good checkpoint, continued in place
        except ValueError as err:
            parser.error(str(err))
    if args.epochs < 1:
        parser.error("--epochs must be >= 1")


def setup_distributed(args: argparse.Namespace) -> torch.device:
    args.world_size = int(os.environ.get("WORLD_SIZE", 1))
    args.rank = int(os.environ.get("RANK", 0))
    args.local_rank = int(os.environ.get("LOCAL_RANK", 0))
    args.distributed = args.world_size > 1
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device.startswith("cuda") and args.distributed:
        args.device = f"cuda:{args.local_rank}"
        torch.cuda.set_device(args.local_rank)
    if args.distributed:
        dist.init_process_group(backend="nccl" if args.device.startswith("cuda") else "gloo")
    return torch.device(args.device)


def reduce_mean(value: torch.Tensor, world_size: int) -> torch.Tensor:
    value = value.clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / world_size


def restore_checkpoint(path, model, optimizer, loss_scaler, model_ema, args=None) -> int:
    """Restore what ``CheckpointSaver`` wrote (model, optimizer, AMP scaler, EMA, RNG); returns the start epoch."""
    from visionattn.models._helpers import load_checkpoint_file

    checkpoint = load_checkpoint_file(path, trust_checkpoint=getattr(args, "trust_checkpoint", False) or None)
    if "state_dict" not in checkpoint or "epoch" not in checkpoint:
        raise ValueError(f"--resume {path}: not a training checkpoint (no 'state_dict'/'epoch'); "
                         "use --initial-checkpoint for plain weights")
    model.load_state_dict(checkpoint["state_dict"])
    if optimizer is not None and "optimizer" in checkpoint:
        optimizer.load_state_dict(checkpoint["optimizer"])
    if loss_scaler is not None and loss_scaler.state_dict_key in checkpoint:
        loss_scaler.load_state_dict(checkpoint[loss_scaler.state_dict_key])
    if model_ema is not None and "state_dict_ema" in checkpoint:
        model_ema.module.load_state_dict(checkpoint["state_dict_ema"])
    # The generators as they were after the saved epoch: the resumed run draws the same data order and
    # augmentations as an uninterrupted one (single process; under DDP each rank reseeds per epoch instead).
    if getattr(args, "world_size", 1) == 1:
        restore_rng_state((checkpoint.get("saver") or {}).get("rng_state"))
    else:
        random_seed(args.seed + checkpoint["epoch"] + 1, args.rank)
    # CheckpointSaver (version 2) stores the finished epoch; training resumes at the next one.
    return checkpoint["epoch"] + 1


def train_one_epoch(epoch, model, loader, optimizer, loss_fn, args, device, autocast, loss_scaler, lr_scheduler,
                    model_ema, mixup_fn, num_updates_start):
    model.train()
    losses = AverageMeter()
    num_updates = num_updates_start
    show = args.rank == 0 and not args.no_progress
    bar = tqdm(loader, desc=f"train {epoch}", disable=not show, leave=False, dynamic_ncols=True)
    for input, target in bar:
        input, target = input.to(device), target.to(device)
        if mixup_fn is not None:
            input, target = mixup_fn(input, target)
        if args.channels_last:
            input = input.contiguous(memory_format=torch.channels_last)
        with autocast():
            output = model(input)
            loss = loss_fn(output, target)
        check_finite_loss(loss, epoch, num_updates - num_updates_start, optimizer, args, num_updates)
        optimizer.zero_grad(set_to_none=True)
        if loss_scaler is not None:
            loss_scaler(loss, optimizer, clip_grad=args.clip_grad, parameters=model.parameters())
        else:
            loss.backward()
            if args.clip_grad is not None:
                nn.utils.clip_grad_norm_(model.parameters(), args.clip_grad)
            optimizer.step()
        if model_ema is not None:
            model_ema.update(model, step=num_updates)
        num_updates += 1
        losses.update(loss.item(), input.size(0))
        lr_scheduler.step_update(num_updates=num_updates, metric=losses.avg)
        bar.set_postfix(loss=f"{losses.avg:.3f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")
    loss_avg = torch.tensor(losses.avg, device=device)
    if args.distributed:
        loss_avg = reduce_mean(loss_avg, args.world_size)
    return OrderedDict(loss=loss_avg.item()), num_updates


@torch.no_grad()
def evaluate(model, loader, device, autocast, args, desc="eval"):
    """Top-1/top-5 and loss over the whole loader (exact across ranks: sums, not averages)."""
    model.eval()
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    totals = torch.zeros(4, dtype=torch.float64, device=device)  # loss, correct1, correct5, count
    show = args.rank == 0 and not args.no_progress
    for input, target in tqdm(loader, desc=desc, disable=not show, leave=False, dynamic_ncols=True):
        input, target = input.to(device), target.to(device)
        if args.channels_last:
            input = input.contiguous(memory_format=torch.channels_last)
        with autocast():
            output = model(input)
        output = output.float()
        top1, top5 = accuracy(output, target, topk=(1, min(5, output.shape[-1])))
        n = input.size(0)
        totals += torch.tensor([loss_fn(output, target).item(), top1.item() * n / 100, top5.item() * n / 100, n],
                               dtype=torch.float64, device=device)
    if args.distributed:
        dist.all_reduce(totals)
    loss, c1, c5, n = totals.tolist()
    return OrderedDict(loss=loss / n, top1=100.0 * c1 / n, top5=100.0 * c5 / n)


def class_names(class_to_idx, num_classes: int) -> list:
    """Class names in label order (from the dataset's ``class_to_idx``), or ``[]`` when the dataset has none."""
    if not class_to_idx or len(class_to_idx) != num_classes:
        return []
    names = [""] * num_classes
    for name, index in class_to_idx.items():
        names[index] = str(name)
    return names


class ShardSampler(torch.utils.data.Sampler):
    """Rank ``rank`` of ``world_size`` gets samples ``rank, rank + world_size, ...``: every sample exactly once.

    timm's eval sampler (``OrderedDistributedSampler``) pads the shards to equal length with repeated samples, which
    a summed top-1 would count twice when the val size does not divide by the world size.
    """

    def __init__(self, num_samples: int, rank: int, world_size: int):
        self.indices = list(range(rank, num_samples, world_size))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def create_eval_loader(dataset, args, batch_size: int, **kwargs):
    """timm's eval loader; under DDP over an exact, unpadded split of the dataset (see ``ShardSampler``)."""
    kwargs = dict(kwargs, distributed=False)
    loader = create_loader(dataset, batch_size=batch_size, is_training=False, **kwargs)
    if not getattr(args, "distributed", False):
        return loader
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, sampler=ShardSampler(len(dataset), args.rank, args.world_size),
        num_workers=loader.num_workers, collate_fn=loader.collate_fn, pin_memory=loader.pin_memory, drop_last=False,
        worker_init_fn=loader.worker_init_fn)


CURVE_FILE = "training_curve.png"


def plot_summary(summary_csv, png, title: str = "") -> bool:
    """Training curve from timm's ``summary.csv``: losses and top-1 per epoch. False (logged) without matplotlib."""
    import csv

    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        _logger.warning("matplotlib is not installed: no %s (pip install matplotlib)", Path(png).name)
        return False
    with open(summary_csv, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("epoch", "").isdigit()]
    if not rows:
        return False
    epochs = [int(r["epoch"]) for r in rows]

    def column(name):
        return [float(r[name]) for r in rows] if name in rows[0] else None

    fig, (ax_loss, ax_top1) = plt.subplots(1, 2, figsize=(10, 4))
    for name, label in (("train_loss", "train loss"), ("eval_loss", "val loss")):
        values = column(name)
        if values:
            ax_loss.plot(epochs, values, marker=".", label=label)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.legend()
    top1 = column("eval_top1")
    if top1:
        ax_top1.plot(epochs, top1, marker=".", color="tab:green", label="val top-1")
        best = max(range(len(top1)), key=top1.__getitem__)
        ax_top1.annotate(f"{top1[best]:.1f}", (epochs[best], top1[best]), textcoords="offset points", xytext=(0, 6),
                         ha="center")
    for ax in (ax_loss, ax_top1):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_top1.set_xlabel("epoch")
    ax_top1.set_ylabel("top-1 (%)")
    ax_top1.set_ylim(0, 100)
    ax_top1.grid(alpha=0.3)
    ax_top1.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    tmp = Path(png).with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, png)
    return True


def make_autocast(args, device):
    dtype = resolve_amp_dtype(args.amp, args.amp_dtype, device)  # says so when float16 becomes bfloat16 on CPU
    if dtype is None:
        return nullcontext, None
    # timm's NativeScaler: CheckpointSaver and resume store it under its ``state_dict_key``.
    scaler = NativeScaler(device.type) if dtype == torch.float16 else None
    return (lambda: torch.autocast(device_type=device.type, dtype=dtype)), scaler


def main(argv=None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    parser = build_parser()
    args = apply_demo_defaults(parser.parse_args(argv))
    started = time.time()
    check_args(parser, args)
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be >= 1")
        torch.set_num_threads(args.threads)
    device = setup_distributed(args)
    prepare_demo_data(args)
    if args.main_job:
        set_aside_previous_run(args)
    random_seed(args.seed, args.rank)

    dataset_train = create_dataset(args.dataset, root=args.data_dir, split=args.train_split, is_training=True,
                                   batch_size=args.batch_size)
    dataset_eval = create_dataset(args.dataset, root=args.data_dir, split=args.val_split, is_training=False,
                                  batch_size=args.batch_size)
    dataset_train, dataset_eval = (check_images(d, skip=args.skip_bad_images) for d in (dataset_train, dataset_eval))
    class_to_idx = getattr(getattr(dataset_train, "reader", None), "class_to_idx", None)
    if args.num_classes is None:
        if not class_to_idx:
            parser.error("--num-classes is required for this dataset")
        args.num_classes = len(class_to_idx)
    # stored in args.yaml and every checkpoint (args), for tools/infer.py
    args.class_names = class_names(class_to_idx, args.num_classes)

    model_kwargs = dict(args.model_kwargs)
    if args.drop_path is not None:
        model_kwargs["drop_path_rate"] = args.drop_path
    with trusted_checkpoints(args.trust_checkpoint or None):  # also covers timm's pretrained loaders
        model = timm.create_model(args.model, pretrained=args.pretrained, num_classes=args.num_classes,
                                  drop_rate=args.drop, **model_kwargs)
    if args.initial_checkpoint:
        from visionattn.models._helpers import load_checkpoint_file, unwrap_state_dict
        model.load_state_dict(unwrap_state_dict(load_checkpoint_file(args.initial_checkpoint,
                                                                     trust_checkpoint=args.trust_checkpoint or None)))
    if args.grad_checkpointing:
        model.set_grad_checkpointing(True)
    model.to(device)
    if args.channels_last:
        model.to(memory_format=torch.channels_last)
    param_count = sum(p.numel() for p in model.parameters())
    if args.rank == 0:
        _logger.info("model %s: %.2f M parameters, %d classes, device %s", args.model, param_count / 1e6,
                     args.num_classes, device)

    data_config = resolve_data_config(vars(args), model=model, verbose=args.rank == 0)
    autocast, loss_scaler = make_autocast(args, device)
    optimizer = create_optimizer_v2(model, opt=args.opt, lr=args.lr, weight_decay=args.weight_decay,
                                    momentum=args.momentum)
    model_ema = ModelEmaV3(model, decay=args.model_ema_decay) if args.model_ema else None

    resume_epoch = None
    if args.resume:
        resume_epoch = restore_checkpoint(args.resume, model, None if args.no_resume_opt else optimizer, loss_scaler,
                                          model_ema, args)

    train_model = model
    if args.distributed:
        train_model = nn.parallel.DistributedDataParallel(model, device_ids=[args.local_rank] if device.type == "cuda" else None)

    mixup_fn = None
    if args.mixup > 0 or args.cutmix > 0:
        mixup_fn = Mixup(mixup_alpha=args.mixup, cutmix_alpha=args.cutmix, prob=args.mixup_prob,
                         switch_prob=args.mixup_switch_prob, label_smoothing=args.smoothing,
                         num_classes=args.num_classes)
    loader_common = dict(input_size=data_config["input_size"], interpolation=data_config["interpolation"],
                         mean=data_config["mean"], std=data_config["std"], num_workers=args.workers,
                         distributed=args.distributed, use_prefetcher=False, device=device,
                         pin_memory=device.type == "cuda", persistent_workers=False)
    loader_train = create_loader(dataset_train, batch_size=args.batch_size, is_training=True, no_aug=args.no_aug,
                                 re_prob=args.reprob, scale=args.scale, ratio=args.ratio, hflip=args.hflip,
                                 vflip=args.vflip, color_jitter=args.color_jitter, auto_augment=args.aa,
                                 **loader_common)
    loader_eval = create_eval_loader(dataset_eval, args, batch_size=args.validation_batch_size or args.batch_size,
                                     crop_pct=data_config["crop_pct"], **loader_common)

    if mixup_fn is not None:
        train_loss_fn = SoftTargetCrossEntropy()
    elif args.smoothing > 0:
        train_loss_fn = LabelSmoothingCrossEntropy(smoothing=args.smoothing)
    else:
        train_loss_fn = nn.CrossEntropyLoss()
    updates_per_epoch = args.updates_per_epoch = len(loader_train)  # per rank: the sampler splits the data
    lr_scheduler, num_epochs = create_scheduler_v2(
        optimizer, sched=args.sched, num_epochs=args.epochs, warmup_epochs=args.warmup_epochs,
        warmup_lr=args.warmup_lr, min_lr=args.min_lr, cooldown_epochs=args.cooldown_epochs,
        step_on_epochs=not args.sched_on_updates, updates_per_epoch=updates_per_epoch,
    )
    start_epoch = resume_epoch or 0
    if start_epoch > 0:
        # timm's schedulers are functions of the epoch / update count: stepping to the resume point
        # restores the exact learning rate the interrupted run would have used.
        lr_scheduler.step(start_epoch) if not args.sched_on_updates else lr_scheduler.step_update(start_epoch * updates_per_epoch)

    output_dir = None
    saver = None
    if args.rank == 0:
        experiment = args.experiment or "-".join(
            [time.strftime("%Y%m%d-%H%M%S"), args.model, str(data_config["input_size"][-1])])
        output_dir = Path(args.output) / experiment
        output_dir.mkdir(parents=True, exist_ok=True)
        saved_args = {k: v for k, v in vars(args).items()}
        (output_dir / "args.yaml").write_text(yaml.safe_dump(saved_args, default_flow_style=False, sort_keys=False))
        saver = SafeCheckpointSaver(model=model, optimizer=optimizer, args=args, model_ema=model_ema,
                                    amp_scaler=loss_scaler, checkpoint_dir=str(output_dir),
                                    recovery_dir=str(output_dir), decreasing=args.eval_metric == "loss",
                                    max_history=args.checkpoint_hist)
        saver.continue_run(args.resume, start_epoch)  # resuming in this folder: history, summary.csv, temp files
        _logger.info("run folder: %s", output_dir)

    best_metric, best_epoch, eval_metrics = None, None, {}
    num_updates = start_epoch * updates_per_epoch
    for epoch in range(start_epoch, num_epochs):
        if args.distributed and hasattr(loader_train.sampler, "set_epoch"):
            loader_train.sampler.set_epoch(epoch)
        if mixup_fn is not None and args.mixup_off_epoch and epoch >= args.mixup_off_epoch:
            mixup_fn.mixup_enabled = False
        train_metrics, num_updates = train_one_epoch(
            epoch, train_model, loader_train, optimizer, train_loss_fn, args, device, autocast, loss_scaler,
            lr_scheduler, model_ema, mixup_fn, num_updates)
        eval_metrics = evaluate(model, loader_eval, device, autocast, args)
        if model_ema is not None:
            eval_metrics = evaluate(model_ema.module, loader_eval, device, autocast, args, desc="eval ema")
        lr = optimizer.param_groups[0]["lr"]
        lr_scheduler.step(epoch + 1, eval_metrics[args.eval_metric])
        if args.rank == 0:
            update_summary(epoch, train_metrics, eval_metrics, filename=str(output_dir / "summary.csv"), lr=lr)
            best_metric, best_epoch = saver.save_checkpoint(epoch, metric=eval_metrics[args.eval_metric])
            _logger.info("epoch %d: train_loss %.4f eval_loss %.4f top1 %.2f top5 %.2f lr %.2e (%.0f s)", epoch,
                         train_metrics["loss"], eval_metrics["loss"], eval_metrics["top1"], eval_metrics["top5"], lr,
                         time.time() - started)

    if args.rank == 0 and output_dir is not None and (output_dir / "summary.csv").is_file():
        plot_summary(output_dir / "summary.csv", output_dir / CURVE_FILE, title=f"{args.model} ({output_dir.name})")
    report_skipped_images((dataset_train, dataset_eval))
    result = dict(model=args.model, epochs=num_epochs, best_metric=best_metric, best_epoch=best_epoch,
                  final=dict(eval_metrics), param_count=param_count, seconds=round(time.time() - started, 1),
                  output=str(output_dir) if output_dir else None)
    if args.rank == 0:
        print(json.dumps(result, indent=2))
    if args.distributed:
        dist.destroy_process_group()
    return result


if __name__ == "__main__":
    main()
