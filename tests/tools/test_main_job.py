"""The main job (``python tools/train.py``) on a tiny demo set: artefacts, an independent top-1, infer.py, torchrun.

The top-1 oracle here does not use ``train.evaluate`` (which train.py and validate.py share): it runs the model on
the val images with timm's eval transform and compares the argmax of the raw logits with the folder labels.
"""
import argparse
import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import timm
import torch
from PIL import Image
from timm.data import create_transform

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import infer  # noqa: E402
import train  # noqa: E402
import validate  # noqa: E402

from visionattn.data import demo  # noqa: E402
from visionattn.models._helpers import load_checkpoint_file, unwrap_state_dict  # noqa: E402

TINY = dict(train_per_class=3, val_per_class=3, image_size=32)
SHORT = ["--epochs", "2", "--img-size", "32", "--batch-size", "8", "--workers", "0", "--threads", "1", "--no-progress",
         "--lr", "1e-3"]


def _summary(run: Path):
    with open(run / "summary.csv") as f:
        return list(csv.DictReader(f))


def _val_images(data: Path):
    classes = sorted(p.name for p in (data / "val").iterdir() if p.is_dir())
    return classes, [(img, classes.index(c)) for c in classes for img in sorted((data / "val" / c).iterdir())]


@pytest.fixture(scope="module")
def main_job(tmp_path_factory):
    """``python tools/train.py`` (shortened: 2 epochs at 32x32) with the demo data drawn tiny into a temp cache."""
    cache, out = tmp_path_factory.mktemp("cache"), tmp_path_factory.mktemp("out")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VISIONATTN_DATA", str(cache))
        mp.setitem(demo._DEFAULT_SIZES, "classification", TINY)
        result = train.main(SHORT + ["--output", str(out)])
        data = demo.ensure_demo("classification")
        yield Path(result["output"]), result, data, mp


def test_main_job_is_our_model_in_demo_main(main_job):
    run, result, _, _ = main_job
    assert result["model"] == train.DEFAULT_MODEL == "test_gc_vit"
    assert run.name == train.MAIN_JOB_EXPERIMENT
    assert timm.models.get_pretrained_cfg_value("test_gc_vit", "url") == ""  # demo-only: no weights


def test_main_job_writes_every_artefact(main_job):
    run, _, _, _ = main_job
    for name in ("args.yaml", "summary.csv", "last.pth.tar", "model_best.pth.tar", "checkpoint-1.pth.tar"):
        assert (run / name).is_file(), name
    png = run / train.CURVE_FILE
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as im:
        assert im.size[0] > 300 and im.size[1] > 200
    assert [r["epoch"] for r in _summary(run)] == ["0", "1"]


def test_validate_and_raw_logits_agree_with_summary(main_job):
    run, result, data, mp = main_job
    best_row = max(_summary(run), key=lambda r: float(r["eval_top1"]))
    best = torch.load(run / "model_best.pth.tar", map_location="cpu", weights_only=False)
    assert best["epoch"] == int(best_row["epoch"]) == result["best_epoch"]

    results = validate.main(["--model", "test_gc_vit", "--checkpoint", str(run / "model_best.pth.tar"),
                             "--img-size", "32", "--workers", "0"])  # demo data: the same (patched) cache
    assert results["top1"] == pytest.approx(float(best_row["eval_top1"]), abs=1e-3)
    assert results["samples"] == 10 * TINY["val_per_class"]

    # independent oracle: argmax of the raw logits over the val folder, labels from the folder names
    classes, images = _val_images(data)
    assert best["args"].class_names == classes
    model = timm.create_model("test_gc_vit", num_classes=len(classes))
    model.load_state_dict(unwrap_state_dict(load_checkpoint_file(run / "model_best.pth.tar")))
    model.eval()
    transform = create_transform(32, interpolation="bicubic", crop_pct=1.0)
    with torch.no_grad():
        x = torch.stack([transform(Image.open(p).convert("RGB")) for p, _ in images])
        pred = model(x).argmax(-1)
    labels = torch.tensor([label for _, label in images])
    top1 = 100.0 * (pred == labels).sum().item() / len(images)
    assert top1 == pytest.approx(float(best_row["eval_top1"]), abs=1e-3)


def test_infer_prints_the_models_class_with_the_checkpoints_names(main_job, capsys):
    run, _, data, _ = main_job
    classes, images = _val_images(data)
    path, _ = images[4]
    capsys.readouterr()
    results = infer.main([str(path), "--model", "test_gc_vit", "--checkpoint", str(run / "model_best.pth.tar")])
    printed = capsys.readouterr().out.splitlines()

    model = timm.create_model("test_gc_vit", num_classes=len(classes))
    model.load_state_dict(unwrap_state_dict(load_checkpoint_file(run / "model_best.pth.tar")))
    model.eval()
    with torch.no_grad():
        x = create_transform(32, interpolation="bicubic", crop_pct=1.0)(Image.open(path).convert("RGB"))
        probs = model(x[None]).softmax(-1)[0]
    expected = probs.argmax().item()
    assert printed[0] == str(path)
    assert len(printed) == 1 + 5
    assert printed[1].split()[1:] == [classes[expected], f"({expected})"]
    top = results[0]["top"]
    assert [r["index"] for r in top] == probs.topk(5).indices.tolist()
    assert top[0]["prob"] == pytest.approx(probs.max().item(), abs=1e-5)


