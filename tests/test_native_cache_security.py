"""The simulator's build cache (crsnn.sim.native) on a shared machine: a library is code run as
the user who loads it, so a library that someone else could have written or swapped is never
loaded. Each planted library below is the real loop plus a constructor that writes a marker
file, i.e. it gives correct results and would go unnoticed; the tests assert that the marker is
never written, that the simulator still gives the reference results, and that exactly one
warning says why the cache was not used.

The other user is uid 65534 (``nobody``); the tests that plant a file of that user need root
(``chown``) and are skipped, and reported as skipped, without it."""

from __future__ import annotations

import ctypes
import os
import shutil
import stat
import subprocess
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest

from crsnn.sim import native
from crsnn.sim.integer_sim import simulate
from crsnn.sim.random_networks import random_input, random_network
from crsnn.sim.torch_sim import simulate_torch

from test_torch_sim import assert_same  # noqa: E402  (tests/ is on sys.path under pytest)

OTHER_UID = 65534
MARKER_ENV = "CRSNN_TEST_PLANTED_MARKER"

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="planting a file owned by another user needs root (chown)")

PLANTED_C = r"""
#include <stdio.h>
#include <stdlib.h>
__attribute__((constructor)) static void crsnn_test_planted(void) {
    const char *p = getenv("CRSNN_TEST_PLANTED_MARKER");
    if (p) { FILE *f = fopen(p, "w"); if (f) { fputs("planted code ran\n", f); fclose(f); } }
}
"""


@pytest.fixture(scope="session")
def libs(tmp_path_factory) -> dict:
    """One genuine build (its file name is the one the loader looks for) and one planted library:
    lif_layer.c plus a constructor that writes ``$CRSNN_TEST_PLANTED_MARKER``."""
    root = tmp_path_factory.mktemp("native-libs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CRSNN_CACHE_DIR", str(root / "genuine"))
        genuine = native.build()
    src = root / "planted.c"
    src.write_text(PLANTED_C)
    planted = root / "planted.so"
    cc = native._compiler()
    subprocess.run([cc, "-O1", "-std=c99", "-shared", "-fPIC", "-o", str(planted), str(native.SOURCE), str(src)],
                   check=True, capture_output=True, timeout=300)
    return {"name": genuine.name, "genuine": genuine.read_bytes(), "planted": planted.read_bytes()}


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """A clean loader, a marker path for planted code, and a private temporary folder (to check
    that a per-process build leaves nothing behind); the loader is reset afterwards."""
    marker = tmp_path / "planted-code-ran"
    monkeypatch.setenv(MARKER_ENV, str(marker))
    monkeypatch.delenv(native.ENV_SWITCH, raising=False)
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir(mode=0o700)
    monkeypatch.setattr(tempfile, "tempdir", str(tmpdir))
    native._load.cache_clear()
    yield marker
    native._load.cache_clear()


def _plant(path: Path, content: bytes, uid: int | None = None, mode: int = 0o644) -> None:
    path.write_bytes(content)
    os.chmod(path, mode)
    if uid is not None:
        os.chown(path, uid, uid)


def _run_with_cache(monkeypatch, cache: Path) -> list[warnings.WarningMessage]:
    """Load the loop from ``cache`` and run a random network; assert the reference results.
    Returns the RuntimeWarnings raised on the way."""
    monkeypatch.setenv("CRSNN_CACHE_DIR", str(cache))
    native._load.cache_clear()
    rng = np.random.default_rng(3)
    net, steps = random_network(rng)
    x = random_input(rng, net, 3, steps)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = native.simulate_native(net, x, threads=1)
    assert_same(simulate(net, x), res)
    return [w for w in caught if issubclass(w.category, RuntimeWarning)]


def _one_warning(caught: list[warnings.WarningMessage], *phrases: str) -> str:
    assert len(caught) == 1, [str(w.message) for w in caught]
    msg = str(caught[0].message)
    for p in phrases:
        assert p in msg, msg
    return msg


def _snapshot(folder: Path) -> dict:
    return {p.name: (p.lstat().st_uid, stat.S_IMODE(p.lstat().st_mode), p.read_bytes() if p.is_file() else None)
            for p in folder.iterdir()}


def _assert_private_library(path: Path, genuine: bytes) -> None:
    st = path.lstat()
    assert stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid()
    assert stat.S_IMODE(st.st_mode) == 0o500
    assert path.read_bytes() == genuine


