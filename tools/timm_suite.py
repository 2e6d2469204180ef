"""Run timm's own model test suite (``tests/test_models.py`` from the sdist of the installed timm) on our models.

    python tools/timm_suite.py                      # every visionattn model, all tests but the downloads
    python tools/timm_suite.py -k nat_mini -n 2     # extra arguments go to pytest
    python tools/timm_suite.py --family gc_vit      # only the models of one (or more, comma-separated) module(s)
    python tools/timm_suite.py --max-params 30      # larger models: only the (meta-device) config tests

The sdist's test file is fetched once with pip into ``$VISIONATTN_CACHE/timm-tests/<version>`` (default
``~/.cache/visionattn``); ``VISIONATTN_TIMM_SDIST=/path/to/timm-<version>.tar.gz`` uses a local copy instead (no
network); without either the tool exits 3 with a message saying so. Each run works in a temporary directory: a
conftest there imports ``visionattn``, narrows ``timm.list_models`` / ``list_pretrained`` to the names
visionattn registers (or to the ``--family`` modules), and deselects every collected test that is not about one of
those models (the suite's fixed-name tests on timm's own models: ``resnet18``, ``swin_*`` ...). Our model modules
are added to the suite's ``FEAT_INTER_FILTERS`` (the models with ``forward_intermediates``). Tests that need
pretrained weights (downloads) are deselected. At the end a table gives passed / failed / skipped per family
(timm's module name, e.g. ``nat``, ``gc_vit``, ``vig``); ``--summary-json PATH`` writes per-family and per-model
counts as JSON.
Exit code: pytest's.
"""
import argparse
import importlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

DOWNLOAD_TESTS = ("test_model_load_pretrained", "test_model_features_pretrained", "test_model_inference")
# our ViT-style models (token outputs, no pooled spatial map): timm's suite treats its own vit_* / deit* the same way
NON_STD_MODELS = ("agent_deit_*",)

_CONFTEST = '''\
"""Written by visionattn's tools/timm_suite.py: run timm's suite on visionattn's models only."""
import json
import os
from collections import defaultdict

import torch
import timm
import timm.models._registry as _registry
import visionattn  # noqa: F401  (registers the families)

if os.environ.get("VISIONATTN_TIMM_SUITE_THREADS"):
    torch.set_num_threads(int(os.environ["VISIONATTN_TIMM_SUITE_THREADS"]))

_families = [f for f in os.environ.get("VISIONATTN_TIMM_SUITE_FAMILIES", "").split(",") if f]
_ours = {
    name: _registry._model_to_module[name] for name, fn in _registry._model_entrypoints.items()
    if fn.__module__.startswith("visionattn.") and (not _families or _registry._model_to_module[name] in _families)
}
_list_models = timm.list_models
_list_pretrained = timm.list_pretrained


def _only_ours(names):
    return [n for n in names if n.split(".")[0] in _ours]


def list_models(*args, **kwargs):
    return _only_ours(_list_models(*args, **kwargs))


def list_pretrained(*args, **kwargs):
    return _only_ours(_list_pretrained(*args, **kwargs))


timm.list_models = list_models
timm.list_pretrained = list_pretrained


def _model_of(item):
    params = getattr(getattr(item, "callspec", None), "params", {})
    name = params.get("model_name")
    return name.split(".")[0] if isinstance(name, str) else None


_max_params = float(os.environ.get("VISIONATTN_TIMM_SUITE_MAX_PARAMS") or "inf")  # millions
_CHEAP_TESTS = ("test_model_default_cfgs",)  # meta device: every name gets these whatever its size
_params = {}


def _too_big(model):
    if _max_params == float("inf"):
        return False
    if model not in _params:
        built = timm.create_model(model, device="meta")
        _params[model] = sum(p.numel() for p in built.parameters()) / 1e6
    return _params[model] > _max_params


def pytest_collection_modifyitems(config, items):
    # keep only tests about one of our models (the suite also has fixed-name tests on timm's own models); with
    # a parameter limit, larger models keep only the meta-device config tests
    keep, drop = [], []
    for item in items:
        model = _model_of(item)
        if model in _ours and (item.originalname in _CHEAP_TESTS or not _too_big(model)):
            item.user_properties.append(("visionattn_model", model))  # travels with the reports (xdist too)
            keep.append(item)
        else:
            drop.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    counts = defaultdict(lambda: defaultdict(int))
    for outcome in ("passed", "failed", "skipped", "error"):
        for report in terminalreporter.stats.get(outcome, []):
            model = dict(getattr(report, "user_properties", ())).get("visionattn_model")
            if model is None or (outcome == "passed" and report.when != "call"):
                continue
            counts[model][outcome] += 1
    if not counts:
        return
    families = defaultdict(lambda: defaultdict(int))
    for model, c in counts.items():
        for outcome, n in c.items():
            families[_ours.get(model, "?")][outcome] += n
    write = terminalreporter.write_line
    write("")
    write("visionattn models in timm's suite (passed / failed / skipped / error):")
    for fam in sorted(families):
        c = families[fam]
        write(f"  {fam:<12} {c['passed']:4d} {c['failed']:4d} {c['skipped']:4d} {c['error']:4d}")
    path = os.environ.get("VISIONATTN_TIMM_SUITE_SUMMARY")
    if path:
        with open(path, "w") as f:
            json.dump({"families": families, "models": counts}, f, indent=1, sort_keys=True)
'''


class SuiteUnavailable(RuntimeError):
    """timm's test file could not be fetched or found."""


def cache_root() -> Path:
    return Path(os.environ.get("VISIONATTN_CACHE", Path.home() / ".cache" / "visionattn"))


