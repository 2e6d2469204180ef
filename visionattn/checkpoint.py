"""Checkpoint files: loading never runs code from a file unless the user opts in; saving never leaves a torn file.

Loading (:func:`load_checkpoint_file`, the one place every visionattn loader goes through):

- ``.safetensors`` files hold only tensors and are read with ``safetensors``.
- ``.pth`` / ``.pth.tar`` / ``.bin`` files are pickles. They are read with ``torch.load(weights_only=True)``, which
  rebuilds tensors, numbers, strings and containers but refuses to call anything the file names. The few harmless
  types that timm's, mmengine's and the official training scripts pickle beside the weights are allow-listed
  (:data:`SAFE_GLOBALS`): ``argparse.Namespace`` (timm's ``CheckpointSaver``, DeiT-style ``args``), numpy scalars,
  arrays and dtypes (written by numpy 1.x or 2.x), ``pathlib`` paths (rebuilt as pure paths), and yacs' ``CfgNode``
  (the ``config`` entry of Swin-style checkpoints such as Agent attention's, rebuilt as a plain ``OrderedDict``
  without importing yacs).
- A file that pickles anything else is refused with :class:`UntrustedCheckpointError`, which names the offending
  globals and the opt-in. With the opt-in (``trust_checkpoint=True``, the :func:`trusted_checkpoints` context,
  ``VISIONATTN_TRUST_CHECKPOINT=1``, or ``--trust-checkpoint`` on the tools) the full pickle load happens, with a
  warning. There is no silent fallback.
- :func:`route_timm_loading` (run on ``import visionattn``) sends timm's own loaders through the same policy:
  ``timm.create_model(..., pretrained=True)`` from a URL, the Hugging Face hub or
  ``pretrained_cfg_overlay=dict(file=...)``, ``timm.models.load_checkpoint`` and ``CheckpointSaver`` resume.
  :mod:`visionattn.mm.serialization` does the same for mmengine's ``CheckpointLoader``.

Saving (:func:`atomic_write`, :func:`save_checkpoint_file`, :class:`SafeCheckpointSaver`): write a temporary file in
the target's directory, flush and fsync it, ``os.replace`` it onto the target and fsync the directory, so a reader
(or a run resumed after ``kill -9`` or a power cut) sees the old file or the new one, never half of one.
"""
from __future__ import annotations

import argparse
import contextlib
import contextvars
import csv
import functools
import glob
import io
import logging
import os
import pathlib
import pickle
import random
import re
import shutil
import uuid
import zipfile
from collections import OrderedDict
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from timm.utils import CheckpointSaver

_logger = logging.getLogger(__name__)

TRUST_ENV = "VISIONATTN_TRUST_CHECKPOINT"
_TRUE = ("1", "true", "yes", "y", "on")
_TRUST: contextvars.ContextVar[Optional[bool]] = contextvars.ContextVar("visionattn_trust_checkpoint", default=None)

PathLike = Union[str, "os.PathLike[str]"]

__all__ = [
    "TRUST_ENV", "SAFE_GLOBALS", "UntrustedCheckpointError", "CheckpointReadError", "load_checkpoint_file",
    "trusted_checkpoints", "checkpoint_is_trusted", "download_checkpoint", "atomic_write", "save_checkpoint_file",
    "verify_checkpoint_file", "remove_stale_temp_files", "SafeCheckpointSaver", "capture_rng_state",
    "restore_rng_state", "newest_good_checkpoint", "resolve_resume", "route_timm_loading",
]


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------

class UntrustedCheckpointError(pickle.UnpicklingError, RuntimeError):
    """A checkpoint pickles something beyond plain data, and the user did not opt in to a full load.

    A ``RuntimeError`` too, like the error timm raises for the same refusal. ``offending`` lists the globals
    (``module.name``) the file asked for.
    """

    def __init__(self, message: str, source: str = "", offending: Sequence[str] = ()):
        super().__init__(message)
        self.source = source
        self.offending = list(offending)


class CheckpointReadError(RuntimeError):
    """A checkpoint file is truncated or corrupt (e.g. written by a run killed in the middle of a save)."""


# --------------------------------------------------------------------------------------------------
# The allow-list
# --------------------------------------------------------------------------------------------------

