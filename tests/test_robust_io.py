"""Outputs: one atomic writer that honours the umask, every output path checked before the work
starts, and full disks / file-size limits / unwritable folders as one line with nothing
half-written and no temporary file left (issue 11, items 3, 4 and 7)."""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from crsnn.atomic_write import (WriteError, check_writable, save_figure, write_bytes_atomic, write_json_atomic,
                                write_together)
from crsnn.deploy.cli import report_main, run_main, verify_main
from crsnn.export.cli import main as export_main
from crsnn.export.nir_writer import to_nir, write_nir_atomic
from crsnn.models.network import ModelConfig, build_model
from crsnn.sim.random_networks import random_crsnn
from crsnn.train.checkpoint import save_checkpoint
from crsnn.train.data.cli import main as data_main



def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def leftovers(folder: Path) -> list[str]:
    """Temporary files of the atomic writer (hidden ``.NAME.*.tmp``)."""
    return sorted(p.name for p in folder.rglob("*.tmp"))


@pytest.fixture
def umask():
    old = os.umask(0o022)
    yield lambda m: os.umask(m)
    os.umask(old)


def qat_checkpoint(path: Path) -> Path:
    model = build_model(ModelConfig(n_in=8, n_out=4, hidden=[6], input_message_bits=2))
    model.set_qat(True)
    return save_checkpoint(path, model, {"epoch": 1})


# ------------------------------------------------------------------------- item 3: modes
def test_new_files_honour_the_umask_and_replaced_files_keep_their_mode(tmp_path, umask):
    umask(0o027)
    write_bytes_atomic(tmp_path / "a.bin", b"x")
    write_json_atomic(tmp_path / "a.json", {"a": 1})
    qat_checkpoint(tmp_path / "m.pt")
    write_nir_atomic(to_nir(random_crsnn(np.random.default_rng(0), 4, [5], 2), dt=0.01), tmp_path / "n.nir")
    for name in ("a.bin", "a.json", "m.pt", "n.nir"):
        assert mode(tmp_path / name) == 0o640, name
    umask(0o002)
    write_bytes_atomic(tmp_path / "b.bin", b"x")
    assert mode(tmp_path / "b.bin") == 0o664
    os.chmod(tmp_path / "a.json", 0o600)  # a private file stays private when it is replaced
    write_json_atomic(tmp_path / "a.json", {"a": 2})
    assert mode(tmp_path / "a.json") == 0o600 and json.loads((tmp_path / "a.json").read_text()) == {"a": 2}


def test_command_outputs_get_the_usual_mode(tmp_path, umask, capsys):
    umask(0o022)
    ck = qat_checkpoint(tmp_path / "q.pt")
    assert export_main([str(ck), str(tmp_path / "q.nir")]) == 0
    assert mode(tmp_path / "q.nir") == 0o644


# ------------------------------------------------------------------------- check_writable
def test_check_writable_says_what_where_and_what_to_do(tmp_path):
    (tmp_path / "file").write_text("a file, not a folder")
    cases = {tmp_path / "no" / "out.json": "folder " + str(tmp_path / "no") + " does not exist",
             tmp_path / "file" / "sub" / "out.json": "is a file, not a folder",
             tmp_path: "it is a folder"}
    for path, words in cases.items():
        with pytest.raises(WriteError) as e:
            check_writable(path)
        msg = str(e.value)
        assert words in msg and str(path) in msg and "\n" not in msg, msg
    assert check_writable(tmp_path / "made" / "x.pt", make_parents=True).parent.is_dir()
    assert os.listdir(tmp_path / "made") == []  # the probe file is gone


def test_a_read_only_folder_is_refused_even_for_root():
    folder = Path("/sys")
    try:
        check_writable(folder / "crsnn-probe.json")
    except WriteError as e:
        assert "cannot write /sys/crsnn-probe.json" in str(e) and "\n" not in str(e)
    else:  # pragma: no cover - a system whose /sys accepts files
        pytest.skip("/sys is writable here")


def test_a_failed_write_replaces_nothing_and_leaves_no_temporary_file(tmp_path):
    a, b = tmp_path / "a.pt", tmp_path / "a.log.json"
    a.write_bytes(b"old checkpoint")
    b.write_text("old log")

    def disk_full(f):
        f.write(b"half of it")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(WriteError) as e:
        write_together([(b, b"new log"), (a, disk_full)])
    assert str(e.value).startswith(f"cannot write {a}: No space left on device; free some space")
    assert a.read_bytes() == b"old checkpoint" and b.read_text() == "old log"  # neither replaced
    assert leftovers(tmp_path) == []
    write_together([(a, b"new"), (b, None)])  # None removes
    assert a.read_bytes() == b"new" and not b.exists()


def test_figures_are_written_atomically_in_the_format_of_their_suffix(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1])
    save_figure(fig, tmp_path / "f.png")
    save_figure(fig, tmp_path / "f.svg")
    plt.close(fig)
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG" and b"<svg" in (tmp_path / "f.svg").read_bytes()
    assert leftovers(tmp_path) == []


