"""The shortcuts of the QAT forward (crsnn.bounds, models.recurrent.IntegerStep,
models.quant.quant_matmul, models.layers.dropout_mask) are taken only where a bound proves them
exact, and agree with the plain fixed-point rules of crsnn.loihi2 (and so with the integer
simulator) where they are not: near and beyond the bounds, wraps and float32 rounding happen."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from crsnn import bounds
from crsnn import loihi2 as L2
from crsnn.models.layers import dropout_mask, shift_time
from crsnn.models.network import ModelConfig, build_model
from crsnn.models.quant import floor_shift_ste, quant_matmul
from crsnn.models.recurrent import IntegerStep, LoopSpec, lif_loop
from crsnn.sim.integer_sim import simulate

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ------------------------------------------------------------------ float32 products
@settings(max_examples=60, deadline=None)
@given(n_in=st.integers(1, 400), max_w=st.sampled_from([1, 2, 254, 256, 2**12, 2**16]),
       max_x=st.sampled_from([1, 15, 255, 2**10]), seed=st.integers(0, 2**31))
def test_float32_product_is_exact_whenever_the_bound_says_so(n_in, max_w, max_x, seed):
    """exact_float32_product never claims a product whose float32 result differs from the exact
    integer one (partial sums pushed toward the bound: same-sign weights, inputs at the maximum)."""
    rng = np.random.default_rng(seed)
    w = rng.integers(-max_w, max_w + 1, (5, n_in))
    w[0] = rng.integers(max_w // 2, max_w + 1, n_in) | 1  # odd, same sign: float32 rounding shows
    x = rng.integers(0, max_x + 1, (n_in, 7))
    x[:, 0] = max_x
    exact = w @ x
    wt, xt = torch.tensor(w, dtype=torch.float64), torch.tensor(x, dtype=torch.float64)
    if bounds.exact_float32_product(wt, xt):
        assert np.array_equal((wt.float() @ xt.float()).double().numpy(), exact)
    if np.abs(exact).max() >= 2**25:  # beyond 2**24 float32 cannot hold odd sums: never claimed
        assert not bounds.exact_float32_product(wt, xt)


def test_exact_float32_product_refuses_non_integers():
    w = torch.ones(2, 3, dtype=torch.float64)
    assert bounds.exact_float32_product(w, torch.ones(3, 4, dtype=torch.float64))
    assert not bounds.exact_float32_product(w, torch.full((3, 4), 1 / 0.6, dtype=torch.float64))
    assert not bounds.exact_float32_product(w * 0.5, torch.ones(3, 4, dtype=torch.float64))
    assert not bounds.exact_float32_product(w, torch.tensor([[float("nan")] * 4] * 3, dtype=torch.float64))


def _reference_matmul(w, x, exp):
    return floor_shift_ste(torch.matmul(w, shift_time(x)), exp)


@pytest.mark.parametrize("case", ["float32", "float64-beyond-2**24", "dropout-scaled"])
@pytest.mark.parametrize("exp", [-3, 0, 2])
def test_quant_matmul_equals_the_plain_product(case, exp):
    g = torch.Generator().manual_seed(7)
    T, n_in, n, B = 6, 300, 5, 3
    w = (torch.randint(-128, 128, (n, n_in), generator=g) * 2).double()
    if case == "float32":
        x = torch.randint(0, 2, (T, n_in, B), generator=g).double()
    elif case == "float64-beyond-2**24":  # graded 8-bit input: partial sums reach 2**24
        w[0] = 253
        x = torch.randint(200, 256, (T, n_in, B), generator=g).double()
        w32 = (w.float() @ x[0].float()).double()
        assert not torch.equal(w32, w @ x[0]), "float32 must round here, or the test checks nothing"
    else:
        x = torch.randint(0, 2, (T, n_in, B), generator=g).double() * float(np.float32(1 / 0.6))
    assert bounds.exact_float32_product(w, x) == (case == "float32")
    w1, x1 = w.clone().requires_grad_(True), x.clone().requires_grad_(True)
    w2, x2 = w.clone().requires_grad_(True), x.clone().requires_grad_(True)
    a1, a2 = quant_matmul(w1, x1, exp), _reference_matmul(w2, x2, exp)
    if case == "dropout-scaled":  # not integers: the correctly rounded sum, within an ulp
        assert torch.allclose(a1, a2, rtol=1e-12, atol=1e-9)
    else:
        assert torch.equal(a1, a2)
        assert torch.equal(a1, torch.from_numpy(
            L2.floor_shift(np.einsum("ij,tjb->tib", w.long().numpy(), shift_time(x).long().numpy()), exp)).double())
    gout = torch.randn(a1.shape, generator=g, dtype=torch.float64)
    (a1 * gout).sum().backward()
    (a2 * gout).sum().backward()
    assert torch.allclose(w1.grad, w2.grad, rtol=1e-12) and torch.allclose(x1.grad, x2.grad, rtol=1e-12)


# ------------------------------------------------------------------ the neuron update
@settings(max_examples=80, deadline=None)
@given(dv=st.sampled_from([0, 1, 4095]) | st.integers(0, 4095),
       max_a=st.sampled_from([1, 2**10, 2**17 - 1, 2**17, 2**18, 2**24, 2**31 - 1]) | st.integers(1, 2**31 - 1),
       vth=st.sampled_from([1, 1024, L2.VTH_MAX]) | st.integers(1, L2.VTH_MAX),
       bias_mant=st.integers(L2.BIAS_MANT_MIN, L2.BIAS_MANT_MAX), bias_exp=st.integers(0, 7),
       steps=st.integers(1, 60), seed=st.integers(0, 2**31))
def test_integer_step_equals_lif_integrate(dv, max_a, vth, bias_mant, bias_exp, steps, seed):
    """IntegerStep with the wraps and clip its bounds leave in (and with all of them) equals
    crsnn.loihi2.lif_integrate + threshold + reset, step by step, also where wraps and saturation
    do happen; and a skipped clip is never needed."""
    rng = np.random.default_rng(seed)
    N, B = 8, 4
    a = rng.integers(-max_a, max_a + 1, (steps, N, B))
    a[rng.random(a.shape) < 0.3] = max_a  # push toward the bound
    bias = np.full((N, 1), L2.scaled_bias(bias_mant, bias_exp), dtype=np.int64)
    theta = float(L2.scaled_threshold(vth))
    at = torch.from_numpy(a).double()
    bias_t = torch.from_numpy(bias).double()
    spec = LoopSpec(integer=True, theta=theta, a_scale=64.0, dv=dv)
    proved = IntegerStep.for_loop(at, bias_t, None, None, None, None, spec)
    forced = IntegerStep(dv, 64.0, bias_t, L2.LifWraps(), clip=True)
    for step in (proved, forced):
        u_i = v_i = np.zeros((N, B), np.int64)
        v = torch.zeros((N, B), dtype=torch.float64)
        out = torch.empty_like(v)
        for t in range(steps):
            u_i, vp_i = L2.lif_integrate(u_i, v_i, a[t], L2.DECAY_MAX, dv, bias)
            if step is proved and not step.clip:  # the clip was proved to be the identity
                unclipped = L2.wrap_int32(L2.decay_voltage(v_i, dv) + u_i + bias)
                assert np.array_equal(unclipped, vp_i)
            vp = step(v, at[t], out)
            assert np.array_equal(vp.numpy().astype(np.int64), vp_i), (t, step.wraps, step.clip)
            s_i = vp_i > theta
            v_i = np.where(s_i, 0, vp_i)
            v = torch.where(vp > theta, 0.0, vp)


def test_wrap_bounds_follow_the_input():
    """Small inputs: every wrap and the clip skipped; inputs whose << 6 exceeds 24 bits: kept."""
    bias = torch.zeros(3, 1, dtype=torch.float64)
    spec = LoopSpec(integer=True, theta=float(L2.scaled_threshold(1024)), a_scale=64.0, dv=200)
    small = IntegerStep.for_loop(torch.full((5, 3, 2), 1000.0, dtype=torch.float64), bias, None, None, None, None,
                                 spec)
    assert small.wraps == L2.LifWraps(False, False, False) and not small.clip
    big = IntegerStep.for_loop(torch.full((5, 3, 2), 2.0**17, dtype=torch.float64), bias, None, None, None, None,
                               spec)
    assert big.wraps.current_24 and big.clip
    # the recurrent input counts: sum |K| * max|mask| on top of max |a|
    from crsnn.models.recurrent import integer_taps

    taps = integer_taps(torch.zeros(3), torch.float64)
    k = torch.tensor([2.0**16, 0.0, 2.0**16], dtype=torch.float64)
    rec = IntegerStep.for_loop(torch.full((5, 3, 2), 1000.0, dtype=torch.float64), bias, k, None, taps,
                               torch.full((5, 3, 2), 1.25), spec)
    assert rec.wraps.current_24


@settings(max_examples=200, deadline=None)
@given(drive=st.integers(0, 2**22), theta=st.integers(0, L2.V_MAX), dv=st.integers(0, 4095),
       steps=st.integers(1, 300), spiking=st.booleans(), seed=st.integers(0, 2**31))
def test_voltage_saturation_bound(drive, theta, dv, steps, spiking, seed):
    """When voltage_saturates says no, a run with |u + bias| <= drive (pushed to -drive, the
    worst case for the geometric bound) never leaves [V_MIN, V_MAX]."""
    if bounds.voltage_saturates(drive, theta, dv, steps, spiking):
        return
    rng = np.random.default_rng(seed)
    d = rng.integers(-drive, drive + 1, (steps, 16))
    d[:, :8] = -drive
    v = np.zeros(16, np.int64)
    for t in range(steps):
        v = L2.decay_voltage(v, dv) + d[t]
        assert np.all(np.abs(v) <= L2.V_MAX)
        if spiking:
            v = np.where(v > theta, 0, v)


# ------------------------------------------------------------------ whole networks
def test_qat_with_wrapping_accumulations_still_equals_the_simulator(monkeypatch):
    """Weights so large that the input of a step can exceed 24 bits after the << 6: the bounds
    keep the wraps (checked), and the QAT forward still equals the integer simulator bit for bit."""
    torch.manual_seed(3)
    model = build_model(ModelConfig(n_in=12, n_out=3, hidden=[10, 8], model="crsnn", kernel=3, batchnorm=False,
                                    input_message_bits=8, delay_init=["uniform", 0, 4], vth=64))
    with torch.no_grad():
        for layer in model.layers:
            layer.weight.mul_(200.0)  # weight exponent 7: |a| up to 254 * 255 * 12 * 128
            layer.rec_kernel.mul_(50.0)
        model.readout.weight.mul_(3.0)
    model.eval().set_qat(True)
    seen = []
    orig = IntegerStep.for_loop.__func__

    def spy(cls, *args, **kw):
        step = orig(cls, *args, **kw)
        seen.append(step)
        return step

    monkeypatch.setattr(IntegerStep, "for_loop", classmethod(spy))
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (4, 30, 12))
    x[rng.random(x.shape) < 0.5] = 0
    with torch.no_grad():
        v, hidden = model.qat_readout_int(torch.from_numpy(x), return_hidden=True)
    assert any(s.wraps.current_24 or s.wraps.current_int32 for s in seen), "no wrap possible: test is vacuous"
    net = model.to_integer()
    ref = simulate(net, x)
    assert np.array_equal(v.numpy().astype(np.int64), ref.readout_v)
    for h, r in zip(hidden, ref.hidden_spikes):
        assert np.array_equal(h.numpy().astype(bool), r)
    assert any(r.any() for r in ref.hidden_spikes)


def test_integer_loop_with_forced_wraps_equals_proved(monkeypatch):
    """lif_loop (integer, dense recurrence in float32, dropout mask) gives the same spikes and
    voltages with every wrap and the clip applied as with the ones its bounds keep."""
    g = torch.Generator().manual_seed(1)
    T, N, B = 30, 12, 5
    a = torch.randint(-40, 120, (T, N, B), generator=g).double()
    w = (torch.randint(-60, 60, (N, N), generator=g) * 2).double()
    bias = torch.randint(-300, 300, (N,), generator=g).double()
    delays = torch.randint(0, 5, (N,), generator=g).double()
    spec = LoopSpec(integer=True, theta=float(L2.scaled_threshold(64)), a_scale=64.0, dv=900)
    args = dict(weights=w, delays=delays)
    s1, v1 = lif_loop(a, bias, 0.7, spec, **args)
    monkeypatch.setattr(IntegerStep, "for_loop",
                        classmethod(lambda cls, a, bias, *r: cls(spec.dv, spec.a_scale, bias, L2.LifWraps(), True)))
    s2, v2 = lif_loop(a, bias, 0.7, spec, **args)
    assert 0 < s1.mean() < 1
    assert torch.equal(s1, s2) and torch.equal(v1, v2)


# ------------------------------------------------------------------ dropout masks
def test_dropout_mask_values_and_draws():
    like = torch.empty(50, 40, 30, dtype=torch.float64)
    torch.manual_seed(5)
    m = dropout_mask(like, 0.4)
    torch.manual_seed(5)
    old = torch.where(torch.rand_like(like.float()) < 0.6, 1.0 / 0.6, 0.0).float()
    assert m.dtype == torch.float32 and m.shape == like.shape
    assert torch.equal(m, old)
    assert set(m.unique().tolist()) == {0.0, float(np.float32(1 / 0.6))}
    assert abs(float((m == 0).double().mean()) - 0.4) < 0.01
