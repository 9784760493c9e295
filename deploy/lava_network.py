"""Build an :class:`~crsnn.models.integer.IntegerNetwork` from lava-nc processes and run it on
Lava's fixed-point CPU simulator (``Loihi2SimCfg(select_tag='fixed_pt')``).

Process graph (per hidden layer ``l``; B samples run side by side, see below)::

    RingBuffer(source, graded or binary) -> Dense/Sparse -> LIF_1 -> Dense/Sparse -> LIF_2 ...
                                                          LIF_l.s_out -> DelaySparse -> LIF_l.a_in
    LIF_L -> Dense/Sparse -> LIF_readout

- Every LIF is a :class:`~crsnn.deploy.lava_procs.RecordedLIF`: Lava's bit-accurate LIF model
  that also records its spikes (hidden layers) or its voltage (readout) and writes them to a file
  at the last step (reading them through sinks / ``Var.get`` costs ~19 µs per element).

- Feedforward connections are ``Dense`` (one sample) or ``Sparse`` with a block-diagonal matrix
  (B samples side by side: B independent copies of the network inside the same processes, which
  amortises Lava's per-step, per-process overhead; copies share no synapse, so no spike changes).
  A connection with per-synapse delays is a ``DelayDense`` (one sample) or a block-diagonal
  ``DelaySparse`` (several).
- A recurrence is a ``DelaySparse`` (:class:`~crsnn.deploy.lava_procs.CachedDelaySparse`: the
  same model with its per-step delay-split matrix built once) whose weights are the banded conv matrix (or the dense DelRec
  matrix) and whose per-synapse delay is the presynaptic neuron's axonal delay.
- Weight exponent, number of weight bits and (when given) the sign mode go to the processes as
  their ``weight_exp``/``num_weight_bits``/``sign_mode`` parameters; Lava quantizes the raw weights
  itself, which is what the simulator's :func:`crsnn.loihi2.effective_weights` reproduces.

Every parameter is validated before any process is built; the run happens in a watchdog child
process (:mod:`crsnn.deploy.watchdog`), so a network Lava would hang on fails fast.
"""

from __future__ import annotations

import os
import tempfile
import time
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from crsnn import loihi2 as L2
from crsnn.lava_compat import import_lava
from crsnn.models.integer import Connection, IntegerNetwork, Layer, Recurrence
from crsnn.deploy.watchdog import run_with_timeout


#: Why a network with CS-GRU layers does not run on a Loihi 2 board from here.
CSGRU_HARDWARE_REASON = (L2.csgru_hardware_needs() + "; such networks run on the Lava CPU simulator (lava-cpu) "
                         "and the integer simulator (sim) only")


@dataclass
class LavaResult:
    """Lava run output, same layout as :class:`crsnn.sim.integer_sim.SimResult`.

    hidden_spikes: list of bool (batch, steps, n_l); readout_v: int64 (batch, steps, n_out).
    timings: seconds spent building, compiling+running, and reading out.
    """

    hidden_spikes: list[np.ndarray]
    readout_v: np.ndarray
    timings: dict[str, float]


def _block_diag(m: np.ndarray, copies: int) -> sp.csr_matrix:
    return sp.block_diag([sp.csr_matrix(m)] * copies, format="csr") if copies > 1 else sp.csr_matrix(m)


def _lava_sign_mode(conn):
    from lava.utils.weightutils import SignMode

    return {} if conn.sign_mode is None else {"sign_mode": SignMode(int(conn.sign_mode))}


def _ff_process(conn: Connection, copies: int, num_message_bits: int, hardware: bool = False):
    """Dense (one copy) or block-diagonal Sparse (several copies) feedforward connection; with
    per-synapse delays DelayDense (one copy) or block-diagonal DelaySparse (several copies)."""
    from lava.proc.dense.process import Dense
    from lava.proc.sparse.process import Sparse

    kw = dict(weight_exp=conn.weight_exp, num_weight_bits=conn.num_weight_bits,
              num_message_bits=num_message_bits, **_lava_sign_mode(conn))
    if conn.delays is not None:
        return _delayed_ff_process(conn, copies, kw, hardware)
    if copies == 1:
        return Dense(weights=conn.weights.astype(np.int32), **kw)
    w = _block_diag(conn.weights.astype(np.int32), copies)
    return Sparse(weights=w, **kw)


