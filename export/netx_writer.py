"""IntegerNetwork <-> lava-dl's netx HDF5 format (what ``lava.lib.dl.netx.hdf5.Network`` loads),
for the networks netx 0.6.0 can express exactly.

Layout written (format ``crsnn-netx/1``; netx reads only ``/layer``)::

    /layer/0            type 'input', shape [n_in]            (spikes go straight to layer 1)
    /layer/1 .. L+1     type 'dense', shape [n], weight (n, n_prev) int, bias (n,) int (if any),
                        delay (n, n_prev) int (per-synapse delays, if the connection has them),
                        neuron/{type 'CUBA', iDecay, vDecay, vThMant, refDelay, gradedSpike}
    /crsnn              attributes: format, input_message_bits, dt and the training metadata

Meaning (netx 0.6.0 with lava-nc 0.10.0): a ``dense`` layer is a Lava ``Dense`` (``DelayDense``
with a ``delay``) into a Lava ``LIF`` with ``du = iDecay - 1``, ``dv = vDecay``,
``vth = vThMant`` and ``bias_mant = bias`` at a fixed bias exponent of 6; netx picks the weight
bits and exponent itself so that each synaptic sum is the sum of the stored integers. The last
layer is crsnn's readout (``vThMant`` 131071, its voltage is the output). So a network fits when:

- it has no recurrence (netx's ``dense_rec`` shares one delay array between the feedforward and
  recurrent paths and drops the weight exponent: it cannot express axonal delays);
- every connection's ``effective weights * 2**weight_exp`` are integers in [-256, 254] (netx
  clips outside, with only a printed warning);
- every bias ``bias_mant << bias_exp`` (``v`` units) is a multiple of 64 with a quotient in the
  13-bit mantissa range (netx fixes the bias exponent at 6).

``--target netx`` (:data:`crsnn.loihi2.NETX_WEIGHT_EXP_RANGE`, :data:`crsnn.loihi2.NETX_BIAS_EXP`)
makes quantization-aware training stay within these limits. Graded input: netx takes the number
of input message bits as ``Network(input_message_bits=...)``; the file records it in
``/crsnn``.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

import crsnn
from crsnn import loihi2 as L2
from crsnn.atomic_write import write_bytes_atomic
from crsnn.models.integer import Connection, IntegerNetwork, Layer, LIFParams

FORMAT = "crsnn-netx/1"
BIAS_UNIT = 2**L2.NETX_BIAS_EXP  # a netx bias of 1 is this many v units
NETX_W_MIN, NETX_W_MAX = -256, 254
RECURRENT_WHY = ("netx 0.6.0 cannot express recurrent axonal delays: its dense_rec shares one delay array between "
                 "the feedforward and recurrent paths and drops the weight exponent; export it as NIR instead")


class NetxExportError(ValueError):
    """The network cannot be written as a netx file; the message lists every reason."""


def _stored_weights(conn: Connection) -> np.ndarray:
    """``effective * 2**weight_exp`` as float64 (integers when netx can express them)."""
    return conn.effective().astype(np.float64) * (2.0**conn.weight_exp)


def netx_problems(net: IntegerNetwork) -> list[str]:
    """Why ``net`` cannot be a netx file (empty when it can). Each entry names the layer."""
    problems = []
    for li, layer in enumerate(net.layers):
        where = f"layer {li}" if li < len(net.hidden) else "readout"
        if layer.gates is not None:
            from crsnn.export.csgru_refusal import csgru_refusal

            msg = csgru_refusal(net, "netx")  # names the first CS-GRU layer: once
            if msg not in problems:
                problems.append(msg)
            continue
        if layer.rec is not None:
            problems.append(f"{where}: has a recurrence ({RECURRENT_WHY})")
        w = _stored_weights(layer.ff)
        if w.size and (np.any(w != np.rint(w)) or w.min() < NETX_W_MIN or w.max() > NETX_W_MAX
                       or (w.max() < 0 and w.min() < -255)):
            problems.append(f"{where}: feedforward weights x 2**weight_exp ({layer.ff.weight_exp}) span "
                            f"[{w.min():g}, {w.max():g}]{'' if np.all(w == np.rint(w)) else ' with fractions'}, "
                            f"not integers in [{NETX_W_MIN}, {NETX_W_MAX}] (netx uses weights at exponent 0; "
                            "train with --target netx)")
        b = layer.neuron.bias()
        q = b // BIAS_UNIT
        if np.any(b % BIAS_UNIT != 0) or np.any(q < L2.BIAS_MANT_MIN) or np.any(q > L2.BIAS_MANT_MAX):
            problems.append(f"{where}: biases (v units, range [{b.min()}, {b.max()}]) are not multiples of "
                            f"{BIAS_UNIT} within the 13-bit mantissa (netx fixes the bias exponent at "
                            f"{L2.NETX_BIAS_EXP}; train with --target netx)")
    return problems


def _str(group: h5py.Group, key: str, value: str) -> None:
    group.create_dataset(key, (1,), "S10", [value.encode("ascii")])


def _attr(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float, str, np.ndarray)):
        return value
    return None


def netx_bytes(net: IntegerNetwork, dt: float, metadata: dict[str, Any] | None = None) -> bytes:
    """The netx HDF5 file of ``net`` built in memory. Raises :class:`NetxExportError` listing
    every reason when netx cannot express the network (:func:`netx_problems`)."""
    net.validate()
    problems = netx_problems(net)
    if problems:
        raise NetxExportError("netx cannot express this network: " + "; ".join(problems))
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        layers = f.create_group("layer")
        g0 = layers.create_group("0")
        _str(g0, "type", "input")
        g0.create_dataset("shape", data=np.array([net.n_in], dtype=np.int64))
        for li, layer in enumerate(net.layers):
            g = layers.create_group(str(li + 1))
            _str(g, "type", "dense")
            g.create_dataset("shape", data=np.array([layer.n], dtype=np.int64))
            g.create_dataset("weight", data=np.rint(_stored_weights(layer.ff)).astype(np.int64))
            b = layer.neuron.bias()
            if np.any(b != 0):
                g.create_dataset("bias", data=(b // BIAS_UNIT).astype(np.int64))
            if layer.ff.delays is not None:
                g.create_dataset("delay", data=layer.ff.delays.astype(np.int64))
            nrn = layer.neuron
            ng = g.create_group("neuron")
            _str(ng, "type", "CUBA")
            for key, val in (("iDecay", nrn.du + 1), ("vDecay", nrn.dv), ("vThMant", nrn.vth), ("refDelay", 1),
                             ("gradedSpike", 0)):
                ng.create_dataset(key, data=np.int64(val))
        meta = f.create_group("crsnn")
        info = {"format": FORMAT, "input_message_bits": int(net.input_message_bits), "dt": float(dt),
                "crsnn_version": crsnn.__version__, **{k: v for k, v in net.metadata.items() if k != "format"},
                **{k: v for k, v in (metadata or {}).items() if k != "format"}}
        for k, v in info.items():
            v = _attr(v)
            if v is not None:
                meta.attrs[k] = v
    return buf.getvalue()


def write_netx_atomic(net: IntegerNetwork, path: str | os.PathLike, dt: float,
                      metadata: dict[str, Any] | None = None) -> Path:
    """Write the netx file of ``net`` to ``path`` atomically (nothing is written when netx cannot
    express the network: :class:`NetxExportError`)."""
    return write_bytes_atomic(path, netx_bytes(net, dt, metadata))


def is_netx_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an HDF5 file in netx's layout (a ``layer`` group holding ``0``)."""
    try:
        with h5py.File(path, "r") as f:
            return isinstance(f.get("layer"), h5py.Group) and "0" in f["layer"]
    except (OSError, ValueError):
        return False


