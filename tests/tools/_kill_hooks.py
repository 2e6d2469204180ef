"""Test-only hooks that stop a tool at a chosen point so the test can SIGKILL it there (no hook lives in the tools).

Run a tool through :func:`run_tool_with_hooks` (``python -c`` driver below). Environment:

- ``KILL_AT=step:N``: after the N-th optimizer step of the process.
- ``KILL_AT=save:N``: inside the N-th ``torch.save``: half of the bytes are written and fsynced, then it hangs
  (a slow save caught in the middle).

At that point the process writes ``KILL_READY`` (a path) and sleeps; the test then kills it with SIGKILL.
"""
import io
import os
import runpy
import sys
import time


def _hang(ready: str) -> None:
    with open(ready, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(3600)


def install() -> None:
    spec = os.environ.get("KILL_AT")
    if not spec:
        return
    import torch
    from torch.optim.optimizer import register_optimizer_step_post_hook

    kind, count = spec.split(":")
    target, seen = int(count), [0]
    ready = os.environ["KILL_READY"]
    if kind == "step":
        def after_step(optimizer, args, kwargs):
            seen[0] += 1
            if seen[0] == target:
                _hang(ready)

        register_optimizer_step_post_hook(after_step)
    elif kind == "save":
        real_save = torch.save

        def slow_save(obj, f, *args, **kwargs):
            seen[0] += 1
            if seen[0] != target:
                return real_save(obj, f, *args, **kwargs)
            buffer = io.BytesIO()
            real_save(obj, buffer, *args, **kwargs)
            data = buffer.getvalue()
            handle = open(f, "wb") if isinstance(f, (str, os.PathLike)) else f
            handle.write(data[: len(data) // 2])
            handle.flush()
            os.fsync(handle.fileno())
            _hang(ready)

        torch.save = slow_save
    else:
        raise ValueError(f"KILL_AT={spec!r}: expected step:N or save:N")


def main() -> None:
    """``python _kill_hooks.py TOOL ARGS...``: install the hooks, then run TOOL as ``__main__``."""
    tool = sys.argv[1]
    install()
    sys.argv = [tool] + sys.argv[2:]
    runpy.run_path(tool, run_name="__main__")


if __name__ == "__main__":
    main()
