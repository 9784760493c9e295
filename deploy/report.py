"""Resource report of an integer network for Loihi 2: neurons, synapses, delays and weight bits
per layer, whether each fits, an estimate of the number of neuron cores, synaptic operations
per sample (from simulated spike counts), and NeuroBench's metrics of the deployed integers
(:mod:`crsnn.deploy.neurobench_metrics`).

Loihi 2 figures used (public announcement material, not a datasheet; each is a parameter):

- 128 neuron cores per chip, at most 8192 neurons per core;
- synaptic memory per core: **assumed** 128 KiB (Loihi 1's figure; no verified Loihi 2 number is
  public); a synapse is assumed to cost its weight bits + 6 delay bits (for delayed synapses)
  + an index overhead of 8 bits in a sparse encoding, or its weight bits alone in a dense one;
- fan-in per neuron: **assumed** at most 4096 synapses;
- axonal delays 0..62 steps, 8-bit weights, weight exponent -8..7 (enforced by validation).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from crsnn import loihi2 as L2
from crsnn.deploy.neurobench_metrics import format_neurobench, neurobench_metrics
from crsnn.models.integer import IntegerNetwork


@dataclass(frozen=True)
class Loihi2Limits:
    """Hardware figures the report assumes (see the module docstring)."""

    cores_per_chip: int = L2.CORES_PER_CHIP
    neurons_per_core: int = L2.NEURONS_PER_CORE
    synapse_memory_bits_per_core: int = 128 * 1024 * 8
    max_fan_in: int = 4096
    delay_bits: int = 6
    sparse_index_bits: int = 8


@dataclass
class LayerReport:
    name: str
    neurons: int
    ff_synapses: int
    rec_synapses: int
    recurrence: str
    delay_range: tuple[int, int] | None
    weight_bits: int
    weight_exp: list[int]
    max_fan_in: int
    synapse_bits: int
    cores: int
    fits: bool
    problems: list[str] = field(default_factory=list)
    synops_per_sample: float | None = None
    spikes_per_sample: float | None = None


def _bits(n_synapses: int, weight_bits: int, delayed: bool, sparse: bool, lim: Loihi2Limits) -> int:
    per = weight_bits + (lim.delay_bits if delayed else 0) + (lim.sparse_index_bits if sparse else 0)
    return n_synapses * per


def _gate_matrices(layer) -> tuple[np.ndarray, list[np.ndarray]]:
    """A CS-GRU layer's gate connections: the reset gate's feedforward effective weights and the
    two gate recurrences' (n, n) effective matrices."""
    g = layer.gates
    return g.r_ff.effective(), [g.r_rec.effective(), g.z_rec.effective()]