def netx_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The ``/crsnn`` attributes of a netx file written by crsnn (empty for other files)."""
    with h5py.File(path, "r") as f:
        g = f.get("crsnn")
        if g is None:
            return {}
        return {k: (v.decode() if isinstance(v, bytes) else (v.item() if isinstance(v, np.generic) else v))
                for k, v in g.attrs.items()}


def _text(ds: h5py.Dataset) -> str:
    v = ds[()]
    v = v.reshape(-1)[0] if isinstance(v, np.ndarray) else v
    return v.decode("ascii") if isinstance(v, bytes) else str(v)


def _connection(w: np.ndarray, delays: np.ndarray | None, where: str) -> Connection:
    """The crsnn connection whose synaptic sums are the sums of the stored integers ``w``."""
    if np.all(w % 2 == 0) and w.min(initial=0) >= NETX_W_MIN and w.max(initial=0) <= NETX_W_MAX:
        return Connection(w, 0, L2.WEIGHT_BITS, L2.SignMode.MIXED, delays)
    if w.min(initial=0) >= -128 and w.max(initial=0) <= 127:  # odd values: 2 w at exponent -1
        return Connection(2 * w, -1, L2.WEIGHT_BITS, L2.SignMode.MIXED, delays)
    raise NetxExportError(f"{where}: odd weights outside [-128, 127] have no 8-bit crsnn equivalent")


def _dataset(g: h5py.Group, key: str, where: str, allowed: str) -> h5py.Dataset:
    item = g.get(key)
    if not isinstance(item, h5py.Dataset):
        raise NetxExportError(f"{where}: dataset '{key}' is {'missing' if item is None else 'not a dataset'}; "
                              f"allowed: {allowed}")
    return item


def _integers(g: h5py.Group, key: str, where: str, shape: tuple[int, ...], lo: int, hi: int) -> np.ndarray:
    """Dataset ``key`` of ``g`` as int64 of ``shape`` (a scalar for ``()``); refused in one line
    naming the layer and the field when it is missing, of another size, or holds anything but
    integers in [lo, hi]."""
    dims = "a scalar" if shape == () else f"shape {shape}"
    allowed = f"{dims} of integers in [{lo}, {hi}]"
    ds = _dataset(g, key, where, allowed)
    if ds.dtype.kind not in "biuf" or math.prod(ds.shape or ()) != math.prod(shape):
        raise NetxExportError(f"{where}: {key} has shape {ds.shape} and type {ds.dtype}; allowed: {allowed}")
    a = np.asarray(ds[()], dtype=np.float64).reshape(shape)
    bad = ~np.isfinite(a) | (a != np.rint(a)) | (a < lo) | (a > hi)
    if bad.any():
        raise NetxExportError(f"{where}: {key} holds {a[bad].reshape(-1)[0]:g}; allowed: {allowed}")
    return a.astype(np.int64)


def _size(g: h5py.Group, where: str) -> int:
    """The number of neurons of a layer: the product of its ``shape`` (positive integers)."""
    ds = _dataset(g, "shape", where, "a list of positive integers")
    dims = max(1, math.prod(ds.shape or ()))
    return int(np.prod(_integers(g, "shape", where, (dims,), 1, L2.SYSTEM_NEURONS_MAX)))


def read_netx(path: str | os.PathLike) -> IntegerNetwork:
    """The integer network a netx file of the layout above means (crsnn's reading of netx's
    rules; ``crsnn-verify`` checks it against Lava running ``netx.hdf5.Network``). The input
    message bits come from ``/crsnn`` (0 when absent). Raises :class:`NetxExportError` (one line
    naming the layer and the field) for anything else: other layer types, a missing or misshapen
    dataset, non-integer or out-of-range values, non-CUBA neurons."""
    layers: list[Layer] = []
    with h5py.File(path, "r") as f:
        if "layer" not in f:
            raise NetxExportError(f"{path}: not a netx file (no /layer group)")
        lg = f["layer"]
        keys = sorted(lg.keys(), key=lambda k: int(k) if k.isdigit() else -1)
        if keys != [str(i) for i in range(len(keys))] or len(keys) < 2:
            raise NetxExportError(f"{path}: netx layers must be 0..n-1 with at least an input and one dense layer")
        if _text(_dataset(lg["0"], "type", f"{path}: layer 0", "'input'")) != "input" or "neuron" in lg["0"]:
            raise NetxExportError(f"{path}: layer 0 must be an 'input' layer without a neuron")
        n_prev = _size(lg["0"], f"{path}: layer 0")
        n_in = n_prev
        for k in keys[1:]:
            g, where = lg[k], f"{path}: layer {k}"
            kind = _text(_dataset(g, "type", where, "'dense'"))
            if kind != "dense" or "weight_rec" in g:
                raise NetxExportError(f"{where} has type '{kind}'; only feedforward 'dense' layers are read")
            if not isinstance(g.get("neuron"), h5py.Group) or _text(_dataset(g["neuron"], "type", where, "'CUBA'")) != "CUBA":
                raise NetxExportError(f"{where} needs a CUBA neuron group")
            n = _size(g, where)
            w = _integers(g, "weight", where, (n, n_prev), L2.INT32_MIN, L2.INT32_MAX)
            delays = None
            if "delay" in g:
                delays = _integers(g, "delay", where, (n, n_prev), L2.SYNAPSE_DELAY_MIN, L2.SYNAPSE_DELAY_MAX)
                if g["delay"].shape != (n, n_prev):
                    raise NetxExportError(f"{where}: only 2-D per-synapse delays are read, got {g['delay'].shape}")
            ng, nw = g["neuron"], f"{where}: neuron"
            bias = (_integers(g, "bias", where, (n,), L2.BIAS_MANT_MIN, L2.BIAS_MANT_MAX) if "bias" in g
                    else np.zeros(n, np.int64))
            nrn = LIFParams(n=n, du=int(_integers(ng, "iDecay", nw, (), 1, L2.DECAY_UNITY)) - 1,
                            dv=int(_integers(ng, "vDecay", nw, (), 0, L2.DECAY_MAX)),
                            vth=int(_integers(ng, "vThMant", nw, (), 0, L2.VTH_MAX)),
                            bias_mant=bias, bias_exp=L2.NETX_BIAS_EXP)
            layers.append(Layer(_connection(w, delays, where), nrn))
            n_prev = n
    meta = netx_metadata(path)
    net = IntegerNetwork(n_in=n_in, hidden=layers[:-1], readout=layers[-1],
                         input_message_bits=int(meta.get("input_message_bits", 0)), metadata=meta)
    return net.validate()


def same_arithmetic(a: IntegerNetwork, b: IntegerNetwork) -> bool:
    """Whether two networks compute the same integers although their parameters may be written
    differently (a netx file stores ``effective * 2**exp`` and biases at exponent 6): same sizes,
    stored weights, delays of the non-zero synapses, biases, decays and thresholds. Networks
    whose every weight group sum is exact (the ones :func:`netx_problems` accepts)."""
    if a.n_in != b.n_in or a.input_message_bits != b.input_message_bits or len(a.layers) != len(b.layers):
        return False
    for la, lb in zip(a.layers, b.layers):
        if la.rec is not None or lb.rec is not None or la.n != lb.n:
            return False
        wa, wb = _stored_weights(la.ff), _stored_weights(lb.ff)
        if wa.shape != wb.shape or not np.array_equal(wa, wb):
            return False
        da = la.ff.delays if la.ff.delays is not None else np.zeros(wa.shape, np.int64)
        db = lb.ff.delays if lb.ff.delays is not None else np.zeros(wb.shape, np.int64)
        if not np.array_equal(np.where(wa != 0, da, 0), np.where(wb != 0, db, 0)):
            return False
        na, nb = la.neuron, lb.neuron
        if (na.du, na.dv, na.vth) != (nb.du, nb.dv, nb.vth) or not np.array_equal(na.bias(), nb.bias()):
            return False
    return True