# ------------------------------------------------------------------------- item 4: checked first
def test_every_command_checks_its_outputs_before_any_work(tmp_path, capsys, monkeypatch):
    (tmp_path / "file").write_text("")
    bad = tmp_path / "file" / "sub"  # a folder below a regular file: unwritable even for root
    missing = str(tmp_path / "missing")  # inputs that would fail first if outputs were checked later
    import crsnn.deploy.cli as deploy_cli

    monkeypatch.setattr(deploy_cli, "run_batch", lambda *a, **k: pytest.fail("work started before the check"))
    calls = [
        (export_main, [missing + ".pt", str(bad / "o.nir")]),
        (verify_main, [missing + ".pt", missing + ".nir", "--data", missing, "--out", str(bad / "v")]),
        (run_main, [missing + ".nir", "--data", missing, "--json", str(bad / "r.json")]),
        (report_main, [missing + ".nir", "--json", str(bad / "r.json")]),
        (data_main, ["show", missing + ".h5", "--png", str(bad / "r.png")]),
        (data_main, ["encode", missing, "--out", str(bad / "e.h5")]),
        (data_main, ["synth", "--out", str(bad), "--quiet"]),
        (run_main, [missing + ".nir", "--data", missing, "--json", "/sys/crsnn-r.json"]),
    ]
    for main, argv in calls:
        assert main(argv) == 2, argv
        captured = capsys.readouterr()
        err = captured.err.strip().splitlines()
        assert len(err) == 1 and "cannot write" in err[0] and "Traceback" not in captured.err, (argv, captured.err)
        assert "epoch" not in captured.out
    assert not (tmp_path / "file" / "sub").exists()


def test_data_show_writes_no_png_unless_asked(tmp_path, capsys, monkeypatch):
    from crsnn.train.data.layout import write_spike_file

    f = tmp_path / "test.h5"
    write_spike_file(f, [np.array([0.1, 0.2])], [np.array([3, 4])], [0], ["a"])
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    assert data_main(["show", str(f)]) == 0
    assert data_main(["show", str(f), "--no-png"]) == 0
    assert os.listdir(work) == []
    assert data_main(["show", str(f), "--png", "r.png"]) == 0
    assert os.listdir(work) == ["r.png"]
    capsys.readouterr()


# ------------------------------------------------------------------------- item 7: full disk
def _limited(limit_bytes: int):
    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
    return preexec


COMMANDS = {"crsnn-train": "crsnn.train.cli:main", "crsnn-export": "crsnn.export.cli:main",
            "crsnn-run": "crsnn.deploy.cli:run_main"}  # run by this interpreter, so tests need no installed scripts


def command(name: str) -> list[str]:
    """The console script ``name`` run by this interpreter."""
    module, fn = COMMANDS[name].split(":")
    return [sys.executable, "-c", f"import sys; from {module} import {fn}; sys.exit({fn}())"]


def run_limited(name: str, args: list[str], limit_bytes: int, cwd: Path) -> subprocess.CompletedProcess:
    """Command ``name`` with a file-size limit (``ulimit -f``): writes beyond it fail with EFBIG,
    exactly like a disk that fills up in the middle of a file."""
    return subprocess.run([*command(name), *args], capture_output=True, text=True, timeout=300, cwd=cwd,
                          preexec_fn=_limited(limit_bytes), env={**os.environ, "OMP_NUM_THREADS": "1"})


def assert_one_line_failure(proc: subprocess.CompletedProcess, prog: str, path: Path) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in proc.stderr and "HDF5" not in proc.stderr, proc.stderr[-3000:]
    assert err[0].startswith(f"{prog}: error: cannot write {path}: File too large; free some space"), err[0]


def test_full_disk_during_export_is_one_line_and_keeps_the_previous_file(tmp_path):
    ck = qat_checkpoint(tmp_path / "m.pt")
    nir_path = tmp_path / "m.nir"
    assert export_main([str(ck), str(nir_path)]) == 0
    before = nir_path.read_bytes()
    assert len(before) > 16_384
    proc = run_limited("crsnn-export", [str(ck), str(nir_path)], 16_384, tmp_path)
    assert_one_line_failure(proc, "crsnn-export", nir_path)  # not a segmentation fault (exit 139)
    assert nir_path.read_bytes() == before and leftovers(tmp_path) == []


def test_full_disk_keeps_the_previous_run_report(tmp_path):
    net = random_crsnn(np.random.default_rng(0), 12, [8], 4)
    nir_path = write_nir_atomic(to_nir(net, dt=0.01), tmp_path / "n.nir")
    report = tmp_path / "r.json"
    report.write_text(json.dumps({"accuracy": 0.5, "note": "a valid earlier report"}))
    before = report.read_bytes()
    proc = run_limited("crsnn-run", [str(nir_path), "--data", "synthetic:test=24", "--backend", "sim", "--json",
                                     str(report), "--no-progress"], 64, tmp_path)
    assert_one_line_failure(proc, "crsnn-run", report)
    assert report.read_bytes() == before and json.loads(report.read_text())["accuracy"] == 0.5
    assert leftovers(tmp_path) == []
