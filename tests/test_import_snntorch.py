"""crsnn-import on graphs exported by snnTorch itself (snntorch.export_nir.export_to_nir), built the
way its tutorials build networks: nn.Linear layers between Leaky / RLeaky / Synaptic / RSynaptic
neurons. The fidelity figures are the float simulation of each graph's NIR semantics against the
quantized integer network (8-bit weights)."""

from __future__ import annotations

import json

import nir
import numpy as np
import pytest
import torch

import snntorch as snn  # a test dependency (scripts/setup.sh): missing = an error, not a skip
from snntorch import utils as snn_utils
from snntorch.export_nir import _extract_snntorch_module, export_to_nir

from crsnn.export.import_cli import import_graph, main
from crsnn.export.nir_float_ref import populations, simulate_float
from crsnn.export.nir_foreign import normalize_foreign
from crsnn.export.nir_reader import load_nir
from crsnn.sim.integer_sim import simulate
from crsnn.train.checkpoint import networks_equal

DT = 1e-4  # the step snnTorch's exporter assumes
N_IN, N_HID, N_OUT = 20, 32, 6


def _vec(n: int, x: float) -> torch.Tensor:
    # snnTorch's exporter needs per-neuron parameters (a scalar beta fails its type inference)
    return torch.full((n,), float(x))


def snntorch_net(kind: str, seed: int = 0) -> torch.nn.Sequential:
    """Linear -> hidden neuron -> Linear -> output neuron, default nn.Linear biases kept; weights
    drawn wider than PyTorch's default so that every layer spikes on 10 % input activity."""
    torch.manual_seed(seed)
    fc1, fc2 = torch.nn.Linear(N_IN, N_HID), torch.nn.Linear(N_HID, N_OUT)
    syn = kind in ("synaptic", "rsynaptic")  # the synaptic current sums ~1/(1 - alpha) steps of input
    with torch.no_grad():
        fc1.weight.normal_(0.0, 0.2 if syn else 0.5)
        fc2.weight.normal_(0.0, 0.1 if syn else 0.4)
    kw = dict(threshold=_vec(N_HID, 1.0), init_hidden=True, reset_mechanism="zero")
    out_kw = dict(threshold=_vec(N_OUT, 1.0), init_hidden=True, reset_mechanism="zero", output=True)
    if kind == "leaky":
        hid = snn.Leaky(beta=_vec(N_HID, 0.9), **kw)
    elif kind == "rleaky":
        hid = snn.RLeaky(beta=_vec(N_HID, 0.9), linear_features=N_HID, **kw)
    elif kind == "synaptic":
        hid = snn.Synaptic(alpha=_vec(N_HID, 0.8), beta=_vec(N_HID, 0.9), **kw)
    else:
        hid = snn.RSynaptic(alpha=_vec(N_HID, 0.8), beta=_vec(N_HID, 0.9), linear_features=N_HID, **kw)
    if kind in ("rleaky", "rsynaptic"):
        with torch.no_grad():
            hid.recurrent.weight.normal_(0.0, 0.05 if syn else 0.2)
    if kind in ("leaky", "rleaky"):
        out = snn.Leaky(beta=_vec(N_OUT, 0.9), **out_kw)
    else:
        out = snn.Synaptic(alpha=_vec(N_OUT, 0.8), beta=_vec(N_OUT, 0.9), **out_kw)
    return torch.nn.Sequential(fc1, hid, fc2, out)


def export(net: torch.nn.Module, path) -> nir.NIRGraph:
    g = export_to_nir(net, torch.zeros(1, N_IN), ignore_dims=[0])
    nir.write(str(path), g)
    return g


def _report(tmp_path, kind: str, capsys) -> dict:
    src, out, js = tmp_path / f"{kind}.nir", tmp_path / f"{kind}_crsnn.nir", tmp_path / f"{kind}.json"
    export(snntorch_net(kind), src)
    assert main([str(src), str(out), "--dt", str(DT), "--json", str(js), "--min-corr", "0.98"]) == 0
    text = capsys.readouterr().out
    assert "quantization onto Loihi 2" in text and "spike-count correlation" in text
    return json.loads(js.read_text())


