"""Per-synapse delays through NIR (exact round trip), Lava (DelayDense / DelaySparse) and
lava-dl's netx format (writer, reader, refusals, netx's own loader on Lava)."""

from __future__ import annotations

import sys

import h5py
import nir
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crsnn import loihi2 as L2
from crsnn.export.netx_writer import (NetxExportError, is_netx_file, netx_problems, read_netx, same_arithmetic,
                                      write_netx_atomic)
from crsnn.export.nir_reader import NIRImportError, load_nir
from crsnn.export.nir_writer import to_nir, write_nir_atomic
from crsnn.models.integer import Connection, IntegerNetwork, Layer, LIFParams, Recurrence
from crsnn.sim.compare import compare_runs
from crsnn.sim.integer_sim import simulate
from crsnn.sim.random_networks import random_input, random_network


def _same(a: IntegerNetwork, b: IntegerNetwork, x: np.ndarray) -> bool:
    ra, rb = simulate(a, x), simulate(b, x)
    return compare_runs(ra.hidden_spikes, ra.readout_v, rb.hidden_spikes, rb.readout_v).exact


# ---------------------------------------------------------------------------------------- NIR
@pytest.mark.parametrize("seed", range(8))
def test_nir_round_trip_of_synaptic_delays_is_exact(tmp_path, seed):
    rng = np.random.default_rng([21, seed])
    net, steps = random_network(rng, odd_kernels=True, synaptic_delays=0.9)
    back = load_nir(write_nir_atomic(to_nir(net, dt=0.01), tmp_path / "n.nir"))
    for a, b in zip(net.layers, back.layers):
        assert (a.ff.delays is None) == (b.ff.delays is None)
        if a.ff.delays is not None:
            nz = a.ff.effective() != 0
            assert np.array_equal(np.where(nz, a.ff.delays, 0), b.ff.delays)
    assert _same(net, back, random_input(rng, net, 2, steps))


def _delayed_net() -> IntegerNetwork:
    ff = Connection([[2, 4, 0], [6, -2, 8]], delays=[[0, 3, 5], [3, 7, 0]], weight_exp=-1)
    return IntegerNetwork(n_in=3, hidden=[Layer(ff, LIFParams(2, vth=1))],
                          readout=Layer(Connection([[2, 2]]), LIFParams(1, vth=L2.VTH_MAX)))


def test_plain_nir_sees_one_delay_and_linear_branch_per_delay_value(tmp_path):
    write_nir_atomic(to_nir(_delayed_net(), dt=0.01), tmp_path / "n.nir")
    g = nir.read(str(tmp_path / "n.nir"))
    edges = set(map(tuple, g.edges))
    assert {("input", "affine_0"), ("affine_0", "if_0"), ("input", "sdelay_0_3"), ("sdelay_0_3", "slinear_0_3"),
            ("slinear_0_3", "if_0"), ("input", "sdelay_0_7"), ("slinear_0_7", "if_0")} <= edges
    assert "sdelay_0_5" not in g.nodes  # synapse (0, 2) has weight 0: no branch
    d3 = g.nodes["sdelay_0_3"]
    assert isinstance(d3, nir.Delay) and d3.delay.dtype.kind == "i" and np.all(d3.delay == 3)
    w3 = np.asarray(g.nodes["slinear_0_3"].weight)[0]
    assert np.array_equal(w3, [[0, 2, 0], [3, 0, 0]])  # effective * 2**-1, only the delay-3 synapses
    total = sum(np.asarray(g.nodes[k].weight)[0] for k in ("affine_0", "slinear_0_3", "slinear_0_7"))
    assert np.array_equal(total, [[1, 2, 0], [3, -1, 4]])


def test_inconsistent_branches_are_refused(tmp_path):
    g = to_nir(_delayed_net(), dt=0.01)
    g.nodes["sdelay_0_3"] = nir.Delay(delay=np.full((1, 3), 4, dtype=np.int64))
    write_nir_atomic(g, tmp_path / "bad.nir")
    with pytest.raises(NIRImportError, match=r"sdelay_0_3.*all values = 3"):
        load_nir(tmp_path / "bad.nir")


# ---------------------------------------------------------------------------------------- netx
def netx_network(rng: np.random.Generator, bits: int = 2) -> IntegerNetwork:
    """A feedforward network netx can express: per-synapse delays, exponents 0 and -1 (odd stored
    weights), biases that are multiples of 64, a current decay, graded input."""
    def conn(n, m, exp, delays=True):
        return Connection(2 * rng.integers(-128, 128, (n, m)), weight_exp=exp, sign_mode=L2.SignMode.MIXED,
                          delays=rng.integers(0, 20, (n, m)) if delays else None)
    h1 = Layer(conn(16, 10, 0), LIFParams(16, du=4095, dv=300, vth=400, bias_mant=rng.integers(-4, 5, 16) * 64))
    h2 = Layer(conn(12, 16, -1, False), LIFParams(12, du=2000, dv=100, vth=300, bias_mant=rng.integers(-40, 40, 12),
                                                  bias_exp=6))
    ro = Layer(conn(4, 12, 0), LIFParams(4, du=4095, dv=200, vth=L2.VTH_MAX))
    return IntegerNetwork(n_in=10, hidden=[h1, h2], readout=ro, input_message_bits=bits).validate()


