"""Loihi 2 fixed-point rules: the one source of truth for integer arithmetic in crsnn.

Everything that must agree bit for bit with Lava's ``Loihi2SimCfg(select_tag='fixed_pt')``
models (``PyLifModelBitAcc``, ``PyDenseModelBitAcc``, ``PySparseModelBitAcc``,
``PyDelaySparseModelBitAcc``, ``PyDelayDenseModelBitAcc`` of lava-nc 0.10.0) is defined here:
the trainer (quantization-aware training), the integer simulator (:mod:`crsnn.sim`) and the Lava
compiler (:mod:`crsnn.deploy`) all call these functions and read these limits.

Units and representation (all integers unless said otherwise)
------------------------------------------------------------
- Time is counted in **time steps** (one Lava ``time_step``); nothing here knows about seconds.
- ``u`` (synaptic current) and ``v`` (membrane voltage) are 24-bit state values. Incoming
  synaptic activation ``a`` is left-shifted by :data:`ACT_SHIFT` (6) before it is added to ``u``;
  the threshold mantissa ``vth`` is left-shifted by :data:`VTH_SHIFT` (6); the bias is **not**
  shifted. So one unit of ``a`` equals 64 units of ``v``, and ``bias_mant << bias_exp`` is in
  ``v`` units directly.
- Decays ``du``, ``dv`` are 12-bit (0..4095). Per step ``u <- trunc(u * (4096 - (du + 1)) / 4096)``
  (note the ``+ 1``: ``du = 4095`` forgets the current entirely, ``du = 0`` still decays by
  1/4096) and ``v <- trunc(v * (4096 - dv) / 4096)`` (``dv = 0``: no leak). ``trunc`` rounds
  toward zero (sign-magnitude shift).
- Synaptic weights are 8-bit with a sign mode (Lava's ``SignMode``) and a per-connection weight
  exponent: the raw integer weight matrix is clipped and its low bits dropped exactly as Lava does
  (:func:`effective_weights`); a mixed-sign matrix with 8 weight bits therefore keeps only even
  values in [-256, 254] (an 8-bit signed mantissa times 2). Each step a connection sums the
  effective weights of its active inputs (times the graded payload for graded messages), then
  shifts **the sum** by ``weight_exp`` (left if > 0, arithmetic floor right shift if < 0).
- Axonal/synaptic delays are integers in [:data:`DELAY_MIN`, :data:`DELAY_MAX`] = [0, 62]. A spike
  emitted at step t reaches its target's input at step t + 1 + d (every synapse adds one step).

Intermediate widths: Lava's ports and buffers are int32; the simulator reproduces its int32
wrap-around where it can occur (:func:`wrap_int32`). Sums before the weight shift are exact as long
as :func:`max_abs_accumulation` < 2**31, which :mod:`crsnn.models.integer` validates.

The functions work on NumPy integer arrays and on PyTorch integer tensors (the trainer's integer
evaluation); :func:`trunc_shift` also accepts floating tensors holding integer values, which is
what quantization-aware training uses in its forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import numpy as np

# --------------------------------------------------------------------------------------------
# Widths and limits
# --------------------------------------------------------------------------------------------
STATE_BITS = 24
#: 2**23: ``u`` wraps once by 2**24 when it leaves (-2**23, 2**23]; ``v`` saturates at +-(2**23-1).
STATE_HALF = 2 ** (STATE_BITS - 1)
V_MAX = STATE_HALF - 1
V_MIN = -(STATE_HALF - 1)

DECAY_BITS = 12
DECAY_UNITY = 2**DECAY_BITS  # 4096
DECAY_MAX = DECAY_UNITY - 1  # du, dv in [0, 4095]

ACT_SHIFT = 6  # synaptic activation a -> a << 6 before it enters u
VTH_SHIFT = 6  # threshold mantissa vth -> vth << 6 in v units
VTH_BITS = 17
VTH_MAX = 2**VTH_BITS - 1  # 131071; vth << 6 = 8388544 < V_MAX (a saturated v still spikes)

BIAS_MANT_BITS = 13
BIAS_MANT_MIN = -(2 ** (BIAS_MANT_BITS - 1))  # -4096
BIAS_MANT_MAX = 2 ** (BIAS_MANT_BITS - 1) - 1  # 4095
BIAS_EXP_MIN, BIAS_EXP_MAX = 0, 7  # unsigned 3-bit

WEIGHT_BITS = 8
RAW_WEIGHT_MIN, RAW_WEIGHT_MAX = -256, 255  # what Lava clips a mixed-sign matrix to
#: Weight exponent range accepted here: the signed 4-bit range of Loihi's weight exponent.
#: (Lava itself accepts any int; this is our documented hardware assumption.)
WEIGHT_EXP_MIN, WEIGHT_EXP_MAX = -8, 7

DELAY_MIN, DELAY_MAX = 0, 62  # Lava's models raise above 63; Loihi 2 practice uses <= 62
#: Per-synapse delay of a feedforward connection (Lava ``DelayDense``/``DelaySparse``, netx's 2-D
#: ``delay``): same range and meaning as the axonal delays, a spike emitted at step t through a
#: synapse of delay d reaches the target's input at step t + 1 + d (d = 0 is a plain ``Dense``).
#: With a negative weight exponent Lava floors the sum of each (target neuron, delay value) group
#: separately (its activation buffer holds one column per delay value).
SYNAPSE_DELAY_MIN, SYNAPSE_DELAY_MAX = DELAY_MIN, DELAY_MAX

#: lava-dl netx (0.6.0) stores weights at exponent 0 (``effective * 2**weight_exp`` must be an
#: integer in [-256, 254]: with 8-bit mixed-sign weights, always so for exponents -1 and 0) and
#: fixes the bias exponent at 6 (biases are multiples of 64 ``v`` units). QAT with
#: ``--target netx`` keeps weight exponents in this range and biases at this exponent.
NETX_WEIGHT_EXP_RANGE = (-1, 0)
NETX_BIAS_EXP = 6

#: Graded spike payloads carried by a connection: 1..MAX_MESSAGE_BITS bits, unsigned.
MAX_MESSAGE_BITS = 8

# Capacity (Intel's public Loihi 2 material, not a datasheet): a chip has 128 neuron cores of at
# most 8192 neurons each (crsnn.deploy.report's per-core estimates start from these); the largest
# Loihi 2 system, Hala Point (Intel, April 2024), holds 1152 chips with 1.15 billion neurons and
# 128 billion synapses. A network larger than that runs on no Loihi 2 system: crsnn refuses such a
# graph before reading its arrays.
CORES_PER_CHIP = 128
NEURONS_PER_CORE = 8192
SYSTEM_NAME = "Hala Point, 1152 Loihi 2 chips"
SYSTEM_NEURONS_MAX = 1_150_000_000
SYSTEM_SYNAPSES_MAX = 128_000_000_000

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


class SignMode(IntEnum):
    """Weight sign mode, same values as ``lava.utils.weightutils.SignMode``."""

    MIXED = 1
    EXCITATORY = 2
    INHIBITORY = 3


# --------------------------------------------------------------------------------------------
# Array helpers (NumPy or torch)
# --------------------------------------------------------------------------------------------
def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def _sign(x):
    if _is_torch(x):
        import torch

        return torch.sign(x)
    return np.sign(x)


def _where(cond, a, b):
    if _is_torch(cond):
        import torch

        return torch.where(cond, a, b)
    return np.where(cond, a, b)


def _clip(x, lo, hi):
    if _is_torch(x):
        return x.clamp(lo, hi)
    return np.clip(x, lo, hi)


def trunc_shift(y, bits: int):
    """``sign(y) * (|y| >> bits)``: division by ``2**bits`` rounding toward zero.

    ``y``: integer array/tensor, or a floating tensor holding integers (exact below 2**53).
    """
    if _is_torch(y) and y.is_floating_point():
        import torch

        return torch.trunc(y / (2**bits))
    if not _is_torch(y) and np.issubdtype(np.asarray(y).dtype, np.floating):
        return np.trunc(np.asarray(y) / (2**bits))
    return _sign(y) * (abs(y) >> bits)


def floor_shift(x, exp: int):
    """Lava's weight-exponent shift of an accumulated sum: ``x << exp`` for ``exp > 0``, else the
    arithmetic (floor) right shift ``x >> -exp``. Works on integer arrays/tensors and on floating
    tensors holding integers."""
    if exp >= 0:
        return x * (2**exp)
    if (_is_torch(x) and x.is_floating_point()) or (
        not _is_torch(x) and np.issubdtype(np.asarray(x).dtype, np.floating)
    ):
        return (x / (2 ** (-exp))).floor() if _is_torch(x) else np.floor(x / (2 ** (-exp)))
    return x >> (-exp)


def wrap_int32(x):
    """Two's-complement wrap of an int64 array/tensor into the int32 range (what NumPy does when
    Lava stores an int64 result in an int32 port or buffer).

    Also accepts floating arrays/tensors holding integers (exact below 2**53; used by
    quantization-aware training): same result, computed with a floor modulo."""
    if (_is_torch(x) and x.is_floating_point()) or (
        not _is_torch(x) and np.issubdtype(np.asarray(x).dtype, np.floating)
    ):
        if _is_torch(x):
            import torch

            return torch.remainder(x + 2.0**31, 2.0**32) - 2.0**31
        return np.mod(np.asarray(x) + 2.0**31, 2.0**32) - 2.0**31
    return ((x + 2**31) & (2**32 - 1)) - 2**31


# --------------------------------------------------------------------------------------------
# Neuron: CUBA LIF, exactly PyLifModelBitAcc
# --------------------------------------------------------------------------------------------
def decay_current(u, du: int):
    """One step of current decay: ``trunc(u * (4096 - (du + 1)) / 4096)`` (``du`` 0..4095)."""
    return trunc_shift(u * (DECAY_UNITY - (du + 1)), DECAY_BITS)


def decay_voltage(v, dv: int):
    """One step of voltage decay: ``trunc(v * (4096 - dv) / 4096)`` (``dv`` 0..4095)."""
    return trunc_shift(v * (DECAY_UNITY - dv), DECAY_BITS)


def wrap_current(u):
    """Lava's 24-bit handling of the current: ONE add/subtract of 2**24, not a modulo.
    ``u > 2**23 -> u - 2**24``; ``u <= -2**23 -> u + 2**24``; else unchanged."""
    u = _where(u > STATE_HALF, u - 2 * STATE_HALF, u)
    return _where(u <= -STATE_HALF, u + 2 * STATE_HALF, u)


def max_scale_without_wrap(max_abs_input: float, du: int) -> float:
    """The largest scale ``s`` (integer activation units per float unit) at which a population's
    current cannot wrap: when every step's summed input is at most ``max_abs_input`` float units
    (``|a| <= s * max_abs_input``), the bound of :func:`lif_wraps`, ``(|a| << 6) * 4096 / (du + 1)``,
    stays within ``2**23 - 1``. ``inf`` for no input."""
    if max_abs_input <= 0:
        return float("inf")
    return (STATE_HALF - 1) * (int(du) + 1) / (DECAY_UNITY * 2**ACT_SHIFT * float(max_abs_input))


def scaled_bias(bias_mant, bias_exp):
    """Effective bias in ``v`` units: ``bias_mant << bias_exp`` (``bias_exp`` 0..7)."""
    return bias_mant * (2**bias_exp)


def scaled_threshold(vth: int) -> int:
    """Threshold in ``v`` units: ``vth << 6``."""
    return int(vth) << VTH_SHIFT


def lif_integrate(u, v, a, du: int, dv: int, bias):
    """:func:`lif_step` up to (not including) the threshold test: returns ``(u, v)`` with ``v``
    the voltage *before* spike and reset. ``lif_step(...) == (u, where(v > vth << 6, 0, v),
    v > vth << 6)`` for the returned values (tested). Accepts integer arrays/tensors and floating
    tensors holding integers (quantization-aware training runs it on float64 tensors)."""
    u = wrap_current(wrap_int32(decay_current(u, du) + a * (2**ACT_SHIFT)))
    v = _clip(wrap_int32(decay_voltage(v, dv) + u + bias), V_MIN, V_MAX)
    return u, v


def lif_step(u, v, a, du: int, dv: int, vth: int, bias):
    """One time step of Lava's bit-accurate CUBA LIF (``PyLifModelBitAcc``), vectorised.

    Parameters
    ----------
    u, v : int64 arrays/tensors of any shape (e.g. ``(batch, neurons)``): state before the step.
    a    : int64, same shape: the sum of every incoming connection's output this step (already
           shifted by its weight exponent), before the ``<< 6`` alignment.
    du, dv : decays, 0..4095. vth : threshold mantissa (0..131071). bias : effective bias
           (:func:`scaled_bias`), broadcastable to ``u``.

    Returns ``(u, v, s)``: new current, new voltage (0 where it spiked), boolean spikes.
    Order, exactly as Lava: u decays, ``a << 6`` is added (int32 arithmetic), u wraps once at 24
    bits; v decays, adds the new u and the bias (int32), saturates at +-(2**23 - 1); spike where
    ``v > vth << 6`` (strict); spiking neurons reset v to 0 (u is not reset).
    """
    u, v = lif_integrate(u, v, a, du, dv, bias)
    s = v > scaled_threshold(vth)
    v = _where(s, 0 * v, v)
    return u, v, s


@dataclass(frozen=True)
class LifWraps:
    """Which of the LIF's wrap-arounds can change a value in one population (see :func:`lif_wraps`).

    current_int32: the int32 wrap of ``decay(u) + (a << 6)``; current_24: the 24-bit wrap of ``u``
    (:func:`wrap_current`); voltage_int32: the int32 wrap of ``decay(v) + u + bias``.
    """

    current_int32: bool = True
    current_24: bool = True
    voltage_int32: bool = True


def lif_wraps(max_abs_a: int, du: int, max_abs_bias: int) -> LifWraps:
    """Which wraps of :func:`lif_integrate` can occur when ``|a| <= max_abs_a`` every step (``a``
    before the ``<< 6``), from a zero state, with current decay ``du`` and ``|bias| <= max_abs_bias``
    (``v`` units). A ``False`` field is a proof that the wrap is the identity at every step.

    Current: with ``c = (4096 - (du + 1)) / 4096 < 1`` and ``|trunc(c u)| <= c |u|``, the bound
    ``B = (max_abs_a << 6) * 4096 / (du + 1)`` satisfies ``c B + (max_abs_a << 6) = B``, so by
    induction ``|u| <= B`` at every step; if ``B < 2**23`` neither current wrap changes anything.
    Otherwise, if ``max_abs_a << 6 <= 2**24``, the single 24-bit wrap keeps ``|u| <= 2**23`` (by
    induction: ``|decay(u) + (a << 6)| <= 2**23 + 2**24``, and one add/subtract of 2**24 brings
    anything beyond +-2**23 back inside), so the int32 wrap cannot occur. Else ``u`` is only known
    to be an int32 and every wrap may occur. Voltage: ``|decay(v)| <= V_MAX`` plus the bound of
    ``|u|`` plus ``max_abs_bias``.
    """
    a64 = int(max_abs_a) * 2**ACT_SHIFT
    bound_u = -(-a64 * DECAY_UNITY // (int(du) + 1))  # ceil
    if bound_u <= STATE_HALF - 1:
        current_int32 = current_24 = False
        u_max = bound_u
    elif a64 <= 2 * STATE_HALF:
        current_int32, current_24 = False, True
        u_max = STATE_HALF
    else:
        current_int32 = current_24 = True
        u_max = -INT32_MIN
    return LifWraps(current_int32=current_int32, current_24=current_24,
                    voltage_int32=V_MAX + u_max + int(max_abs_bias) > INT32_MAX)


def lif_step_float_(u, v, a64, du: int, dv: int, vth: int, bias, wraps: LifWraps = LifWraps()):
    """:func:`lif_step` on floating torch tensors holding integers, updating ``v`` in place (and
    ``u`` where it is kept): the fast simulator's neuron update, one multiply and one truncation
    per decay.

    ``u, v``: float64 tensors of any shape (e.g. ``(neurons, batch)``), the state before the step;
    ``a64``: the summed synaptic input already aligned, ``a << 6`` (float64, same shape);
    ``bias``: effective bias in ``v`` units, broadcastable; ``wraps``: the wraps that can occur
    (:func:`lif_wraps`; the default applies all of them). Returns ``(u, v, s)`` like
    :func:`lif_step` (``u`` may be a new tensor, ``a64`` itself when ``du = 4095``).

    Exactness: ``(4096 - (du + 1)) / 4096`` has at most 12 significant bits, so for integers below
    2**41 the product ``u * factor`` is exact in float64 and ``trunc`` of it is
    :func:`decay_current`; likewise for ``v``. Every value stays below 2**53.
    """
    import torch

    cu = leak_from_du(du)
    if cu == 0.0:
        u = a64  # trunc(u * 0) + a64
    else:  # trunc as copysign(floor(|y|), y): the same value, several times faster than trunc on CPU
        u.mul_(cu)
        u = torch.copysign(u.abs().floor_(), u).add_(a64)
    if wraps.current_int32:
        u = wrap_int32(u)
    if wraps.current_24:
        u = wrap_current(u)
    cv = leak_from_dv(dv)
    if cv != 1.0:
        v.mul_(cv)
        torch.copysign(v.abs().floor_(), v, out=v)
    v.add_(u).add_(bias)
    if wraps.voltage_int32:
        v.copy_(wrap_int32(v))
    v.clamp_(V_MIN, V_MAX)
    s = v > scaled_threshold(vth)
    v.masked_fill_(s, 0.0)
    return u, v, s


# --------------------------------------------------------------------------------------------
# Synapses
# --------------------------------------------------------------------------------------------
def infer_sign_mode(weights) -> SignMode:
    """Lava's ``determine_sign_mode`` on a full (dense) weight matrix: all >= 0 -> EXCITATORY,
    all <= 0 -> INHIBITORY, else MIXED. (An all-zero matrix is EXCITATORY.)"""
    w = np.asarray(weights)
    if w.size == 0 or w.min() >= 0:
        return SignMode.EXCITATORY
    if w.max() <= 0:
        return SignMode.INHIBITORY
    return SignMode.MIXED


def effective_weights(weights, sign_mode: SignMode, num_weight_bits: int = WEIGHT_BITS) -> np.ndarray:
    """The integer weights a Lava fixed-point synapse actually uses (int64 array, same shape).

    Lava casts to int32 (floats truncate toward zero), clips to the sign mode's 8-bit range
    (mixed [-256, 255], excitatory [0, 255], inhibitory [-255, 0]) and drops
    ``8 - num_weight_bits (+1 if mixed)`` low bits with a floor shift (on the magnitude for
    inhibitory). ``weights``: integer array; ``num_weight_bits``: 1..8.
    """
    w = np.asarray(weights).astype(np.int32).astype(np.int64)
    mode = SignMode(sign_mode)
    if mode == SignMode.INHIBITORY:
        w = -w
    mixed = int(mode == SignMode.MIXED)
    w = np.clip(w, -(2**WEIGHT_BITS) * mixed, 2**WEIGHT_BITS - 1)
    drop = WEIGHT_BITS - int(num_weight_bits) + mixed
    w = (w >> drop) << drop
    return -w if mode == SignMode.INHIBITORY else w


def weight_step(sign_mode: SignMode, num_weight_bits: int = WEIGHT_BITS) -> int:
    """Spacing between representable effective weights (2 for 8-bit mixed, 1 for 8-bit single
    sign)."""
    return 2 ** (WEIGHT_BITS - int(num_weight_bits) + int(SignMode(sign_mode) == SignMode.MIXED))


def weight_range(sign_mode: SignMode, num_weight_bits: int = WEIGHT_BITS) -> tuple[int, int]:
    """(min, max) representable effective weight for a sign mode and bit width."""
    step = weight_step(sign_mode, num_weight_bits)
    mode = SignMode(sign_mode)
    top = (2**WEIGHT_BITS - 1) // step * step
    if mode == SignMode.MIXED:
        return -(2**WEIGHT_BITS), top
    if mode == SignMode.EXCITATORY:
        return 0, top
    return -top, 0


def max_abs_accumulation(effective: np.ndarray, max_payload: int = 1) -> int:
    """Upper bound of ``|sum_j w_ij * x_j|`` for inputs ``0 <= x_j <= max_payload`` (the largest
    pre-shift sum of one connection, over output neurons ``i``). ``effective``: (n_out, n_in)."""
    e = np.asarray(effective, dtype=np.int64)
    if e.size == 0:
        return 0
    pos = np.maximum(e, 0).sum(axis=1)  # per row: sum of the positive weights
    neg = pos - e.sum(axis=1)  # and of the negative ones' magnitudes
    return int(max(pos.max(), neg.max())) * int(max_payload)


def axonal_delay_latency(delay: int) -> int:
    """Steps between a spike at step t and its arrival at the target's input: ``1 + delay``."""
    return 1 + int(delay)


