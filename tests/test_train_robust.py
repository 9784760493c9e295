"""crsnn-train, hardened (issue 11): --resume continues an interrupted run exactly; --out is
protected unless --force; an interrupted run leaves a checkpoint, per-epoch checkpoint and log of
the same run (item 8); --evaluate bins the data as the checkpoint was trained (item 2); outputs are
checked at start and a full disk is one line (items 4, 7); numbers, kernel and help (items 6, 9, 10)."""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from crsnn.cli_types import undocumented_options
from crsnn.train.checkpoint import load_checkpoint
from crsnn.train.cli import build_parser
from crsnn.train.cli import main as train_main
from crsnn.train.data.layout import write_spike_file

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SYN = "synthetic:n_steps=30,n_channels=8,min_gap=2,gap_step=3,noise_rate=0.01,train=96,valid=48,test=64"
RUN = ["--data", SYN, "--hidden", "16", "12", "--kernel", "3", "--epochs", "6", "--qat-start", "3",
       "--batch-size", "16", "--lr", "5e-3", "--delay-init", "uniform:0:6", "--sigma0", "2", "--dropout", "0.3",
       "--threads", "1", "--no-progress"]
TRAIN = "import sys; from crsnn.train.cli import main; sys.exit(main())"


def _train(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", TRAIN, *args], capture_output=True, text=True, timeout=300, cwd=cwd,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def _state(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def _same_weights(a: Path, b: Path) -> bool:
    sa, sb = _state(a)["state_dict"], _state(b)["state_dict"]
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("schedule", ["cosine", pytest.param("onecycle", marks=pytest.mark.slow)])
def test_an_interrupted_and_resumed_run_ends_with_the_same_weights(tmp_path, schedule):
    args = [*RUN, "--schedule", schedule]
    full = _train([*args, "--out", "full.pt"], tmp_path)
    assert full.returncode == 0, full.stderr[-2000:]
    # the same run, stopped by SIGTERM once epoch 2 (float; QAT starts at epoch 4) is saved
    proc = subprocess.Popen([sys.executable, "-c", TRAIN, *args, "--out", "cut.pt"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    log = tmp_path / "cut.log.json"
    t0 = time.monotonic()
    while time.monotonic() - t0 < 120:
        try:
            if json.loads(log.read_text())["epochs_done"] >= 2:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    done = _state(tmp_path / "cut.last.pt")["train_state"]["epoch"]
    assert 2 <= done < 6
    resumed = _train(["--resume", "cut.last.pt"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming cut.last.pt after epoch {done} of 6" in resumed.stdout
    assert _same_weights(tmp_path / "full.pt", tmp_path / "cut.pt")  # the best checkpoint
    assert _same_weights(tmp_path / "full.last.pt", tmp_path / "cut.last.pt")  # the last epoch
    a, b = (json.loads((tmp_path / f"{n}.log.json").read_text()) for n in ("full", "cut"))
    keys = ("epoch", "phase", "sigma", "lr", "train_loss", "train_acc", "valid_loss", "valid_acc", "best")
    assert [{k: e[k] for k in keys} for e in a["epochs"]] == [{k: e[k] for k in keys} for e in b["epochs"]]
    assert a["test"] == b["test"] and a["best_epoch"] == b["best_epoch"]
    assert full.stdout.strip().splitlines()[-1] == resumed.stdout.strip().splitlines()[-1]
    meta = _state(tmp_path / "cut.pt")["metadata"]
    assert meta["resumed"][0]["from_epoch"] == done and meta["argv"] == [*args, "--out", "cut.pt"]


def test_resume_keeps_the_run_s_options_and_needs_its_training_state(tmp_path, capsys):
    out = tmp_path / "m.pt"
    assert train_main([*RUN, "--epochs", "2", "--qat-start", "1", "--out", str(out)]) == 0
    last = tmp_path / "m.last.pt"
    capsys.readouterr()
    assert train_main(["--resume", str(last), "--lr", "0.1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("crsnn-train: error: --lr 0.1: the run in") and "0.005" in err[0]
    assert train_main(["--resume", str(out)]) == 2
    assert "holds no training state (a best-epoch checkpoint); resume from the per-epoch checkpoint " + str(last) \
        in capsys.readouterr().err
    # a finished run: --resume only repeats the final evaluation; the same option value is fine
    before = _state(out)["state_dict"]
    assert train_main(["--resume", str(last), "--batch-size", "16", "--threads", "1"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("test accuracy: float")
    assert all(torch.equal(before[k], v) for k, v in _state(out)["state_dict"].items())


def test_an_existing_checkpoint_is_not_overwritten_without_force(tmp_path, capsys):
    out = tmp_path / "m.pt"
    small = ["--data", SYN, "--hidden", "8", "--epochs", "1", "--qat-start", "0", "--no-batchnorm", "--threads", "1",
             "--no-progress", "--out", str(out)]
    assert train_main(small) == 0
    files = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert sorted(files) == ["m.last.pt", "m.log.json", "m.pt"]
    capsys.readouterr()
    assert train_main([*small, "--seed", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{out} already exists (a checkpoint of another run: epoch 1 of 1, written" in err[0]
    assert "replace it with --force, or choose another --out" in err[0]
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == files  # untouched
    (tmp_path / "m.pt").unlink()  # only the log (or the per-epoch checkpoint) left: still another run's
    assert train_main([*small, "--seed", "1"]) == 2
    assert "m.last.pt already exists" in capsys.readouterr().err
    old_run = json.loads(files["m.log.json"])["run_id"]
    assert train_main([*small, "--seed", "1", "--force"]) == 0
    new_log = json.loads((tmp_path / "m.log.json").read_text())
    assert new_log["run_id"] != old_run and _state(out)["metadata"]["run_id"] == new_log["run_id"]


def _stop_after(cmd: list[str], cwd: Path, log: Path, epochs: int, env: dict) -> int:
    """Run ``cmd`` in its own process group; SIGTERM the group once ``log`` has ``epochs`` epochs."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 300 and proc.poll() is None:
        try:
            if json.loads(log.read_text())["epochs_done"] >= epochs:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGTERM)
    proc.communicate(timeout=120)
    return _state(log.with_name(log.name.replace(".log.json", ".last.pt")))["train_state"]["epoch"]


@pytest.mark.slow
def test_a_resumed_two_process_ddp_run_ends_with_the_same_weights(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ddp = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "crsnn.train"]
    args = [*RUN, "--device", "cpu"]
    full = subprocess.run([*ddp, *args, "--out", "full.pt"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600, env=env)
    assert full.returncode == 0, full.stderr[-2000:]
    done = _stop_after([*ddp, *args, "--out", "cut.pt"], tmp_path, tmp_path / "cut.log.json", 2, env)
    assert 2 <= done < 6
    resumed = subprocess.run([*ddp, "--resume", "cut.last.pt"], cwd=tmp_path, capture_output=True, text=True,
                             timeout=600, env=env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert _same_weights(tmp_path / "full.pt", tmp_path / "cut.pt")
    assert _same_weights(tmp_path / "full.last.pt", tmp_path / "cut.last.pt")


# ------------------------------------------------------------------------- item 8: interrupted runs
SYN_LONG = "synthetic:n_steps=30,n_channels=8,min_gap=2,gap_step=3,noise_rate=0.01,train=192,valid=48,test=64"


def _log(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


@pytest.mark.parametrize("stop_after", [1, 4], ids=["float-phase", "qat-phase"])
def test_interrupted_training_leaves_checkpoint_and_log_of_the_same_run(tmp_path, stop_after):
    out = tmp_path / "m.pt"
    (tmp_path / "m.log.json").write_text('{"from": "an older run"}')  # replaced: --force
    proc = subprocess.Popen([sys.executable, "-c", TRAIN, "--data", SYN_LONG, "--out", str(out), "--hidden", "16",
                             "12", "--epochs", "40", "--qat-start", "3", "--batch-size", "16", "--threads", "1",
                             "--no-progress", "--force"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    log_path = tmp_path / "m.log.json"
    t0 = time.monotonic()
    while (_log(log_path) or {}).get("epochs_done", 0) < stop_after:
        assert time.monotonic() - t0 < 120 and proc.poll() is None, "training did not reach the epoch"
        time.sleep(0.02)
    time.sleep(0.05)
    os.kill(proc.pid, signal.SIGTERM)
    rc = proc.wait(timeout=20)
    err = proc.stderr.read().strip().splitlines()
    assert rc == 143 and len(err) == 1, err
    last_pt = tmp_path / "m.last.pt"
    assert err[0] == f"crsnn-train: interrupted by SIGTERM; continue with: crsnn-train --resume {last_pt}"
    log = _log(log_path)
    last = _state(tmp_path / "m.last.pt")
    done = log["epochs_done"]
    assert last["train_state"]["epoch"] == done and last["train_state"]["run_id"] == log["run_id"]
    assert [e["valid_loss"] for e in last["history"]] == [e["valid_loss"] for e in log["epochs"]]
    if log["checkpoint"] is None:  # no best epoch yet (still float epochs): no checkpoint at all
        assert done < 4 and not out.exists()
    else:
        assert log["checkpoint"] == str(out) and out.exists()
        best = _state(out)["metadata"]
        assert best["run_id"] == log["run_id"] and best["epoch"] == log["best_epoch"] <= done
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["m.log.json", "m.last.pt"] +
                                                                  (["m.pt"] if out.exists() else []))


# ------------------------------------------------------------------------- items 4, 7: outputs
def test_an_unwritable_out_fails_at_start(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    t0 = time.monotonic()
    assert train_main(["--data", str(tmp_path / "missing"), "--out", str(tmp_path / "file" / "sub" / "m.pt")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and time.monotonic() - t0 < 5
    assert captured.err.strip().splitlines() == [f"crsnn-train: error: cannot write {tmp_path}/file/sub/m.pt: "
                                                 f"{tmp_path}/file is a file, not a folder; choose another path"]


def test_outputs_get_the_usual_mode(tmp_path):
    old = os.umask(0o022)
    try:
        assert train_main(["--data", SYN, "--hidden", "8", "--epochs", "1", "--qat-start", "-1", "--threads", "1",
                           "--no-progress", "--out", str(tmp_path / "m.pt")]) == 0
    finally:
        os.umask(old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.last.pt", "m.log.json", "m.pt"]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in tmp_path.iterdir())


def _limited(limit_bytes: int):
    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
    return preexec


def test_full_disk_during_training_is_one_line_and_half_writes_nothing(tmp_path):
    out = tmp_path / "m.pt"
    proc = subprocess.run([sys.executable, "-c", TRAIN, "--data", SYN, "--out", str(out), "--hidden", "16", "12",
                           "--epochs", "2", "--qat-start", "1", "--no-progress", "--threads", "1"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path, preexec_fn=_limited(8192),
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2, proc.stderr[-3000:]
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert err[0].startswith(f"crsnn-train: error: cannot write {tmp_path}/m.last.pt: File too large; free some space")
    assert os.listdir(tmp_path) == []  # no checkpoint, log or temporary file of the failed epoch


# ------------------------------------------------------------------------- items 6, 9, 10: options
BAD = [("--batch-size", "0"), ("--eval-batch-size", "0"), ("--vth", "0"), ("--lr", "nan"), ("--lr", "-1"),
       ("--lr-delay", "inf"), ("--dropout", "2"), ("--rec-dropout", "1"), ("--max-train", "0"), ("--epochs", "0"),
       ("--tau", "0"), ("--sigma-gamma", "0"), ("--input-bits", "9"), ("--valid-fraction", "1"),
       ("--threads", "-1"), ("--seed", "-1"), ("--dt", "0"), ("--qat-start", "-2"), ("--augment-mix", "1.5"),
       ("--hidden", "0"), ("--kernel", "4")]


@pytest.mark.parametrize("option, value", BAD, ids=[f"{o} {v}" for o, v in BAD])
def test_numeric_options_are_checked_with_their_range(option, value, capsys):
    with pytest.raises(SystemExit) as exc:
        train_main(["--data", SYN, option, value])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"argument {option}" in err[0] and "expected" in err[0], err
    assert err[0].endswith("(see crsnn-train --help)")


def test_an_even_kernel_is_refused_with_the_reason(capsys):
    with pytest.raises(SystemExit):
        train_main(["--data", SYN, "--kernel", "4"])
    err = capsys.readouterr().err
    assert "expected an odd number, got 4" in err and "NIR tools disagree" in err


def test_qat_start_must_lie_inside_the_run(tmp_path, capsys):
    assert train_main(["--data", SYN, "--epochs", "5", "--qat-start", "99", "--out", str(tmp_path / "m.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["crsnn-train: error: --qat-start 99 is not below --epochs 5 (epochs are 0-based; use -1 for "
                   "float training only)"]
    assert os.listdir(tmp_path) == []


def test_every_option_has_help_and_no_default_true():
    parser = build_parser()
    assert undocumented_options(parser) == []
    text = " ".join(parser.format_help().split())
    assert "(default: True)" not in text and "(default: False)" not in text and "(default: None)" not in text
    assert "--batch-size BATCH_SIZE training batch size per process (default: 32)" in text
    assert "--no-batchnorm no BatchNorm after the linear maps --dropout" in text


def test_float_only_training_says_so(tmp_path, capsys):
    assert train_main(["--data", SYN, "--hidden", "8", "--epochs", "1", "--qat-start", "-1", "--out",
                       str(tmp_path / "f.pt"), "--no-progress", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "no QAT: 1 float epochs (the checkpoint is float-only)" in out and "never" not in out


# ------------------------------------------------------------------------- item 2: evaluate binning
def _spike_file(path: Path, n: int, seed: int) -> None:
    """``n`` random samples on 700 channels (classes 0..3) with many extra spikes after 0.3 s."""
    rng = np.random.default_rng(seed)
    times, units = [], []
    for i in range(n):
        k = int(rng.integers(20, 60))
        times.append(np.concatenate([rng.uniform(0, 0.3, k), rng.uniform(0.31, 0.99, 300)]))
        units.append(rng.integers(0, 700, k + 300))
    write_spike_file(path, times, units, np.arange(n) % 4, ["a", "b", "c", "d"])


@pytest.fixture(scope="module")
def trained_short(tmp_path_factory):
    """A checkpoint trained on the first 0.3 s of samples that have many more spikes later."""
    d = tmp_path_factory.mktemp("evaluate")
    data = d / "data"
    data.mkdir()
    _spike_file(data / "train.h5", 48, 10)
    _spike_file(data / "test.h5", 24, 11)
    out = d / "m.pt"
    assert train_main(["--data", str(data), "--out", str(out), "--max-time", "0.3", "--channel-group", "5",
                       "--hidden", "12", "--epochs", "2", "--qat-start", "1", "--batch-size", "16",
                       "--valid-fraction", "0.25", "--no-progress", "--threads", "1"]) == 0
    return out, data


def _float_loss(text: str) -> float:
    return float(re.search(r"^float\s+test loss ([0-9.]+)", text, re.M).group(1))


def test_evaluate_bins_the_data_as_the_checkpoint_was_trained(trained_short, capsys):
    out, data = trained_short
    capsys.readouterr()
    test = load_checkpoint(out)[1]["metadata"]["test"]
    assert train_main(["--evaluate", str(out), "--data", str(data), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "binning: dt 0.01 s, max-time 0.3 s, channel-group 5" in text
    assert _float_loss(text) == pytest.approx(test["float"]["loss"], abs=1e-6)
    assert f"float {100 * test['float']['acc']:.2f}% | integer {100 * test['integer']['acc']:.2f}%" in text
    # the test file alone is enough
    assert train_main(["--evaluate", str(out), "--data", str(data / "test.h5"), "--no-progress"]) == 0
    assert _float_loss(capsys.readouterr().out) == pytest.approx(test["float"]["loss"], abs=1e-6)
    # an explicit option wins (and here changes the result: the late spikes count)
    assert train_main(["--evaluate", str(out), "--data", str(data), "--max-time", "1.0", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "max-time 1.0 s" in text and _float_loss(text) != pytest.approx(test["float"]["loss"], abs=1e-6)
    # a different input size is an error, not a silent re-binning
    assert train_main(["--evaluate", str(out), "--data", str(data), "--channel-group", "7", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the network has 140 inputs" in err[0] and "--channel-group 7 has 100" in err[0]


def test_a_forced_run_stopped_before_its_first_epoch_leaves_the_old_run_intact(tmp_path):
    out = tmp_path / "m.pt"
    assert train_main(["--data", SYN, "--hidden", "8", "--epochs", "1", "--qat-start", "0", "--no-batchnorm",
                       "--threads", "1", "--no-progress", "--out", str(out)]) == 0
    old = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    big = "synthetic:n_steps=30,n_channels=8,min_gap=2,gap_step=3,noise_rate=0.01,train=4000,valid=48,test=64"
    proc = subprocess.Popen([sys.executable, "-c", TRAIN, "--data", big, "--out", str(out), "--hidden", "16",
                             "--epochs", "5", "--threads", "1", "--no-progress", "--force"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    for line in proc.stdout:  # stop it as soon as training starts
        if line.startswith("training on"):
            break
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert err.strip().splitlines() == ["crsnn-train: interrupted by SIGTERM"]  # no hint to resume another run
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == old  # the previous run, untouched
