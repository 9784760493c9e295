"""Deploy: batching design (Lava side by side == Lava one sample at a time), backends, report."""

from __future__ import annotations

import numpy as np
import pytest

from crsnn.deploy.backends import BackendUnavailable, loihi2_missing, require_loihi2, run_batch
from crsnn.deploy.lava_network import run_lava
from crsnn.deploy.report import Loihi2Limits, format_report, network_report
from crsnn.models.integer import Connection, IntegerNetwork, Layer, LIFParams, Recurrence
from crsnn.sim.random_networks import random_crsnn


@pytest.mark.lava
def test_side_by_side_batches_change_no_spike_against_one_lava_run_per_sample():
    rng = np.random.default_rng(5)
    net = random_crsnn(rng, 30, [24, 16], 4, kernel=3, input_rate=0.2, hidden_rate=0.1)
    x = (rng.random((5, 40, 30)) < 0.2).astype(np.int64)
    together = run_batch(net, x, backend="lava-cpu", chunk=3)  # chunks of 3 and 2 copies
    assert sum(int(s.sum()) for s in together.hidden_spikes) > 50
    for b in range(5):
        alone = run_lava(net, x[b:b + 1])
        assert np.array_equal(alone.readout_v[0], together.readout_v[b])
        for a, t in zip(alone.hidden_spikes, together.hidden_spikes):
            assert np.array_equal(a[0], t[b])
    sim = run_batch(net, x, backend="sim")
    assert np.array_equal(sim.readout_v, together.readout_v)


def test_loihi2_backend_says_what_is_missing():
    missing = loihi2_missing()
    if not missing:
        pytest.skip("this machine has lava-loihi and a Loihi 2 board")
    with pytest.raises(BackendUnavailable, match="lava-loihi") as err:
        require_loihi2()
    assert "--backend lava-cpu" in str(err.value)
    with pytest.raises(BackendUnavailable):
        run_batch(random_crsnn(np.random.default_rng(0), 4, [4], 2), np.zeros((1, 3, 4), np.int64), backend="loihi2")


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="unknown backend 'gpu'"):
        run_batch(random_crsnn(np.random.default_rng(0), 4, [4], 2), np.zeros((1, 3, 4), np.int64), backend="gpu")


def small_net() -> IntegerNetwork:
    ff = np.array([[2, 0], [4, 6], [0, 0]])  # 4 non-zero synapses; input 0 -> 2 targets, input 1 -> 1
    rec = Recurrence(delays=[0, 5, 62], kernel=[2, 0, 2])  # taps +-1: 4 non-zero synapses in a 3-neuron band
    return IntegerNetwork(n_in=2, hidden=[Layer(Connection(ff), LIFParams(3, vth=0), rec)],
                          readout=Layer(Connection(np.array([[2, 2, 2]])), LIFParams(1, vth=131071)))


def test_report_counts_synapses_delays_and_synaptic_operations():
    net = small_net()
    x = np.zeros((2, 4, 2), np.int64)
    x[0, 0, 0] = 1  # one event on input 0: 2 synaptic ops
    x[1, 1, 1] = 1  # one on input 1: 1 op
    spikes = [np.zeros((2, 4, 3), bool)]
    spikes[0][0, 2, 1] = True  # neuron 1 spikes once: 2 recurrent ops (-> 0 and 2) + 1 readout op
    rep = network_report(net, spikes, x)
    h, ro = rep["layers"]
    assert (h["ff_synapses"], h["rec_synapses"], h["delay_range"], h["recurrence"]) == (3, 4, (0, 62), "conv k=3")
    assert h["synops_per_sample"] == (2 + 1 + 2) / 2
    assert ro["synops_per_sample"] == 1 / 2 and h["spikes_per_sample"] == 1 / 2
    assert rep["total"]["fits"] and rep["total"]["cores"] == 2
    tight = network_report(net, limits=Loihi2Limits(max_fan_in=2))
    assert not tight["total"]["fits"] and "fan-in 4 > 2" in tight["layers"][0]["problems"][0]
    text = format_report(tight)
    assert "NO: fan-in 4 > 2" in text and "unverified for Loihi 2" in text