def our_modules() -> list:
    """timm's registry names a model's module by the last part of its Python module (``nat``, ``gc_vit``, ...)."""
    import timm.models._registry as registry

    importlib.import_module("visionattn")  # registers the families

    return sorted({
        registry._model_to_module[name] for name, fn in registry._model_entrypoints.items()
        if fn.__module__.startswith("visionattn.")
    })


def _fetch_sdist(version: str, tmp: str) -> Path:
    local = os.environ.get("VISIONATTN_TIMM_SDIST")
    if local:
        if not Path(local).is_file():
            raise SuiteUnavailable(f"VISIONATTN_TIMM_SDIST={local!r} is not a file (want timm-{version}.tar.gz)")
        return Path(local)
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
           f"timm=={version}", "-d", tmp]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    sdists = list(Path(tmp).glob("timm-*.tar.gz"))
    if proc.returncode != 0 or not sdists:
        raise SuiteUnavailable(
            f"could not fetch the timm {version} sdist with pip (needed once, for its tests/test_models.py): "
            f"`{' '.join(cmd)}` exited {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-800:]}\n"
            f"Without network, download timm-{version}.tar.gz elsewhere and set VISIONATTN_TIMM_SDIST to its path.")
    return sdists[0]


def fetch_suite(version: str) -> Path:
    """The sdist's ``tests/test_models.py``, fetched once into the cache (``test_models.orig``)."""
    target = cache_root() / "timm-tests" / version
    original = target / "test_models.orig"
    if not original.exists():
        target.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            sdist = _fetch_sdist(version, tmp)
            try:
                with tarfile.open(sdist) as tar:
                    member = tar.getmember(f"timm-{version}/tests/test_models.py")
                    with tar.extractfile(member) as src, open(tmp + "/test_models.py", "wb") as dst:
                        shutil.copyfileobj(src, dst)
            except (KeyError, tarfile.TarError) as err:
                raise SuiteUnavailable(f"{sdist} has no readable timm-{version}/tests/test_models.py: {err}") from err
            shutil.move(tmp + "/test_models.py", original)  # only a complete file lands in the cache
    return original


def prepare(version: str, run_dir: Path) -> Path:
    """Write the suite (patched: our modules in FEAT_INTER_FILTERS) and the conftest into ``run_dir``.

    Each run has its own directory, so concurrent runs (other checkouts, other families) never share a conftest.
    """
    text = fetch_suite(version).read_text()
    marker = "FEAT_INTER_FILTERS = ["
    if marker not in text:
        raise SuiteUnavailable(f"timm {version}'s tests/test_models.py has no {marker!r}; update tools/timm_suite.py")
    modules = ", ".join(repr(m) for m in our_modules())
    text = text.replace(marker, f"{marker}{modules}, ", 1)
    non_std = "NON_STD_FILTERS = ["
    if non_std not in text:
        raise SuiteUnavailable(f"timm {version}'s tests/test_models.py has no {non_std!r}; update tools/timm_suite.py")
    text = text.replace(non_std, non_std + ", ".join(repr(p) for p in NON_STD_MODELS) + ", ", 1)
    (run_dir / "test_models.py").write_text(text)
    (run_dir / "conftest.py").write_text(_CONFTEST)
    return run_dir


def build_command(target: Path, pytest_args: list) -> list:
    args = list(pytest_args)
    deselect = " and ".join(f"not {name}" for name in DOWNLOAD_TESTS)
    if "-k" in args:
        i = args.index("-k")
        args[i + 1] = f"({args[i + 1]}) and {deselect}"
    else:
        args += ["-k", deselect]
    return [sys.executable, "-m", "pytest", str(target / "test_models.py"), "-p", "no:cacheprovider",
            "--rootdir", str(target), "-c", os.devnull, "-W", "ignore::pytest.PytestUnknownMarkWarning", *args]


def main(argv=None) -> int:
    import timm

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], add_help=True)
    parser.add_argument("--family", default="", help="comma-separated timm module names (nat, gc_vit, vig, ...)")
    parser.add_argument("--summary-json", default="", help="write per-family / per-model counts here")
    parser.add_argument("--threads", type=int, default=0, help="torch threads in the test process(es)")
    parser.add_argument("--max-params", type=float, default=0.0,
                        help="models with more parameters (millions) run only the meta-device config tests")
    ours, pytest_args = parser.parse_known_args(sys.argv[1:] if argv is None else argv)

    families = [f for f in ours.family.split(",") if f]
    unknown = sorted(set(families) - set(our_modules()))
    if unknown:
        parser.error(f"--family {','.join(unknown)}: not a visionattn module; choose from {', '.join(our_modules())}")
    version = re.match(r"[\d.]+", timm.__version__).group(0).rstrip(".")
    env = dict(os.environ, VISIONATTN_TIMM_SUITE_FAMILIES=",".join(families))
    if ours.summary_json:
        env["VISIONATTN_TIMM_SUITE_SUMMARY"] = str(Path(ours.summary_json).resolve())
    if ours.threads:
        env["VISIONATTN_TIMM_SUITE_THREADS"] = str(ours.threads)
    if ours.max_params:
        env["VISIONATTN_TIMM_SUITE_MAX_PARAMS"] = str(ours.max_params)
    with tempfile.TemporaryDirectory(prefix="timm-suite-") as run_dir:
        try:
            target = prepare(version, Path(run_dir))
        except SuiteUnavailable as err:
            print(f"timm_suite: {err}", file=sys.stderr)
            return 3
        return subprocess.call(build_command(target, pytest_args), cwd=target, env=env)


if __name__ == "__main__":
    sys.exit(main())
