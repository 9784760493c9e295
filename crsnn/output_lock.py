"""One run per output: a lock that a second command writing the same files finds held.

Two trainings with the same ``--out`` would both write the checkpoint, its per-epoch twin and its
log every epoch, both exit 0, and one run would be silently lost. :func:`output_lock` makes the
second one stop at start with one line that names the first (pid, host, start time, command).

How: next to each output ``NAME`` a hidden lock file ``.NAME.lock`` is held with
``flock(LOCK_EX | LOCK_NB)``. The kernel releases such a lock when its process ends in any way
(SIGKILL and crashes included), so a lock file left behind by a killed run never blocks the next
one; the next run takes it over. The holder writes who it is into the file, for the refusal. On
an ordinary end (an error and a signal too) the lock files are removed while still held; a run
that finds the file it locked removed or replaced meanwhile locks the new one instead, so two
runs can never both hold an output.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import stat
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from crsnn.atomic_write import WriteError
from crsnn.input_files import kind_of, read_head

_INFO_BYTES = 1 << 14  # a holder's description is far smaller; more is not read


class OutputLockedError(WriteError):
    """Another running command holds an output's lock (one line naming it)."""


def lock_path_for(path: str | os.PathLike) -> Path:
    """The lock file of output ``path``: ``.NAME.lock`` next to it."""
    p = Path(path)
    return p.with_name(f".{p.name}.lock")


def _holder(lock: Path) -> str:
    """Who holds ``lock``, in words (from what the holder wrote into it)."""
    for _ in range(20):  # the holder writes its description right after taking the lock
        try:
            info = json.loads(read_head(lock, _INFO_BYTES).decode() or "null")
        except (OSError, ValueError):
            info = None
        if isinstance(info, dict):
            command = str(info.get("command", "?"))
            command = command if len(command) <= 300 else command[:297] + "..."
            return (f"pid {info.get('pid', '?')} on {info.get('host', '?')}, started {info.get('started', '?')}: "
                    f"{command}")
        time.sleep(0.05)
    return f"a process that has not said who it is (lock file {lock})"


def _take(lock: Path) -> int | None:
    """A descriptor holding the lock of ``lock``, or None when another process holds it."""
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        except OSError as e:
            why = "it is a symbolic link" if e.errno == errno.ELOOP else (e.strerror or str(e))
            raise WriteError(e.errno, f"cannot lock {lock}: {why}; remove it or choose another output") from None
        try:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                raise WriteError(errno.EEXIST, f"cannot lock {lock}: not a regular file ({kind_of(mode)}); remove it "
                                               "or choose another output")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return None
            try:  # its previous holder may have removed it between our open and our lock
                now = os.stat(lock, follow_symlinks=False)
                here = os.fstat(fd)
                if (now.st_dev, now.st_ino) == (here.st_dev, here.st_ino):
                    return fd
            except FileNotFoundError:
                pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # locked a removed file: lock the one that is there now


def _describe(fd: int, command: str) -> None:
    info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "command": command}
    data = (json.dumps(info) + "\n").encode()
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
    except OSError:  # a full disk: the lock still holds, the refusal then names no holder
        pass


def _release(held: list[tuple[Path, int]]) -> None:
    for lock, fd in reversed(held):
        try:
            os.unlink(lock)  # while still holding it: see _take
        except OSError:
            pass
        os.close(fd)


@contextmanager
def output_lock(outputs: Iterable[str | os.PathLike], command: str, option: str = "--out") -> Iterator[None]:
    """Hold the locks of every path in ``outputs`` for the block (their folders must exist).

    ``command``: how the refusal of a second run names this one (e.g. ``crsnn-train --data ...``);
    ``option``: the option the refusal advises to change. Raises :class:`OutputLockedError` (one
    line naming the holder: pid, host, start time, command) when another process holds one of
    them; then none is held."""
    held: list[tuple[Path, int]] = []
    try:
        for out in outputs:
            lock = lock_path_for(out)
            fd = _take(lock)
            if fd is None:
                raise OutputLockedError(errno.EBUSY, f"{out} is being written by another run ({_holder(lock)}); "
                                                     f"wait for it to end or stop it, or choose another {option}")
            held.append((lock, fd))
            _describe(fd, command)
        yield
    finally:
        _release(held)

