"""The time loop of a population of plain LIF neurons with an optional recurrence through
per-neuron axonal delays: one fused autograd Function for float training and for
quantization-aware training (QAT).

Layout: tensors are time-major and neuron-major, ``(T, N, B)`` (steps, neurons, batch), so that a
1-D convolution over the neuron axis is ``k`` shifted row slices and a step's state is one
contiguous ``(N, B)`` block.

Per step ``t`` (Lava's order, see :mod:`crsnn.sim.integer_sim`):

1. ``z_t``: the delayed spikes arriving now (read from the arrival buffer);
2. recurrent input ``r_t = K (*) z_t`` (k shifted multiply-adds, "same" padding, PyTorch's
   cross-correlation convention: neuron i receives ``sum_m K[m] z_t[i + m - (k-1)//2]``) or
   ``r_t = W z_t`` (dense, DelRec); optionally multiplied by a dropout mask;
3. the neuron update. Float: ``v = beta * v + a_t + r_t + bias``, spike ``v > 1``, reset to 0.
   Integer (QAT): exactly :func:`crsnn.loihi2.lif_integrate` with ``du = 4095``
   (``u = (a_t + r_t) << 6``, ``v = trunc(v (4096 - dv) / 4096) + u + bias``, clip), spike
   ``v > vth << 6``, reset to 0, all on float64 tensors holding integers;
4. the spikes are spread into the arrival buffer.

Delays. A spike of neuron j at step t arrives at step ``t + k`` with weight ``w_jk``:

- float training (DelRec / DCLS style): a triangle of half-width ``s = 1 + sigma`` and unit area
  centred on latency ``1 + d_j``: ``w_jk = max(0, s - |k - (1 + d_j)|) / s**2`` for taps
  ``k >= 1`` (tap 0 is dropped, so the effective latency is ``1 + d_j``);
- QAT / integer: one tap at ``k = 1 + round(d_j)`` (d clamped to 0..62) with weight 1, exactly
  Lava's ``DelaySparse`` latency. Its delay gradient is a straight-through estimate: the central
  difference of the loss with respect to the arrival time, ``(g[k + 1] - g[k - 1]) / 2``.

Only the taps a triangle covers are touched: each step's spikes are scattered into the
``2 * ceil(s) + 1`` slots (per neuron) of an arrival buffer of ``T + L`` steps with one
``index_add_``; no dense batch x neurons x L buffer is built. The backward pass is written by
hand (BPTT with the surrogate derivative, the reset detached), which is what makes the loop fast
on a CPU; ``tests/test_models_recurrent.py`` checks it against plain autograd.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from crsnn import bounds
from crsnn import loihi2 as L2

from .surrogate import Surrogate


# --------------------------------------------------------------------------------------------
# Delay taps
# --------------------------------------------------------------------------------------------
@dataclass
class Taps:
    """Where each neuron's spike lands (latencies ``k``, weights ``w``), and the taps and
    derivatives ``dw/dd`` used for the delay gradient (``gk``, ``gw``). All ``(R, N)``."""

    k: torch.Tensor
    w: torch.Tensor
    gk: torch.Tensor
    gw: torch.Tensor

    @property
    def length(self) -> int:
        """Arrival-buffer length beyond the run needed for these taps."""
        return int(max(int(self.k.max()), int(self.gk.max()))) + 1


def integer_delays(delays: torch.Tensor) -> torch.Tensor:
    """The deployed integer delays: ``round(d)`` clamped to 0..62 (int64)."""
    return torch.round(delays.detach()).clamp(L2.DELAY_MIN, L2.DELAY_MAX).long()


def spread_taps(delays: torch.Tensor, sigma: float, dtype: torch.dtype | None = None) -> Taps:
    """Triangular spread of half-width ``1 + sigma`` around latency ``1 + d`` (d clamped to
    0..62). Rows whose weights are all zero are dropped."""
    dtype = dtype or delays.dtype
    d = delays.detach().to(dtype).clamp(L2.DELAY_MIN, L2.DELAY_MAX)
    c = 1.0 + d
    s = 1.0 + float(sigma)
    R = int(math.ceil(s))
    r = torch.arange(-R, R + 1, device=d.device)
    k = torch.floor(c).long()[None, :] + r[:, None]
    dist = k.to(dtype) - c[None, :]
    w = torch.clamp(s - dist.abs(), min=0) / s**2
    valid = (k >= 1) & (w > 0)
    w = torch.where(valid, w, torch.zeros_like(w))
    dw = torch.where(valid, torch.sign(dist), torch.zeros_like(dist)) / s**2
    keep = valid.any(dim=1)
    k = k.clamp(min=0)[keep]
    return Taps(k, w[keep], k, dw[keep])


def integer_taps(delays: torch.Tensor, dtype: torch.dtype) -> Taps:
    """One tap at latency ``1 + round(d)``; gradient taps at ``k - 1`` and ``k + 1`` with
    ``dw/dd = -1/2, +1/2`` (central difference, straight-through; for ``d = 0``, whose left
    neighbour would be the non-existent tap 0, the left tap is ``k`` itself)."""
    d = integer_delays(delays)
    k = (1 + d)[None, :]
    w = torch.ones(k.shape, dtype=dtype, device=delays.device)
    gk = torch.stack([d.clamp(min=1), d + 2])  # d = 0: one-sided (tap 0 does not exist)
    gw = torch.stack([torch.full_like(w[0], -0.5), torch.full_like(w[0], 0.5)])
    return Taps(k, w, gk, gw)


# --------------------------------------------------------------------------------------------
# Convolution over the neuron axis as k shifted multiply-adds, (N, B) blocks
# --------------------------------------------------------------------------------------------
def _shifted_sum(z: torch.Tensor, kernel: list[float], direction: int) -> torch.Tensor:
    """``out[i] = sum_m K[m] * z[i + direction * (m - c)]`` over dim 0 (zero outside)."""
    n = z.shape[0]
    c = (len(kernel) - 1) // 2
    out = z * kernel[c]
    for m, km in enumerate(kernel):
        off = direction * (m - c)
        if off == 0 or abs(off) >= n or km == 0:
            continue
        if off > 0:
            out[: n - off].add_(z[off:], alpha=km)
        else:
            out[-off:].add_(z[: n + off], alpha=km)
    return out


def conv_rows(z: torch.Tensor, kernel: list[float]) -> torch.Tensor:
    """``out[i] = sum_m K[m] * z[i + m - c]`` (c = (k-1)//2, zero outside) over dim 0."""
    return _shifted_sum(z, kernel, 1)


def conv_rows_t(g: torch.Tensor, kernel: list[float]) -> torch.Tensor:
    """Transpose of :func:`conv_rows`: ``out[i + m - c] += K[m] * g[i]``."""
    return _shifted_sum(g, kernel, -1)


def conv_kernel_grad(gr: torch.Tensor, z: torch.Tensor, k: int) -> torch.Tensor:
    """``dL/dK[m] = sum gr[..., i, :] * z[..., i + m - c, :]`` for (T, N, B) tensors."""
    n = gr.shape[1]
    c = (k - 1) // 2
    out = gr.new_zeros(k)
    for m in range(k):
        off = m - c
        if abs(off) >= n:
            continue
        if off >= 0:
            out[m] = (gr[:, : n - off] * z[:, off:]).sum()
        else:
            out[m] = (gr[:, -off:] * z[:, : n + off]).sum()
    return out


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LoopSpec:
    """Non-tensor settings of one :class:`LIFLoop` call.

    integer: QAT / integer arithmetic (float64 tensors holding integers) instead of float.
    theta: threshold in the units of ``v`` (1.0 float; ``vth << 6`` integer).
    a_scale: ``v`` units per unit of input ``a`` (1 float; 64 integer: ``u = a << 6``).
    dv: integer voltage decay (integer mode only). sigma: delay spread (float mode only).
    spiking: False for a leaky integrator that never spikes (float readout).
    """

    integer: bool
    theta: float
    a_scale: float = 1.0
    dv: int = 0
    sigma: float = 0.0
    surrogate: Surrogate = Surrogate()
    spiking: bool = True


class IntegerStep:
    """The integer neuron update of one step, :func:`crsnn.loihi2.lif_integrate` with ``du = 4095``
    on float tensors holding integers, with the wraps and the voltage clip that a bound computed
    once per loop proves to be the identity left out (:meth:`for_loop`).

    ``step(v, a, out)``: ``v`` (N, B) the voltage after the previous step's reset, ``a`` (N, B)
    this step's input (before the ``<< 6``); writes the voltage before the threshold test into
    ``out`` (N, B) and returns it.

    Exactness (equal to :func:`crsnn.loihi2.lif_integrate`, bit for bit, on integers below 2**53):
    with ``du = 4095`` the current has no memory, ``decay(u) = trunc(u * 0) = 0``, so ``u = a << 6``
    (a power-of-two scaling, exact); ``decay(v) = trunc(v (4096 - dv) / 4096)`` is one exact
    product and one exact truncating division by a power of two (``torch.div(...,
    rounding_mode="trunc")``, several times faster than ``torch.trunc`` on CPU); the additions are
    in Lava's order. A wrap or the clip is applied unless :func:`crsnn.bounds.lif_wraps_for` /
    :func:`crsnn.bounds.voltage_saturates` prove it cannot change a value.
    """

    def __init__(self, dv: int, a_scale: float, bias: torch.Tensor, wraps: L2.LifWraps, clip: bool) -> None:
        self.factor = float(L2.DECAY_UNITY - int(dv))
        self.a_scale = float(a_scale)
        self.bias = bias
        self.wraps = wraps
        self.clip = bool(clip)
        self.current_wraps = wraps.current_int32 or wraps.current_24

    @classmethod
    def for_loop(cls, a: torch.Tensor, bias: torch.Tensor, kernel: torch.Tensor | None,
                 weights: torch.Tensor | None, taps: Taps | None, mask: torch.Tensor | None,
                 spec: LoopSpec) -> "IntegerStep":
        """The step of one :class:`LIFLoop` call, its wraps and clip decided from bounds of this
        call's tensors (one pass over ``a`` and one over ``mask``): ``|a_t + r_t| <= max|a| +
        sum|K| * max_n sum_taps |w| * max|mask|`` (spikes are 0 or 1; ``sum|K|`` the largest row
        sum of the dense matrix, or the kernel's sum), ``|bias|`` its largest value."""
        a_max = bounds.max_abs(a)
        if taps is not None:
            z_max = float(taps.w.abs().sum(0).max()) if taps.w.numel() else 0.0
            rec = kernel if kernel is not None else weights
            r_max = bounds.sum_abs_bound(rec, z_max) * (bounds.max_abs(mask) if mask is not None else 1.0)
            a_max += r_max
        b_max = bounds.max_abs(bias)
        wraps = bounds.lif_wraps_for(a_max, L2.DECAY_MAX, b_max)
        any_wrap = wraps.current_int32 or wraps.current_24 or wraps.voltage_int32
        clip = any_wrap or bounds.voltage_saturates(a_max * spec.a_scale + b_max, spec.theta, spec.dv, a.shape[0],
                                               spec.spiking)
        return cls(spec.dv, spec.a_scale, bias, wraps, clip)

    def __call__(self, v: torch.Tensor, a: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        torch.mul(v, self.factor, out=out)
        torch.div(out, float(L2.DECAY_UNITY), rounding_mode="trunc", out=out)  # decay_voltage
        if self.current_wraps:
            u = a * self.a_scale
            if self.wraps.current_int32:
                u = L2.wrap_int32(u)
            if self.wraps.current_24:
                u = L2.wrap_current(u)
            out.add_(u)
        else:
            out.add_(a, alpha=self.a_scale)  # + (a << 6): the scaling is exact
        out.add_(self.bias)
        if self.wraps.voltage_int32:
            out.copy_(L2.wrap_int32(out))
        if self.clip:
            out.clamp_(L2.V_MIN, L2.V_MAX)
        return out


class LIFLoop(torch.autograd.Function):
    """``spikes, v = LIFLoop.apply(a, bias, beta, kernel, weights, delays, mask, spec)``.

    a: (T, N, B) feedforward input per step (float: threshold units; integer: the connection's
       output ``a`` after its weight exponent). bias: (N,) in ``v`` units. beta: 0-dim leak
       (float mode; in integer mode the forward uses ``spec.dv`` and the backward
       ``(4096 - dv) / 4096``). kernel: (k,) conv kernel or None; weights: (N, N) dense
       recurrence or None; delays: (N,) float delays (steps) or None; the recurrent kernel /
       weights are in the units of ``a`` (integer mode: effective integer weights times
       ``2**weight_exp``). mask: (T, N, B) multiplier of the recurrent input (dropout) or None.

    Returns ``spikes`` (T, N, B) (0/1) and ``v`` (T, N, B), the voltage after each step's reset
    (what Lava records). Gradients: surrogate for the spikes, the reset is detached.
    """

    @staticmethod
    def forward(ctx, a, bias, beta, kernel, weights, delays, mask, spec: LoopSpec):  # noqa: D401
        ctx.set_materialize_grads(False)
        T, N, B = a.shape
        dtype = a.dtype
        rec = kernel is not None or weights is not None
        taps = None
        length = 0
        if rec:
            taps = integer_taps(delays, dtype) if spec.integer else spread_taps(delays, spec.sigma, dtype)
            length = taps.length
            cols = torch.arange(N, device=a.device)
            # spikes of step t are row block (length + t) of spad; the arrival at step t gathers
            # the spikes of steps t - k (k >= 1): row block (length + t - k), zeros before the run
            gidx = ((length - taps.k) * N + cols[None, :]).reshape(-1)
            gtab = gidx[None, :] + (torch.arange(T, device=a.device) * N)[:, None]  # (T, R * N)
            R = taps.k.shape[0]
            w3 = taps.w.to(dtype)[:, :, None]
            single = bool(R == 1 and torch.all(taps.w == 1))
            klist = kernel.detach().tolist() if kernel is not None else None
            wmat = weights.detach() if weights is not None else None
            # integer mode: the dense product in float32 when exact (integer weights, 0/1 arrivals,
            # every partial sum below 2**24; crsnn.bounds)
            w32 = (wmat is not None and spec.integer and single and bounds.holds_integers(wmat)
                   and bounds.exact_float32(wmat, 1))
            if w32:
                wmat = wmat.to(torch.float32)
            Z = torch.empty_like(a)
        if spec.integer and spec.spiking:
            # integer taps read only steps before the current one (latency 1 + d >= 1), and every
            # step's row is written by that step: only the rows before the run need zeros
            spad = a.new_empty(((length + T) * N, B))
            spad[: length * N].zero_()
        else:  # float taps may read the current step's (unwritten) row with weight 0
            spad = a.new_zeros(((length + T) * N, B))
        S = spad[length * N:].view(T, N, B)
        beta_f = float(beta)
        bias_col = bias.detach().to(dtype)[:, None]
        V = torch.empty_like(a)
        v = a.new_zeros((N, B))
        if spec.integer:
            step = IntegerStep.for_loop(a, bias_col, kernel, weights, taps, mask, spec)
        for t in range(T):
            at = a[t]
            if rec:
                if single:
                    z = torch.index_select(spad, 0, gtab[t], out=Z[t])
                else:
                    G = spad.index_select(0, gtab[t])
                    z = (w3 * G.view(R, N, B)).sum(0)
                    Z[t] = z
                if klist is not None:
                    r = conv_rows(z, klist)
                else:
                    r = wmat @ (z.to(torch.float32) if w32 else z)
                if mask is not None:
                    r = r * mask[t]
                at = at + r
            if spec.integer:
                vp = step(v, at, out=V[t])
            else:
                vp = torch.mul(v, beta_f, out=V[t]).add_(at).add_(bias_col)
            if spec.spiking:
                # spikes straight into the float history; reset: vp - vp * s is vp or exactly 0
                s = torch.gt(vp, spec.theta, out=S[t])
                v = torch.addcmul(vp, vp, s, value=-1.0)
            else:
                v = vp
        ctx.spec = spec
        ctx.rec = rec
        ctx.taps = taps
        ctx.kshape = None if kernel is None else kernel.shape[0]
        ctx.save_for_backward(V, S, Z if rec else None, mask, kernel, weights, beta)
        if not spec.spiking:
            ctx.mark_non_differentiable(S)
        vrec = torch.addcmul(V, V, S, value=-1.0) if spec.spiking else V.clone()  # V (1 - S), one pass
        return S, vrec

    @staticmethod
    def backward(ctx, g_s, g_v):
        V, S, Z, mask, kernel, weights, beta = ctx.saved_tensors
        spec: LoopSpec = ctx.spec
        T, N, B = V.shape
        dtype = V.dtype
        if spec.integer:
            beta_b = (L2.DECAY_UNITY - spec.dv) / L2.DECAY_UNITY
        else:
            beta_b = float(beta)
        keep = (1.0 - S) if spec.spiking else None
        rec = ctx.rec
        use_s = spec.spiking and (g_s is not None or rec)
        if use_s:
            SG = spec.surrogate.grad((V - spec.theta) / spec.theta) / spec.theta
        if rec:
            taps: Taps = ctx.taps
            length = taps.length
            gz_buf = V.new_zeros(((T + length) * N, B))
            cols = torch.arange(N, device=V.device)
            sidx = (taps.k * N + cols[None, :]).reshape(-1)
            R = taps.k.shape[0]
            w3 = taps.w.to(dtype)[:, :, None]
            single = bool(R == 1 and torch.all(taps.w == 1))
            klist = kernel.detach().tolist() if kernel is not None else None
            wt = weights.detach().t() if weights is not None else None
            # float mode: the delay gradient uses the same taps as the spread, so it is
            # accumulated from the per-step gathers (sum over the batch of spike * arrival grad)
            same_taps = not spec.integer and ctx.needs_input_grad[5]
            gtap = V.new_zeros((R, N)) if same_taps else None
            # integer mode: its own gradient taps (k - 1, k + 1), gathered in the same row gather
            # (their rows, steps t + gk > t, are final when step t is reached)
            own_taps = spec.integer and ctx.needs_input_grad[5] and use_s
            R2 = taps.gk.shape[0] if own_taps else 0
            if own_taps:
                sidx = torch.cat([sidx, (taps.gk * N + cols[None, :]).reshape(-1)])
                gtap2 = V.new_zeros((R2, N))
            stab = sidx[None, :] + (torch.arange(T, device=V.device) * N)[:, None]  # (T, (R + R2) * N)
        gV = torch.empty_like(V)
        gv = V.new_zeros((N, B))
        for t in range(T - 1, -1, -1):
            # gradient w.r.t. the post-reset voltage carried into step t+1, plus the output's
            carry = gv * beta_b
            if g_v is not None:
                carry = carry + g_v[t]
            gv = carry * keep[t] if keep is not None else carry
            if use_s:
                gs = g_s[t] if g_s is not None else None
                if rec:
                    G = gz_buf.index_select(0, stab[t])
                    if R2:
                        G, G2 = G[: R * N], G[R * N:]
                        gtap2 += (G2.view(R2, N, B) * S[t][None]).sum(-1)
                    if gtap is not None:
                        gtap += (G.view(R, N, B) * S[t][None]).sum(-1)
                    G = G if single else (w3 * G.view(R, N, B)).sum(0)
                    gs = G if gs is None else gs + G
                if gs is not None:
                    gv = torch.addcmul(gv, gs, SG[t])
            gV[t] = gv
            if rec:
                gr = gv * spec.a_scale
                if mask is not None:
                    gr = gr * mask[t]
                gz = conv_rows_t(gr, klist) if klist is not None else wt @ gr
                gz_buf[t * N:(t + 1) * N] = gz
        need = ctx.needs_input_grad
        ga = gV * spec.a_scale if need[0] else None
        gbias = gV.sum(dim=(0, 2)).to(dtype) if need[1] else None
        gbeta = None
        if need[2]:
            vpost = V[:-1] * keep[:-1] if keep is not None else V[:-1]
            gbeta = (gV[1:] * vpost).sum().reshape(beta.shape).to(beta.dtype)
        gk = gw = gd = None
        if rec:
            Gr = gV * spec.a_scale
            if mask is not None:
                Gr = Gr * mask
            if kernel is not None and need[3]:
                gk = conv_kernel_grad(Gr, Z, ctx.kshape).to(kernel.dtype)
            if weights is not None and need[4]:
                gw = Gr.permute(1, 0, 2).reshape(N, T * B) @ Z.permute(1, 0, 2).reshape(N, T * B).t()
                gw = gw.to(weights.dtype)
            if need[5] and gtap is not None:
                gd = (taps.gw.to(dtype) * gtap).sum(0)
            elif need[5] and R2:
                gd = (taps.gw.to(dtype) * gtap2).sum(0)
            elif need[5]:
                tN = (torch.arange(T, device=V.device) * N)[:, None]
                gd = V.new_zeros(N)
                for r in range(taps.gk.shape[0]):
                    idx = (tN + (taps.gk[r] * N + cols)[None, :]).reshape(-1)
                    G = gz_buf.index_select(0, idx).view(T, N, B)
                    gd = gd + taps.gw[r].to(dtype) * (S * G).sum(dim=(0, 2))
        return ga, gbias, gbeta, gk, gw, gd, None, None


def lif_loop(a, bias, beta, spec: LoopSpec, kernel=None, weights=None, delays=None, mask=None):
    """Functional entry point of :class:`LIFLoop` (see there): ``(spikes, v)``, both (T, N, B)."""
    if not torch.is_tensor(beta):
        beta = torch.tensor(float(beta), dtype=a.dtype, device=a.device)
    return LIFLoop.apply(a, bias, beta, kernel, weights, delays, mask, spec)
