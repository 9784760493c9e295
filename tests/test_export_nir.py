"""NIR export/import: exact round trips, the graph structure plain `nir.read` sees, third-party
graphs, refusals and atomic writing."""

from __future__ import annotations

import os

import nir
import numpy as np
import pytest

from crsnn import loihi2 as L2
from crsnn.export.nir_reader import NIRImportError, load_nir
from crsnn.export.nir_writer import FORMAT, to_nir, write_nir_atomic
from crsnn.models.integer import IntegerNetwork
from crsnn.sim.integer_sim import simulate
from crsnn.sim.random_networks import random_crsnn, random_input, random_network


def same_run(a: IntegerNetwork, b: IntegerNetwork, x: np.ndarray) -> bool:
    ra, rb = simulate(a, x), simulate(b, x)
    return all(np.array_equal(u, v) for u, v in zip(ra.hidden_spikes, rb.hidden_spikes)) and \
        np.array_equal(ra.readout_v, rb.readout_v)


@pytest.mark.parametrize("seed", range(12))
def test_random_networks_round_trip_exactly_through_a_file(tmp_path, seed):
    rng = np.random.default_rng(seed)
    net, steps = random_network(rng, odd_kernels=True)
    path = write_nir_atomic(to_nir(net, dt=0.01), tmp_path / "net.nir")
    back = load_nir(path)
    assert back.input_message_bits == net.input_message_bits
    assert same_run(net, back, random_input(rng, net, 2, steps))


@pytest.mark.parametrize("dense", [False, True])
def test_plain_nir_read_sees_integer_delays_conv_and_the_recurrent_cycle(tmp_path, dense):
    net = random_crsnn(np.random.default_rng(0), 20, [16, 12], 5, kernel=5, dense=dense, input_message_bits=3)
    write_nir_atomic(to_nir(net, dt=0.01), tmp_path / "out.nir")
    g = nir.read(str(tmp_path / "out.nir"))
    assert g.metadata["format"] == FORMAT and g.metadata["dt"] == 0.01
    delays = [n for n in g.nodes.values() if isinstance(n, nir.Delay)]
    assert len(delays) == 2
    for d, layer in zip(sorted(delays, key=lambda n: n.delay.size, reverse=True), net.hidden):
        assert d.delay.dtype.kind == "i" and np.array_equal(d.delay.reshape(-1), layer.rec.delays)
    rec_type = nir.Linear if dense else nir.Conv1d
    rec_nodes = [k for k, n in g.nodes.items() if isinstance(n, rec_type)]
    assert len(rec_nodes) == 2
    edges = set(map(tuple, g.edges))
    for li in range(2):
        neuron = next(a for a, b in edges if b == f"delay_{li}")
        rname = f"{'linear' if dense else 'conv'}_{li}"
        assert {(neuron, f"delay_{li}"), (f"delay_{li}", rname), (rname, neuron)} <= edges
    if not dense:
        conv = g.nodes["conv_0"]
        assert conv.weight.shape == (1, 1, 5) and conv.padding == "same"


def test_float_parameters_already_mean_the_integer_network():
    net = random_crsnn(np.random.default_rng(1), 6, [8], 3, kernel=3)
    g = to_nir(net, dt=0.004)
    layer = net.hidden[0]
    lif = g.nodes["lif_0"]
    assert np.allclose(1 - 1 / lif.tau, L2.leak_from_dv(layer.neuron.dv))  # forward Euler leak per step
    assert np.allclose(lif.v_threshold, layer.neuron.vth)
    ff = g.nodes["affine_0"]
    assert np.array_equal(ff.weight[0], layer.ff.effective() * 2.0**layer.ff.weight_exp)
    assert np.allclose(ff.bias[0], layer.neuron.bias() / 64)
    assert np.array_equal(g.nodes["conv_0"].weight.reshape(-1), layer.rec.effective_kernel() * 2.0**layer.rec.weight_exp)
    assert isinstance(g.nodes["readout"], nir.LI)


