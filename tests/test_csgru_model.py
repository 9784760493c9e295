"""The CS-GRU model: float and QAT passes train (every parameter gets a gradient), the QAT forward
equals the integer simulator (NumPy reference and torch) bit for bit on random and on briefly
trained models, the three simulators agree on random CS-GRU networks, checkpoints keep the
gates, and ``crsnn-train --model csgru`` trains, reports identical QAT and integer results and
makes only the layers ``--recurrent-layers`` names CS-GRU cells."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from briefly_trained import train_steps
from crsnn.models.network import ModelConfig, build_model
from crsnn.sim.integer_sim import simulate
from crsnn.sim.random_networks import random_input, random_network
from crsnn.sim.torch_sim import simulate_torch
from crsnn.train.checkpoint import network_from_dict, network_to_dict, networks_equal

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model(seed: int, recurrent=(True, True)) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(ModelConfig(n_in=12, n_out=4, hidden=[20, 14], model="csgru", recurrent=list(recurrent),
                                   input_message_bits=2, delay_init=["uniform", 0, 8], sigma0=2.0))


def _inputs(seed: int, batch: int = 4, steps: int = 30) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, steps, 12, generator=g) < 0.3).float() * torch.randint(1, 4, (batch, steps, 12), generator=g)


def _assert_qat_equals_integer(model, x):
    model.eval()
    with torch.no_grad():
        v, hidden = model.qat_readout_int(x, return_hidden=True)
    net = model.to_integer()
    xi = model.clip_input_numpy(x)
    for ref in (simulate(net, xi), simulate_torch(net, xi)):
        assert np.array_equal(v.numpy().astype(np.int64), ref.readout_v)
        for h, s in zip(hidden, ref.hidden_spikes):
            assert np.array_equal(h.numpy().astype(bool), s)
    return [float(h.mean()) for h in hidden]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_qat_forward_equals_integer_simulators_random_model(seed):
    model = _model(seed)
    model.train()
    with torch.no_grad():  # BatchNorm statistics from data, so that the layers spike
        model.forward_float(_inputs(seed + 10, batch=16))
    rates = _assert_qat_equals_integer(model, _inputs(seed))
    assert rates[0] > 0  # not vacuous


def test_qat_forward_equals_integer_simulator_after_brief_training():
    model = _model(3, recurrent=(True, False))
    g = torch.Generator().manual_seed(5)
    x = (torch.rand(8 * 16, 30, 12, generator=g) < 0.3).float()
    y = (x[:, :15].sum((1, 2)) > x[:, 15:].sum((1, 2))).long() + 2 * (x[:, :, :6].sum((1, 2)) > x[:, :, 6:].sum((1, 2))).long()
    before = model.layers[0].gate_weight.detach().clone()
    train_steps(model, x, y, steps=8, batch=16)
    assert not torch.equal(before, model.layers[0].gate_weight.detach())
    _assert_qat_equals_integer(model, _inputs(7))


@pytest.mark.parametrize("qat", [False, True])
def test_every_parameter_gets_a_gradient(qat):
    model = _model(4)
    model.train()
    with torch.no_grad():  # BatchNorm statistics from data, so that both layers spike in QAT
        model.forward_float(_inputs(3, batch=16))
    model.set_qat(qat)
    model(_inputs(1, batch=8)).sum().backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_recurrent_layers_choose_the_csgru_cells():
    model = _model(0, recurrent=(False, True))
    assert model.layers[0].recurrence is None and model.layers[1].recurrence == "csgru"
    net = model.to_integer()
    assert not net.hidden[0].is_csgru and net.hidden[1].is_csgru and net.has_csgru


@pytest.mark.parametrize("seed", range(6))
def test_simulators_agree_on_random_csgru_networks(seed):
    rng = np.random.default_rng([11, seed])
    net, steps = random_network(rng, max_neurons=24, csgru=0.7)
    x = random_input(rng, net, 2, steps)
    a, b = simulate(net, x), simulate_torch(net, x)
    assert np.array_equal(a.readout_v, b.readout_v)
    assert all(np.array_equal(p, q) for p, q in zip(a.hidden_spikes, b.hidden_spikes))


def test_checkpoint_dict_keeps_the_gates():
    net = _model(0).to_integer()
    back = network_from_dict(network_to_dict(net))
    assert back.has_csgru and networks_equal(net, back)
    g, h = net.hidden[0].gates, back.hidden[0].gates
    assert np.array_equal(g.w_z, h.w_z) and g.z_shift == h.z_shift and np.array_equal(g.bias_z(), h.bias_z())


def test_train_cli_csgru(tmp_path, capsys):
    from crsnn.train.cli import main

    out = tmp_path / "m.pt"
    rc = main(["--data", "synthetic:train=128,valid=64,test=64", "--model", "csgru", "--hidden", "12", "12",
               "--recurrent-layers", "1", "--epochs", "2", "--batch-size", "32", "--out", str(out), "--no-progress"])
    text = capsys.readouterr().out
    assert rc in (0, None) and out.exists()
    assert "QAT forward vs integer simulator: identical" in text
    from crsnn.train.checkpoint import load_checkpoint

    model, _ = load_checkpoint(str(out))
    assert model.layers[0].recurrence is None and model.layers[1].recurrence == "csgru"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
def test_cuda_csgru_matches_numpy():
    """The CS-GRU torch simulator on CUDA: the same bits as the NumPy reference."""
    for i in range(8):
        rng = np.random.default_rng([12, i])
        net, steps = random_network(rng, max_neurons=32, csgru=0.8)
        x = random_input(rng, net, 3, steps)
        a, b = simulate(net, x), simulate_torch(net, x, device="cuda")
        assert np.array_equal(a.readout_v, b.readout_v)
        assert all(np.array_equal(p, q) for p, q in zip(a.hidden_spikes, b.hidden_spikes))
