"""Command lines: numbers checked with their ranges, usage errors and failures in one line, help
for every option, clear messages, odd kernels only, and test data read alone (issue 11, items 5,
6, 9 and 10; crsnn-train's share is in test_train_robust.py)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import nir
import numpy as np
import pytest
import torch

from crsnn.cli_types import undocumented_options
from crsnn.deploy.cli import report_main, report_parser, run_main, run_parser, verify_main, verify_parser
from crsnn.deploy.watchdog import LavaRunError, run_with_timeout
from crsnn.export.cli import build_parser as export_parser
from crsnn.export.cli import main as export_main
from crsnn.export.nir_reader import NIRImportError, load_nir
from crsnn.export.nir_writer import to_nir, write_nir_atomic
from crsnn.models.integer import Connection, IntegerNetwork, Layer, LIFParams, Recurrence
from crsnn.sim.random_networks import random_crsnn
from crsnn.train.checkpoint import CheckpointError, load_checkpoint, read_checkpoint
from crsnn.train.data.cli import build_parser as data_parser
from crsnn.train.data.cli import main as data_main
from crsnn.train.data.layout import write_spike_file

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SYN = "synthetic:n_steps=30,n_channels=8,min_gap=2,gap_step=3,noise_rate=0.01,train=96,valid=48,test=64"


def _demo_parser():
    from crsnn.demo import build_parser

    return build_parser()


PARSERS = {"crsnn-data": data_parser, "crsnn-export": export_parser,
           "crsnn-run": run_parser, "crsnn-verify": verify_parser, "crsnn-report": report_parser,
           "demo": _demo_parser}


# ------------------------------------------------------------------------- item 6: numbers
BAD_NUMBERS = [
    (run_main, ["x.nir", "--data", SYN, "-n", "0"], "-n"),
    (run_main, ["x.nir", "--data", SYN, "-n", "-1"], "-n"),
    (run_main, ["x.nir", "--data", SYN, "--chunk", "0"], "--chunk"),
    (run_main, ["x.nir", "--data", SYN, "--max-time", "nan"], "--max-time"),
    (verify_main, ["x.pt", "x.nir", "--data", SYN, "-n", "0"], "-n"),
    (report_main, ["x.nir", "-n", "0"], "-n"),
    (report_main, ["x.nir", "--channel-group", "0"], "--channel-group"),
    (export_main, ["x.pt", "x.nir", "--check-samples", "-1"], "--check-samples"),
    (export_main, ["x.pt", "x.nir", "--check-samples", "0"], "--check-samples"),
    (export_main, ["x.pt", "x.nir", "--dt", "-0.01"], "--dt"),
    (data_main, ["synth", "--out", "d", "--per-class", "0"], "--per-class"),
    (data_main, ["synth", "--out", "d", "--test-fraction", "1"], "--test-fraction"),
    (data_main, ["show", "x.h5", "--index", "-1"], "--index"),
    (data_main, ["encode", "w", "--out", "x.h5", "--max-duration", "0"], "--max-duration"),
    (data_main, ["baseline", "d", "--C", "0"], "--C"),
]


@pytest.mark.parametrize("main, argv, option", BAD_NUMBERS, ids=[f"{m.__module__.split('.')[-2]}:{' '.join(a[-2:])}"
                                                                 for m, a, _ in BAD_NUMBERS])
def test_numeric_options_are_checked_with_their_range(main, argv, option, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"argument {option}" in err[0] and "expected" in err[0], err
    assert "Traceback" not in err[0] and "usage:" not in err[0]


# ------------------------------------------------------------------------- item 9: help texts
@pytest.mark.parametrize("name", sorted(PARSERS))
def test_every_option_has_help_and_no_default_true(name):
    parser = PARSERS[name]()
    assert undocumented_options(parser) == []
    texts = [parser.format_help()]
    for action in parser._actions:
        if hasattr(action, "choices") and isinstance(action.choices, dict):
            texts += [sub.format_help() for sub in action.choices.values()]
    for text in texts:
        flat = " ".join(text.split())
        assert "(default: True)" not in flat and "(default: False)" not in flat and "(default: None)" not in flat


def test_help_shows_real_defaults():
    text = " ".join(run_parser().format_help().split())
    assert "--chunk CHUNK samples run side by side per Lava run (default: 32)" in text
    assert "--no-progress no progress bar" in text


# ------------------------------------------------------------------------- item 9: messages
class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_malicious_pickle_is_refused_as_unsafe_and_never_run(tmp_path, capsys):
    marker = tmp_path / "pwned"
    raw, zipped = tmp_path / "raw.pt", tmp_path / "zipped.pt"
    raw.write_bytes(pickle.dumps(_Evil(marker), protocol=4))
    torch.save({"format": "crsnn-checkpoint", "x": _Evil(marker)}, zipped)
    for path in (raw, zipped):
        with pytest.raises(CheckpointError) as e:
            read_checkpoint(path)
        msg = str(e.value)
        assert "refused as unsafe" in msg and "system" in msg and "corrupt" not in msg and "\n" not in msg, msg
        assert export_main([str(path), str(tmp_path / "out.nir")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "refused as unsafe" in err[0], err
    assert not marker.exists()
    linear = tmp_path / "linear.pt"
    torch.save(torch.nn.Linear(2, 2), linear)
    with pytest.raises(CheckpointError, match="not a crsnn checkpoint, refused as unsafe to unpickle"):
        load_checkpoint(linear)
    capsys.readouterr()
    assert "Warning" not in capsys.readouterr().err  # torch's pickle-protocol warning stays quiet


def test_a_folder_given_as_a_nir_file_is_named_a_folder(tmp_path, capsys):
    with pytest.raises(NIRImportError, match="is a folder, not a NIR file"):
        load_nir(tmp_path)
    assert run_main([str(tmp_path), "--data", SYN, "--backend", "sim"]) == 2
    assert "is a folder, not a NIR file" in capsys.readouterr().err


def _raise_two_lines() -> None:
    raise ValueError("first line of the failure\nsecond line")


def test_a_failing_lava_job_is_one_line_with_the_traceback_kept_aside(capsys, monkeypatch, tmp_path):
    with pytest.raises(LavaRunError) as e:
        run_with_timeout(_raise_two_lines, timeout_s=30, what="Lava fixed-point run")
    assert str(e.value) == "Lava fixed-point run failed: ValueError: first line of the failure"
    assert "Traceback" in e.value.details and "second line" in e.value.details
    import crsnn.deploy.cli as deploy_cli

    def failing_batch(*a, **k):
        raise e.value

    net = random_crsnn(np.random.default_rng(0), 12, [6], 4)
    path = write_nir_atomic(to_nir(net, dt=0.01), tmp_path / "n.nir")
    monkeypatch.setattr(deploy_cli, "run_batch", failing_batch)
    monkeypatch.delenv("CRSNN_DEBUG", raising=False)
    assert run_main([str(path), "--data", "synthetic:test=8", "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["crsnn-run: error: Lava fixed-point run failed: ValueError: first line of the failure"]
    monkeypatch.setenv("CRSNN_DEBUG", "1")
    assert run_main([str(path), "--data", "synthetic:test=8", "--no-progress"]) == 1
    assert "Traceback" in capsys.readouterr().err


# ------------------------------------------------------------------------- item 10: odd kernels
def test_even_kernels_are_refused_with_the_reason():
    even = IntegerNetwork(n_in=2, hidden=[Layer(Connection(np.ones((3, 2), np.int64) * 2), LIFParams(3, vth=4),
                                               Recurrence(delays=[1, 2, 3], kernel=[2, 2, 2, 2]))],
                          readout=Layer(Connection(np.ones((2, 3), np.int64) * 2), LIFParams(2, vth=131071)))
    with pytest.raises(ValueError, match="even size 4 cannot be exported.*odd kernel size"):
        to_nir(even, dt=0.01)
    g = to_nir(random_crsnn(np.random.default_rng(0), 4, [6], 2, kernel=3), dt=0.01)
    g.nodes["conv_0"] = nir.Conv1d(input_shape=6, weight=np.ones((1, 1, 4)), stride=1, padding="same", dilation=1,
                                   groups=1, bias=np.zeros(1))
    g.metadata = {}  # another tool's graph
    with pytest.raises(NIRImportError, match="even kernel size 4"):
        load_nir(g)


# ------------------------------------------------------------------------- item 5: test data alone
def _spike_file(path: Path, n: int, seed: int, late: bool = False) -> None:
    """``n`` random samples on 700 channels (classes 0..3); with ``late``, extra spikes after 0.3 s."""
    rng = np.random.default_rng(seed)
    times, units = [], []
    for i in range(n):
        k = int(rng.integers(20, 60))
        t = rng.uniform(0, 0.3, k)
        u = rng.integers(0, 700, k)
        if late:
            t = np.concatenate([t, rng.uniform(0.31, 0.99, 300)])
            u = np.concatenate([u, rng.integers(0, 700, 300)])
        times.append(t)
        units.append(u)
    write_spike_file(path, times, units, np.arange(n) % 4, ["a", "b", "c", "d"])


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """A NIR network expecting 140 inputs (channel groups of 5) and a folder with a valid test
    file next to a broken training file."""
    d = tmp_path_factory.mktemp("deployed")
    net = random_crsnn(np.random.default_rng(3), 140, [10], 4, input_rate=0.2)
    meta = {"data.dt": 0.01, "data.max_time": 0.3, "data.channel_group": 5}
    nir_path = write_nir_atomic(to_nir(net, dt=0.01, metadata=meta), d / "n.nir")
    folder = d / "data"
    folder.mkdir()
    _spike_file(folder / "test.h5", 12, 0)
    (folder / "train.h5").write_bytes(b"a broken training file")
    return nir_path, folder


def test_deploy_commands_read_only_the_test_file(deployed, tmp_path, capsys):
    nir_path, folder = deployed
    for data in (folder, folder / "test.h5"):
        assert run_main([str(nir_path), "--data", str(data), "--backend", "sim", "--no-progress"]) == 0
        assert capsys.readouterr().out.strip().endswith("on sim") is True
        assert report_main([str(nir_path), "--data", str(data)]) == 0
        assert "synaptic ops per sample" in capsys.readouterr().out
    single = tmp_path / "train.h5"  # a single file is the test set, whatever its name
    _spike_file(single, 6, 1)
    assert run_main([str(nir_path), "--data", str(single), "--backend", "sim", "--no-progress"]) == 0
    assert "6 samples" in capsys.readouterr().out
    only_train = tmp_path / "only_train"
    only_train.mkdir()
    _spike_file(only_train / "train.h5", 4, 2)
    assert run_main([str(nir_path), "--data", str(only_train), "--backend", "sim", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no test file" in err[0]