# --------------------------------------------------------------------------------------------
# Float <-> integer conversions (the trainer's and the exporter's mapping)
# --------------------------------------------------------------------------------------------
def dv_from_leak(beta: float) -> int:
    """Voltage decay ``dv`` for a float leak factor ``beta`` (``v[t] = beta * v[t-1] + ...``,
    0 <= beta <= 1): ``round(4096 * (1 - beta))`` clipped to 0..4095."""
    return int(np.clip(round(DECAY_UNITY * (1.0 - float(beta))), 0, DECAY_MAX))


def leak_from_dv(dv: int) -> float:
    """The float leak factor the integer ``dv`` implements: ``(4096 - dv) / 4096``."""
    return (DECAY_UNITY - int(dv)) / DECAY_UNITY


def du_from_leak(alpha: float) -> int:
    """Current decay ``du`` for a float current leak ``alpha``: Lava multiplies by
    ``4096 - (du + 1)``, so ``du = round(4096 * (1 - alpha)) - 1`` clipped to 0..4095;
    ``alpha = 0`` (no current memory, ``u = a << 6``) gives 4095."""
    return int(np.clip(round(DECAY_UNITY * (1.0 - float(alpha))) - 1, 0, DECAY_MAX))


def leak_from_du(du: int) -> float:
    """The float current leak the integer ``du`` implements: ``(4096 - (du + 1)) / 4096``."""
    return (DECAY_UNITY - (int(du) + 1)) / DECAY_UNITY