def _delayed_ff_process(conn: Connection, copies: int, kw: dict, hardware: bool):
    """Per-synapse delays: Lava's ``DelayDense`` for one copy (delay 0 = a plain ``Dense``: a spike
    at step t arrives at t + 1 + d), block-diagonal ``DelaySparse`` for several (our cached CPU
    model off hardware). ``max_delay`` is the largest delay, as Lava infers it."""
    from lava.proc.dense.process import DelayDense

    if hardware:
        from lava.proc.sparse.process import DelaySparse
    else:
        from crsnn.deploy.lava_procs import CachedDelaySparse as DelaySparse

    max_delay = int(conn.delays.max()) if conn.delays.size else 0
    if copies == 1:
        return DelayDense(weights=conn.weights.astype(np.int32), delays=conn.delays.astype(int),
                          max_delay=max_delay, **kw)
    w = sp.csr_matrix(conn.weights.astype(np.int32))
    w.eliminate_zeros()
    w.sort_indices()
    r, c = w.nonzero()
    d = sp.csr_matrix((conn.delays[r, c].astype(np.int64), (r, c)), shape=w.shape)
    w_b, d_b = _block_diag(w.toarray(), copies), _block_diag(d.toarray(), copies).astype(np.int64)
    return DelaySparse(weights=w_b, delays=d_b, max_delay=max_delay, **kw)


def _rec_process(layer: Layer, copies: int, hardware: bool = False, rec: Recurrence | None = None):
    """DelaySparse recurrence: weights[i, j] with delay delays[j] on every synapse from j
    (``layer.rec``, or ``rec``: a CS-GRU gate's recurrence over the same delays).
    (Lava's own ``DelaySparse`` on hardware, our cached CPU model otherwise.)"""
    if hardware:
        from lava.proc.sparse.process import DelaySparse
    else:
        from crsnn.deploy.lava_procs import CachedDelaySparse as DelaySparse

    rec = rec if rec is not None else layer.rec
    assert rec is not None
    w = sp.csr_matrix(rec.matrix().astype(np.int32))
    w.eliminate_zeros()
    w.sort_indices()
    d = w.copy().astype(np.int64)
    d.data = rec.delays[w.indices].astype(np.int64)  # delay of the presynaptic neuron (column)
    w_b, d_b = _block_diag(w.toarray(), copies), _block_diag(d.toarray(), copies).astype(np.int64)
    # Structure of the delay matrix must follow the weights; zeros in d stay implicit (delay 0).
    max_delay = int(rec.delays.max()) if rec.delays.size else 0
    return DelaySparse(weights=w_b, delays=d_b, max_delay=max_delay, weight_exp=rec.weight_exp,
                       num_weight_bits=rec.num_weight_bits, **_lava_sign_mode(rec))


def _lif_process(layer: Layer, copies: int, name: str, record_path: str, steps: int, readout: bool):
    from crsnn.deploy.lava_procs import RecordedLIF

    nrn = layer.neuron
    return RecordedLIF(shape=(nrn.n * copies,), du=int(nrn.du), dv=int(nrn.dv), vth=int(nrn.vth),
                       bias_mant=np.tile(nrn.bias_mant, copies).astype(np.int32),
                       bias_exp=np.tile(nrn.bias_exp, copies).astype(np.int32), name=name,
                       record_path=record_path, num_steps=steps, record_spikes=not readout, record_v=readout)


