"""The integer simulator: latencies, conv semantics, delay-group shifts, batching, validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crsnn import loihi2 as L2
from crsnn.models.integer import (Connection, IntegerNetwork, Layer, LIFParams,
                                  NetworkValidationError, Recurrence, conv_matrix)
from crsnn.sim.integer_sim import feedforward_input, simulate
from crsnn.sim.random_networks import random_input, random_network

BIG = L2.VTH_MAX


def relay(n_in=1, hidden=1, rec=None, vth=0, readout_w=2):
    """1 neuron per layer that spikes whenever it receives anything (vth 0, weight 2)."""
    layers = []
    for i in range(hidden):
        layers.append(Layer(Connection(np.full((1, n_in if i == 0 else 1), 2)), LIFParams(1, du=4095, dv=4095, vth=vth),
                            rec if i == 0 else None))
    ro = Layer(Connection(np.array([[readout_w]])), LIFParams(1, du=4095, dv=0, vth=BIG))
    return IntegerNetwork(n_in=n_in, hidden=layers, readout=ro)


def test_each_feedforward_hop_adds_one_step():
    for hidden in (1, 2, 3):
        x = np.zeros((1, 10, 1), np.int64)
        x[0, 2, 0] = 1
        r = simulate(relay(hidden=hidden), x)
        for li, s in enumerate(r.hidden_spikes):
            assert np.flatnonzero(s[0, :, 0]).tolist() == [2 + 1 + li]
        # readout integrates at step 2 + hidden + 1: v = 2 << 6 = 128 from then on (dv = 0)
        assert np.flatnonzero(r.readout_v[0, :, 0]).min() == 2 + hidden + 1
        assert r.readout_v[0, -1, 0] == 128


@pytest.mark.parametrize("delay", [0, 1, 5, 62])
def test_recurrent_spike_arrives_after_one_plus_delay_steps(delay):
    # self-excitation through a k=1 conv kernel: the neuron re-fires every 1 + delay steps
    rec = Recurrence(delays=[delay], kernel=[2])
    x = np.zeros((1, 140, 1), np.int64)
    x[0, 0, 0] = 1
    s = simulate(relay(rec=rec), x).hidden_spikes[0][0, :, 0]
    times = np.flatnonzero(s)
    assert times[0] == 1
    assert np.all(np.diff(times) == 1 + delay)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("k", range(1, 8))
def test_conv_matrix_matches_torch_conv1d_same_padding(k):
    rng = np.random.default_rng(k)
    n = 11
    kernel = rng.integers(-5, 6, k)
    x = rng.integers(0, 2, n)
    ref = torch.nn.functional.conv1d(torch.tensor(x, dtype=torch.float64)[None, None],
                                     torch.tensor(kernel, dtype=torch.float64)[None, None], padding="same")
    assert np.array_equal(conv_matrix(kernel, n) @ x, ref[0, 0].numpy().astype(np.int64))


def test_negative_exponent_floors_each_delay_group_separately():
    # two presynaptic neurons with different delays, weight 2 each onto neuron 0, exponent -2:
    # Lava shifts each delay group's sum: floor(2 / 4) + floor(2 / 4) = 0, not floor(4 / 4) = 1.
    # Make both arrive at the same step: neuron 0 fires at t=1 with delay 1, neuron 1 at t=2 with 0.
    w = np.array([[0, 2, 2], [0, 0, 0], [0, 0, 0]])
    rec_split = Recurrence(delays=[0, 1, 0], weights=w, weight_exp=-2)
    rec_same = Recurrence(delays=[0, 0, 0], weights=w, weight_exp=-2)

    def net(rec):
        h = Layer(Connection(np.eye(3, dtype=np.int64) * 2), LIFParams(3, du=4095, dv=0, vth=0), rec)
        return IntegerNetwork(n_in=3, hidden=[h], readout=Layer(Connection(np.zeros((1, 3))), LIFParams(1, vth=BIG)))

    x = np.zeros((1, 6, 3), np.int64)
    x[0, 0, 1] = 1  # neuron 1 fires at step 1, its spike (delay 1) arrives at step 3
    x[0, 1, 2] = 1  # neuron 2 fires at step 2, its spike (delay 0) arrives at step 3
    split = simulate(net(rec_split), x).hidden_spikes[0][0, :, 0]
    assert not split.any()  # 0 + 0: neuron 0 never gets input
    x2 = np.zeros((1, 6, 3), np.int64)
    x2[0, 0, 1] = x2[0, 0, 2] = 1  # both fire at step 1, one delay group: floor(4 / 4) = 1
    same = simulate(net(rec_same), x2).hidden_spikes[0][0, :, 0]
    assert np.flatnonzero(same).tolist() == [2]  # arrives at 1 + 1 + 0, v = 64 > 0: spike


def test_dense_connection_shifts_the_sum_not_each_synapse():
    eff = np.array([[1, 1]])
    x = np.array([[[1, 1], [0, 0]]])
    assert feedforward_input(eff, -1, x)[0, 1, 0] == 1  # floor(2 / 2); per synapse would give 0


def test_batch_equals_samples_run_alone():
    rng = np.random.default_rng(3)
    net, steps = random_network(rng, max_neurons=16)
    x = random_input(rng, net, 4, steps)
    together = simulate(net, x)
    for b in range(4):
        alone = simulate(net, x[b:b + 1])
        assert np.array_equal(alone.readout_v[0], together.readout_v[b])
        for a, t in zip(alone.hidden_spikes, together.hidden_spikes):
            assert np.array_equal(a[0], t[b])


@pytest.mark.parametrize("mutate, message", [
    (lambda n: setattr(n.hidden[0].rec, "delays", np.array([63, 0])), "delay of neuron 0 = 63"),
    (lambda n: n.hidden[0].ff.weights.__setitem__((0, 0), 300), "feedforward weights"),
    (lambda n: setattr(n.hidden[0].neuron, "vth", 2**17), "vth = 131072"),
    (lambda n: n.hidden[0].neuron.bias_mant.__setitem__(1, 5000), "bias_mant"),
    (lambda n: setattr(n.hidden[0].neuron, "du", 4096), "du = 4096"),
    (lambda n: setattr(n.hidden[0].ff, "weight_exp", 9), "weight_exp = 9"),
    (lambda n: setattr(n.readout, "ff", Connection(np.zeros((1, 3)))), "expected (1, 2)"),
])
def test_validation_names_layer_parameter_and_range(mutate, message):
    net = IntegerNetwork(
        n_in=2,
        hidden=[Layer(Connection(np.ones((2, 2))), LIFParams(2), Recurrence(delays=[1, 2], kernel=[1, 1, 1]))],
        readout=Layer(Connection(np.ones((1, 2))), LIFParams(1, vth=BIG)))
    net.validate()
    mutate(net)
    with pytest.raises(NetworkValidationError, match="layer 0|readout") as err:
        net.validate()
    assert message in str(err.value)


def test_input_outside_message_range_is_refused():
    net = relay()
    with pytest.raises(NetworkValidationError, match=r"outside \[0, 1\]"):
        simulate(net, np.full((1, 3, 1), 2))
    net.input_message_bits = 3
    simulate(net, np.full((1, 3, 1), 7))
    with pytest.raises(NetworkValidationError, match="expected shape"):
        simulate(net, np.zeros((3, 1)))
