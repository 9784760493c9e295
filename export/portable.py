"""IntegerNetwork -> a *portable* NIR graph: what other tools (snnTorch, Norse, nirtorch, ...) open.

The ``crsnn-nir/1`` graph (:mod:`crsnn.export.nir_writer`) is exact for crsnn but uses conventions
other readers reject (``(1, N)`` shapes, 3-D weights, time in steps, a recurrent ``Conv1d``). The
portable graph says the same network in plain NIR:

- shapes ``(N,)``: ``Input``/``Output`` types ``[N]``, weights ``(N_out, N_in)``, parameters ``(N,)``;
- time in **seconds**: ``tau = dt * 4096 / dv``, ``tau_syn = dt * 4096 / (du + 1)``, with
  ``r = tau / dt`` (and ``w_in = tau_syn / dt``) so that forward Euler with step ``dt`` gives
  exactly ``v[t] = (1 - dv/4096) v + I`` (``IF``: ``r = 1 / dt``). snnTorch's importer assumes
  ``dt = 1e-4`` s: export with ``--dt 1e-4`` for it;
- weights in activation units (``effective integer weight * 2**weight_exp``, as ``crsnn-nir/1``);
- the bias where NIR's equations put it: on the ``Affine`` for ``LIF``/``IF`` (its gain ``r dt / tau``
  is 1, so it adds ``b`` per step), in ``v_leak = b * tau_mem / dt`` for ``CubaLIF`` (an ``Affine`` bias
  would pass through the synaptic filter);
- the readout is the spiking neuron it is on Loihi 2, with its (normally unreachable) threshold
  ``vth``, not an ``LI`` (which several importers lack);
- a recurrence is a ``Linear`` node in a cycle: the conv kernel expanded to its exact (Toeplitz)
  matrix (:func:`crsnn.models.integer.conv_matrix`), preceded by a ``Delay`` (seconds, ``d * dt``)
  only when some delay is non-zero.

What plain NIR cannot say: crsnn's one-step latency per synaptic hop (a NIR importer delivers a
spike in the same step, so layer ``l`` of an importer runs ``l + 1`` steps ahead of crsnn), Loihi's
per-step truncation of the decays, and the 24-bit limits. Metadata: ``format = 'crsnn-portable/1'``,
``dt`` (seconds).
"""

from __future__ import annotations

from typing import Any

import nir
import numpy as np

import crsnn
from crsnn import loihi2 as L2
from crsnn.models.integer import IntegerNetwork, LIFParams, conv_matrix

PORTABLE_FORMAT = "crsnn-portable/1"


def _neuron(nrn: LIFParams, dt: float, bias: np.ndarray) -> tuple[nir.NIRNode, bool]:
    """(node, bias_in_node) for one population: time constants in seconds."""
    n = nrn.n
    thr, zero = np.full(n, float(nrn.vth)), np.zeros(n)
    if nrn.du == L2.DECAY_MAX:
        if nrn.dv == 0:
            return nir.IF(r=np.full(n, 1.0 / dt), v_threshold=thr, v_reset=zero), False
        tau = dt * L2.DECAY_UNITY / nrn.dv
        return nir.LIF(tau=np.full(n, tau), r=np.full(n, tau / dt), v_leak=zero, v_threshold=thr, v_reset=zero), False
    tau_syn = dt * L2.DECAY_UNITY / (nrn.du + 1)
    steps_mem = L2.DECAY_UNITY / nrn.dv if nrn.dv > 0 else np.inf
    if not np.isfinite(steps_mem):
        raise ValueError("a CubaLIF population without voltage leak (dv = 0) has no portable NIR form "
                         "(NIR's CubaLIF needs a finite tau_mem)")
    tau_mem = dt * steps_mem
    return nir.CubaLIF(tau_syn=np.full(n, tau_syn), tau_mem=np.full(n, tau_mem), r=np.full(n, steps_mem),
                       v_leak=bias * steps_mem, w_in=np.full(n, tau_syn / dt), v_threshold=thr, v_reset=zero), True


def to_portable_nir(net: IntegerNetwork, dt: float, metadata: dict[str, Any] | None = None) -> nir.NIRGraph:
    """The portable NIR graph of ``net`` (see the module docstring). ``dt``: one time step in
    seconds (the unit of every time constant and delay in the graph)."""
    net.validate()
    if not dt > 0:
        raise ValueError(f"dt must be a positive number of seconds, got {dt}")
    from crsnn.export.csgru_refusal import csgru_refusal

    refusal = csgru_refusal(net, "portable")
    if refusal:
        raise ValueError(refusal)
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(input_type={"input": np.array([net.n_in])})}
    edges: list[tuple[str, str]] = []
    prev = "input"
    for li, layer in enumerate(net.layers):
        tag = "readout" if li == len(net.hidden) else str(li)
        bias = layer.neuron.bias().astype(np.float64) / 2**L2.ACT_SHIFT  # activation units per step
        node, bias_in_node = _neuron(layer.neuron, dt, bias)
        w = layer.ff.effective().astype(np.float64) * 2.0**layer.ff.weight_exp
        nodes[f"affine_{tag}"] = nir.Affine(weight=w, bias=np.zeros(layer.n) if bias_in_node else bias)
        name = f"{type(node).__name__.lower()}_{tag}"
        nodes[name] = node
        edges += [(prev, f"affine_{tag}"), (f"affine_{tag}", name)]
        rec = layer.rec
        if rec is not None:
            m = (conv_matrix(rec.effective_kernel(), rec.n) if rec.is_conv else rec.effective()).astype(np.float64)
            nodes[f"rec_{li}"] = nir.Linear(weight=m * 2.0**rec.weight_exp)
            if np.any(rec.delays != 0):
                nodes[f"delay_{li}"] = nir.Delay(delay=rec.delays.astype(np.float64) * dt)
                edges += [(name, f"delay_{li}"), (f"delay_{li}", f"rec_{li}")]
            else:
                edges.append((name, f"rec_{li}"))
            edges.append((f"rec_{li}", name))
        prev = name
    nodes["output"] = nir.Output(output_type={"output": np.array([net.n_out])})
    edges.append((prev, "output"))
    meta = {"format": PORTABLE_FORMAT, "dt": float(dt), "crsnn_version": crsnn.__version__}
    meta.update({k: v for k, v in (metadata or {}).items() if v is not None and k not in meta})
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta, type_check=False)
