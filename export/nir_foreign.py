"""Graphs as other libraries write them -> the plain chain form :mod:`crsnn.export.nir_reader`
quantizes, with every time constant in **time steps**.

snnTorch, Norse, Sinabs and Rockpool all write valid-looking NIR that differs in details the
reader should not have to know about. :func:`normalize_foreign` takes such a graph and returns an
equivalent one (same NIR semantics, see :mod:`crsnn.export.nir_float_ref`) in which:

- **nested subgraphs are flattened** (snnTorch's ``RLeaky``/``RSynaptic`` without nirtorch's
  flattening): node ``g`` holding ``lif`` becomes ``g.lif``; edges into ``g`` go to the successors
  of its ``Input``, edges out of ``g`` leave from the predecessors of its ``Output``;
- **shapes are plain vectors**: weights ``(N_out, N_in)`` (leading singleton dimensions dropped),
  neuron parameters and biases ``(N,)``; scalars and one-element arrays are broadcast to the
  population size (taken from the weights that feed it when every parameter is a scalar);
  ``Input``/``Output`` types become ``[N]``: an ``Input`` type ``[1, N]`` (Norse, Rockpool) or one
  with batch/time dimensions (Sinabs ``IAF`` without squeeze) is read as its last dimension when
  that is what the first weight node consumes;
- **time is counted in steps**: with a step ``dt`` in the graph's time unit, ``tau``, ``tau_mem``,
  ``tau_syn`` are divided by ``dt``; ``IF``/``I`` (``dv/dt = r x``) get ``r * dt``; ``Delay``
  values are divided by ``dt``. ``dt=None`` means the graph already counts in steps;
- **a bias on a recurrent ``Affine`` is folded** into the bias of the feedforward ``Affine`` of
  the same population (a ``Linear`` becomes an ``Affine``): NIR sums every edge into a node, so
  ``W_ff s + b_ff + W_rec s' + b_rec = W_ff s + (b_ff + b_rec) + W_rec s'`` exactly. A recurrent
  ``Conv1d`` bias (one channel) is folded the same way.

What cannot be mapped onto Loihi 2 is refused with :class:`~crsnn.export.nir_reader.NIRImportError`,
one line naming the node, the reason and the nearest supported form: reset by subtraction and
refractory periods (when a node's metadata says so: NIR itself has no field for either),
``Conv2d`` and pooling, and any other node type.
"""

from __future__ import annotations

import os
from typing import Any

import h5py
import nir
import numpy as np

from crsnn.export.nir_reader import NIRImportError
from crsnn.export.nir_writer import FORMAT

NEURON_TYPES = (nir.LIF, nir.CubaLIF, nir.IF, nir.LI, nir.CubaLI, nir.I)
WEIGHT_TYPES = (nir.Affine, nir.Linear, nir.Conv1d)
NEURON_FIELDS = ("tau", "tau_mem", "tau_syn", "r", "w_in", "v_leak", "v_threshold", "v_reset")

_UNSUPPORTED = {
    "Conv2d": ("a 2-D convolution: Lava's Conv process computes in float32 and ignores the weight exponent (no "
               "bit-accurate fixed-point model), and crsnn compiles dense/sparse synapses only",
               "flatten the input and use a Linear/Affine layer, or unroll the convolution into its Linear (Toeplitz) "
               "matrix"),
    "SumPool2d": ("pooling: Lava would need a pooling synapse process with a fixed-point model, which lava-nc 0.10 "
                  "does not have",
                  "fold the pooling into the next Linear/Affine matrix (sum pooling is a fixed 0/1 matrix)"),
    "AvgPool2d": ("pooling: Lava would need a pooling synapse process with a fixed-point model, which lava-nc 0.10 "
                  "does not have",
                  "fold the pooling into the next Linear/Affine matrix (average pooling is a fixed matrix)"),
    "Scale": ("an element-wise gain between nodes: Loihi 2 synapses are the only place a signal is scaled",
              "multiply the scale into the weights of the next Linear/Affine node"),
    "Threshold": ("a stateless threshold unit: Loihi 2 spikes only from neurons with state",
                  "an IF neuron with v_reset = 0, or a LIF with a short tau"),
}


