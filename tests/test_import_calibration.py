"""Where a recurrent CubaLIF graph loses fidelity on import, and the calibration (issue: a
Braille-reading network exported by snnTorch, 12 inputs -> 40 recurrent CubaLIF -> 7 CubaLIF,
8-bit weights, dt = 1e-4 s). The graphs are made by the real snnTorch: RSynaptic 12 -> 40 with a
recurrent nn.Linear, Synaptic 40 -> 7, weights quantized to 8 bits with a per-layer scale."""

from __future__ import annotations

import json

import nir
import numpy as np
import pytest
import torch

import snntorch as snn
from snntorch.export_nir import export_to_nir

from crsnn import loihi2 as L2
from crsnn.export import nir_calibrate, nir_reader
from crsnn.export.import_cli import import_graph, main
from crsnn.export.nir_attribution import STEPS, attribute, replay
from crsnn.export.nir_calibrate import aligned_scales, calibrate, grid_step
from crsnn.export.nir_float_ref import integer_aligned, populations, simulate_float
from crsnn.export.nir_reader import load_nir
from crsnn.train.checkpoint import networks_equal

DT = 1e-4


def _vec(n: int, x: float) -> torch.Tensor:
    return torch.full((n,), float(x))


def _q8(w: torch.Tensor) -> torch.Tensor:
    s = w.abs().max() / 127
    return torch.round(w / s) * s


def braille_net(seed: int) -> torch.nn.Sequential:
    """12 -> RSynaptic 40 -> Synaptic 7 (alpha 0.75, beta 0.85, threshold 1, reset to zero, no
    bias), weights of a trained 8-bit network's magnitude (largest ff weight ~3 thresholds,
    mostly inhibitory recurrence), each matrix on its own 8-bit grid."""
    torch.manual_seed(seed)
    fc1, fc2 = torch.nn.Linear(12, 40, bias=False), torch.nn.Linear(40, 7, bias=False)
    kw = dict(init_hidden=True, reset_mechanism="zero")
    hid = snn.RSynaptic(alpha=_vec(40, 0.75), beta=_vec(40, 0.85), threshold=_vec(40, 1.0), linear_features=40, **kw)
    out = snn.Synaptic(alpha=_vec(7, 0.75), beta=_vec(7, 0.85), threshold=_vec(7, 1.0), output=True, **kw)
    with torch.no_grad():
        fc1.weight.normal_(0.0, 1.0)
        hid.recurrent.weight.normal_(-1.0, 1.0)
        hid.recurrent.bias.zero_()
        fc2.weight.normal_(0.0, 1.0)
        for w in (fc1.weight, hid.recurrent.weight, fc2.weight):
            w.copy_(_q8(w))
    return torch.nn.Sequential(fc1, hid, fc2, out)


def _write(tmp_path, seed: int):
    path = tmp_path / f"braille{seed}.nir"
    nir.write(str(path), export_to_nir(braille_net(seed), torch.zeros(1, 12), ignore_dims=[0]))
    return path


def _x(seed: int, n: int = 24) -> np.ndarray:
    return (np.random.default_rng(seed).random((n, 100, 12)) < 0.1).astype(np.int64)


def test_attribution_replay_spans_float_reference_to_integer_network(tmp_path):
    """No step applied: the float reference; every step: the integer network, spike for spike."""
    _, net, ng = import_graph(_write(tmp_path, 0), DT)
    pops, _ = populations(ng)
    x = _x(0)
    none, _ = replay(pops, net, x, ())
    every, _ = replay(pops, net, x, STEPS)
    ref = simulate_float(pops, x)
    got, _ = integer_aligned(net, x)
    assert sum(int(s.sum()) for s in got) > 1000
    for a, b in zip(none, ref.spikes):
        assert np.array_equal(a, b)
    for a, b in zip(every, got):
        assert np.array_equal(a, b)
    with pytest.raises(ValueError, match="unknown quantization steps"):
        replay(pops, net, x, ("dither",))