@needs_root
def test_folder_of_another_user_is_not_used(monkeypatch, tmp_path, libs, fresh):
    """The reported attack: a cache folder created by someone else holding a working library
    with a constructor. Not loaded, the folder is left as it was, the loop is built privately
    for this process (same results) and one warning names the owner."""
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o755)
    _plant(cache / libs["name"], libs["planted"], OTHER_UID)
    os.chown(cache, OTHER_UID, OTHER_UID)
    before = _snapshot(cache)
    caught = _run_with_cache(monkeypatch, cache)
    assert not fresh.exists(), "the planted library was loaded"
    assert _snapshot(cache) == before  # nothing written into another user's folder
    msg = _one_warning(caught, str(cache), f"uid {OTHER_UID}", "private")
    assert native.unavailable_reason() is None and native.available()
    assert native.cache_problem() == msg.removeprefix("crsnn.sim.native: ")
    assert not any(Path(tempfile.tempdir).iterdir())  # the private build removed its folder


@pytest.mark.parametrize("mode", [0o775, 0o757, 0o1777])
def test_folder_writable_by_others_is_not_used_even_if_ours(monkeypatch, tmp_path, libs, fresh, mode):
    """Our own folder with a group or other write bit (sticky or not): anyone with that access
    could have planted or swapped a file, even one that looks like ours. Not loaded, not
    repaired behind the user's back."""
    cache = tmp_path / "cache"
    cache.mkdir()
    os.chmod(cache, mode)
    _plant(cache / libs["name"], libs["planted"], mode=0o500)  # owned by us, read-only: looks fine
    before = _snapshot(cache)
    caught = _run_with_cache(monkeypatch, cache)
    assert not fresh.exists(), "the planted library was loaded"
    assert stat.S_IMODE(cache.stat().st_mode) == mode and _snapshot(cache) == before
    _one_warning(caught, str(cache), "writable by", oct(mode)[2:])


def test_symlinked_cache_folder_is_not_followed(monkeypatch, tmp_path, libs, fresh):
    """The cache path is a symbolic link (to a folder that is ours and private): not followed,
    nothing read or written through it."""
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    _plant(target / libs["name"], libs["planted"], mode=0o500)
    cache = tmp_path / "cache"
    cache.symlink_to(target, target_is_directory=True)
    before = _snapshot(target)
    caught = _run_with_cache(monkeypatch, cache)
    assert not fresh.exists(), "the library behind the symbolic link was loaded"
    assert cache.is_symlink() and _snapshot(target) == before
    _one_warning(caught, str(cache), "symbolic link")


def test_symlinked_library_is_not_followed_and_replaced(monkeypatch, tmp_path, libs, fresh):
    """In our private folder, the library's name is a symbolic link to a (private-looking)
    library elsewhere: not followed; the link is replaced by a genuine build, mode 0500."""
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    elsewhere = tmp_path / "planted.so"
    _plant(elsewhere, libs["planted"], mode=0o500)
    (cache / libs["name"]).symlink_to(elsewhere)
    caught = _run_with_cache(monkeypatch, cache)
    assert not fresh.exists(), "the library behind the symbolic link was loaded"
    assert elsewhere.read_bytes() == libs["planted"]
    _assert_private_library(cache / libs["name"], libs["genuine"])
    _one_warning(caught, str(cache / libs["name"]), "symbolic link")
    assert sorted(p.name for p in cache.iterdir()) == [libs["name"]]


@pytest.mark.parametrize("owner, mode, why", [pytest.param(OTHER_UID, 0o644, f"uid {OTHER_UID}", marks=needs_root),
                                              (None, 0o666, "writable by"), (None, 0o620, "writable by")])
def test_library_of_another_user_or_writable_is_replaced(monkeypatch, tmp_path, libs, fresh, owner, mode, why):
    """In our private folder, a library that belongs to someone else or that others may write:
    not loaded; replaced by a genuine build (ours, 0500); one warning says why."""
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    _plant(cache / libs["name"], libs["planted"], owner, mode)
    caught = _run_with_cache(monkeypatch, cache)
    assert not fresh.exists(), "the planted library was loaded"
    _assert_private_library(cache / libs["name"], libs["genuine"])
    _one_warning(caught, str(cache / libs["name"]), why)


def test_cache_created_private_under_umask_000(monkeypatch, tmp_path, libs, fresh):
    """Under umask 000 the cache folder (and any missing folders above it) is created 0700 and
    the library 0500: nobody else may write either."""
    cache = tmp_path / "a" / "b" / "cache"
    old = os.umask(0)
    try:
        caught = _run_with_cache(monkeypatch, cache)
    finally:
        os.umask(old)
    assert caught == []
    for folder in (tmp_path / "a", tmp_path / "a" / "b", cache):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    _assert_private_library(cache / libs["name"], libs["genuine"])
    assert sorted(p.name for p in cache.iterdir()) == [libs["name"]]  # no temporary file left