class _ConfigNodeAsDict:
    """Stand-in for yacs' ``CfgNode`` (a ``dict`` subclass): loads as a plain ``OrderedDict``.

    torch's weights-only unpickler fills only exact ``dict`` / ``OrderedDict`` objects and sets attributes only on
    ``OrderedDict`` and allow-listed classes, so the node is rebuilt as an ``OrderedDict``; yacs' bookkeeping
    (``__immutable__``, ``__deprecated_keys__``, ...) lands in its ``__dict__``. Nothing of yacs is imported or run.
    """

    def __new__(cls, *args, **kwargs):
        return OrderedDict()


def _numpy_globals() -> List[Any]:
    """numpy scalars, arrays and dtypes, under the names numpy 2.x and numpy 1.x pickle them with."""
    core = getattr(np, "_core", None)
    multiarray = getattr(core, "multiarray", None) or np.core.multiarray
    found: List[Any] = [np.ndarray, np.dtype, multiarray._reconstruct, multiarray.scalar]
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):  # files written by numpy 1.x / 2.x
        found += [(multiarray._reconstruct, f"{module}._reconstruct"), (multiarray.scalar, f"{module}.scalar")]
    # numpy >= 1.25 pickles some dtypes by their class (np.dtypes.Float64DType, ...)
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        for name in ("Float64DType", "Float32DType", "Float16DType", "Int64DType", "Int32DType", "Int16DType",
                     "Int8DType", "UInt8DType", "UInt16DType", "UInt32DType", "UInt64DType", "BoolDType"):
            if hasattr(dtypes, name):
                found.append(getattr(dtypes, name))
    return found


def _path_globals() -> List[Any]:
    # Concrete paths are rebuilt as pure paths: same parts, no file system access, and a WindowsPath pickled on
    # Windows still loads on Linux (and vice versa).
    found: List[Any] = [pathlib.PurePosixPath, pathlib.PureWindowsPath]
    for module in ("pathlib", "pathlib._local"):
        found += [(pathlib.PurePosixPath, f"{module}.PosixPath"), (pathlib.PureWindowsPath, f"{module}.WindowsPath"),
                  (pathlib.PurePosixPath, f"{module}.PurePosixPath"),
                  (pathlib.PureWindowsPath, f"{module}.PureWindowsPath")]
    return found


#: Plain-data types allowed beside tensors in a weights-only load (torch's own allow-list comes on top).
SAFE_GLOBALS: List[Any] = (
    [argparse.Namespace] + _numpy_globals() + _path_globals() + [(_ConfigNodeAsDict, "yacs.config.CfgNode")]
)


@contextlib.contextmanager
def _allow_safe_globals(extra: Sequence[Any] = ()) -> Iterator[None]:
    # torch's safe_globals context removes its entries on exit, even ones that were registered globally before
    # (visionattn.mm registers mmengine's types for good), so only what is missing is added here.
    present = set(torch.serialization.get_safe_globals())
    missing = [g for g in (*SAFE_GLOBALS, *extra) if g not in present]
    with torch.serialization.safe_globals(missing):
        yield


# --------------------------------------------------------------------------------------------------
# Trust
# --------------------------------------------------------------------------------------------------

def checkpoint_is_trusted(trust_checkpoint: Optional[bool] = None) -> bool:
    """The opt-in in force: the argument, else :func:`trusted_checkpoints`, else ``$VISIONATTN_TRUST_CHECKPOINT``."""
    if trust_checkpoint is not None:
        return bool(trust_checkpoint)
    context = _TRUST.get()
    if context is not None:
        return context
    return os.environ.get(TRUST_ENV, "").strip().lower() in _TRUE


@contextlib.contextmanager
def trusted_checkpoints(trust: Optional[bool] = True) -> Iterator[None]:
    """Within this block, loads that get no explicit ``trust_checkpoint`` follow ``trust`` (None: no change).

    For loads made deep inside other libraries, e.g.
    ``with trusted_checkpoints(): timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=f))``.
    """
    if trust is None:
        yield
        return
    token = _TRUST.set(bool(trust))
    try:
        yield
    finally:
        _TRUST.reset(token)


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------

