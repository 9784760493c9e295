"""The one rule for inputs that must be files: a regular file (or a symbolic link to one).

A checkpoint, a NIR or netx file, an SHD-layout ``.h5`` file: every command reads them by name
through a library (``torch.load``, ``h5py``, ``nir.read``) that assumes a file. Given anything
else, those libraries misbehave in ways a user cannot tell from a bug:

- a FIFO (named pipe) blocks the reader until some other program writes into it: the command
  hangs until it is killed;
- ``/dev/zero``, ``/dev/urandom`` never end: "read the whole file" fills the memory;
- a socket or block device is never what the user meant.

So every command checks each such input with :func:`check_regular_input` before it opens it:
anything that exists and is neither a regular file nor a folder is one
:class:`NotRegularFileError` (``PATH: not a regular file (a FIFO); give a checkpoint file``).
A missing path or a folder is left to the caller, whose message knows what was expected there.
Our own reads of such files go through :func:`open_input` / :func:`read_head`, which open with
``O_NONBLOCK`` (opening a FIFO never blocks), check what was opened, and read a bounded amount.
"""

from __future__ import annotations

import fcntl
import os
import stat
from pathlib import Path
from typing import BinaryIO

_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"), (stat.S_ISREG, "a regular file"))


class NotRegularFileError(ValueError):
    """An input (or output) exists but is not a regular file: a FIFO, a device, a socket. The
    message is one line naming the path, what it is and what to give instead."""


def kind_of(mode: int) -> str:
    """What an ``st_mode`` is, in words (``a FIFO``, ``a character device``, ...)."""
    return next((name for test, name in _KINDS if test(mode)), "not a file")


def special_kind(path: str | os.PathLike) -> str | None:
    """What ``path`` is (following symbolic links) when it exists and is neither a regular file
    nor a folder, e.g. ``a FIFO``; ``None`` otherwise (also when it does not exist or cannot be
    looked at: the caller's open then says why)."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    return kind_of(mode)


def not_regular_message(path: str | os.PathLike, kind: str, what: str = "file") -> str:
    """The one line that refuses ``path``."""
    return f"{path}: not a regular file ({kind}); give a {what}"


def check_regular_input(path: str | os.PathLike, what: str = "file") -> Path:
    """Refuse ``path`` if it exists and is neither a regular file nor a folder (``what``: how
    the message names the file to give instead, e.g. ``"checkpoint file"``). Nothing is opened,
    so a FIFO cannot block. Returns ``path`` as a :class:`Path`; raises
    :class:`NotRegularFileError`."""
    kind = special_kind(path)
    if kind is not None:
        raise NotRegularFileError(not_regular_message(path, kind, what))
    return Path(path)


def open_input(path: str | os.PathLike, what: str = "file") -> BinaryIO:
    """Open ``path`` for reading, refusing anything but a regular file (a folder too) with
    :class:`NotRegularFileError`. Opened with ``O_NONBLOCK`` and checked on the open descriptor,
    so neither a FIFO nor a file swapped in after a check can block or feed an endless stream.
    ``OSError`` (missing, no permission) passes through."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(not_regular_message(path, kind_of(mode), what))
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_head(path: str | os.PathLike, n: int, what: str = "file") -> bytes:
    """At most the first ``n`` bytes of the regular file ``path`` (see :func:`open_input`)."""
    with open_input(path, what) as f:
        return f.read(n)


def read_text(path: str | os.PathLike, limit: int = 1 << 26, what: str = "file") -> str:
    """A regular file's text (UTF-8), at most ``limit`` bytes of it (more is an ``OSError``,
    like an unreadable file: a small file of our own that grew endless is not read on)."""
    data = read_head(path, limit + 1, what)
    if len(data) > limit:
        raise OSError(f"{path}: larger than {limit} bytes")
    return data.decode()
