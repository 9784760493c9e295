"""Spiking layers for training: a hidden LIF layer (feedforward, CRSNN conv recurrence or DelRec
dense recurrence, both through learnable per-neuron axonal delays) and a leaky readout.

Every layer has two forward passes over time-major tensors ``(T, N, B)``:

- ``forward_float``: float32 training arithmetic (threshold 1.0, leak ``beta``, triangular delay
  spread of width ``1 + sigma``, BatchNorm with batch statistics while training);
- ``forward_qat``: the integer arithmetic of Lava / Loihi 2 on float64 tensors holding integers
  (BatchNorm folded with its running statistics, weights, biases, leak and delays on their
  Loihi grids, see :mod:`crsnn.models.quant`), with straight-through gradients. In eval mode its
  spikes and readout voltages equal :func:`crsnn.sim.integer_sim.simulate` on the network
  returned by :meth:`crsnn.models.network.SpikingNet.to_integer`, bit for bit.

Both include Lava's latencies: the feedforward input of step t is the source's output of step
t - 1 (every connection adds one step), a recurrent spike arrives ``1 + d`` steps later.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from crsnn import loihi2 as L2

from .quant import QuantBias, QuantWeights, quant_matmul, quantize_bias, quantize_leak, quantize_weights
from .recurrent import LoopSpec, integer_delays, lif_loop
from .surrogate import Surrogate

BN_EPS = 1e-5
BN_MOMENTUM = 0.1


def shift_time(x: torch.Tensor) -> torch.Tensor:
    """``y[t] = x[t - 1]``, ``y[0] = 0`` for a (T, ...) tensor: one step of synaptic latency."""
    return torch.cat([torch.zeros_like(x[:1]), x[:-1]], dim=0)


def dropout_mask(like: torch.Tensor, p: float) -> torch.Tensor:
    """Inverted-dropout multiplier of ``like``'s shape, float32: 0 with probability p, else the
    float32 value of 1 / (1 - p) (what the mask always held; a float64 tensor multiplied by it is
    promoted exactly, without a float64 copy of the mask). The same draws and values as
    ``where(rand_like(like.float()) < 1 - p, 1 / (1 - p), 0)``, thresholded and scaled in place."""
    keep = 1.0 - float(p)
    return torch.rand(like.shape, dtype=torch.float32, device=like.device).lt_(keep).mul_(1.0 / keep)


def leak_from_tau(tau: float) -> float:
    """Forward-Euler leak ``beta = 1 - 1 / tau`` (tau in steps; tau <= 1 gives 0)."""
    return float(max(0.0, 1.0 - 1.0 / float(tau)))


class HiddenLayer(nn.Module):
    """``Linear -> [BatchNorm] -> LIF (+ recurrent input)`` with an optional recurrence.

    recurrence: None (feedforward LIF), ``"conv"`` (CRSNN: per-neuron axonal delays, then one
    shared kernel of size ``kernel`` over the neuron axis) or ``"dense"`` (DelRec: delays, then
    an N x N matrix). The float threshold is 1.0; in integer form the threshold mantissa is
    ``vth`` (so one float unit is ``vth << 6`` in ``v`` units) and ``du = 4095`` (the current has
    no memory: the plain LIF of CRSNN / DelRec).
    """

    def __init__(self, n_in: int, n: int, recurrence: str | None = "conv", kernel: int = 3,
                 batchnorm: bool = True, beta: float = 0.5, learn_beta: bool = False,
                 delay_init: tuple = ("uniform", 0.0, 10.0), vth: int = 1024) -> None:
        super().__init__()
        if recurrence not in (None, "conv", "dense"):
            raise ValueError(f"recurrence must be None, 'conv' or 'dense', got {recurrence!r}")
        self.n_in, self.n, self.recurrence, self.kernel_size = int(n_in), int(n), recurrence, int(kernel)
        self.vth = int(vth)
        self.target = "loihi2"  # quantization profile: "loihi2", or "netx" (see quant_limits)
        if not 1 <= self.vth <= L2.VTH_MAX:
            raise ValueError(f"vth must be in 1..{L2.VTH_MAX}, got {vth}")
        bound = 1.0 / math.sqrt(n_in)
        self.weight = nn.Parameter(torch.empty(n, n_in).uniform_(-bound, bound))
        self.batchnorm = bool(batchnorm)
        if self.batchnorm:
            self.bn_weight = nn.Parameter(torch.ones(n))
            self.bn_bias = nn.Parameter(torch.zeros(n))
            self.register_buffer("running_mean", torch.zeros(n))
            self.register_buffer("running_var", torch.ones(n))
            self.register_buffer("bn_updates", torch.tensor(0, dtype=torch.long))
        else:
            self.bias = nn.Parameter(torch.zeros(n))
        self.beta = nn.Parameter(torch.tensor(float(beta)), requires_grad=bool(learn_beta))
        if recurrence == "conv":
            kb = 1.0 / math.sqrt(self.kernel_size)
            self.rec_kernel = nn.Parameter(torch.empty(self.kernel_size).uniform_(-kb, kb))
        elif recurrence == "dense":
            self.rec_weight = nn.Parameter(nn.init.orthogonal_(torch.empty(n, n)))
        if recurrence is not None:
            self.delays = nn.Parameter(init_delays(n, delay_init))

    # ---------------------------------------------------------------- parameters
    @property
    def v_per_unit(self) -> int:
        """Integer ``v`` units per float unit: the threshold ``vth << 6``."""
        return L2.scaled_threshold(self.vth)

    def rec_param(self) -> torch.Tensor | None:
        if self.recurrence == "conv":
            return self.rec_kernel
        if self.recurrence == "dense":
            return self.rec_weight
        return None

    def folded(self, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
        """Feedforward weight and bias with BatchNorm folded in (running statistics), float units."""
        w = self.weight.to(dtype)
        if not self.batchnorm:
            return w, self.bias.to(dtype)
        scale = self.bn_weight.to(dtype) / torch.sqrt(self.running_var.to(dtype) + BN_EPS)
        return w * scale[:, None], self.bn_bias.to(dtype) - self.running_mean.to(dtype) * scale

    def clamp_delays_(self) -> None:
        if self.recurrence is not None:
            with torch.no_grad():
                self.delays.clamp_(L2.DELAY_MIN, L2.DELAY_MAX)

    # ---------------------------------------------------------------- float
    def forward_float(self, x: torch.Tensor, sigma: float, surrogate: Surrogate,
                      rec_dropout: float = 0.0) -> torch.Tensor:
        """x: (T, n_in, B) float -> spikes (T, n, B)."""
        a, bias = self.batchnorm_float(self.feedforward_float(x, sigma))
        spec = LoopSpec(integer=False, theta=1.0, a_scale=1.0, sigma=float(sigma), surrogate=surrogate)
        mask = self._rec_mask(a, rec_dropout)
        rp = self.rec_param()
        s, _ = lif_loop(a, bias, self.beta, spec,
                        kernel=rp if self.recurrence == "conv" else None,
                        weights=rp if self.recurrence == "dense" else None,
                        delays=self.delays if self.recurrence else None, mask=mask)
        return s

    def batchnorm_float(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The float feedforward input (T, n, B) scaled by BatchNorm, and the bias (n,): batch
        statistics while training (updating the running ones), running statistics in eval; without
        BatchNorm ``(h, bias)``."""
        if not self.batchnorm:
            return h, self.bias
        if self.training:
            hv = h[1:] if h.shape[0] > 1 else h
            mean = hv.mean(dim=(0, 2))
            var = hv.var(dim=(0, 2), unbiased=False)
            with torch.no_grad():
                # exponential average, but a plain average over the first 1/momentum
                # batches, so that short runs do not keep the initial (0, 1) statistics
                cnt = hv.shape[0] * hv.shape[2]
                mom = max(BN_MOMENTUM, 1.0 / float(self.bn_updates + 1))
                self.running_mean.lerp_(mean.detach(), mom)
                self.running_var.lerp_(var.detach() * cnt / max(cnt - 1, 1), mom)
                self.bn_updates += 1
        else:
            mean, var = self.running_mean, self.running_var
        scale = self.bn_weight / torch.sqrt(var + BN_EPS)
        return h * scale[:, None], self.bn_bias - mean * scale

    def feedforward_float(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        """The feedforward input before BatchNorm: ``W x[t - 1]``, (T, n_in, B) -> (T, n, B)
        (``sigma``: the delay spread, used by subclasses with synaptic delays)."""
        return torch.matmul(self.weight, shift_time(x))

    def feedforward_qat(self, q: dict, x: torch.Tensor) -> torch.Tensor:
        """The integer feedforward input ``shift(W_int x[t - 1], exp)`` of :meth:`quantized`'s
        ``q``: (T, n_in, B) float64 integers -> (T, n, B) float64 integers (STE graph)."""
        ff: QuantWeights = q["ff"]
        return quant_matmul(ff.w_int, x, ff.exp)

    def _rec_mask(self, a: torch.Tensor, p: float) -> torch.Tensor | None:
        if self.recurrence is None or not self.training or p <= 0:
            return None
        return dropout_mask(a, p)

    # ---------------------------------------------------------------- integer
    def quantized(self) -> dict:
        """The layer's Loihi integers with straight-through graphs: ``ff`` (:class:`QuantWeights`),
        ``bias`` (:class:`QuantBias`), ``beta_q``/``dv``, ``rec`` (:class:`QuantWeights`, exponent
        >= 0) and ``delays`` (int64). Used by both :meth:`forward_qat` and ``to_integer``."""
        w, b = self.folded()
        vpu = self.v_per_unit
        beta_q, dv = quantize_leak(self.beta)
        lim = quant_limits(self.target)
        out = {"ff": quantize_weights(w, vpu, lim["min_exp"], lim["max_exp"]),
               "bias": quantize_bias(b * vpu, lim["bias_exp"]), "beta_q": beta_q, "dv": dv, "rec": None, "delays": None}
        rp = self.rec_param()
        if rp is not None:
            # exponent >= 0: with a negative exponent Lava floors each delay group's sum separately
            out["rec"] = quantize_weights(rp, vpu, min_exp=0)
            out["delays"] = integer_delays(self.delays)
        return out

    def forward_qat(self, x: torch.Tensor, surrogate: Surrogate, rec_dropout: float = 0.0,
                    q: dict | None = None) -> torch.Tensor:
        """x: (T, n_in, B) float64 integers (spikes / graded input) -> spikes (T, n, B) float64."""
        q = q or self.quantized()
        a = self.feedforward_qat(q, x)
        rec: QuantWeights | None = q["rec"]
        k_eff = rec.w_int * (2.0**rec.exp) if rec is not None else None
        spec = LoopSpec(integer=True, theta=float(self.v_per_unit), a_scale=float(2**L2.ACT_SHIFT),
                        dv=q["dv"], surrogate=surrogate)
        bias: QuantBias = q["bias"]
        s, _ = lif_loop(a, bias.value, q["beta_q"], spec,
                        kernel=k_eff if self.recurrence == "conv" else None,
                        weights=k_eff if self.recurrence == "dense" else None,
                        delays=self.delays if self.recurrence else None,
                        mask=self._rec_mask(a, rec_dropout))
        return s


class Readout(nn.Module):
    """``Linear -> leaky integrator``: a LIF whose threshold is never reached; its voltage is the
    output. Float: ``v = beta v + W s[t-1] + b``. Integer: a Lava LIF with ``du = 4095``,
    ``vth = 131071`` (v saturates below it unless the weights are absurd; if it ever spikes, the
    QAT forward resets it exactly like Lava); one float unit is ``scale`` ``v`` units."""

    def __init__(self, n_in: int, n_out: int, beta: float = 0.5, learn_beta: bool = False,
                 scale: int = 4096) -> None:
        super().__init__()
        self.n_in, self.n = int(n_in), int(n_out)
        self.scale = int(scale)
        self.target = "loihi2"  # quantization profile (see quant_limits)
        bound = 1.0 / math.sqrt(n_in)
        self.weight = nn.Parameter(torch.empty(n_out, n_in).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(n_out))
        self.beta = nn.Parameter(torch.tensor(float(beta)), requires_grad=bool(learn_beta))

    def forward_float(self, x: torch.Tensor) -> torch.Tensor:
        """x: (T, n_in, B) -> voltage (T, n_out, B), float units."""
        a = torch.matmul(self.weight, shift_time(x))
        _, v = lif_loop(a, self.bias, self.beta, LoopSpec(integer=False, theta=1.0, spiking=False))
        return v

    def quantized(self) -> dict:
        beta_q, dv = quantize_leak(self.beta)
        lim = quant_limits(self.target)
        return {"ff": quantize_weights(self.weight, self.scale, lim["min_exp"], lim["max_exp"]),
                "bias": quantize_bias(self.bias.to(torch.float64) * self.scale, lim["bias_exp"]), "beta_q": beta_q,
                "dv": dv}

    def forward_qat(self, x: torch.Tensor, q: dict | None = None) -> torch.Tensor:
        """x: (T, n_in, B) float64 spikes -> integer voltage (T, n_out, B) in ``v`` units (float64)."""
        q = q or self.quantized()
        ff: QuantWeights = q["ff"]
        a = quant_matmul(ff.w_int, x, ff.exp)
        spec = LoopSpec(integer=True, theta=float(L2.scaled_threshold(L2.VTH_MAX)),
                        a_scale=float(2**L2.ACT_SHIFT), dv=q["dv"])
        _, v = lif_loop(a, q["bias"].value, q["beta_q"], spec)
        return v


TARGETS = ("loihi2", "netx")


def quant_limits(target: str) -> dict:
    """Feedforward weight-exponent range and bias exponent (None: chosen per layer) of a
    quantization profile: ``loihi2`` (everything Loihi 2 allows) or ``netx`` (what lava-dl's netx
    format can carry: :data:`crsnn.loihi2.NETX_WEIGHT_EXP_RANGE`, :data:`crsnn.loihi2.NETX_BIAS_EXP`)."""
    if target == "netx":
        lo, hi = L2.NETX_WEIGHT_EXP_RANGE
        return {"min_exp": lo, "max_exp": hi, "bias_exp": L2.NETX_BIAS_EXP}
    if target == "loihi2":
        return {"min_exp": L2.WEIGHT_EXP_MIN, "max_exp": L2.WEIGHT_EXP_MAX, "bias_exp": None}
    raise ValueError(f"quantization target must be one of {TARGETS}, got {target!r}")


def init_delays(n: int, spec: tuple | list) -> torch.Tensor:
    """Initial float delays (steps), clamped to 0..62: ``("uniform", lo, hi)`` or
    ``("halfnormal", std)`` or ``("constant", d)``."""
    kind = str(spec[0])
    if kind == "uniform":
        d = torch.empty(n).uniform_(float(spec[1]), float(spec[2]))
    elif kind == "halfnormal":
        d = torch.randn(n).abs() * float(spec[1])
    elif kind == "constant":
        d = torch.full((n,), float(spec[1]))
    else:
        raise ValueError(f"delay init must be uniform:lo:hi, halfnormal:std or constant:d, got {spec!r}")
    return d.clamp(L2.DELAY_MIN, L2.DELAY_MAX)


def to_numpy_int(x: torch.Tensor) -> np.ndarray:
    """A float tensor holding integers -> int64 NumPy array (checked)."""
    a = x.detach().to("cpu", torch.float64).numpy()
    r = np.rint(a)
    if not np.array_equal(r, a):
        raise ValueError("expected integer values")
    return r.astype(np.int64)
