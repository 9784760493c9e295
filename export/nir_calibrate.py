"""``crsnn-import --calibrate``: per population, the scale (integer threshold ``vth``, activation
units per threshold) and recurrent weight exponent that agree best with the float reference.

Candidates: the default scale times powers of 2**(1/16) over two octaves down and one up, and the
scales at which a weight matrix stored on an 8-bit grid (a network trained or exported with 8-bit
weights) lands exactly on Loihi's grid (:func:`aligned_scales`); each with the recurrent exponent
as the default rule sets it and one lower.

The default rule (:func:`crsnn.export.nir_reader.load_nir`) takes the largest scale that keeps the
threshold, the bias and the worst-case current in range. Once the current cannot wrap, a scale
changes the network only through where the 8-bit weight grid falls relative to the float weights
(a factor 2 changes nothing but the exponents), and a recurrent exponent one lower halves the
recurrent weights' rounding at the cost of clipping the largest. Recurrent networks can amplify
such small differences, so the best choice is measured, not derived: every candidate population
runs bit-exactly (:func:`crsnn.export.nir_attribution.replay_layer`) on calibration inputs, fed
the float reference's spikes from below; the one with the highest spike-count correlation with the
reference on the first half of the inputs (ties: spike-time agreement) replaces the default only
if it beats it by :data:`MIN_GAIN` on both halves (the best of many noisy figures is optimistic). A
candidate whose current comes within a factor :data:`RANGE_HEADROOM` of the 24-bit limit on the
calibration inputs is refused.
"""

from __future__ import annotations

from typing import Any

import nir
import numpy as np

from crsnn import loihi2 as L2
from crsnn.export.nir_attribution import layer_scale, replay_layer
from crsnn.export.nir_float_ref import FloatPopulation, _corr, _jaccard, simulate_float
from crsnn.export.nir_reader import NIRImportError, load_nir
from crsnn.models.integer import IntegerNetwork

#: Scales tried per population: the default times 2**(k / SCALE_STEPS_PER_OCTAVE), k from
#: -SCALE_OCTAVES_DOWN * SCALE_STEPS_PER_OCTAVE to +SCALE_STEPS_PER_OCTAVE (within 1..VTH_MAX).
SCALE_STEPS_PER_OCTAVE = 16
SCALE_OCTAVES_DOWN = 2
#: Recurrent exponent shifts tried (0: the largest weight fits; -1: finer, the largest clipped).
REC_SHIFTS = (0, -1)
#: A candidate's largest |u| on the calibration inputs must stay below 2**23 / RANGE_HEADROOM.
RANGE_HEADROOM = 4.0
#: A candidate replaces the default only when its spike-count correlation is higher by at least
#: this much: in a recurrent layer any change of the weight grid moves spike times a little, and
#: a smaller gain on a few dozen samples is as likely noise as a better network.
MIN_GAIN = 0.005


def grid_step(w: np.ndarray, levels: int = 127, tol: float = 1e-3) -> float | None:
    """The step ``g`` of the uniform grid the nonzero values of ``w`` sit on when they were
    quantized to ``levels`` steps each side (``w = k g``, ``|k| <= levels``, e.g. a network trained or
    stored with 8-bit weights), else None."""
    top = float(np.max(np.abs(w))) if np.size(w) else 0.0
    if top <= 0:
        return None
    k = np.asarray(w, dtype=np.float64) * levels / top
    return top / levels if np.all(np.abs(k - np.rint(k)) <= tol) else None


def aligned_scales(w: np.ndarray) -> list[float]:
    """Scales at which the grid of ``w`` (threshold-normalised weights, :func:`grid_step`) falls
    exactly on Loihi's mixed-sign 8-bit grid (one source step = 2 units << weight_exp), within the
    17-bit threshold; [] when ``w`` has no such grid."""
    g = grid_step(w)
    if g is None:
        return []
    out = [2.0 ** (e + 1) / g for e in range(L2.WEIGHT_EXP_MIN, L2.WEIGHT_EXP_MAX + 1)]
    return [s for s in out if 1 <= s <= L2.VTH_MAX]


def _score(ref: np.ndarray, got: np.ndarray) -> tuple[float, float]:
    c = _corr(ref.sum(1), got.sum(1))
    return (-1.0 if np.isnan(c) else c), _jaccard(ref, got)


