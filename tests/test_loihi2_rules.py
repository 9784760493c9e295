"""The fixed-point rules of crsnn.loihi2: hand-computed edge cases, and property tests against
Lava's own bit-accurate model code (called directly, no Lava runtime)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from crsnn import loihi2 as L2
from crsnn.lava_compat import import_lava

import_lava()
from lava.proc.lif.models import PyLifModelBitAcc  # noqa: E402
from lava.utils import weightutils as wu  # noqa: E402


# ---------------------------------------------------------------- decays: truncation toward zero
def test_current_decay_truncates_negative_values_toward_zero():
    # -4097 * (4096 - 1) = -16777215; |.| >> 12 = 4095 -> -4095 (a floor would give -4096)
    assert L2.decay_current(np.int64(-4097), 0) == -4095
    assert L2.decay_current(np.int64(4097), 0) == 4095


def test_voltage_decay_truncates_negative_values_toward_zero():
    # -3 * (4096 - 2048) / 4096 = -1.5 -> -1 (floor would be -2)
    assert L2.decay_voltage(np.int64(-3), 2048) == -1
    assert L2.decay_voltage(np.int64(3), 2048) == 1


def test_du_4095_forgets_the_current_and_du_0_still_decays():
    u = np.array([-(2**23) + 1, -1, 1, 4096, 2**23 - 1], dtype=np.int64)
    assert np.all(L2.decay_current(u, 4095) == 0)
    # du = 0 multiplies by 4095/4096 (the +1 offset): 4096 -> 4095
    assert L2.decay_current(np.int64(4096), 0) == 4095


def test_dv_0_keeps_v_and_dv_4095_leaves_one_4096th():
    v = np.array([-(2**23) + 1, -5, 0, 7, 2**23 - 1], dtype=np.int64)
    assert np.array_equal(L2.decay_voltage(v, 0), v)
    assert L2.decay_voltage(np.int64(8191), 4095) == 1
    assert L2.decay_voltage(np.int64(8192), 4095) == 2


# ---------------------------------------------------------------- 24-bit limits
def test_current_wraps_once_not_modulo():
    h = 2**23
    u = np.array([h, h + 1, -h, -h + 1, 2 * h + h + 5, -(2 * h) - h - 5], dtype=np.int64)
    got = L2.wrap_current(u)
    # 2**23 itself is kept; 2**23 + 1 wraps; -2**23 wraps up; one add/subtract only
    assert got.tolist() == [h, -h + 1, h, -h + 1, h + 5, -h - 5]


def test_voltage_saturates_at_24_bits():
    u, v, s = L2.lif_step(np.int64(0), np.int64(2**23 - 10), np.int64(1000), 4095, 0, L2.VTH_MAX, 0)
    assert v == 0 and s  # saturated at 2**23 - 1 = 8388607 > 131071 << 6 = 8388544: spikes
    u, v, s = L2.lif_step(np.int64(0), np.int64(-(2**23) + 10), np.int64(-1000), 4095, 0, L2.VTH_MAX, 0)
    assert v == -(2**23) + 1 and not s


def test_activation_shift_wraps_in_int32_like_lava():
    # a << 6 with a = 2**25 is 2**31: int32 wraps it to -2**31, then the 24-bit rule adds 2**24
    u, _, _ = L2.lif_step(np.int64(0), np.int64(0), np.int64(2**25), 4095, 0, 1, 0)
    assert u == -(2**31) + 2**24


# ---------------------------------------------------------------- threshold and reset
def test_spike_needs_v_strictly_above_scaled_threshold_and_resets_v_only():
    vth = 100
    at = vth << 6
    # v reaches exactly the threshold: no spike
    u, v, s = L2.lif_step(np.int64(0), np.int64(0), np.int64(0), 4095, 0, vth, np.int64(at))
    assert not s and v == at
    # one unit more: spike, v reset to 0, u kept
    u, v, s = L2.lif_step(np.int64(0), np.int64(0), np.int64(1), 4095, 0, vth, np.int64(at - 63))
    assert s and v == 0 and u == 64


def test_bias_is_in_v_units_and_scaled_by_its_exponent():
    assert L2.scaled_bias(np.int64(3), 2) == 12
    assert L2.scaled_bias(np.int64(-4096), 7) == -4096 * 128
    _, v, _ = L2.lif_step(np.int64(0), np.int64(0), np.int64(0), 4095, 0, L2.VTH_MAX, np.int64(5))
    assert v == 5  # not shifted by 6


# ---------------------------------------------------------------- weights
def test_mixed_sign_8_bit_weights_keep_even_values_with_floor():
    w = np.array([3, -3, 255, -256, 300, -300, 1, -1])
    assert L2.effective_weights(w, L2.SignMode.MIXED, 8).tolist() == [2, -4, 254, -256, 254, -256, 0, -2]


def test_single_sign_weights_and_fewer_bits():
    assert L2.effective_weights([255, 3, -5], L2.SignMode.EXCITATORY, 8).tolist() == [255, 3, 0]
    # inhibitory clips to -255 and truncates the magnitude
    assert L2.effective_weights([-256, -3, 5], L2.SignMode.INHIBITORY, 7).tolist() == [-254, -2, 0]
    assert L2.effective_weights([7, 255], L2.SignMode.EXCITATORY, 6).tolist() == [4, 252]


def test_weight_exponent_shifts_the_sum_with_floor():
    assert L2.floor_shift(np.int64(-5), -1) == -3  # floor, not truncation
    assert L2.floor_shift(np.int64(5), -1) == 2
    assert L2.floor_shift(np.int64(-5), 3) == -40


def test_float_conversions_round_trip():
    for dv in (0, 1, 100, 2048, 4095):
        assert L2.dv_from_leak(L2.leak_from_dv(dv)) == dv
    for du in (0, 1, 100, 4094, 4095):
        assert L2.du_from_leak(L2.leak_from_du(du)) == du
    assert L2.du_from_leak(0.0) == 4095
    e = L2.choose_weight_exp(2.0, vth=1000)
    unit = L2.WeightQuant(e).float_per_unit(1000)
    assert 254 * unit >= 2.0 > 254 * unit / 2  # smallest exponent that covers the range


# ---------------------------------------------------------------- property tests against Lava
int32s = st.integers(-(2**31), 2**31 - 1)


@settings(max_examples=300, deadline=None)
@given(
    u=hnp.arrays(np.int64, 6, elements=st.integers(-(2**24), 2**24)),
    v=hnp.arrays(np.int64, 6, elements=st.integers(-(2**23) + 1, 2**23 - 1)),
    a=hnp.arrays(np.int64, 6, elements=st.one_of(st.integers(-(2**17), 2**17), st.integers(-(2**26), 2**26))),
    du=st.integers(0, 4095),
    dv=st.integers(0, 4095),
    vth=st.integers(0, L2.VTH_MAX),
    bias_mant=hnp.arrays(np.int64, 6, elements=st.integers(L2.BIAS_MANT_MIN, L2.BIAS_MANT_MAX)),
    bias_exp=st.integers(0, 7),
)
def test_lif_step_equals_lavas_bit_accurate_model(u, v, a, du, dv, vth, bias_mant, bias_exp):
    m = PyLifModelBitAcc({})
    m.u, m.v = u.astype(np.int32), v.astype(np.int32)
    m.du, m.dv, m.vth = du, dv, vth
    m.bias_mant, m.bias_exp = bias_mant.astype(np.int16), np.full(6, bias_exp, np.int16)
    m.scale_bias()
    m.scale_threshold()
    m.subthr_dynamics(activation_in=a.astype(np.int32))
    s = m.spiking_activation()
    m.reset_voltage(s)

    got_u, got_v, got_s = L2.lif_step(u, v, a, du, dv, vth, L2.scaled_bias(bias_mant, bias_exp))
    assert np.array_equal(got_u, m.u.astype(np.int64))
    assert np.array_equal(got_v, m.v.astype(np.int64))
    assert np.array_equal(got_s, s)


@settings(max_examples=300, deadline=None)
@given(
    w=hnp.arrays(np.int64, (4, 5), elements=st.integers(-400, 400)),
    mode=st.sampled_from(list(L2.SignMode)),
    bits=st.integers(1, 8),
)
def test_effective_weights_equal_lavas_clip_and_truncate(w, mode, bits):
    lava_mode = wu.SignMode(int(mode))
    expect = wu.truncate_weights(wu.clip_weights(w, lava_mode, num_bits=8), lava_mode, bits)
    assert np.array_equal(L2.effective_weights(w, mode, bits), expect)


@settings(max_examples=200, deadline=None)
@given(w=hnp.arrays(np.int64, (3, 4), elements=st.integers(-256, 255)))
def test_sign_mode_inference_equals_lava(w):
    assert int(L2.infer_sign_mode(w)) == wu.determine_sign_mode(w).value


@settings(max_examples=200, deadline=None)
@given(w=hnp.arrays(np.int64, (3, 4), elements=st.integers(-256, 255)),
       mode=st.sampled_from(list(L2.SignMode)), bits=st.integers(1, 8))
def test_weight_range_and_step_describe_the_representable_values(w, mode, bits):
    eff = L2.effective_weights(w, mode, bits)
    lo, hi = L2.weight_range(mode, bits)
    assert eff.min() >= lo and eff.max() <= hi
    assert np.all(eff % L2.weight_step(mode, bits) == 0)