def is_crsnn_graph(g: nir.NIRGraph) -> bool:
    """True for a graph written by crsnn-export (metadata ``format == 'crsnn-nir/1'``): read exactly."""
    fmt = dict(g.metadata or {}).get("format")
    return (fmt.decode() if isinstance(fmt, bytes) else fmt) == FORMAT


def _no_type_check(d: Any) -> Any:
    """Mark every (nested) graph of a serialised dictionary as not to be type-checked."""
    if isinstance(d, dict):
        if d.get("type") == "NIRGraph":
            d["type_check"] = False
        for v in d.values():
            _no_type_check(v)
    return d


def read_tolerant(path: str | os.PathLike) -> nir.NIRGraph:
    """Read a NIR file without NIR's type check at any nesting level (``nir.read(type_check=False)``
    still checks nested subgraphs). Exporters write ``Input`` types ``[1, N]`` in front of
    ``Affine`` nodes that take ``[N]``; the shapes are reconciled by :func:`normalize_foreign`."""
    try:
        with h5py.File(path, "r") as f:
            d = nir.serialization.hdf2dict(f["node"])
        return nir.dict2NIRNode(_no_type_check(d))
    except Exception as exc:  # noqa: BLE001 - h5py/nir raise many types
        raise NIRImportError(f"{path}: not a readable NIR file ({type(exc).__name__}: {exc})".replace("\n", " ")) from None


