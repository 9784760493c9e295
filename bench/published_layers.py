"""The published CRSNN and DelRec recurrent layers, re-implemented as their papers describe them,
as the reference that ``bench/vs_published.py`` times crsnn against.

Both papers train a plain LIF neuron whose recurrent input arrives through one learnable axonal
delay per (presynaptic) neuron:

- **DelRec** (Quéant et al., "DelRec: learning delays in recurrent spiking neural networks",
  arXiv 2509.24852): a dense ``N x N`` recurrent matrix ``W`` (orthogonal initialisation);
- **CRSNN** (Zebendo, Cicciarella, Rossi, "Combining Convolution and Delay Learning in Recurrent
  Spiking Neural Networks", arXiv 2604.15997): the same delay mechanism with the dense matrix
  replaced by one shared single-channel kernel ``K`` of size ``k`` (3 here) applied by ``conv1d``
  along the neuron axis ("same" zero padding, no bias).

The delay mechanism both use
----------------------------
Neuron ``j`` has a float delay ``d_j >= 0`` (steps); the spread has half-width
``s = 1 + sigma`` (sigma annealed per epoch from 10 towards 0). A spike of ``j`` at step ``t``
reaches the buffer slot that is read ``l`` steps later with the weight of a unit-area triangle
centred on ``1 + d_j``::

    m[j, l] = max(0, s - |l - (1 + d_j)|) / s**2,      l = 0 .. L - 1,
    L = ceil(1 + max_j d_j + s) + 1.

Slot ``l = 0`` is "now" and is dropped, so the effective latency is ``1 + d_j``.

Per step ``t`` (state ``v``: (B, N); buffer ``buf``: (B, L, N), ``buf[:, l]`` = the recurrent
input that arrives ``l`` steps from now):

1. ``r_t = buf[:, 0]`` (B, N): the recurrent input arriving now (times a dropout mask in training);
2. ``v = beta * v + x_t + r_t``; spike ``s_t = H(v - theta)`` (ATan surrogate derivative,
   alpha = 5, in training); hard reset ``v <- v * (1 - s_t)`` (the reset is detached);
3. the spikes are spread over **all** ``L`` slots and pushed through the recurrent weights *per
   slot*: ``Y[b, l, j] = s_t[b, j] * m[j, l]`` (B, L, N) and
   ``X[b, l, :] = W @ Y[b, l, :]`` (dense, DelRec) or ``X[b, l, :] = K (*) Y[b, l, :]``
   (``conv1d`` over the neuron axis of the (B * L, 1, N) tensor, CRSNN);
4. the buffer shifts by one step and receives the new contributions:
   ``buf[:, l] <- buf[:, l + 1] + X[:, l + 1]`` for ``l < L - 1``, ``buf[:, L - 1] <- 0``.

So the recurrent input is ``r_t[i] = sum_l sum_j W[i, j] m[j, l] s_{t-l}[j]`` (or the conv of the
delayed spikes): exactly the quantity crsnn's :mod:`crsnn.models.recurrent` computes, which first
gathers the delayed spikes ``z_t[j] = sum_l m[j, l] s_{t-l}[j]`` from a spike history (only the
``2 ceil(s) + 1`` taps the triangle covers) and then applies ``W`` or ``K`` once to ``z_t``. The
published layers do the recurrent product ``L`` times per step (once per slot) on a dense
(B, L, N) tensor whatever sigma is: ``B * L * N**2`` multiply-adds per step for DelRec
(``B * L * N * k`` for the CRSNN, through ``conv1d``), against ``B * N**2`` (``B * N * k``).

Shapes: time-major, batch second, neurons last, like the published code: ``(T, B, N)``.

What is simplified, and why it does not change the cost compared
----------------------------------------------------------------
- The LIF update is ``v = beta v + I`` (the CRSNN paper's equation, and crsnn's float mode);
  the published SpikingJelly / snnTorch neurons scale the input by ``1 / tau``, one elementwise
  multiply per step. The threshold test is ``v > theta`` (crsnn's) instead of ``v >= theta``.
- The buffer is laid out (B, L, N) and shifted by concatenation, so DelRec's per-slot product is
  one (B * L, N) x (N, N) GEMM and the CRSNN's conv is one ``conv1d`` call on a contiguous
  (B * L, 1, N) tensor; the published code keeps a (B, N, L) ring buffer with a write pointer and
  a batched ``W @ Y`` (or a ``conv2d`` with a (k, 1) kernel over (B, 1, N, L)). Same arithmetic,
  same number of operations; the layout chosen here is the faster one on a CPU, so the reference
  is not handicapped.
- One spread width for all neurons (the optional learned per-neuron width of the DelRec code is
  left out); no learned leak; delays are not clamped above (the reference code has no bound).
- The surrounding network (:class:`PublishedNet`): ``Linear -> BatchNorm1d -> recurrent LIF ->
  dropout`` per hidden layer, then ``Linear -> leaky integrator`` readout (a LIF that never
  spikes, its voltage is the output), as in both papers' SHD models; every hidden layer is
  recurrent here (as in crsnn's models), and there is no one-step latency per connection (crsnn
  adds Loihi's; it does not change the cost).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

#: ATan surrogate sharpness of both papers.
ATAN_ALPHA = 5.0


class _SpikeATan(torch.autograd.Function):
    """``H(x)`` forward (x > 0 -> 1.0); ``(alpha / 2) / (1 + (pi / 2 * alpha * x)**2)`` backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: D401
        ctx.save_for_backward(x)
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return g * (ATAN_ALPHA / 2) / (1 + (math.pi / 2 * ATAN_ALPHA * x) ** 2)