def dv_from_tau(tau_steps: float) -> int:
    """``dv`` for a membrane time constant in **time steps** (forward Euler: beta = 1 - 1/tau;
    tau <= 1 gives the strongest leak)."""
    return dv_from_leak(max(0.0, 1.0 - 1.0 / float(tau_steps)))


@dataclass(frozen=True)
class WeightQuant:
    """How float weights map onto Loihi integers for one connection.

    ``w_float = effective_int * 2**weight_exp * 64 / threshold_v`` where ``threshold_v`` is the
    target neuron's threshold in ``v`` units (``vth << 6``): a float weight of 1.0 moves the
    target's voltage by one threshold. ``step`` is the effective-weight spacing
    (:func:`weight_step`).
    """

    weight_exp: int
    sign_mode: SignMode = SignMode.MIXED
    num_weight_bits: int = WEIGHT_BITS

    def float_per_unit(self, vth: int) -> float:
        """The float weight one effective integer unit stands for (target threshold ``vth``)."""
        return (2.0**self.weight_exp) * (2**ACT_SHIFT) / float(scaled_threshold(vth))


def choose_weight_exp(max_abs_float: float, vth: int, sign_mode: SignMode = SignMode.MIXED) -> int:
    """The smallest weight exponent whose integer range covers ``max_abs_float`` (float weights in
    units of the target threshold ``vth``, see :class:`WeightQuant`), clipped to the allowed range."""
    return weight_exp_for_scale(max_abs_float, float(scaled_threshold(vth)), sign_mode)