def snntorch_style_graph(n_in=6, n_hid=10, n_out=3, seed=0, dt=1e-4) -> nir.NIRGraph:
    """A CubaLIF/Affine chain with a recurrent Linear, shapes (N,), time constants in seconds,
    the way snnTorch's RSynaptic exports (dt = 1e-4 s)."""
    rng = np.random.default_rng(seed)
    alpha, beta = 0.5, 0.9
    ts, tm = dt / (1 - alpha), dt / (1 - beta)
    ones = np.ones(n_hid)
    nodes = {
        "input": nir.Input(input_type={"input": np.array([n_in])}),
        "fc1": nir.Affine(weight=rng.normal(0, 1.0, (n_hid, n_in)), bias=np.zeros(n_hid)),
        "lif1": nir.CubaLIF(tau_syn=ts * ones, tau_mem=tm * ones, r=tm / dt * ones, v_leak=np.zeros(n_hid),
                            v_threshold=ones, v_reset=np.zeros(n_hid), w_in=ts / dt * ones),
        "rec1": nir.Linear(weight=rng.normal(0, 0.3, (n_hid, n_hid))),
        "fc2": nir.Affine(weight=rng.normal(0, 0.5, (n_out, n_hid)), bias=np.zeros(n_out)),
        "li2": nir.LI(tau=np.full(n_out, tm), r=np.full(n_out, tm / dt), v_leak=np.zeros(n_out)),
        "output": nir.Output(output_type={"output": np.array([n_out])}),
    }
    edges = [("input", "fc1"), ("fc1", "lif1"), ("lif1", "rec1"), ("rec1", "lif1"), ("lif1", "fc2"),
             ("fc2", "li2"), ("li2", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=True)


def float_reference(g: nir.NIRGraph, x: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Forward-Euler float simulation of snntorch_style_graph with crsnn's latencies."""
    n = g.nodes
    w1, wr, w2 = n["fc1"].weight, n["rec1"].weight, n["fc2"].weight
    a = 1 - dt / n["lif1"].tau_syn[0]
    b = 1 - dt / n["lif1"].tau_mem[0]
    bo = 1 - dt / n["li2"].tau[0]
    steps = x.shape[0]
    i1 = v1 = np.zeros(w1.shape[0])
    vo = np.zeros(w2.shape[0])
    s_prev = np.zeros(w1.shape[0])
    spikes, vos = np.zeros((steps, w1.shape[0]), bool), np.zeros((steps, w2.shape[0]))
    for t in range(steps):
        inp = w1 @ x[t - 1] if t > 0 else 0.0
        i1 = a * i1 + inp + wr @ s_prev
        v1 = b * v1 + i1
        s = v1 > 1.0
        v1 = np.where(s, 0.0, v1)
        vo = bo * vo + (w2 @ spikes[t - 1] if t > 0 else 0.0)
        spikes[t], vos[t], s_prev = s, vo, s.astype(float)
    return spikes, vos


def test_third_party_cubalif_graph_with_recurrent_linear_is_imported_and_simulated():
    dt = 1e-4
    g = snntorch_style_graph(dt=dt)
    net = load_nir(g, dt=dt)
    assert net.hidden[0].rec is not None and not net.hidden[0].rec.is_conv
    assert np.all(net.hidden[0].rec.delays == 0)
    assert net.hidden[0].neuron.du == L2.du_from_leak(0.5) and net.hidden[0].neuron.dv == L2.dv_from_leak(0.9)
    x = (np.random.default_rng(1).random((1, 200, 6)) < 0.3).astype(np.int64)
    r = simulate(net, x)
    ref_spikes, ref_v = float_reference(g, x[0].astype(float), dt)
    counts, ref_counts = r.hidden_spikes[0][0].sum(0), ref_spikes.sum(0)
    assert ref_counts.sum() > 50
    # 8-bit weights: spike counts per neuron within 15 % of the float model
    assert np.abs(counts - ref_counts).sum() <= 0.15 * ref_counts.sum()
    # readout voltages are proportional to the float ones (one scale factor per layer)
    scale = np.linalg.lstsq(ref_v.reshape(-1, 1), r.readout_v[0].reshape(-1).astype(float), rcond=None)[0][0]
    resid = r.readout_v[0] - scale * ref_v
    assert np.abs(resid).mean() < 0.1 * np.abs(r.readout_v[0]).mean()


def test_refusals_name_the_node_its_type_and_why(tmp_path):
    g = snntorch_style_graph()
    g.nodes["scale"] = nir.Scale(scale=np.ones(10))
    g.edges = [e for e in g.edges if e != ("lif1", "fc2")] + [("lif1", "scale"), ("scale", "fc2")]
    with pytest.raises(NIRImportError, match=r"node 'scale' \(Scale\): not supported"):
        load_nir(g)

    g = snntorch_style_graph()
    g.nodes["lif1"].v_reset = np.full(10, 0.5)
    with pytest.raises(NIRImportError, match=r"'lif1' \(CubaLIF\): v_reset must be 0"):
        load_nir(g, dt=1e-4)

    net = random_crsnn(np.random.default_rng(0), 5, [6], 2)
    g = to_nir(net, dt=0.01)
    g.nodes["delay_0"].delay = g.nodes["delay_0"].delay.astype(float) + 0.5
    with pytest.raises(NIRImportError, match=r"'delay_0' \(Delay\): delay of neuron 0 = .* not an integer"):
        load_nir(g)

    with pytest.raises(NIRImportError, match="no such file"):
        load_nir(tmp_path / "missing.nir")
    (tmp_path / "junk.nir").write_text("not hdf5")
    with pytest.raises(NIRImportError, match="not a readable NIR file"):
        load_nir(tmp_path / "junk.nir")


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    net = random_crsnn(np.random.default_rng(0), 5, [6], 2)
    g = to_nir(net, dt=0.01)

    def broken_write(target, graph):
        target.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(nir, "write", broken_write)
    with pytest.raises(OSError, match="disk full"):
        write_nir_atomic(g, tmp_path / "out.nir")
    assert os.listdir(tmp_path) == []
    monkeypatch.undo()
    with pytest.raises(OSError, match="does not exist"):
        write_nir_atomic(g, tmp_path / "no" / "out.nir")
