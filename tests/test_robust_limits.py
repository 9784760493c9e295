"""File-size limits and full disks (issue 20, item 8): a command that cannot write ends with one
line naming the limit (what, where, what to do), exit status 2, no traceback from any of its
processes (Lava's workers and Python's resource tracker included), no process left running and
no folder of its own making left behind.

The crsnn-data synth tests need espeak-ng (the optional extra espeakng-loader, as
test_data_synth.py): without it they fail, they do not skip. The synthesis child's side of the
failure is also tested without espeak-ng (a stub synthesizer).

The limit is set with ``RLIMIT_FSIZE`` in the command's process only (``ulimit -f``). Python
ignores SIGXFSZ (it sets it to SIG_IGN at start-up, in every Python process the command starts), so
a write past the limit fails with EFBIG ("File too large") instead of killing the process: the
command has to report it.
"""

from __future__ import annotations

import errno
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

VERIFY = "import sys; from crsnn.deploy.cli import verify_main; sys.exit(verify_main())"
DATA_CLI = "import sys; from crsnn.train.data.cli import main; sys.exit(main())"
DATA = "synthetic:train=96,valid=32,test=48"


def _limit_files(size: int):
    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    return preexec


def _marked_processes(mark: str) -> list[int]:
    """Live processes whose environment holds ``CRSNN_TEST_MARK=mark``: every process the command
    started (forked or executed), wherever it went (own session, reparented to init)."""
    needle = f"CRSNN_TEST_MARK={mark}".encode()
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
            if stat[stat.rfind(")") + 2:].split()[0] in ("Z", "X"):
                continue
            if needle in Path(f"/proc/{d}/environ").read_bytes().split(b"\0"):
                out.append(int(d))
        except OSError:
            continue
    return out


def _group_members(pgid: int) -> list[int]:
    from crsnn.deploy.watchdog import group_members

    return group_members(pgid)