def choose_bias_exp(max_abs_bias: float) -> int:
    """The smallest bias exponent (0..7) whose 13-bit mantissa range covers a bias of magnitude
    ``max_abs_bias`` (in ``v`` units) after rounding; 7 if none does (the mantissa then clips)."""
    m = abs(float(max_abs_bias))
    for e in range(BIAS_EXP_MIN, BIAS_EXP_MAX + 1):
        if np.floor(m / 2.0**e + 0.5) <= BIAS_MANT_MAX:
            return e
    return BIAS_EXP_MAX


def bias_mant_for(bias, bias_exp: int):
    """The 13-bit mantissa nearest to ``bias`` (``v`` units) for a shared ``bias_exp``:
    ``clip(floor(bias / 2**bias_exp + 0.5), -4096, 4095)`` (round half up, identical for NumPy and
    torch). Returns floats (torch / NumPy) holding integers; the represented bias is
    ``scaled_bias(mant, bias_exp)``."""
    x = bias / (2.0**bias_exp)
    if _is_torch(x):
        return (x + 0.5).floor().clamp(BIAS_MANT_MIN, BIAS_MANT_MAX)
    return np.clip(np.floor(np.asarray(x, dtype=np.float64) + 0.5), BIAS_MANT_MIN, BIAS_MANT_MAX)


