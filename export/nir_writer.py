"""IntegerNetwork -> NIR graph (convention ``crsnn-nir/1``, see :mod:`crsnn.export`), and an
atomic file writer."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import nir
import numpy as np

import crsnn
from crsnn.atomic_write import write_bytes_atomic
from crsnn import loihi2 as L2
from crsnn.export.csgru_refusal import csgru_refusal
from crsnn.models.integer import Connection, IntegerNetwork, LIFParams, Recurrence

FORMAT = "crsnn-nir/1"
EVEN_KERNEL = ("'same' padding of an even kernel puts the extra tap on one side, and NIR tools disagree on which; "
               "use an odd kernel size (3, 5, 7)")


def _row(x: Any, n: int) -> np.ndarray:
    return np.broadcast_to(np.asarray(x, dtype=np.float64), (n,)).reshape(1, n).copy()


def _weight_meta(conn: Connection | Recurrence) -> dict[str, Any]:
    return {"weight_exp": int(conn.weight_exp), "num_weight_bits": int(conn.num_weight_bits),
            "sign_mode": int(conn.resolved_sign_mode())}


def _float_weights(effective: np.ndarray, weight_exp: int) -> np.ndarray:
    return effective.astype(np.float64) * (2.0**weight_exp)


def neuron_node(nrn: LIFParams, readout: bool) -> tuple[str, nir.NIRNode]:
    """The NIR neuron node of a population and its kind (``lif``, ``if``, ``cubalif``, ``li``,
    ``i``, ``cubali``). Time constants in steps, voltages in activation units."""
    n = nrn.n
    meta = {"du": nrn.du, "dv": nrn.dv, "vth": nrn.vth, "bias_mant": nrn.bias_mant.astype(np.int64),
            "bias_exp": nrn.bias_exp.astype(np.int64), "readout": int(readout)}
    tau_mem = L2.DECAY_UNITY / nrn.dv if nrn.dv > 0 else np.inf
    spiking = not (readout and nrn.vth == L2.VTH_MAX)
    zero = _row(0.0, n)
    thr = _row(float(nrn.vth), n)
    if nrn.du == L2.DECAY_MAX:  # no current memory
        if nrn.dv == 0:
            if spiking:
                return "if", nir.IF(r=_row(1.0, n), v_threshold=thr, v_reset=zero, metadata=meta)
            return "i", nir.I(r=_row(1.0, n), metadata=meta)
        if spiking:
            return "lif", nir.LIF(tau=_row(tau_mem, n), r=_row(tau_mem, n), v_leak=zero, v_threshold=thr,
                                  v_reset=zero, metadata=meta)
        return "li", nir.LI(tau=_row(tau_mem, n), r=_row(tau_mem, n), v_leak=zero, metadata=meta)
    tau_syn = L2.DECAY_UNITY / (nrn.du + 1)
    common = dict(tau_syn=_row(tau_syn, n), tau_mem=_row(tau_mem, n), r=_row(tau_mem, n), v_leak=zero,
                  w_in=_row(tau_syn, n), metadata=meta)
    if spiking:
        return "cubalif", nir.CubaLIF(v_threshold=thr, v_reset=zero, **common)
    return "cubali", nir.CubaLI(**common)


def to_nir(net: IntegerNetwork, dt: float, metadata: dict[str, Any] | None = None) -> nir.NIRGraph:
    """The NIR graph of ``net``. ``dt``: the length of one time step in seconds (metadata only:
    time constants and delays in the graph are in steps). ``metadata``: extra graph metadata
    (values must be str/int/float/arrays; ``None`` values are dropped)."""
    net.validate()
    if not dt > 0:
        raise ValueError(f"dt must be a positive number of seconds, got {dt}")
    refusal = csgru_refusal(net, "nir")
    if refusal:
        raise ValueError(refusal)
    for li, layer in enumerate(net.hidden):
        if layer.rec is not None and layer.rec.is_conv and layer.rec.kernel.size % 2 == 0:
            raise ValueError(f"hidden layer {li}: conv kernel of even size {layer.rec.kernel.size} cannot be exported: "
                             f"{EVEN_KERNEL}")
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(input_type={"input": np.array([1, net.n_in])})}
    edges: list[tuple[str, str]] = []
    prev = "input"
    for li, layer in enumerate(net.layers):
        readout = li == len(net.hidden)
        tag = "readout" if readout else str(li)
        kind, node = neuron_node(layer.neuron, readout)
        name = "readout" if readout else f"{kind}_{li}"
        ff = layer.ff
        bias = layer.neuron.bias().astype(np.float64) / (2**L2.ACT_SHIFT)
        if ff.delays is not None:  # per-synapse delays: one Delay + Linear branch per delay value
            from crsnn.export.nir_synaptic_delays import write_branches

            write_branches(nodes, edges, prev, name, tag, ff, bias, _weight_meta(ff))
        else:
            nodes[f"affine_{tag}"] = nir.Affine(weight=_float_weights(ff.effective(), ff.weight_exp)[None],
                                                bias=bias[None], metadata=_weight_meta(ff))
            edges += [(prev, f"affine_{tag}"), (f"affine_{tag}", name)]
        nodes[name] = node
        rec = layer.rec
        if rec is not None:
            nodes[f"delay_{li}"] = nir.Delay(delay=rec.delays.astype(np.int64)[None])
            w = _float_weights(rec.effective_kernel() if rec.is_conv else rec.effective(), rec.weight_exp)
            if rec.is_conv:
                rname = f"conv_{li}"
                nodes[rname] = nir.Conv1d(input_shape=layer.n, weight=w.reshape(1, 1, -1), stride=1, padding="same",
                                          dilation=1, groups=1, bias=np.zeros(1), metadata=_weight_meta(rec))
            else:
                rname = f"linear_{li}"
                nodes[rname] = nir.Linear(weight=w[None], metadata=_weight_meta(rec))
            edges += [(name, f"delay_{li}"), (f"delay_{li}", rname), (rname, name)]
        prev = name
    nodes["output"] = nir.Output(output_type={"output": np.array([1, net.n_out])})
    edges.append((prev, "output"))
    meta = {"format": FORMAT, "dt": float(dt), "input_message_bits": int(net.input_message_bits),
            "crsnn_version": crsnn.__version__}
    for k, v in {**net.metadata, **(metadata or {})}.items():
        if v is not None and k not in meta:
            meta[k] = v
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta, type_check=True)


def nir_bytes(graph: nir.NIRGraph) -> bytes:
    """The NIR file of ``graph`` (HDF5), built in memory."""
    buf = io.BytesIO()
    nir.write(buf, graph)
    return buf.getvalue()


def write_nir_atomic(graph: nir.NIRGraph, path: str | os.PathLike) -> Path:
    """Write ``graph`` to ``path`` atomically (:mod:`crsnn.atomic_write`): the HDF5 image is built
    in memory, so a full disk or a file-size limit is one ``WriteError`` naming the path, never a
    failure inside HDF5, and no partial or temporary file is left."""
    return write_bytes_atomic(path, nir_bytes(graph))
