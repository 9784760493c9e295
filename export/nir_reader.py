"""NIR graph -> :class:`~crsnn.models.integer.IntegerNetwork` (what the simulator and Lava run).

Accepted graphs are chains ``Input -> [weights -> neuron]+ -> Output`` where each neuron may have
one recurrent path back to itself (``[Delay] -> Conv1d | Linear | Affine``), weights are
``Affine``/``Linear`` (with optional shape-only ``Flatten`` nodes anywhere on a path), neurons
are ``LIF``, ``CubaLIF``, ``IF`` (spiking hidden layers) and ``LI``, ``CubaLI``, ``I`` (or a
spiking neuron) as the readout that feeds ``Output``.

- crsnn graphs (metadata ``format == 'crsnn-nir/1'``) are read exactly: neuron integers from node
  metadata, integer weights as ``W / 2**weight_exp`` (checked to be integers).
- Other graphs (e.g. exported by snnTorch or built with the ``nir`` API) are quantized onto the
  Loihi 2 grid: forward-Euler discretisation with step ``dt`` (the ``dt`` argument, in the unit
  of the graph's time constants; time steps if not given), per-layer threshold scaling,
  8-bit mixed-sign weights with per-connection exponents, binary input spikes.

Anything else is refused with :class:`NIRImportError` naming the node, its type and why.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nir
import numpy as np

from crsnn import loihi2 as L2
from crsnn.input_files import not_regular_message, special_kind
from crsnn.export.nir_checks import check_capacity, check_file, check_numbers
from crsnn.export.nir_synaptic_delays import BranchError, collapse_branches
from crsnn.export.nir_synaptic_delays import delays_of as synaptic_delays_of
from crsnn.export.nir_writer import EVEN_KERNEL, FORMAT
from crsnn.models.integer import (Connection, IntegerNetwork, Layer, LIFParams, NetworkValidationError,
                                  Recurrence)

NEURONS = (nir.LIF, nir.CubaLIF, nir.IF, nir.LI, nir.CubaLI, nir.I)
SPIKING = (nir.LIF, nir.CubaLIF, nir.IF)
WEIGHTS = (nir.Affine, nir.Linear, nir.Conv1d)
PASS = (nir.Flatten,)


class NIRImportError(ValueError):
    """The NIR file or graph cannot be turned into a Loihi 2 integer network."""


def _flat(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).reshape(-1)


def _uniform(node_name: str, node: Any, field: str) -> float:
    v = _flat(getattr(node, field))
    if v.size == 0 or not np.allclose(v, v[0], rtol=1e-9, atol=0):
        raise NIRImportError(f"node '{node_name}' ({type(node).__name__}): {field} differs between neurons "
                             f"(min {v.min()}, max {v.max()}); Loihi 2 shares it per population")
    return float(v[0])


def read_graph(source: str | os.PathLike | nir.NIRGraph) -> nir.NIRGraph:
    """``nir.read`` with one-line errors for a missing, unreadable or non-NIR file, and the checks
    of :mod:`crsnn.export.nir_checks` (before reading: links to other files, size; after: every
    number of every node), which every command reading a graph relies on."""
    if isinstance(source, nir.NIRGraph):
        check_numbers(source)
        return source
    path = Path(source)
    kind = special_kind(path)
    if kind is not None:  # a FIFO would block nir.read until killed, a device feed it garbage
        raise NIRImportError(not_regular_message(path, kind, "NIR file"))
    if path.is_dir():
        raise NIRImportError(f"{path}: is a folder, not a NIR file")
    if not path.is_file():
        raise NIRImportError(f"{path}: no such file")
    check_file(path)
    try:
        g = nir.read(str(path))
    except Exception:  # noqa: BLE001 - other tools' files often fail NIR's type check: read without it
        from crsnn.export.nir_foreign import read_tolerant

        g = read_tolerant(path)
    check_numbers(g)
    return g


@dataclass
class _Population:
    name: str
    ff_path: list[str]  # weight nodes from the previous population (or input) to this one
    rec_path: list[str]  # [Delay] weight node back to itself, or []


def _structure(g: nir.NIRGraph) -> tuple[list[_Population], int]:
    """Order the populations from input to output and find their feedforward/recurrent paths."""
    nodes, succ = g.nodes, {k: [] for k in g.nodes}
    for a, b in g.edges:
        if a not in nodes or b not in nodes:
            raise NIRImportError(f"edge ({a!r}, {b!r}) names a node that does not exist")
        succ[a].append(b)
    for name, node in nodes.items():
        if isinstance(node, nir.NIRGraph):
            raise NIRImportError(f"node '{name}' (NIRGraph): nested subgraphs are not supported; flatten the graph")
        if not isinstance(node, (nir.Input, nir.Output, nir.Delay, *NEURONS, *WEIGHTS, *PASS)):
            raise NIRImportError(f"node '{name}' ({type(node).__name__}): not supported on Loihi 2 by crsnn "
                                 "(supported: Input, Output, Affine, Linear, Conv1d, Delay, Flatten, LIF, CubaLIF, "
                                 "IF, LI, CubaLI, I)")
    inputs = [k for k, v in nodes.items() if isinstance(v, nir.Input)]
    outputs = [k for k, v in nodes.items() if isinstance(v, nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise NIRImportError(f"expected one Input and one Output node, found {len(inputs)} and {len(outputs)}")

    def follow(start: str, origin: str) -> tuple[list[str], str]:
        """Walk pass-through nodes from ``start`` until a neuron or Output; return (path, end)."""
        path, cur = [], start
        while not isinstance(nodes[cur], (*NEURONS, nir.Output)):
            if isinstance(nodes[cur], (nir.Input,)):
                raise NIRImportError(f"node '{cur}': Input reached from '{origin}'")
            path.append(cur)
            nxt = succ[cur]
            if len(nxt) != 1:
                raise NIRImportError(f"node '{cur}' ({type(nodes[cur]).__name__}): expected exactly one successor "
                                     f"on the path from '{origin}', found {len(nxt)} (branching is not supported)")
            cur = nxt[0]
            if len(path) > 8:
                raise NIRImportError(f"path from '{origin}' through '{start}' is too long to be a synapse")
        return path, cur

    pops: list[_Population] = []
    src, seen = inputs[0], set()
    n_in = int(np.prod(nodes[src].input_type["input"]))
    while True:
        ff_path, rec_path, nxt_src = None, [], None
        for s in succ[src]:
            path, end = follow(s, src)
            if end == src and pops and src == pops[-1].name:
                if rec_path:
                    raise NIRImportError(f"node '{src}': more than one recurrent path")
                rec_path = path
            elif ff_path is None:
                ff_path, nxt_src = path, end
            else:
                raise NIRImportError(f"node '{src}' ({type(nodes[src]).__name__}): more than one feedforward "
                                     "successor; only layer chains are supported")
        if pops:
            pops[-1].rec_path = rec_path
        elif rec_path:
            raise NIRImportError("the Input node cannot have a recurrent path")
        if ff_path is None:
            raise NIRImportError(f"node '{src}' does not lead to the Output node")
        if isinstance(nodes[nxt_src], nir.Output):
            if any(isinstance(nodes[p], WEIGHTS) for p in ff_path) or not pops:
                raise NIRImportError(f"the Output must be fed directly by the readout neuron node, not by '{ff_path}'")
            return pops, n_in
        if nxt_src in seen:
            raise NIRImportError(f"node '{nxt_src}' is reached twice; only layer chains are supported")
        seen.add(nxt_src)
        weights = [p for p in ff_path if isinstance(nodes[p], WEIGHTS)]
        if len(weights) != 1 or not isinstance(nodes[weights[0]], (nir.Affine, nir.Linear)):
            raise NIRImportError(f"the path into '{nxt_src}' must hold exactly one Affine or Linear node, "
                                 f"found {[type(nodes[p]).__name__ for p in ff_path]}")
        if any(isinstance(nodes[p], nir.Delay) for p in ff_path):
            raise NIRImportError(f"node '{nxt_src}': feedforward Delay nodes are not supported (only recurrent axonal delays)")
        pops.append(_Population(nxt_src, ff_path, []))
        src = nxt_src


def _weight_node(g: nir.NIRGraph, path: list[str]) -> tuple[str, Any]:
    name = [p for p in path if isinstance(g.nodes[p], WEIGHTS)]
    return name[0], g.nodes[name[0]]


def _matrix(name: str, node: Any, n_out: int, n_in: int) -> np.ndarray:
    """2-D (n_out, n_in) float weights of an Affine/Linear node (leading singleton dims dropped)."""
    w = np.asarray(node.weight, dtype=np.float64)
    w = w.reshape(w.shape[-2], w.shape[-1]) if w.ndim > 2 and np.prod(w.shape[:-2]) == 1 else w
    if w.shape != (n_out, n_in):
        raise NIRImportError(f"node '{name}' ({type(node).__name__}): weight shape {np.shape(node.weight)} "
                             f"does not connect {n_in} to {n_out} neurons")
    return w


def _conv_kernel(name: str, node: nir.Conv1d) -> np.ndarray:
    w = np.asarray(node.weight, dtype=np.float64)
    k = w.shape[-1]
    pad = node.padding.decode() if isinstance(node.padding, bytes) else node.padding
    same = pad == "same" or (not isinstance(pad, str) and np.all(np.asarray(pad) == (k - 1) // 2) and k % 2 == 1)
    problems = []
    if w.shape[:2] != (1, 1):
        problems.append(f"weight shape {w.shape} (need one channel in and out: (1, 1, k))")
    if int(np.max(node.stride)) != 1 or int(np.max(node.dilation)) != 1 or int(node.groups) != 1:
        problems.append("stride, dilation and groups must be 1")
    if k % 2 == 0:
        problems.append(f"even kernel size {k}: {EVEN_KERNEL}")
    elif not same:
        problems.append(f"padding {pad!r} (need 'same')")
    if np.any(_flat(node.bias) != 0):
        problems.append("a non-zero bias")
    if problems:
        raise NIRImportError(f"node '{name}' (Conv1d): unsupported recurrence: {'; '.join(problems)}")
    return w.reshape(-1)


def _ints(name: str, w: np.ndarray, exp: int) -> np.ndarray:
    q = w / (2.0**exp)
    r = np.rint(q)
    if not np.allclose(q, r, rtol=0, atol=1e-6):
        raise NIRImportError(f"node '{name}': weights are not integers times 2**{exp} (weight_exp in its metadata); "
                             "the file was not written by crsnn-export or was modified")
    return r.astype(np.int64)


def _exact_population(g, pop: _Population, n_prev: int, readout: bool) -> Layer:
    node = g.nodes[pop.name]
    m = node.metadata
    try:
        nrn = LIFParams(n=int(np.size(m["bias_mant"])), du=int(m["du"]), dv=int(m["dv"]), vth=int(m["vth"]),
                        bias_mant=np.asarray(m["bias_mant"]).reshape(-1), bias_exp=np.asarray(m["bias_exp"]).reshape(-1))
    except KeyError as exc:
        raise NIRImportError(f"node '{pop.name}': crsnn metadata key {exc} missing") from None

    def conn_kw(wname, wnode):
        try:
            return dict(weight_exp=int(wnode.metadata["weight_exp"]), num_weight_bits=int(wnode.metadata["num_weight_bits"]),
                        sign_mode=L2.SignMode(int(wnode.metadata["sign_mode"])))
        except KeyError as exc:
            raise NIRImportError(f"node '{wname}': crsnn metadata key {exc} missing") from None

    wname, wnode = _weight_node(g, pop.ff_path)
    kw = conn_kw(wname, wnode)
    ff = Connection(_ints(wname, _matrix(wname, wnode, nrn.n, n_prev), kw["weight_exp"]),
                    delays=synaptic_delays_of(wnode, (nrn.n, n_prev)), **kw)
    rec = None
    if pop.rec_path:
        rname, rnode = _weight_node(g, pop.rec_path)
        kw = conn_kw(rname, rnode)
        delays = _delays(g, pop)
        if isinstance(rnode, nir.Conv1d):
            rec = Recurrence(delays=delays, kernel=_ints(rname, _conv_kernel(rname, rnode), kw["weight_exp"]), **kw)
        else:
            rec = Recurrence(delays=delays, weights=_ints(rname, _matrix(rname, rnode, nrn.n, nrn.n), kw["weight_exp"]), **kw)
    return Layer(ff=ff, neuron=nrn, rec=rec)


def _delays(g, pop: _Population) -> np.ndarray:
    dnodes = [p for p in pop.rec_path if isinstance(g.nodes[p], nir.Delay)]
    n = int(np.size(_flat(_neuron_field(g.nodes[pop.name]))))
    if not dnodes:
        return np.zeros(n, dtype=np.int64)
    if len(dnodes) > 1:
        raise NIRImportError(f"recurrent path of '{pop.name}' has {len(dnodes)} Delay nodes; expected one")
    d = _flat(g.nodes[dnodes[0]].delay)
    if d.size != n:
        raise NIRImportError(f"node '{dnodes[0]}' (Delay): {d.size} values for {n} neurons")
    bad = np.flatnonzero((d != np.rint(d)) | (d < L2.DELAY_MIN) | (d > L2.DELAY_MAX))
    if bad.size:
        j = int(bad[0])
        raise NIRImportError(f"node '{dnodes[0]}' (Delay): delay of neuron {j} = {d[j]} is not an integer number of "
                             f"time steps in [{L2.DELAY_MIN}, {L2.DELAY_MAX}] (Loihi 2's axonal delay range)")
    return d.astype(np.int64)


def _neuron_field(node: Any) -> np.ndarray:
    for f in ("tau", "tau_mem", "r"):
        if hasattr(node, f):
            return getattr(node, f)
    raise AssertionError(type(node))


# ------------------------------------------------------------------------------ third-party graphs
def _float_neuron(name: str, node: Any, dt: float) -> dict[str, Any]:
    """Per-step float dynamics of a NIR neuron (forward Euler, step dt in the graph's time unit):
    u = alpha*u + gain*x ; v = beta*v + u + bias ; spike v > thr (reset 0)."""
    n = int(np.size(_flat(_neuron_field(node))))
    if isinstance(node, (nir.LIF, nir.LI)):
        tau = _uniform(name, node, "tau")
        gain, alpha = dt / tau * _flat(node.r), 0.0
        beta, bias = 1.0 - dt / tau, dt / tau * _flat(node.v_leak)
    elif isinstance(node, (nir.IF, nir.I)):
        gain, alpha, beta, bias = dt * _flat(node.r), 0.0, 1.0, np.zeros(n)
    else:  # CubaLIF, CubaLI
        ts, tm = _uniform(name, node, "tau_syn"), _uniform(name, node, "tau_mem")
        gain = (dt / ts) * _flat(node.w_in) * (dt / tm) * _flat(node.r)
        alpha, beta, bias = 1.0 - dt / ts, 1.0 - dt / tm, dt / tm * _flat(node.v_leak)
    if not (0.0 <= beta <= 1.0 and 0.0 <= alpha <= 1.0):
        raise NIRImportError(f"node '{name}' ({type(node).__name__}): time constants shorter than the step "
                             f"(leak {beta:.3f}, current leak {alpha:.3f}); pass the right dt")
    thr = None
    if isinstance(node, SPIKING):
        thr = _flat(node.v_threshold)
        if np.any(_flat(node.v_reset) != 0):
            raise NIRImportError(f"node '{name}' ({type(node).__name__}): v_reset must be 0 (Loihi 2 resets to 0)")
        if np.any(thr <= 0):
            raise NIRImportError(f"node '{name}' ({type(node).__name__}): thresholds must be positive")
    return {"n": n, "gain": np.broadcast_to(gain, (n,)), "alpha": alpha, "beta": beta,
            "bias": np.broadcast_to(bias, (n,)), "thr": thr}


def _exp_for(max_abs: float, top: float = 254.0) -> int:
    if max_abs <= 0:
        return 0
    return int(np.clip(np.ceil(np.log2(max_abs / top)), L2.WEIGHT_EXP_MIN, L2.WEIGHT_EXP_MAX))


def _quantize(w: np.ndarray, exp: int) -> np.ndarray:
    """Nearest representable mixed-sign 8-bit effective weights (even, [-256, 254]) for w / 2**exp."""
    return np.clip(2 * np.rint(w / (2.0**exp) / 2), -256, 254).astype(np.int64)


def _bias_int(b_v: np.ndarray) -> tuple[np.ndarray, int]:
    m = float(np.max(np.abs(b_v))) if b_v.size else 0.0
    e = 0
    while e < L2.BIAS_EXP_MAX and m / (2**e) > L2.BIAS_MANT_MAX:
        e += 1
    return np.clip(np.rint(b_v / 2**e), L2.BIAS_MANT_MIN, L2.BIAS_MANT_MAX).astype(np.int64), e


#: The range cap on a population's scale (:func:`crsnn.loihi2.max_scale_without_wrap`) never takes
#: the threshold below this many activation units (``64 << 6`` v units, 12 bits of voltage
#: resolution): a layer whose worst case needs less keeps this scale (its wrap is then possible,
#: but needs almost every input at once; ``crsnn-import --calibrate`` measures it).
MIN_RANGE_SCALE = 64.0
#: With a given scale (calibration), the largest weight may map up to this (it rounds to 254, an
#: error within the rounding's): a scale that puts an 8-bit grid exactly on Loihi's, rounded to an
#: integer threshold, must not fall to the next exponent and a grid twice as coarse.
GIVEN_SCALE_TOP = 255.0
#: Headroom of the range cap for the rounding of the weights.
RANGE_MARGIN = 0.95


def range_cap(w_ff: np.ndarray, w_rec: np.ndarray | None, du: int) -> float:
    """The largest scale at which the current of a population with these threshold-normalised
    per-step weights (``w_ff`` (n, n_prev), ``w_rec`` (n, n) or a conv kernel, or None) cannot wrap
    at 24 bits even when every input and every neuron spikes in the same step, with
    :data:`RANGE_MARGIN` for the weight rounding and never below :data:`MIN_RANGE_SCALE`."""
    worst = np.abs(w_ff).sum(1) if w_ff.size else np.zeros(1)
    if w_rec is not None:
        worst = worst + (np.abs(w_rec).sum() if w_rec.ndim == 1 else np.abs(w_rec).sum(1))
    cap = RANGE_MARGIN * L2.max_scale_without_wrap(float(np.max(worst)), du)
    return max(cap, MIN_RANGE_SCALE)


def _approx_population(g, pop: _Population, n_prev: int, readout: bool, dt: float,
                       scale: float | None = None, rec_shift: int = 0) -> Layer:
    """Quantize one population of a foreign graph. The scale (integer activation units per
    threshold) is the largest that keeps the threshold within 17 bits, the bias within its
    mantissa and the current within 24 bits (:func:`range_cap`), unless ``scale`` gives it (a
    spiking population: rounded to the integer threshold ``vth``; the feedforward exponent is then
    the smallest that fits the largest weight). The recurrent exponent is the smallest that fits the
    largest recurrent weight, plus ``rec_shift`` (negative: finer steps, the largest weights clipped)."""
    node = g.nodes[pop.name]
    f = _float_neuron(pop.name, node, dt)
    n = f["n"]
    wname, wnode = _weight_node(g, pop.ff_path)
    w_ff = _matrix(wname, wnode, n, n_prev) * f["gain"][:, None]
    # NIR passes an Affine bias through the synaptic filter of a CubaLIF: in steady state it adds
    # gain / (1 - alpha) per step to v (Loihi's bias enters v directly; alpha = 0 for LIF/IF).
    b_syn = f["gain"] / (1.0 - f["alpha"]) if f["alpha"] < 1.0 else f["gain"]
    b = f["bias"] + (b_syn * _flat(wnode.bias) if isinstance(wnode, nir.Affine) else 0.0)
    w_rec = None
    if pop.rec_path:
        rname, rnode = _weight_node(g, pop.rec_path)
        if isinstance(rnode, nir.Conv1d):
            if not np.allclose(f["gain"], f["gain"][0]):
                raise NIRImportError(f"node '{pop.name}': a conv recurrence needs the same input gain (r, w_in) for all neurons")
            w_rec = ("conv", _conv_kernel(rname, rnode) * f["gain"][0])
        else:
            wr = _matrix(rname, rnode, n, n)
            if isinstance(rnode, nir.Affine) and np.any(_flat(rnode.bias) != 0):
                raise NIRImportError(f"node '{rname}' (Affine): a recurrent bias is not supported")
            w_rec = ("dense", wr * f["gain"][:, None])
    # per-neuron voltage scale c_i = 1 / thr_i, so all thresholds become 1, then one integer scale s
    c = 1.0 / f["thr"] if f["thr"] is not None else np.ones(n)
    w_ff, b = w_ff * c[:, None], b * c
    rec_scale = None
    if w_rec is not None:
        if w_rec[0] == "conv" and not np.allclose(c, c[0]):
            raise NIRImportError(f"node '{pop.name}': a conv recurrence needs one threshold for all neurons")
        rec_scale = w_rec[1] * (c[0] if w_rec[0] == "conv" else c[:, None])
    max_ff = float(np.max(np.abs(w_ff))) if w_ff.size else 0.0
    # the scale s must also keep the largest bias within the 13-bit mantissa << 7
    max_b = float(np.max(np.abs(b))) if np.size(b) else 0.0
    s_cap = L2.BIAS_MANT_MAX * 2**L2.BIAS_EXP_MAX / (2**L2.ACT_SHIFT * max_b) if max_b > 0 else np.inf
    du = L2.du_from_leak(f["alpha"])
    s_range = range_cap(w_ff, None if rec_scale is None else np.asarray(rec_scale), du)
    if readout and f["thr"] is None:
        vth, e_ff = L2.VTH_MAX, 0
        s = min(254.0 / max_ff, s_cap, s_range) if max_ff > 0 else 1.0  # threshold never reached
    else:
        if scale is not None:
            s = float(np.clip(np.rint(scale), 1, L2.VTH_MAX))
            e_ff = _exp_for(max_ff * s, GIVEN_SCALE_TOP)
        else:  # largest exponent (finest threshold resolution) with vth = s = 254 * 2**e / max_ff in range
            e_ff = L2.WEIGHT_EXP_MAX
            while e_ff > L2.WEIGHT_EXP_MIN and max_ff > 0 and 254.0 * 2**e_ff / max_ff > min(L2.VTH_MAX, s_cap,
                                                                                              s_range):
                e_ff -= 1
            s = 254.0 * 2**e_ff / max_ff if max_ff > 0 else 1.0
        vth = int(np.clip(np.rint(s), 1, L2.VTH_MAX))
        s = float(vth)
    ff = Connection(_quantize(w_ff * s, e_ff), weight_exp=e_ff, sign_mode=L2.SignMode.MIXED)
    bias_mant, bias_exp = _bias_int(b * s * (2**L2.ACT_SHIFT))
    nrn = LIFParams(n=n, du=du, dv=L2.dv_from_leak(f["beta"]), vth=vth,
                    bias_mant=bias_mant, bias_exp=bias_exp)
    rec = None
    if w_rec is not None:
        scaled = rec_scale * s
        top = GIVEN_SCALE_TOP if scale is not None else 254.0
        e_rec = int(np.clip(_exp_for(float(np.max(np.abs(scaled))) if scaled.size else 0.0, top) + rec_shift,
                            L2.WEIGHT_EXP_MIN, L2.WEIGHT_EXP_MAX))
        q = _quantize(scaled, e_rec)
        shape = {"kernel": q} if w_rec[0] == "conv" else {"weights": q}
        rec = Recurrence(delays=_delays(g, pop), weight_exp=e_rec, sign_mode=L2.SignMode.MIXED, **shape)
    return Layer(ff=ff, neuron=nrn, rec=rec)


def _population_size(g: nir.NIRGraph, pop: _Population) -> int:
    node = g.nodes[pop.name]
    meta = getattr(node, "metadata", None) or {}
    return int(np.size(meta["bias_mant"])) if "bias_mant" in meta else int(np.size(_neuron_field(node)))


def _check_sizes(g: nir.NIRGraph, pops: list[_Population], n_in: int) -> None:
    """Neurons and synapses within the largest Loihi 2 system, and an Output node of the size of
    the readout that feeds it (before any array is computed)."""
    sizes = [_population_size(g, p) for p in pops]
    synapses = sum(int(np.size(g.nodes[q].weight)) for p in pops for q in p.ff_path + p.rec_path
                   if isinstance(g.nodes[q], WEIGHTS))
    check_capacity(sum(sizes), synapses)
    out = next(k for k, v in g.nodes.items() if isinstance(v, nir.Output))
    shape = np.asarray(dict(g.nodes[out].output_type or {}).get("output", [sizes[-1]])).reshape(-1)
    if int(np.prod(shape)) != sizes[-1]:
        raise NIRImportError(f"node '{out}' (Output): output_type {shape.tolist()} does not match the {sizes[-1]} "
                             f"neurons of '{pops[-1].name}' that feed it; allowed: [{sizes[-1]}]")


def load_nir(source: str | os.PathLike | nir.NIRGraph, dt: float | None = None,
             choices: list[tuple[float | None, int]] | None = None) -> IntegerNetwork:
    """Read a NIR file (or graph) into the integer network the simulator and Lava run.

    crsnn graphs are read exactly (``dt`` is ignored: their time constants are in steps). Other
    graphs are quantized (see the module docstring); ``dt`` is their simulation step in the unit of
    their time constants (e.g. seconds for snnTorch exports); without it, time constants are taken
    to be in steps. ``choices``: per population (scale, recurrent exponent shift) replacing the default
    rule's (scale None keeps it; foreign graphs only: ``crsnn-import --calibrate``). Raises
    :class:`NIRImportError` (one line) on anything unsupported.
    """
    g = read_graph(source)
    meta = dict(g.metadata or {})
    fmt = meta.get("format")
    fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
    exact = fmt == FORMAT
    if not exact:  # other tools' graphs: flattened, plain shapes, time constants in steps
        from crsnn.export.nir_foreign import normalize_foreign

        g = normalize_foreign(g, dt)
    if exact:  # per-synapse delay branches -> one Affine each (crsnn.export.nir_synaptic_delays)
        try:
            g = collapse_branches(g)
        except BranchError as exc:
            raise NIRImportError(str(exc)) from None
    pops, n_in = _structure(g)
    _check_sizes(g, pops, n_in)
    layers, n_prev = [], n_in
    step = 1.0  # crsnn graphs and normalized foreign graphs count time in steps
    for i, pop in enumerate(pops):
        readout = i == len(pops) - 1
        layer = _exact_population(g, pop, n_prev, readout) if exact else _approx_population(g, pop, n_prev, readout, step,
                                                                                          *(choices[i] if choices else (None, 0)))
        layers.append(layer)
        n_prev = layer.n
    if layers[-1].rec is not None:
        raise NIRImportError(f"node '{pops[-1].name}': the readout (the neuron feeding Output) cannot be recurrent")
    net_meta = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in meta.items()}
    net = IntegerNetwork(n_in=n_in, hidden=layers[:-1], readout=layers[-1],
                         input_message_bits=int(meta.get("input_message_bits", 0)) if exact else 0,
                         metadata=net_meta)
    try:
        return net.validate()
    except NetworkValidationError as exc:
        raise NIRImportError(f"the graph does not fit Loihi 2: {exc}") from None
