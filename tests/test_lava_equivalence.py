"""Integration tests that run the real lava-nc fixed-point CPU simulator."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crsnn import loihi2 as L2
from crsnn.deploy.lava_network import _run_in_lava, run_lava
from crsnn.deploy.watchdog import LavaRunError, LavaTimeoutError, run_with_timeout
from crsnn.models.integer import Connection, IntegerNetwork, Layer, LIFParams, Recurrence
from crsnn.sim import check_lava
from crsnn.sim.compare import compare_runs
from crsnn.sim.integer_sim import simulate
from crsnn.sim.random_networks import random_input, random_network

pytestmark = pytest.mark.lava


def _compare(net, x):
    ref = simulate(net, x)
    lava = run_lava(net, x, timeout_s=120)
    return ref, compare_runs(ref.hidden_spikes, ref.readout_v, lava.hidden_spikes, lava.readout_v)


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2**32 - 1), batch=st.integers(1, 3))
def test_random_networks_are_bit_exact_with_lava(seed, batch):
    rng = np.random.default_rng(seed)
    net, steps = random_network(rng, max_neurons=24)
    x = random_input(rng, net, batch, min(steps, 50))
    _, mm = _compare(net, x)
    assert mm.exact, mm.first


def crsnn_like(dense: bool = False) -> IntegerNetwork:
    """A small CRSNN-shaped network with guaranteed activity (graded input, 2 recurrent layers)."""
    rng = np.random.default_rng(7)
    def rec(n, k):
        d = rng.integers(0, 63, n)
        return Recurrence(delays=d, weights=rng.integers(-60, 61, (n, n))) if dense else \
            Recurrence(delays=d, kernel=rng.integers(-120, 121, k))
    h1 = Layer(Connection(rng.integers(-40, 120, (16, 12)), weight_exp=1), LIFParams(16, du=4095, dv=800, vth=300), rec(16, 3))
    h2 = Layer(Connection(rng.integers(-60, 140, (12, 16)), weight_exp=1), LIFParams(12, du=4095, dv=800, vth=300), rec(12, 5))
    ro = Layer(Connection(rng.integers(-100, 101, (4, 12))), LIFParams(4, du=4095, dv=200, vth=L2.VTH_MAX))
    return IntegerNetwork(n_in=12, hidden=[h1, h2], readout=ro, input_message_bits=2)


@pytest.mark.parametrize("dense", [False, True])
def test_crsnn_and_delrec_shaped_networks_match_spike_for_spike(dense):
    net = crsnn_like(dense)
    x = np.random.default_rng(1).integers(0, 4, (2, 80, 12))
    ref, mm = _compare(net, x)
    assert sum(int(s.sum()) for s in ref.hidden_spikes) > 100  # the comparison is not vacuous
    assert mm.exact, mm.first


def test_the_comparison_detects_an_off_by_one_rule(monkeypatch):
    """If the simulator's threshold were one mantissa unit (64 in v) lower, Lava must disagree."""
    net = crsnn_like()
    for layer in net.hidden:
        # drives are multiples of 256 (even weights, exponent 1, << 6) and vth << 6 = 256, so
        # v lands exactly on the threshold often: the true rule does not spike there.
        layer.neuron.dv, layer.neuron.vth = 0, 4
    x = np.random.default_rng(2).integers(0, 4, (1, 60, 12))
    lava = run_lava(net, x, timeout_s=120)
    real_step = L2.lif_step

    def off_by_one(u, v, a, du, dv, vth, bias):
        return real_step(u, v, a, du, dv, vth - 1 if vth > 0 else vth, bias)  # threshold 64 lower

    monkeypatch.setattr(L2, "lif_step", off_by_one)
    ref = simulate(net, x)
    mm = compare_runs(ref.hidden_spikes, ref.readout_v, lava.hidden_spikes, lava.readout_v)
    assert not mm.exact and mm.spikes > 0


def test_watchdog_stops_a_lava_run_that_would_hang():
    # delay 64 passes Lava's process constructor but raises inside its ProcessModel, which hangs
    # Lava; bypass our own validation to show the watchdog turns it into an error.
    net = IntegerNetwork(n_in=1, hidden=[Layer(Connection([[2]]), LIFParams(1, vth=0),
                                               Recurrence(delays=[64], kernel=[2]))],
                         readout=Layer(Connection([[2]]), LIFParams(1, vth=L2.VTH_MAX)))
    t0 = time.perf_counter()
    with pytest.raises((LavaTimeoutError, LavaRunError)):
        run_with_timeout(_run_in_lava, net, np.ones((1, 5, 1), np.int64), timeout_s=8)
    assert time.perf_counter() - t0 < 30


def test_run_lava_validates_before_building():
    net = crsnn_like()
    net.hidden[0].rec.delays[3] = 63
    with pytest.raises(ValueError, match="delay of neuron 3 = 63"):
        run_lava(net, np.zeros((1, 5, 12), np.int64))


def test_check_command_reports_bit_exactness(capsys):
    assert check_lava.main(["--networks", "2", "--seed", "11"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == "bit-exact: 2/2 networks, 0 mismatching spikes, 0 mismatching readout values"