def test_private_folder_inside_sticky_world_writable_folder_is_used(monkeypatch, tmp_path, libs, fresh):
    """Like a cache under /tmp: the folder above is world-writable with the sticky bit, the cache
    folder itself is ours and 0700 -- it is used as it is, silently, and a cached library that
    is ours and not writable by others (an older build, 0644) is loaded without a rebuild."""
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    cache = shared / "crsnn"
    cache.mkdir(mode=0o700)
    _plant(cache / libs["name"], libs["genuine"], mode=0o644)
    stamp = (cache / libs["name"]).stat()
    caught = _run_with_cache(monkeypatch, cache)
    assert caught == [] and native.cache_problem() is None
    now = (cache / libs["name"]).stat()
    assert (now.st_ino, now.st_mtime_ns) == (stamp.st_ino, stamp.st_mtime_ns)  # loaded, not rebuilt


def test_warning_is_given_once_per_process(monkeypatch, tmp_path, libs, fresh):
    """Later runs in the same process (the simulator's usual entry point included) use the
    private build silently: one warning, not one per call."""
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o777)
    os.chmod(cache, 0o777)
    assert len(_run_with_cache(monkeypatch, cache)) == 1
    rng = np.random.default_rng(1)
    net, steps = random_network(rng)
    x = random_input(rng, net, 2, steps)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert native.available() and native.enabled()
        assert_same(simulate(net, x), simulate_torch(net, x))  # through the compiled loop
        native.simulate_native(net, x)
    assert caught == []


@needs_root
def test_unsafe_cache_and_no_compiler_says_both(monkeypatch, tmp_path, fresh):
    """Nothing safe to load and nothing to build with: the loop is unavailable and the reason
    names the missing compiler."""
    cache = tmp_path / "cache"
    cache.mkdir()
    os.chown(cache, OTHER_UID, OTHER_UID)
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    monkeypatch.setenv("CRSNN_CACHE_DIR", str(cache))
    assert not native.available()
    assert "no-such-cc" in native.unavailable_reason()
    assert not any(cache.iterdir())


@needs_root
def test_command_line_reports_an_unsafe_cache(monkeypatch, tmp_path, libs, fresh, capsys):
    """``python -m crsnn.sim.native`` (a set-up script's build step) says that the cache was not
    used and why, and that the loop still works (exit code 0)."""
    cache = tmp_path / "cache"
    cache.mkdir()
    _plant(cache / libs["name"], libs["planted"], OTHER_UID)
    os.chown(cache, OTHER_UID, OTHER_UID)
    monkeypatch.setenv("CRSNN_CACHE_DIR", str(cache))
    assert native.main() == 0
    err = capsys.readouterr().err
    assert str(cache) in err and f"uid {OTHER_UID}" in err and "private" in err
    assert not fresh.exists()


def test_build_refuses_an_unsafe_cache(monkeypatch, tmp_path, libs, fresh):
    """``build()`` returns a path in the cache only when the cache is safe; otherwise it raises a
    RuntimeError naming the folder and the reason (and writes nothing there)."""
    cache = tmp_path / "cache"
    cache.mkdir()
    os.chmod(cache, 0o777)
    monkeypatch.setenv("CRSNN_CACHE_DIR", str(cache))
    with pytest.raises(RuntimeError, match="writable by"):
        native.build()
    assert not any(cache.iterdir())
    shutil.rmtree(cache)
    path = native.build()
    assert path == cache / libs["name"]
    _assert_private_library(path, libs["genuine"])


def test_cache_path_that_is_a_file_or_library_name_that_is_a_folder(monkeypatch, tmp_path, libs, fresh):
    """Neither can hold the library: the loop is built privately, with one warning each."""
    cache = tmp_path / "cache"
    cache.write_text("not a folder")
    _one_warning(_run_with_cache(monkeypatch, cache), str(cache), "not a folder")
    assert cache.read_text() == "not a folder"
    cache.unlink()
    cache.mkdir(mode=0o700)
    (cache / libs["name"]).mkdir()
    _one_warning(_run_with_cache(monkeypatch, cache), str(cache), "cannot be read or written")
    assert not fresh.exists()


def test_without_proc_the_checked_bytes_are_loaded_from_a_private_copy(monkeypatch, tmp_path, libs, fresh):
    """Where /proc/self/fd does not exist, the library's bytes, read from the checked descriptor,
    are loaded from a private temporary copy that is removed again."""
    from crsnn.sim import private_cache

    monkeypatch.setattr(private_cache, "PROC_FD", str(tmp_path / "no-proc" / "{}"))
    loaded, cdll = [], ctypes.CDLL
    monkeypatch.setattr(private_cache.ctypes, "CDLL", lambda name, *a, **k: loaded.append(name) or cdll(name, *a, **k))
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    _plant(cache / libs["name"], libs["genuine"], mode=0o500)
    assert _run_with_cache(monkeypatch, cache) == []
    assert len(loaded) == 1 and Path(loaded[0]).parent.parent == Path(tempfile.tempdir)
    assert not any(Path(tempfile.tempdir).iterdir())