def weight_exp_for_scale(max_abs_float: float, v_per_unit: float,
                         sign_mode: SignMode = SignMode.MIXED, min_exp: int = WEIGHT_EXP_MIN) -> int:
    """:func:`choose_weight_exp` for a target whose float unit is ``v_per_unit`` ``v`` units
    (a hidden LIF with threshold 1.0 in float units: ``v_per_unit = vth << 6``; a readout: any
    scale). One integer weight unit is then ``2**exp * 64 / v_per_unit`` float units. The result
    is at least ``min_exp`` (a recurrent connection with axonal delays uses ``min_exp = 0``: with
    a negative exponent Lava floors each delay group's sum separately)."""
    lo, hi = weight_range(sign_mode)
    top = min(abs(lo), hi) if lo < 0 < hi else max(abs(lo), hi)  # mixed: 254 (no clipping)
    e = WEIGHT_EXP_MIN
    if max_abs_float > 0:
        unit0 = (2**ACT_SHIFT) / float(v_per_unit)
        e = int(np.ceil(np.log2(max_abs_float / (top * unit0))))
    return int(np.clip(max(e, int(min_exp)), WEIGHT_EXP_MIN, WEIGHT_EXP_MAX))


# --------------------------------------------------------------------------------------------
# CS-GRU cell: crsnn's fixed-point gated neuron (a programmable-neuron model, not a Lava built-in)
# --------------------------------------------------------------------------------------------
# Per neuron and time step, with ``a_r``, ``a_i``, ``a_z`` the summed outputs of the connections
# into the reset gate, the input current and the update gate (each connection's sum already shifted
# by its weight exponent, exactly as for the LIF's ``a``):
#
#   r   = sigmoid_q(gate_preactivation(a_r, bias_r))                       gate, 0..4096
#   i   = sat24(gate_product(r, i) + (a_i << 6) + bias_i)                   current, v units
#   z   = sigmoid_q(gate_preactivation(a_z, bias_z) + diag_term(w_z, i, z_shift))
#   v   = sat24(gate_product(z, v) + gate_product(4096 - z, i) - (vth << 6) * s_prev)
#   s   = v > vth << 6                                                      (strict, as the LIF)
#
# Widths: ``i`` and ``v`` are 24-bit and SATURATE at +-(2**23 - 1) (no wrap-around); gates are
# unsigned 13-bit values 0..4096 (4096 = 1.0: a resolution of 1/4096); gate pre-activations are
# fixed point with 12 fraction bits (4096 = 1.0), computed exactly (at most 38 bits: |a| < 2**31)
# and saturated at +-(2**23 - 1), which changes no gate (every gate is 0 or 4096 beyond
# +-GATE_SATURATION); ``w_z`` is an 8-bit signed mantissa with a per-layer right shift 0..24.
# Every gate x state product is one integer multiply (13 x 24 bits, at most 37 bits) and a
# truncating shift by 12 (toward zero, like Lava's decays), so |gate_product(g, x)| <= |x|.
# The reset is by subtraction one step after the spike (``- vth << 6`` times the previous step's
# spike); there is no separate reset to zero.

