"""The OpenMMLab side of issue 17: VisionAttnBackbone's checkpoint= and mmengine's own loaders (Runner resume /
load_from / init_cfg) refuse a checkpoint that pickles a callable unless the user opts in, while Runner checkpoints
load without it (also ones written without visionattn.mm); mmengine's saves are atomic; --resume picks the newest
complete checkpoint (a torn one is skipped); tools/mm_train.py killed in the middle of a checkpoint save resumes
and finishes with the weights of an uninterrupted run, with every torch.load forced weights-only."""
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.mm
pytest.importorskip("mmdet")
pytest.importorskip("mmseg")

import visionattn.mm  # noqa: E402,F401
from visionattn.checkpoint import TRUST_ENV, UntrustedCheckpointError, load_checkpoint_file  # noqa: E402
from visionattn.mm import VisionAttnBackbone  # noqa: E402
from visionattn.mm.serialization import find_resume_checkpoint  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
HOOKS = REPO / "tests" / "tools" / "_kill_hooks.py"
SYSTEM = f"{os.system.__module__}.system"
SMALL_DAVIT = dict(depths=(1, 1, 1, 1), embed_dims=(16, 32, 48, 64), num_heads=(1, 1, 2, 2))


class _Touch:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, ("touch " + shlex.quote(self.marker),)


@pytest.fixture(autouse=True)
def _no_trust_from_environment(monkeypatch):
    monkeypatch.delenv(TRUST_ENV, raising=False)


def test_backbone_checkpoint_refuses_then_trusts(tmp_path):
    marker = tmp_path / "marker"
    torch.manual_seed(0)
    source = VisionAttnBackbone("davit_tiny", model_kwargs=SMALL_DAVIT)
    path = tmp_path / "det.pth"
    torch.save({"meta": {}, "state_dict": {"backbone." + k: v for k, v in source.state_dict().items()},
                "payload": _Touch(marker)}, path)
    with pytest.raises(UntrustedCheckpointError) as info:
        VisionAttnBackbone("davit_tiny", model_kwargs=SMALL_DAVIT, checkpoint=str(path)).init_weights()
    assert SYSTEM in str(info.value) and "trust_checkpoint=True" in str(info.value) and not marker.exists()
    trusted = VisionAttnBackbone("davit_tiny", model_kwargs=SMALL_DAVIT, checkpoint=str(path), trust_checkpoint=True)
    trusted.init_weights()
    assert marker.exists()
    for key, value in source.state_dict().items():
        assert torch.equal(trusted.state_dict()[key], value), key


def test_mmengine_loaders_refuse_then_trust(tmp_path, monkeypatch):
    from mmengine.runner import CheckpointLoader, load_checkpoint
    from mmengine.runner.checkpoint import _load_checkpoint

    marker = tmp_path / "marker"
    model = torch.nn.Linear(2, 2)
    path = tmp_path / "epoch_1.pth"
    torch.save({"meta": {"epoch": 1}, "state_dict": model.state_dict(), "payload": _Touch(marker)}, path)
    for load in (lambda: _load_checkpoint(str(path)),  # Runner.resume / Runner.load_checkpoint / init_cfg
                 lambda: load_checkpoint(torch.nn.Linear(2, 2), str(path)),
                 lambda: CheckpointLoader.load_checkpoint(str(path))):
        with pytest.raises(UntrustedCheckpointError, match="--trust-checkpoint"):
            load()
    assert not marker.exists()
    monkeypatch.setenv(TRUST_ENV, "1")
    assert torch.equal(_load_checkpoint(str(path))["state_dict"]["weight"], model.weight)
    assert marker.exists()


def _runner_checkpoint(path, hub_name):
    from mmengine.logging import MessageHub

    hub = MessageHub.get_instance(hub_name)
    hub.update_scalar("train/loss", 1.5)
    hub.update_scalar("train/loss", np.float64(1.25))
    hub.update_info("iter", 7)
    torch.save({"meta": {"epoch": 1, "seed": np.int64(3), "mean": np.array([1.0, 2.0])},
                "state_dict": {"w": torch.ones(2)}, "message_hub": hub.state_dict()}, path)


def test_runner_checkpoints_load_without_opt_in(tmp_path):
    from mmengine.logging.history_buffer import HistoryBuffer
    from mmengine.runner.checkpoint import _load_checkpoint

    _runner_checkpoint(tmp_path / "a.pth", "visionattn_safety_a")
    assert _load_checkpoint(str(tmp_path / "a.pth"))["message_hub"]["log_scalars"]["train/loss"].current() == 1.25
    # written by a process that never imported visionattn.mm: HistoryBuffer pickles getattr(HistoryBuffer, 'min') ...
    def mmengine_getstate(self):  # mmengine 0.10.7's own HistoryBuffer.__getstate__, which visionattn.mm replaces
        self.__dict__.update(statistics_methods=self._statistics_methods)
        return self.__dict__

    patched = HistoryBuffer.__getstate__
    HistoryBuffer.__getstate__ = mmengine_getstate
    try:
        _runner_checkpoint(tmp_path / "b.pth", "visionattn_safety_b")
    finally:
        HistoryBuffer.__getstate__ = patched
    assert b"getattr" in (tmp_path / "b.pth").read_bytes()
    loaded = load_checkpoint_file(tmp_path / "b.pth", trust_checkpoint=False)
    assert loaded["message_hub"]["log_scalars"]["train/loss"].mean() == pytest.approx(1.375)

    # ... but the getattr stand-in gives only those four functions
    class _OtherAttribute:
        def __reduce__(self):
            return getattr, (HistoryBuffer, "__init__")

    torch.save({"x": _OtherAttribute()}, tmp_path / "c.pth")
    with pytest.raises(UntrustedCheckpointError, match="builtins.getattr"):
        load_checkpoint_file(tmp_path / "c.pth")