def spike(x: torch.Tensor) -> torch.Tensor:
    """Heaviside spike of ``x = v - theta`` with the ATan surrogate gradient (any shape)."""
    return _SpikeATan.apply(x)


def buffer_length(delays: torch.Tensor, sigma: float) -> int:
    """``L = ceil(1 + max d + s) + 1`` slots (s = 1 + sigma; delays in steps, shape (N,))."""
    s = 1.0 + float(sigma)
    return int(math.ceil(1.0 + float(delays.detach().max()) + s)) + 1


def triangle_spread(delays: torch.Tensor, sigma: float, length: int | None = None) -> torch.Tensor:
    """The published delay spread ``m[j, l] = max(0, s - |l - (1 + d_j)|) / s**2`` (s = 1 + sigma)
    over all slots ``l = 0 .. L - 1`` (``L`` = :func:`buffer_length` unless given): (N, L), in the
    delays' dtype; differentiable with respect to ``delays`` (N,) (steps)."""
    L = buffer_length(delays, sigma) if length is None else int(length)
    s = 1.0 + float(sigma)
    slots = torch.arange(L, device=delays.device, dtype=delays.dtype)
    return torch.clamp(s - (slots[None, :] - (1.0 + delays)[:, None]).abs(), min=0.0) / (s * s)


