"""Run timm's own model test suite (``tests/test_models.py`` from the sdist of the installed timm) on our models.

    python tools/timm_suite.py                      # every visionattn model, all tests but the downloads
    python tools/timm_suite.py -k nat_mini -n 2     # extra arguments go to pytest

The sdist is fetched once with pip into ``$VISIONATTN_CACHE/timm-tests/<version>`` (default
``~/.cache/visionattn``). A conftest there imports ``visionattn`` and narrows ``timm.list_models`` to the names
visionattn registers, so the suite's parametrisation holds our models only, and our model modules are added to
the suite's ``FEAT_INTER_FILTERS`` (the models with ``forward_intermediates``). Tests that need pretrained
weights (downloads) are deselected. Exit code: pytest's.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

DOWNLOAD_TESTS = ("test_model_load_pretrained", "test_model_features_pretrained", "test_model_inference")

_CONFTEST = '''\
"""Written by visionattn's tools/timm_suite.py: run timm's suite on visionattn's models only."""
import timm
import timm.models._registry as _registry
import visionattn  # noqa: F401  (registers the families)

_ours = {name for name, fn in _registry._model_entrypoints.items() if fn.__module__.startswith("visionattn.")}
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
'''


def cache_root() -> Path:
    return Path(os.environ.get("VISIONATTN_CACHE", Path.home() / ".cache" / "visionattn"))


def our_modules() -> list:
    """timm's registry names a model's module by the last part of its Python module (``nat``, ``gc_vit``, ...)."""
    import timm.models._registry as registry
    import visionattn  # noqa: F401

    return sorted({
        registry._model_to_module[name] for name, fn in registry._model_entrypoints.items()
        if fn.__module__.startswith("visionattn.")
    })


def prepare(version: str) -> Path:
    """Unpack the sdist's ``tests/test_models.py`` (patched: our modules in FEAT_INTER_FILTERS) and a conftest."""
    target = cache_root() / "timm-tests" / version
    suite = target / "test_models.py"
    if not suite.exists():
        target.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                 f"timm=={version}", "-d", tmp],
                check=True,
            )
            sdist = next(Path(tmp).glob("timm-*.tar.gz"))
            with tarfile.open(sdist) as tar:
                member = tar.getmember(f"timm-{version}/tests/test_models.py")
                with tar.extractfile(member) as src, open(suite.with_suffix(".orig"), "wb") as dst:
                    shutil.copyfileobj(src, dst)
    text = suite.with_suffix(".orig").read_text()
    marker = "FEAT_INTER_FILTERS = ["
    if marker not in text:
        raise RuntimeError(f"timm {version}'s tests/test_models.py has no {marker!r}; update tools/timm_suite.py")
    modules = ", ".join(repr(m) for m in our_modules())
    suite.write_text(text.replace(marker, f"{marker}{modules}, ", 1))
    (target / "conftest.py").write_text(_CONFTEST)
    return target


def main(argv=None) -> int:
    import timm

    argv = list(sys.argv[1:] if argv is None else argv)
    version = re.match(r"[\d.]+", timm.__version__).group(0).rstrip(".")
    target = prepare(version)
    deselect = " and ".join(f"not {name}" for name in DOWNLOAD_TESTS)
    if "-k" in argv:
        i = argv.index("-k")
        argv[i + 1] = f"({argv[i + 1]}) and {deselect}"
    else:
        argv += ["-k", deselect]
    cmd = [sys.executable, "-m", "pytest", str(target / "test_models.py"), "-p", "no:cacheprovider",
           "--rootdir", str(target), "-c", os.devnull, "-W", "ignore::pytest.PytestUnknownMarkWarning", *argv]
    return subprocess.call(cmd, cwd=target)


if __name__ == "__main__":
    sys.exit(main())