def test_mmengine_saves_are_atomic(tmp_path):
    from mmengine.runner import checkpoint as mm_checkpoint
    from mmengine.runner import runner as mm_runner

    path = tmp_path / "work" / "epoch_1.pth"
    mm_runner.save_checkpoint({"state_dict": {"w": torch.zeros(2)}}, str(path))  # the name Runner.save_checkpoint uses
    assert mm_runner.save_checkpoint is mm_checkpoint.save_checkpoint

    class Exploding:
        def __reduce__(self):
            raise KeyboardInterrupt  # interrupted half-way through writing

    with pytest.raises(KeyboardInterrupt):
        mm_checkpoint.save_checkpoint({"state_dict": {"w": torch.ones(2)}, "x": Exploding()}, str(path))
    assert torch.equal(load_checkpoint_file(path)["state_dict"]["w"], torch.zeros(2))
    assert [p.name for p in path.parent.iterdir()] == ["epoch_1.pth"]


def test_find_resume_checkpoint_skips_torn_files(tmp_path):
    for step in (1, 2, 3):
        torch.save({"meta": {"epoch": step}, "state_dict": {"w": torch.full((64,), float(step))}},
                   tmp_path / f"epoch_{step}.pth")
    assert find_resume_checkpoint(str(tmp_path)) == str(tmp_path / "epoch_3.pth")
    data = (tmp_path / "epoch_3.pth").read_bytes()
    (tmp_path / "epoch_3.pth").write_bytes(data[: len(data) // 2])
    (tmp_path / "last_checkpoint").write_text(str(tmp_path / "epoch_3.pth"))
    assert find_resume_checkpoint(str(tmp_path)) == str(tmp_path / "epoch_2.pth")
    (tmp_path / "last_checkpoint").write_text("")  # a last_checkpoint cut short
    assert find_resume_checkpoint(str(tmp_path)) == str(tmp_path / "epoch_2.pth")
    assert find_resume_checkpoint(str(tmp_path / "nothing")) is None


_TOY_CONFIG = """
custom_imports = dict(imports=['visionattn.mm', '_toy_mm'], allow_failed_imports=False)
model = dict(type='VisionAttnToyModel')
train_dataloader = dict(batch_size=4, num_workers=0, dataset=dict(type='VisionAttnToyDataset', size=24),
                        sampler=dict(type='DefaultSampler', shuffle=True), collate_fn=dict(type='default_collate'))
train_cfg = dict(by_epoch=True, max_epochs=3)
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.05, momentum=0.9))
param_scheduler = [dict(type='MultiStepLR', milestones=[2], gamma=0.1, by_epoch=True)]
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=1), logger=dict(type='LoggerHook', interval=1))
randomness = dict(seed=0)
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
"""


def _mm_train(config, work, tmp_path, extra_env=None, resume=False, wait=True):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore",
               PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tests" / "mm"), os.environ.get("PYTHONPATH", "")]))
    env.pop("KILL_AT", None)
    env.update(extra_env or {})
    command = [sys.executable, str(HOOKS), str(REPO / "tools" / "mm_train.py"), str(config), "--work-dir", str(work)]
    if resume:
        command.append("--resume")
    if not wait:
        return subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    return result.stdout + result.stderr


@pytest.mark.slow
def test_mm_train_killed_during_a_save_resumes(tmp_path):
    config = tmp_path / "toy.py"
    config.write_text(_TOY_CONFIG)
    _mm_train(config, tmp_path / "uninterrupted", tmp_path)

    work = tmp_path / "killed"
    ready = tmp_path / "ready"
    proc = _mm_train(config, work, tmp_path, dict(KILL_AT="save:2", KILL_READY=str(ready)), resume=True, wait=False)
    deadline = time.time() + 600
    while not ready.exists():
        if proc.poll() is not None:
            pytest.fail("mm_train.py ended before its second save:\n" + proc.stdout.read()[-5000:])
        assert time.time() < deadline, "timed out waiting for the second save"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    proc.stdout.close()
    assert not (work / "epoch_2.pth").exists()  # the half-written save never got the final name
    assert [p.name for p in work.glob(".epoch_2.pth.*.tmp")], "the torn temporary file is where the kill left it"
    assert find_resume_checkpoint(str(work)) == str(work / "epoch_1.pth")

    # resume with every torch.load forced to weights_only=True: no unsafe load is needed anywhere
    out = _mm_train(config, work, tmp_path, dict(TORCH_FORCE_WEIGHTS_ONLY_LOAD="1"), resume=True)
    assert "resumed epoch: 1" in out and "Epoch(train) [3]" in out and "Epoch(train) [1]" not in out
    assert not list(work.glob(".*.tmp"))
    final = load_checkpoint_file(work / "epoch_3.pth")
    reference = load_checkpoint_file(tmp_path / "uninterrupted" / "epoch_3.pth")
    assert final["meta"]["epoch"] == reference["meta"]["epoch"] == 3
    for key, value in reference["state_dict"].items():
        torch.testing.assert_close(final["state_dict"][key], value, rtol=0, atol=0, msg=key)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU message")
def test_mm_train_amp_on_cpu_is_a_clear_error(capsys):
    sys.path.insert(0, str(REPO / "tools"))
    import mm_train

    with pytest.raises(SystemExit) as exc:
        mm_train.parse_args(["config.py", "--amp"])
    assert exc.value.code == 2 and "needs a CUDA" in capsys.readouterr().err
