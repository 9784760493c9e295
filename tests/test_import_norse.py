"""crsnn-import on graphs exported by Norse itself (norse.torch.to_nir), networks built as Norse's
tutorials build them: a SequentialState of nn.Linear layers and LIFBox / LIF / IAF cells with an
LIBox readout.

Norse 1.1.0 writes ``tau = dt / tau_mem_inv`` (dt times the true time constant): the graph says its
neurons forget 1000 times faster than Norse simulates them. Imported with ``--dt`` = dt**2 = 1e-6
the graph's decays equal Norse's own (tau / dt steps). Its IF nodes are unit-step integrators
(``v += x``), i.e. NIR's ``IF`` with time in steps: ``--time-unit steps``."""

from __future__ import annotations

import json

import nir
import numpy as np
import pytest
import torch

import norse.torch as nt  # a test dependency (scripts/setup.sh): missing = an error, not a skip
from norse.torch.utils.export_nir import to_nir

from crsnn.export.import_cli import main
from crsnn.export.nir_float_ref import populations, simulate_float
from crsnn.export.nir_foreign import normalize_foreign

N_IN, N_HID, N_OUT = 20, 32, 6
ARGS = {"lifbox": ["--dt", "1e-6"], "lif": ["--dt", "1e-6"], "iaf": ["--time-unit", "steps"]}


def _vec(x: float, n: int) -> torch.Tensor:
    # per-neuron parameters: Norse's default scalar parameters cannot be written by nir.write
    return torch.full((n,), float(x))


def norse_net(kind: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    fc1, fc2 = torch.nn.Linear(N_IN, N_HID), torch.nn.Linear(N_HID, N_OUT)
    scale = (2.0, 1.0) if kind == "iaf" else (4.0, 2.0)
    with torch.no_grad():
        fc1.weight.normal_(0.0, scale[0])
        fc2.weight.normal_(0.0, scale[1])
    zeros_h = _vec(0.0, N_HID)
    if kind == "lifbox":
        hid = nt.LIFBoxCell(nt.LIFBoxParameters(tau_mem_inv=_vec(100.0, N_HID), v_th=_vec(1.0, N_HID), v_leak=zeros_h,
                                                v_reset=zeros_h))
    elif kind == "lif":
        hid = nt.LIFCell(nt.LIFParameters(tau_syn_inv=_vec(200.0, N_HID), tau_mem_inv=_vec(100.0, N_HID),
                                          v_th=_vec(1.0, N_HID), v_leak=zeros_h, v_reset=zeros_h))
    else:
        hid = nt.IAFCell(nt.IAFParameters(v_th=_vec(1.0, N_HID), v_reset=zeros_h))
    if kind == "iaf":
        out = nt.IAFCell(nt.IAFParameters(v_th=_vec(1.0, N_OUT), v_reset=_vec(0.0, N_OUT)))
    else:
        out = nt.LIBoxCell(nt.LIBoxParameters(tau_mem_inv=_vec(100.0, N_OUT), v_leak=_vec(0.0, N_OUT)))
    return nt.SequentialState(fc1, hid, fc2, out)


@pytest.mark.parametrize("kind", ["lifbox", "lif", "iaf"])
def test_norse_exports_import_with_high_fidelity(tmp_path, kind, capsys):
    src, out, js = tmp_path / f"{kind}.nir", tmp_path / "out.nir", tmp_path / "r.json"
    g = to_nir(norse_net(kind), torch.zeros(1, N_IN))
    nir.write(str(src), g)
    with pytest.raises(ValueError, match="type mismatch"):
        nir.read(str(src))  # Input [1, N] in front of an Affine taking [N]: NIR's own reader refuses it
    assert main([str(src), str(out), *ARGS[kind], "--json", str(js), "--min-corr", "0.98"]) == 0
    assert "read as [20]" in capsys.readouterr().out
    rep = json.loads(js.read_text())
    spiking = [l for l in rep["fidelity"]["layers"] if l["spiking"]]
    assert spiking and all(l["spikes_float"] > 200 and l["count_corr"] >= 0.98 for l in spiking), spiking
    o = rep["fidelity"]["output"]
    assert o["decision_agreement"] >= 0.9
    if kind != "iaf":
        assert o["voltage_corr"] >= 0.98  # the LI readout voltage, the network's output


def test_float_reference_with_norse_time_base_is_norse_own_simulation():
    """With dt**2 (Norse's tau bug undone) the NIR reference is Norse's LIFBox / LIBox simulation."""
    net = norse_net("lifbox")
    pops, _ = populations(normalize_foreign(to_nir(net, torch.zeros(1, N_IN)), 1e-6))
    x = (np.random.default_rng(0).random((4, 80, N_IN)) < 0.1).astype(np.float32)
    ref = simulate_float(pops, x)
    state, own = None, []
    with torch.no_grad():
        for t in range(x.shape[1]):
            y, state = net(torch.from_numpy(x[:, t]), state)
            own.append(y.numpy())
    own = np.stack(own, 1)
    assert ref.spikes[0].sum() > 100
    np.testing.assert_allclose(own, ref.readout_v, rtol=1e-3, atol=1e-3)
