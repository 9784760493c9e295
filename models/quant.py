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

import math
from dataclasses import dataclass

import torch

from crsnn import bounds
from crsnn import loihi2 as L2


def ste(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Forward ``q``, backward identity with respect to ``x``."""
    return x + (q - x).detach()


def ste_exact(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Forward exactly ``q`` (``q + (x - x) == q`` bit for bit, whatever the magnitudes), backward
    identity with respect to ``x``."""
    return q.detach() + (x - x.detach())


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


def quantize_weights(w: torch.Tensor, v_per_unit: float, min_exp: int = L2.WEIGHT_EXP_MIN,
                     max_exp: int = L2.WEIGHT_EXP_MAX) -> QuantWeights:
    """Float weights (target float units) -> :class:`QuantWeights` on the 8-bit mixed-sign grid,
    the exponent in ``[min_exp, max_exp]`` (weights beyond the range of ``max_exp`` clip)."""
    w = w.to(torch.float64)
    m = float(w.detach().abs().max()) if w.numel() else 0.0
    exp = min(L2.weight_exp_for_scale(m, v_per_unit, L2.SignMode.MIXED, min_exp), int(max_exp))
    x = w * (float(v_per_unit) / (2.0**L2.ACT_SHIFT * 2.0**exp))
    return QuantWeights(weight_grid(x), exp)


def floor_shift_ste(acc: torch.Tensor, exp: int) -> torch.Tensor:
    """Lava's shift of a connection's summed input by its weight exponent
    (:func:`crsnn.loihi2.floor_shift`), straight-through (gradient ``2**exp``)."""
    lin = acc * (2.0**exp)
    if exp >= 0:
        return lin
    return ste(lin, L2.floor_shift(acc.detach(), exp))


class _QuantMatmul(torch.autograd.Function):
    """``a = QuantMatmul(w_int, x, exp)``: a connection's integer input with one step of latency,
    ``a[t] = floor_shift(W x[t - 1], exp)`` (``a[0] = 0``); the forward of
    ``floor_shift_ste(torch.matmul(w_int, shift_time(x)), exp)``, faster.

    ``w_int``: (n, n_in) float64 effective integer weights; ``x``: (T, n_in, B) float64.
    Returns (T, n, B) float64.

    Forward: in float32 when that is exact. If ``x = s * b`` with ``b`` integers (``s = 1`` for
    spikes and graded payloads; ``s = max|x|`` for dropout-scaled spikes, whose values are 0 and
    one constant) and :func:`crsnn.bounds.exact_float32_product` holds for ``W`` and ``b``, the
    float32 product ``W b`` is the exact integer sum, and ``s * (W b)`` in float64 is the exact
    result (``s = 1``) or its correctly rounded value (a dropout-scaled input during training:
    never an integer, and at least as accurate as summing the scaled terms in float64). Otherwise
    one float64 2-D product. Backward (straight-through, the shift counts as ``* 2**exp``): the two
    products autograd computes, in float64, as 2-D products (a batched float64 product is several
    times slower on CPU)."""

    @staticmethod
    def forward(ctx, w_int, x, exp: int):  # noqa: D401
        T, n_in, B = x.shape
        w = w_int.detach()
        n = w.shape[0]
        out = x.new_empty((T, n, B))
        out[:1].zero_()
        if T > 1:
            xd = x.detach()[:-1]
            scale = 1.0
            exact = bounds.holds_integers(xd)
            if not exact:
                scale = bounds.max_abs(xd)
                exact = scale > 0 and math.isfinite(scale) and bounds.holds_integers(xd / scale)
            if exact:
                b = xd.to(torch.float32) if scale == 1.0 else (xd / scale).to(torch.float32)
                exact = bounds.exact_float32_product(w, b)
            if exact:
                out[1:].copy_(torch.matmul(w.to(torch.float32), b))
                if scale != 1.0:
                    out[1:].mul_(scale)
            else:
                xs = xd.permute(1, 0, 2).reshape(n_in, (T - 1) * B)
                out[1:].copy_(torch.mm(w, xs).view(n, T - 1, B).permute(1, 0, 2))
            if exp < 0:
                out[1:].mul_(2.0**exp).floor_()  # L2.floor_shift: exact (a power-of-two scaling)
            elif exp > 0:
                out[1:].mul_(2.0**exp)
        ctx.save_for_backward(w, x.detach())
        ctx.exp = int(exp)
        return out

    @staticmethod
    def backward(ctx, g):
        w, x = ctx.saved_tensors
        T, n_in, B = x.shape
        n = w.shape[0]
        gw = gx = None
        if T < 2:
            return (torch.zeros_like(w) if ctx.needs_input_grad[0] else None,
                    torch.zeros_like(x) if ctx.needs_input_grad[1] else None, None)
        gp = (g[1:] * (2.0**ctx.exp)).permute(1, 0, 2).reshape(n, (T - 1) * B)
        if ctx.needs_input_grad[0]:
            gw = torch.mm(gp, x[:-1].permute(1, 0, 2).reshape(n_in, (T - 1) * B).t())
        if ctx.needs_input_grad[1]:
            gx = torch.zeros_like(x)
            gx[:-1].copy_(torch.mm(w.t(), gp).view(n_in, T - 1, B).permute(1, 0, 2))
        return gw, gx, None


def quant_matmul(w_int: torch.Tensor, x: torch.Tensor, exp: int) -> torch.Tensor:
    """``floor_shift_ste(w_int @ x[t - 1], exp)`` for every step t (zero at t = 0), see
    :class:`_QuantMatmul`: ``w_int`` (n, n_in), ``x`` (T, n_in, B) -> (T, n, B), float64."""
    return _QuantMatmul.apply(w_int, x, int(exp))


@dataclass
class QuantBias:
    """``value`` = ``mant * 2**exp`` in ``v`` units (float64, STE graph); ``mant`` detached."""

    value: torch.Tensor
    mant: torch.Tensor
    exp: int


def quantize_bias(b_v: torch.Tensor, exp: int | None = None) -> QuantBias:
    """A bias in ``v`` units -> 13-bit mantissa and a shared exponent 0..7 (the smallest that
    covers the largest bias, or ``exp`` when given), straight-through."""
    b_v = b_v.to(torch.float64)
    m = float(b_v.detach().abs().max()) if b_v.numel() else 0.0
    exp = L2.choose_bias_exp(m) if exp is None else int(exp)
    mant = L2.bias_mant_for(b_v.detach(), exp)
    value = ste(b_v, L2.scaled_bias(mant, exp))
    return QuantBias(value, mant, exp)


def quantize_leak(beta: torch.Tensor) -> tuple[torch.Tensor, int]:
    """A leak factor -> ``(beta_q (STE), dv)`` with ``beta_q = (4096 - dv) / 4096``."""
    dv = L2.dv_from_leak(float(beta.detach()))
    q = torch.tensor(L2.leak_from_dv(dv), dtype=torch.float64, device=beta.device)
    return ste(beta.to(torch.float64), q), dv


def quantize_diag(w: torch.Tensor, v_per_unit: float) -> tuple[torch.Tensor, int]:
    """A CS-GRU layer's per-neuron update-gate weights (float gate pre-activation per float unit of
    current, whose float unit is ``v_per_unit`` v units) -> ``(mantissas, z_shift)``: mantissas
    ``round(w * 4096 / v_per_unit * 2**z_shift)`` clipped to the 8-bit range (float64 holding
    integers, straight-through), the shift from :func:`crsnn.loihi2.diag_shift_for`."""
    w = w.to(torch.float64)
    m = float(w.detach().abs().max()) if w.numel() else 0.0
    shift = L2.diag_shift_for(m, v_per_unit)
    x = w * (L2.GATE_ONE / float(v_per_unit) * 2.0**shift)
    return ste_exact(x, torch.round(x.detach()).clamp(L2.DIAG_MIN, L2.DIAG_MAX)), shift