_UNSAFE_PATTERNS = (
    re.compile(r"GLOBAL (\S+) was not an allowed global"),
    re.compile(r"unsupported GLOBAL (\S+) whose module"),
    re.compile(r"Can only build .* but got <class '([^']+)'>"),
    re.compile(r"Can only create new object .* but got <class '([^']+)'>"),
    re.compile(r"Trying to call reduce for unrecognized function (.+?)(?: which belongs|$)", re.M),
    re.compile(r"Can only (?:SETITEMS?|append) .* but got <class '([^']+)'>"),
)
_CORRUPT_MARKERS = ("PytorchStreamReader", "central directory", "zip archive", "truncated", "unexpected EOF",
                    "invalid load key", "file not found in archive", "Ran out of input", "Unsupported operand",
                    "persistent_load", "failed reading", "could not find", "not a zip file")


def _offending_globals(message: str, scan_path: Optional[str]) -> List[str]:
    names: List[str] = []
    if scan_path is not None and zipfile.is_zipfile(scan_path):
        try:
            with _allow_safe_globals():
                names = list(torch.serialization.get_unsafe_globals_in_checkpoint(scan_path))
        except Exception:  # a static scan is best effort; the unpickler's message below still names one
            names = []
    for pattern in _UNSAFE_PATTERNS:
        for match in pattern.finditer(message):
            name = match.group(1).strip()
            if name not in names:
                names.append(name)
    return names


def _is_unsafe_refusal(message: str) -> bool:
    return any(p.search(message) for p in _UNSAFE_PATTERNS) or " is blocked" in message


def _refusal_message(source: str, offending: Sequence[str]) -> str:
    what = ", ".join(offending) if offending else "objects that are not plain data"
    return (
        f"refusing to load {source}: it pickles {what}, beyond tensors and plain data (numbers, strings, "
        "containers, argparse.Namespace, numpy scalars), and unpickling that could run code from the file.\n"
        "If you trust where the file came from, opt in to a full load: --trust-checkpoint on the visionattn tools, "
        f"trust_checkpoint=True in the API (load_checkpoint_file, VisionAttnBackbone), or {TRUST_ENV}=1 in the "
        "environment (for loads inside timm / mmengine, e.g. pretrained_cfg_overlay=dict(file=...)). "
        "Then re-save only its tensors (tools/convert_checkpoint.py writes .safetensors) so it never needs the "
        "opt-in again. See SECURITY.md."
    )


def _guarded_load(source: str, load: Callable[[bool], Any], trust_checkpoint: Optional[bool],
                  scan_path: Optional[str] = None) -> Any:
    """``load(weights_only=True)`` under the allow-list; on refusal, raise, or ``load(False)`` when trusted."""
    try:
        with _allow_safe_globals():
            return load(True)
    except pickle.UnpicklingError as err:
        message = str(err)
        if _is_unsafe_refusal(message):
            offending = _offending_globals(message, scan_path)
            refusal = _refusal_message(source, offending)
        else:  # not a refused global: a damaged pickle, or pickle opcodes torch's safe unpickler does not know
            offending = []
            detail = [line for line in message.splitlines() if line.strip()]
            refusal = (f"torch's weights-only loader cannot read {source} ({detail[-1] if detail else err!r}): the "
                       "file is damaged, or uses pickle features the safe loader does not support. "
                       + _refusal_message(source, offending).split("\n", 1)[1])
        if not checkpoint_is_trusted(trust_checkpoint):
            raise UntrustedCheckpointError(refusal, source, offending) from None
        _logger.warning("loading %s with a full pickle load (weights_only=False) because you trust it "
                        "(--trust-checkpoint / trust_checkpoint=True / %s=1); it pickles %s", source, TRUST_ENV,
                        ", ".join(offending) or "non-plain objects")
        return load(False)


def _looks_corrupt(err: BaseException) -> bool:
    return isinstance(err, (EOFError, zipfile.BadZipFile)) or any(m in str(err) for m in _CORRUPT_MARKERS)


