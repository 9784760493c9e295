"""Where a foreign graph's integer network loses fidelity: the float reference replayed with one
quantization step of the Loihi 2 mapping applied at a time.

:func:`replay` runs every population of a graph (:class:`~crsnn.export.nir_float_ref.FloatPopulation`,
time in steps) in the **integer network's units** (``v`` units: threshold-normalised float voltage
times ``64 * scale``, the layer's scale) with a set of *steps* switched on. With no step on it is the
float NIR reference (:func:`~crsnn.export.nir_float_ref.simulate_float`, up to float rounding); with
every step on it is the integer network, spike for spike (:data:`STEPS`, tested). Per step:

- ``rounding``: weights on the 8-bit grid (nearest even effective weight times ``2**weight_exp``,
  and Lava's floor of the shifted sum for a negative exponent), without the clipping;
- ``clipping``: weights limited to the representable range ``[-256, 254] * 2**weight_exp``, not rounded;
- ``decays``: the 12-bit decays (``1 - (du + 1)/4096`` and ``1 - dv/4096``) instead of the float leaks;
- ``threshold``: the integer threshold ``vth << 6`` instead of the exact one;
- ``bias``: the integer bias added to ``v`` (Loihi) instead of the NIR placement (an ``Affine`` bias
  through the synaptic current, ``v_leak / tau`` into ``v``);
- ``truncation``: ``u`` and ``v`` truncated toward zero after each decay (Loihi's 12-bit shifts);
- ``range``: the 24-bit state: ``u`` wraps once at +-2**23, ``v`` saturates at +-(2**23 - 1).

The update order needs no step: Loihi's ``v`` integrates the *new* current (``u`` first, then
``v``), exactly as NIR's forward Euler for ``CubaLIF`` (``I`` first, then ``v`` with the new ``I``),
and both deliver a recurrent spike one step later (:mod:`crsnn.export.nir_float_ref`).

:func:`attribute` measures each step alone, per population and with every population fed the
float reference's spikes from below (so a layer's figure is its own cost), plus all steps together
fed the same way, and ``jitter`` (:data:`JITTER`): how sensitive the network itself is to weight
errors of the rounding's size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from crsnn import loihi2 as L2
from crsnn.export.nir_float_ref import FloatPopulation, _corr, _jaccard, simulate_float
from crsnn.models.integer import IntegerNetwork, Layer

#: The quantization steps of the Loihi 2 mapping, in the order the report lists them.
STEPS = ("rounding", "clipping", "decays", "threshold", "bias", "truncation", "range")
#: Not a step of the mapping: every weight moved at random by up to half a step of its 8-bit grid
#: (the largest rounding error, but no grid). What it costs is the network's own sensitivity to weight
#: errors of that size, the floor below which no choice of scale can bring ``rounding``.
JITTER = "jitter"
JITTER_SEED = 0


@dataclass
class _Units:
    """One population's parameters in ``v`` units, float and integer, for :func:`_run`."""

    w_ff: np.ndarray  # (n, n_prev) float weights, v units per input spike
    w_rec: np.ndarray | None  # (n, n) float
    q_ff: np.ndarray  # (n, n_prev) integer effective weights (before 2**exp)
    e_ff: int
    q_rec: np.ndarray | None
    e_rec: int
    delays: np.ndarray  # (n,)
    alpha: float
    beta: float
    du: int
    dv: int
    thr: float  # exact threshold in v units (64 * scale), or inf without one
    vth: float  # vth << 6, or inf without a threshold
    bias_u: np.ndarray  # (n,) NIR: added to u every step (an Affine bias through the current)
    bias_v: np.ndarray  # (n,) NIR: added to v every step (v_leak / tau)
    bias_int: np.ndarray  # (n,) the integer bias (v units)
    cuba: bool


def layer_scale(pop: FloatPopulation, layer: Layer) -> float:
    """Integer activation units per threshold-normalised float unit of one population (what
    ``crsnn-import`` prints as 'scale'): ``vth`` for a spiking population, else the least-squares
    ratio of the integer to the float feedforward weights."""
    if pop.spiking:
        return float(layer.neuron.vth)
    w = pop.w_ff * pop.step_gain()[:, None]
    q = layer.ff.effective().astype(np.float64) * 2.0**layer.ff.weight_exp
    return float((q * w).sum() / (w * w).sum()) if np.any(w) else 1.0


