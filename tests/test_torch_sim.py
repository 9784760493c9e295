"""The torch integer simulator (crsnn.sim.torch_sim) equals the NumPy reference
(crsnn.sim.integer_sim) bit for bit: on every random-network family, on trained models, on the
float-state LIF rules and their wrap proofs (CUDA: test_torch_sim_cuda.py). Every test runs
twice on the CPU: through the compiled loop (crsnn.sim.native, what simulate_torch uses by
default) and through the torch operations (what CUDA, and a CPU without a compiler, run)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crsnn import loihi2 as L2
from crsnn.models.integer import Connection, IntegerNetwork, Layer, LIFParams, NetworkValidationError, Recurrence
from crsnn.sim import torch_sim
from crsnn.sim.integer_sim import SimResult, simulate
from crsnn.sim.random_networks import describe, random_crsnn, random_input, random_network
from crsnn.sim.torch_sim import exact_float32, resolve_device, simulate_torch

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(autouse=True, params=["compiled-loop", "torch-ops"])
def cpu_path(request, monkeypatch):
    """Which CPU path simulate_torch takes; the compiled loop must build here (no silent fallback)."""
    from crsnn.sim import native

    if request.param == "compiled-loop":
        monkeypatch.delenv(native.ENV_SWITCH, raising=False)
        assert native.enabled(), native.unavailable_reason()
    else:
        monkeypatch.setenv(native.ENV_SWITCH, "0")
    return request.param


def assert_same(a: SimResult, b: SimResult, what: str = "") -> None:
    assert len(a.hidden_spikes) == len(b.hidden_spikes)
    for li, (p, q) in enumerate(zip(a.hidden_spikes, b.hidden_spikes)):
        assert p.dtype == q.dtype == bool and p.shape == q.shape
        assert np.array_equal(p, q), f"{what}: hidden layer {li} differs in {(p != q).sum()} spikes"
    assert a.readout_v.dtype == b.readout_v.dtype == np.int64
    assert np.array_equal(a.readout_v, b.readout_v), f"{what}: readout differs"
    assert np.array_equal(a.readout_spikes, b.readout_spikes), f"{what}: readout spikes differ"


def _features(net: IntegerNetwork) -> set[str]:
    f = {f"msg{net.input_message_bits > 0}"}
    for layer in net.hidden:
        r = layer.rec
        if r is None:
            f.add("no-rec")
            continue
        f.add("conv" if r.is_conv else "dense")
        if r.weight_exp < 0:
            f.add("neg-exp-groups" if len(np.unique(r.delays)) > 1 else "neg-exp-1group")
    return f


@pytest.mark.parametrize("max_neurons", [48, 8])
@pytest.mark.parametrize("seed", range(4))
def test_random_networks_match_numpy(seed, max_neurons):
    """random_network: 30 networks per seed and size, batches of 1-4 samples."""
    seen: set[str] = set()
    for i in range(30):
        rng = np.random.default_rng([seed, max_neurons, i])
        net, steps = random_network(rng, max_neurons=max_neurons)
        x = random_input(rng, net, int(rng.integers(1, 5)), steps)
        assert_same(simulate(net, x), simulate_torch(net, x), describe(net, steps))
        seen |= _features(net)
    assert {"conv", "dense", "msgTrue", "msgFalse"} <= seen  # not a vacuous comparison


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), max_neurons=st.sampled_from([2, 5, 16, 48]))
def test_random_networks_match_numpy_hypothesis(seed, max_neurons):
    rng = np.random.default_rng(seed)
    net, steps = random_network(rng, max_neurons=max_neurons)
    x = random_input(rng, net, int(rng.integers(1, 4)), steps)
    assert_same(simulate(net, x), simulate_torch(net, x), describe(net, steps))


@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize("bits", [0, 3])
def test_random_crsnn_family_matches_numpy(dense, bits):
    """random_crsnn (the benchmark family), conv and dense, binary and graded input."""
    rng = np.random.default_rng(10 + 2 * dense + bits)
    net = random_crsnn(rng, 60, [40, 32], 5, kernel=5, dense=dense, input_message_bits=bits,
                       input_rate=0.1, hidden_rate=0.1)
    x = random_input(rng, net, 6, 50)
    ref = simulate(net, x)
    assert_same(ref, simulate_torch(net, x))
    assert all(0 < s.mean() < 0.9 for s in ref.hidden_spikes)


@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize("exp", [-1, -3, -8])
def test_negative_recurrent_exponent_with_many_delay_groups(dense, exp):
    """Each delay group's sum is floored on its own (a batched product over the groups' columns)."""
    rng = np.random.default_rng(abs(exp) + 10 * dense)
    net = random_crsnn(rng, 30, [24], 4, kernel=3, dense=dense, max_delay=6, input_rate=0.3, hidden_rate=0.3)
    rec = net.hidden[0].rec
    rec.weight_exp = exp
    # strong recurrent weights so the floors matter; unequal group sizes (padding slots)
    rec.delays = np.array([0] * 10 + [1] * 3 + [2] * 6 + [5] * 5)
    if rec.is_conv:
        rec.kernel = np.array([-255, 250, 180])
    x = random_input(rng, net, 5, 60)
    assert_same(simulate(net, x), simulate_torch(net, x))


def test_wrap_paths_are_exact_when_forced(monkeypatch):
    """With every wrap applied (no proofs), the result is unchanged: the proofs only skip
    identities, and the wrap code itself is exact."""
    nets = []
    for i in range(25):
        rng = np.random.default_rng([99, i])
        net, steps = random_network(rng)
        nets.append((net, random_input(rng, net, 2, steps)))
    proved = [simulate_torch(net, x) for net, x in nets]
    monkeypatch.setattr(torch_sim.L2, "lif_wraps", lambda *a, **k: L2.LifWraps())
    for (net, x), p in zip(nets, proved):
        r = simulate_torch(net, x)
        assert_same(simulate(net, x), r)
        assert_same(p, r)


@settings(max_examples=60, deadline=None)
@given(du=st.sampled_from([0, 1, 100, 2000, 4094, 4095]) | st.integers(0, 4095),
       dv=st.sampled_from([0, 4095]) | st.integers(0, 4095),
       vth=st.sampled_from([0, 1, L2.VTH_MAX]) | st.integers(0, L2.VTH_MAX),
       max_a=st.sampled_from([1, 2**10, 2**17, 2**24, 2**31 - 1]) | st.integers(1, 2**31 - 1),
       bias_mant=st.integers(L2.BIAS_MANT_MIN, L2.BIAS_MANT_MAX), bias_exp=st.integers(0, 7),
       seed=st.integers(0, 2**31))
def test_lif_step_float_equals_lif_step(du, dv, vth, max_a, bias_mant, bias_exp, seed):
    """crsnn.loihi2.lif_step_float_ == lif_step over 40 steps of inputs |a| <= max_a, both with
    every wrap applied and with only the wraps lif_wraps cannot rule out."""
    rng = np.random.default_rng(seed)
    a = rng.integers(-max_a, max_a + 1, (40, 16))
    a[rng.random(a.shape) < 0.3] = max_a  # push toward the bound
    bias = L2.scaled_bias(bias_mant, bias_exp)
    for wraps in (L2.LifWraps(), L2.lif_wraps(max_a, du, abs(bias))):
        u_i = v_i = np.zeros(16, np.int64)
        u_f = torch.zeros(16, dtype=torch.float64)
        v_f = torch.zeros(16, dtype=torch.float64)
        for t in range(a.shape[0]):
            u_i, v_i, s_i = L2.lif_step(u_i, v_i, a[t], du, dv, vth, bias)
            a64 = torch.from_numpy(a[t] * 2**L2.ACT_SHIFT).double()
            u_f, v_f, s_f = L2.lif_step_float_(u_f, v_f, a64, du, dv, vth, float(bias), wraps)
            assert np.array_equal(u_f.numpy().astype(np.int64), u_i), (t, wraps)
            assert np.array_equal(v_f.numpy().astype(np.int64), v_i), (t, wraps)
            assert np.array_equal(s_f.numpy(), s_i)


def test_lif_wraps_proofs():
    w = L2.lif_wraps(max_abs_a=1000, du=L2.DECAY_MAX, max_abs_bias=4095 * 128)
    assert not (w.current_int32 or w.current_24 or w.voltage_int32)
    # du = 0: the current accumulates 4096 steps' worth of input: 2**23 / (64 * 4096) = 32
    assert not L2.lif_wraps(31, 0, 0).current_24 and L2.lif_wraps(33, 0, 0).current_24
    w = L2.lif_wraps(2**18, 0, 0)  # 2**24 after the << 6: one 24-bit wrap keeps u within 24 bits
    assert not w.current_int32 and w.current_24 and not w.voltage_int32
    w = L2.lif_wraps(2**18 + 1, 0, 0)  # beyond: u is only known to be an int32
    assert w.current_int32 and w.current_24 and w.voltage_int32


def test_float32_exactness_bound():
    assert exact_float32(np.full((3, 65535), 256), 1)  # 2**24 - 256
    assert not exact_float32(np.full((3, 65536), 256), 1)  # 2**24
    assert not exact_float32(np.full((3, 300), 256), 255)
    assert exact_float32(np.full((3, 256), 256), 1, scale_exp=7) and not exact_float32(np.full((3, 512), 256), 1, 7)
    assert exact_float32(np.full((3, 1000), 256), 1, scale_exp=-8)  # negative scales keep the bits


def test_float64_path_when_float32_is_not_exact():
    """A feedforward fan-in whose partial sums reach 2**24 runs the float64 product, still exact."""
    rng = np.random.default_rng(3)
    n_in = 300
    w = rng.integers(-256, 256, (6, n_in))
    w[0] = 255
    net = IntegerNetwork(n_in=n_in, input_message_bits=8, hidden=[
        Layer(Connection(w, weight_exp=-8), LIFParams(6, du=4095, dv=10, vth=3000),
              Recurrence(delays=[0, 1, 2, 3, 4, 5], kernel=[200, -100, 50], weight_exp=7))],
        readout=Layer(Connection(rng.integers(-256, 256, (3, 6)), weight_exp=5), LIFParams(3, vth=L2.VTH_MAX)))
    assert not exact_float32(net.hidden[0].ff.effective(), 255)
    x = rng.integers(0, 256, (3, 40, n_in))
    ref = simulate(net, x)
    assert_same(ref, simulate_torch(net, x))
    assert ref.hidden_spikes[0].any()


def test_trained_models_match_numpy():
    """The trained-model path: SpikingNet.to_integer() of CRSNN, DelRec (graded input) and
    feedforward models."""
    from crsnn.models.network import ModelConfig, build_model
    from crsnn.train.synthetic import DelayTask

    task = DelayTask(n_steps=40, n_channels=10, gap_step=3, noise_rate=0.08)
    for kw in (dict(model="crsnn", hidden=[24, 20], kernel=3), dict(model="crsnn", hidden=[16], kernel=5),
               dict(model="delrec", hidden=[20], input_message_bits=3), dict(model="ff", hidden=[24, 16])):
        torch.manual_seed(0)
        bits = kw.pop("input_message_bits", task.input_message_bits)
        model = build_model(ModelConfig(n_in=task.n_channels, n_out=task.n_classes, input_message_bits=bits,
                                        delay_init=["uniform", 0, 12], **kw))
        with torch.no_grad():
            for layer in model.layers:
                layer.weight.mul_(3.0)  # busy enough to spike
        model.eval()
        net = model.to_integer()
        x, _ = task.generate(12, seed=1)
        xi = model.clip_input_numpy(torch.from_numpy(np.asarray(x)))
        if net.input_message_bits:
            xi = np.minimum(xi * 2, net.max_input())
        ref = simulate(net, xi)
        assert_same(ref, simulate_torch(net, xi), str(kw))
        assert all(s.any() for s in ref.hidden_spikes)


def test_inputs_and_validation():
    rng = np.random.default_rng(0)
    net, steps = random_network(rng)
    x = random_input(rng, net, 3, steps)
    ref = simulate(net, x)
    assert_same(ref, simulate_torch(net, torch.from_numpy(x)))  # a tensor input
    assert_same(simulate(net, x[:, :1]), simulate_torch(net, x[:, :1]))  # one step
    with pytest.raises(NetworkValidationError):
        simulate_torch(net, x[..., :-1])
    bad = x.copy()
    bad[0, 0, 0] = net.max_input() + 1
    with pytest.raises(NetworkValidationError):
        simulate_torch(net, bad)


def test_small_work_runs_on_one_thread_and_restores_the_setting():
    rng = np.random.default_rng(4)
    net, steps = random_network(rng)
    x = random_input(rng, net, 2, steps)
    torch.set_num_threads(2)  # the fixture restores the caller's value afterwards
    assert_same(simulate(net, x), simulate_torch(net, x))
    assert torch.get_num_threads() == 2


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="cuda"):
            resolve_device("cuda")


def test_sim_backend_runs_the_torch_simulator_on_the_requested_device():
    """run_batch(backend="sim") runs the torch simulator on ``device``; an unknown device is a
    ValueError, CUDA without a GPU a BackendUnavailable (a one-line user error in the CLIs)."""
    from crsnn.deploy.backends import BackendUnavailable, run_batch

    rng = np.random.default_rng(2)
    net = random_crsnn(rng, 12, [8], 4, input_rate=0.2, hidden_rate=0.2)
    x = (rng.random((3, 30, 12)) < 0.2).astype(np.int64)
    ref = simulate(net, x)
    for device in ("cpu", "auto"):
        out = run_batch(net, x, backend="sim", device=device)
        assert np.array_equal(out.readout_v, ref.readout_v)
        assert all(np.array_equal(a, b) for a, b in zip(out.hidden_spikes, ref.hidden_spikes))
    with pytest.raises(ValueError, match="unknown device"):
        run_batch(net, x, backend="sim", device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailable, match="cuda"):
            run_batch(net, x, backend="sim", device="cuda")
