"""Batched integer simulator of an :class:`~crsnn.models.integer.IntegerNetwork` in NumPy,
bit-exact with Lava's fixed-point CPU models (and so, by Lava's design, with Loihi 2).

This is the readable reference: the ``sim`` backend and ``check_lava`` run
:mod:`crsnn.sim.torch_sim` (same results, faster, CPU or CUDA), which the tests compare with it.

Clock and latencies (Lava's; t = 0 .. T-1 is Lava's ``time_step`` t + 1)
------------------------------------------------------------------------
- input -> layer 1 (``Dense``/``Sparse`` from the spike source): input at step t is integrated
  by layer 1 at step **t + 1**;
- layer l -> layer l + 1, and last hidden layer -> readout (``Dense``/``Sparse``): **1 step**;
- a feedforward connection with per-synapse delays (``DelayDense``/``DelaySparse``): a spike of
  source j at step t is integrated by neuron i at step **t + 1 + delays[i, j]**;
- recurrence of a layer through its axonal delays (``DelaySparse``/``DelayDense``): a spike of
  neuron j at step t is integrated at step **t + 1 + delays[j]**;
- so the readout sees input step t first at step t + L + 1 (L hidden layers). The run lasts
  exactly T = ``x.shape[1]`` steps, like ``RunSteps(T)`` in Lava: pad the input with zeros if the
  tail matters.

Each step of a layer, in Lava's order: all incoming connection outputs are summed (``a``), the
LIF neurons update (:func:`crsnn.loihi2.lif_step`), and their spikes are sent on. Recorded:
the spikes of every hidden layer and the readout's voltage after each step.

Speed: layers are simulated one after the other (there is no feedback between layers), so each
layer's feedforward input for all steps is one float64 matrix product (exact: validated sums stay
below 2**31), and only the recurrence runs step by step over a (batch, neurons) state. Recurrent
spikes wait in a ring buffer of delayed *spikes* (one slot per step of delay); on arrival they are
weighted by the conv kernel (k shifted multiply-adds) or the dense matrix. With a negative weight
exponent Lava shifts the sum of each delay group separately, which is reproduced by weighting
each group on its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crsnn import loihi2 as L2
from crsnn.models.integer import IntegerNetwork, Layer, Recurrence


@dataclass
class SimResult:
    """Integer simulation output.

    hidden_spikes: one bool array (batch, steps, n_l) per hidden layer.
    readout_v: int64 (batch, steps, n_out), the readout voltage after each step.
    readout_spikes: bool (batch, steps, n_out) (non-empty only if the readout reached threshold).
    """

    hidden_spikes: list[np.ndarray]
    readout_v: np.ndarray
    readout_spikes: np.ndarray


def feedforward_input(conn_effective: np.ndarray, weight_exp: int, x: np.ndarray,
                      delays: np.ndarray | None = None) -> np.ndarray:
    """The output a ``Dense`` (or ``DelayDense``) connection delivers at every step:
    (batch, steps, n_out) int64.

    ``x``: (batch, steps, n_in) integers (spikes or graded payloads) emitted by the source layer.
    Without ``delays``, step t receives ``shift(W @ x[:, t - 1], weight_exp)``; step 0 receives 0.
    ``delays``: (n_out, n_in) integer per-synapse delays (time steps): step t receives
    ``sum_d shift(W_d @ x[:, t - 1 - d], weight_exp)`` over the distinct delay values d, ``W_d``
    the weights of the synapses with delay d (each group is shifted on its own, like Lava).
    """
    b, t, _ = x.shape
    out = np.zeros((b, t, conn_effective.shape[0]), dtype=np.int64)
    xf = x.astype(np.float64)
    groups = [(0, None)] if delays is None else [(int(d), delays == d) for d in np.unique(delays)]
    for d, mask in groups:
        if t <= 1 + d:
            continue
        w = conn_effective if mask is None else np.where(mask, conn_effective, 0)
        acc = np.rint(xf[:, : t - 1 - d, :] @ w.T.astype(np.float64)).astype(np.int64)
        out[:, 1 + d:, :] += L2.floor_shift(acc, weight_exp)
    return out


class _RecurrentPath:
    """Delayed-spike ring buffer + conv/dense weighting for one layer's recurrence."""

    def __init__(self, layer: Layer, batch: int, rec: Recurrence | None = None) -> None:
        rec = rec if rec is not None else layer.rec
        assert rec is not None
        self.n = layer.n
        self.delays = rec.delays.astype(np.int64)
        self.exp = rec.weight_exp
        self.slots = int(self.delays.max()) + 2 if self.delays.size else 2
        self.ring = np.zeros((self.slots, batch, self.n), dtype=np.int64)
        self.cols = np.arange(self.n)
        if rec.is_conv:
            self.kernel = rec.effective_kernel()
            self.weights_t = None
        else:
            self.kernel = None
            self.weights_t = rec.effective().T.astype(np.float64)
        # Negative exponent: Lava floors the sum of each delay group separately.
        groups = np.unique(self.delays)
        self.group_masks = (
            [(self.delays == d) for d in groups] if self.exp < 0 and len(groups) > 1 else None
        )

    def _weigh(self, spikes: np.ndarray) -> np.ndarray:
        """Unshifted recurrent sums for arriving spikes (batch, n) -> (batch, n) int64."""
        if self.kernel is not None:
            k = self.kernel.shape[0]
            c = (k - 1) // 2
            out = np.zeros_like(spikes)
            n = self.n
            for m in range(k):
                off = m - c  # out[i] += K[m] * s[i + off]
                if self.kernel[m] == 0 or abs(off) >= n:
                    continue
                if off >= 0:
                    out[:, : n - off] += self.kernel[m] * spikes[:, off:]
                else:
                    out[:, -off:] += self.kernel[m] * spikes[:, : n + off]
            return out
        return np.rint(spikes.astype(np.float64) @ self.weights_t).astype(np.int64)

    def arrive(self, t: int) -> np.ndarray:
        """The recurrent input integrated at step t (batch, n) int64; frees the slot."""
        slot = t % self.slots
        arrived = self.ring[slot]
        if not arrived.any():
            return np.zeros_like(arrived)
        if self.group_masks is None:
            out = L2.floor_shift(self._weigh(arrived), self.exp)
        else:
            out = np.zeros_like(arrived)
            for mask in self.group_masks:
                out += L2.floor_shift(self._weigh(arrived * mask), self.exp)
        self.ring[slot] = 0
        return out

    def send(self, t: int, spikes: np.ndarray) -> None:
        """Queue the spikes (batch, n) emitted at step t for arrival at t + 1 + delay."""
        slots = (t + 1 + self.delays) % self.slots
        self.ring[slots, :, self.cols] = spikes.T


