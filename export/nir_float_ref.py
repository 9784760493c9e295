"""The float reference for foreign NIR graphs: what a graph means, simulated step by step, and how
far the quantized integer network (:func:`crsnn.export.nir_reader.load_nir`) is from it.

This module is the documented meaning crsnn gives to a graph another tool wrote (snnTorch, Norse,
...). It reads the graph after :func:`crsnn.export.nir_foreign.normalize_foreign`, so every time
constant is in **time steps** and the step is 1 (forward Euler; the original ``dt`` in the graph's
time unit has been divided out). Per population (a neuron node with its incoming weights):

    x[t]  = W_ff s_prev[t] + b_ff + W_rec s_self[t - 1 - d] (+ b_rec, folded into b_ff)

    LIF      v <- v + (v_leak - v + r x[t]) / tau
    CubaLIF  I <- I + (-I + w_in x[t]) / tau_syn ;  v <- v + (v_leak - v + r I) / tau_mem
    IF       v <- v + r x[t]                         (r = r_graph * dt: NIR's dv/dt = r x)
    LI, CubaLI, I: the same without a threshold (their v is the output)
    spike    z = v > v_threshold ;  v <- v_reset (= 0) where z  (I is not reset)

``s_prev`` is the input (binary spikes, shape (batch, steps, n_in)) for the first population. NIR
edges have no latency, so a population sees the previous population's spikes **of the same step**;
a cycle delivers the previous step's spikes (``d``: the steps of a ``Delay`` node on the cycle, 0
without one). The integer network adds one step per synaptic hop (Lava's synapses): its population
``l`` (0-based, the readout last) at step ``t + l + 1`` corresponds to step ``t`` here, so the
comparison runs the integer network ``L + 1`` steps longer on zero-padded input and shifts it back.

Fidelity figures (:func:`fidelity`), per population: spike-count correlation (Pearson, over
samples x neurons), spike-time agreement (Jaccard index of the (sample, step, neuron) spike sets,
exact and within +-1 step), and for the output: agreement of the decision (arg-max of spike counts,
or of the time-averaged voltage for a non-spiking readout) and the correlation of the readout
voltage traces.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import nir
import numpy as np

from crsnn import loihi2 as L2
from crsnn.export.nir_reader import SPIKING, _structure
from crsnn.models.integer import IntegerNetwork
from crsnn.sim.torch_sim import simulate_torch


@dataclass
class FloatPopulation:
    """One population of a normalized graph, in per-step float terms.

    w_ff: (n, n_prev) feedforward weights; b_ff: (n,) constant input (every bias that reaches the
    neuron's input x). w_rec: (n, n) recurrent weights (a Conv1d expanded to its matrix) or None;
    delays: (n,) integer steps of the recurrent ``Delay`` per presynaptic neuron. ``p``: the NIR
    neuron parameters as (n,) arrays, time constants in steps.
    """

    name: str
    kind: str
    n: int
    w_ff: np.ndarray
    b_ff: np.ndarray
    w_rec: np.ndarray | None
    delays: np.ndarray
    p: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def spiking(self) -> bool:
        return self.kind in ("LIF", "CubaLIF", "IF")

    def step_gain(self) -> np.ndarray:
        """(n,) how much one unit of input x moves v in the step it arrives (forward Euler):
        LIF/LI ``r / tau``, CubaLIF/CubaLI ``(w_in / tau_syn) (r / tau_mem)``, IF/I ``r``."""
        p = self.p
        if self.kind in ("LIF", "LI"):
            return p["r"] / p["tau"]
        if self.kind in ("CubaLIF", "CubaLI"):
            return p["w_in"] / p["tau_syn"] * p["r"] / p["tau_mem"]
        return p["r"]

    def bias_gain(self) -> np.ndarray:
        """(n,) what a constant input x adds to v per step once the synaptic current has settled:
        :meth:`step_gain` times ``tau_syn`` for CubaLIF/CubaLI (NIR filters a bias like any input)."""
        return self.step_gain() * (self.p["tau_syn"] if "tau_syn" in self.p else 1.0)

    def leak_bias(self) -> np.ndarray:
        """(n,) what ``v_leak`` adds to v per step: ``v_leak / tau`` (0 for IF/I)."""
        tau = self.p.get("tau", self.p.get("tau_mem"))
        return self.p["v_leak"] / tau if tau is not None and "v_leak" in self.p else np.zeros(self.n)


def _flat(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).reshape(-1)


def _dense(node: Any, n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray]:
    """(weights (n_out, n_in), bias (n_out,)) of an Affine, Linear or one-channel 'same' Conv1d."""
    if isinstance(node, nir.Conv1d):
        kernel = np.asarray(node.weight, dtype=np.float64).reshape(-1)
        k, c = len(kernel), (len(kernel) - 1) // 2
        w = np.zeros((n_out, n_out))
        for m in range(k):
            for i in range(n_out):
                if 0 <= i + m - c < n_out:
                    w[i, i + m - c] = kernel[m]
        bias = _flat(node.bias)
        return w, np.full(n_out, float(bias[0]) if bias.size else 0.0)
    w = np.asarray(node.weight, dtype=np.float64).reshape(n_out, n_in)
    b = _flat(node.bias) if isinstance(node, nir.Affine) else np.zeros(n_out)
    return w, np.broadcast_to(b, (n_out,)).copy()


def populations(g: nir.NIRGraph) -> tuple[list[FloatPopulation], int]:
    """The populations of a normalized graph (input to readout) and the number of inputs."""
    pops, n_in = _structure(g)
    out, n_prev = [], n_in
    for pop in pops:
        node = g.nodes[pop.name]
        kind = type(node).__name__
        fields = [f for f in ("tau", "tau_mem", "tau_syn", "r", "w_in", "v_leak", "v_threshold") if hasattr(node, f)]
        p = {f: _flat(getattr(node, f)) for f in fields}
        n = int(p["r"].size)
        wname = [q for q in pop.ff_path if isinstance(g.nodes[q], (nir.Affine, nir.Linear))][0]
        w_ff, b_ff = _dense(g.nodes[wname], n, n_prev)
        w_rec, delays = None, np.zeros(n, dtype=np.int64)
        if pop.rec_path:
            rname = [q for q in pop.rec_path if isinstance(g.nodes[q], (nir.Affine, nir.Linear, nir.Conv1d))][0]
            w_rec, b_rec = _dense(g.nodes[rname], n, n)
            b_ff = b_ff + b_rec
            for q in pop.rec_path:
                if isinstance(g.nodes[q], nir.Delay):
                    delays = np.rint(_flat(g.nodes[q].delay)).astype(np.int64)
        out.append(FloatPopulation(pop.name, kind, n, w_ff, b_ff, w_rec, delays, p))
        n_prev = n
    return out, n_in


@dataclass
class FloatResult:
    """spikes: one bool (batch, steps, n) array per population (the readout's too: all False for
    a non-spiking readout); readout_v: float (batch, steps, n_out), the readout voltage after each
    step (after reset)."""

    spikes: list[np.ndarray]
    readout_v: np.ndarray


def simulate_float(pops: list[FloatPopulation], x: np.ndarray) -> FloatResult:
    """Run the equations of the module docstring on a batch ``x`` (batch, steps, n_in) of input
    spikes (or values); float64, step = 1."""
    x = np.asarray(x, dtype=np.float64)
    b, steps, _ = x.shape
    spikes = [np.zeros((b, steps, p.n), dtype=bool) for p in pops]
    v = [np.zeros((b, p.n)) for p in pops]
    cur = [np.zeros((b, p.n)) for p in pops]
    vr = np.zeros((b, steps, pops[-1].n))
    for t in range(steps):
        src = x[:, t]
        for li, p in enumerate(pops):
            a = src @ p.w_ff.T + p.b_ff
            if p.w_rec is not None:
                idx = t - 1 - p.delays  # per presynaptic neuron
                ok = idx >= 0
                prev = np.where(ok[None, :], spikes[li][:, np.clip(idx, 0, None), np.arange(p.n)], False)
                a = a + prev.astype(np.float64) @ p.w_rec.T
            q = p.p
            if p.kind in ("LIF", "LI"):
                v[li] = v[li] + (q["v_leak"] - v[li] + q["r"] * a) / q["tau"]
            elif p.kind in ("CubaLIF", "CubaLI"):
                cur[li] = cur[li] + (-cur[li] + q["w_in"] * a) / q["tau_syn"]
                v[li] = v[li] + (q["v_leak"] - v[li] + q["r"] * cur[li]) / q["tau_mem"]
            else:  # IF, I
                v[li] = v[li] + q["r"] * a
            if p.spiking:
                z = v[li] > q["v_threshold"]
                v[li] = np.where(z, 0.0, v[li])
                spikes[li][:, t] = z
            src = spikes[li][:, t].astype(np.float64)
        vr[:, t] = v[-1]
    return FloatResult(spikes=spikes, readout_v=vr)


# ------------------------------------------------------------------------------------ fidelity
def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(-1).astype(np.float64), b.reshape(-1).astype(np.float64)
    if a.size == 0 or a.std() == 0 or b.std() == 0:
        return 1.0 if np.array_equal(a, b) else float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def _jaccard(a: np.ndarray, b: np.ndarray, tol: int = 0) -> float:
    """|A ∩ B| / |A ∪ B| of two (batch, steps, n) spike sets; with ``tol`` > 0 a spike counts as
    matched when the other set has one of the same neuron within ``tol`` steps."""
    if not a.any() and not b.any():
        return 1.0
    if tol == 0:
        return float((a & b).sum() / (a | b).sum())

    def near(s: np.ndarray) -> np.ndarray:
        out = s.copy()
        for k in range(1, tol + 1):
            out[:, k:] |= s[:, :-k]
            out[:, :-k] |= s[:, k:]
        return out

    matched_a, matched_b = int((a & near(b)).sum()), int((b & near(a)).sum())
    na, nb = int(a.sum()), int(b.sum())
    return float((matched_a + matched_b) / (na + nb))


def integer_aligned(net: IntegerNetwork, x: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Spikes of every population (hidden layers, then the readout) and the readout voltage of
    the integer network, shifted so that step t corresponds to step t of :func:`simulate_float`
    (see the module docstring). ``x``: (batch, steps, n_in) integer input."""
    x = np.asarray(x, dtype=np.int64)
    b, steps, n_in = x.shape
    lat = len(net.hidden) + 1
    r = simulate_torch(net, np.concatenate([x, np.zeros((b, lat, n_in), dtype=np.int64)], axis=1))
    spikes = [s[:, li + 1: li + 1 + steps] for li, s in enumerate([*r.hidden_spikes, r.readout_spikes])]
    return spikes, r.readout_v[:, lat: lat + steps]


class _Pearson:
    """Pearson correlation of two equally long streams of numbers, fed in pieces (Chan et al.'s
    pairwise update of means and co-moments: the same value as over the whole arrays, without
    holding them). Mirrors :func:`_corr` for constant or empty streams."""

    def __init__(self) -> None:
        self.n, self.ma, self.mb, self.saa, self.sbb, self.sab, self.equal = 0, 0.0, 0.0, 0.0, 0.0, 0.0, True

    def add(self, a: np.ndarray, b: np.ndarray) -> None:
        a, b = a.reshape(-1).astype(np.float64), b.reshape(-1).astype(np.float64)
        if a.size == 0:
            return
        self.equal = self.equal and bool(np.array_equal(a, b))
        m = a.size
        ma, mb = float(a.mean()), float(b.mean())
        da, db = a - ma, b - mb
        saa, sbb, sab = float(da @ da), float(db @ db), float(da @ db)
        n = self.n + m
        dma, dmb = ma - self.ma, mb - self.mb
        self.saa += saa + dma * dma * self.n * m / n
        self.sbb += sbb + dmb * dmb * self.n * m / n
        self.sab += sab + dma * dmb * self.n * m / n
        self.ma += dma * m / n
        self.mb += dmb * m / n
        self.n = n

    def value(self) -> float:
        if self.n == 0 or self.saa == 0 or self.sbb == 0:
            return 1.0 if self.equal else float("nan")
        return float(self.sab / np.sqrt(self.saa * self.sbb))


#: Bytes the fidelity check holds per input sample, per step and per neuron of all populations:
#: float and integer spikes (bool), their per-step temporaries, the integer simulator's float64
#: histories and the spike-time matching (measured peak below 12, kept with a margin).
FIDELITY_BYTES_PER_NEURON_STEP = 16
#: The integer simulator runs in pieces of at most this many synapse-steps (samples x steps x
#: synapses): each piece is one uninterruptible compiled call, about 0.1 s, so a signal ends the
#: command promptly.
INTEGER_SYNAPSE_STEPS_PER_CALL = 2e9


def fidelity_bytes_per_sample(pops: list[FloatPopulation], steps: int, n_in: int) -> int:
    """Bytes :func:`fidelity` needs per sample of ``steps`` steps (input included)."""
    neurons = sum(p.n for p in pops) + n_in
    return int(FIDELITY_BYTES_PER_NEURON_STEP * (steps + len(pops) + 1) * neurons + 8 * steps * n_in)


def _integer_chunk(pops: list[FloatPopulation], steps: int, n_in: int) -> int:
    synapses, n_prev = 0, n_in
    for p in pops:
        synapses += p.n * n_prev + (p.n * p.n if p.w_rec is not None else 0) + p.n
        n_prev = p.n
    return max(1, int(INTEGER_SYNAPSE_STEPS_PER_CALL // max(1, synapses * steps)))


def fidelity(pops: list[FloatPopulation], net: IntegerNetwork, x: np.ndarray,
             chunk: int | None = None) -> dict[str, Any]:
    """Float reference vs integer network on the same input ``x`` (batch, steps, n_in).

    Returns ``{"layers": [...], "output": {...}}``: per population its name, spike totals (float,
    integer), ``count_corr`` (Pearson over samples x neurons of the spike counts), ``time_jaccard``
    (exact step) and ``time_jaccard_1`` (within +-1 step); for the output ``decision_agreement``
    (fraction of samples with the same arg-max) and ``voltage_corr`` (readout voltage traces).

    ``chunk``: samples simulated at once (default: all). Memory grows with it
    (:func:`fidelity_bytes_per_sample`); the figures do not depend on it. The integer simulator
    runs in pieces of :data:`INTEGER_SYNAPSE_STEPS_PER_CALL` so that a signal is handled within
    about 0.1 s."""
    b, steps, n_in = np.shape(x)
    chunk = max(1, b if chunk is None else int(chunk))
    piece = _integer_chunk(pops, steps, n_in)
    n_pop = len(pops)
    totals = [[0, 0] for _ in pops]
    counts = [_Pearson() for _ in pops]
    jac = [[0, 0, 0, 0, 0, 0] for _ in pops]  # exact: inter, union; +-1: matched a, matched b, |a|, |b|
    volts, agree = _Pearson(), 0
    ro = pops[-1]
    for lo in range(0, b, chunk):
        xs = x[lo:lo + chunk]
        ref = simulate_float(pops, xs)
        parts = [integer_aligned(net, xs[i:i + piece]) for i in range(0, len(xs), piece)]
        got = [np.concatenate([p[0][li] for p in parts]) for li in range(n_pop)]
        v_int = np.concatenate([p[1] for p in parts])
        del parts
        for li, (a, c) in enumerate(zip(ref.spikes, got)):
            totals[li][0] += int(a.sum())
            totals[li][1] += int(c.sum())
            counts[li].add(a.sum(1), c.sum(1))
            j = jac[li]
            j[0] += int((a & c).sum())
            j[1] += int((a | c).sum())
            na, nc = int(a.sum()), int(c.sum())
            if na or nc:
                j[2] += int((a & _near(c, 1)).sum())
                j[3] += int((c & _near(a, 1)).sum())
            j[4] += na
            j[5] += nc
        if ro.spiking:
            d_f, d_i = ref.spikes[-1].sum(1), got[-1].sum(1)
        else:
            d_f, d_i = ref.readout_v.mean(1), v_int.mean(1)
        agree += int(np.sum(d_f.argmax(1) == d_i.argmax(1)))
        volts.add(ref.readout_v, v_int.astype(np.float64))
    layers = []
    for p, (tf, ti), cp, j in zip(pops, totals, counts, jac):
        layers.append({"name": p.name, "kind": p.kind, "neurons": p.n, "spiking": p.spiking,
                       "spikes_float": tf, "spikes_integer": ti, "count_corr": cp.value(),
                       "time_jaccard": 1.0 if j[1] == 0 else j[0] / j[1],
                       "time_jaccard_1": 1.0 if j[4] + j[5] == 0 else (j[2] + j[3]) / (j[4] + j[5])})
    out = {"decision": "spike count" if ro.spiking else "mean voltage",
           "decision_agreement": agree / b if b else float("nan"),
           "voltage_corr": volts.value(), "samples": int(b), "steps": int(steps)}
    return {"layers": layers, "output": out}


def _near(s: np.ndarray, tol: int) -> np.ndarray:
    """``s`` (batch, steps, n) with every spike widened to +-``tol`` steps."""
    out = s.copy()
    for k in range(1, tol + 1):
        out[:, k:] |= s[:, :-k]
        out[:, :-k] |= s[:, k:]
    return out


# ------------------------------------------------------------------------------ quantization
def quantization_summary(pops: list[FloatPopulation], net: IntegerNetwork) -> list[dict[str, Any]]:
    """What the quantizer chose for every population, measured against the float parameters:
    leaks (float and the integer decay's), the voltage scale (integer activation units per float
    voltage unit, per threshold-normalised neuron), weight exponents, weights clipped at the 8-bit
    limits or rounded to zero, the relative RMS weight error and the bias exponent."""
    rows = []
    for p, layer in zip(pops, net.layers):
        nrn = layer.neuron
        gain = p.step_gain()
        thr = p.p["v_threshold"] if p.spiking else np.ones(p.n)
        w = p.w_ff * (gain / thr)[:, None]
        q = layer.ff.effective().astype(np.float64) * 2.0**layer.ff.weight_exp
        scale = float((q * w).sum() / (w * w).sum()) if np.any(w) else float("nan")
        target = w * scale / 2.0**layer.ff.weight_exp
        row = {"name": p.name, "kind": p.kind, "neurons": p.n, "du": nrn.du, "dv": nrn.dv, "vth": nrn.vth,
               "scale": scale, "ff_weight_exp": layer.ff.weight_exp,
               "ff_clipped": int(((target > L2.RAW_WEIGHT_MAX) | (target < L2.RAW_WEIGHT_MIN)).sum()),
               "ff_zeroed": int(((w != 0) & (layer.ff.effective() == 0)).sum()),
               "ff_rms_error": float(np.sqrt(np.mean((q - w * scale) ** 2)) / max(np.abs(w * scale).max(), 1e-300)),
               "bias_exp": int(np.max(nrn.bias_exp)) if nrn.bias_exp.size else 0}
        if p.kind in ("LIF", "LI", "CubaLIF", "CubaLI"):
            tau = p.p["tau"] if "tau" in p.p else p.p["tau_mem"]
            row.update(beta=float(1 - 1 / tau[0]), beta_int=L2.leak_from_dv(nrn.dv))
        else:
            row.update(beta=1.0, beta_int=L2.leak_from_dv(nrn.dv))
        if p.kind in ("CubaLIF", "CubaLI"):
            row.update(alpha=float(1 - 1 / p.p["tau_syn"][0]), alpha_int=L2.leak_from_du(nrn.du))
        b_target = (p.b_ff * p.bias_gain() + p.leak_bias()) / thr * scale * 2**L2.ACT_SHIFT
        row["bias_clipped"] = int(np.sum(np.abs(b_target) > L2.BIAS_MANT_MAX * 2**L2.BIAS_EXP_MAX + 0.5))
        if layer.rec is not None and p.w_rec is not None:
            wr = p.w_rec * (gain / thr)[:, None] * scale
            qr = layer.rec.effective().astype(np.float64) * 2.0**layer.rec.weight_exp
            tr = wr / 2.0**layer.rec.weight_exp
            row.update(rec_weight_exp=layer.rec.weight_exp,
                       rec_clipped=int(((tr > L2.RAW_WEIGHT_MAX) | (tr < L2.RAW_WEIGHT_MIN)).sum()),
                       rec_zeroed=int(((wr != 0) & (layer.rec.effective() == 0)).sum()),
                       rec_rms_error=float(np.sqrt(np.mean((qr - wr) ** 2)) / max(np.abs(wr).max(), 1e-300)))
        rows.append(row)
    return rows
