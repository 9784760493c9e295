"""Per-synapse feedforward delays in a ``crsnn-nir/1`` graph, with standard NIR nodes only.

NIR's ``Delay`` delays every element of a signal by its own amount, but a synapse delay belongs
to a (target, source) pair, which no single NIR node expresses. A connection whose synapses have
delays is therefore written as **one branch per distinct delay value d**, all branches leaving the
same source and summed at the same neuron node (several edges into a node sum in NIR)::

    source -> [Delay(d0)] -> Affine(W_d0, bias) -> neuron        (smallest delay, carries the bias;
    source -> Delay(d1)   -> Linear(W_d1)       -> neuron         no Delay node when d0 = 0)
    ...

- ``Delay`` values are int64 arrays ``(1, n_in)``, all equal to the branch's d (time steps);
  like every crsnn edge into a neuron the weight node adds one step, so a spike of source j at
  step t reaches neuron i at step ``t + 1 + d_ij`` (Lava ``DelayDense``).
- ``W_d`` holds the float weights (``effective * 2**weight_exp``) of the synapses whose delay is
  d and zeros elsewhere; the branches' matrices sum to the connection's matrix. A synapse whose
  weight is 0 has no branch; it reads back with delay 0 (a zero-weight synapse does nothing).
- Every branch's weight node carries the connection's ``weight_exp``, ``num_weight_bits`` and
  ``sign_mode`` (of the whole matrix, which is what Lava infers) and ``synaptic_delay`` = d. With
  a negative weight exponent the sum of each branch is floored on its own (what Lava's
  ``DelayDense`` does per delay value); a reader that ignores metadata gets the float sum.

Node names: ``affine_<l>`` (first branch), ``sdelay_<l>_<d>`` and ``slinear_<l>_<d>`` (branch d),
``<l>`` the hidden layer index or ``readout``. :func:`collapse_branches` turns the branches of a
crsnn graph back into one ``Affine`` whose metadata ``synaptic_delays`` is the (n_out, n_in)
integer delay matrix, which the reader turns into a :class:`~crsnn.models.integer.Connection`.
"""

from __future__ import annotations

from typing import Any

import nir
import numpy as np

from crsnn.models.integer import Connection

#: Weight-node metadata key of a branch's delay (steps).
BRANCH_KEY = "synaptic_delay"
#: Metadata key of the collapsed Affine node: the (n_out, n_in) integer delays.
MATRIX_KEY = "synaptic_delays"


class BranchError(ValueError):
    """The per-delay branches of a crsnn graph are inconsistent (the file was modified)."""


def write_branches(nodes: dict[str, nir.NIRNode], edges: list[tuple[str, str]], source: str, target: str,
                   tag: str, conn: Connection, bias: np.ndarray, weight_meta: dict[str, Any]) -> None:
    """Add the branches of ``conn`` (which has ``delays``) from node ``source`` to node ``target``
    to ``nodes``/``edges``. ``bias``: (n_out,) float bias in activation units (on the first
    branch's Affine); ``weight_meta``: the connection's weight metadata."""
    eff = conn.effective().astype(np.float64) * (2.0**conn.weight_exp)
    delays = np.where(eff != 0, conn.delays, 0)
    values = [int(d) for d in np.unique(delays[eff != 0])] or [0]
    n_in = eff.shape[1]
    for k, d in enumerate(values):
        w = np.where(delays == d, eff, 0.0)[None]
        meta = {**weight_meta, BRANCH_KEY: d}
        wname = f"affine_{tag}" if k == 0 else f"slinear_{tag}_{d}"
        nodes[wname] = nir.Affine(weight=w, bias=bias[None], metadata=meta) if k == 0 else \
            nir.Linear(weight=w, metadata=meta)
        if d > 0:
            dname = f"sdelay_{tag}_{d}"
            nodes[dname] = nir.Delay(delay=np.full((1, n_in), d, dtype=np.int64))
            edges += [(source, dname), (dname, wname)]
        else:
            edges.append((source, wname))
        edges.append((wname, target))


def _meta(node: Any) -> dict:
    return dict(getattr(node, "metadata", None) or {})


