"""Straight-through quantizers onto the Loihi 2 grids of :mod:`crsnn.loihi2`.

Every quantizer returns values that lie exactly on the integer grid (float64 tensors holding
integers) in the forward pass, and passes gradients straight through (identity) in the backward
pass. The grids and limits come from :mod:`crsnn.loihi2`; nothing here re-defines them.

Units. A float quantity ``x`` of a population whose float unit is ``v_per_unit`` integer ``v``
units (a hidden LIF with float threshold 1.0: ``v_per_unit = vth << 6``; the readout: its
``readout_scale``) maps to:

- a synaptic weight: effective integer ``w_int = x * v_per_unit / (64 * 2**weight_exp)`` (even
  values in [-256, 254] for an 8-bit mixed-sign matrix), the exponent chosen from the
  largest ``|x|`` of the connection (:func:`crsnn.loihi2.weight_exp_for_scale`);
- a bias: ``x * v_per_unit`` (``v`` units, not shifted) = ``bias_mant << bias_exp``;
- a leak ``beta``: ``dv = round(4096 (1 - beta))``, applied as ``trunc(v (4096 - dv) / 4096)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from crsnn import loihi2 as L2


def ste(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Forward ``q``, backward identity with respect to ``x``."""
    return x + (q - x).detach()


def weight_grid(x: torch.Tensor, sign_mode: L2.SignMode = L2.SignMode.MIXED,
                num_weight_bits: int = L2.WEIGHT_BITS) -> torch.Tensor:
    """Round ``x`` (in effective-integer units) to the nearest representable effective weight
    (:func:`crsnn.loihi2.weight_step`, :func:`crsnn.loihi2.weight_range`), straight-through."""
    step = L2.weight_step(sign_mode, num_weight_bits)
    lo, hi = L2.weight_range(sign_mode, num_weight_bits)
    q = (torch.round(x.detach() / step) * step).clamp(lo, hi)
    return ste(x, q)


@dataclass
class QuantWeights:
    """A connection's quantized weights: ``w_int`` effective integers (float64, STE graph),
    ``exp`` the weight exponent; the float weight represented is
    ``w_int * 2**exp * 64 / v_per_unit``."""

    w_int: torch.Tensor
    exp: int


def quantize_weights(w: torch.Tensor, v_per_unit: float, min_exp: int = L2.WEIGHT_EXP_MIN) -> QuantWeights:
    """Float weights (target float units) -> :class:`QuantWeights` on the 8-bit mixed-sign grid."""
    w = w.to(torch.float64)
    m = float(w.detach().abs().max()) if w.numel() else 0.0
    exp = L2.weight_exp_for_scale(m, v_per_unit, L2.SignMode.MIXED, min_exp)
    x = w * (float(v_per_unit) / (2.0**L2.ACT_SHIFT * 2.0**exp))
    return QuantWeights(weight_grid(x), exp)


def floor_shift_ste(acc: torch.Tensor, exp: int) -> torch.Tensor:
    """Lava's shift of a connection's summed input by its weight exponent
    (:func:`crsnn.loihi2.floor_shift`), straight-through (gradient ``2**exp``)."""
    lin = acc * (2.0**exp)
    if exp >= 0:
        return lin
    return ste(lin, L2.floor_shift(acc.detach(), exp))


@dataclass
class QuantBias:
    """``value`` = ``mant * 2**exp`` in ``v`` units (float64, STE graph); ``mant`` detached."""

    value: torch.Tensor
    mant: torch.Tensor
    exp: int


def quantize_bias(b_v: torch.Tensor) -> QuantBias:
    """A bias in ``v`` units -> 13-bit mantissa and a shared exponent 0..7, straight-through."""
    b_v = b_v.to(torch.float64)
    m = float(b_v.detach().abs().max()) if b_v.numel() else 0.0
    exp = L2.choose_bias_exp(m)
    mant = L2.bias_mant_for(b_v.detach(), exp)
    value = ste(b_v, L2.scaled_bias(mant, exp))
    return QuantBias(value, mant, exp)


def quantize_leak(beta: torch.Tensor) -> tuple[torch.Tensor, int]:
    """A leak factor -> ``(beta_q (STE), dv)`` with ``beta_q = (4096 - dv) / 4096``."""
    dv = L2.dv_from_leak(float(beta.detach()))
    q = torch.tensor(L2.leak_from_dv(dv), dtype=torch.float64, device=beta.device)
    return ste(beta.to(torch.float64), q), dv