@pytest.mark.parametrize("kind", ["leaky", "rleaky", "synaptic", "rsynaptic"])
def test_snntorch_exports_import_with_high_fidelity(tmp_path, kind, capsys):
    rep = _report(tmp_path, kind, capsys)
    for layer in rep["fidelity"]["layers"]:
        assert layer["spikes_float"] > 200, layer  # every layer is active: the figures mean something
        assert layer["count_corr"] >= 0.98, layer
        assert layer["time_jaccard_1"] >= 0.7, layer
    assert rep["fidelity"]["output"]["decision_agreement"] >= 0.9
    for row in rep["quantization"]:
        assert row["ff_clipped"] == 0 and row["bias_clipped"] == 0
    if kind in ("rleaky", "rsynaptic"):
        assert any("recurrent bias" in n for n in rep["normalisation"])  # nn.Linear(bias=True) folded
    # the written file is a crsnn graph that every command reads exactly
    _, net, _ = import_graph(tmp_path / f"{kind}.nir", DT)
    assert networks_equal(load_nir(tmp_path / f"{kind}_crsnn.nir"), net)


def test_float_reference_reproduces_snntorch_own_leaky_simulation():
    """Where the exporter describes the dynamics (Leaky, reset to zero), the NIR reference is
    snnTorch's own simulation, spike for spike."""
    net = snntorch_net("leaky")
    pops, _ = populations(normalize_foreign(export_to_nir(net, torch.zeros(1, N_IN), ignore_dims=[0]), DT))
    x = (np.random.default_rng(0).random((8, 100, N_IN)) < 0.1).astype(np.float64)
    ref = simulate_float(pops, x)
    snn_utils.reset(net)
    with torch.no_grad():
        own = np.stack([net(torch.from_numpy(x[:, t]).float())[0].numpy() for t in range(x.shape[1])], 1)
    assert ref.spikes[-1].sum() > 100
    assert np.array_equal(own.astype(bool), ref.spikes[-1])


def test_nested_subgraph_imports_like_the_flattened_export(tmp_path):
    """snnTorch's RLeaky as its exporter returns it (a subgraph), without nirtorch's flattening."""
    net = snntorch_net("rleaky")
    flat = export_to_nir(net, torch.zeros(1, N_IN), ignore_dims=[0])
    fc1, rleaky, fc2, out = (_extract_snntorch_module(m) for m in net)
    assert isinstance(rleaky, nir.NIRGraph)
    nested = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([N_IN])}), "fc1": fc1,
                                 "rlif": rleaky, "fc2": fc2, "lif2": out,
                                 "output": nir.Output(output_type={"output": np.array([N_OUT])})},
                          edges=[("input", "fc1"), ("fc1", "rlif"), ("rlif", "fc2"), ("fc2", "lif2"), ("lif2", "output")],
                          type_check=False)
    nir.write(str(tmp_path / "nested.nir"), nested)
    _, a, _ = import_graph(tmp_path / "nested.nir", DT)
    b = load_nir(flat, dt=DT)
    assert networks_equal(a, b)
    x = (np.random.default_rng(2).random((2, 50, N_IN)) < 0.2).astype(np.int64)
    assert np.array_equal(simulate(a, x).hidden_spikes[0], simulate(b, x).hidden_spikes[0])


@pytest.mark.lava
def test_imported_rsynaptic_graph_runs_on_lava_bit_exact(tmp_path, capsys):
    from crsnn.deploy.lava_network import run_lava
    from crsnn.sim.compare import compare_runs

    src, out = tmp_path / "rsyn.nir", tmp_path / "rsyn_crsnn.nir"
    export(snntorch_net("rsynaptic"), src)
    assert main([str(src), str(out), "--dt", str(DT), "--samples", "4"]) == 0
    net = load_nir(out)
    x = (np.random.default_rng(3).random((2, 60, N_IN)) < 0.1).astype(np.int64)
    ref = simulate(net, x)
    lava = run_lava(net, x, timeout_s=120)
    mm = compare_runs(ref.hidden_spikes, ref.readout_v, lava.hidden_spikes, lava.readout_v)
    assert sum(int(s.sum()) for s in ref.hidden_spikes) > 100
    assert mm.exact, mm.first
