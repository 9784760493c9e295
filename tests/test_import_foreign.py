"""crsnn-import without any other library: graph normalisation (shapes, scalars, nested subgraphs,
recurrent biases, time units), the CubaLIF bias, precise refusals, the CLI's errors and the
foreign-graph options of crsnn-run / crsnn-report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nir
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crsnn.deploy.cli import report_main
from crsnn.export.import_cli import import_graph, main
from crsnn.export.nir_float_ref import fidelity, populations, quantization_summary
from crsnn.export.nir_foreign import normalize_foreign
from crsnn.export.nir_reader import NIRImportError, load_nir
from crsnn.export.nir_writer import to_nir
from crsnn.sim.integer_sim import simulate
from crsnn.train.checkpoint import networks_equal

DT = 1e-3


def lif_graph(n_in=8, n_hid=12, n_out=3, seed=0, w1=1.5, b1=0.0, rec_bias=0.0, cuba=False, scalar=False,
              input_shape=None) -> nir.NIRGraph:
    """Affine -> LIF (or CubaLIF) with a recurrent Affine -> Affine -> LI, time in seconds."""
    rng = np.random.default_rng(seed)
    tau, ts = 10 * DT, 4 * DT
    p = (lambda v, n: np.array([v])) if scalar else (lambda v, n: np.full(n, v))
    if cuba:
        hid = nir.CubaLIF(tau_syn=p(ts, n_hid), tau_mem=p(tau, n_hid), r=p(tau / DT, n_hid), v_leak=p(0.0, n_hid),
                          w_in=p(ts / DT, n_hid), v_threshold=p(1.0, n_hid), v_reset=p(0.0, n_hid))
    else:
        hid = nir.LIF(tau=p(tau, n_hid), r=p(tau / DT, n_hid), v_leak=p(0.0, n_hid), v_threshold=p(1.0, n_hid),
                      v_reset=p(0.0, n_hid))
    nodes = {
        "input": nir.Input(input_type={"input": np.array(input_shape or [n_in])}),
        "fc1": nir.Affine(weight=rng.normal(0, w1, (n_hid, n_in)), bias=np.full(n_hid, b1)),
        "lif1": hid,
        "rec1": nir.Affine(weight=rng.normal(0, 0.3, (n_hid, n_hid)), bias=np.full(n_hid, rec_bias)),
        "fc2": nir.Affine(weight=rng.normal(0, 0.5, (n_out, n_hid)), bias=np.zeros(n_out)),
        "li2": nir.LI(tau=np.full(n_out, tau), r=np.full(n_out, tau / DT), v_leak=np.zeros(n_out)),
        "output": nir.Output(output_type={"output": np.array([n_out])}),
    }
    edges = [("input", "fc1"), ("fc1", "lif1"), ("lif1", "rec1"), ("rec1", "lif1"), ("lif1", "fc2"), ("fc2", "li2"),
             ("li2", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def _x(n_in=8, batch=8, steps=100, rate=0.2, seed=1):
    return (np.random.default_rng(seed).random((batch, steps, n_in)) < rate).astype(np.int64)


def test_scalars_and_leading_dimensions_are_broadcast():
    a, b = load_nir(lif_graph(), dt=DT), load_nir(lif_graph(scalar=True, input_shape=[1, 8]), dt=DT)
    assert networks_equal(a, b)
    notes: list[str] = []
    normalize_foreign(lif_graph(input_shape=[1, 50, 8]), DT, notes)  # batch and time dimensions in the type
    assert any("read as 8 channels" in n for n in notes)


def test_recurrent_bias_is_folded_into_the_feedforward_bias():
    notes: list[str] = []
    g = normalize_foreign(lif_graph(b1=0.05, rec_bias=0.1), DT, notes)
    assert isinstance(g.nodes["rec1"], nir.Linear) and np.allclose(g.nodes["fc1"].bias, 0.15)
    assert any("folded" in n for n in notes)
    assert networks_equal(load_nir(lif_graph(b1=0.05, rec_bias=0.1), dt=DT), load_nir(lif_graph(b1=0.15), dt=DT))


def test_cubalif_bias_passes_through_the_synaptic_gain():
    """A bias alone drives the CubaLIF: NIR filters it like any input (tau_syn = 4 steps), so the
    integer network must fire as often as the float reference, not ~4 times less."""
    g = lif_graph(w1=0.0, b1=0.03, cuba=True)
    g.nodes["fc1"].weight[:] = 0.0
    g.nodes["rec1"].weight[:] = 0.0
    ng = normalize_foreign(g, DT)
    net = load_nir(ng)
    fid = fidelity(populations(ng)[0], net, _x(steps=200))
    hid = fid["layers"][0]
    assert hid["spikes_float"] > 100
    assert abs(hid["spikes_integer"] - hid["spikes_float"]) <= 0.05 * hid["spikes_float"]


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2**31 - 1), w1=st.floats(0.05, 20.0), b1=st.floats(-2.0, 2.0), cuba=st.booleans(),
       rec_bias=st.floats(-1.0, 1.0))
def test_quantized_foreign_graphs_fit_loihi_and_round_trip_exactly(seed, w1, b1, cuba, rec_bias):
    """Any weight and bias magnitude: the integer network validates, no weight or bias is clipped,
    and its crsnn-nir/1 file reads back as the same integers with the same spikes."""
    g = lif_graph(seed=seed, w1=w1, b1=b1, rec_bias=rec_bias, cuba=cuba)
    ng = normalize_foreign(g, DT)
    net = load_nir(ng)
    for row in quantization_summary(populations(ng)[0], net):
        assert row["ff_clipped"] == 0 and row["bias_clipped"] == 0
    back = load_nir(to_nir(net, dt=DT))
    assert networks_equal(back, net)
    x = _x(batch=2, steps=30, seed=seed % 1000)
    assert np.array_equal(simulate(back, x).readout_v, simulate(net, x).readout_v)


def test_foreign_graph_fidelity_is_high():
    ng = normalize_foreign(lif_graph(), DT)
    fid = fidelity(populations(ng)[0], load_nir(ng), _x())
    assert fid["layers"][0]["spikes_float"] > 200 and fid["layers"][0]["count_corr"] >= 0.98
    assert fid["output"]["voltage_corr"] >= 0.98


def _refuse(g: nir.NIRGraph, pattern: str) -> None:
    with pytest.raises(NIRImportError, match=pattern):
        load_nir(g, dt=DT)


def test_what_cannot_map_is_refused_precisely():
    g = lif_graph()
    g.nodes["lif1"].metadata = {"reset_mechanism": "subtract"}
    _refuse(g, r"node 'lif1' \(LIF\): reset by subtraction .* nearest supported form: reset to zero")
    g = lif_graph()
    g.nodes["lif1"].metadata = {"refractory_steps": 2}
    _refuse(g, r"node 'lif1' \(LIF\): a refractory period .* nearest supported form: no refractory period")
    g = lif_graph()
    g.nodes["lif1"].tau = np.linspace(0.005, 0.02, 12)
    _refuse(g, r"node 'lif1' \(LIF\): tau differs between neurons")
    g = lif_graph()
    g.nodes["conv"] = nir.Conv2d(input_shape=(4, 4), weight=np.ones((1, 1, 3, 3)), stride=1, padding=1, dilation=1,
                                 groups=1, bias=np.zeros(1))
    g.edges = [e for e in g.edges if e != ("input", "fc1")] + [("input", "conv"), ("conv", "fc1")]
    _refuse(g, r"node 'conv' \(Conv2d\): not supported: .*Lava's Conv process.*nearest supported form")
    g = lif_graph()
    g.nodes["pool"] = nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0]))
    g.edges = [e for e in g.edges if e != ("input", "fc1")] + [("input", "pool"), ("pool", "fc1")]
    _refuse(g, r"node 'pool' \(SumPool2d\): not supported: pooling.*nearest supported form: fold the pooling")


def test_cli_errors_are_one_line_and_write_nothing(tmp_path, capsys):
    src, out = tmp_path / "g.nir", tmp_path / "out.nir"
    nir.write(str(src), lif_graph())
    assert main([str(src), str(out)]) == 2  # seconds, but no --dt
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pass --dt SECONDS" in err and "suggests --dt 0.001" in err
    assert main([str(src), str(out), "--dt", "0.1"]) == 2  # tau = 0.1 steps
    assert "shorter than one step" in capsys.readouterr().err
    g = lif_graph()
    g.nodes["lif1"].metadata = {"reset": "subtract"}
    nir.write(str(src), g)
    assert main([str(src), str(out), "--dt", str(DT)]) == 2
    assert "reset by subtraction" in capsys.readouterr().err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["g.nir"]


def test_steps_time_unit_and_data_file(tmp_path, capsys):
    from crsnn.train.data.layout import write_spike_file

    g = lif_graph()
    for node in g.nodes.values():  # the same graph with time constants in steps
        for f in ("tau", "tau_mem", "tau_syn"):
            if hasattr(node, f):
                setattr(node, f, np.asarray(getattr(node, f)) / DT)
    nir.write(str(tmp_path / "steps.nir"), g)
    nir.write(str(tmp_path / "sec.nir"), lif_graph(n_in=70, w1=0.5))  # SHD layout: 700 channels in groups of 10
    nir.write(str(tmp_path / "sec8.nir"), lif_graph())
    assert networks_equal(import_graph(tmp_path / "steps.nir", None, "steps")[1],
                          import_graph(tmp_path / "sec8.nir", DT)[1])
    rng = np.random.default_rng(0)
    times = [np.sort(rng.random(300) * 0.1) for _ in range(4)]
    units = [rng.integers(0, 700, 300) for _ in range(4)]
    write_spike_file(tmp_path / "d.h5", times, units, np.array([0, 1, 2, 0]), ["a", "b", "c"])
    assert main([str(tmp_path / "sec.nir"), str(tmp_path / "o.nir"), "--dt", str(DT), "--data",
                 str(tmp_path / "d.h5"), "--max-time", "0.1", "--channel-group", "10", "--json", str(tmp_path / "r.json")]) == 0
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["fidelity"]["output"]["samples"] == 4 and rep["fidelity"]["output"]["steps"] == 100
    assert "samples of" in capsys.readouterr().out


def test_run_and_report_accept_a_foreign_graph(tmp_path, capsys):
    nir.write(str(tmp_path / "g.nir"), lif_graph(n_in=8))
    assert report_main([str(tmp_path / "g.nir")]) == 2
    assert "--graph-dt SECONDS" in capsys.readouterr().err
    assert report_main([str(tmp_path / "g.nir"), "--graph-dt", str(DT), "--json", str(tmp_path / "r.json")]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["total"]["fits"]


def test_entry_point(tmp_path):
    exe = Path(sys.executable).parent / "crsnn-import"
    nir.write(str(tmp_path / "g.nir"), lif_graph())
    ok = subprocess.run([str(exe), str(tmp_path / "g.nir"), str(tmp_path / "o.nir"), "--dt", str(DT),
                         "--samples", "4"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "spike-count correlation" in ok.stdout and (tmp_path / "o.nir").exists()
    bad = subprocess.run([str(exe), str(tmp_path / "missing.nir"), str(tmp_path / "p.nir"), "--dt", str(DT)],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip() == f"crsnn-import: error: {tmp_path / 'missing.nir'}: no such file"
