"""Checks every NIR graph passes before crsnn computes anything with it, each refusing in one line
(:class:`~crsnn.export.nir_reader.NIRImportError`) that names the node, the field and what is
allowed. :func:`crsnn.export.nir_reader.read_graph` runs them, so ``crsnn-import``, ``crsnn-run``,
``crsnn-verify``, ``crsnn-report`` and :func:`crsnn.export.nir_reader.load_nir` all refuse the same files.

- :func:`check_file` (before any array is read): the HDF5 file refers to no other file (external
  links, external dataset storage, virtual datasets) and has no soft links (NIR files have none; a
  soft link can make a cycle); its weight matrices hold no more synapses than the largest Loihi 2
  system (:data:`crsnn.loihi2.SYSTEM_SYNAPSES_MAX`); and reading its arrays fits in memory (a
  compressed file of a few KB can hold arrays of many GiB).
- :func:`check_numbers`: every number of every node is finite and of a sane magnitude
  (:data:`MAX_ABS`: the quantizer multiplies weights, input gains and inverse thresholds in
  float64, which such values keep far from overflow); time constants, ``r``, ``w_in`` and
  thresholds are positive (:data:`MIN_POSITIVE`): ``r = 0`` cuts a neuron off its input, and a
  threshold of 0 makes every step a spike. In crsnn's own graphs (read exactly from their integer
  metadata) the float parameters only document the network: there ``tau = r = inf`` (no leak) and
  a threshold of 0 are allowed, and metadata numbers must be finite.
- :func:`check_capacity`: neurons and synapses within the largest Loihi 2 system.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Iterator

import h5py
import nir
import numpy as np

from crsnn import loihi2 as L2
from crsnn.memory import available, gib

#: Largest magnitude accepted for any number of a graph (weights, biases, parameters).
MAX_ABS = 1e12
#: Smallest value accepted for the fields that must be positive (:data:`POSITIVE`).
MIN_POSITIVE = 1e-12
POSITIVE = frozenset({"tau", "tau_mem", "tau_syn", "r", "w_in", "v_threshold"})
#: crsnn's own graphs write ``tau = r = inf`` for a neuron without leak (``dv = 0``; the reader
#: uses their integer metadata): the one place an infinity is allowed.
NO_LEAK = frozenset({"tau", "tau_mem", "r"})
#: Reading a graph and quantizing it holds this many float64 copies of its arrays at once (the
#: file's, the normalized graph's, the float reference's, the scaled and the quantized weights,
#: and neuron parameters a file stores as scalars broadcast to every neuron): 7.2 measured on a
#: 10**6-neuron graph with scalar parameters.
READ_COPIES = 10
_SHAPE_FIELDS = frozenset({"input_type", "output_type", "input_shape"})
_SKIP_FIELDS = frozenset({"metadata", "padding"})


def _error(message: str) -> Exception:
    from crsnn.export.nir_reader import NIRImportError

    return NIRImportError(message)


# ------------------------------------------------------------------------------------ the file
def _links(f: h5py.File) -> Iterator[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    f.visititems_links(lambda name, link: out.append((name, link)))
    yield from out


def _datasets(f: h5py.File) -> list[tuple[str, h5py.Dataset]]:
    out: list[tuple[str, h5py.Dataset]] = []
    f.visititems(lambda name, obj: out.append((name, obj)) if isinstance(obj, h5py.Dataset) else None)
    return out


def _node_type(group: h5py.Group) -> str:
    t = group.get("type", getlink=False)
    if not isinstance(t, h5py.Dataset) or t.size > 64:
        return ""
    v = t[()]
    v = v.reshape(-1)[0] if isinstance(v, np.ndarray) and v.size else v
    return v.decode(errors="replace") if isinstance(v, bytes) else str(v)


def check_file(path: str | os.PathLike) -> None:
    """Refuse (one line) an HDF5 file that refers to other files, holds soft links, more synapses
    than the largest Loihi 2 system or arrays that do not fit in memory; reads no array."""
    try:
        f = h5py.File(path, "r")
    except Exception:  # noqa: BLE001 - not HDF5: the NIR reader says so in its own words
        return
    with f:
        for name, link in _links(f):
            if isinstance(link, h5py.ExternalLink):
                raise _error(f"{path}: '/{name}' is an HDF5 external link to '{link.filename}'; a NIR file must "
                             "hold its arrays itself (crsnn never follows a link to another file)")
            if isinstance(link, h5py.SoftLink):
                raise _error(f"{path}: '/{name}' is an HDF5 soft link to '{link.path}'; NIR files have none "
                             "(write the graph with nir.write)")
        total, synapses = 0, 0
        for name, ds in _datasets(f):
            if ds.external:
                raise _error(f"{path}: dataset '/{name}' keeps its data in another file ({ds.external[0][0]!r}); "
                             "a NIR file must hold its arrays itself")
            if ds.is_virtual:
                raise _error(f"{path}: dataset '/{name}' is a virtual dataset mapping other files; a NIR file "
                             "must hold its arrays itself")
            size = math.prod(ds.shape or ())
            total += size * max(ds.dtype.itemsize, 8)  # read as float64
            parent = ds.parent
            if ds.name.rsplit("/", 1)[-1] == "weight" and _node_type(parent) in ("Affine", "Linear"):
                synapses += size
        if synapses > L2.SYSTEM_SYNAPSES_MAX:
            raise _error(f"{path}: its weight matrices hold {synapses:.3g} synapses, more than the largest Loihi 2 "
                         f"system ({L2.SYSTEM_NAME}: {L2.SYSTEM_SYNAPSES_MAX:.3g} synapses)")
        budget = available()
        if READ_COPIES * total > budget.bytes:
            raise _error(f"{path}: reading and quantizing its arrays ({gib(total)} as float64) needs about "
                         f"{gib(READ_COPIES * total)}, more than the {gib(budget.bytes)} allowed by {budget.limit}")


# ---------------------------------------------------------------------------------- the numbers
def _numbers(value: Any) -> np.ndarray | None:
    """A float64 array of a numeric field, or None when it is not numeric (strings, None)."""
    if value is None or isinstance(value, (str, bytes)):
        return None
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    try:
        a = np.asarray(value)
    except Exception:  # noqa: BLE001 - ragged or odd objects: not numbers
        return None
    if a.dtype.kind not in "biuf":
        return None
    return a.astype(np.float64, copy=False)


def _where(a: np.ndarray, bad: np.ndarray) -> str:
    if a.size <= 1:
        return ""
    idx = [int(i) for i in np.unravel_index(int(np.flatnonzero(bad)[0]), a.shape)]
    return f" at index {idx[0] if len(idx) == 1 else tuple(idx)}"


def _check_array(where: str, field: str, a: np.ndarray, exact: bool = False) -> None:
    if exact and field in NO_LEAK:
        a = np.where(a == np.inf, MAX_ABS, a)
    if field in POSITIVE and not exact:  # crsnn graphs: the integers of the metadata are the neuron
        allowed = f"finite numbers in [{MIN_POSITIVE:g}, {MAX_ABS:g}]"
        bad = ~np.isfinite(a) | (a < MIN_POSITIVE) | (a > MAX_ABS)
    else:
        allowed = f"finite numbers in [{-MAX_ABS:g}, {MAX_ABS:g}]"
        bad = ~np.isfinite(a) | (np.abs(a) > MAX_ABS)
    if bad.any():
        v = float(a.reshape(-1)[np.flatnonzero(bad.reshape(-1))[0]])
        why = {"r": " (r = 0 cuts the neuron off its input)", "w_in": " (0 cuts the neuron off its input)",
               "v_threshold": " (thresholds must be positive)"}.get(field, "") if np.isfinite(v) and v <= 0 else ""
        raise _error(f"{where}: {field} = {v:g}{_where(a, bad)}{why}; allowed: {allowed}")


def _check_shape(where: str, field: str, value: Any) -> None:
    items = value.items() if isinstance(value, dict) else [(None, value)]
    for key, v in items:
        a = _numbers(v)
        if a is None:
            continue
        if not np.all(np.isfinite(a)) or np.any(a < 1) or np.any(a != np.rint(a)) or \
                np.any(a > L2.SYSTEM_NEURONS_MAX):
            name = field + (f"['{key}']" if key is not None else "")
            raise _error(f"{where}: {name} = {a.reshape(-1).tolist()[:8]}; allowed: positive whole numbers "
                         f"(at most {L2.SYSTEM_NEURONS_MAX:.3g}, the neurons of the largest Loihi 2 system)")


def _check_metadata(where: str, meta: Any) -> None:
    for k, v in dict(meta or {}).items():
        a = _numbers(v)
        if a is not None and a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            raise _error(f"{where}: metadata '{k}' holds {a.reshape(-1)[~np.isfinite(a.reshape(-1))][0]:g}; "
                         "allowed: finite numbers")


def _is_crsnn(g: nir.NIRGraph) -> bool:
    from crsnn.export.nir_writer import FORMAT

    fmt = dict(getattr(g, "metadata", None) or {}).get("format")
    return (fmt.decode(errors="replace") if isinstance(fmt, bytes) else fmt) == FORMAT


def check_numbers(g: nir.NIRGraph, prefix: str = "", exact: bool | None = None) -> None:
    """Refuse (one line) a graph with a non-finite or absurd number in any node (see the module
    docstring); nested subgraphs are checked too, their nodes named ``outer.inner``. ``exact``:
    a crsnn graph (:data:`NO_LEAK`); None: from the graph's metadata."""
    exact = _is_crsnn(g) if exact is None else exact
    _check_metadata("graph", getattr(g, "metadata", None))
    for name, node in g.nodes.items():
        full = prefix + name
        if isinstance(node, nir.NIRGraph):
            check_numbers(node, full + ".", exact)
            continue
        where = f"node '{full}' ({type(node).__name__})"
        _check_metadata(where, getattr(node, "metadata", None))
        if not dataclasses.is_dataclass(node):
            continue
        for fld in dataclasses.fields(node):
            if fld.name in _SKIP_FIELDS:
                continue
            value = getattr(node, fld.name, None)
            if fld.name in _SHAPE_FIELDS:
                _check_shape(where, fld.name, value)
                continue
            a = _numbers(value)
            if a is not None:
                _check_array(where, fld.name, a, exact)


def check_capacity(neurons: int, synapses: int) -> None:
    """Refuse a network larger than the largest Loihi 2 system (neurons, synapses)."""
    if neurons > L2.SYSTEM_NEURONS_MAX or synapses > L2.SYSTEM_SYNAPSES_MAX:
        raise _error(f"the graph has {neurons:.3g} neurons and {synapses:.3g} synapses, more than the largest Loihi 2 "
                     f"system ({L2.SYSTEM_NAME}: {L2.SYSTEM_NEURONS_MAX:.3g} neurons, "
                     f"{L2.SYSTEM_SYNAPSES_MAX:.3g} synapses)")