def run_limited(code: str, argv: list[str], limit: int, tmp: Path, timeout: float = 300,
                env: dict | None = None) -> tuple[int, str, str, str, int]:
    """Run ``python -c code argv`` in its own session under a file-size limit of ``limit`` bytes
    with TMPDIR=``tmp``; returns (exit status, stdout, stderr, the environment mark, its pid =
    its process group)."""
    mark = uuid.uuid4().hex
    env = {**os.environ, "TMPDIR": str(tmp), "OMP_NUM_THREADS": "1", "CRSNN_TEST_MARK": mark, **(env or {})}
    env.pop("CRSNN_DEBUG", None)
    proc = subprocess.Popen([sys.executable, "-c", code, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, preexec_fn=_limit_files(limit), env=env)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        for pid in _marked_processes(mark):
            os.kill(pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"{argv[:2]} did not end within {timeout} s")
    return proc.returncode, out, err, mark, proc.pid


def assert_nothing_left_running(pgid: int, mark: str) -> None:
    t0 = time.monotonic()
    while (_group_members(pgid) or _marked_processes(mark)) and time.monotonic() - t0 < 5:
        time.sleep(0.05)
    assert not _group_members(pgid), "processes of the command's group still run"
    assert not _marked_processes(mark), "processes the command started still run"


@pytest.fixture
def short_tmp():
    """A private TMPDIR with a short path (Unix socket paths below it must stay < 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="crsnn-l-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


# ------------------------------------------------------------------ crsnn-verify, Lava under a limit
@pytest.fixture(scope="module")
def checkpoint_and_nir(tmp_path_factory) -> tuple[Path, Path]:
    from crsnn.export.cli import main as export_main
    from crsnn.train.cli import main as train_main

    d = tmp_path_factory.mktemp("limits")
    ck, nir_path = d / "m.pt", d / "m.nir"
    assert train_main(["--data", DATA, "--model", "crsnn", "--hidden", "16", "16", "--epochs", "2", "--qat-start", "1",
                       "--batch-size", "32", "--out", str(ck), "--no-progress"]) == 0
    assert export_main([str(ck), str(nir_path)]) == 0
    return ck, nir_path


@pytest.mark.lava
@pytest.mark.parametrize("limit", [0, 4096], ids=["no-file-at-all", "4KiB"])
def test_verify_under_a_file_size_limit_ends_in_one_line(checkpoint_and_nir, short_tmp, tmp_path, limit):
    """4 KiB: Lava's shared memory (its channels, a few KiB each, in /dev/shm) cannot be sized;
    Python 3.11's SharedMemory then unregisters a segment it never registered and the resource
    tracker printed a KeyError traceback. 0 bytes: not even a temporary folder is usable
    (tempfile's probe write fails) and the command printed a FileNotFoundError traceback."""
    ck, nir_path = checkpoint_and_nir
    out = tmp_path / "v"
    rc, _, err, mark, pgid = run_limited(VERIFY, [str(ck), str(nir_path), "--data", DATA, "-n", "4", "--out", str(out),
                                                 "--no-progress"], limit, short_tmp)
    lines = err.strip().splitlines()
    assert "Traceback" not in err and len(lines) == 1, err
    assert rc == 2, err
    assert lines[0].startswith("crsnn-verify: error: cannot write ") and "File too large" in lines[0], err
    assert "file-size limit" in lines[0] and "ulimit -f" in lines[0], err
    assert not list(tmp_path.glob("v*")) and os.listdir(short_tmp) == []
    assert_nothing_left_running(pgid, mark)


# ------------------------------------------------------------------ crsnn-data synth under a limit / full disk
def _synth_argv(out: Path) -> list[str]:
    return ["synth", "--out", str(out), "--per-class", "1", "--quiet", "--workers", "1"]


@pytest.mark.parametrize("out_exists", [False, True], ids=["new-folder", "existing-folder"])
def test_synth_under_a_file_size_limit_ends_in_one_line_and_leaves_no_new_folder(short_tmp, tmp_path, out_exists):
    """The espeak-ng child process cannot write its audio (EFBIG): the command printed
    'espeak-ng synthesis process failed: Traceback (most recent call last):' and left the empty
    output folder it had created."""
    out = tmp_path / "new" / "bench" if not out_exists else tmp_path / "bench"
    if out_exists:
        out.mkdir()
    rc, _, err, mark, pgid = run_limited(DATA_CLI, _synth_argv(out), 64 * 1024, short_tmp)
    lines = err.strip().splitlines()
    assert "Traceback" not in err and len(lines) == 1, err
    assert rc == 2, err
    assert lines[0].startswith("crsnn-data synth: error: cannot write ") and "File too large" in lines[0], err
    assert "file-size limit" in lines[0] and "ulimit -f" in lines[0], err
    assert str(short_tmp) in lines[0], err  # where: the temporary folder the speech goes to
    if out_exists:
        assert out.is_dir() and os.listdir(out) == []  # a folder that existed stays
    else:
        assert not (tmp_path / "new").exists()  # the folders the command made are gone
    assert os.listdir(short_tmp) == []
    assert_nothing_left_running(pgid, mark)


_STUB_CHILD = """
import sys
import numpy as np
import crsnn.train.data.speech as s

class Stub:  # espeak-ng's place: 4 s of noise per utterance, nothing loaded
    sample_rate, version, source, library_path, data_path = 22050, "stub", "stub", "stub.so", None
    def synthesize(self, u):
        return np.random.default_rng(u.seed).integers(-9000, 9000, 4 * 22050).astype(np.int16)

s.Espeak = Stub
s._child_main(sys.argv[1:])
"""


def test_the_synthesis_child_reports_no_room_in_one_line(short_tmp):
    """The espeak-ng child's side of the boundary, without espeak-ng (the stub above stands in):
    its audio archive cannot be written under the file-size limit. It ends with the one line the
    parent reads, and no traceback -- neither its own nor the one the half-written archive's
    finalizer printed at exit."""
    from crsnn.train.data.speech import _NO_ROOM

    src, dst = short_tmp / "in.json", short_tmp / "out.npz"
    src.write_text('[{"text": "zero", "voice": "en-us", "seed": 1}, {"text": "one", "voice": "en-us", "seed": 2}]')
    rc, out, err, mark, pgid = run_limited(_STUB_CHILD, [str(src), str(dst)], 64 * 1024, short_tmp, timeout=120)
    assert err.strip().splitlines() == [f"{_NO_ROOM}{errno.EFBIG}"], err
    assert rc == 1 and out == ""
    assert_nothing_left_running(pgid, mark)


def _can_mount_tmpfs() -> bool:
    return os.geteuid() == 0 and shutil.which("mount") is not None and sys.platform.startswith("linux")


@pytest.fixture
def full_disk(tmp_path):
    """A 256 KiB tmpfs mounted on a fresh folder (root only), unmounted afterwards."""
    if not _can_mount_tmpfs():
        pytest.skip("mounting a small tmpfs needs root on Linux")
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@pytest.mark.parametrize("full", ["temporary-folder", "output-folder"])
def test_synth_on_a_full_disk_says_no_space_left(full_disk, short_tmp, full):
    """A real full disk (ENOSPC). temporary-folder: TMPDIR and the output on it, the espeak-ng
    child cannot write its audio (the message was its traceback's first line). output-folder:
    only the output on it, the final write fails (the message was right, but the folders the
    command had made stayed behind, empty)."""
    tmp = full_disk / "t" if full == "temporary-folder" else short_tmp
    tmp.mkdir(exist_ok=True)
    out = full_disk / "new" / "bench"
    rc, _, err, mark, pgid = run_limited(DATA_CLI, _synth_argv(out), resource.RLIM_INFINITY, tmp)
    lines = err.strip().splitlines()
    assert "Traceback" not in err and len(lines) == 1, err
    assert rc == 2, err
    assert lines[0].startswith("crsnn-data synth: error: cannot write ") and "No space left on device" in lines[0], err
    if full == "temporary-folder":
        assert str(tmp) in lines[0] and "TMPDIR" in lines[0], err
    else:
        assert str(out / "train.h5") in lines[0], err
    assert not (full_disk / "new").exists() and os.listdir(tmp) == []
    assert_nothing_left_running(pgid, mark)
