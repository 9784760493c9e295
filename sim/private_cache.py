"""A folder of files that crsnn later runs as code (the simulator's compiled loop), trusted only
when nobody but the calling user can have written it.

Loading a library runs its code as the loading user, so whoever can write the file, or the
folder it is in, chooses that code. Hence:

- a folder is used only when it is a real folder (not a symbolic link), belongs to the effective
  user and has no group or other write bit (:func:`open_private_dir`; it creates a missing one,
  and missing folders above it, 0700 whatever the umask);
- a file is used only when it is a regular file (not a symbolic link), belongs to the effective
  user and has no group or other write bit (:func:`open_private_file`);
- every check is made with ``fstat`` on a descriptor opened with ``O_NOFOLLOW``, files are opened
  relative to the folder's descriptor, and a library is loaded through ``/proc/self/fd/N``
  (:func:`load_library`): what is loaded is the inode that was checked, whatever happens to the
  names afterwards. The folders above need not be private (a 0700 folder inside the sticky,
  world-writable ``/tmp`` is fine): renaming them cannot change what the descriptor refers to.
- new files are written under a temporary name and renamed into place (:func:`install`), mode
  0500 whatever the umask.

Read permission for others is accepted (reading a library is harmless). With POSIX ACLs the
group bits of ``st_mode`` are the ACL mask, so a named user or group granted write access shows
up as a group write bit and is refused too. Problems raise :class:`UnsafeError` with a one-line
reason.
"""

from __future__ import annotations

import ctypes
import errno
import os
import secrets
import shutil
import stat
import tempfile
from pathlib import Path

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
#: How Linux names the file behind a descriptor (a library is loaded by this name).
PROC_FD = "/proc/self/fd/{}"
#: Mode of an installed library: the owner may read and map it; nobody may write it.
LIBRARY_MODE = 0o500


class UnsafeError(Exception):
    """A folder or file that someone other than the calling user could have written; the
    message is the reason (``"it is a symbolic link"``, ``"it belongs to uid 65534 ..."``)."""


def _problem(st: os.stat_result, want_dir: bool) -> str | None:
    """Why ``st`` (from ``fstat``) may not be trusted, or None."""
    if want_dir and not stat.S_ISDIR(st.st_mode):
        return "it is not a folder"
    if not want_dir and not stat.S_ISREG(st.st_mode):
        return "it is not a regular file"
    me = os.geteuid()
    if st.st_uid != me:
        return f"it belongs to uid {st.st_uid}, not to you (uid {me})"
    mode = stat.S_IMODE(st.st_mode)
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        who = " and ".join(w for w, bit in (("its group", stat.S_IWGRP), ("others", stat.S_IWOTH)) if mode & bit)
        return f"it is writable by {who} (mode {mode:o})"
    return None


def _link_problem(err: OSError, path: Path | str, dir_fd: int | None = None) -> str | None:
    """The reason for an ``O_NOFOLLOW`` open that failed on a symbolic link, else None."""
    if err.errno not in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
        return None
    try:
        if stat.S_ISLNK(os.lstat(path, dir_fd=dir_fd).st_mode):
            return "it is a symbolic link (links are not followed there)"
    except OSError:
        pass
    return None


def _make_missing(folder: Path) -> bool:
    """Create ``folder`` and any missing folders above it, each 0700 (never wider, whatever the
    umask). Returns whether ``folder`` itself was created here."""
    missing = []
    for p in [folder, *folder.parents]:
        if os.path.lexists(p):
            break
        missing.append(p)
    created = False
    for p in reversed(missing):
        try:
            os.mkdir(p, 0o700)
            created = p == folder
        except FileExistsError:
            created = False
    return created


def open_private_dir(folder: Path) -> int:
    """Open ``folder`` (creating it, and missing folders above it, 0700) and return a descriptor
    of it, after checking that it is a folder of the calling user that nobody else may write.
    Raises :class:`UnsafeError`, or ``OSError`` when it cannot be created or opened."""
    folder = Path(os.path.abspath(folder))
    created = _make_missing(folder)
    try:
        fd = os.open(folder, _DIR_FLAGS)
    except OSError as e:
        reason = _link_problem(e, folder)
        if reason:
            raise UnsafeError(reason) from None
        if e.errno == errno.ENOTDIR:
            raise UnsafeError("it is not a folder") from None
        raise
    try:
        st = os.fstat(fd)
        if created and stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid():
            os.fchmod(fd, 0o700)  # mkdir's mode is cut by the umask: make it exactly 0700
            st = os.fstat(fd)
        reason = _problem(st, want_dir=True)
        if reason:
            raise UnsafeError(reason)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_private_file(dir_fd: int, name: str) -> int:
    """Open ``name`` in the folder ``dir_fd`` for reading, without following a symbolic link, and
    return its descriptor after checking that it is a regular file of the calling user that
    nobody else may write. Raises :class:`UnsafeError`, ``FileNotFoundError`` or ``OSError``."""
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
    except OSError as e:
        reason = _link_problem(e, name, dir_fd)
        if reason:
            raise UnsafeError(reason) from None
        raise
    try:
        reason = _problem(os.fstat(fd), want_dir=False)
        if reason:
            raise UnsafeError(reason)
    except BaseException:
        os.close(fd)
        raise
    return fd


def install(dir_fd: int, name: str, data: bytes, mode: int = LIBRARY_MODE) -> None:
    """Write ``data`` as ``name`` in the folder ``dir_fd``: to a new temporary file (created
    exclusively, never through a link), given ``mode`` and synced, then renamed onto ``name``
    (replacing whatever had that name, a symbolic link included). A failure leaves no temporary
    file; concurrent installs of the same content are safe."""
    tmp = f".{name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o600,
                 dir_fd=dir_fd)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except FileNotFoundError:
            pass
        raise


def _read_all(fd: int) -> bytes:
    chunks, offset = [], 0
    while chunk := os.pread(fd, 1 << 20, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def load_library(fd: int) -> ctypes.CDLL:
    """Load the library open as ``fd`` (checked by :func:`open_private_file`); takes the
    descriptor over. On Linux the library is loaded through ``/proc/self/fd/N``, which is that
    inode whatever became of its name, and the descriptor stays open while the process runs (the
    loader knows the library by that name: a later library opened under the same number would be
    mistaken for it). Elsewhere the bytes read from ``fd`` are copied into a new private
    temporary folder, loaded from there, and the folder and the descriptor closed. Raises
    ``OSError`` (the descriptor closed) when the library cannot be loaded."""
    proc = PROC_FD.format(fd)
    try:
        try:
            st, via = os.fstat(fd), os.stat(proc)
            through_proc = (st.st_dev, st.st_ino) == (via.st_dev, via.st_ino)
        except OSError:
            through_proc = False
        if through_proc:
            return ctypes.CDLL(proc)
        data = _read_all(fd)
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    folder = tempfile.mkdtemp(prefix="crsnn-lib-")
    try:
        dir_fd = os.open(folder, _DIR_FLAGS)
        try:
            install(dir_fd, "lib.so", data)
        finally:
            os.close(dir_fd)
        return ctypes.CDLL(os.path.join(folder, "lib.so"))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
