"""``crsnn-verify GRAPH.nir`` without a checkpoint: another tool's graph (or a crsnn-import output)
checked on Lava against the integer simulator, every spike and readout value."""

from __future__ import annotations

import json

import pytest

from test_import_snntorch import DT, N_IN, export, snntorch_net

from crsnn.deploy.cli import verify_main
from crsnn.export.import_cli import main as import_main

DATA = f"synthetic:train=4,valid=4,test=4,n_channels={N_IN},noise_rate=0.1"


@pytest.mark.lava
def test_verify_without_checkpoint_runs_a_foreign_graph_on_lava_bit_exact(tmp_path, capsys):
    src = tmp_path / "snn.nir"
    export(snntorch_net("leaky"), src)
    rc = verify_main([str(src), "--data", DATA, "-n", "4", "--graph-dt", str(DT), "--max-time", "1",
                      "--channel-group", "1", "--out", str(tmp_path / "v"), "--no-progress"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert rc == 0, last
    assert last.startswith("lava-vs-integer: 0 mismatching spikes, 0 mismatching readout values over 4 samples; "
                           "accuracy integer ")
    rep = json.loads((tmp_path / "v.json").read_text())
    assert rep["checkpoint"] is None and rep["accuracy"]["float"] is None
    assert rep["binning"] == {"dt": DT, "max_time": 1.0, "channel_group": 1}
    assert sum(rep["spikes_per_layer"]) > 200  # the comparison is not vacuous
    # a crsnn-import output imported with --data carries its binning: no binning options needed
    out = tmp_path / "snn_crsnn.nir"
    assert import_main([str(src), str(out), "--dt", str(DT), "--data", DATA, "--samples", "4"]) == 0
    capsys.readouterr()
    assert verify_main([str(out), "--data", DATA, "-n", "4", "--out", str(tmp_path / "w"), "--no-progress"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("lava-vs-integer: 0 mismatching spikes, 0 ")


def test_verify_without_checkpoint_needs_the_binning(tmp_path, capsys):
    src = tmp_path / "snn.nir"
    export(snntorch_net("leaky"), src)
    rc = verify_main([str(src), "--data", DATA, "--graph-dt", str(DT), "--out", str(tmp_path / "v")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "without a checkpoint the data binning must be given or be in the graph's metadata" in err
    assert "--max-time SECONDS --channel-group N" in err and "--dt SECONDS" not in err  # dt: one graph step
    assert not (tmp_path / "v.json").exists()
    # a foreign graph still needs its time step
    assert verify_main([str(src), "--data", DATA, "--max-time", "1", "--channel-group", "1",
                        "--out", str(tmp_path / "v")]) == 2
    assert "--graph-dt SECONDS" in capsys.readouterr().err


def test_graph_imported_in_steps_states_no_step_length(tmp_path, capsys):
    """``crsnn-import --time-unit steps`` without ``--dt``: the output names no step length (no
    ``dt`` in its metadata), so a check without a checkpoint asks for the binning instead of
    binning the data at a made-up step."""
    import nir

    src, out = tmp_path / "snn.nir", tmp_path / "steps_crsnn.nir"
    export(snntorch_net("leaky"), src)
    g = nir.read(str(src))
    for node in g.nodes.values():  # the same graph with its time constants counted in steps
        if hasattr(node, "tau"):
            node.tau = node.tau / DT
    nir.write(str(tmp_path / "steps.nir"), g)
    assert import_main([str(tmp_path / "steps.nir"), str(out), "--time-unit", "steps"]) == 0
    assert "dt" not in nir.read(str(out)).metadata
    capsys.readouterr()
    assert verify_main([str(out), "--data", DATA, "--max-time", "1", "--channel-group", "1",
                        "--out", str(tmp_path / "v")]) == 2
    err = capsys.readouterr().err
    assert "without a checkpoint the data binning must be given" in err and "--dt SECONDS" in err