def _units(pop: FloatPopulation, layer: Layer) -> _Units:
    s = layer_scale(pop, layer)
    thr = pop.p["v_threshold"] if pop.spiking else np.ones(pop.n)
    k = (pop.step_gain() / thr * s * 2**L2.ACT_SHIFT)[:, None]  # v units per unit of x
    cuba = pop.kind in ("CubaLIF", "CubaLI")
    nrn = layer.neuron
    rec = layer.rec if pop.w_rec is not None else None
    bias_x = pop.b_ff * pop.step_gain() / thr * s * 2**L2.ACT_SHIFT
    leak = pop.leak_bias() / thr * s * 2**L2.ACT_SHIFT
    tau = pop.p.get("tau", pop.p.get("tau_mem"))
    return _Units(
        w_ff=pop.w_ff * k, w_rec=None if rec is None else pop.w_rec * k,
        q_ff=layer.ff.effective().astype(np.float64), e_ff=layer.ff.weight_exp,
        q_rec=None if rec is None else rec.effective().astype(np.float64), e_rec=0 if rec is None else rec.weight_exp,
        delays=pop.delays if rec is None else rec.delays.astype(np.int64),
        alpha=float(1 - 1 / pop.p["tau_syn"][0]) if cuba else 0.0,
        beta=float(1 - 1 / tau[0]) if tau is not None else 1.0,
        du=nrn.du, dv=nrn.dv,
        thr=s * 2**L2.ACT_SHIFT if pop.spiking else np.inf,
        vth=float(L2.scaled_threshold(nrn.vth)) if pop.spiking else np.inf,
        bias_u=bias_x if cuba else np.zeros(pop.n), bias_v=leak + (0 if cuba else bias_x),
        bias_int=nrn.bias().astype(np.float64), cuba=cuba)


def _weights(w: np.ndarray, q: np.ndarray, e: int, on: frozenset[str]) -> np.ndarray:
    """The weights (v units, floats) a replay uses: exact, rounded, clipped or both (= integer);
    ``jitter``: exact plus a uniform random error of up to half a grid step (the largest rounding
    error, no grid; the grid of mixed-sign 8-bit weights has a step of 2 units)."""
    if "jitter" in on:
        unit = 2.0 ** (e + L2.ACT_SHIFT)
        return w + np.random.default_rng(JITTER_SEED).uniform(-1.0, 1.0, w.shape) * unit
    if "rounding" in on and "clipping" in on:
        return q * 2.0 ** (e + L2.ACT_SHIFT)
    unit = 2.0 ** (e + L2.ACT_SHIFT)
    if "rounding" in on:
        return 2 * np.rint(w / unit / 2) * unit
    if "clipping" in on:
        return np.clip(w / unit, -256, 254) * unit
    return w


def _shifted(acc: np.ndarray, e: int, quantized: bool) -> np.ndarray:
    """A connection's sum in v units: with integer weights and a negative exponent Lava floors the
    (unshifted) sum; ``acc`` holds the sum times ``2**(e + 6)``."""
    if quantized and e < 0:
        unit = 2.0 ** (e + L2.ACT_SHIFT)
        return np.floor(np.rint(acc / unit) * 2.0**e) * 2.0**L2.ACT_SHIFT
    return acc


def _run(u_: _Units, x: np.ndarray, on: frozenset[str]) -> tuple[np.ndarray, np.ndarray, float]:
    """One population for all steps on the input spikes ``x`` (batch, steps, n_prev):
    (spikes (batch, steps, n) bool, v after each step (batch, steps, n) in v units, the largest
    |u| reached in v units)."""
    b, steps, _ = x.shape
    quant = "rounding" in on
    w_ff = _weights(u_.w_ff, u_.q_ff, u_.e_ff, on)
    a_ff = np.einsum("btj,ij->bti", x.astype(np.float64), w_ff)
    if quant and u_.e_ff < 0:
        a_ff = _shifted(a_ff, u_.e_ff, True)
    w_rec = None if u_.w_rec is None else _weights(u_.w_rec, u_.q_rec, u_.e_rec, on)
    n = w_ff.shape[0]
    alpha = L2.leak_from_du(u_.du) if "decays" in on else u_.alpha
    beta = L2.leak_from_dv(u_.dv) if "decays" in on else u_.beta
    thr = u_.vth if "threshold" in on else u_.thr
    bias_u = np.zeros(n) if "bias" in on else u_.bias_u
    bias_v = u_.bias_int if "bias" in on else u_.bias_v
    trunc, rng = "truncation" in on, "range" in on
    u, v = np.zeros((b, n)), np.zeros((b, n))
    spikes = np.zeros((b, steps, n), dtype=bool)
    vs = np.zeros((b, steps, n))
    groups = [u_.delays == d for d in np.unique(u_.delays)] if w_rec is not None else []
    cols = np.arange(n)
    peak = 0.0
    for t in range(steps):
        a = a_ff[:, t]
        if w_rec is not None:
            idx = t - 1 - u_.delays
            prev = np.where((idx >= 0)[None, :], spikes[:, np.clip(idx, 0, None), cols], False).astype(np.float64)
            if quant and u_.e_rec < 0:
                a = a + sum(_shifted(prev * g @ w_rec.T, u_.e_rec, True) for g in groups)
            else:
                a = a + prev @ w_rec.T
        u = u * alpha
        if trunc:
            u = np.trunc(u)
        u = u + a + bias_u
        peak = max(peak, float(np.abs(u).max()) if u.size else 0.0)
        if rng:
            u = L2.wrap_current(u)
        v = v * beta
        if trunc:
            v = np.trunc(v)
        v = v + u + bias_v
        if rng:
            v = np.clip(v, L2.V_MIN, L2.V_MAX)
        z = v > thr
        v = np.where(z, 0.0, v)
        spikes[:, t] = z
        vs[:, t] = v
    return spikes, vs, peak


