"""Signals: SIGINT / SIGTERM / SIGHUP (and SIGKILL of the command) end every process a command
started within 2 s, with one line on stderr, exit status 128 + signal, no traceback and no
leftover files (issue 11, item 1; interrupted training is in test_train_robust.py)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from crsnn.export.nir_writer import to_nir, write_nir_atomic
from crsnn.sim.random_networks import random_crsnn

RUN = "import sys; from crsnn.deploy.cli import run_main; sys.exit(run_main())"


# ------------------------------------------------------------------------- /proc helpers
def _stat(pid: int) -> list[str] | None:
    """state, ppid, pgrp, session, ... of a process, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2:].split()


def descendants(root: int) -> dict[int, str]:
    """Every process below ``root`` (children, grandchildren, ...; whatever their process group
    or session), as {pid: start time} so that a reused pid is not mistaken for a survivor."""
    procs = {}
    for d in os.listdir("/proc"):
        if d.isdigit() and (st := _stat(int(d))) is not None:
            procs[int(d)] = st
    found, frontier = {}, {root}
    while frontier:
        new = {p: st[19] for p, st in procs.items() if int(st[1]) in frontier and p not in found}
        found.update(new)
        frontier = set(new)
    return found


def alive(procs: dict[int, str]) -> list[int]:
    """The processes of ``procs`` still running (zombies count as ended)."""
    out = []
    for pid, start in procs.items():
        st = _stat(pid)
        if st is not None and st[19] == start and st[0] not in ("Z", "X"):
            out.append(pid)
    return out


def wait_for(cond, timeout: float, what: str):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        value = cond()
        if value:
            return value
        time.sleep(0.02)
    pytest.fail(f"timed out waiting for {what}")


# ------------------------------------------------------------------------- item 1: Lava workers
@pytest.fixture
def short_tmp():
    """A private TMPDIR with a short path (Unix socket paths below it must stay < 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="crsnn-t-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def small_nir(tmp_path_factory) -> Path:
    net = random_crsnn(np.random.default_rng(0), 12, [16], 4, input_rate=0.2)  # the synthetic task: 12 inputs
    return write_nir_atomic(to_nir(net, dt=0.01), tmp_path_factory.mktemp("sig") / "small.nir")


def start_lava_run(nir_path: Path, tmp: Path) -> tuple[subprocess.Popen, dict[int, str]]:
    """``crsnn-run --backend lava-cpu`` on many samples, in its own session (process group);
    returns once its Lava worker processes run, with them."""
    env = {**os.environ, "TMPDIR": str(tmp), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", RUN, str(nir_path), "--data", "synthetic:test=20000",
                             "--backend", "lava-cpu", "--chunk", "40", "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env=env)
    # the watchdog child and at least one Lava worker below it
    procs = wait_for(lambda: (d := descendants(proc.pid)) and len(d) >= 3 and d, 120, "Lava worker processes")
    return proc, procs


def shm_segments() -> set[str]:
    return set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()


def leaked_segments(before: set[str]) -> set[str]:
    """Shared-memory segments (Lava's ``psm_*``) created since ``before`` that no process uses any
    more (segments of other jobs running at the same time are in use)."""
    new = {s for s in shm_segments() - before if s.startswith("psm_")}
    if not new:
        return new
    used = set()
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            used.update(line.rsplit("/", 1)[-1].strip() for line in Path(f"/proc/{d}/maps").read_text().splitlines()
                        if "/dev/shm/" in line)
            used.update(os.readlink(f"/proc/{d}/fd/{fd}").rsplit("/", 1)[-1] for fd in os.listdir(f"/proc/{d}/fd"))
        except OSError:
            continue
    return {s for s in new if s not in used and os.path.exists(f"/dev/shm/{s}")}


@pytest.mark.lava
@pytest.mark.parametrize("sig, to_group, status", [
    (signal.SIGTERM, False, 143),   # kill PID
    (signal.SIGINT, True, 130),     # Ctrl-C: the terminal signals the foreground process group
    (signal.SIGHUP, True, 129),     # the terminal closes
], ids=["SIGTERM", "SIGINT-group", "SIGHUP-group"])
def test_a_signal_ends_every_lava_process_within_2_s(small_nir, short_tmp, sig, to_group, status):
    shm_before = shm_segments()
    proc, procs = start_lava_run(small_nir, short_tmp)
    procs.update(descendants(proc.pid))
    t0 = time.monotonic()
    (os.killpg if to_group else os.kill)(proc.pid, sig)
    wait_for(lambda: not alive(procs), 10, "the Lava processes to end")
    workers_s = time.monotonic() - t0
    rc = proc.wait(timeout=10)
    command_s = time.monotonic() - t0  # includes the interpreter's own shutdown (~0.5 s with torch and Lava)
    err = proc.stderr.read()
    assert rc == status, err
    assert err.strip().splitlines() == [f"crsnn-run: interrupted by {signal.Signals(sig).name}"], err
    assert workers_s < 2.0 and command_s < 5.0, (workers_s, command_s)
    assert os.listdir(short_tmp) == []  # no temporary file or folder of the killed Lava run
    assert not leaked_segments(shm_before)  # no leaked shared memory


@pytest.mark.lava
def test_lava_workers_end_even_when_the_command_is_killed_outright(small_nir, short_tmp):
    shm_before = shm_segments()
    proc, procs = start_lava_run(small_nir, short_tmp)
    t0 = time.monotonic()
    os.kill(proc.pid, signal.SIGKILL)  # no clean-up possible in the command itself
    proc.wait(timeout=10)
    wait_for(lambda: not alive(procs), 10, "the orphaned Lava processes to end")
    assert time.monotonic() - t0 < 2.0
    assert os.listdir(short_tmp) == [] and not leaked_segments(shm_before)


def _create_segment_and_hang() -> None:
    """A job stopped while it creates shared memory: a segment Python's resource tracker never
    heard of (created, not registered)."""
    from multiprocessing import shared_memory

    name = shared_memory._make_filename()
    shared_memory._posixshmem.shm_open(name, os.O_CREAT | os.O_EXCL | os.O_RDWR, mode=0o600)
    time.sleep(120)


def test_a_stopped_job_leaves_no_shared_memory_and_no_temporary_folder(short_tmp, monkeypatch):
    from crsnn.deploy.watchdog import LavaTimeoutError, run_with_timeout

    monkeypatch.setattr(tempfile, "tempdir", str(short_tmp))
    before = shm_segments()
    t0 = time.monotonic()
    with pytest.raises(LavaTimeoutError):
        run_with_timeout(_create_segment_and_hang, timeout_s=2)
    assert time.monotonic() - t0 < 4
    assert not {s for s in shm_segments() - before if s.startswith("psm_")} and os.listdir(short_tmp) == []

