"""Exactness bounds of the integer arithmetic on floating-point tensors: when a float32 product is
exact, how large a connection's shifted sum can get, and which of the LIF's wrap-arounds can occur.

Shared by the fast integer simulator (:mod:`crsnn.sim.torch_sim`, bounds per network, from the
integer weights) and quantization-aware training (:mod:`crsnn.models.layers`,
:mod:`crsnn.models.recurrent`, :mod:`crsnn.models.dcls`, bounds per forward pass, from the tensors
at hand). The fixed-point rules themselves are :mod:`crsnn.loihi2`'s (:func:`crsnn.loihi2.lif_wraps`
proves which wraps are the identity); this module only says when a faster floating-point route
computes the same integers.

Why float32 can be exact. A float32 holds every integer of magnitude up to 2**24 exactly. In a
product ``W @ x`` of integer weights and integer inputs, every partial sum of row i, in any
summation order (BLAS blocks and reorders freely), is bounded by ``sum_j |w_ij| * max |x|``; if
that bound is below 2**24, every intermediate result is an integer float32 holds, so no rounding
ever happens and the product equals the exact integer result.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: Partial sums of a float32 product are exact while their magnitude stays below this.
FLOAT32_EXACT = 2**24
#: Likewise for float64.
FLOAT64_EXACT = 2**53


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def sum_abs_bound(effective: Any, max_input: float = 1) -> float:
    """``max_i sum_j |w_ij| * max_input``: a bound of every partial sum of row i's product with an
    input in ``[-max_input, max_input]``, in any order. ``effective``: (n_out, n_in) integers
    (NumPy array, or a torch tensor holding integers); a 1-D array counts as one row (a
    convolution kernel: each output sums ``|K[m]|`` times an input). Returns an ``int`` for NumPy
    input and integer ``max_input``, else a float."""
    if _is_torch(effective):
        import torch

        w = effective.detach()
        if w.numel() == 0:
            return 0.0
        rows = w.abs().sum(-1) if w.dim() > 0 else w.abs()
        return float(torch.max(rows)) * float(max_input)
    e = np.abs(np.asarray(effective, dtype=np.int64))
    if e.size == 0:
        return 0
    rows = e.sum(axis=-1)
    return int(rows.max()) * max_input


def exact_float32(effective: Any, max_input: float = 1, scale_exp: int = 0) -> bool:
    """Whether a float32 product of ``effective * 2**scale_exp`` with integer inputs in
    ``[-max_input, max_input]`` is exact: every partial sum is a multiple of
    ``2**min(scale_exp, 0)`` below ``2**24 * 2**min(scale_exp, 0)``, i.e.
    ``sum_abs_bound * 2**max(scale_exp, 0) < 2**24``."""
    return sum_abs_bound(effective, max_input) * 2 ** max(int(scale_exp), 0) < FLOAT32_EXACT


def shifted_bound(max_abs_sum: int, weight_exp: int, groups: int = 1) -> int:
    """Bound of ``|floor_shift(sum)|`` summed over ``groups`` separately shifted delay groups, for
    ``|sum| <= max_abs_sum``: ``max_abs_sum << exp``, or (negative exponent) at most one more
    than ``max_abs_sum / 2**-exp`` per group (the floor of a negative sum)."""
    if weight_exp >= 0:
        return int(max_abs_sum) * 2**weight_exp
    return -(-int(max_abs_sum) // 2 ** (-weight_exp)) + int(groups)


def max_abs(x: Any) -> float:
    """``max |x|`` of a torch tensor (0 for an empty one), in one pass (``aminmax``)."""
    import torch

    if x.numel() == 0:
        return 0.0
    lo, hi = torch.aminmax(x.detach())
    return max(-float(lo), float(hi))


def holds_integers(x: Any) -> bool:
    """Whether every element of a floating torch tensor is an integer (NaN and infinities are not)."""
    import torch

    x = x.detach()
    return bool(torch.equal(torch.round(x), x)) if x.is_floating_point() else True


def exact_float32_product(w: Any, x: Any) -> bool:
    """Whether ``w @ x`` (torch tensors, ``w`` (n, k), ``x`` (..., k, m)) computed in float32 equals
    the exact result: both hold integers and ``max_i sum_j |w_ij| * max |x| < 2**24`` (see the
    module docstring). Costs one pass over ``x`` and two over ``w``; inputs that are not integers
    (dropout-scaled spikes during training) are never claimed exact."""
    bound = sum_abs_bound(w, max_abs(x))
    return bound < FLOAT32_EXACT and holds_integers(w) and holds_integers(x)


def lif_wraps_for(max_abs_a: float, du: int, max_abs_bias: float):
    """:func:`crsnn.loihi2.lif_wraps` for real-valued bounds (rounded up to integers; a bound that
    is not finite proves nothing: every wrap is kept). ``max_abs_a``: bound of ``|a|`` (before
    the ``<< 6``) at every step; ``max_abs_bias`` in ``v`` units. Returns a
    :class:`crsnn.loihi2.LifWraps`."""
    from crsnn import loihi2 as L2

    if not (math.isfinite(max_abs_a) and math.isfinite(max_abs_bias)):
        return L2.LifWraps()
    return L2.lif_wraps(math.ceil(max_abs_a), du, math.ceil(max_abs_bias))


def voltage_saturates(max_abs_drive: float, theta: float, dv: int, steps: int, spiking: bool = True) -> bool:
    """Whether the clip of ``v`` to ``[V_MIN, V_MAX]`` (:func:`crsnn.loihi2.lif_integrate`) can
    change a value within ``steps`` steps from ``v = 0``, when ``|u + bias| <= max_abs_drive``
    every step, the voltage decays by ``dv`` and (``spiking``) resets to 0 above ``theta``.
    ``False`` is a proof that the clip is the identity.

    With ``c = (4096 - dv) / 4096`` and ``|trunc(c v)| <= c |v|``: below, ``v_t >= -D (1 + c + ...
    + c**t) >= -D min(t + 1, 1 / (1 - c))`` by induction (a reset only raises v to 0); above, a
    spiking neuron carries at most ``theta`` into a step (it resets when it exceeds it), so
    ``v_t <= theta + D``, and a non-spiking one obeys the same bound as below."""
    from crsnn import loihi2 as L2

    if not (math.isfinite(max_abs_drive) and math.isfinite(theta)):
        return True
    d = float(max_abs_drive)
    geometric = d * (min(float(steps), L2.DECAY_UNITY / dv) if dv > 0 else float(steps))
    upper = max(float(theta), 0.0) + d if spiking else geometric
    return max(upper, geometric) > L2.V_MAX
