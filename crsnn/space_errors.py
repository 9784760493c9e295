"""One-line errors for writes that fail for lack of room: a full disk (ENOSPC), a quota
(EDQUOT) or the file-size limit (EFBIG, ``ulimit -f``; Python ignores SIGXFSZ, so such a write
fails instead of killing the process).

Used where the failing write is not one of the command's outputs (those go through
:mod:`crsnn.atomic_write`): files a child process writes (Lava's shared memory, the espeak-ng
audio) and the temporary folder. The errors are :class:`~crsnn.atomic_write.WriteError`, so every
command prints them as ``PROG: error: ...`` and exits 2 (the user can make room or raise the limit).
"""

from __future__ import annotations

import errno
import os
import resource

from crsnn.atomic_write import WriteError

#: errno values that mean "no room": the disk, a quota or the file-size limit.
SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def file_size_limit() -> int | None:
    """This process's file-size limit in bytes (the soft ``RLIMIT_FSIZE``), None when unlimited."""
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    except (OSError, ValueError):  # pragma: no cover
        return None
    return None if soft == resource.RLIM_INFINITY else int(soft)


def _size(n: int) -> str:
    return f"{n} bytes" if n < 1024 else f"{n / 1024:.4g} KiB" if n < 1024 ** 2 else f"{n / 1024 ** 2:.4g} MiB"


def space_error(target: str, code: int, elsewhere: str = "write to another folder") -> WriteError:
    """A :class:`WriteError` for a write to ``target`` (a path or a description naming one) that
    failed with ``code`` (one of :data:`SPACE_ERRNOS`): the reason, and what to do -- raise the
    file-size limit (its value is given), free space, or ``elsewhere``."""
    reason = os.strerror(code)
    if code == errno.EFBIG:
        limit = file_size_limit()
        if limit is not None:
            return WriteError(code, f"cannot write {target}: {reason}: the file-size limit (ulimit -f) is "
                                    f"{_size(limit)}; raise it (e.g. `ulimit -f unlimited`) and run again")
        return WriteError(code, f"cannot write {target}: {reason} for its file system; {elsewhere}")
    return WriteError(code, f"cannot write {target}: {reason}; free some space or {elsewhere}")


def no_temporary_folder(exc: OSError) -> WriteError:
    """The error for :func:`tempfile.gettempdir` finding no usable folder (``exc``, a
    FileNotFoundError): tempfile's probe writes 4 bytes, which a file-size limit below that (e.g.
    ``ulimit -f 0``) refuses in every folder; otherwise no candidate folder is writable."""
    limit = file_size_limit()
    folder = os.environ.get("TMPDIR") or "/tmp"
    if limit is not None and limit < 4:
        return space_error(f"a temporary file in {folder}", errno.EFBIG)
    return WriteError(errno.ENOENT, f"cannot write a temporary file: {exc.strerror or exc}; "
                                    "set TMPDIR to a folder you can write to")