# ------------------------------------------------------------------------------------ flattening
def flatten_subgraphs(g: nir.NIRGraph, prefix: str = "") -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Nodes and edges of ``g`` with every nested :class:`nir.NIRGraph` inlined (names joined by
    '.'; the subgraph's own Input/Output nodes disappear)."""
    nodes: dict[str, Any] = {}
    inner: list[tuple[str, str]] = []
    entry: dict[str, list[str]] = {}  # subgraph name -> the nodes its Input feeds
    exit_: dict[str, list[str]] = {}  # subgraph name -> the nodes that feed its Output
    for name, node in g.nodes.items():
        full = prefix + name
        if not isinstance(node, nir.NIRGraph):
            nodes[full] = node
            continue
        sub_nodes, sub_edges = flatten_subgraphs(node, full + ".")
        ins = {full + "." + k for k, v in node.nodes.items() if isinstance(v, nir.Input)}
        outs = {full + "." + k for k, v in node.nodes.items() if isinstance(v, nir.Output)}
        if len(ins) != 1 or len(outs) != 1 or any(a in ins and b in outs for a, b in sub_edges):
            raise NIRImportError(f"node '{full}' (NIRGraph): a nested subgraph needs exactly one Input and one Output "
                                 f"node, not connected directly, to be inlined")
        entry[full] = [b for a, b in sub_edges if a in ins]
        exit_[full] = [a for a, b in sub_edges if b in outs]
        nodes.update({k: v for k, v in sub_nodes.items() if k not in ins | outs})
        inner += [(a, b) for a, b in sub_edges if a not in ins and b not in outs]
    out: list[tuple[str, str]] = []
    for a, b in g.edges:
        a, b = prefix + a, prefix + b
        out += [(s, d) for s in exit_.get(a, [a]) for d in entry.get(b, [b])]
    return nodes, list(dict.fromkeys(out + inner))


# ------------------------------------------------------------------------------------- checks
def _meta_text(node: Any) -> dict[str, str]:
    m = dict(getattr(node, "metadata", None) or {})
    return {str(k).lower(): (v.decode() if isinstance(v, bytes) else str(v)).lower() for k, v in m.items()}


def check_mappable(name: str, node: Any) -> None:
    """Refuse, in one line, a node crsnn cannot map onto Loihi 2: unsupported node types, reset by
    subtraction or a refractory period (stated in node metadata), a non-zero reset voltage."""
    kind = type(node).__name__
    if kind in _UNSUPPORTED:
        why, nearest = _UNSUPPORTED[kind]
        raise NIRImportError(f"node '{name}' ({kind}): not supported: {why}; nearest supported form: {nearest}")
    if not isinstance(node, (nir.Input, nir.Output, nir.Delay, nir.Flatten, *NEURON_TYPES, *WEIGHT_TYPES)):
        raise NIRImportError(f"node '{name}' ({kind}): not supported on Loihi 2 by crsnn; nearest supported forms: "
                             "Affine/Linear weights into LIF, CubaLIF or IF neurons, an LI/CubaLI/I readout")
    meta = _meta_text(node)
    for k, v in meta.items():
        if "reset" in k and ("sub" in v or "subtract" in k):
            raise NIRImportError(f"node '{name}' ({kind}): reset by subtraction ({k} = {v}) is not supported: Loihi 2 "
                                 "resets v to 0; nearest supported form: reset to zero (snnTorch "
                                 "reset_mechanism='zero', Sinabs MembraneReset), then re-train or re-export")
        if "refrac" in k and v not in ("0", "0.0", "none", "false", "[0]", "[0.]"):
            raise NIRImportError(f"node '{name}' ({kind}): a refractory period ({k} = {v}) is not supported: Lava's "
                                 "LIFRefractory has no fixed-point model; nearest supported form: no refractory period")
    if isinstance(node, (nir.LIF, nir.CubaLIF, nir.IF)):
        vr = _array(node.v_reset).reshape(-1)
        if vr.size and np.any(vr != 0):
            raise NIRImportError(f"node '{name}' ({kind}): v_reset must be 0 (Loihi 2 resets v to 0), got "
                                 f"{vr[np.flatnonzero(vr)[0]]:g}; nearest supported form: v_reset = 0 with v_leak and "
                                 "v_threshold shifted by -v_reset")


# ---------------------------------------------------------------------------------- reshaping
def _array(x: Any) -> np.ndarray:
    """float64 NumPy array of a parameter (NumPy, list, scalar, or a torch tensor of an in-memory
    export)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _matrix(name: str, w: Any) -> np.ndarray:
    a = _array(w)
    while a.ndim > 2 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2:
        raise NIRImportError(f"node '{name}': weight shape {np.shape(w)} is not a (N_out, N_in) matrix")
    return a


def _vector(name: str, field: str, x: Any, n: int) -> np.ndarray:
    a = _array(x).reshape(-1)
    if a.size == 1:
        return np.full(n, float(a[0]))
    if a.size != n:
        raise NIRImportError(f"node '{name}': {field} has {a.size} values for {n} neurons")
    return a.copy()


def _neuron_size(name: str, node: Any, fed_by: list[int]) -> int:
    sizes = {int(_array(getattr(node, f)).size) for f in NEURON_FIELDS if getattr(node, f, None) is not None}
    sizes.discard(1)
    sizes |= set(fed_by)
    if len(sizes) > 1:
        raise NIRImportError(f"node '{name}' ({type(node).__name__}): parameter and input sizes disagree {sorted(sizes)}")
    return sizes.pop() if sizes else 1


def _in_steps(name: str, node: Any, n: int, dt: float) -> Any:
    """The neuron node with vector parameters and time constants in steps."""
    v = {f: _vector(name, f, getattr(node, f), n) for f in NEURON_FIELDS if getattr(node, f, None) is not None}
    meta = dict(getattr(node, "metadata", None) or {})
    for f in ("tau", "tau_mem", "tau_syn"):
        if f in v:
            if np.any(v[f] <= 0):
                raise NIRImportError(f"node '{name}' ({type(node).__name__}): {f} must be positive, got "
                                     f"{v[f].min():g}")
            v[f] = v[f] / dt
    if isinstance(node, (nir.IF, nir.I)):
        v["r"] = v["r"] * dt
    return type(node)(**v, metadata=meta)


def _trace_back(nodes: dict[str, Any], preds: dict[str, list[str]], start: str) -> list[int]:
    """Output sizes of the weight nodes that feed ``start`` (through Delay/Flatten)."""
    sizes, todo, seen = [], list(preds.get(start, [])), set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        node = nodes[p]
        if isinstance(node, (nir.Affine, nir.Linear)):
            sizes.append(int(_matrix(p, node.weight).shape[0]))
        elif isinstance(node, (nir.Delay, nir.Flatten)):
            todo += preds.get(p, [])
    return sizes


def normalize_foreign(g: nir.NIRGraph, dt: float | None = None, notes: list[str] | None = None) -> nir.NIRGraph:
    """The plain, step-based form of a foreign graph (see the module docstring).

    ``dt``: the simulation step in the unit of the graph's time constants (seconds for snnTorch and
    Norse exports); ``None``: they are already in steps. ``notes``: if given, one line is appended
    per change made (for the import report). Raises :class:`NIRImportError` on anything that cannot
    be mapped.
    """
    notes = notes if notes is not None else []
    step = 1.0 if dt is None else float(dt)
    if not step > 0:
        raise NIRImportError(f"the time step must be positive, got {dt}")
    nested = [k for k, v in g.nodes.items() if isinstance(v, nir.NIRGraph)]
    nodes, edges = flatten_subgraphs(g)
    if nested:
        notes.append(f"flattened nested subgraph(s) {', '.join(nested)}")
    for name, node in nodes.items():
        check_mappable(name, node)
    preds: dict[str, list[str]] = {k: [] for k in nodes}
    succ: dict[str, list[str]] = {k: [] for k in nodes}
    for a, b in edges:
        if a not in nodes or b not in nodes:
            raise NIRImportError(f"edge ({a!r}, {b!r}) names a node that does not exist")
        preds[b].append(a)
        succ[a].append(b)
    out: dict[str, Any] = {}
    for name, node in nodes.items():
        meta = dict(getattr(node, "metadata", None) or {})
        if isinstance(node, (nir.Affine, nir.Linear)):
            w = _matrix(name, node.weight)
            if isinstance(node, nir.Affine):
                out[name] = nir.Affine(weight=w, bias=_vector(name, "bias", node.bias, w.shape[0]), metadata=meta)
            else:
                out[name] = nir.Linear(weight=w, metadata=meta)
        elif isinstance(node, NEURON_TYPES):
            n = _neuron_size(name, node, _trace_back(nodes, preds, name))
            out[name] = _in_steps(name, node, n, step)
        elif isinstance(node, nir.Delay):
            d = _array(node.delay).reshape(-1) / step
            out[name] = nir.Delay(delay=np.where(np.abs(d - np.rint(d)) < 1e-6, np.rint(d), d))
        else:
            out[name] = node
    # Input / Output types as plain [N]
    for name, node in list(out.items()):
        if isinstance(node, nir.Input):
            shape = [int(s) for s in np.asarray(node.input_type["input"]).reshape(-1)]
            firsts = [out[s] for s in succ[name] if isinstance(out[s], (nir.Affine, nir.Linear))]
            n_in = int(firsts[0].weight.shape[1]) if firsts else int(np.prod(shape))
            if int(np.prod(shape)) != n_in:
                if shape and shape[-1] == n_in:
                    notes.append(f"Input '{name}': type {shape} read as {n_in} channels (leading dimensions taken as "
                                 "batch/time)")
                else:
                    raise NIRImportError(f"node '{name}' (Input): type {shape} does not match the {n_in} inputs of "
                                         "the first weight node")
            elif shape != [n_in]:
                notes.append(f"Input '{name}': type {shape} read as [{n_in}]")
            out[name] = nir.Input(input_type={"input": np.array([n_in])})
        elif isinstance(node, nir.Output):
            srcs = [out[p] for p in preds[name]]
            shape = [int(s) for s in np.asarray(dict(node.output_type or {}).get("output", [])).reshape(-1)]
            n = next((int(np.size(s.v_leak if hasattr(s, "v_leak") else s.r)) for s in srcs
                      if isinstance(s, NEURON_TYPES)), int(np.prod(shape)))
            if shape and int(np.prod(shape)) != n and shape[-1] != n:  # [1, n] or [batch, steps, n]: read as [n]
                raise NIRImportError(f"node '{name}' (Output): output_type {shape} does not match the {n} neurons "
                                     f"that feed it; allowed: [{n}] (or leading batch/time dimensions before {n})")
            out[name] = nir.Output(output_type={"output": np.array([n])})
    _fold_recurrent_biases(out, preds, succ, notes)
    if dt is not None:
        notes.append(f"time constants divided by dt = {step:g} (graph time unit) to count in steps")
    return nir.NIRGraph(nodes=out, edges=edges, metadata=dict(g.metadata or {}), type_check=False)


def _reaches(succ: dict[str, list[str]], start: str, goal: str, nodes: dict[str, Any]) -> bool:
    """True when ``goal`` is reached from ``start`` through Delay/Flatten/weight nodes only."""
    todo, seen = [start], set()
    while todo:
        c = todo.pop()
        for s in succ.get(c, []):
            if s == goal:
                return True
            if s not in seen and isinstance(nodes[s], (nir.Delay, nir.Flatten, *WEIGHT_TYPES)):
                seen.add(s)
                todo.append(s)
    return False


def _fold_recurrent_biases(nodes: dict[str, Any], preds: dict[str, list[str]], succ: dict[str, list[str]],
                           notes: list[str]) -> None:
    for name, node in list(nodes.items()):
        if not isinstance(node, NEURON_TYPES):
            continue
        ff, rec = [], []
        for p in preds[name]:
            (rec if _reaches(succ, name, p, nodes) or p == name else ff).append(p)
        ff_w = [p for p in ff if isinstance(nodes[p], (nir.Affine, nir.Linear))]
        for r in rec:
            rnode = nodes[r]
            if isinstance(rnode, nir.Affine):
                b = _array(rnode.bias).reshape(-1)
                nodes[r] = nir.Linear(weight=rnode.weight, metadata=dict(rnode.metadata or {}))
            elif isinstance(rnode, nir.Conv1d) and np.any(np.asarray(rnode.bias) != 0):
                b = np.full(int(np.size(nodes[name].v_leak if hasattr(nodes[name], "v_leak") else nodes[name].r)),
                            float(np.asarray(rnode.bias).reshape(-1)[0]))
                nodes[r] = nir.Conv1d(input_shape=rnode.input_shape, weight=rnode.weight, stride=rnode.stride,
                                      padding=rnode.padding, dilation=rnode.dilation, groups=rnode.groups,
                                      bias=np.zeros_like(np.asarray(rnode.bias)), metadata=dict(rnode.metadata or {}))
            else:
                continue
            if not np.any(b != 0):
                continue
            if len(ff_w) != 1:
                raise NIRImportError(f"node '{r}': its recurrent bias cannot be folded: '{name}' has {len(ff_w)} "
                                     "feedforward weight nodes (expected one)")
            fnode = nodes[ff_w[0]]
            fb = _array(fnode.bias) if isinstance(fnode, nir.Affine) else 0.0
            nodes[ff_w[0]] = nir.Affine(weight=fnode.weight, bias=fb + b, metadata=dict(fnode.metadata or {}))
            notes.append(f"recurrent bias of '{r}' folded into the bias of '{ff_w[0]}' (both sum into '{name}')")


def implied_dt(g: nir.NIRGraph) -> float | None:
    """A step the graph's own numbers suggest (snnTorch writes ``r = tau / dt``), or None."""
    nodes, _ = flatten_subgraphs(g)
    for node in nodes.values():
        if isinstance(node, (nir.LIF, nir.CubaLIF)):
            tau = _array(node.tau if isinstance(node, nir.LIF) else node.tau_mem).reshape(-1)
            r = _array(node.r).reshape(-1)
            if tau.size and r.size and np.all(r > 1):
                est = float(np.median(tau / r))
                if est > 0:
                    return float(f"{est:.3g}")
    return None


