"""Quantization-aware training pieces: the crsnn.loihi2 additions (lif_integrate, float wrap,
bias / weight exponent choice) and the straight-through quantizers of crsnn.models.quant."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from crsnn import loihi2 as L2
from crsnn.models.quant import floor_shift_ste, quantize_bias, quantize_leak, quantize_weights, weight_grid

i24 = st.integers(-(2**23) + 1, 2**23 - 1)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------- crsnn.loihi2 additions
@settings(max_examples=300, deadline=None)
@given(u=i24, v=i24, a=st.integers(-(2**24), 2**24), du=st.integers(0, 4095), dv=st.integers(0, 4095),
       vth=st.integers(0, L2.VTH_MAX), bias_mant=st.integers(-4096, 4095), bias_exp=st.integers(0, 7))
def test_lif_integrate_then_threshold_is_lif_step_in_int64_and_float64(u, v, a, du, dv, vth, bias_mant, bias_exp):
    bias = L2.scaled_bias(bias_mant, bias_exp)
    ref_u, ref_v, ref_s = L2.lif_step(np.int64(u), np.int64(v), np.int64(a), du, dv, vth, np.int64(bias))
    for dtype in (torch.int64, torch.float64):
        t = lambda x: torch.tensor(x, dtype=dtype)  # noqa: E731
        nu, nv = L2.lif_integrate(t(u), t(v), t(a), du, dv, t(bias))
        s = nv > L2.scaled_threshold(vth)
        nv = torch.where(s, torch.zeros_like(nv), nv)
        assert (int(nu), int(nv), bool(s)) == (int(ref_u), int(ref_v), bool(ref_s))


@settings(max_examples=200, deadline=None)
@given(x=st.integers(-(2**40), 2**40))
def test_wrap_int32_of_floats_equals_the_integer_wrap(x):
    ref = int(L2.wrap_int32(np.int64(x)))
    assert float(L2.wrap_int32(torch.tensor(float(x), dtype=torch.float64))) == ref
    assert float(L2.wrap_int32(np.float64(x))) == ref


@settings(max_examples=200, deadline=None)
@given(b=st.floats(-(2**20), 2**20, allow_nan=False))
def test_bias_exponent_is_the_smallest_that_fits_the_mantissa(b):
    e = L2.choose_bias_exp(abs(b))
    mant = L2.bias_mant_for(np.float64(b), e)
    assert L2.BIAS_EXP_MIN <= e <= L2.BIAS_EXP_MAX
    assert L2.BIAS_MANT_MIN <= mant <= L2.BIAS_MANT_MAX
    if abs(b) <= L2.BIAS_MANT_MAX * 2**L2.BIAS_EXP_MAX:
        assert abs(L2.scaled_bias(mant, e) - b) <= 2 ** (e - 1) + 1e-9  # rounded, not clipped
        if e > 0:  # one less would not fit
            assert np.floor(abs(b) / 2 ** (e - 1) + 0.5) > L2.BIAS_MANT_MAX


@pytest.mark.parametrize("vpu", [64 * 1024, 4096, 64])
@pytest.mark.parametrize("m", [1e-4, 0.01, 0.3, 1.0, 7.5])
def test_weight_exponent_covers_the_largest_weight_without_clipping(vpu, m):
    e = L2.weight_exp_for_scale(m, vpu)
    unit = 2.0**e * 64 / vpu
    if L2.WEIGHT_EXP_MIN < e < L2.WEIGHT_EXP_MAX:
        assert m / unit <= 254 + 1e-9  # fits the mixed-sign range (254 = largest even)
        assert m / (unit / 2) > 254  # and one exponent less would not
    assert L2.weight_exp_for_scale(m, vpu, min_exp=0) == max(e, 0)


# ---------------------------------------------------------------- STE quantizers
def test_weight_grid_gives_lava_effective_weights_and_identity_gradient():
    x = torch.linspace(-300, 300, 2401, dtype=torch.float64, requires_grad=True)
    q = weight_grid(x)
    qi = q.detach().numpy().astype(np.int64)
    assert np.array_equal(q.detach().numpy(), qi)  # integers
    assert qi.min() == -256 and qi.max() == 254 and np.all(qi % 2 == 0)
    # already Lava-effective: Lava's clip/truncation leaves them unchanged
    assert np.array_equal(L2.effective_weights(qi, L2.SignMode.MIXED, 8), qi)
    inside = (x.detach().abs() < 250).numpy()
    assert np.all(np.abs(qi[inside] - x.detach().numpy()[inside]) <= 1.0)  # nearest even value
    q.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


@pytest.mark.parametrize("scale", [0.02, 0.5, 3.0])
def test_quantized_weights_represent_the_float_weights_within_half_a_step(scale):
    g = torch.Generator().manual_seed(1)
    w = (torch.randn(40, 30, generator=g) * scale).requires_grad_(True)
    vpu = L2.scaled_threshold(1024)
    qw = quantize_weights(w, vpu)
    wi = qw.w_int.detach()
    assert torch.equal(wi, wi.round()) and int(wi.abs().max()) <= 256 and bool((wi % 2 == 0).all())
    assert int(wi.abs().max()) > 128  # the exponent uses the range
    unit = 2.0**qw.exp * 64 / vpu
    err = (wi * unit - w.detach().double()).abs().max()
    assert float(err) <= unit * 1.0 + 1e-12  # step is 2 units: at most one unit away
    qw.w_int.sum().backward()
    assert torch.allclose(w.grad, torch.full_like(w, vpu / (64 * 2.0**qw.exp)))


def test_floor_shift_ste_is_lavas_floor_shift_with_linear_gradient():
    acc = torch.tensor([-9.0, -8.0, -1.0, 0.0, 1.0, 7.0, 9.0], dtype=torch.float64, requires_grad=True)
    for exp in (-3, -1, 0, 2):
        out = floor_shift_ste(acc, exp)
        ref = L2.floor_shift(acc.detach().numpy().astype(np.int64), exp)
        assert np.array_equal(out.detach().numpy(), ref)
        (g,) = torch.autograd.grad(out.sum(), acc)
        assert torch.allclose(g, torch.full_like(g, 2.0**exp))


def test_bias_and_leak_quantizers_land_on_their_grids():
    b = torch.tensor([-123456.7, -3.2, 0.0, 5.5, 70000.2], dtype=torch.float64, requires_grad=True)
    qb = quantize_bias(b)
    assert 0 <= qb.exp <= 7
    assert torch.equal(qb.mant, qb.mant.round()) and int(qb.mant.abs().max()) <= 4096
    assert torch.equal(qb.value.detach(), qb.mant * 2.0**qb.exp)
    qb.value.sum().backward()
    assert torch.equal(b.grad, torch.ones_like(b))
    for beta in (0.0, 0.1234, 0.5, 0.999, 1.0):
        bq, dv = quantize_leak(torch.tensor(beta))
        assert 0 <= dv <= 4095 and dv == L2.dv_from_leak(beta)
        assert float(bq) == L2.leak_from_dv(dv)