#: Fraction bits of gates and gate pre-activations: 4096 means 1.0.
GATE_BITS = 12
GATE_ONE = 2**GATE_BITS
#: |pre-activation| at or above which the gate is exactly 0 or 1 (5.0 in Q12).
GATE_SATURATION = 5 * GATE_ONE
#: The piecewise-linear sigmoid for x >= 0 (Q12 in and out) is the minimum of these lines,
#: ``(x >> shift) + offset``: slopes 1/4, 1/8, 1/32 and the ceiling 1.0 (the PLAN approximation,
#: Amin et al. 1997, written as the minimum of its segments so that it is continuous and
#: monotone); ``sigmoid_q(-x) = 4096 - sigmoid_q(x)``. Largest error against the true sigmoid:
#: 0.019 (tested).
SIGMOID_SEGMENTS = ((2, 2048), (3, 2560), (5, 3456))
#: The per-neuron update-gate weight on the current: 8-bit signed mantissa and a right shift.
DIAG_MIN, DIAG_MAX = -256, 255
DIAG_SHIFT_MIN, DIAG_SHIFT_MAX = 0, 24


def _minimum(a, b):
    if _is_torch(a) or _is_torch(b):
        import torch

        return torch.minimum(torch.as_tensor(a), torch.as_tensor(b))
    return np.minimum(a, b)


