"""Run a function in a forked child process with a time limit, and never leave it running.

Lava hangs instead of failing on some errors (an exception inside a ProcessModel before its port
send blocks the run, and ``stop()`` can then block too). The whole Lava job therefore runs in a
child process that leads its own process group; Lava's worker processes (forked from it) are in
that group. Whenever the call does not end normally -- time limit, an exception, or a signal to
the command (SIGINT / SIGTERM / SIGHUP arrive as exceptions, see :mod:`crsnn.cli_errors`) -- the
group is sent SIGTERM, given up to :data:`GRACE_S` seconds to go (Python's resource tracker uses
that time to remove Lava's shared memory), then SIGKILL; then the job's temporary folder (every
temporary file of the job goes there) and any shared-memory segment the job created and nobody
removed are deleted. If the parent itself dies without cleaning up (SIGKILL, a crash), the kernel
sends the child SIGTERM (``PR_SET_PDEATHSIG``) and the child ends its group the same way.

A job that cannot write for lack of room -- its shared memory or temporary files past the
file-size limit (``ulimit -f``), a full disk -- ends in :class:`LavaWriteError` (a
:class:`~crsnn.atomic_write.WriteError`: one line naming the limit, exit status 2), and Python's
resource tracker is kept from printing a traceback about it (see
:func:`_unregister_only_registered`).
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import shutil
import signal
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from crsnn.atomic_write import WriteError
from crsnn.space_errors import SPACE_ERRNOS, no_temporary_folder, space_error

GRACE_S = 1.0  # SIGTERM -> SIGKILL
_PR_SET_PDEATHSIG = 1


class LavaTimeoutError(TimeoutError):
    """The Lava job did not finish within its time limit (it was killed)."""


class LavaRunError(RuntimeError):
    """The Lava job raised or died. The message is one line; ``details`` holds the child's
    traceback (printed by the commands with ``CRSNN_DEBUG=1``)."""

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.details = details


class LavaWriteError(WriteError, LavaRunError):
    """The Lava job could not write (its shared memory, its temporary files) for lack of room: a
    full disk or the file-size limit. A user error (the message says what to raise or free), and
    still a :class:`LavaRunError` for callers that catch those; ``details``: the child's traceback."""

    def __init__(self, code: int, message: str, details: str = "") -> None:
        WriteError.__init__(self, code, message)
        self.details = details


