"""The one way crsnn writes files: check the path before the work starts, then write to a
temporary file in the target folder and rename it onto the target.

- :func:`check_writable` is called by every command on every output path before any work: a
  missing or read-only folder, a folder that is a file, a target that is a folder, a target that
  is not a regular file (a FIFO, a device, a link to one: renaming onto it would replace it) or a
  target that is one of the command's own inputs is one :class:`WriteError` at start, not after an
  hour of training or a Lava run.
- The writers refuse a target that is not a regular file again right before they rename (all
  targets of :func:`write_together` before the first rename), so such a file placed there during
  the work is left as it is, and so are the other targets.
- :func:`write_bytes_atomic` (and :func:`write_json_atomic`, :func:`save_figure`,
  :func:`write_atomic`) never leave a half-written file: a failure (full disk, file-size limit,
  an exception, a signal) leaves the previous file, or no file, and no temporary file.
- :func:`write_together` replaces several files as one unit (a checkpoint and its log): all are
  written to temporary files first; only when every one succeeded are they renamed, with
  SIGINT/SIGTERM/SIGHUP held back for the few microseconds the renames take.
- New files get the usual mode (``0o666`` minus the umask, like any other program's files); a
  replaced file keeps its mode.

Errors are :class:`WriteError` (an ``OSError``) with one line: what, where and what to do.
"""

from __future__ import annotations

import errno as _errno
import io
import json
import os
import signal
import stat
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator

from crsnn.input_files import special_kind

_SIGNALS = tuple(s for s in (getattr(signal, n, None) for n in ("SIGINT", "SIGTERM", "SIGHUP")) if s is not None)


class WriteError(OSError):
    """An output cannot be written; the message is one line naming the path, the reason and
    what to do (``errno`` is kept)."""

    def __init__(self, code: int | None, message: str) -> None:
        super().__init__(message)
        self.errno = code


def _advice(err: OSError) -> str:
    code = err.errno
    if code in (_errno.ENOSPC, _errno.EDQUOT, _errno.EFBIG):
        return "free some space (or raise the file-size limit) or write to another folder"
    if code in (_errno.EACCES, _errno.EPERM, _errno.EROFS):
        return "choose a folder you can write to"
    return "choose another path"


def _reason(err: OSError) -> str:
    return err.strerror or str(err) or type(err).__name__


def _error(path: Path, err: OSError) -> WriteError:
    if isinstance(err, WriteError):
        return err
    return WriteError(err.errno, f"cannot write {path}: {_reason(err)}; {_advice(err)}")


def _folder(path: Path) -> Path:
    return path.parent if str(path.parent) else Path(".")


def _refuse_special(path: Path) -> None:
    """A :class:`WriteError` when ``path`` exists and is not a regular file or a folder (a FIFO,
    a device, a socket, or a link to one): the rename would replace it (as root: ``/dev/null``)."""
    kind = special_kind(path)
    if kind is not None:
        raise WriteError(_errno.EEXIST, f"cannot write {path}: not a regular file ({kind}); it is left as it is: "
                                        "give the name of a file")


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether ``a`` and ``b`` name the same file: the same device and inode when both exist
    (links, ``..``, hard links), else the same resolved path."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return os.path.realpath(a) == os.path.realpath(b)


def check_not_input(path: str | os.PathLike, inputs: Iterable[str | os.PathLike | None]) -> None:
    """Refuse an output ``path`` that is one of ``inputs`` (``None`` entries are skipped): writing
    it would replace what the command reads (``crsnn-import g.nir g.nir``, a training's ``--out``
    on its own data). Raises :class:`WriteError`."""
    for inp in inputs:
        if inp is not None and same_file(path, inp):
            raise WriteError(_errno.EEXIST, f"cannot write {path}: it is also an input of this command ({inp}); "
                                            "choose another output path")


def check_writable(path: str | os.PathLike, make_parents: bool = False,
                   inputs: Iterable[str | os.PathLike | None] = ()) -> Path:
    """Check that ``path`` can be written (its folder exists -- or, with ``make_parents``, is
    created -- and accepts new files; ``path`` is not a folder, not a FIFO / device / socket or a
    link to one, and not one of the command's ``inputs``). Creates and removes an empty temporary
    file to find out (the only test that works for root, read-only mounts and network file
    systems alike). Returns ``path`` as a :class:`Path`; raises :class:`WriteError`."""
    path = Path(path)
    folder = _folder(path)
    if path.is_dir():
        raise WriteError(_errno.EISDIR, f"cannot write {path}: it is a folder; give a file name")
    _refuse_special(path)
    check_not_input(path, inputs)
    if not folder.is_dir():
        blocker = next((p for p in [folder, *folder.parents] if p.exists()), None)
        if blocker is not None and not blocker.is_dir():
            raise WriteError(_errno.ENOTDIR, f"cannot write {path}: {blocker} is a file, not a folder; "
                                             "choose another path")
        if not make_parents:
            raise WriteError(_errno.ENOENT, f"cannot write {path}: folder {folder} does not exist; "
                                            "create it first or choose another path")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise WriteError(e.errno, f"cannot write {path}: cannot create folder {folder}: {_reason(e)}; "
                                      f"{_advice(e)}") from None
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as e:
        raise _error(path, e) from None
    os.close(fd)
    os.unlink(probe)
    return path


