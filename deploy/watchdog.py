"""Run a function in a forked child process with a time limit.

Lava hangs instead of failing on some errors (an exception inside a ProcessModel before its port
send blocks the run, and ``stop()`` can then block too). Running the whole Lava job in a child
process that leads its own process group lets us kill the job *and* Lava's worker processes when
the limit passes, and report a clear error instead of hanging.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import traceback
from typing import Any, Callable


class LavaTimeoutError(TimeoutError):
    """The Lava job did not finish within its time limit (it was killed)."""


class LavaRunError(RuntimeError):
    """The Lava job raised; the message carries the child's traceback."""


def _child(conn, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
    os.setsid()  # own process group: Lava's workers (forked from here) die with it
    try:
        conn.send(("ok", fn(*args, **kwargs)))
    except BaseException as exc:  # noqa: BLE001 - everything is reported to the parent
        conn.send(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
    finally:
        conn.close()


def run_with_timeout(fn: Callable[..., Any], *args: Any, timeout_s: float = 600.0, what: str = "Lava run",
                     **kwargs: Any) -> Any:
    """Call ``fn(*args, **kwargs)`` in a forked child; return its (picklable) result.

    Raises :class:`LavaTimeoutError` after ``timeout_s`` seconds (the child's whole process group
    is killed) and :class:`LavaRunError` if the child raised or died.
    """
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, fn, args, kwargs), daemon=False)
    proc.start()
    child.close()
    try:
        if not parent.poll(timeout_s):
            _kill_group(proc)
            raise LavaTimeoutError(
                f"{what} did not finish within {timeout_s:.0f} s and was stopped. Lava hangs instead of "
                "failing on some invalid parameters; validate the network (IntegerNetwork.validate) "
                "or raise the time limit for very large runs.")
        try:
            status, payload = parent.recv()
        except EOFError:
            raise LavaRunError(f"{what}: the worker process died (exit code {proc.exitcode})") from None
    finally:
        parent.close()
        proc.join(timeout=5)
        if proc.is_alive():
            _kill_group(proc)
    if status == "error":
        raise LavaRunError(f"{what} failed: {payload}")
    return payload


def _kill_group(proc: mp.process.BaseProcess) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.join(timeout=5)
