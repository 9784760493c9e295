"""The CS-GRU hidden layer (convolutional spiking GRU cell) with learnable axonal delays, in float
training and in quantization-aware training.

Cell, per time step (``*`` a 1-D convolution over the neuron axis with one shared kernel, "same"
padding, as the CRSNN's recurrence; ``z_t`` here the delayed spikes arriving now, each neuron's
spike reaching the others ``1 + d_j`` steps after it was emitted, ``d_j`` its learnable axonal
delay, spread and annealed exactly like the CRSNN's (:func:`crsnn.models.recurrent.spread_taps`,
:func:`crsnn.models.recurrent.integer_taps`))::

    r_t = sigmoid(W_r x_{t-1} + b_r + U_r * z_t)                 reset gate
    i_t = r_t i_{t-1} + BN(W_i x_{t-1}) + U_i * z_t               input current
    u_t = sigmoid(w_z . i_t + b_z + U_z * z_t)                    update gate
    v_t = u_t v_{t-1} + (1 - u_t) i_t - V_th s_{t-1}              voltage, reset by subtraction
    s_t = H(v_t - V_th)

``W_z`` is a **per-neuron** weight ``w_z`` (a diagonal map of the current), not a convolution: on
Loihi 2 every message between neurons takes one step, so a conv of ``i_t`` would read the
neighbours' current of the previous step; the per-neuron weight is exact and local. The
feedforward input ``x_{t-1}`` is the source's output one step earlier (every crsnn connection
adds one step, Lava's latency). Float units: ``V_th = 1``; the gates' pre-activations are plain
floats.

Integer form (QAT forward == integer simulator == Lava, bit for bit): exactly
:func:`crsnn.loihi2.csgru_step` with the weights and biases on their Loihi grids
(:mod:`crsnn.models.quant`): ``W_i``, ``U_i`` and the current's bias in the layer's ``v`` units
(one float unit = ``vth << 6``), ``W_r``, ``U_r``, ``U_z`` and the gate biases in Q12 gate units
(one float unit = 4096), ``w_z`` an 8-bit mantissa with a per-layer shift
(:func:`crsnn.loihi2.diag_shift_for`), recurrent weight exponents >= 0 (as the CRSNN's). Gradients
are straight-through: the fixed-point sigmoid passes the true sigmoid's derivative, each truncated
product the exact product's, the spike its surrogate (the subtraction reset is detached).
Recurrent dropout is not applied to CS-GRU layers.

Implementation: a Python loop over time with autograd; the delayed spikes wait in a ring of the
next ``L`` steps' arrivals, ``(L, N, B)``, updated out of place each step (a dense buffer: simple
and differentiable, not the fastest form; see the notes on speed in docs/training.md).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from crsnn import loihi2 as L2
from crsnn.models.integer import Connection, GateSet, Layer, LIFParams, Recurrence

from .layers import HiddenLayer, quant_limits, shift_time, to_numpy_int
from .quant import QuantWeights, quant_matmul, quantize_bias, quantize_diag, quantize_weights
from .quant import ste_exact as ste
from .recurrent import integer_delays
from .surrogate import Surrogate

GATE_ONE = float(L2.GATE_ONE)


class _Spike(torch.autograd.Function):
    """``s = (v > theta)`` with ``ds/dv = surrogate((v - theta) / theta) / theta``."""

    @staticmethod
    def forward(ctx, v, theta: float, surrogate: Surrogate):  # noqa: D401
        ctx.save_for_backward(v)
        ctx.theta, ctx.surrogate = theta, surrogate
        return (v > theta).to(v.dtype)

    @staticmethod
    def backward(ctx, g):
        (v,) = ctx.saved_tensors
        return g * ctx.surrogate.grad((v - ctx.theta) / ctx.theta) / ctx.theta, None, None


def conv_neurons(z: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """``out[g, i] = sum_m K[g, m] z[i + m - (k - 1)//2]`` (zero outside; PyTorch's conv1d
    convention, "same" padding): ``z`` (N, B), ``kernels`` (G, k) -> (G, N, B), out of place (so
    autograd reaches the kernels)."""
    n = z.shape[0]
    k = kernels.shape[1]
    c = (k - 1) // 2
    zp = torch.cat([z.new_zeros((c, z.shape[1])), z, z.new_zeros((k - 1 - c, z.shape[1]))])
    out = None
    for m in range(k):
        term = kernels[:, m, None, None] * zp[None, m: m + n]
        out = term if out is None else out + term
    return out


def delay_matrix(delays: torch.Tensor, sigma: float, integer: bool, dtype: torch.dtype) -> torch.Tensor:
    """``M`` (L, N): the weight with which a spike of neuron j emitted at step t arrives at step
    ``t + 1 + m``. Float: DelRec's triangle of half-width ``1 + sigma`` and unit area centred on
    latency ``1 + d_j`` (differentiable in ``d``; :func:`crsnn.models.recurrent.spread_taps`).
    Integer: one tap at latency ``1 + round(d_j)`` with the CRSNN's straight-through delay
    gradient, the central difference of the arrivals (:func:`crsnn.models.recurrent.integer_taps`);
    the forward values are exactly 0 and 1."""
    if integer:
        d_int = integer_delays(delays)
        L = int(d_int.max()) + 3 if d_int.numel() else 3
        lat = torch.arange(1, L + 1, device=delays.device)[:, None]
        k = 1 + d_int[None, :]
        one = (lat == k).to(dtype)
        grad = 0.5 * ((lat == k + 1).to(dtype) - (lat == torch.clamp(k - 1, min=1)).to(dtype))
        dd = delays.to(dtype) - delays.detach().to(dtype)  # exactly 0: forward unchanged
        return one + dd[None, :] * grad
    d = delays.to(dtype).clamp(L2.DELAY_MIN, L2.DELAY_MAX)
    s = 1.0 + float(sigma)
    L = int(math.ceil(1.0 + float(d.detach().max()) + s)) + 1 if d.numel() else 2
    lat = torch.arange(1, L + 1, device=delays.device, dtype=dtype)[:, None]
    return torch.clamp(s - (lat - (1.0 + d[None, :])).abs(), min=0.0) / s**2


class CSGRUHiddenLayer(HiddenLayer):
    """``Linear -> [BatchNorm] -> CS-GRU cell`` (see the module docstring). Parameters beyond
    :class:`~crsnn.models.layers.HiddenLayer`'s (``weight`` = ``W_i``, BatchNorm / ``bias``,
    ``rec_kernel`` = ``U_i``, ``delays``): ``gate_weight`` (n, n_in) = ``W_r``, ``gate_bias_r``,
    ``gate_bias_z`` (n,), ``rec_kernel_r``, ``rec_kernel_z`` (k,) = ``U_r``, ``U_z``, and
    ``gate_diag`` (n,) = ``w_z``. Initial gates: reset bias 0 (r = 1/2), update bias
    ``logit(beta)`` (the update gate starts at the CRSNN's leak ``beta = 1 - 1/tau``), ``w_z = 0``."""

    def __init__(self, n_in: int, n: int, recurrence: str | None = "csgru", kernel: int = 3,
                 batchnorm: bool = True, beta: float = 0.5, learn_beta: bool = False,
                 delay_init: tuple = ("uniform", 0.0, 10.0), vth: int = 1024) -> None:
        super().__init__(n_in, n, "conv", kernel, batchnorm, beta, False, delay_init, vth)
        self.recurrence = "csgru"
        bound = 1.0 / math.sqrt(n_in)
        kb = 1.0 / math.sqrt(self.kernel_size)
        self.gate_weight = nn.Parameter(torch.empty(n, n_in).uniform_(-bound, bound))
        self.gate_bias_r = nn.Parameter(torch.zeros(n))
        b = min(max(float(beta), 1e-3), 1 - 1e-3)
        self.gate_bias_z = nn.Parameter(torch.full((n,), math.log(b / (1 - b))))
        self.rec_kernel_r = nn.Parameter(torch.empty(self.kernel_size).uniform_(-kb, kb))
        self.rec_kernel_z = nn.Parameter(torch.empty(self.kernel_size).uniform_(-kb, kb))
        self.gate_diag = nn.Parameter(torch.zeros(n))

    def rec_param(self) -> torch.Tensor:
        return self.rec_kernel

    # ---------------------------------------------------------------- float
    def forward_float(self, x: torch.Tensor, sigma: float, surrogate: Surrogate,
                      rec_dropout: float = 0.0) -> torch.Tensor:
        """x: (T, n_in, B) float -> spikes (T, n, B) float32."""
        h = self.feedforward_float(x, sigma)
        a_i, bias_i = self.batchnorm_float(h)
        a_i = a_i + bias_i[:, None]
        a_r = torch.matmul(self.gate_weight, shift_time(x)) + self.gate_bias_r[:, None]
        kernels = torch.stack([self.rec_kernel, self.rec_kernel_r, self.rec_kernel_z])
        M = delay_matrix(self.delays, sigma, False, a_i.dtype)
        T, N, B = a_i.shape
        i = v = s_prev = a_i.new_zeros((N, B))
        ring = a_i.new_zeros((M.shape[0], N, B))
        out = []
        for t in range(T):
            rec = conv_neurons(ring[0], kernels)
            r = torch.sigmoid(a_r[t] + rec[1])
            i = r * i + a_i[t] + rec[0]
            u = torch.sigmoid(self.gate_diag[:, None] * i + self.gate_bias_z[:, None] + rec[2])
            v = u * v + (1.0 - u) * i - s_prev.detach()
            s = _Spike.apply(v, 1.0, surrogate)
            out.append(s)
            s_prev = s
            ring = torch.cat([ring[1:], ring.new_zeros((1, N, B))]) + M[:, :, None] * s[None]
        return torch.stack(out)

    # ---------------------------------------------------------------- integer
    def quantized(self) -> dict:
        """:meth:`HiddenLayer.quantized` (``ff`` = ``W_i``, ``bias`` = the current's bias, ``rec`` =
        ``U_i``, ``delays``) plus the gates: ``r_ff`` (``W_r``, Q12 target), ``r_rec``, ``z_rec``
        (exponent >= 0), ``bias_r``, ``bias_z`` (Q12) and ``diag`` (``w_z``: mantissas and shift)."""
        q = super().quantized()
        lim = quant_limits(self.target)
        q["r_ff"] = quantize_weights(self.gate_weight, GATE_ONE, lim["min_exp"], lim["max_exp"])
        q["r_rec"] = quantize_weights(self.rec_kernel_r, GATE_ONE, min_exp=0)
        q["z_rec"] = quantize_weights(self.rec_kernel_z, GATE_ONE, min_exp=0)
        q["bias_r"] = quantize_bias(self.gate_bias_r.to(torch.float64) * GATE_ONE)
        q["bias_z"] = quantize_bias(self.gate_bias_z.to(torch.float64) * GATE_ONE)
        q["diag"] = quantize_diag(self.gate_diag, float(self.v_per_unit))
        return q

    def forward_qat(self, x: torch.Tensor, surrogate: Surrogate, rec_dropout: float = 0.0,
                    q: dict | None = None) -> torch.Tensor:
        """x: (T, n_in, B) float64 integers -> spikes (T, n, B) float64: the integer cell
        (:func:`crsnn.loihi2.csgru_step`) with straight-through gradients."""
        q = q or self.quantized()
        a_i = self.feedforward_qat(q, x)
        r_ff: QuantWeights = q["r_ff"]
        a_r = quant_matmul(r_ff.w_int, x, r_ff.exp)
        kernels = torch.stack([w.w_int * (2.0**w.exp) for w in (q["rec"], q["r_rec"], q["z_rec"])])
        M = delay_matrix(self.delays, 0.0, True, a_i.dtype)
        bias_i, bias_r, bias_z = (q[k].value[:, None] for k in ("bias", "bias_r", "bias_z"))
        w_z, shift = q["diag"]
        w_z = w_z[:, None]
        theta = float(self.v_per_unit)
        act = float(2**L2.ACT_SHIFT)
        T, N, B = a_i.shape
        i = v = s_prev = a_i.new_zeros((N, B))
        ring = a_i.new_zeros((M.shape[0], N, B))
        out = []
        for t in range(T):
            rec = conv_neurons(ring[0], kernels)
            r = _gate(_sat(act * (a_r[t] + rec[1]) + bias_r))
            i = _sat(_product(r, i) + act * (a_i[t] + rec[0]) + bias_i)
            u = _gate(_sat(_sat(act * rec[2] + bias_z) + _diag(w_z, i, shift)))
            v = _sat(_product(u, v) + _product(GATE_ONE - u, i) - theta * s_prev.detach())
            s = _Spike.apply(v, theta, surrogate)
            out.append(s)
            s_prev = s
            ring = torch.cat([ring[1:], ring.new_zeros((1, N, B))]) + M[:, :, None] * s[None]
        return torch.stack(out)

    def integer_layer(self) -> Layer:
        """This layer as the integer description (the integers :meth:`forward_qat` uses)."""
        with torch.no_grad():
            q = self.quantized()
            delays = q["delays"].cpu().numpy()

            def rec(w: QuantWeights) -> Recurrence:
                return Recurrence(delays=delays, kernel=to_numpy_int(w.w_int), weight_exp=w.exp,
                                  num_weight_bits=L2.WEIGHT_BITS, sign_mode=L2.SignMode.MIXED)

            ff = Connection(to_numpy_int(q["ff"].w_int), q["ff"].exp, L2.WEIGHT_BITS, L2.SignMode.MIXED)
            r_ff = Connection(to_numpy_int(q["r_ff"].w_int), q["r_ff"].exp, L2.WEIGHT_BITS, L2.SignMode.MIXED)
            nrn = LIFParams(self.n, L2.DECAY_MAX, 0, self.vth, to_numpy_int(q["bias"].mant), q["bias"].exp)
            w_z, shift = q["diag"]
            gates = GateSet(r_ff=r_ff, r_rec=rec(q["r_rec"]), z_rec=rec(q["z_rec"]),
                            bias_r_mant=to_numpy_int(q["bias_r"].mant), bias_r_exp=q["bias_r"].exp,
                            bias_z_mant=to_numpy_int(q["bias_z"].mant), bias_z_exp=q["bias_z"].exp,
                            w_z=to_numpy_int(w_z), z_shift=shift)
            return Layer(ff, nrn, rec(q["rec"]), gates)


# ---------------------------------------------------------------- straight-through integer ops
def _sat(x: torch.Tensor) -> torch.Tensor:
    """:func:`crsnn.loihi2.saturate24` (gradient 0 where it clips)."""
    return L2.saturate24(x)


def _gate(pre: torch.Tensor) -> torch.Tensor:
    """:func:`crsnn.loihi2.sigmoid_q` forward, the true sigmoid's derivative backward (Q12)."""
    return ste(GATE_ONE * torch.sigmoid(pre / GATE_ONE), L2.sigmoid_q(pre.detach()))


def _product(g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """:func:`crsnn.loihi2.gate_product` forward, ``g x / 4096`` backward."""
    exact = g * x / GATE_ONE
    return ste(exact, L2.gate_product(g.detach(), x.detach()))


def _diag(w: torch.Tensor, i: torch.Tensor, shift: int) -> torch.Tensor:
    """:func:`crsnn.loihi2.diag_term` forward, ``w i / 2**shift`` backward."""
    exact = w * i / 2.0**shift
    return ste(exact, L2.diag_term(w.detach(), i.detach(), shift))
