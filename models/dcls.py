"""Learnable per-synapse delays on the feedforward connection of a hidden layer (DCLS-style:
"Learning Delays in SNNs using Dilated Convolutions with Learnable Spacings", Hammouamri et al.,
ICLR 2024), in float training and in quantization-aware training.

A synapse from input j to neuron i has a weight ``w_ij`` and a delay ``d_ij`` (time steps,
0..``max_delay``): neuron i receives ``sum_j w_ij x_j[t - 1 - d_ij]`` at step t (the one step of
synaptic latency every crsnn connection has, plus the delay; Lava's ``DelayDense``).

- **Float training**: the delay is the position of a triangle of half-width ``s = 1 + sigma`` on
  the taps 0..``max_delay`` of a 1-D kernel over time, ``K[i, j, k] = w_ij * tri(k - d_ij) /
  sum_k tri(k - d_ij)`` with ``tri(u) = max(0, s - |u|)`` (unit mass inside the kernel), so both
  the weight and the position get gradients. ``sigma`` is the network's delay spread, annealed per
  epoch by the same schedule as the recurrent axonal delays
  (:func:`crsnn.models.network.sigma_at`); at ``sigma = 0`` the triangle is the linear
  interpolation between the two neighbouring integer delays. The kernel ``(n, n_in, max_delay +
  1)`` is applied as one causal ``conv1d`` over time on ``(batch, n_in, T)``: nothing of size
  batch x n x n_in x delays is ever built.
- **QAT / integer**: delays are ``round(d)`` clamped to 0..``max_delay``, weights on the Loihi grid
  (:func:`crsnn.models.quant.quantize_weights`); the input is one matrix product per distinct
  delay value on the input shifted by that many steps, and each group's sum is shifted by the
  weight exponent on its own, exactly Lava's ``DelayDense`` (and so
  :func:`crsnn.sim.integer_sim.feedforward_input`). The delay gradient is a straight-through
  estimate like the recurrent delays': the central difference of the loss with respect to the
  arrival time, ``dL/dd_ij = w_ij * sum_t g_i[t] (x_j[t - 2 - d] - x_j[t - d]) / 2``, computed from
  one input/gradient cross-correlation per lag.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from crsnn import bounds
from crsnn import loihi2 as L2

from .layers import HiddenLayer, init_delays

def integer_synapse_delays(delays: torch.Tensor, max_delay: int) -> torch.Tensor:
    """The deployed per-synapse delays: ``round(d)`` clamped to 0..``max_delay`` (int64)."""
    return torch.round(delays.detach()).clamp(L2.SYNAPSE_DELAY_MIN, int(max_delay)).long()


def delay_kernel(weight: torch.Tensor, delays: torch.Tensor, sigma: float, max_delay: int) -> torch.Tensor:
    """The float DCLS kernel ``(n, n_in, max_delay + 1)``: tap k holds the part of ``w_ij`` that
    arrives ``1 + k`` steps after the spike (see the module docstring). ``weight``, ``delays``:
    (n, n_in); ``sigma`` >= 0 (steps)."""
    s = 1.0 + float(sigma)
    d = delays.clamp(L2.SYNAPSE_DELAY_MIN, int(max_delay)).to(weight.dtype)
    taps = torch.arange(int(max_delay) + 1, dtype=weight.dtype, device=weight.device)
    tri = torch.clamp(s - (taps - d[..., None]).abs(), min=0.0)
    tri = tri / tri.sum(-1, keepdim=True).clamp_min(1e-12)
    return weight[..., None] * tri


def delayed_conv(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """``y[t, i] = sum_j sum_k K[i, j, k] x[t - 1 - k, j]`` (zero before the run) as one causal
    ``conv1d``. ``x``: (T, n_in, B); ``kernel``: (n, n_in, L). Returns (T, n, B)."""
    T = x.shape[0]
    L = kernel.shape[-1]
    xb = F.pad(x.permute(2, 1, 0), (L, 0))  # (B, n_in, L + T): x[t] at column L + t
    y = F.conv1d(xb, kernel.flip(-1).to(xb.dtype))[..., :T]  # column t: sum_k K[k] x[t - 1 - k]
    return y.permute(2, 1, 0)


class _DelayedMatmul(torch.autograd.Function):
    """``a = DelayedMatmul(w_int, delays, x, d_int, exp)``: the integer input of a connection with
    per-synapse delays, ``a[t] = sum_d shift(W_d @ x[t - 1 - d], exp)`` (each delay group ``W_d``
    shifted on its own, like Lava). ``w_int``: (n, n_in) float64 effective integer weights;
    ``delays``: the float delay parameter (n, n_in) (only its gradient is used); ``x``: (T, n_in,
    B) float64 integers; ``d_int``: (n, n_in) int64 delays. Returns (T, n, B) float64.

    Gradients (straight-through, ``shift`` counts as ``* 2**exp``): weights and input exactly for
    the integer delays; delays by the central difference of the arrival time."""

    @staticmethod
    def forward(ctx, w_int, delays, x, d_int, exp: int):  # noqa: D401
        T, n_in, B = x.shape
        n = w_int.shape[0]
        xp = x.detach().permute(1, 0, 2).contiguous()  # (n_in, T, B)
        w = w_int.detach()
        # float32 only where exact: integer weights and inputs, partial sums below 2**24 (not for
        # dropout-scaled inputs, which are not integers)
        dtype = torch.float32 if bounds.exact_float32_product(w, xp) else torch.float64
        out = x.new_zeros((n, T, B))
        values = torch.unique(d_int).tolist()
        for d in values:
            if 1 + d >= T:
                continue
            wd = torch.where(d_int == d, w, torch.zeros_like(w)).to(dtype)
            acc = torch.mm(wd, xp[:, : T - 1 - d].reshape(n_in, -1).to(dtype)).to(x.dtype)
            acc = L2.floor_shift(acc, exp) if exp < 0 else acc * (2.0**exp)
            out[:, 1 + d:] += acc.view(n, T - 1 - d, B)
        ctx.save_for_backward(w, d_int, xp)
        ctx.exp, ctx.values = int(exp), values
        return out.permute(1, 0, 2).contiguous()

    @staticmethod
    def backward(ctx, g):
        w, d_int, xp = ctx.saved_tensors
        n_in, T, B = xp.shape
        n = w.shape[0]
        gp = g.permute(1, 0, 2).contiguous() * (2.0**ctx.exp)  # (n, T, B)
        gw = gd = gx = None
        if ctx.needs_input_grad[2]:
            gxp = torch.zeros_like(xp)
            for d in ctx.values:
                if 1 + d >= T:
                    continue
                wd = torch.where(d_int == d, w, torch.zeros_like(w))
                gxp[:, : T - 1 - d] += torch.mm(wd.t(), gp[:, 1 + d:].reshape(n, -1)).view(n_in, T - 1 - d, B)
            gx = gxp.permute(1, 0, 2)
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
            # C[lag][i, j] = sum_{t, b} g_i[t] x_j[t - lag] for the lags d, d + 1, d + 2 in use
            lags = sorted({d + k for d in ctx.values for k in (0, 1, 2)})
            C = gp.new_zeros((max(lags) + 1, n, n_in))
            for lag in lags:
                if lag < T:
                    C[lag] = torch.mm(gp[:, lag:].reshape(n, -1), xp[:, : T - lag].reshape(n_in, -1).t())
            idx = d_int[None]
            if ctx.needs_input_grad[0]:
                gw = C.gather(0, idx + 1)[0]
            if ctx.needs_input_grad[1]:
                gd = w * (C.gather(0, idx + 2)[0] - C.gather(0, idx)[0]) * 0.5
        return gw, gd, gx, None, None


def delayed_matmul_qat(w_int: torch.Tensor, delays: torch.Tensor, x: torch.Tensor, d_int: torch.Tensor,
                       exp: int) -> torch.Tensor:
    """Functional entry point of :class:`_DelayedMatmul` (see there): (T, n, B) float64."""
    return _DelayedMatmul.apply(w_int, delays, x, d_int, int(exp))


def init_synapse_delays(n: int, n_in: int, spec: tuple | list, max_delay: int) -> torch.Tensor:
    """Initial float synaptic delays (n, n_in) in 0..``max_delay`` steps: ``spec`` as
    :func:`crsnn.models.layers.init_delays`, a uniform range capped at ``max_delay`` (a range
    beyond it would pile delays up at the cap)."""
    spec = list(spec)
    if str(spec[0]) == "uniform":
        hi = min(float(spec[2]), float(max_delay))
        spec = ["uniform", min(float(spec[1]), hi), hi]
    d = init_delays(n * n_in, spec).view(n, n_in)
    return d.clamp(L2.SYNAPSE_DELAY_MIN, float(max_delay))


class DCLSHiddenLayer(HiddenLayer):
    """A :class:`~crsnn.models.layers.HiddenLayer` whose feedforward connection has one learnable
    delay per synapse (``ff_delays``, (n, n_in) float steps in 0..``max_delay``); BatchNorm, the
    LIF neurons and the optional recurrence are the base class's. See the module docstring."""

    def __init__(self, n_in: int, n: int, recurrence: str | None = None, kernel: int = 3,
                 batchnorm: bool = True, beta: float = 0.5, learn_beta: bool = False,
                 delay_init: tuple = ("uniform", 0.0, 10.0), vth: int = 1024, max_delay: int = 25) -> None:
        super().__init__(n_in, n, recurrence, kernel, batchnorm, beta, learn_beta, delay_init, vth)
        if not L2.SYNAPSE_DELAY_MIN <= int(max_delay) <= L2.SYNAPSE_DELAY_MAX:
            raise ValueError(f"max_delay must be in {L2.SYNAPSE_DELAY_MIN}..{L2.SYNAPSE_DELAY_MAX} steps "
                             f"(Loihi 2's synaptic delay range), got {max_delay}")
        self.max_delay = int(max_delay)
        self.ff_delays = torch.nn.Parameter(init_synapse_delays(n, n_in, delay_init, self.max_delay))
        # A synapse's weight is spread over ~(1 + sigma) taps: keep the initial drive of a plain
        # layer (uniform in +-1/sqrt(n_in)), as DCLS does.
        bound = 1.0 / math.sqrt(n_in)
        with torch.no_grad():
            self.weight.uniform_(-bound, bound)

    def clamp_delays_(self) -> None:
        super().clamp_delays_()
        with torch.no_grad():
            self.ff_delays.clamp_(L2.SYNAPSE_DELAY_MIN, self.max_delay)

    def feedforward_float(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        return delayed_conv(x, delay_kernel(self.weight, self.ff_delays, sigma, self.max_delay))

    def quantized(self) -> dict:
        """:meth:`HiddenLayer.quantized` plus ``ff_delays``: the integer synaptic delays (int64
        (n, n_in), 0..``max_delay``)."""
        out = super().quantized()
        out["ff_delays"] = integer_synapse_delays(self.ff_delays, self.max_delay)
        return out

    def feedforward_qat(self, q: dict, x: torch.Tensor) -> torch.Tensor:
        ff = q["ff"]
        return delayed_matmul_qat(ff.w_int, self.ff_delays, x, q["ff_delays"].to(x.device), ff.exp)
