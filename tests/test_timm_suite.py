"""timm's own model test suite (``tests/test_models.py`` of the installed timm's sdist) on every visionattn model.

One test per family (timm module), each running ``tools/timm_suite.py --family <module>`` in a subprocess,
serially inside its xdist worker, so the two CI workers share the families. The sdist's test file is fetched once
with pip into ``$VISIONATTN_CACHE`` (PyPI is reachable in CI); downloads of pretrained weights are deselected.

CI cost: every model runs timm's meta-device config test (``test_model_default_cfgs``: device / dtype factory
arguments, shapes, classifier reset, frozen parameters); the whole suite (forward, backward, TorchScript, FX,
features, intermediates, pruning) runs on the models up to ``VISIONATTN_TIMM_SUITE_MAX_PARAMS`` million parameters
(default 30: the mini / tiny variants of every family). ``VISIONATTN_TIMM_SUITE_MAX_PARAMS=0`` runs everything
on every model (``python tools/timm_suite.py -n 2`` does the same outside pytest).
"""
import importlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm.models._registry as registry

importlib.import_module("visionattn.models")  # registers the models


ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("timm_suite", ROOT / "tools" / "timm_suite.py")
timm_suite = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(timm_suite)

FAMILIES = sorted({registry._model_to_module[n] for n, fn in registry._model_entrypoints.items()
                   if fn.__module__.startswith("visionattn.")})


def _env(**extra):
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env.pop("PYTEST_XDIST_WORKER", None)
    return env


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_timm_suite_passes(family, tmp_path):
    summary = tmp_path / "summary.json"
    max_params = os.environ.get("VISIONATTN_TIMM_SUITE_MAX_PARAMS", "30")
    cmd = [sys.executable, str(ROOT / "tools" / "timm_suite.py"), "--family", family, "--threads", "1",
           "--max-params", max_params, "--summary-json", str(summary), "-q", "-rfE", "-p", "no:randomly"]
    proc = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"timm's suite on {family} (exit {proc.returncode}):\n{output[-6000:]}"
    assert summary.exists() and '"passed"' in summary.read_text(), f"no test of {family} ran:\n{output[-3000:]}"


def test_runner_deselects_downloads_and_keeps_user_filters():
    cmd = timm_suite.build_command(Path("/suite"), ["-k", "nat_mini", "-x"])
    expr = cmd[cmd.index("-k") + 1]
    assert expr.startswith("(nat_mini) and ")
    assert all(f"not {name}" in expr for name in timm_suite.DOWNLOAD_TESTS)
    assert "-x" in cmd and str(Path("/suite") / "test_models.py") in cmd


def test_runner_says_clearly_when_the_sdist_is_missing(tmp_path):
    cmd = [sys.executable, str(ROOT / "tools" / "timm_suite.py")]
    env = _env(VISIONATTN_CACHE=str(tmp_path / "cache"), VISIONATTN_TIMM_SDIST=str(tmp_path / "nope.tar.gz"))
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 3
    assert "VISIONATTN_TIMM_SDIST" in proc.stderr and "nope.tar.gz" in proc.stderr


def test_runner_rejects_an_unknown_family():
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "timm_suite.py"), "--family", "resnet"],
                          cwd=ROOT, env=_env(), capture_output=True, text=True)
    assert proc.returncode == 2 and "not a visionattn module" in proc.stderr
