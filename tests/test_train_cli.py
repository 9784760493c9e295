"""crsnn-train end to end (tiny runs), the checkpoint format and its loading API, one-line
errors, parameter counts, SHD-layout files through crsnn.train.data, and a 2-process DDP run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from crsnn.models.network import ModelConfig, build_model, parameter_counts
from crsnn.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from crsnn.train.cli import main
from crsnn.train.datasets import load_data
from crsnn.train.loop import evaluate, log_path_for

SYN = "synthetic:n_steps=30,n_channels=8,min_gap=2,gap_step=3,noise_rate=0.01,train=96,valid=48,test=64"
TINY = ["--hidden", "16", "12", "--kernel", "3", "--epochs", "2", "--qat-start", "1", "--batch-size", "32",
        "--lr", "5e-3", "--delay-init", "uniform:0:6", "--sigma0", "2", "--threads", "1", "--no-progress"]
LAST_LINE = re.compile(r"^test accuracy: float (\d+\.\d\d)% \| integer (\d+\.\d\d)%$")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "model.pt"
    import io
    from contextlib import redirect_stdout

    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = main(["--data", SYN, "--model", "crsnn", "--out", str(out), "--seed", "3", *TINY])
    return rc, buf.getvalue(), out


def test_cli_trains_and_ends_with_the_test_accuracy_line(tiny_run):
    rc, stdout, out = tiny_run
    assert rc == 0
    lines = stdout.strip().splitlines()
    m = LAST_LINE.match(lines[-1])
    assert m, lines[-1]
    assert "QAT forward vs integer simulator: identical loss and accuracy" in stdout
    # the printed integer accuracy is the integer simulator's on the reloaded best checkpoint
    model, info = load_checkpoint(out)
    data = load_data(SYN, seed=3)
    assert float(m.group(2)) == pytest.approx(100 * evaluate(model, data["test"], "integer").acc, abs=0.006)
    assert float(m.group(1)) == pytest.approx(100 * evaluate(model, data["test"], "float").acc, abs=0.006)


def test_checkpoint_is_plain_data_and_reloads_with_weights_only(tiny_run):
    _, _, out = tiny_run
    ckpt = torch.load(out, weights_only=True)
    assert ckpt["format"] == "crsnn-checkpoint" and ckpt["version"] == 1
    assert set(ckpt) >= {"config", "state_dict", "quant", "metadata", "history"}
    assert ckpt["quant"]["qat"] is True
    meta = ckpt["metadata"]
    assert meta["dt"] == pytest.approx(0.01) and meta["n_in"] == 8 and meta["input_message_bits"] == 2
    assert meta["phase"] == "qat" and set(meta["test"]) == {"float", "qat", "integer"}
    assert meta["test"]["qat"] == meta["test"]["integer"]
    model, info = load_checkpoint(out)
    assert not model.training and model.qat and info["quantized"]
    assert info["dt"] == pytest.approx(0.01) and info["n_in"] == 8 and info["input_message_bits"] == 2
    assert info["config"]["model"] == "crsnn" and info["config"]["hidden"] == [16, 12]
    x = torch.randint(0, 4, (3, 30, 8))
    assert model.forward_float(x).shape == (3, 30, 4)
    assert model.forward_qat(x).shape == (3, 30, 4)
    model.to_integer().validate()


def test_log_json_has_every_epoch_next_to_the_checkpoint(tiny_run):
    _, _, out = tiny_run
    log = json.loads(log_path_for(out).read_text())
    assert log_path_for(out).parent == out.parent
    assert [e["epoch"] for e in log["epochs"]] == [1, 2]
    assert [e["phase"] for e in log["epochs"]] == ["float", "qat"]
    for e in log["epochs"]:
        assert {"train_loss", "train_acc", "valid_loss", "valid_acc", "samples_per_s", "sigma", "delays0"} <= set(e)
    assert log["test"]["integer"]["acc"] == log["test"]["qat"]["acc"]


# ---------------------------------------------------------------- errors
def _save_tiny_checkpoint(path: Path, qat: bool) -> None:
    model = build_model(ModelConfig(n_in=8, n_out=4, hidden=[6], input_message_bits=2))
    model.set_qat(qat)
    save_checkpoint(path, model, {"epoch": 0})


def test_load_checkpoint_errors_are_one_line(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a checkpoint at all" * 10)
    truncated = tmp_path / "truncated.pt"
    _save_tiny_checkpoint(tmp_path / "ok.pt", qat=True)
    truncated.write_bytes((tmp_path / "ok.pt").read_bytes()[:300])
    foreign = tmp_path / "foreign.pt"
    torch.save({"weight": torch.zeros(3)}, foreign)
    pickled = tmp_path / "pickled.pt"
    torch.save(torch.nn.Linear(2, 2), pickled)
    cases = {tmp_path / "missing.pt": "no such file", garbage: "corrupt", truncated: "corrupt",
             foreign: "not a crsnn checkpoint", pickled: "not a crsnn checkpoint", tmp_path: "directory"}
    for path, words in cases.items():
        with pytest.raises(CheckpointError) as e:
            load_checkpoint(path)
        assert words in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_float_only_checkpoint_is_refused_where_integer_state_is_required(tmp_path):
    path = tmp_path / "float.pt"
    _save_tiny_checkpoint(path, qat=False)
    model, info = load_checkpoint(path)  # fine for float use
    assert info["quantized"] is False
    with pytest.raises(CheckpointError, match="float-only"):
        load_checkpoint(path, require_integer=True)


def test_tampered_weights_do_not_match_the_stored_integer_state(tmp_path):
    path = tmp_path / "q.pt"
    _save_tiny_checkpoint(path, qat=True)
    ckpt = torch.load(path, weights_only=True)
    ckpt["state_dict"]["layers.0.weight"] = ckpt["state_dict"]["layers.0.weight"] * 3
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match="does not match"):
        load_checkpoint(path)


def test_cli_reports_a_corrupt_checkpoint_in_one_line_without_traceback(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage" * 50)
    proc = subprocess.run([sys.executable, "-m", "crsnn.train", "--evaluate", str(bad), "--data", SYN],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("crsnn-train: error:") and "corrupt" in err[0]


def test_cli_reports_a_foreign_checkpoint_and_bad_data_in_one_line(tmp_path, capsys):
    foreign = tmp_path / "foreign.pt"
    torch.save({"state": torch.ones(2)}, foreign)
    assert main(["--evaluate", str(foreign), "--data", SYN]) == 2
    assert main(["--data", str(tmp_path / "nowhere"), "--epochs", "1"]) == 2
    assert main(["--data", "synthetic:bogus=1", "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("crsnn-train: error:") for line in err)
    assert "not a crsnn checkpoint" in err[0]


# ---------------------------------------------------------------- counts
def test_summary_counts_crsnn_and_delrec_recurrent_parameters(capsys):
    assert main(["--summary", "--model", "crsnn", "--hidden", "256", "256", "--kernel", "3"]) == 0
    out = capsys.readouterr().out
    assert "259" in out and "65,792" in out and "254.0x" in out
    c = parameter_counts(ModelConfig(n_in=140, n_out=20, hidden=[256, 256], model="delrec", kernel=3))
    assert [r["recurrent"] for r in c["layers"][:2]] == [65792, 65792]
    c = parameter_counts(ModelConfig(n_in=140, n_out=20, hidden=[256, 256], model="crsnn", kernel=3))
    assert [r["recurrent"] for r in c["layers"][:2]] == [259, 259]
    assert c["total"] == sum(p.numel() for p in build_model(
        ModelConfig(n_in=140, n_out=20, hidden=[256, 256], model="crsnn", kernel=3)).parameters() if p.requires_grad)


# ---------------------------------------------------------------- SHD-layout files
def test_cli_trains_on_shd_layout_files_through_the_data_package(tmp_path, capsys):
    from crsnn.train.data.layout import write_spike_file
    from crsnn.train.synthetic import DelayTask

    task = DelayTask(n_steps=30, n_channels=8, min_gap=2, gap_step=3, noise_rate=0.01)
    rng = np.random.default_rng(0)
    for split, n in (("train", 80), ("test", 40)):
        x, y = task.generate(n, seed=len(split))
        times, units = [], []
        for sample in x:  # counts -> spike events (channel c -> cochlea channel 40 c + 1), dt = 10 ms
            t_idx, ch = np.nonzero(sample)
            reps = sample[t_idx, ch]
            times.append(np.repeat(t_idx, reps) * 0.01 + rng.uniform(0.001, 0.009, reps.sum()))
            units.append(np.repeat(ch * 40 + 1, reps))
        write_spike_file(tmp_path / f"{split}.h5", times, units, y, [f"gap{g}" for g in task.gaps])
    out = tmp_path / "m.pt"
    rc = main(["--data", str(tmp_path), "--out", str(out), "--dt", "0.01", "--max-time", "0.3",
               "--channel-group", "5", "--valid-fraction", "0.25", *TINY])
    stdout = capsys.readouterr().out
    assert rc == 0
    assert LAST_LINE.match(stdout.strip().splitlines()[-1])
    _, info = load_checkpoint(out, require_integer=True)
    assert info["n_in"] == 140 and info["dt"] == pytest.approx(0.01)
    assert info["metadata"]["n_steps"] == 30 and info["metadata"]["class_names"][0] == "gap2"


# ---------------------------------------------------------------- DDP
def test_two_process_gloo_ddp_run_on_cpu(tmp_path):
    out = tmp_path / "ddp.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # python -m torch.distributed.run is torchrun, always installed with torch: no skip
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "crsnn.train", "--data", SYN,
                           "--out", str(out), "--device", "cpu", *TINY], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert LAST_LINE.match(lines[-1]), proc.stdout[-1000:]
    assert sum(bool(LAST_LINE.match(ln)) for ln in lines) == 1  # printed by rank 0 only
    _, info = load_checkpoint(out, require_integer=True)
    assert info["metadata"]["world_size"] == 2
    log = json.loads(log_path_for(out).read_text())
    assert len(log["epochs"]) == 2
    # every validation sample counted once over both ranks: accuracy is a multiple of 1/48
    assert all(abs(e["valid_acc"] * 48 - round(e["valid_acc"] * 48)) < 1e-9 for e in log["epochs"])
