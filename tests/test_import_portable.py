"""``crsnn-export --portable`` (crsnn.export.portable): plain NIR that other tools open, meaning the
integer network up to crsnn's one-step latency per hop and Loihi's per-step truncation."""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch

from crsnn import loihi2 as L2
from crsnn.export.cli import main as export_main
from crsnn.export.nir_float_ref import fidelity, populations
from crsnn.export.nir_foreign import normalize_foreign
from crsnn.export.portable import PORTABLE_FORMAT, to_portable_nir
from crsnn.models.integer import Connection, IntegerNetwork, Layer, LIFParams, Recurrence, conv_matrix
from crsnn.sim.integer_sim import simulate


def feedforward_net(seed: int = 0) -> IntegerNetwork:
    rng = np.random.default_rng(seed)
    h = Layer(Connection(rng.integers(-100, 160, (16, 12)) // 2 * 2, weight_exp=2),
              LIFParams(16, dv=410, vth=600, bias_mant=rng.integers(-200, 400, 16), bias_exp=2))
    ro = Layer(Connection(rng.integers(-120, 121, (4, 16)) // 2 * 2, weight_exp=1), LIFParams(4, dv=300, vth=L2.VTH_MAX))
    return IntegerNetwork(n_in=12, hidden=[h], readout=ro).validate()


def recurrent_net(seed: int = 1) -> IntegerNetwork:
    """A CubaLIF layer with a biased conv recurrence and delays, then a plain LIF layer."""
    rng = np.random.default_rng(seed)
    h1 = Layer(Connection(rng.integers(-60, 160, (16, 12)) // 2 * 2, weight_exp=3),
               LIFParams(16, du=1000, dv=500, vth=900, bias_mant=rng.integers(-100, 300, 16), bias_exp=1),
               Recurrence(delays=rng.integers(0, 4, 16), kernel=np.array([-40, 60, -40]), weight_exp=2))
    h2 = Layer(Connection(rng.integers(-80, 160, (10, 16)) // 2 * 2, weight_exp=3), LIFParams(10, dv=600, vth=500))
    ro = Layer(Connection(rng.integers(-120, 121, (4, 10)) // 2 * 2, weight_exp=1), LIFParams(4, dv=300, vth=L2.VTH_MAX))
    return IntegerNetwork(n_in=12, hidden=[h1, h2], readout=ro).validate()


def test_portable_graph_is_plain_nir(tmp_path):
    net = recurrent_net()
    g = to_portable_nir(net, dt=1e-3)
    nir.write(str(tmp_path / "p.nir"), g)
    back = nir.read(str(tmp_path / "p.nir"))  # NIR's own type check passes
    assert back.metadata["format"] == PORTABLE_FORMAT
    assert list(back.nodes["input"].input_type["input"]) == [12]
    for node in back.nodes.values():
        if isinstance(node, (nir.Affine, nir.Linear)):
            assert node.weight.ndim == 2
    rec = back.nodes["rec_0"]
    assert isinstance(rec, nir.Linear)  # the conv kernel as its exact Toeplitz matrix
    assert np.array_equal(rec.weight, conv_matrix(net.hidden[0].rec.effective_kernel(), 16) * 2.0**2)
    assert np.allclose(back.nodes["delay_0"].delay, net.hidden[0].rec.delays * 1e-3)
    cuba = back.nodes["cubalif_0"]
    assert np.allclose(cuba.tau_syn, 1e-3 * 4096 / 1001) and np.allclose(cuba.tau_mem, 1e-3 * 4096 / 500)


@pytest.mark.parametrize("make", [feedforward_net, recurrent_net])
def test_portable_graph_means_the_integer_network(make):
    """The float simulation of the portable graph's NIR semantics reproduces the integer network
    (LIF/CubaLIF biases, conv recurrence, delays in seconds), up to Loihi's truncation."""
    net = make()
    g = to_portable_nir(net, dt=1e-3)
    pops, _ = populations(normalize_foreign(g, 1e-3))
    x = (np.random.default_rng(5).random((8, 80, 12)) < 0.2).astype(np.int64)
    fid = fidelity(pops, net, x)
    for layer in fid["layers"][:-1]:
        assert layer["spikes_float"] > 100 and layer["count_corr"] >= 0.99 and layer["time_jaccard_1"] >= 0.95, layer
    assert fid["output"]["voltage_corr"] >= 0.999


def test_snntorch_imports_a_portable_export_and_reproduces_its_spikes(tmp_path):
    import snntorch.import_nir as snn_import
    from snntorch import utils as snn_utils

    net = feedforward_net()
    nir.write(str(tmp_path / "p.nir"), to_portable_nir(net, dt=1e-4))  # snnTorch assumes dt = 1e-4 s
    model = snn_import.import_from_nir(nir.read(str(tmp_path / "p.nir")))
    x = (np.random.default_rng(0).random((4, 100, 12)) < 0.2).astype(np.int64)
    ref = simulate(net, np.concatenate([x, np.zeros((4, 2, 12), np.int64)], axis=1))
    snn_utils.reset(model)
    spikes, mem = [], []
    hook = model.lif_0.register_forward_hook(lambda mod, inp, out: spikes.append(out.detach().numpy().copy()))
    with torch.no_grad():
        for t in range(x.shape[1]):
            model(torch.from_numpy(x[:, t]).float())
            mem.append(model.lif_readout.mem.detach().numpy().copy())
    hook.remove()
    got, want = np.stack(spikes, 1).astype(bool), ref.hidden_spikes[0][:, 1:101]  # crsnn: one step per hop
    assert want.sum() > 500
    assert (got & want).sum() / (got | want).sum() >= 0.99
    v = np.stack(mem, 1)
    assert np.corrcoef(v.ravel(), ref.readout_v[:, 2:102].ravel() / 64)[0, 1] >= 0.999


def test_export_refuses_check_with_portable(tmp_path, capsys):
    assert export_main([str(tmp_path / "none.pt"), str(tmp_path / "o.nir"), "--portable", "--check"]) == 2
    assert not (tmp_path / "o.nir").exists()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--check verifies crsnn-nir/1 files" in err


def test_norse_imports_a_portable_export_but_ignores_r(tmp_path):
    """Norse 1.1.0's ``from_nir`` opens a feedforward portable export (NIR's type check passes), but
    builds every ``LIF`` as a ``LIFBoxCell`` that ignores ``r`` (it warns "r is expected to be set
    to 1"): its neurons receive ``dt / tau`` (1 / r) of the input the graph gives them, and spike
    rarely. That ``r`` is the whole difference: with ``r`` folded into the weights and bias, Norse
    reproduces crsnn's spikes and readout voltage. Its output is the readout's spikes (never, the
    threshold is unreachable); the voltage is in its state."""
    import norse.torch as norse

    net = feedforward_net()
    nir.write(str(tmp_path / "p.nir"), to_portable_nir(net, dt=1e-3))
    g = nir.read(str(tmp_path / "p.nir"))
    x = (np.random.default_rng(0).random((4, 100, 12)) < 0.2).astype(np.int64)
    ref = simulate(net, np.concatenate([x, np.zeros((4, 2, 12), np.int64)], axis=1))
    want, v_want = ref.hidden_spikes[0][:, 1:101], ref.readout_v[:, 2:102]  # crsnn: one step per hop

    def run(graph):
        model = norse.from_nir(graph, dt=1e-3, ignore_warnings=True)
        state, spikes, v, outs = None, [], [], []
        with torch.no_grad():
            for t in range(x.shape[1]):
                y, state = model(torch.from_numpy(x[:, t]).float(), state)
                outs.append(y.numpy().copy())
                spikes.append(state.cache["lif_0"].numpy().copy())
                v.append(state.state["lif_readout"][0].v.numpy().copy())
        return np.stack(spikes, 1).astype(bool), np.stack(v, 1), np.stack(outs, 1)

    got, v, outs = run(g)
    assert want.sum() > 2000 and got.sum() < 0.1 * want.sum()  # 100 vs 2351 spikes: input scaled by 1/r
    assert (got & want).sum() / (got | want).sum() < 0.1
    assert not outs.any()  # the readout never spikes
    for a, n in (("affine_0", "lif_0"), ("affine_readout", "lif_readout")):
        r = np.asarray(g.nodes[n].r)
        g.nodes[a] = nir.Affine(weight=g.nodes[a].weight * r[:, None], bias=g.nodes[a].bias * r)
    got, v, _ = run(g)
    assert (got & want).sum() / (got | want).sum() >= 0.99
    assert np.corrcoef(v.ravel(), v_want.ravel())[0, 1] >= 0.999