def run_layer(layer: Layer, a_ff: np.ndarray, record_v: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Run one population for all steps.

    a_ff: (batch, steps, n) int64, the feedforward connection output per step
    (:func:`feedforward_input`). Returns ``(spikes (batch, steps, n) bool, v or None)``.
    """
    b, steps, n = a_ff.shape
    nrn = layer.neuron
    bias = nrn.bias()[None, :]
    u = np.zeros((b, n), dtype=np.int64)
    v = np.zeros((b, n), dtype=np.int64)
    spikes = np.zeros((b, steps, n), dtype=bool)
    vs = np.zeros((b, steps, n), dtype=np.int64) if record_v else None
    rec = _RecurrentPath(layer, b) if layer.rec is not None else None
    for t in range(steps):
        a = a_ff[:, t, :]
        if rec is not None:
            a = a + rec.arrive(t)
        u, v, s = L2.lif_step(u, v, a, nrn.du, nrn.dv, nrn.vth, bias)
        spikes[:, t, :] = s
        if vs is not None:
            vs[:, t, :] = v
        if rec is not None:
            rec.send(t, s.astype(np.int64))
    return spikes, vs


def run_csgru_layer(layer: Layer, a_i: np.ndarray, a_r: np.ndarray) -> np.ndarray:
    """Run one CS-GRU population (:class:`~crsnn.models.integer.GateSet`) for all steps.

    a_i, a_r: (batch, steps, n) int64, the feedforward outputs into the current and the reset gate
    per step (:func:`feedforward_input`). Each of the three recurrences (current, reset gate,
    update gate) delivers its delayed, weighted, shifted spikes like a LIF layer's; the neuron
    update is :func:`crsnn.loihi2.csgru_step`. Returns spikes (batch, steps, n) bool."""
    g = layer.gates
    assert g is not None and layer.rec is not None
    b, steps, n = a_i.shape
    nrn = layer.neuron
    paths = [_RecurrentPath(layer, b, r) for r in (layer.rec, g.r_rec, g.z_rec)]
    bias_i, bias_r, bias_z = nrn.bias()[None, :], g.bias_r()[None, :], g.bias_z()[None, :]
    w_z = g.w_z[None, :]
    i = np.zeros((b, n), dtype=np.int64)
    v = np.zeros((b, n), dtype=np.int64)
    s_prev = np.zeros((b, n), dtype=np.int64)
    spikes = np.zeros((b, steps, n), dtype=bool)
    for t in range(steps):
        rec_i, rec_r, rec_z = (p.arrive(t) for p in paths)
        i, v, s, _, _ = L2.csgru_step(i, v, s_prev, a_r[:, t] + rec_r, a_i[:, t] + rec_i, rec_z,
                                      bias_r, bias_i, bias_z, w_z, g.z_shift, nrn.vth)
        spikes[:, t] = s
        s_prev = s.astype(np.int64)
        for p in paths:
            p.send(t, s_prev)
    return spikes


def simulate(net: IntegerNetwork, x: np.ndarray, validate: bool = True) -> SimResult:
    """Run ``net`` on a batch: ``x`` is (batch, steps, n_in) integers (binary spikes, or graded
    payloads within ``net.input_message_bits``). Returns a :class:`SimResult`; everything is
    integer and identical to what Lava's fixed-point models compute for the same steps."""
    if validate:
        net.validate()
        x = net.validate_input(x)
    src = np.asarray(x, dtype=np.int64)
    hidden = []
    for layer in net.hidden:
        a_ff = feedforward_input(layer.ff.effective(), layer.ff.weight_exp, src, layer.ff.delays)
        if layer.gates is not None:
            r_ff = layer.gates.r_ff
            s = run_csgru_layer(layer, a_ff, feedforward_input(r_ff.effective(), r_ff.weight_exp, src, r_ff.delays))
        else:
            s, _ = run_layer(layer, a_ff)
        hidden.append(s)
        src = s
    ro = net.readout
    s, v = run_layer(ro, feedforward_input(ro.ff.effective(), ro.ff.weight_exp, src, ro.ff.delays), record_v=True)
    assert v is not None
    return SimResult(hidden_spikes=hidden, readout_v=v, readout_spikes=s)