def _csgru_layer(layer: Layer, copies: int, name: str, record_path: str, steps: int, source, msg_bits: int):
    """A CS-GRU layer: :class:`~crsnn.deploy.lava_procs.CSGRUNeurons` fed by two feedforward
    connections from ``source`` (``W_i`` -> ``a_i``, ``W_r`` -> ``a_r``) and three ``DelaySparse``
    recurrences from its own spikes through the axonal delays (``U_i`` -> ``a_i``, ``U_r`` ->
    ``a_r``, ``U_z`` -> ``a_z``). Returns the neuron process."""
    from crsnn.deploy.lava_procs import CSGRUNeurons

    g, nrn = layer.gates, layer.neuron
    assert g is not None
    neurons = CSGRUNeurons(shape=(layer.n * copies,), vth=int(nrn.vth), bias_i=np.tile(nrn.bias(), copies),
                           bias_r=np.tile(g.bias_r(), copies), bias_z=np.tile(g.bias_z(), copies),
                           w_z=np.tile(g.w_z, copies), z_shift=g.z_shift, record_path=record_path, num_steps=steps,
                           name=name)
    for conn, port in ((layer.ff, neurons.a_i), (g.r_ff, neurons.a_r)):
        ff = _ff_process(conn, copies, msg_bits)
        source.connect(ff.s_in)
        ff.a_out.connect(port)
    for rec, port in ((layer.rec, neurons.a_i), (g.r_rec, neurons.a_r), (g.z_rec, neurons.a_z)):
        proc = _rec_process(layer, copies, rec=rec)
        neurons.s_out.connect(proc.s_in)
        proc.a_out.connect(port)
    return neurons


def _run_in_lava(net: IntegerNetwork, x: np.ndarray) -> LavaResult:
    """Build and run (in this process). ``x``: validated (batch, steps, n_in) int64."""
    import_lava()
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.source import RingBuffer as SpikeSource

    # Lava's DelaySparse builds its delay-split matrix with CSR item assignment; scipy's
    # efficiency warning about that is Lava's, not actionable for users.
    warnings.filterwarnings("ignore", category=sp.SparseEfficiencyWarning)
    t0 = time.perf_counter()
    batch, steps, n_in = x.shape
    # source data: (batch * n_in, steps), copy b occupies rows b*n_in .. (b+1)*n_in - 1
    src = SpikeSource(data=np.ascontiguousarray(x.transpose(0, 2, 1).reshape(batch * n_in, steps)).astype(np.int32))
    prev_out, msg_bits = src.s_out, net.input_message_bits
    tmp = tempfile.TemporaryDirectory(prefix="crsnn-lava-")
    paths = [os.path.join(tmp.name, f"layer{li}.npy") for li in range(len(net.layers))]
    for li, layer in enumerate(net.hidden):
        if layer.is_csgru:
            neurons = _csgru_layer(layer, batch, f"hidden{li}", paths[li], steps, prev_out, msg_bits)
            prev_out, msg_bits = neurons.s_out, 0
            continue
        ff = _ff_process(layer.ff, batch, msg_bits)
        lif = _lif_process(layer, batch, f"hidden{li}", paths[li], steps, readout=False)
        prev_out.connect(ff.s_in)
        ff.a_out.connect(lif.a_in)
        if layer.rec is not None:
            rec = _rec_process(layer, batch)
            lif.s_out.connect(rec.s_in)
            rec.a_out.connect(lif.a_in)
        prev_out, msg_bits = lif.s_out, 0
    ro = net.readout
    ff = _ff_process(ro.ff, batch, msg_bits)
    ro_lif = _lif_process(ro, batch, "readout", paths[-1], steps, readout=True)
    prev_out.connect(ff.s_in)
    ff.a_out.connect(ro_lif.a_in)
    t1 = time.perf_counter()
    with tmp:
        try:
            ro_lif.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
            t2 = time.perf_counter()
        finally:
            ro_lif.stop()
        records = [np.load(p)[0] for p in paths]  # each (steps, batch * n)
    t3 = time.perf_counter()

    def per_sample(r: np.ndarray, n: int) -> np.ndarray:  # (steps, batch * n) -> (batch, steps, n)
        return r.reshape(steps, batch, n).transpose(1, 0, 2)

    hidden_spikes = [per_sample(r, layer.n).astype(bool) for r, layer in zip(records[:-1], net.hidden)]
    readout_v = per_sample(records[-1], ro.n).astype(np.int64)
    return LavaResult(hidden_spikes=hidden_spikes, readout_v=readout_v,
                      timings={"build_s": t1 - t0, "run_s": t2 - t1, "readout_s": t3 - t2})


