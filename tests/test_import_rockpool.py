"""crsnn-import on graphs exported by Rockpool itself (rockpool.nn.modules.torch.nir.to_nir): a
Sequential of LinearTorch and LIFTorch modules (CubaLIF in NIR), as Rockpool's NIR tutorial builds
it. Rockpool 3.1.0 installs next to nir 1.0.8 and nirtorch 2.6 (its nir <= 1.0.4 pin is only an
extra) and its exporter runs with them."""

from __future__ import annotations

import json

import nir
import numpy as np
import pytest
import torch

from rockpool.nn.combinators import Sequential
from rockpool.nn.modules import LIFTorch, LinearTorch
from rockpool.nn.modules.torch.nir import to_nir

from crsnn.export.import_cli import main
from crsnn.export.nir_float_ref import populations, simulate_float
from crsnn.export.nir_foreign import normalize_foreign
from crsnn.export.nir_reader import read_graph

DT = 1e-3
N_IN, N_HID, N_OUT = 20, 32, 6


def rockpool_net(seed: int = 0, threshold: float = 1.0) -> Sequential:
    torch.manual_seed(seed)
    l1, l2 = LinearTorch((N_IN, N_HID)), LinearTorch((N_HID, N_OUT))
    with torch.no_grad():
        l1.weight.normal_(0.0, 0.5)
        l2.weight.normal_(0.0, 0.5)
    kw = dict(tau_mem=0.02, tau_syn=0.01, dt=DT, threshold=threshold)
    return Sequential(l1, LIFTorch(N_HID, **kw), l2, LIFTorch(N_OUT, **kw))


def test_rockpool_export_imports_with_high_fidelity(tmp_path, capsys):
    src, out, js = tmp_path / "rp.nir", tmp_path / "out.nir", tmp_path / "r.json"
    nir.write(str(src), to_nir(rockpool_net(), torch.zeros(1, 1, N_IN)))
    assert main([str(src), str(out), "--dt", str(DT), "--json", str(js), "--min-corr", "0.98"]) == 0
    assert "type [1, 1, 20] read as [20]" in capsys.readouterr().out
    rep = json.loads(js.read_text())
    for layer in rep["fidelity"]["layers"]:
        assert layer["spiking"] and layer["spikes_float"] > 1000, layer
        assert layer["count_corr"] >= 0.98 and layer["time_jaccard_1"] >= 0.9, layer
    assert rep["fidelity"]["output"]["decision_agreement"] >= 0.9
    assert all(r["ff_clipped"] == 0 for r in rep["quantization"])


def test_rockpool_graph_gives_its_neurons_a_tenth_of_the_input():
    """Rockpool's exporter writes w_in = 1 and r = tau_mem exp(-dt/tau_mem) / dt: NIR's synaptic
    current then gains dt/tau_syn of each input where Rockpool's isyn adds all of it, so Rockpool's
    own membrane voltage is ~tau_syn/dt (10x) the graph's (one layer below threshold: same shape)."""
    torch.manual_seed(0)
    net = Sequential(LinearTorch((N_IN, 8)), LIFTorch(8, tau_mem=0.02, tau_syn=0.01, dt=DT, threshold=1e9))
    g = to_nir(net, torch.zeros(1, 1, N_IN))
    lif = g.nodes["1_LIFTorch"]
    assert np.all(np.asarray(lif.w_in) == 1) and np.all(np.asarray(lif.v_reset) == 0) and not lif.metadata
    pops, _ = populations(normalize_foreign(read_graph(g), DT))
    x = (np.random.default_rng(0).random((2, 200, N_IN)) < 0.1).astype(np.float32)
    graph = simulate_float(pops, x).readout_v.ravel()
    _, _, rec = net(torch.from_numpy(x), record=True)
    own = rec["1_LIFTorch"]["vmem"].detach().numpy().ravel()
    ratio = float(own @ graph / (graph @ graph))
    assert 9.5 < ratio < 11.0 and np.corrcoef(own, graph)[0, 1] >= 0.999


def test_rockpool_importer_cannot_open_a_portable_export(tmp_path):
    """Rockpool 3.1.0's from_nir maps nir.LIF reading ``node.tau_mem`` (NIR's LIF field is ``tau``):
    it fails on every LIF graph, crsnn's portable export included."""
    from rockpool.nn.modules.torch.nir import from_nir
    from test_import_portable import feedforward_net

    from crsnn.export.portable import to_portable_nir

    nir.write(str(tmp_path / "p.nir"), to_portable_nir(feedforward_net(), dt=DT))
    with pytest.raises(AttributeError, match="'LIF' object has no attribute 'tau_mem'"):
        from_nir(nir.read(str(tmp_path / "p.nir")))