def _die_with_parent(parent_pid: int) -> None:
    """Ask the kernel to send this process SIGTERM when its parent ends (Linux); exit now if
    the parent is already gone."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the parent's cleanup is all there is
        pass
    if os.getppid() != parent_pid:
        os._exit(1)


_JOB_TMP = ""  # in the child: its temporary folder


def _end_own_group(signum: int, frame: object) -> None:
    """In the child: a SIGTERM/SIGHUP (from the parent, or the parent's death) ends the whole
    group -- Lava's workers included --, removes the job's shared memory and temporary folder (the
    parent may be gone) and exits."""
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_IGN)
    stop_group(os.getpgid(0), spare=os.getpid())  # the resource tracker finishes once we are gone
    if _JOB_TMP:
        _remove_job_files(_JOB_TMP)
    os._exit(128 + signum)


_SHM_LOG = "shared-memory-names"


def _log_shared_memory(folder: str) -> None:
    """In the child: note the name of every shared-memory segment this job (Lava's message
    channels) creates, before it is created, in ``folder``. A job stopped while it creates them
    can leave segments that Python's resource tracker never heard of; the names let
    :func:`_remove_job_files` remove them."""
    from multiprocessing import shared_memory

    make = getattr(shared_memory, "_make_filename", None)
    if make is None:  # pragma: no cover - another Python
        return
    log = os.path.join(folder, _SHM_LOG)

    def make_and_log() -> str:
        name = make()
        try:
            with open(log, "a") as f:
                f.write(name + "\n")
        except OSError as e:  # e.g. the file-size limit: say which file
            raise OSError(e.errno, e.strerror, log) from None
        _NOT_REGISTERED.add(name)
        return name

    shared_memory._make_filename = make_and_log
    _unregister_only_registered()


_NOT_REGISTERED: set[str] = set()  # in the child: segment names made here and not registered yet


def _unregister_only_registered() -> None:
    """In the child: never tell Python's resource tracker to forget a shared-memory segment it was
    never told about. When sizing a new segment fails (``ftruncate``: EFBIG under a file-size limit,
    ENOSPC), Python 3.11's ``SharedMemory`` unlinks it and unregisters its name before it was ever
    registered; the tracker then prints a ``KeyError`` traceback on the command's stderr. Names made
    by :func:`_log_shared_memory` are held back until they are registered."""
    from multiprocessing import resource_tracker

    register, unregister = resource_tracker.register, resource_tracker.unregister

    def register_once_made(name: str, rtype: str) -> None:
        _NOT_REGISTERED.discard(name)
        register(name, rtype)

    def unregister_if_registered(name: str, rtype: str) -> None:
        if rtype == "shared_memory" and name in _NOT_REGISTERED:
            _NOT_REGISTERED.discard(name)  # never registered: nothing to forget
            return
        unregister(name, rtype)

    resource_tracker.register = register_once_made
    resource_tracker.unregister = unregister_if_registered


def _remove_job_files(folder: str) -> None:
    """Unlink the job's shared-memory segments that still exist, then remove its folder."""
    try:
        names = Path(folder, _SHM_LOG).read_text().split()
    except OSError:
        names = []
    if names:
        from multiprocessing import shared_memory

        for name in names:
            try:
                shared_memory._posixshmem.shm_unlink(name)
            except (OSError, AttributeError):
                pass
    shutil.rmtree(folder, ignore_errors=True)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def _send(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def stop_group(pgid: int, spare: int | None = None, grace_s: float = GRACE_S,
               tracker_s: float | None = None, reap: Callable[[], None] | None = None) -> None:
    """End the processes of group ``pgid`` (all but ``spare``): SIGTERM, repeated every 50 ms (a
    worker forked just as the first one arrived can have lost it), SIGKILL after ``grace_s``.
    Python's resource tracker ignores SIGTERM and removes the job's shared memory once every
    process holding its pipe is gone: with ``tracker_s`` it gets that long to finish before
    SIGKILL; without, it is left to finish on its own (the caller still holds the pipe).
    ``reap()`` runs while waiting (the parent reaps its child there)."""
    deadline = time.monotonic() + grace_s
    tracker_deadline = None
    while True:
        if reap is not None:
            reap()
        members = [p for p in group_members(pgid) if p != spare]
        workers = [p for p in members if "resource_tracker" not in _cmdline(p)]
        now = time.monotonic()
        if workers:
            _send(workers, signal.SIGTERM if now < deadline else signal.SIGKILL)
        elif not members or tracker_s is None:
            return
        else:
            tracker_deadline = tracker_deadline or now + tracker_s
            if now > tracker_deadline:
                _send(members, signal.SIGKILL)
                tracker_s = 0.0
        time.sleep(0.05 if workers else 0.01)


def _default_signals() -> None:
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_DFL)


def _child(conn, fn: Callable[..., Any], args: tuple, kwargs: dict, parent_pid: int, tmp: str) -> None:
    os.setsid()  # own process group (and session): Lava's workers, forked from here, join it
    _die_with_parent(parent_pid)
    # every temporary file of the job (ours, multiprocessing's, Lava's) goes to a folder the parent
    # made and removes: a killed job leaves nothing in the system's temporary folder
    global _JOB_TMP
    os.environ["TMPDIR"] = tempfile.tempdir = _JOB_TMP = tmp
    _log_shared_memory(tmp)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is the parent's to handle
    signal.signal(signal.SIGTERM, _end_own_group)
    signal.signal(signal.SIGHUP, _end_own_group)
    os.register_at_fork(after_in_child=_default_signals)  # Lava's workers: default actions
    # Python's resource tracker (started by Lava's shared memory) warns on stderr about the
    # segments it removes after the group was stopped: that clean-up is intended, not news.
    quiet = "ignore::UserWarning:multiprocessing.resource_tracker"
    os.environ["PYTHONWARNINGS"] = ",".join(filter(None, (os.environ.get("PYTHONWARNINGS"), quiet)))
    try:
        conn.send(("ok", fn(*args, **kwargs)))
    except BaseException as exc:  # noqa: BLE001 - everything is reported to the parent
        text = str(exc).strip().splitlines()
        conn.send(("error", (f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": "),
                             traceback.format_exc(), _no_room(exc))))
    finally:
        conn.close()


_SHARED_MEMORY = "shared memory"


def _no_room(exc: BaseException) -> tuple[int, str] | None:
    """In the child: ``(errno, file)`` when ``exc`` is a write that failed for lack of room (full
    disk, quota, file-size limit); ``file`` is :data:`_SHARED_MEMORY` when sizing a shared-memory
    segment failed, "" when unknown. None for any other exception."""
    if not isinstance(exc, OSError) or exc.errno not in SPACE_ERRNOS:
        return None
    if exc.filename:
        return exc.errno, os.fsdecode(exc.filename)
    frames = traceback.extract_tb(exc.__traceback__)
    in_shm = bool(frames) and Path(frames[-1].filename).name == "shared_memory.py"
    return exc.errno, _SHARED_MEMORY if in_shm else ""