def test_infer_imagenet_names_and_errors(tmp_path):
    names = infer.resolve_class_names(1000, [], "")
    assert len(names) == 1000 and "goldfish" in names[1].lower()
    assert infer.resolve_class_names(3, ["a", "b", "c"], "") == ["a", "b", "c"]
    assert infer.resolve_class_names(2, [], "") == ["0", "1"]
    (tmp_path / "names.txt").write_text("x\ny\n")
    with pytest.raises(ValueError, match="2 names"):
        infer.resolve_class_names(3, [], str(tmp_path / "names.txt"))


def test_new_main_job_sets_the_previous_run_aside(tmp_path):
    (tmp_path / "demo_main").mkdir()
    (tmp_path / "demo_main" / "summary.csv").write_text("old")
    args = argparse.Namespace(output=str(tmp_path), experiment="demo_main", resume="", rank=0)
    train.set_aside_previous_run(args)
    assert not (tmp_path / "demo_main").exists()
    (moved,) = tmp_path.iterdir()
    assert moved.name.startswith("demo_main-") and (moved / "summary.csv").read_text() == "old"
    args.resume = "auto"  # resuming continues in place
    (tmp_path / "demo_main").mkdir()
    (tmp_path / "demo_main" / "x").write_text("")
    train.set_aside_previous_run(args)
    assert (tmp_path / "demo_main" / "x").exists()


# -- torchrun -------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def odd_data(tmp_path_factory):
    """29 val images: does not divide by 2 ranks (timm's eval sampler would pad one duplicate)."""
    data = demo.generate("classification", tmp_path_factory.mktemp("odd") / "cls", **TINY)
    victim = sorted((data / "val" / "star").iterdir())[0]
    victim.unlink()
    return data


def _torchrun(args, cwd, timeout=600):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"] + args
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


_EVAL_SCRIPT = textwrap.dedent("""
    import json, sys
    import torch, torch.distributed as dist
    sys.path.insert(0, {tools!r})
    import train
    from timm.data import create_dataset

    class Fixed(torch.nn.Module):  # predicts class 0 with top-1; loss is exact too
        def forward(self, x):
            return torch.arange(10, 0, -1, dtype=torch.float32).expand(x.shape[0], 10).clone()

    dist.init_process_group("gloo")
    args = train.build_parser().parse_args([])
    args.rank, args.world_size, args.distributed = dist.get_rank(), dist.get_world_size(), True
    args.channels_last, args.no_progress = False, True
    dataset = create_dataset("", root={data!r}, split="val")
    loader = train.create_eval_loader(dataset, args, batch_size=4, input_size=(3, 32, 32), interpolation="bilinear",
                                      mean=(0.5,) * 3, std=(0.5,) * 3, num_workers=0, use_prefetcher=False,
                                      crop_pct=1.0)
    seen = torch.tensor([len(loader.sampler)])
    dist.all_reduce(seen)
    metrics = train.evaluate(Fixed(), loader, torch.device("cpu"), train.nullcontext, args)
    if args.rank == 0:
        print("RESULT", json.dumps(dict(metrics, seen=seen.item(), labels=[t for _, t in dataset.reader.samples])))
    dist.destroy_process_group()
""")


def test_distributed_eval_is_exact_with_an_odd_val_size(odd_data, tmp_path):
    script = tmp_path / "eval_ddp.py"
    script.write_text(_EVAL_SCRIPT.format(tools=str(ROOT / "tools"), data=str(odd_data)))
    out = _torchrun([str(script)], cwd=tmp_path).stdout
    result = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT"))[len("RESULT"):])
    labels = torch.tensor(result["labels"])
    assert len(labels) == 29 and result["seen"] == 29  # every sample once, none twice
    # the fixed logits rank class 0 first, classes 0-4 in the top 5
    assert result["top1"] == pytest.approx(100.0 * (labels == 0).sum().item() / 29, abs=1e-9)
    assert result["top5"] == pytest.approx(100.0 * (labels < 5).sum().item() / 29, abs=1e-9)
    logits = torch.arange(10, 0, -1, dtype=torch.float64).expand(29, 10)
    assert result["loss"] == pytest.approx(torch.nn.functional.cross_entropy(logits, labels).item(), rel=1e-6)


def test_torchrun_two_processes_train_py(odd_data, tmp_path):
    out = tmp_path / "out"
    _torchrun([str(ROOT / "tools" / "train.py"), "--model", "test_gc_vit", "--data-dir", str(odd_data),
               "--img-size", "32", "--epochs", "1", "--batch-size", "4", "--workers", "0", "--no-progress",
               "--device", "cpu", "--threads", "1", "--output", str(out), "--experiment", "ddp"], cwd=ROOT)
    assert [p.name for p in out.iterdir()] == ["ddp"]  # one process writes the run folder
    run = out / "ddp"
    rows = _summary(run)
    assert [r["epoch"] for r in rows] == ["0"]
    ckpt = torch.load(run / "last.pth.tar", map_location="cpu", weights_only=False)
    assert ckpt["args"].world_size == 2 and not any(k.startswith("module.") for k in ckpt["state_dict"])
    # 30 train images split over 2 ranks at batch 4 (last partial batch dropped): 3 updates per rank and epoch,
    # where one process would make 7
    assert ckpt["args"].updates_per_epoch == 15 // 4
    # the exact distributed top-1 equals a single-process evaluation of the same weights
    results = validate.main(["--model", "test_gc_vit", "--checkpoint", str(run / "last.pth.tar"),
                             "--data-dir", str(odd_data), "--img-size", "32", "--workers", "0"])
    assert results["samples"] == 29
    assert results["top1"] == pytest.approx(float(rows[0]["eval_top1"]), abs=1e-3)
    assert results["loss"] == pytest.approx(float(rows[0]["eval_loss"]), rel=1e-4, abs=1e-5)