def network_report(net: IntegerNetwork, hidden_spikes: list[np.ndarray] | None = None,
                   inputs: np.ndarray | None = None, limits: Loihi2Limits = Loihi2Limits()) -> dict[str, Any]:
    """Per-layer resources and fit. With ``inputs`` (batch, steps, n_in) and the simulated
    ``hidden_spikes`` (list of (batch, steps, n)), also synaptic operations per sample: every
    input event or spike counts one operation per non-zero outgoing synapse (graded inputs count
    one event per non-zero payload)."""
    layers: list[LayerReport] = []
    sources = [inputs] + list(hidden_spikes or []) if inputs is not None and hidden_spikes is not None else None
    for li, layer in enumerate(net.layers):
        name = f"hidden {li}" if li < len(net.hidden) else "readout"
        ff_eff = layer.ff.effective()
        ff_nnz = int(np.count_nonzero(ff_eff))
        rec = layer.rec
        rec_eff = rec.effective() if rec is not None else np.zeros((layer.n, 0))
        rec_nnz = int(np.count_nonzero(rec_eff))
        fan_in = int((np.count_nonzero(ff_eff, axis=1) + (np.count_nonzero(rec_eff, axis=1) if rec is not None else 0)).max())
        wbits = max(layer.ff.num_weight_bits, rec.num_weight_bits if rec is not None else 0)
        sparse_ff = ff_nnz < 0.5 * ff_eff.size
        bits = _bits(ff_nnz, layer.ff.num_weight_bits, layer.ff.delays is not None, sparse_ff, limits)
        if rec is not None:
            bits += _bits(rec_nnz, rec.num_weight_bits, True, rec.is_conv, limits)
        problems = []
        if layer.gates is not None:  # CS-GRU: the gates' synapses, and its neuron is not Lava's LIF
            g_ff, g_rec = _gate_matrices(layer)
            ff_nnz += int(np.count_nonzero(g_ff))
            rec_nnz += int(sum(np.count_nonzero(m) for m in g_rec))
            bits += _bits(int(np.count_nonzero(g_ff)), layer.gates.r_ff.num_weight_bits, False, False, limits)
            bits += sum(_bits(int(np.count_nonzero(m)), 8, True, True, limits) for m in g_rec)
            problems.append("CS-GRU neurons need a programmable neuron model (see below)")
        cores = max(math.ceil(layer.n / limits.neurons_per_core), math.ceil(bits / limits.synapse_memory_bits_per_core), 1)
        if fan_in > limits.max_fan_in:
            problems.append(f"fan-in {fan_in} > {limits.max_fan_in}")
        if rec is not None and (rec.delays.min() < L2.DELAY_MIN or rec.delays.max() > L2.DELAY_MAX):
            problems.append("delays outside 0..62")
        rep = LayerReport(
            name=name, neurons=layer.n, ff_synapses=ff_nnz, rec_synapses=rec_nnz,
            recurrence="none" if rec is None else (f"{'csgru' if layer.gates is not None else 'conv'} k={rec.kernel.size}"
                                                   if rec.is_conv else "dense"),
            delay_range=None if rec is None else (int(rec.delays.min()), int(rec.delays.max())),
            weight_bits=wbits, weight_exp=[layer.ff.weight_exp] + ([rec.weight_exp] if rec is not None else []),
            max_fan_in=fan_in, synapse_bits=bits, cores=cores, fits=not problems, problems=problems)
        if sources is not None:
            batch = sources[0].shape[0]
            src = sources[li]
            fan_out_ff = np.count_nonzero(ff_eff, axis=0)  # per presynaptic neuron
            ops = float((np.count_nonzero(src, axis=1) * fan_out_ff[None, :]).sum()) / batch
            if rec is not None:
                own = sources[li + 1]
                ops += float((own.sum(axis=1) * np.count_nonzero(rec_eff, axis=0)[None, :]).sum()) / batch
            if layer.gates is not None:
                ops += float((np.count_nonzero(src, axis=1) * np.count_nonzero(g_ff, axis=0)[None, :]).sum()) / batch
                for m in g_rec:
                    ops += float((sources[li + 1].sum(axis=1) * np.count_nonzero(m, axis=0)[None, :]).sum()) / batch
            rep.synops_per_sample = ops
            if li < len(net.hidden):
                rep.spikes_per_sample = float(sources[li + 1].sum()) / batch
        layers.append(rep)
    total_cores = sum(r.cores for r in layers)
    out = {
        "layers": [asdict(r) for r in layers],
        "total": {
            "neurons": sum(r.neurons for r in layers),
            "synapses": sum(r.ff_synapses + r.rec_synapses for r in layers),
            "recurrent_synapses": sum(r.rec_synapses for r in layers),
            "cores": total_cores,
            "chips": math.ceil(total_cores / limits.cores_per_chip),
            "fits": all(r.fits for r in layers),
            "synops_per_sample": (sum(r.synops_per_sample for r in layers) if sources is not None else None),
        },
        "assumptions": asdict(limits),
        # footprint, connection / activation sparsity, synaptic operations, neuron updates
        "neurobench": neurobench_metrics(net, inputs if sources is not None else None,
                                         hidden_spikes if sources is not None else None),
    }
    return out


def format_report(rep: dict[str, Any]) -> str:
    """A fixed-width table of :func:`network_report`."""
    rows = [("layer", "neurons", "ff syn", "rec syn", "recurrence", "delays", "w bits", "w exp", "fan-in",
             "cores", "fits", "synops/sample")]
    for r in rep["layers"]:
        d = "-" if r["delay_range"] is None else f"{r['delay_range'][0]}..{r['delay_range'][1]}"
        ops = "-" if r["synops_per_sample"] is None else f"{r['synops_per_sample']:.0f}"
        rows.append((r["name"], str(r["neurons"]), str(r["ff_synapses"]), str(r["rec_synapses"]), r["recurrence"], d,
                     str(r["weight_bits"]), ",".join(map(str, r["weight_exp"])), str(r["max_fan_in"]), str(r["cores"]),
                     "yes" if r["fits"] else "NO: " + "; ".join(r["problems"]), ops))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    t, a = rep["total"], rep["assumptions"]
    lines.append(f"total: {t['neurons']} neurons, {t['synapses']} synapses ({t['recurrent_synapses']} recurrent), "
                 f"~{t['cores']} neuron cores ({t['chips']} chip{'s' if t['chips'] != 1 else ''}); "
                 f"fits Loihi 2: {'yes' if t['fits'] else 'NO'}"
                 + (f"; {t['synops_per_sample']:.0f} synaptic ops per sample" if t["synops_per_sample"] is not None else ""))
    lines.append(f"assumed: {a['neurons_per_core']} neurons/core, {a['synapse_memory_bits_per_core'] // 8192} KiB synapse "
                 f"memory/core (unverified for Loihi 2), fan-in <= {a['max_fan_in']}, {a['cores_per_chip']} cores/chip")
    if any(r["recurrence"].startswith("csgru") for r in rep["layers"]):
        lines.append("CS-GRU: " + L2.csgru_hardware_needs())
    if rep.get("neurobench") is not None:
        lines.append(format_neurobench(rep["neurobench"]))
    return "\n".join(lines)
