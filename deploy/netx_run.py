"""Run a netx HDF5 file with lava-dl's own loader, ``lava.lib.dl.netx.hdf5.Network``, on Lava's
fixed-point CPU simulator (``Loihi2SimCfg(select_tag='fixed_pt')``), recording every layer's
spikes and the last layer's voltage, for the comparison with crsnn's integer simulator.

B samples run side by side as B ``Network`` processes loaded from the same file, each fed by its
own spike source, in one Lava run (one start-up for the batch; the copies are linked by
zero-weight ``Dense`` processes, which add nothing, because Lava runs one connected graph). Spikes are read with sink
processes and the readout voltage with a ``Monitor``: slower than crsnn's own builder
(:mod:`crsnn.deploy.lava_network`), but the processes are exactly the ones netx builds. The run
happens in a watchdog child process (:mod:`crsnn.deploy.watchdog`).
"""

from __future__ import annotations

import os
import time

import numpy as np

from crsnn.deploy.lava_network import LavaResult
from crsnn.deploy.watchdog import run_with_timeout
from crsnn.lava_dl_compat import import_netx


def _run_netx_in_lava(path: str, x: np.ndarray, input_message_bits: int) -> LavaResult:
    """Build and run (in this process). ``x``: (batch, steps, n_in) int64."""
    netx = import_netx()
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.sink import RingBuffer as SpikeSink
    from lava.proc.io.source import RingBuffer as SpikeSource
    from lava.proc.dense.process import Dense
    from lava.proc.monitor.process import Monitor

    t0 = time.perf_counter()
    batch, steps, _ = x.shape
    nets, sinks, mons = [], [], []
    for b in range(batch):
        net = netx.hdf5.Network(net_config=path, input_message_bits=int(input_message_bits))
        for li, block in enumerate(net.layers):  # unique names: the Monitor keys its data by name
            block.neuron.name = f"sample{b}_layer{li}"
        src = SpikeSource(data=np.ascontiguousarray(x[b].T).astype(np.int32))
        src.s_out.connect(net.inp)
        if nets:  # Lava runs one connected graph: link the copies by a zero-weight Dense (adds 0)
            link = Dense(weights=np.zeros((net.inp.shape[0], nets[-1].out.shape[0]), dtype=np.int32))
            nets[-1].out.connect(link.s_in)
            link.a_out.connect(net.inp)
        layer_sinks = []
        for block in net.layers[:-1]:
            sink = SpikeSink(shape=block.neuron.s_out.shape, buffer=steps)
            block.neuron.s_out.connect(sink.a_in)
            layer_sinks.append(sink)
        mon = Monitor()
        mon.probe(net.layers[-1].neuron.v, steps)
        nets.append(net)
        sinks.append(layer_sinks)
        mons.append(mon)
    t1 = time.perf_counter()
    try:
        nets[0].run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        t2 = time.perf_counter()
        hidden = [np.stack([np.asarray(sinks[b][li].data.get()).T for b in range(batch)]).astype(bool)
                  for li in range(len(sinks[0]))]  # (batch, steps, n)
        readout_v = np.stack([np.asarray(mons[b].get_data()[nets[b].layers[-1].neuron.name]["v"])
                              for b in range(batch)]).astype(np.int64)  # (batch, steps, n_out)
    finally:
        nets[0].stop()
    t3 = time.perf_counter()
    return LavaResult(hidden_spikes=hidden, readout_v=readout_v,
                      timings={"build_s": t1 - t0, "run_s": t2 - t1, "readout_s": t3 - t2})


def run_netx(path: str | os.PathLike, x: np.ndarray, input_message_bits: int = 0,
             timeout_s: float = 600.0) -> LavaResult:
    """Load ``path`` with ``netx.hdf5.Network`` and run it on ``x`` ((batch, steps, n_in)
    integers) for ``x.shape[1]`` steps on Lava's fixed-point CPU simulator. Returns every hidden
    layer's spikes (bool (batch, steps, n)) and the last layer's voltage (int64 (batch, steps,
    n_out)), the layout of :func:`crsnn.deploy.lava_network.run_lava`."""
    import_netx()  # in this process, before the watchdog forks (see crsnn.lava_compat)
    x = np.asarray(x, dtype=np.int64)
    return run_with_timeout(_run_netx_in_lava, str(path), x, int(input_message_bits), timeout_s=timeout_s,
                            what="lava-dl netx run")
