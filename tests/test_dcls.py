"""The ``dcls`` model: learnable per-synapse feedforward delays (float kernel over time, integer
delays in QAT), exact against the integer simulator; per-synapse delays in the simulators."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from crsnn import loihi2 as L2
from crsnn.models.dcls import delay_kernel, delayed_conv, delayed_matmul_qat, integer_synapse_delays
from crsnn.models.integer import Connection, IntegerNetwork, Layer, LIFParams, NetworkValidationError
from crsnn.models.network import ModelConfig, build_model, parameter_counts
from crsnn.sim.compare import compare_runs
from crsnn.sim.integer_sim import feedforward_input, simulate
from crsnn.sim.random_networks import random_input, random_network
from crsnn.sim.torch_sim import simulate_torch
from crsnn.train.synthetic import DelayTask

from briefly_trained import train_steps

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ------------------------------------------------------------------ integer network and simulators
def _one_synapse_net(delay: int, exp: int = 0) -> IntegerNetwork:
    ff = Connection([[2]], weight_exp=exp, delays=[[delay]])
    return IntegerNetwork(n_in=1, hidden=[Layer(ff, LIFParams(1, vth=0))],
                          readout=Layer(Connection([[2]]), LIFParams(1, vth=L2.VTH_MAX)))


@pytest.mark.parametrize("delay", [0, 1, 7, 62])
def test_synaptic_spike_arrives_after_one_plus_delay_steps(delay):
    x = np.zeros((1, delay + 10, 1), np.int64)
    x[0, 2, 0] = 1
    for run in (simulate, simulate_torch):
        s = run(_one_synapse_net(delay), x).hidden_spikes[0][0, :, 0]
        assert np.flatnonzero(s).tolist() == [2 + 1 + delay]


def test_negative_exponent_floors_each_delay_group_separately():
    # two inputs of weight 2 (effective) with exponent -2: together 4 >> 2 = 1, but in two delay
    # groups arriving at the same step each gives floor(2 / 4) = 0 (Lava's DelayDense).
    eff = np.array([[2, 2]])
    x = np.zeros((1, 6, 2), np.int64)
    x[0, 2, 0] = x[0, 1, 1] = 1  # both arrive at step 3 (delays 0 and 1)
    same = feedforward_input(eff, -2, x, np.array([[0, 0]]))
    split = feedforward_input(eff, -2, x, np.array([[0, 1]]))
    assert same[0, 3, 0] == 0 and split[0, 3, 0] == 0
    x[0, 1, 0], x[0, 2, 0] = 1, 0
    assert feedforward_input(eff, -2, x, np.array([[1, 1]]))[0, 3, 0] == 1  # one group: floor(4 / 4)


def test_all_zero_delays_equal_a_plain_connection():
    rng = np.random.default_rng(0)
    net, steps = random_network(rng, max_neurons=16)
    x = random_input(rng, net, 2, steps)
    ref = simulate(net, x)
    for layer in net.layers:
        layer.ff.delays = np.zeros(layer.ff.shape, np.int64)
    got = simulate(net, x)
    assert compare_runs(ref.hidden_spikes, ref.readout_v, got.hidden_spikes, got.readout_v).exact


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_random_networks_with_synaptic_delays_numpy_equals_torch(seed):
    rng = np.random.default_rng(seed)
    net, steps = random_network(rng, max_neurons=24, synaptic_delays=0.8)
    x = random_input(rng, net, 2, steps)
    a, b = simulate(net, x), simulate_torch(net, x)
    mm = compare_runs(a.hidden_spikes, a.readout_v, b.hidden_spikes, b.readout_v)
    assert mm.exact, mm.first


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), exp=st.integers(-8, 7), bits=st.sampled_from([0, 1, 3, 8]))
def test_feedforward_with_delays_equals_a_step_by_step_reference(seed, exp, bits):
    """Lava's DelayDense, written out: per step, each (neuron, delay) group's sum is shifted and
    queued ``delay`` columns ahead in an activation buffer that is sent one step later."""
    rng = np.random.default_rng(seed)
    n_out, n_in, T = int(rng.integers(1, 6)), int(rng.integers(1, 6)), int(rng.integers(1, 30))
    eff = 2 * rng.integers(-128, 128, (n_out, n_in))
    delays = rng.integers(0, 8, (n_out, n_in))
    x = rng.integers(0, 2**bits if bits else 2, (1, T, n_in))
    buf = np.zeros((n_out, 9), np.int64)
    want = np.zeros((T, n_out), np.int64)
    for t in range(T):
        want[t] = buf[:, 0]
        buf = np.concatenate([buf[:, 1:], np.zeros((n_out, 1), np.int64)], axis=1)
        for d in range(8):
            acc = (np.where(delays == d, eff, 0) * x[0, t][None, :]).sum(1)
            buf[:, d] += acc << exp if exp >= 0 else acc >> -exp
    assert np.array_equal(feedforward_input(eff, exp, x, delays)[0], want)


def test_validation_of_synaptic_delays_is_actionable():
    net = _one_synapse_net(63)
    with pytest.raises(NetworkValidationError, match=r"delay of synapse \(0, 0\) = 63 outside \[0, 62\]"):
        net.validate()
    net.hidden[0].ff.delays = np.zeros((2, 1), np.int64)
    with pytest.raises(NetworkValidationError, match=r"delays have shape \(2, 1\), expected \(1, 1\)"):
        net.validate()


# ------------------------------------------------------------------ float kernel and QAT product
def test_float_kernel_at_zero_spread_is_one_tap_or_linear_interpolation():
    w = torch.tensor([[2.0, -1.0]])
    k = delay_kernel(w, torch.tensor([[3.0, 1.25]]), sigma=0.0, max_delay=5)
    assert torch.allclose(k[0, 0], torch.tensor([0, 0, 0, 2.0, 0, 0]))
    assert torch.allclose(k[0, 1], torch.tensor([0, -0.75, -0.25, 0, 0, 0]))
    wide = delay_kernel(w, torch.tensor([[0.0, 5.0]]), sigma=4.0, max_delay=5)
    assert torch.allclose(wide.sum(-1), w)  # unit mass inside the kernel, also at its edges


def test_delayed_conv_equals_a_loop_over_synapses():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(12, 4, 3, generator=g)
    kern = torch.randn(5, 4, 6, generator=g)
    y = delayed_conv(x, kern)
    want = torch.zeros(12, 5, 3)
    for t in range(12):
        for k in range(6):
            if t - 1 - k >= 0:
                want[t] += kern[:, :, k] @ x[t - 1 - k]
    assert torch.allclose(y, want, atol=1e-5)


def test_float_delay_gradient_moves_the_arrival_time():
    """Loss = the input of neuron 0 at step 6 from a spike at step 0: the delay must move toward 5."""
    x = torch.zeros(10, 1, 1)
    x[0] = 1.0
    d = torch.tensor([[3.4]], requires_grad=True)
    y = delayed_conv(x, delay_kernel(torch.ones(1, 1), d, sigma=1.0, max_delay=9))
    (-y[6, 0, 0]).backward()
    assert d.grad.item() < 0  # gradient descent increases d


@pytest.mark.parametrize("exp", [-2, 0, 1])
def test_qat_product_equals_simulator_and_its_gradients(exp):
    g = torch.Generator().manual_seed(1)
    n, n_in, T, B = 5, 4, 15, 3
    w = (2 * torch.randint(-100, 100, (n, n_in), generator=g)).double().requires_grad_()
    d_float = (torch.rand(n, n_in, generator=g) * 6).double().requires_grad_()
    d_int = integer_synapse_delays(d_float, 6)
    x = torch.randint(0, 4, (T, n_in, B), generator=g).double().requires_grad_()
    a = delayed_matmul_qat(w, d_float, x, d_int, exp)
    want = feedforward_input(w.detach().long().numpy(), exp, x.detach().long().numpy().transpose(2, 0, 1),
                             d_int.numpy())
    assert np.array_equal(a.detach().numpy().transpose(2, 0, 1), want.astype(np.float64))
    # gradients: weights and input as the same sum without floors (straight-through), delays by
    # the central difference of the arrival time
    gout = torch.randn(T, n, B, generator=g, dtype=torch.float64)
    (a * gout).sum().backward()
    w2, x2 = w.detach().clone().requires_grad_(), x.detach().clone().requires_grad_()
    onehot = F.one_hot(d_int, 7).double()  # (n, n_in, 7)
    lin = delayed_conv(x2, w2[..., None] * onehot) * 2.0**exp
    (lin * gout).sum().backward()
    assert torch.allclose(w.grad, w2.grad) and torch.allclose(x.grad, x2.grad)
    xp = torch.cat([torch.zeros(3, n_in, B, dtype=torch.float64), x.detach()])  # x[t] at 3 + t
    gd = torch.zeros(n, n_in, dtype=torch.float64)
    for i in range(n):
        for j in range(n_in):
            dd = int(d_int[i, j])
            for t in range(T):
                late = xp[3 + t - 2 - dd, j] if t - 2 - dd >= -3 else 0.0
                early = xp[3 + t - dd, j] if t - dd >= -3 else 0.0
                gd[i, j] += float(w.detach()[i, j]) * 2.0**exp * ((late - early) * gout[t, i]).sum() / 2
    assert torch.allclose(d_float.grad, gd)


# ------------------------------------------------------------------ the model
TASK = DelayTask(n_steps=40, n_channels=10, gap_step=3, noise_rate=0.08)


def _briefly_trained(recurrent: list[bool], bits: int = 0, seed: int = 0):
    torch.manual_seed(seed)
    model = build_model(ModelConfig(n_in=10, n_out=TASK.n_classes, model="dcls", hidden=[24, 20], recurrent=recurrent,
                                    max_delay=8, delay_init=["uniform", 0, 12], sigma0=3.0, dropout=0.1,
                                    input_message_bits=bits))
    d0 = model.layers[0].ff_delays.detach().clone()
    x, y = TASK.generate(8 * 32, seed=seed)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    if bits:
        x = torch.clamp(x * 2, max=2**bits - 1)
    return train_steps(model, x, y), d0


@pytest.mark.parametrize("recurrent,bits", [([False, False], 0), ([False, True], 3)])
def test_dcls_qat_readout_equals_integer_simulator_exactly(recurrent, bits):
    model, d0 = _briefly_trained(recurrent, bits)
    x, _ = TASK.generate(32, seed=123)
    if bits:
        x = np.minimum(x.astype(np.int64) * 2, 2**bits - 1)
    xt = torch.from_numpy(np.asarray(x))
    with torch.no_grad():
        v, spikes = model.qat_readout_int(xt, return_hidden=True)
    net = model.to_integer()
    res = simulate(net, model.clip_input_numpy(xt))
    assert np.array_equal(v.numpy().astype(np.int64), res.readout_v)
    for s_qat, s_sim in zip(spikes, res.hidden_spikes):
        assert np.array_equal(s_qat.numpy().astype(bool), s_sim)
        assert 0 < s_sim.mean() < 0.5
    for layer, ilayer in zip(model.layers, net.hidden):
        d = ilayer.ff.delays
        assert d.shape == (layer.n, layer.n_in) and d.min() >= 0 and d.max() <= 8
        assert (ilayer.rec is not None) == (layer.recurrence is not None)
    assert not torch.equal(model.layers[0].ff_delays.detach(), d0)  # delays were learned
    assert len(np.unique(net.hidden[0].ff.delays)) > 3


def test_dcls_config_defaults_and_parameter_counts():
    cfg = ModelConfig(n_in=10, n_out=4, model="dcls", hidden=[8, 6])
    assert cfg.recurrent == [False, False] and cfg.recurrence_of(0) is None
    assert ModelConfig(n_in=10, n_out=4, model="dcls", hidden=[8], recurrent=[True]).recurrence_of(0) == "conv"
    rows = parameter_counts(cfg)["layers"]
    assert rows[0]["feedforward"] == 2 * 10 * 8 + 2 * 8  # weights + delays + BatchNorm
    with pytest.raises(ValueError, match="max_delay must be in 0..62"):
        ModelConfig(n_in=10, n_out=4, model="dcls", max_delay=63)
    names = {g["name"] for g in build_model(cfg).param_groups()}
    assert "delays" in names
