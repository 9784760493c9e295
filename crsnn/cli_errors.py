"""How every crsnn command ends: one line on stderr and an exit status, no traceback for a
user's mistake or a signal, and no process of the command left running.

:func:`run_command` wraps a command's body:

- SIGINT, SIGTERM and SIGHUP raise :class:`Interrupted` (a ``KeyboardInterrupt``) in the main
  thread, so ``finally`` blocks run: the Lava watchdog ends its whole process group, worker pools
  are terminated, temporary files are removed. The command prints ``PROG: interrupted by
  SIGTERM`` and exits with ``128 + signal number``: 130 (SIGINT), 143 (SIGTERM), 129 (SIGHUP).
  A second signal while that cleanup runs (at most ~2 s) is ignored.
- Processes forked while the handlers are active (Lava workers, data workers) get the default
  signal actions back, so they never run a handler meant for the command.
- User errors (the exception types a command names, :class:`~crsnn.atomic_write.WriteError` and
  :class:`~crsnn.input_files.NotRegularFileError`) print ``PROG: error: MESSAGE`` (first line
  only) and exit 2. Errors carrying ``details`` (a Lava worker's traceback) print them only when
  ``CRSNN_DEBUG=1``.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

from crsnn.atomic_write import WriteError
from crsnn.input_files import NotRegularFileError

SIGNALS = tuple(s for s in (getattr(signal, n, None) for n in ("SIGINT", "SIGTERM", "SIGHUP")) if s is not None)


class Interrupted(KeyboardInterrupt):
    """A signal asked the command to stop. ``exit_status`` = 128 + the signal number;
    ``detail``: an optional sentence added to the one-line message (e.g. how to resume)."""

    def __init__(self, signum: int, detail: str = "") -> None:
        super().__init__(signum)
        self.signum = int(signum)
        self.detail = detail

    @property
    def name(self) -> str:
        try:
            return signal.Signals(self.signum).name
        except ValueError:  # pragma: no cover
            return f"signal {self.signum}"

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


_previous: dict[int, object] = {}  # signal -> the handler ours replaced, while ours are installed
_caught: list[float] = []  # time of the first signal
_fork_hook = False
CLEANUP_S = 5.0  # a repeated signal later than this after the first one ends the process at once


def _raise(signum: int, frame: object) -> None:
    if _caught:
        if time.monotonic() - _caught[0] < CLEANUP_S:
            return  # cleaning up after the first signal: that ends within ~2 s anyway
        signal.signal(signum, signal.SIG_DFL)  # the first one was swallowed somewhere: stop now
        os.kill(os.getpid(), signum)
        return
    _caught.append(time.monotonic())
    raise Interrupted(signum)


def _default_in_child() -> None:
    """After a fork: the child (a Lava or data worker) gets the default actions back."""
    if _previous:
        for s in list(_previous):
            try:
                signal.signal(s, signal.SIG_DFL)
            except (ValueError, OSError):  # pragma: no cover
                pass
        _previous.clear()
        _caught.clear()


@contextmanager
def signals_raise() -> Iterator[None]:
    """While active (main thread only), SIGINT/SIGTERM/SIGHUP raise :class:`Interrupted`."""
    global _fork_hook
    if threading.current_thread() is not threading.main_thread() or _previous:
        yield
        return
    if not _fork_hook and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_default_in_child)
        _fork_hook = True
    _caught.clear()
    for s in SIGNALS:
        _previous[s] = signal.signal(s, _raise)
    try:
        yield
    finally:
        for s, h in list(_previous.items()):
            signal.signal(s, h if h is not None else signal.SIG_DFL)
        _previous.clear()
        _caught.clear()


def one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def run_command(prog: str, body: Callable[[], int], user_errors: tuple[type[BaseException], ...] = (),
                failures: tuple[type[BaseException], ...] = ()) -> int:
    """Run ``body()`` (returns the exit status) with the rules of this module. ``user_errors``:
    exception types that are the user's to fix (exit 2); ``failures``: other expected failures
    (e.g. Lava failed; one line, exit 1)."""
    with signals_raise():
        try:
            return body()
        except Interrupted as e:
            _flush_quietly()
            detail = f"; {e.detail}" if e.detail else ""
            print(f"{prog}: interrupted by {e.name}{detail}", file=sys.stderr)
            return e.exit_status
        except KeyboardInterrupt:
            _flush_quietly()
            print(f"{prog}: interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:  # stdout closed early (e.g. piped into head): stop quietly
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
            except (OSError, ValueError):
                pass
            return 128 + getattr(signal, "SIGPIPE", 13)
        except (WriteError, NotRegularFileError, *user_errors) as e:
            _flush_quietly()
            print(f"{prog}: error: {one_line(e)}", file=sys.stderr)
            return 2
        except failures as e:
            _flush_quietly()
            print(f"{prog}: error: {one_line(e)}", file=sys.stderr)
            details = getattr(e, "details", "")
            if details and os.environ.get("CRSNN_DEBUG"):
                print(details, file=sys.stderr)
            return 1


def _flush_quietly() -> None:
    """Close open progress bars (so the message starts on a clean line) and flush stdout."""
    tqdm_module = sys.modules.get("tqdm")
    if tqdm_module is not None:
        for bar in list(getattr(tqdm_module.tqdm, "_instances", ())):
            try:
                bar.leave = False
                bar.close()
            except Exception:  # noqa: BLE001 - a progress bar must never hide the message
                pass
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