def test_attribution_finds_the_current_wrap_of_the_old_scale_rule(tmp_path, monkeypatch):
    """The fixed rule took the largest scale the 17-bit threshold allows: the 24-bit current of
    the recurrent layer then wraps, and the attribution names 'range' as the step that costs."""
    path = _write(tmp_path, 0)
    monkeypatch.setattr(nir_reader, "range_cap", lambda *a: float("inf"))
    _, old, ng = import_graph(path, DT)
    monkeypatch.undo()
    _, new, _ = import_graph(path, DT)
    pops, _ = populations(ng)
    assert old.layers[0].neuron.vth > 8 * new.layers[0].neuron.vth
    att_old, att_new = attribute(pops, old, _x(1)), attribute(pops, new, _x(1))
    worst = min(STEPS, key=lambda s: att_old["steps"][s][0]["count_corr"])
    assert worst == "range" and att_old["steps"]["range"][0]["count_corr"] < 0.9
    for step in STEPS:
        if step != "rounding":  # the 8-bit weights cost a little; nothing else does any more
            assert att_new["steps"][step][0]["count_corr"] > 0.99, step
    assert att_new["steps"]["range"][0]["count_corr"] == 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_braille_shaped_snntorch_graphs_import_close_to_the_float_semantics(tmp_path, seed, capsys):
    src, out, js = _write(tmp_path, seed), tmp_path / "out.nir", tmp_path / "r.json"
    assert main([str(src), str(out), "--dt", str(DT), "--calibrate", "--explain", "--json", str(js)]) == 0
    text = capsys.readouterr().out
    assert "attribution:" in text and "calibration on 64 random samples (seed 1" in text
    rep = json.loads(js.read_text())
    for layer in rep["fidelity"]["layers"]:
        assert layer["spikes_float"] > 1000 and layer["count_corr"] >= 0.95, layer
    assert rep["fidelity"]["output"]["decision_agreement"] >= 0.84
    for row in rep["calibration"]["layers"]:  # the chosen candidate is never worse on its own inputs
        assert row["after"]["count_corr"] >= row["before"]["count_corr"]
    assert set(rep["attribution"]["steps"]) == {*STEPS, "all", "jitter"}
    # the written file is the calibrated network, read exactly
    chosen = [(r["after"]["scale"], r["after"]["rec_shift"]) for r in rep["calibration"]["layers"]]
    _, _, ng = import_graph(src, DT)
    assert load_nir(out).layers[0].neuron.vth == load_nir(ng, choices=chosen).layers[0].neuron.vth


def test_rockpool_graph_calibrates_without_loss(tmp_path):
    from rockpool.nn.modules.torch.nir import to_nir

    from test_import_rockpool import DT as RDT, N_IN, rockpool_net

    src, out, js = tmp_path / "rp.nir", tmp_path / "out.nir", tmp_path / "r.json"
    nir.write(str(src), to_nir(rockpool_net(), torch.zeros(1, 1, N_IN)))
    assert main([str(src), str(out), "--dt", str(RDT), "--calibrate", "--samples", "16", "--json", str(js)]) == 0
    rep = json.loads(js.read_text())
    for layer in rep["fidelity"]["layers"]:
        assert layer["count_corr"] >= 0.98, layer
    assert rep["fidelity"]["output"]["decision_agreement"] >= 0.9


