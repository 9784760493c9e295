"""The compiled simulator loop (crsnn.sim.native): bit-exact with the NumPy reference on every
random-network family (batches split over threads, int32 sums at the validated limit), its
integer LIF rules against crsnn.loihi2 at the extremes, and how it is built, cached, switched off
and replaced when no compiler works."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crsnn import loihi2 as L2
from crsnn.models.integer import Connection, IntegerNetwork, Layer, LIFParams
from crsnn.sim import native
from crsnn.sim.integer_sim import simulate
from crsnn.sim.random_networks import describe, random_crsnn, random_input, random_network
from crsnn.sim.torch_sim import simulate_torch

from test_torch_sim import assert_same  # noqa: E402  (tests/ is on sys.path under pytest)


@pytest.fixture(autouse=True)
def built():
    assert native.available(), native.unavailable_reason()


@pytest.mark.parametrize("seed", range(4))
def test_random_networks_match_numpy(seed):
    """40 random networks per seed: conv (odd and even kernels) and dense recurrence, negative
    exponents with many delay groups, graded input, per-synapse delays."""
    kinds = set()
    for i in range(40):
        rng = np.random.default_rng([seed, i, 7])
        net, steps = random_network(rng, odd_kernels=i % 2 == 0, synaptic_delays=0.4 if i % 3 == 0 else 0.0)
        x = random_input(rng, net, int(rng.integers(1, 6)), steps)
        assert_same(simulate(net, x), native.simulate_native(net, x, threads=1), describe(net, steps))
        for layer in net.hidden:
            rec = layer.rec
            kinds.add("none" if rec is None else "conv" if rec.is_conv else "dense")
            kinds.add("ff-delays" if layer.ff.delays is not None else "ff")
            if rec is not None and rec.weight_exp < 0 and len(np.unique(rec.delays)) > 1:
                kinds.add("delay-groups")  # each delay group's sum floored on its own
    assert {"none", "conv", "dense", "ff-delays", "ff", "delay-groups"} <= kinds


def test_int32_sums_at_the_validated_limit():
    """Sums as large as validation allows (one below 2**31, graded input) stay exact in the int32
    accumulators; one more is refused, not wrapped."""
    per = 254 * 255  # largest effective 8-bit mixed-sign weight times the largest payload
    full = (2**31 - 1) // per
    rest = (2**31 - 1 - full * per) // 255 // 2 * 2  # the last weight: as close to 2**31 - 1 as it gets
    n_in = full + 1
    w = np.full((2, n_in), 254)
    w[0, -1] = rest
    w[1, ::2] = -256  # a row with both signs: its partial sums swing both ways
    nrn = LIFParams(n=2, du=4095, dv=4095, vth=L2.VTH_MAX)
    net = IntegerNetwork(n_in=n_in, hidden=[], readout=Layer(ff=Connection(w, weight_exp=-7, sign_mode=L2.SignMode.MIXED),
                                                             neuron=nrn), input_message_bits=8)
    net.validate()
    assert 2**31 - per < L2.max_abs_accumulation(net.readout.ff.effective(), 255) < 2**31
    x = np.full((2, 6, n_in), 255)
    x[1, 2:4, 1::3] = 0
    assert_same(simulate(net, x), native.simulate_native(net, x))
    net.readout.ff.weights[0, -1] = 254  # now 2**31 or more: the loop refuses it
    with pytest.raises(ValueError, match="2\\*\\*31"):
        native.simulate_native(net, x)


@pytest.mark.parametrize("threads", [2, 3, 8])
def test_batch_split_over_threads_is_identical(threads):
    rng = np.random.default_rng(5)
    net = random_crsnn(rng, 40, [32, 24], 5, kernel=5, dense=False, input_rate=0.2, hidden_rate=0.2)
    x = random_input(rng, net, 29, 60)
    assert_same(simulate(net, x), native.simulate_native(net, x, threads=threads))


@settings(max_examples=60, deadline=None)
@given(du=st.sampled_from([0, 4094, 4095]) | st.integers(0, 4095),
       dv=st.sampled_from([0, 4095]) | st.integers(0, 4095),
       vth=st.sampled_from([0, 1, L2.VTH_MAX]) | st.integers(0, L2.VTH_MAX),
       max_a=st.sampled_from([1, 2**17, 2**25, 2**31 - 1]) | st.integers(1, 2**31 - 1),
       bias_mant=st.integers(L2.BIAS_MANT_MIN, L2.BIAS_MANT_MAX), bias_exp=st.integers(0, 7),
       seed=st.integers(0, 2**31))
def test_lif_rules_equal_loihi2(du, dv, vth, max_a, bias_mant, bias_exp, seed):
    """The C neuron update against crsnn.loihi2.lif_step step by step, on inputs up to the int32
    range: every wrap, the saturation and the strict threshold."""
    rng = np.random.default_rng(seed)
    n, steps, batch = 7, 25, 3
    nrn = LIFParams(n=n, du=du, dv=dv, vth=vth, bias_mant=np.full(n, bias_mant), bias_exp=np.full(n, bias_exp))
    layer = Layer(ff=Connection(np.zeros((n, 1), dtype=np.int64)), neuron=nrn)
    a = rng.integers(-max_a, max_a + 1, (batch, steps, n), dtype=np.int64)
    spikes, vs = native._PreparedLayer(layer, 1).run(None, np.ascontiguousarray(a), record_v=True, threads=1)
    u = np.zeros((batch, n), dtype=np.int64)
    v = np.zeros_like(u)
    for t in range(steps):
        u, v, s = L2.lif_step(u, v, a[:, t], du, dv, vth, nrn.bias()[None, :])
        assert np.array_equal(vs[:, t], v) and np.array_equal(spikes[:, t].astype(bool), s), f"step {t}"


def _fresh_load(monkeypatch, tmp_path, **env):
    monkeypatch.setenv("CRSNN_CACHE_DIR", str(tmp_path / "cache"))
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    native._load.cache_clear()


@pytest.fixture
def restore_loader():
    yield
    native._load.cache_clear()


def test_build_is_cached_per_source_and_cpu(monkeypatch, tmp_path, restore_loader):
    _fresh_load(monkeypatch, tmp_path)
    path = native.build()
    assert path.parent == tmp_path / "cache" and path.name.startswith("lif_layer-")
    stamp = path.stat().st_mtime_ns
    assert native.build() == path and path.stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert native.available()
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # nothing half-written left


def test_no_compiler_falls_back_to_torch_operations(monkeypatch, tmp_path, restore_loader):
    _fresh_load(monkeypatch, tmp_path, CC=str(tmp_path / "no-such-cc"))
    assert not native.available()
    assert "no-such-cc" in native.unavailable_reason()
    rng = np.random.default_rng(2)
    net, steps = random_network(rng)
    x = random_input(rng, net, 2, steps)
    with pytest.warns(RuntimeWarning, match="no-such-cc"):  # said, not silent
        assert_same(simulate(net, x), simulate_torch(net, x))  # the torch operations, same result
    with pytest.raises(RuntimeError, match="unavailable"):
        simulate_torch(net, x, native=True)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_switch_turns_the_loop_off(monkeypatch):
    calls = []
    monkeypatch.setattr(native, "simulate_native", lambda *a, **k: calls.append(1) or simulate(*a[:2]))
    rng = np.random.default_rng(4)
    net, steps = random_network(rng)
    x = random_input(rng, net, 2, steps)
    simulate_torch(net, x)
    assert calls == [1]
    monkeypatch.setenv(native.ENV_SWITCH, "0")
    assert not native.enabled() and "CRSNN_NATIVE=0" in native.unavailable_reason()
    assert_same(simulate(net, x), simulate_torch(net, x))
    assert calls == [1]  # not called again
    simulate_torch(net, x, native=True)  # an explicit request overrides the switch
    assert calls == [1, 1]


def test_readout_only_network_and_empty_batch():
    rng = np.random.default_rng(1)
    nrn = LIFParams(n=3, du=100, dv=200, vth=10, bias_mant=np.zeros(3, dtype=np.int64), bias_exp=np.zeros(3, dtype=np.int64))
    net = IntegerNetwork(n_in=4, hidden=[], readout=Layer(ff=Connection(rng.integers(-50, 50, (3, 4))), neuron=nrn))
    x = rng.integers(0, 2, (2, 30, 4))
    assert_same(simulate(net, x), native.simulate_native(net, x))
    empty = np.zeros((0, 30, 4), dtype=np.int64)
    assert native.simulate_native(net, empty).readout_v.shape == (0, 30, 3)