def test_netx_file_layout_and_exact_read_back(tmp_path):
    net = netx_network(np.random.default_rng(0))
    path = write_netx_atomic(net, tmp_path / "m.net.h5", dt=0.01, metadata={"loss": "mean"})
    assert is_netx_file(path) and not is_netx_file(tmp_path / "missing.h5")
    with h5py.File(path) as f:
        assert f["layer/0/type"][0] == b"input" and list(f["layer/0/shape"][()]) == [10]
        g = f["layer/1"]
        assert g["type"][0] == b"dense" and g["delay"].shape == (16, 10) and g["neuron/type"][0] == b"CUBA"
        assert int(g["neuron/iDecay"][()]) == 4096 and int(g["neuron/vThMant"][()]) == 400
        assert np.array_equal(g["bias"][()], net.hidden[0].neuron.bias() // 64)
        assert "delay" not in f["layer/2"] and f["layer/2/weight"][()].max() <= 127  # exponent -1: w / 2
        assert f["crsnn"].attrs["input_message_bits"] == 2
    back = read_netx(path)
    assert same_arithmetic(net, back) and back.input_message_bits == 2
    x = random_input(np.random.default_rng(1), net, 2, 40)
    assert _same(net, back, x)


def test_netx_refuses_what_it_cannot_express_with_the_reason(tmp_path):
    net = netx_network(np.random.default_rng(0))
    net.hidden[0].rec = Recurrence(delays=np.zeros(16, np.int64), kernel=[2, 4, 2])
    net.hidden[1].ff.weight_exp = 1
    net.readout.neuron.bias_mant[:] = 3
    problems = " | ".join(netx_problems(net))
    assert "layer 0: has a recurrence (netx 0.6.0 cannot express recurrent axonal delays" in problems
    assert "layer 1: feedforward weights x 2**weight_exp (1)" in problems and "--target netx" in problems
    assert "readout: biases" in problems and "multiples of 64" in problems
    with pytest.raises(NetxExportError):
        write_netx_atomic(net, tmp_path / "no.net.h5", dt=0.01)
    assert not (tmp_path / "no.net.h5").exists()


def test_netx_imports_without_slayer_init_opencv_or_torchvision():
    from crsnn.lava_dl_compat import import_netx

    netx = import_netx()
    assert hasattr(netx.hdf5, "Network")
    assert "cv2" not in sys.modules and "torchvision" not in sys.modules


def test_netx_target_profile_quantizes_within_netx_limits():
    import torch

    from crsnn.models.network import ModelConfig, build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(n_in=6, n_out=3, model="dcls", hidden=[8], max_delay=5, target="netx", vth=64))
    with torch.no_grad():
        model.layers[0].weight.mul_(3.0)
        model.layers[0].bn_bias.uniform_(-1, 1)
    net = model.to_integer()
    assert netx_problems(net) == []
    with pytest.raises(ValueError, match="netx format cannot express recurrent"):
        ModelConfig(n_in=6, n_out=3, model="crsnn", hidden=[8], target="netx")


# ---------------------------------------------------------------------------------------- Lava
@pytest.mark.lava
@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2**32 - 1), batch=st.integers(1, 3))
def test_synaptic_delays_are_bit_exact_with_lava(seed, batch):
    from crsnn.deploy.lava_network import run_lava

    rng = np.random.default_rng(seed)
    net, steps = random_network(rng, max_neurons=24, synaptic_delays=1.0)
    x = random_input(rng, net, batch, min(steps, 50))
    ref, lava = simulate(net, x), run_lava(net, x, timeout_s=120)
    mm = compare_runs(ref.hidden_spikes, ref.readout_v, lava.hidden_spikes, lava.readout_v)
    assert mm.exact, mm.first


@pytest.mark.lava
def test_netx_file_on_lava_with_netx_loader_is_bit_exact(tmp_path):
    from crsnn.deploy.netx_run import run_netx

    rng = np.random.default_rng(3)
    net = netx_network(rng)
    path = write_netx_atomic(net, tmp_path / "m.net.h5", dt=0.01)
    x = (rng.random((2, 50, 10)) < 0.3) * rng.integers(1, 4, (2, 50, 10))
    ref, lava = simulate(net, x), run_netx(path, x, net.input_message_bits, timeout_s=120)
    assert sum(int(s.sum()) for s in ref.hidden_spikes) > 100
    mm = compare_runs(ref.hidden_spikes, ref.readout_v, lava.hidden_spikes, lava.readout_v)
    assert mm.exact, mm.first


@pytest.mark.slow
@pytest.mark.lava
def test_dcls_train_export_netx_and_verify_commands(tmp_path, capsys):
    from crsnn.deploy.cli import verify_main
    from crsnn.export.cli import main as export_main
    from crsnn.train.cli import main as train_main

    ckpt, nx, nr = tmp_path / "d.pt", tmp_path / "d.net.h5", tmp_path / "d.nir"
    assert train_main(["--data", "synthetic:train=128,test=32", "--model", "dcls", "--hidden", "16", "16",
                       "--max-delay", "6", "--epochs", "2", "--target", "netx", "--vth", "64", "--out", str(ckpt),
                       "--no-progress"]) == 0
    assert export_main([str(ckpt), str(nr), "--check"]) == 0
    assert export_main([str(ckpt), str(nx), "--format", "netx", "--check"]) == 0
    assert "check: " in capsys.readouterr().out
    for f in (nr, nx):
        assert verify_main([str(ckpt), str(f), "--data", "synthetic:train=128,test=32", "-n", "4", "--chunk", "4",
                            "--no-progress"]) == 0
        assert capsys.readouterr().out.strip().splitlines()[-1].startswith(
            "lava-vs-integer: 0 mismatching spikes, 0 mismatching readout values over 4 samples")
