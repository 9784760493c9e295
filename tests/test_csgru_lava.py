"""CS-GRU layers on Lava's fixed-point CPU simulator (the real lava-nc): the CSGRUNeurons process
with its fixed-point model, wired to Lava's Dense/Sparse and DelaySparse processes, matches the
integer simulator spike for spike and readout value for readout value, on random CS-GRU networks
(check_lava's family, several samples side by side) and on a briefly trained model; the Loihi 2
hardware path refuses such a network with the reason."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from briefly_trained import train_steps
from crsnn.deploy.lava_network import CSGRU_HARDWARE_REASON, _run_on_loihi2, run_lava
from crsnn.models.network import ModelConfig, build_model
from crsnn.sim import check_lava
from crsnn.sim.compare import compare_runs
from crsnn.sim.integer_sim import simulate
from crsnn.sim.random_networks import random_input, random_network

pytestmark = [pytest.mark.lava, pytest.mark.usefixtures("one_torch_thread")]


def _exact(net, x) -> int:
    ref = simulate(net, x)
    lava = run_lava(net, x, timeout_s=120)
    mm = compare_runs(ref.hidden_spikes, ref.readout_v, lava.hidden_spikes, lava.readout_v)
    assert mm.exact, mm.first
    return sum(int(s.sum()) for s in ref.hidden_spikes)


def test_random_csgru_networks_are_bit_exact_with_lava():
    spikes = 0
    for i in range(3):
        rng = np.random.default_rng([23, i])
        net, steps = random_network(rng, max_neurons=16, csgru=1.0)
        assert net.has_csgru
        spikes += _exact(net, random_input(rng, net, 2, min(steps, 40)))
    assert spikes > 50  # not vacuous


def test_trained_csgru_model_is_bit_exact_with_lava():
    torch.manual_seed(0)
    model = build_model(ModelConfig(n_in=10, n_out=3, hidden=[16, 12], model="csgru", delay_init=["uniform", 0, 6],
                                    sigma0=2.0))
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(6 * 16, 30, 10, generator=g) < 0.3).float()
    y = (x[:, :, :3].sum((1, 2)) > x[:, :, 3:6].sum((1, 2))).long() + (x[:, :10].sum((1, 2)) > 10).long()
    train_steps(model, x, y, steps=6, batch=16)
    spikes = _exact(model.to_integer(), model.clip_input_numpy(x[:3]))
    assert spikes > 20


def test_check_lava_covers_csgru():
    assert check_lava.main(["--networks", "2", "--seed", "3", "--csgru", "1.0", "--synaptic-delays", "0"]) == 0


def test_loihi2_hardware_refuses_csgru():
    rng = np.random.default_rng([23, 0])
    net, _ = random_network(rng, max_neurons=8, csgru=1.0)
    with pytest.raises(RuntimeError, match="programmable"):
        _run_on_loihi2(net, np.zeros((1, 5, net.n_in), np.int64))
    assert "microcode" in CSGRU_HARDWARE_REASON