def test_rockpool_graph_with_a_recurrent_linear_imports_close_to_the_float_semantics(tmp_path):
    """Rockpool drops recurrent weights on export, so the recurrence (an 8-bit, mostly inhibitory
    Linear from the hidden CubaLIF to itself) is added to its graph with the nir API."""
    from rockpool.nn.combinators import Sequential
    from rockpool.nn.modules import LIFTorch, LinearTorch
    from rockpool.nn.modules.torch.nir import to_nir

    torch.manual_seed(0)
    l1, l2 = LinearTorch((12, 40)), LinearTorch((40, 7))
    with torch.no_grad():
        for w in (l1.weight, l2.weight):
            w.normal_(0.0, 0.5)
            w.copy_(_q8(w))
    kw = dict(tau_mem=0.02, tau_syn=0.01, dt=1e-3, threshold=1.0)
    g = to_nir(Sequential(l1, LIFTorch(40, **kw), l2, LIFTorch(7, **kw)), torch.zeros(1, 1, 12))
    hid = [k for k, n in g.nodes.items() if isinstance(n, nir.CubaLIF) and np.size(n.tau_mem) == 40][0]
    g.nodes["rec"] = nir.Linear(weight=_q8(torch.from_numpy(np.random.default_rng(0).normal(-0.5, 0.5, (40, 40)))).numpy())
    g.edges += [(hid, "rec"), ("rec", hid)]
    src, out, js = tmp_path / "rprec.nir", tmp_path / "out.nir", tmp_path / "r.json"
    nir.write(str(src), g)
    assert main([str(src), str(out), "--dt", "1e-3", "--calibrate", "--explain", "--json", str(js)]) == 0
    rep = json.loads(js.read_text())
    assert rep["quantization"][0]["rec_weight_exp"] is not None
    for layer in rep["fidelity"]["layers"]:
        assert layer["spikes_float"] > 500 and layer["count_corr"] >= 0.98, layer
    assert rep["fidelity"]["output"]["decision_agreement"] >= 0.85


def test_norse_graph_calibrates_without_loss(tmp_path):
    from norse.torch.utils.export_nir import to_nir

    from test_import_norse import ARGS, N_IN, norse_net

    src, out, js = tmp_path / "n.nir", tmp_path / "out.nir", tmp_path / "r.json"
    nir.write(str(src), to_nir(norse_net("lif"), torch.zeros(1, N_IN)))
    assert main([str(src), str(out), *ARGS["lif"], "--calibrate", "--explain", "--samples", "16", "--json", str(js)]) == 0
    rep = json.loads(js.read_text())
    assert rep["fidelity"]["layers"][0]["count_corr"] >= 0.98
    assert rep["fidelity"]["output"]["decision_agreement"] >= 0.9
    readout = rep["calibration"]["layers"][1]  # a non-spiking LI readout keeps the default
    assert readout["after"] == readout["before"] and readout["candidates"] == 1


def test_range_cap_keeps_the_worst_case_current_inside_24_bits():
    rng = np.random.default_rng(0)
    w_ff, w_rec = rng.normal(0, 1, (40, 12)), rng.normal(-1, 1, (40, 40))
    du = L2.du_from_leak(0.75)
    s = nir_reader.range_cap(w_ff, w_rec, du)
    worst = int(np.floor(s * (np.abs(w_ff).sum(1) + np.abs(w_rec).sum(1)).max() / nir_reader.RANGE_MARGIN))
    assert not L2.lif_wraps(worst, du, 0).current_24
    assert L2.lif_wraps(int(worst * 1.1), du, 0).current_24
    assert nir_reader.range_cap(w_ff * 1e6, w_rec * 1e6, du) == nir_reader.MIN_RANGE_SCALE


def test_aligned_scales_put_an_8bit_grid_exactly_on_loihis():
    g = 0.0371
    w = g * np.random.default_rng(0).integers(-127, 128, (40, 40)).astype(np.float64)
    w[0, 0] = 127 * g
    assert grid_step(w) == pytest.approx(g) and grid_step(w + 1e-3) is None
    scales = aligned_scales(w)
    assert scales and all(1 <= s <= L2.VTH_MAX for s in scales)
    for s in scales:
        e = nir_reader._exp_for(float(np.abs(w).max()) * s, nir_reader.GIVEN_SCALE_TOP)
        q = nir_reader._quantize(w * s, e)
        assert np.allclose(q * 2.0**e, w * s, rtol=0, atol=1e-6 * s)


def test_calibration_keeps_the_default_unless_a_gain_is_confirmed(tmp_path, monkeypatch):
    _, net, ng = import_graph(_write(tmp_path, 1), DT)
    pops, _ = populations(ng)
    monkeypatch.setattr(nir_calibrate, "MIN_GAIN", 1.0)  # no candidate can beat the default by 1.0
    same, rows = calibrate(ng, pops, net, _x(3, 16))
    assert networks_equal(same, net)
    assert all(r["after"] == r["before"] and r["candidates"] > 10 for r in rows if r["name"] != "3") and len(rows) == 2