def _write_error(what: str, code: int, file: str, tmp: str, details: str) -> LavaWriteError:
    """The parent's one-line error for a job that ran out of room writing ``file`` (see
    :func:`_no_room`; ``tmp``: the job's temporary folder)."""
    if file == _SHARED_MEMORY:
        target, elsewhere = f"Lava's shared memory in /dev/shm ({what})", "free some shared memory (/dev/shm)"
    elif not file or file == tmp or file.startswith(tmp + os.sep):
        target = f"the temporary files of the {what} in {os.path.dirname(tmp)}"
        elsewhere = "set TMPDIR to a folder with room"
    else:
        target, elsewhere = f"{file} ({what})", "write to another folder"
    err = space_error(target, code, elsewhere)
    return LavaWriteError(code, str(err), details)


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid``, from /proc; without /proc, the
    group id itself while the group has any member."""
    proc = Path("/proc")
    if not proc.is_dir():  # pragma: no cover - not Linux
        try:
            os.killpg(pgid, 0)
            return [pgid]
        except (ProcessLookupError, PermissionError):
            return []
    out = []
    for d in proc.iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 2 and fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            out.append(int(d.name))
    return out


def end_group(proc: mp.process.BaseProcess, grace_s: float = GRACE_S) -> None:
    """End the child ``proc`` and every process of its group (see :func:`stop_group`); reaps the
    child. Returns once nothing of the group runs."""
    pgid = proc.pid
    if pgid is None:
        return
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:  # the child has not called setsid() yet, or the group is gone
        if proc.is_alive():
            try:
                os.kill(pgid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    stop_group(pgid, grace_s=grace_s, tracker_s=1.0, reap=lambda: proc.join(timeout=0))
    proc.join(timeout=1.0)
    if proc.is_alive():  # pragma: no cover - not in its group yet and deaf to SIGTERM
        proc.kill()
        proc.join(timeout=1.0)


def _job_folder() -> str:
    """A new private temporary folder for one job. Unix socket paths of multiprocessing inside it
    (``<folder>/pymp-XXXXXXXX/listener-XXXXXXXX``) must stay below 108 bytes: under a long TMPDIR,
    /tmp is used when it can be."""
    try:
        base = tempfile.gettempdir()
    except FileNotFoundError as e:  # no candidate accepts tempfile's 4-byte probe (e.g. ulimit -f 0)
        raise no_temporary_folder(e) from None
    if len(base) > 60 and os.path.isdir("/tmp") and os.access("/tmp", os.W_OK):
        base = "/tmp"
    try:
        return tempfile.mkdtemp(prefix="crsnn-", dir=base)
    except OSError as e:
        if e.errno in SPACE_ERRNOS:
            raise space_error(f"a temporary folder in {base}", e.errno, "set TMPDIR to a folder with room") from None
        raise


def run_with_timeout(fn: Callable[..., Any], *args: Any, timeout_s: float = 600.0, what: str = "Lava run",
                     **kwargs: Any) -> Any:
    """Call ``fn(*args, **kwargs)`` in a forked child; return its (picklable) result.

    Raises :class:`LavaTimeoutError` after ``timeout_s`` seconds and :class:`LavaRunError` if the
    child raised or died (:class:`LavaWriteError` when it ran out of room to write, and a
    :class:`~crsnn.atomic_write.WriteError` when no temporary folder can be made). However the
    call ends -- including by an exception such as ``KeyboardInterrupt`` raised in this process
    -- the child's whole process group has ended when it returns.
    """
    ctx = mp.get_context("fork")
    tmp = _job_folder()
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, fn, args, kwargs, os.getpid(), tmp), daemon=False)
    try:
        proc.start()
    except BaseException:
        _remove_job_files(tmp)
        raise
    child.close()
    finished = False
    try:
        if not parent.poll(timeout_s):
            raise LavaTimeoutError(
                f"{what} did not finish within {timeout_s:.0f} s and was stopped. Lava hangs instead of "
                "failing on some invalid parameters; validate the network (IntegerNetwork.validate) "
                "or raise the time limit for very large runs.")
        try:
            status, payload = parent.recv()
        except EOFError:
            proc.join(timeout=1.0)
            raise LavaRunError(f"{what}: the worker process died (exit code {proc.exitcode})") from None
        finished = True
    finally:
        parent.close()
        if finished:
            proc.join(timeout=5)  # the child ends by itself once it has sent its result
        if not finished or proc.is_alive() or group_members(proc.pid):
            end_group(proc)
        _remove_job_files(tmp)
    if status == "error":
        message, details, no_room = payload
        if no_room is not None:
            raise _write_error(what, *no_room, tmp, details)
        raise LavaRunError(f"{what} failed: {message}", details)
    return payload
