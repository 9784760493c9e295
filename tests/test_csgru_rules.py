"""The CS-GRU fixed-point rules of crsnn/loihi2.py at their range limits (hypothesis): the
piecewise-linear sigmoid (range, monotonicity, symmetry, error against the true sigmoid,
saturation), the gate x state product (exact truncation, never grows a state), the per-neuron
update-gate term (floor), and one cell step on NumPy int64 and on torch float64 (bit-identical,
states within 24 bits) for inputs up to the int32 limits."""

from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from crsnn import loihi2 as L2

PRE = st.integers(-(2**40), 2**40)
STATE = st.integers(L2.V_MIN, L2.V_MAX)
GATE = st.integers(0, L2.GATE_ONE)


@given(PRE)
def test_sigmoid_range_symmetry_and_saturation(x):
    g = int(L2.sigmoid_q(np.int64(x)))
    assert 0 <= g <= L2.GATE_ONE
    assert g + int(L2.sigmoid_q(np.int64(-x))) == L2.GATE_ONE
    if abs(x) >= L2.GATE_SATURATION:
        assert g == (L2.GATE_ONE if x > 0 else 0)
    # saturating the pre-activation at 24 bits never changes the gate
    assert g == int(L2.sigmoid_q(L2.saturate24(np.int64(x))))


def test_sigmoid_monotone_and_close_to_the_sigmoid():
    x = np.arange(-L2.GATE_SATURATION - 100, L2.GATE_SATURATION + 100, dtype=np.int64)
    g = L2.sigmoid_q(x)
    assert np.all(np.diff(g) >= 0)
    assert int(L2.sigmoid_q(np.int64(0))) == L2.GATE_ONE // 2
    err = np.abs(g / L2.GATE_ONE - 1.0 / (1.0 + np.exp(-x / L2.GATE_ONE)))
    assert err.max() < 0.0195  # PLAN's error (0.0189) plus the 1/4096 resolution


@given(GATE, st.integers(-(2**24), 2**24))
def test_gate_product_truncates_toward_zero(g, x):
    p = int(L2.gate_product(np.int64(g), np.int64(x)))
    exact = g * x
    assert p == int(math.copysign(abs(exact) // L2.GATE_ONE, exact)) if exact else p == 0
    assert abs(p) <= abs(x)
    t = L2.gate_product(torch.tensor(float(g), dtype=torch.float64), torch.tensor(float(x), dtype=torch.float64))
    assert float(t) == p


@given(st.integers(L2.DIAG_MIN, L2.DIAG_MAX), STATE, st.integers(L2.DIAG_SHIFT_MIN, L2.DIAG_SHIFT_MAX))
def test_diag_term_is_a_floor_shift(w, i, shift):
    d = int(L2.diag_term(np.int64(w), np.int64(i), shift))
    assert d == (w * i) // 2**shift
    assert float(L2.diag_term(torch.tensor(float(w), dtype=torch.float64),
                              torch.tensor(float(i), dtype=torch.float64), shift)) == d


A = st.integers(-(2**31) + 1, 2**31 - 1)


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(np.int64, 8, elements=STATE), hnp.arrays(np.int64, 8, elements=STATE),
       hnp.arrays(np.int64, 8, elements=st.integers(0, 1)),
       hnp.arrays(np.int64, (3, 8), elements=A),
       hnp.arrays(np.int64, (3, 8), elements=st.integers(L2.BIAS_MANT_MIN, L2.BIAS_MANT_MAX)),
       st.integers(0, 7), hnp.arrays(np.int64, 8, elements=st.integers(L2.DIAG_MIN, L2.DIAG_MAX)),
       st.integers(L2.DIAG_SHIFT_MIN, L2.DIAG_SHIFT_MAX), st.integers(0, L2.VTH_MAX))
def test_cell_step_numpy_equals_torch_within_widths(i, v, s, a, bm, be, w_z, shift, vth):
    bias = L2.scaled_bias(bm, be)
    out_np = L2.csgru_step(i, v, s, a[0], a[1], a[2], bias[0], bias[1], bias[2], w_z, shift, vth)
    f = lambda x: torch.tensor(x, dtype=torch.float64)  # noqa: E731
    out_t = L2.csgru_step(f(i), f(v), f(s), f(a[0]), f(a[1]), f(a[2]), f(bias[0]), f(bias[1]), f(bias[2]),
                          f(w_z), shift, vth)
    for x, y in zip(out_np, out_t):
        assert np.array_equal(np.asarray(x, dtype=np.int64), y.numpy().astype(np.int64))
    i2, v2, s2, r, z = out_np
    assert np.all(np.abs(i2) <= L2.V_MAX) and np.all(np.abs(v2) <= L2.V_MAX)
    assert np.all((r >= 0) & (r <= L2.GATE_ONE)) and np.all((z >= 0) & (z <= L2.GATE_ONE))
    assert np.array_equal(s2, v2 > L2.scaled_threshold(vth))


def test_cell_with_constant_gates_is_a_leaky_neuron():
    """r = 0 (bias far below) and z = 1/2 (w_z = 0, bias 0): i is this step's input, v halves
    (truncated) and adds half the current (truncated), minus the threshold after a spike."""
    n = 5
    i = np.zeros(n, np.int64)
    v = np.array([100, -100, 7, 0, 1000], np.int64)
    a = np.array([3, 0, -2, 1, 10], np.int64)
    zero = np.zeros(n, np.int64)
    i2, v2, s, r, z = L2.csgru_step(i, v, zero, zero + 0, a, zero, np.full(n, -L2.GATE_SATURATION), zero, zero,
                                    zero, 0, 10)
    assert np.all(r == 0) and np.all(z == L2.GATE_ONE // 2)
    assert np.array_equal(i2, a * 64)
    assert np.array_equal(v2, np.trunc(v / 2).astype(np.int64) + np.trunc(a * 64 / 2).astype(np.int64))


def test_diag_shift_keeps_mantissas_in_8_bits():
    for m in (1e-4, 0.01, 0.5, 3.0, 100.0):
        shift = L2.diag_shift_for(m, 1024 << 6)
        assert L2.DIAG_SHIFT_MIN <= shift <= L2.DIAG_SHIFT_MAX
        assert round(m * L2.GATE_ONE / (1024 << 6) * 2**shift) <= L2.DIAG_MAX or shift == L2.DIAG_SHIFT_MIN
    assert L2.diag_shift_for(0.0, 64) == 0
