"""The CS-GRU checkpoint as the deployment artifact: crsnn-export refuses it for NIR, --portable
and --format netx (exit 2, one line naming the layer, the reason and what to use); crsnn-verify
MODEL.pt runs it on Lava with 0 mismatching spikes against the integer simulator; crsnn-run takes
it on sim and lava-cpu with the same accuracy, and refuses --backend loihi2 saying what Loihi 2
would need; crsnn-report lists its gate synapses and the programmable-neuron requirement."""

from __future__ import annotations

import json

import pytest

from crsnn.deploy.cli import report_main, run_main, verify_main
from crsnn.export.cli import main as export_main
from crsnn.train.cli import main as train_main

DATA = "synthetic:train=96,valid=32,test=48"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    ck = tmp_path_factory.mktemp("csgru") / "csgru.pt"
    assert train_main(["--data", DATA, "--model", "csgru", "--hidden", "12", "12", "--epochs", "2", "--qat-start", "1",
                       "--batch-size", "32", "--out", str(ck), "--no-progress"]) == 0
    return ck


@pytest.mark.parametrize("extra, why", [([], "NIR has no gated neuron"), (["--portable"], "no NIR importer"),
                                        (["--format", "netx"], "netx format has no gated neuron")])
def test_export_refuses_csgru_with_the_reason(checkpoint, tmp_path, capsys, extra, why):
    out = tmp_path / ("o.net.h5" if extra[1:] == ["netx"] else "o.nir")
    assert export_main([str(checkpoint), str(out), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "hidden layer 0 is a CS-GRU layer" in err and why in err
    assert "pass MODEL.pt to crsnn-run" in err and not out.exists()


@pytest.mark.lava
def test_verify_the_checkpoint_on_lava(checkpoint, tmp_path, capsys):
    assert verify_main([str(checkpoint), "--data", DATA, "-n", "6", "--out", str(tmp_path / "v"), "--no-progress"]) == 0
    assert "lava-vs-integer: 0 mismatching spikes, 0 mismatching readout values" in capsys.readouterr().out
    rep = json.loads((tmp_path / "v.json").read_text())
    assert rep["mismatching_spikes"] == 0 and rep["accuracy"]["float"] is not None


@pytest.mark.lava
def test_run_sim_and_lava_agree_and_loihi2_says_what_it_needs(checkpoint, tmp_path, capsys):
    acc = {}
    for backend in ("sim", "lava-cpu"):
        js = tmp_path / f"{backend}.json"
        assert run_main([str(checkpoint), "--data", DATA, "-n", "6", "--backend", backend, "--json", str(js)]) == 0
        acc[backend] = json.loads(js.read_text())["confusion"]
    assert acc["sim"] == acc["lava-cpu"]
    capsys.readouterr()
    assert run_main([str(checkpoint), "--data", DATA, "--backend", "loihi2"]) == 2
    err = capsys.readouterr().err
    assert "programmable (microcode) neuron" in err and "multiplies" in err and "--backend lava-cpu" in err


def test_report_counts_gates_and_names_the_neuron_it_needs(checkpoint, tmp_path, capsys):
    js = tmp_path / "r.json"
    assert report_main([str(checkpoint), "--json", str(js)]) == 1  # does not fit Loihi 2's public neurons
    out = capsys.readouterr().out
    assert "csgru k=3" in out and "CS-GRU: a CS-GRU layer needs a programmable (microcode) neuron model" in out
    rep = json.loads(js.read_text())
    layer = rep["layers"][0]
    assert not layer["fits"] and layer["rec_synapses"] > 2 * 12  # the three conv recurrences