def calibrate(ng: nir.NIRGraph, pops: list[FloatPopulation], net: IntegerNetwork,
              x: np.ndarray) -> tuple[IntegerNetwork, list[dict[str, Any]]]:
    """Choose per spiking population the scale and recurrent exponent shift that agree best with
    the float reference on the calibration inputs ``x`` (batch, steps, n_in).

    ``ng``: the normalized graph (time in steps) that ``net`` (the default quantization) came
    from. Returns (the calibrated network, one row per population: ``name``, ``before`` and
    ``after`` as ``{"scale", "rec_shift", "count_corr", "time_jaccard"}``, ``candidates`` tried);
    a non-spiking readout keeps the default (row with ``after == before``)."""
    x = np.asarray(x)
    half = max(1, len(x) // 2)  # select on the first half, confirm on the second
    ref = simulate_float(pops, x)
    feeds = [x, *ref.spikes[:-1]]
    limit = L2.STATE_HALF / RANGE_HEADROOM
    choices: list[tuple[float | None, int]] = []
    rows: list[dict[str, Any]] = []
    for li, (p, layer) in enumerate(zip(pops, net.layers)):
        s0 = layer_scale(p, layer)
        sp, _, _ = replay_layer(p, layer, feeds[li])
        c0, j0 = _score(ref.spikes[li], sp)
        before = {"scale": s0, "rec_shift": 0, "count_corr": c0, "time_jaccard": j0}
        if not p.spiking:
            choices.append((None, 0))
            rows.append({"name": p.name, "before": before, "after": dict(before), "candidates": 1})
            continue
        c0a, j0a = _score(ref.spikes[li][:half], sp[:half])
        best, key, tried, best_spikes = (None, 0), (c0a, j0a, 1), 1, sp
        ks = range(-SCALE_OCTAVES_DOWN * SCALE_STEPS_PER_OCTAVE, SCALE_STEPS_PER_OCTAVE + 1)
        scales = {int(np.rint(s0 * 2.0 ** (k / SCALE_STEPS_PER_OCTAVE))) for k in ks}
        norm = (p.step_gain() / (p.p["v_threshold"] if p.spiking else 1.0))[:, None]
        for w in (p.w_ff, p.w_rec):
            if w is not None:
                scales |= {int(np.rint(a)) for a in aligned_scales(w * norm)}
        scales = sorted(scales - {0})
        shifts = REC_SHIFTS if p.w_rec is not None else (0,)
        trial = list(choices) + [(None, 0)] * (len(pops) - li)
        for sc in scales:
            if not 1 <= sc <= L2.VTH_MAX:
                continue
            for sh in shifts:
                if sc == int(s0) and sh == 0:
                    continue
                trial[li] = (float(sc), sh)
                try:
                    cand = load_nir(ng, choices=trial).layers[li]
                except NIRImportError:
                    continue
                spk, _, peak = replay_layer(p, cand, feeds[li])
                tried += 1
                if peak >= limit:
                    continue
                c, j = _score(ref.spikes[li][:half], spk[:half])
                if (c, j, 0) > key:
                    best, key, best_spikes = (float(sc), sh), (c, j, 0), spk
        if best[0] is not None and half < len(x):  # the winner must also beat the default on unseen samples
            cb, _ = _score(ref.spikes[li][half:], best_spikes[half:])
            c0b, _ = _score(ref.spikes[li][half:], sp[half:])
            if not (cb >= c0b + MIN_GAIN and key[0] >= c0a + MIN_GAIN):
                best = (None, 0)
        choices.append(best)
        if best[0] is None:
            after = before
        else:
            c, j = _score(ref.spikes[li], best_spikes)
            after = {"scale": best[0], "rec_shift": best[1], "count_corr": c, "time_jaccard": j}
        rows.append({"name": p.name, "before": before, "after": dict(after), "candidates": tried})
    return load_nir(ng, choices=choices), rows


def format_calibration(rows: list[dict[str, Any]], inputs: str) -> list[str]:
    """Report lines: per population the default and the calibrated choice with their agreement."""
    lines = [f"calibration on {inputs} (each layer fed the float reference's spikes):"]
    for i, r in enumerate(rows):
        b, a = r["before"], r["after"]
        lines.append(f"  layer {i} '{r['name']}': scale {b['scale']:g} -> {a['scale']:g}, recurrent exponent shift "
                     f"{a['rec_shift']:+d}; spike-count correlation {b['count_corr']:.4f} -> {a['count_corr']:.4f}, "
                     f"spike-time agreement {b['time_jaccard']:.3f} -> {a['time_jaccard']:.3f} "
                     f"({r['candidates']} candidates)")
    return lines