def _umask() -> int:
    try:  # Linux >= 4.7: read it without changing it (os.umask is process-wide and not thread-safe)
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _mode_for(path: Path) -> int:
    """The mode a file written to ``path`` gets: the replaced file's, else 0o666 minus the umask."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~_umask()


@contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP back (delivered when the block ends) in the main thread;
    elsewhere a no-op."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


Content = bytes | bytearray | memoryview | Callable[[BinaryIO], Any]


def _write_temp(path: Path, content: Content) -> str:
    """Write ``content`` to a new temporary file next to ``path``; return its name. On failure
    the temporary file is removed and :class:`WriteError` raised."""
    folder = _folder(path)
    if not folder.is_dir():
        check_writable(path)  # raises the one-line error for a missing / non-folder parent
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as e:
        raise _error(path, e) from None
    try:
        try:
            os.fchmod(fd, _mode_for(path))
            with os.fdopen(fd, "wb") as f:
                if callable(content):
                    content(f)
                else:
                    f.write(content)
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise _error(path, e) from None
    except BaseException:
        _remove(tmp)
        raise
    return tmp


def _remove(tmp: str) -> None:
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass


def write_bytes_atomic(path: str | os.PathLike, content: Content) -> Path:
    """Write ``content`` (bytes, or ``fn(binary_file)`` that writes them) to ``path`` atomically."""
    return write_together([(path, content)])[0]


def write_together(items: Iterable[tuple[str | os.PathLike, Content | None]]) -> list[Path]:
    """Replace several files as one unit. ``items``: ``(path, content)``; content ``None`` removes
    ``path`` (if it exists). Every file is written to a temporary file first; if any write fails,
    nothing is replaced. The renames then run with SIGINT/SIGTERM/SIGHUP held back, so a signal
    cannot leave some files new and others old."""
    items = [(Path(p), c) for p, c in items]
    temps: list[tuple[Path, str | None]] = []
    try:
        for path, _ in items:
            _refuse_special(path)
        for path, content in items:
            temps.append((path, None if content is None else _write_temp(path, content)))
        with signals_held():
            for path, _ in temps:  # again, all of them before the first rename
                _refuse_special(path)
            for path, tmp in temps:
                try:
                    if tmp is None:
                        if path.is_symlink() or path.is_file():
                            os.unlink(path)
                    else:
                        os.replace(tmp, path)
                except OSError as e:
                    raise _error(path, e) from None
    finally:
        for _, tmp in temps:
            if tmp is not None:
                _remove(tmp)
    return [p for p, _ in items]


def write_atomic(path: str | os.PathLike, write: Callable[[str], Any]) -> Path:
    """Call ``write(tmp_path)`` to fill a temporary file next to ``path``, then rename it onto
    ``path`` (for writers that need a file name). Raises :class:`WriteError` (one line) when the
    folder does not exist or the disk is full; other exceptions of ``write`` pass through. The
    temporary file never survives a failure."""
    path = Path(path)
    _refuse_special(path)
    tmp = _write_temp(path, b"")
    try:
        try:
            write(tmp)
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            with signals_held():
                _refuse_special(path)
                os.replace(tmp, path)
        except OSError as e:
            raise _error(path, e) from None
    finally:
        _remove(tmp)
    return path


def json_bytes(obj: Any) -> bytes:
    """``obj`` as indented JSON text (UTF-8, with a final newline)."""
    return (json.dumps(obj, indent=1) + "\n").encode()


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """:func:`write_bytes_atomic` of ``obj`` as indented JSON."""
    return write_bytes_atomic(path, json_bytes(obj))


def figure_bytes(fig: Any, path: str | os.PathLike, **savefig_kwargs: Any) -> bytes:
    """A matplotlib figure rendered in memory, in the format the suffix of ``path`` names (PNG
    when it names none)."""
    fmt = Path(path).suffix.lstrip(".").lower() or "png"
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, **savefig_kwargs)
    return buf.getvalue()


def save_figure(fig: Any, path: str | os.PathLike, **savefig_kwargs: Any) -> Path:
    """``fig.savefig(path)``, atomically."""
    return write_bytes_atomic(path, figure_bytes(fig, path, **savefig_kwargs))


def hdf5_bytes(fill: Callable[[Any], Any], **file_kwargs: Any) -> bytes:
    """An HDF5 file built in memory: ``fill(h5py.File)``, then its bytes. Writing those with
    :func:`write_bytes_atomic` keeps HDF5 away from the disk: a full disk is one ``OSError`` in
    our own write, never a failure inside the HDF5 library (which prints error stacks and can
    crash when its writes fail)."""
    import h5py

    buf = io.BytesIO()
    with h5py.File(buf, "w", **file_kwargs) as f:
        fill(f)
    return buf.getvalue()