def sigmoid_q(x):
    """The fixed-point sigmoid: ``x`` a pre-activation with 12 fraction bits (4096 = 1.0), integer
    array/tensor or a floating tensor holding integers; returns the gate 0..4096 (4096 = 1.0),
    same type. For ``x >= 0``: ``min((x >> 2) + 2048, (x >> 3) + 2560, (x >> 5) + 3456, 4096)``
    (floor shifts, :data:`SIGMOID_SEGMENTS`); for ``x < 0``: ``4096 - sigmoid_q(-x)``. Monotone,
    ``sigmoid_q(0) = 2048``, 0 / 4096 for ``|x| >= 20480`` (5.0)."""
    y = abs(x)
    g = None
    for shift, offset in SIGMOID_SEGMENTS:
        seg = floor_shift(y, -shift) + offset
        g = seg if g is None else _minimum(g, seg)
    g = _clip(g, 0, GATE_ONE)
    return _where(x >= 0, g, GATE_ONE - g)


def gate_product(g, x):
    """A gate times a state: ``trunc(g * x / 4096)`` (``g`` 0..4096, ``x`` 24-bit): one multiply
    (exact in int64 and in float64) and a shift rounding toward zero, so ``|result| <= |x|``."""
    return trunc_shift(g * x, GATE_BITS)


def saturate24(x):
    """Saturate a state to the signed 24-bit range +-(2**23 - 1) (no wrap-around)."""
    return _clip(x, V_MIN, V_MAX)