def load_checkpoint_file(path: PathLike, map_location: Union[str, torch.device] = "cpu", *,
                         trust_checkpoint: Optional[bool] = None, mmap: bool = False) -> Any:
    """Load a ``.safetensors``, ``.pth``, ``.pth.tar`` or ``.bin`` checkpoint without running code from it.

    Args:
        path: the file.
        map_location: as in ``torch.load``.
        trust_checkpoint: True allows a full pickle load (with a warning) when the file needs more than the
            allow-list; False never does; None (default) follows :func:`trusted_checkpoints` or
            ``$VISIONATTN_TRUST_CHECKPOINT``.
        mmap: memory-map the tensors (zip checkpoints only): cheap reads of the non-tensor entries.

    Raises:
        FileNotFoundError: no such file.
        UntrustedCheckpointError: the file pickles a global outside the allow-list (named in the message).
        CheckpointReadError: the file is truncated or corrupt.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        try:
            return load_file(path, device=str(map_location))
        except Exception as err:  # safetensors_rust.SafetensorError, OSError
            raise CheckpointReadError(f"{path} is not a readable .safetensors file: {err}") from err
    use_mmap = bool(mmap) and zipfile.is_zipfile(path)

    def load(weights_only: bool) -> Any:
        return torch.load(path, map_location=map_location, weights_only=weights_only, mmap=use_mmap)

    try:
        return _guarded_load(path, load, trust_checkpoint, scan_path=path)
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as err:
        if isinstance(err, (UntrustedCheckpointError, CheckpointReadError)) or not _looks_corrupt(err):
            raise
        raise CheckpointReadError(f"{path} is not a readable checkpoint (truncated or corrupt?): "
                                  f"{str(err) or type(err).__name__}") from err


def verify_checkpoint_file(path: PathLike) -> Optional[str]:
    """None if ``path`` is a complete checkpoint (zip structure and every CRC intact), else the reason it is not.

    Reads the whole file but unpickles nothing. Legacy (non-zip) torch files are only checked for being non-empty.
    """
    path = os.fspath(path)
    try:
        if os.path.getsize(path) == 0:
            return "empty file"
        if path.endswith(".safetensors"):
            from safetensors import safe_open

            with safe_open(path, framework="pt") as f:
                f.keys()
            return None
        if not zipfile.is_zipfile(path):
            with open(path, "rb") as f:
                head = f.read(4)
            # torch's format is a zip archive; one that lost its end (central directory) was cut short
            return "truncated zip archive (no central directory)" if head == b"PK\x03\x04" else None
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
        return None if bad is None else f"corrupt record {bad}"
    except Exception as err:  # BadZipFile, OSError, zlib errors, SafetensorError
        return f"{type(err).__name__}: {err}"


def download_checkpoint(url: str, model_dir: Optional[str] = None, progress: bool = False) -> str:
    """Download ``url`` once into ``model_dir`` (default ``<torch hub dir>/checkpoints``) and return the local path.

    ``torch.hub.download_url_to_file`` writes to a temporary file and renames it, so an interrupted download never
    leaves a file that looks complete. Load the result with :func:`load_checkpoint_file`.
    """
    from urllib.parse import urlparse

    model_dir = model_dir or os.path.join(torch.hub.get_dir(), "checkpoints")
    os.makedirs(model_dir, exist_ok=True)
    local = os.path.join(model_dir, os.path.basename(urlparse(url).path))
    if not os.path.isfile(local):
        _logger.info("downloading %s to %s", url, local)
        torch.hub.download_url_to_file(url, local, progress=progress)
    return local


# --------------------------------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------------------------------

def _fsync_directory(directory: str) -> None:
    if os.name == "nt":  # directories cannot be opened for fsync on Windows; os.replace is atomic there
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temp_name(path: str) -> str:
    directory, name = os.path.split(path)
    return os.path.join(directory, f".{name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")


def _is_our_temp(name: str) -> bool:
    return bool(re.fullmatch(r"\..+\.\d+-[0-9a-f]{8}\.tmp", name))


def atomic_write(path: PathLike, write: Callable[[io.BufferedWriter], None]) -> None:
    """Write ``path`` through ``write(file)`` so that it is never seen half-written.

    The data goes to a temporary file in the same directory (same file system, permissions from the umask), is
    flushed and fsynced, replaces ``path`` with ``os.replace`` (atomic), and the directory is fsynced so the
    rename survives a power cut. On any error the temporary file is removed and ``path`` is untouched.
    """
    path = os.path.abspath(os.fspath(path))
    directory = os.path.dirname(path)
    tmp = _temp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_directory(directory)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def save_checkpoint_file(obj: Any, path: PathLike) -> None:
    """``torch.save(obj, path)`` (or safetensors for ``.safetensors``), atomically (see :func:`atomic_write`)."""
    path = os.fspath(path)
    if path.endswith(".safetensors"):
        from safetensors.torch import save as save_bytes

        data = save_bytes(obj)
        atomic_write(path, lambda f: f.write(data))
    else:
        atomic_write(path, lambda f: torch.save(obj, f))


def _fsync_file(path: str) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def remove_stale_temp_files(directory: PathLike) -> List[str]:
    """Delete the temporary files a killed save left in ``directory`` (ours, and timm's ``tmp.pth.tar``)."""
    removed = []
    for entry in os.scandir(directory):
        if entry.is_file() and (_is_our_temp(entry.name) or entry.name in ("tmp.pth.tar", "recovery_tmp.pth.tar")):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed.append(entry.path)
    if removed:
        _logger.info("removed %d temporary file(s) left by an interrupted save: %s", len(removed),
                     ", ".join(os.path.basename(p) for p in removed))
    return removed


# --------------------------------------------------------------------------------------------------
# RNG state: a resumed run draws the same data order and augmentations as an uninterrupted one
# --------------------------------------------------------------------------------------------------

def capture_rng_state() -> Dict[str, Any]:
    """torch (CPU and CUDA), numpy and ``random`` generator states, as tensors and plain Python values only."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: Dict[str, Any] = dict(torch=torch.get_rng_state(), numpy=[name, keys.tolist(), pos, has_gauss, cached],
                                 python=random.getstate())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Optional[Dict[str, Any]]) -> bool:
    """Set the generators to a :func:`capture_rng_state` result; False (nothing changed) for None."""
    if not state:
        return False
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if state.get("cuda") is not None and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
    return True


# --------------------------------------------------------------------------------------------------
# timm's CheckpointSaver, atomic and resumable
# --------------------------------------------------------------------------------------------------

def _non_finite(module: Optional[torch.nn.Module]) -> List[str]:
    if module is None:
        return []
    module = getattr(module, "module", module)  # ModelEmaV3 / DDP hold the model in .module
    return [name for name, tensor in module.state_dict().items()
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]


class SafeCheckpointSaver(CheckpointSaver):
    """timm's ``CheckpointSaver`` whose files are never torn, never hold NaN weights, and carry the RNG state.

    - ``tmp.pth.tar`` is fsynced before it replaces ``last.pth.tar``; ``last`` is replaced with one atomic
      ``os.replace`` (timm unlinks it first, which leaves no ``last`` at all if the process dies in between);
      ``checkpoint-N`` / ``model_best`` are hard links (or copies) made under a temporary name and renamed into
      place; the directory is fsynced after each rename.
    - A save of non-finite weights raises ``FloatingPointError`` instead of writing them.
    - The bookkeeping dict timm stores under ``'saver'`` also holds the RNG state at the save
      (:func:`capture_rng_state`), which :func:`restore_rng_state` puts back on resume.
    """

    def _save(self, save_path, epoch, metric=None):
        bad = _non_finite(self.model) or _non_finite(self.model_ema)
        if bad:
            raise FloatingPointError(
                f"refusing to save epoch {epoch}: {len(bad)} weight tensor(s) are not finite ({', '.join(bad[:4])}"
                f"{', ...' if len(bad) > 4 else ''}); the previous checkpoint is kept. Lower --lr, turn --amp off "
                "or use --clip-grad.")
        super()._save(save_path, epoch, metric)  # timm writes a temporary file (tmp.pth.tar) itself
        _fsync_file(save_path)

    def _replace(self, src, dst):
        os.replace(src, dst)
        _fsync_directory(os.path.dirname(os.path.abspath(dst)))

    def _duplicate(self, src, dst):
        tmp = _temp_name(os.path.abspath(dst))
        try:
            if self.can_hardlink:
                try:
                    os.link(src, tmp)
                except (OSError, NotImplementedError):
                    self.can_hardlink = False
            if not self.can_hardlink:
                shutil.copy2(src, tmp)
                _fsync_file(tmp)
            os.replace(tmp, dst)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _fsync_directory(os.path.dirname(os.path.abspath(dst)))

    def state_dict(self, epoch=None, metric=None):
        state = super().state_dict(epoch, metric)
        state["rng_state"] = capture_rng_state()
        return state

    def continue_run(self, resume_path: Optional[str], start_epoch: int) -> bool:
        """When ``resume_path`` lies in this saver's folder, carry on that run: restore the checkpoint history and
        best metric, drop ``summary.csv`` rows of epochs that will be run again, and delete temporary files a killed
        save left behind. Returns whether the run folder is being continued."""
        if not resume_path:
            return False
        folder = os.path.abspath(self.checkpoint_dir)
        if os.path.dirname(os.path.abspath(resume_path)) != folder:
            return False
        remove_stale_temp_files(folder)
        self.load_state_dict_from_checkpoint(resume_path)
        summary = os.path.join(folder, "summary.csv")
        if os.path.isfile(summary):
            with open(summary, newline="") as f:
                rows = list(csv.reader(f))
            kept = rows[:1] + [r for r in rows[1:] if r and r[0].isdigit() and int(r[0]) < start_epoch]
            if len(kept) != len(rows):
                text = io.StringIO()
                csv.writer(text).writerows(kept)
                atomic_write(summary, lambda f: f.write(text.getvalue().encode()))
                _logger.info("summary.csv: dropped %d row(s) of epochs >= %d, which run again", len(rows) - len(kept),
                             start_epoch)
        return True


# --------------------------------------------------------------------------------------------------
# Finding the checkpoint to resume from
# --------------------------------------------------------------------------------------------------

_RESUMABLE = ("last.pth.tar", "checkpoint-*.pth.tar")


def newest_good_checkpoint(run_dir: PathLike) -> Optional[str]:
    """The training checkpoint in a timm run folder with the highest epoch that reads back completely.

    Candidates are ``last.pth.tar`` and ``checkpoint-N.pth.tar``; a truncated or corrupt one (a save cut short) is
    skipped with a message. Returns None if there is none.
    """
    run_dir = os.fspath(run_dir)
    found = []
    for pattern in _RESUMABLE:
        for path in glob.glob(os.path.join(glob.escape(run_dir), pattern)):
            try:
                meta = load_checkpoint_file(path, mmap=True)
            except (CheckpointReadError, UntrustedCheckpointError, OSError) as err:
                _logger.warning("not resuming from %s: %s", path, str(err).splitlines()[0])
                continue
            if not isinstance(meta, dict) or "epoch" not in meta or "state_dict" not in meta:
                continue
            found.append((int(meta["epoch"]), os.path.getmtime(path), path))
            del meta
    for epoch, _, path in sorted(found, reverse=True):
        problem = verify_checkpoint_file(path)
        if problem is None:
            return path
        _logger.warning("not resuming from %s (epoch %d): %s", path, epoch, problem)
    return None


def _run_folders(output: str, model: Optional[str]) -> List[str]:
    """Run folders under ``output``, newest checkpoint first, restricted to ``model`` when their args.yaml says."""
    import yaml

    runs = []
    for entry in glob.glob(os.path.join(glob.escape(output), "*", "last.pth.tar")):
        folder = os.path.dirname(entry)
        if model is not None and os.path.isfile(os.path.join(folder, "args.yaml")):
            try:
                with open(os.path.join(folder, "args.yaml")) as f:
                    saved = yaml.safe_load(f) or {}
                if saved.get("model") not in (None, model):
                    continue
            except (OSError, yaml.YAMLError):
                pass
        runs.append((os.path.getmtime(entry), folder))
    return [folder for _, folder in sorted(runs, reverse=True)]


def resolve_resume(resume: str, output: str, experiment: str = "", model: Optional[str] = None
                   ) -> Tuple[str, Optional[str]]:
    """Turn a ``--resume`` value into ``(checkpoint file or '', run folder to keep writing in or None)``.

    - ``'auto'``: the newest good checkpoint (:func:`newest_good_checkpoint`) of ``output/experiment`` if an
      experiment name is given, else of the newest run folder under ``output`` trained with ``model``. If there is
      none, training starts fresh (in ``output/experiment`` when named), so the same command line both starts and
      continues a run.
    - a run folder: its newest good checkpoint, and training continues in that folder.
    - a file: that checkpoint; the run folder is chosen as for a new run (timm's behaviour).
    """
    if not resume:
        return "", None
    if resume == "auto":
        folders = [os.path.join(output, experiment)] if experiment else _run_folders(output, model)
        for folder in folders:
            if os.path.isdir(folder):
                path = newest_good_checkpoint(folder)
                if path is not None:
                    _logger.info("--resume auto: continuing %s from %s", folder, os.path.basename(path))
                    return path, folder
        where = os.path.join(output, experiment) if experiment else output
        _logger.info("--resume auto: no checkpoint to resume in %s; starting a new run", where)
        return "", (os.path.join(output, experiment) if experiment else None)
    if os.path.isdir(resume):
        path = newest_good_checkpoint(resume)
        if path is None:
            raise ValueError(f"--resume {resume!r}: no readable training checkpoint (last.pth.tar, "
                             "checkpoint-N.pth.tar) in this folder")
        return path, os.path.abspath(resume)
    if os.path.isfile(resume):
        return resume, None
    raise ValueError(f"--resume {resume!r} is not a checkpoint file, a run folder or 'auto'")


# --------------------------------------------------------------------------------------------------
# timm's loaders through the same policy
# --------------------------------------------------------------------------------------------------

_ROUTED: Dict[str, Any] = {}


def _routed_torch_load(original: Callable, checkpoint_path, map_location="cpu", weights_only=True, mmap=False):
    if not weights_only or not isinstance(checkpoint_path, (str, os.PathLike)):
        # a caller of timm's API asked for a full load explicitly (weights_only=False), or passed a file object
        return original(checkpoint_path, map_location=map_location, weights_only=weights_only, mmap=mmap)
    return load_checkpoint_file(checkpoint_path, map_location=map_location, mmap=mmap)


def _routed_load_from_url(original: Callable, url, *args, **kwargs):
    if kwargs.get("weights_only", True) is False:
        return original(url, *args, **kwargs)

    def load(weights_only: bool):
        return original(url, *args, **dict(kwargs, weights_only=weights_only))

    return _guarded_load(str(url), load, None)


def route_timm_loading() -> bool:
    """Send timm's weights-only loads through :func:`load_checkpoint_file`'s policy (idempotent).

    Covers ``timm.models._helpers._torch_load`` (``load_state_dict`` / ``load_checkpoint`` /
    ``resume_checkpoint``, ``pretrained_cfg_overlay=dict(file=...)``, ``CheckpointSaver`` resume), its copy in
    ``timm.models._hub`` (Hugging Face hub weights) and ``load_state_dict_from_url`` in ``timm.models._builder``
    (pretrained URLs). timm 1.0.31 already loads these with ``weights_only=True``; routing adds the allow-list,
    the error naming the offending globals and the opt-in. Calls that pass ``weights_only=False`` to timm keep
    timm's behaviour. Returns False (and changes nothing) if timm's internals are not the expected ones.
    """
    if _ROUTED:
        return True
    import inspect

    try:
        from timm.models import _builder, _helpers, _hub
    except ImportError:
        return False
    original = getattr(_helpers, "_torch_load", None)
    url_loader = getattr(_builder, "load_state_dict_from_url", None)
    if original is None or url_loader is None or \
            list(inspect.signature(original).parameters)[:4] != ["checkpoint_path", "map_location", "weights_only",
                                                                "mmap"]:
        _logger.debug("timm's loaders are not the expected ones; leaving them as they are")
        return False
    routed = functools.partial(_routed_torch_load, original)
    functools.update_wrapper(routed, original)
    _helpers._torch_load = routed
    if getattr(_hub, "_torch_load", None) is original:
        _hub._torch_load = routed
    routed_url = functools.partial(_routed_load_from_url, url_loader)
    functools.update_wrapper(routed_url, url_loader)
    _builder.load_state_dict_from_url = routed_url
    _ROUTED.update(torch_load=original, load_state_dict_from_url=url_loader)
    return True