def replay(pops: list[FloatPopulation], net: IntegerNetwork, x: np.ndarray, steps: Iterable[str] = (),
           feed: list[np.ndarray] | None = None) -> tuple[list[np.ndarray], np.ndarray]:
    """Run the graph with the quantization ``steps`` (names from :data:`STEPS`) applied.

    ``x``: (batch, steps, n_in) input spikes. ``feed``: when given, population ``l > 0`` gets
    ``feed[l - 1]`` (e.g. the float reference's spikes) as its input instead of the spikes of the
    population below. Returns (spikes per population, each (batch, steps, n) bool; the readout's
    voltage (batch, steps, n_out) in v units)."""
    on = frozenset(steps)
    bad = on - set(STEPS) - {JITTER}
    if bad:
        raise ValueError(f"unknown quantization steps {sorted(bad)}; known: {', '.join(STEPS)}")
    out, src, v = [], np.asarray(x), None
    for li, (p, layer) in enumerate(zip(pops, net.layers)):
        if feed is not None and li > 0:
            src = feed[li - 1]
        s, v, _ = _run(_units(p, layer), src, on)
        out.append(s)
        src = s
    return out, v


def _figures(ref: np.ndarray, got: np.ndarray) -> dict[str, Any]:
    return {"spikes": int(got.sum()), "count_corr": _corr(ref.sum(1), got.sum(1)),
            "time_jaccard": _jaccard(ref, got)}


def attribute(pops: list[FloatPopulation], net: IntegerNetwork, x: np.ndarray) -> dict[str, Any]:
    """What each quantization step alone costs, per population, against the float reference.

    ``x``: (batch, steps, n_in) input spikes (a few dozen samples suffice). Every population is fed
    the float reference's spikes from below. Returns ``{"reference_spikes": [...], "steps": {name:
    [per population {"spikes", "count_corr", "time_jaccard"}], ..., "all": [...], "jitter": [...]}, "decision": {name:
    agreement}}`` where ``decision`` is the readout's arg-max agreement with the reference (spike
    counts, or mean voltage for a non-spiking readout)."""
    ref = simulate_float(pops, x)
    feed = ref.spikes[:-1]
    spiking = pops[-1].spiking
    d_ref = ref.spikes[-1].sum(1) if spiking else ref.readout_v.mean(1)
    rows: dict[str, list[dict[str, Any]]] = {}
    decision: dict[str, float] = {}
    for name in (*STEPS, "all", JITTER):
        got, v = replay(pops, net, x, STEPS if name == "all" else (name,), feed=feed)
        rows[name] = [_figures(r, g) for r, g in zip(ref.spikes, got)]
        d = got[-1].sum(1) if spiking else v.mean(1)
        decision[name] = float(np.mean(d_ref.argmax(1) == d.argmax(1)))
    return {"reference_spikes": [int(s.sum()) for s in ref.spikes], "steps": rows, "decision": decision}


def format_attribution(att: dict[str, Any], pops: list[FloatPopulation]) -> list[str]:
    """Report lines: per quantization step, each spiking population's spike-count correlation with
    the float reference (and spikes), that step alone, each population fed the reference's spikes."""
    lines = ["attribution: the float reference with one quantization step at a time (each layer fed the reference's "
             "spikes; spike-count correlation, spikes; reference spikes "
             + ", ".join(str(s) for s, p in zip(att["reference_spikes"], pops) if p.spiking) + "):"]
    for name, per in att["steps"].items():
        cells = [f"layer {i} {f['count_corr']:.4f} ({f['spikes']})" for i, (f, p) in enumerate(zip(per, pops))
                 if p.spiking]
        label = {"all": "all steps", JITTER: "(jitter)"}.get(name, name)
        lines.append(f"  {label:<11} " + "; ".join(cells) + f"; decision {100 * att['decision'][name]:.1f} %")
    lines.append("  (jitter: every weight moved at random by up to the rounding's largest error, no grid: the network's "
                 "own sensitivity to 8-bit weights)")
    lines.append("  update order: none to attribute (Loihi's v uses the new current, as NIR's forward Euler)")
    return lines


def replay_layer(pop: FloatPopulation, layer: Layer, x: np.ndarray,
                 steps: Iterable[str] = STEPS) -> tuple[np.ndarray, np.ndarray, float]:
    """One population on its input spikes ``x`` (batch, steps, n_prev) with the quantization
    ``steps`` applied (default all: the integer layer exactly): (spikes (batch, steps, n) bool,
    voltage after each step (batch, steps, n) in v units, largest |u| reached in v units)."""
    return _run(_units(pop, layer), np.asarray(x), frozenset(steps))