def collapse_branches(g: nir.NIRGraph) -> nir.NIRGraph:
    """A copy of crsnn graph ``g`` in which every set of per-delay branches into a neuron is one
    ``Affine`` (named like the first branch) with the summed weights, the bias and the integer
    delay matrix in its metadata (``synaptic_delays``). Graphs without branches come back as they
    are. Raises :class:`BranchError` on inconsistent branches."""
    branch_nodes = [k for k, v in g.nodes.items() if isinstance(v, (nir.Affine, nir.Linear)) and BRANCH_KEY in _meta(v)]
    if not branch_nodes:
        return g
    nodes = dict(g.nodes)
    edges = [tuple(e) for e in g.edges]
    succ: dict[str, list[str]] = {k: [] for k in nodes}
    pred: dict[str, list[str]] = {k: [] for k in nodes}
    for a, b in edges:
        if a in succ and b in pred:
            succ[a].append(b)
            pred[b].append(a)
    groups: dict[tuple[str, str], list[tuple[int, str, str | None]]] = {}
    for w in branch_nodes:
        if len(succ[w]) != 1 or len(pred[w]) != 1:
            raise BranchError(f"node '{w}': a synaptic-delay branch needs one input and one output edge")
        d = int(np.asarray(_meta(nodes[w])[BRANCH_KEY]).reshape(-1)[0])
        src, dnode = pred[w][0], None
        if isinstance(nodes[src], nir.Delay):
            dnode = src
            vals = np.asarray(nodes[dnode].delay).reshape(-1)
            if len(pred[dnode]) != 1 or len(succ[dnode]) != 1 or not np.all(vals == d):
                raise BranchError(f"node '{dnode}' (Delay): expected one input, one output and all values = {d} "
                                  f"(the synaptic delay of '{w}')")
            src = pred[dnode][0]
        elif d != 0:
            raise BranchError(f"node '{w}': synaptic delay {d} but no Delay node before it")
        groups.setdefault((src, succ[w][0]), []).append((d, w, dnode))
    for (src, target), branches in groups.items():
        branches.sort()
        if len({d for d, _, _ in branches}) != len(branches):
            raise BranchError(f"node '{target}': two branches with the same synaptic delay")
        affines = [w for _, w, _ in branches if isinstance(nodes[w], nir.Affine)]
        if len(affines) != 1:
            raise BranchError(f"node '{target}': expected exactly one Affine among its synaptic-delay branches, "
                              f"found {len(affines)}")
        first = nodes[affines[0]]
        weights = [np.asarray(nodes[w].weight, dtype=np.float64) for _, w, _ in branches]
        if len({w.shape for w in weights}) != 1:
            raise BranchError(f"node '{target}': its synaptic-delay branches have different weight shapes")
        total = np.sum(weights, axis=0)
        delays = np.zeros(total.shape[-2:], dtype=np.int64)
        for (d, _, _), w in zip(branches, weights):
            nz = w.reshape(delays.shape) != 0
            if np.any(nz & (delays != 0)):
                raise BranchError(f"node '{target}': a synapse appears in two synaptic-delay branches")
            delays[nz] = d
        meta = {k: v for k, v in _meta(first).items() if k != BRANCH_KEY}
        meta[MATRIX_KEY] = delays
        removed = {w for _, w, _ in branches} | {dn for _, _, dn in branches if dn is not None}
        for r in removed:
            del nodes[r]
        edges = [e for e in edges if e[0] not in removed and e[1] not in removed]
        nodes[affines[0]] = nir.Affine(weight=total, bias=np.asarray(first.bias), metadata=meta)
        edges += [(src, affines[0]), (affines[0], target)]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=dict(g.metadata or {}), type_check=False)


def delays_of(node: Any, shape: tuple[int, int]) -> np.ndarray | None:
    """The (n_out, n_in) integer synaptic delays of a collapsed weight node, or None."""
    d = _meta(node).get(MATRIX_KEY)
    if d is None:
        return None
    d = np.asarray(d)
    if d.size != shape[0] * shape[1]:
        raise BranchError(f"synaptic delays of size {d.size} for a {shape[0]} x {shape[1]} connection")
    return d.reshape(shape).astype(np.int64)