def _run_on_loihi2(net: IntegerNetwork, x: np.ndarray) -> LavaResult:  # pragma: no cover - needs a board
    """The same process graph on a Loihi 2 board (``Loihi2HwCfg``), with Lava's standard LIF and
    DelaySparse processes on chip and lava-loihi's spike adapters between the Python source /
    sinks and the chip; the readout voltage is read with a ``Monitor``. Requires Intel's
    lava-loihi extension and a board (see :func:`crsnn.deploy.backends.require_loihi2`).
    Not exercised by the test suite: no board is available to it."""
    if net.has_csgru:
        raise RuntimeError(CSGRU_HARDWARE_REASON)
    import_lava()
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2HwCfg
    from lava.proc import embedded_io as eio
    from lava.proc.io.sink import RingBuffer as SpikeSink
    from lava.proc.io.source import RingBuffer as SpikeSource
    from lava.proc.lif.process import LIF
    from lava.proc.monitor.process import Monitor

    t0 = time.perf_counter()
    batch, steps, n_in = x.shape
    src = SpikeSource(data=np.ascontiguousarray(x.transpose(0, 2, 1).reshape(batch * n_in, steps)).astype(np.int32))
    adapter = eio.spike.PyToNxAdapter(shape=(batch * n_in,), num_message_bits=net.input_message_bits)
    src.s_out.connect(adapter.inp)
    prev_out, msg_bits, sinks = adapter.out, net.input_message_bits, []
    lifs = []
    for layer in net.layers:
        nrn = layer.neuron
        lif = LIF(shape=(nrn.n * batch,), du=int(nrn.du), dv=int(nrn.dv), vth=int(nrn.vth),
                  bias_mant=np.tile(nrn.bias_mant, batch).astype(np.int32),
                  bias_exp=np.tile(nrn.bias_exp, batch).astype(np.int32))
        ff = _ff_process(layer.ff, batch, msg_bits, hardware=True)
        prev_out.connect(ff.s_in)
        ff.a_out.connect(lif.a_in)
        if layer.rec is not None:
            rec = _rec_process(layer, batch, hardware=True)
            lif.s_out.connect(rec.s_in)
            rec.a_out.connect(lif.a_in)
        lifs.append(lif)
        prev_out, msg_bits = lif.s_out, 0
    for layer, lif in zip(net.hidden, lifs):
        out = eio.spike.NxToPyAdapter(shape=(layer.n * batch,), num_message_bits=0)
        sink = SpikeSink(shape=(layer.n * batch,), buffer=steps)
        lif.s_out.connect(out.inp)
        out.out.connect(sink.a_in)
        sinks.append(sink)
    mon = Monitor()
    mon.probe(lifs[-1].v, steps)
    t1 = time.perf_counter()
    try:
        lifs[-1].run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2HwCfg())
        t2 = time.perf_counter()
        v = np.asarray(mon.get_data()[lifs[-1].name]["v"]).astype(np.int64)  # (steps, batch * n_out)
        spikes = [np.asarray(s.data.get()).astype(bool) for s in sinks]  # (batch * n, steps)
    finally:
        lifs[-1].stop()
    t3 = time.perf_counter()
    ro = net.readout
    return LavaResult(
        hidden_spikes=[h.reshape(batch, layer.n, steps).transpose(0, 2, 1) for h, layer in zip(spikes, net.hidden)],
        readout_v=v.reshape(steps, batch, ro.n).transpose(1, 0, 2),
        timings={"build_s": t1 - t0, "run_s": t2 - t1, "readout_s": t3 - t2})


def run_lava(net: IntegerNetwork, x: np.ndarray, timeout_s: float = 600.0, hardware: bool = False) -> LavaResult:
    """Validate, then run ``net`` on Lava's fixed-point CPU simulator for ``x.shape[1]`` steps.

    ``x``: (batch, steps, n_in) integers; the batch runs as side-by-side copies in one Lava run.
    The job runs in a watchdog child process and is killed after ``timeout_s`` seconds.
    ``hardware=True`` runs on a Loihi 2 board instead (``Loihi2HwCfg``; check
    :func:`crsnn.deploy.backends.require_loihi2` first).
    """
    net.validate()
    x = net.validate_input(x)
    import_lava()  # in this process, before the watchdog forks (see crsnn.lava_compat)
    job = _run_on_loihi2 if hardware else _run_in_lava
    return run_with_timeout(job, net, x, timeout_s=timeout_s,
                            what="Loihi 2 run" if hardware else "Lava fixed-point run")