def gate_preactivation(a, bias):
    """A gate's pre-activation in Q12: ``saturate24((a << 6) + bias)``; ``a`` the summed connection
    outputs (as for the LIF: one weight unit is 64 pre-activation units), ``bias`` already
    ``bias_mant << bias_exp`` (Q12 units)."""
    return saturate24(a * (2**ACT_SHIFT) + bias)


def diag_term(w, i, shift: int):
    """The update gate's per-neuron weight on this step's current: ``(w * i) >> shift`` (floor;
    ``w`` 8-bit signed mantissa, ``i`` 24-bit current, ``shift`` 0..24), in Q12 pre-activation
    units."""
    return floor_shift(w * i, -int(shift))


def csgru_step(i, v, s_prev, a_r, a_i, a_z, bias_r, bias_i, bias_z, w_z, z_shift: int, vth: int):
    """One time step of the fixed-point CS-GRU neuron (see the section comment above), vectorised
    over any shape (e.g. ``(batch, neurons)``).

    ``i``, ``v``: current and voltage before the step (v units, 24-bit); ``s_prev``: the previous
    step's spikes (0/1, same dtype as ``v``); ``a_r``, ``a_i``, ``a_z``: this step's summed
    connection outputs into the three inputs (before the ``<< 6``); ``bias_r``, ``bias_z``: gate
    biases (Q12), ``bias_i``: current bias (v units), all ``bias_mant << bias_exp`` and
    broadcastable; ``w_z``: per-neuron update-gate weights (8-bit), ``z_shift`` their shift;
    ``vth``: threshold mantissa (threshold ``vth << 6``).

    Returns ``(i, v, s, r, z)``: new current, new voltage (not reset: the reset is the
    subtraction at the next step), spikes (bool), the reset and update gates (0..4096). Works on
    int64 NumPy arrays and on float64 torch tensors holding integers (exact: every intermediate is
    below 2**38)."""
    theta = scaled_threshold(vth)
    r = sigmoid_q(gate_preactivation(a_r, bias_r))
    i = saturate24(gate_product(r, i) + a_i * (2**ACT_SHIFT) + bias_i)
    z = sigmoid_q(saturate24(gate_preactivation(a_z, bias_z) + diag_term(w_z, i, z_shift)))
    v = saturate24(gate_product(z, v) + gate_product(GATE_ONE - z, i) - theta * s_prev)
    s = v > theta
    return i, v, s, r, z


def gate_float_per_unit() -> float:
    """The float pre-activation one Q12 unit stands for: 1/4096."""
    return 1.0 / GATE_ONE


def diag_shift_for(max_abs_float: float, v_per_unit: float) -> int:
    """The update gate's ``z_shift`` for float per-neuron weights of magnitude up to
    ``max_abs_float`` (float pre-activation per float unit of current; the current's float unit is
    ``v_per_unit`` v units): the largest shift 0..24 whose 8-bit mantissas
    ``w * 4096 / v_per_unit * 2**shift`` stay within +-255 (0 when every weight is 0)."""
    scale = float(max_abs_float) * GATE_ONE / float(v_per_unit)
    if scale <= 0:
        return DIAG_SHIFT_MIN
    shift = int(np.floor(np.log2(DIAG_MAX / scale)))
    return int(np.clip(shift, DIAG_SHIFT_MIN, DIAG_SHIFT_MAX))


#: What one CS-GRU neuron needs per time step on a programmable (microcode) neuron core, read off
#: :func:`csgru_step`: its state, its inputs and its integer operations.
CSGRU_NEURON_NEEDS = {
    "state": "i 24-bit, v 24-bit, previous spike 1 bit",
    "inputs": "3 summed synaptic inputs per step (current, reset gate, update gate)",
    "parameters": "3 biases (13-bit mantissa, 3-bit exponent), update-gate weight 8-bit, shared shift and threshold",
    "operations": "4 multiplies (13 x 24 bit: r*i, z*v, (1-z)*i; 9 x 24 bit: w_z*i), 2 piecewise-linear "
                  "sigmoids (|x|, 3 shifts, 3 adds, 2 min, 1 negate each), 6 shifts, 8 adds, 5 saturations, "
                  "1 compare",
}


def csgru_hardware_needs() -> str:
    """One line: why a CS-GRU layer needs a programmable neuron on Loihi 2, and what it needs."""
    n = CSGRU_NEURON_NEEDS
    return ("a CS-GRU layer needs a programmable (microcode) neuron model on Loihi 2, which Lava's public "
            f"processes do not provide: per neuron {n['state']}; {n['inputs']}; {n['operations']} per step")
