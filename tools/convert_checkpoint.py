#!/usr/bin/env python3
"""Convert an official checkpoint to visionattn's layout and save it as safetensors.

    python tools/convert_checkpoint.py --model dinat_tiny --checkpoint dinat_tiny_in1k_224.pth \
        --out weights/dinat_tiny.safetensors

The family's ``checkpoint_filter_fn`` maps the official keys to ours; the result is loaded with
``strict=True`` (a mismatch raises one error listing every missing, unexpected and mis-shaped key),
then written with the model's pretrained cfg beside it (``<out>.json``) so that
``timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=<out>))`` loads it.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import timm  # noqa: E402

import visionattn  # noqa: E402,F401
from visionattn.checkpoint import (  # noqa: E402
    CheckpointReadError, UntrustedCheckpointError, atomic_write,
)
from visionattn.models._helpers import check_converted, load_checkpoint_file  # noqa: E402

from train import KeyValue  # noqa: E402


def filter_fn_for(model: torch.nn.Module):
    """The ``checkpoint_filter_fn`` of the module that defines ``model``'s class."""
    module = sys.modules[type(model).__module__]
    fn = getattr(module, "checkpoint_filter_fn", None)
    if fn is None:
        raise ValueError(f"{type(model).__module__} defines no checkpoint_filter_fn; nothing to convert with")
    return fn


def convert(model_name: str, checkpoint: str, num_classes=None, model_kwargs=None, trust_checkpoint=None):
    kwargs = dict(model_kwargs or {})
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    model = timm.create_model(model_name, pretrained=False, **kwargs)
    raw = load_checkpoint_file(checkpoint, trust_checkpoint=trust_checkpoint)
    state_dict = filter_fn_for(model)(raw, model)
    check_converted(state_dict, model, source=f"{checkpoint} (converted for {model_name})", classifier=None)
    model.load_state_dict(state_dict, strict=True)
    return model, {k: v.detach().contiguous() for k, v in state_dict.items()}


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="registered model name, e.g. dinat_tiny")
    parser.add_argument("--checkpoint", required=True, help="official .pth / .pth.tar / .safetensors file")
    parser.add_argument("--out", required=True, help="output .safetensors path")
    parser.add_argument("--num-classes", type=int, default=None, help="classifier size (default: the model's)")
    parser.add_argument("--model-kwargs", nargs="*", action=KeyValue, default=None)
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="allow a full pickle load of a checkpoint that holds more than tensors and plain data "
                             "(runs code from the file: only for files you trust; the output is safetensors)")
    args = parser.parse_args(argv)
    if not timm.is_model(args.model):
        parser.error(f"--model {args.model!r} is not a registered timm model")
    if not Path(args.checkpoint).is_file():
        parser.error(f"--checkpoint {args.checkpoint!r} is not a file")
    out = Path(args.out)
    if out.suffix != ".safetensors":
        parser.error("--out must end in .safetensors")
    try:
        model, state_dict = convert(args.model, args.checkpoint, args.num_classes, args.model_kwargs,
                                    trust_checkpoint=args.trust_checkpoint or None)
    except (ValueError, UntrustedCheckpointError, CheckpointReadError) as err:
        parser.error(str(err))

    out.parent.mkdir(parents=True, exist_ok=True)
    cfg = dict(getattr(model, "pretrained_cfg", {}) or {})
    cfg = {k: v for k, v in cfg.items() if isinstance(v, (str, int, float, bool, list, tuple, type(None)))}
    cfg.update(file=str(out), architecture=args.model, source_checkpoint=str(args.checkpoint))
    from safetensors.torch import save as safetensors_bytes

    data = safetensors_bytes(state_dict, metadata={"architecture": args.model, "format": "pt"})
    atomic_write(out, lambda f: f.write(data))  # never a half-written file under the final name
    text = json.dumps(cfg, indent=2, default=list)
    atomic_write(out.with_suffix(".json"), lambda f: f.write(text.encode()))
    params = sum(v.numel() for v in state_dict.values())
    print(json.dumps(dict(model=args.model, out=str(out), tensors=len(state_dict), numel=params), indent=2))
    return out


if __name__ == "__main__":
    main()