class PublishedRecurrentLIF(nn.Module):
    """A recurrent LIF layer with learnable axonal delays, computed the published way (see the
    module docstring): a dense (B, L, N) delay buffer over all ``L`` slots, updated every step.

    recurrence: ``"dense"`` (DelRec: ``rec_weight`` (N, N), orthogonal init) or ``"conv"``
    (CRSNN: ``rec_kernel`` (k,), uniform in +-1/sqrt(k), applied with ``conv1d``).
    beta: membrane leak per step; theta: threshold; delays: (N,) float steps, initialised uniform
    in ``delay_init`` (SHD: 10..30); sigma: the spread (attribute, annealed by the trainer);
    rec_dropout: dropout probability on the recurrent input (training only).
    """

    def __init__(self, n: int, recurrence: str = "dense", kernel: int = 3, beta: float = 0.5,
                 theta: float = 1.0, delay_init: tuple[float, float] = (10.0, 30.0), sigma: float = 10.0,
                 rec_dropout: float = 0.0) -> None:
        super().__init__()
        if recurrence not in ("dense", "conv"):
            raise ValueError(f"recurrence must be 'dense' or 'conv', got {recurrence!r}")
        self.n, self.recurrence, self.kernel_size = int(n), recurrence, int(kernel)
        self.beta, self.theta, self.sigma = float(beta), float(theta), float(sigma)
        self.rec_dropout = float(rec_dropout)
        if recurrence == "dense":
            self.rec_weight = nn.Parameter(nn.init.orthogonal_(torch.empty(n, n)))
        else:
            kb = 1.0 / math.sqrt(self.kernel_size)
            self.rec_kernel = nn.Parameter(torch.empty(self.kernel_size).uniform_(-kb, kb))
        self.delays = nn.Parameter(torch.empty(n).uniform_(*delay_init).clamp(min=0.0))

    def recurrent_product(self, y: torch.Tensor) -> torch.Tensor:
        """The recurrent weights applied to every slot: y (B, L, N) -> (B, L, N);
        dense ``X[b, l] = W @ y[b, l]``, conv ``X[b, l] = K (*) y[b, l]`` (cross-correlation, "same")."""
        B, L, N = y.shape
        if self.recurrence == "dense":
            return y @ self.rec_weight.t()
        k = self.kernel_size
        out = F.conv1d(y.reshape(B * L, 1, N), self.rec_kernel.view(1, 1, k), padding=(k - 1) // 2)
        return out.view(B, L, N)

    def forward(self, x: torch.Tensor, record: bool = False):
        """x: (T, B, N) input current per step (threshold units). Returns the spikes (T, B, N)
        (0/1, in ``x``'s dtype); with ``record``, also the recurrent input ``r`` (T, B, N) each
        step received (before dropout) and the voltage after each step's reset (T, B, N)."""
        T, B, N = x.shape
        m = triangle_spread(self.delays.to(x.dtype), self.sigma).t()  # (L, N)
        L = m.shape[0]
        buf = x.new_zeros((B, L, N))
        zero_slot = x.new_zeros((B, 1, N))
        v = x.new_zeros((B, N))
        spikes, recs, volts = [], [], []
        for t in range(T):
            r = buf[:, 0]
            if record:
                recs.append(r)
            if self.training and self.rec_dropout > 0:
                r = F.dropout(r, self.rec_dropout, training=True)
            v = self.beta * v + x[t] + r
            s = spike(v - self.theta)
            v = v * (1.0 - s.detach())
            spikes.append(s)
            if record:
                volts.append(v)
            X = self.recurrent_product(s[:, None, :] * m[None])  # (B, L, N)
            buf = torch.cat([buf[:, 1:] + X[:, 1:], zero_slot], dim=1)
        out = torch.stack(spikes)
        if record:
            return out, torch.stack(recs), torch.stack(volts)
        return out


class PublishedNet(nn.Module):
    """The published SHD architecture around :class:`PublishedRecurrentLIF` layers.

    Per hidden layer: ``Linear(+bias) -> BatchNorm1d (over T * B) -> PublishedRecurrentLIF ->
    Dropout``; readout ``Linear -> leaky integrator`` (``v = beta_out v + I``, no spikes). Input
    ``x``: (B, T, n_in) counts; output: the readout voltage (B, T, n_out) (float units, logits
    per step, reduced by ``sum_t softmax`` in the loss like both papers).
    """

    def __init__(self, n_in: int, hidden: list[int], n_out: int, recurrence: str = "dense", kernel: int = 3,
                 beta: float = 0.5, beta_out: float = 0.5, sigma: float = 10.0, dropout: float = 0.0,
                 rec_dropout: float = 0.0, delay_init: tuple[float, float] = (10.0, 30.0)) -> None:
        super().__init__()
        self.linears = nn.ModuleList()
        self.norms = nn.ModuleList()
        self.recs = nn.ModuleList()
        n_prev = n_in
        for n in hidden:
            self.linears.append(nn.Linear(n_prev, n))
            self.norms.append(nn.BatchNorm1d(n))
            self.recs.append(PublishedRecurrentLIF(n, recurrence, kernel, beta, 1.0, delay_init, sigma, rec_dropout))
            n_prev = n
        self.readout = nn.Linear(n_prev, n_out)
        self.beta_out = float(beta_out)
        self.dropout = float(dropout)
        self.set_sigma(sigma)

    def set_sigma(self, sigma: float) -> None:
        """The delay spread of every layer (steps)."""
        for rec in self.recs:
            rec.sigma = float(sigma)

    def forward(self, x: torch.Tensor, return_hidden: bool = False):
        """x: (B, T, n_in) -> readout voltage (B, T, n_out) (and the hidden spikes, each (B, T, n))."""
        h = x.to(torch.float32).transpose(0, 1)  # (T, B, n_in)
        hidden = []
        for lin, bn, rec in zip(self.linears, self.norms, self.recs):
            a = lin(h)
            T, B, n = a.shape
            a = bn(a.reshape(T * B, n)).view(T, B, n)
            h = rec(a)
            hidden.append(h)
            if self.training and self.dropout > 0:
                h = F.dropout(h, self.dropout, training=True)
        a = self.readout(h)
        v = a.new_zeros(a.shape[1:])
        vs = []
        for t in range(a.shape[0]):
            v = self.beta_out * v + a[t]
            vs.append(v)
        out = torch.stack(vs).transpose(0, 1)
        return (out, [s.transpose(0, 1) for s in hidden]) if return_hidden else out

    @torch.no_grad()
    def load_crsnn(self, model: nn.Module) -> "PublishedNet":
        """Copy the parameters of a crsnn :class:`crsnn.models.network.SpikingNet` of the same
        shape and recurrence (feedforward weights, BatchNorm affine and running statistics,
        recurrent kernel / matrix, delays, readout), so that both run on the same numbers."""
        for lin, bn, rec, layer in zip(self.linears, self.norms, self.recs, model.layers):
            lin.weight.copy_(layer.weight)
            lin.bias.zero_()
            if layer.batchnorm:
                bn.weight.copy_(layer.bn_weight)
                bn.bias.copy_(layer.bn_bias)
                bn.running_mean.copy_(layer.running_mean)
                bn.running_var.copy_(layer.running_var)
            else:
                bn.weight.fill_(1.0)
                bn.bias.copy_(layer.bias)
            rec.beta = float(layer.beta)
            rec.delays.copy_(layer.delays)
            if rec.recurrence == "dense":
                rec.rec_weight.copy_(layer.rec_weight)
            else:
                rec.rec_kernel.copy_(layer.rec_kernel)
        self.readout.weight.copy_(model.readout.weight)
        self.readout.bias.copy_(model.readout.bias)
        self.beta_out = float(model.readout.beta)
        return self
