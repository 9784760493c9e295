"""NeuroBench metrics of a deployed integer network, measured from the integer simulator's spikes.

The definitions follow NeuroBench 2.3.0 (``neurobench.metrics``), applied to the integers that are
deployed (:class:`~crsnn.models.integer.IntegerNetwork`) instead of a PyTorch module, so that every
synapse counts, the recurrent and delayed ones included (NeuroBench hooks only ``nn.Linear``,
``nn.Conv*`` and ``nn.RNNCellBase`` modules: a convolutional recurrence written as a function, an
axonal delay buffer or a custom neuron is invisible to it). ``tests/test_neurobench_metrics.py``
runs the real ``neurobench`` package on an snnTorch network with the same weights and spikes and
checks that both agree where NeuroBench can see the network, and by how much they differ where it
cannot.

Static metrics (no data):

- **footprint** (bytes): every integer the deployed network stores, each in the smallest whole
  number of bytes that holds its Loihi 2 range: weights (<= 8 bits) 1 byte, delays (0..62) 1 byte,
  bias mantissas (13 bits) 2 bytes, bias exponents 1 byte, current / voltage decays (12 bits)
  2 bytes each and thresholds (17 bits) 4 bytes per population. NeuroBench's ``Footprint`` is the
  bytes of a PyTorch module's parameters and buffers (4 per float32 value); weight matrices count
  in full, zeros included, here too; a convolutional recurrence counts its kernel (``k`` values).
- **parameters**: how many values the footprint counts.
- **connection sparsity** (0..1): zero weights / all weights of the weight tensors as NeuroBench
  counts them (``ConnectionSparsity``: ``nn.Linear`` matrices and ``nn.Conv1d`` kernels), on the
  effective weights Lava uses; ``connection_sparsity_synapses`` is the same over the expanded
  synapse matrices (a convolution's banded n x n matrix), i.e. over the synapses a chip stores.

Workload metrics (over a data set, per sample):

- **activation sparsity** (0..1): 1 - spikes / (neurons x steps x samples) over the hidden layers
  (NeuroBench's ``ActivationSparsity`` over every spiking-neuron module; the readout is a
  non-spiking integrator whose voltage is read, like a NeuroBench model's output layer without a
  neuron module).
- **synaptic operations** (per sample; NeuroBench's ``SynapticOperations``):
  ``effective_acs``: every non-zero source value (spike, or input event) times its number of
  non-zero outgoing weights, summed over steps, when all the values a connection receives are in
  {-1, 0, 1} (accumulates); ``effective_macs``: the same count for a connection fed graded values
  (multiply-accumulates: graded input payloads); ``dense``: the operations of the same connections
  with every source active and every weight non-zero (steps x structural synapses), zero
  operations included. Recurrent and gate connections count here, with their delays.
- **neuron updates** (per sample): neurons x steps, every population including the readout: Loihi 2
  updates every neuron of a core at every step. NeuroBench's ``MembraneUpdates`` counts instead,
  per snnTorch neuron module, the steps at which a membrane value changed (all neurons at the
  first step).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from crsnn.models.integer import IntegerNetwork, Layer, conv_matrix

#: bytes per stored integer (see the module docstring)
WEIGHT_BYTES, DELAY_BYTES, BIAS_MANT_BYTES, BIAS_EXP_BYTES, DECAY_BYTES, VTH_BYTES = 1, 1, 2, 1, 2, 4


def _layer_name(net: IntegerNetwork, li: int) -> str:
    return f"hidden {li}" if li < len(net.hidden) else "readout"


def _connections(layer: Layer) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray | None, int]]:
    """``[(kind, counted weights, (n_out, n_src) effective synapse matrix, structural mask or None,
    delays stored)]`` of one layer; kind ``"ff"`` (fed by the previous layer or the input) or
    ``"rec"`` (fed by the layer's own spikes). ``counted weights`` is the tensor NeuroBench would
    count (a conv kernel, a matrix); the structural mask marks the synapses that exist whatever
    their weight (None: all of the matrix)."""
    out: list[tuple[str, np.ndarray, np.ndarray, np.ndarray | None, int]] = []
    ff = layer.ff
    ff_delays = 0 if ff.delays is None else int(ff.delays.size)
    out.append(("ff", ff.effective(), ff.effective(), None, ff_delays))
    recs = [layer.rec] if layer.rec is not None else []
    if layer.gates is not None:
        g = layer.gates
        r_ff_delays = 0 if g.r_ff.delays is None else int(g.r_ff.delays.size)
        out.append(("ff", g.r_ff.effective(), g.r_ff.effective(), None, r_ff_delays))
        recs += [g.r_rec, g.z_rec]
    for i, rec in enumerate(recs):
        n_delays = rec.n if i == 0 else 0  # the gates share the layer's axonal delays
        if rec.is_conv:
            mask = conv_matrix(np.ones_like(rec.kernel), rec.n) != 0
            out.append(("rec", rec.effective_kernel(), rec.effective(), mask, n_delays))
        else:
            out.append(("rec", rec.effective(), rec.effective(), None, n_delays))
    return out


def static_metrics(net: IntegerNetwork) -> dict[str, Any]:
    """Footprint (bytes), parameter count and connection sparsity of ``net`` (module docstring)."""
    params = footprint = 0
    zeros = weights = syn_zeros = syn_all = 0
    for layer in net.layers:
        for _, counted, matrix, mask, n_delays in _connections(layer):
            params += counted.size + n_delays
            footprint += counted.size * WEIGHT_BYTES + n_delays * DELAY_BYTES
            zeros += int(np.count_nonzero(counted == 0))
            weights += counted.size
            structural = np.ones(matrix.shape, dtype=bool) if mask is None else mask
            syn_all += int(structural.sum())
            syn_zeros += int(np.count_nonzero((matrix == 0) & structural))
        n = layer.n
        params += 2 * n + 3  # bias mantissa and exponent per neuron; du, dv, vth per population
        footprint += n * (BIAS_MANT_BYTES + BIAS_EXP_BYTES) + 2 * DECAY_BYTES + VTH_BYTES
        if layer.gates is not None:  # gate biases (mantissa, exponent) and w_z per neuron, z_shift
            params += 5 * n + 1
            footprint += n * (2 * (BIAS_MANT_BYTES + BIAS_EXP_BYTES) + WEIGHT_BYTES) + 1
    return {
        "footprint_bytes": int(footprint),
        "parameters": int(params),
        "connection_sparsity": zeros / weights if weights else 0.0,
        "connection_sparsity_synapses": syn_zeros / syn_all if syn_all else 0.0,
    }


def _ops(src: np.ndarray, matrix: np.ndarray, mask: np.ndarray | None) -> tuple[float, float, bool]:
    """(effective ops, dense ops, graded) of one connection over a batch, summed over samples.
    src: (batch, steps, n_src) values the connection receives; matrix: (n_out, n_src)."""
    batch, steps, n_src = src.shape
    fan_out = np.count_nonzero(matrix, axis=0).astype(np.int64)  # (n_src,) non-zero outgoing weights
    active = np.count_nonzero(src, axis=1).astype(np.int64)  # (batch, n_src) steps with a value
    effective = float((active * fan_out[None, :]).sum())
    structural = matrix.size if mask is None else int(mask.sum())
    graded = bool(np.any((src != 0) & (src != 1) & (src != -1)))
    return effective, float(batch * steps * structural), graded


def workload_metrics(net: IntegerNetwork, inputs: np.ndarray, hidden_spikes: list[np.ndarray]) -> dict[str, Any]:
    """Activation sparsity, synaptic operations and neuron updates per sample of ``net`` run on
    ``inputs`` (batch, steps, n_in) integers, from the simulated ``hidden_spikes`` (list of bool
    (batch, steps, n_l)); see the module docstring for each definition."""
    inputs = np.asarray(inputs)
    batch, steps, _ = inputs.shape
    if batch == 0:
        raise ValueError("workload metrics need at least one sample")
    acs = macs = dense = 0.0
    per_layer = []
    sources = [inputs] + list(hidden_spikes)
    for li, layer in enumerate(net.layers):
        lay_eff = lay_dense = 0.0
        for kind, _, matrix, mask, _ in _connections(layer):
            src = sources[li] if kind == "ff" else sources[li + 1]
            eff, den, graded = _ops(src, matrix, mask)
            if graded:
                macs += eff
            else:
                acs += eff
            dense += den
            lay_eff += eff
            lay_dense += den
        per_layer.append({"layer": _layer_name(net, li), "effective_ops": lay_eff / batch,
                          "dense_ops": lay_dense / batch})
    spikes = sum(float(np.count_nonzero(s)) for s in hidden_spikes)
    slots = sum(float(s.size) for s in hidden_spikes)
    return {
        "samples": int(batch),
        "steps": int(steps),
        "activation_sparsity": 1.0 - spikes / slots if slots else 0.0,
        "synaptic_operations": {"effective_macs": macs / batch, "effective_acs": acs / batch, "dense": dense / batch},
        "synaptic_operations_per_layer": per_layer,
        "neuron_updates": float(sum(layer.n for layer in net.layers) * steps),
    }


def neurobench_metrics(net: IntegerNetwork, inputs: np.ndarray | None = None,
                       hidden_spikes: list[np.ndarray] | None = None) -> dict[str, Any]:
    """The static metrics and, given ``inputs`` and their ``hidden_spikes``, the workload metrics
    (None without data)."""
    out: dict[str, Any] = {"definitions": "NeuroBench 2.3.0, on the deployed integer network (crsnn.deploy.neurobench_metrics)"}
    out.update(static_metrics(net))
    out["workload"] = (workload_metrics(net, inputs, hidden_spikes)
                       if inputs is not None and hidden_spikes is not None else None)
    return out


def format_neurobench(m: dict[str, Any]) -> str:
    """Two or three lines of text for :func:`neurobench_metrics`."""
    lines = [f"NeuroBench (deployed integers): footprint {m['footprint_bytes']} bytes ({m['parameters']} values), "
             f"connection sparsity {m['connection_sparsity']:.4f} "
             f"({m['connection_sparsity_synapses']:.4f} over the expanded synapse matrices)"]
    w = m.get("workload")
    if w is not None:
        so = w["synaptic_operations"]
        lines.append(f"  per sample over {w['samples']} samples x {w['steps']} steps: activation sparsity "
                     f"{w['activation_sparsity']:.4f}; synaptic ops: {so['effective_acs']:.0f} effective ACs + "
                     f"{so['effective_macs']:.0f} effective MACs vs {so['dense']:.0f} dense; "
                     f"neuron updates {w['neuron_updates']:.0f}")
    return "\n".join(lines)
