"""The CS-GRU neuron as a lava-nc process with a fixed-point Python model: exactly
:func:`crsnn.loihi2.csgru_step` (the same function the integer simulator and quantization-aware
training use), so it runs bit-exact with them on ``Loihi2SimCfg(select_tag='fixed_pt')``.

Ports: ``a_i`` (into the current), ``a_r`` (reset gate), ``a_z`` (update gate): each the sum of the
connections into it (Lava's ``Dense``/``Sparse`` from the source layer, ``DelaySparse`` from the
layer's own spikes through the axonal delays), one step of latency per connection like every Lava
synapse; ``s_out``: binary spikes. State per neuron: ``i``, ``v`` (24-bit), ``s_prev`` (1 bit).
Like :class:`~crsnn.deploy.lava_procs.RecordedLIF`, it records its spikes and writes them to
``record_path`` (an ``.npy`` int32 array (1, steps, n)) at step ``num_steps``.

This is a CPU model only: Loihi 2 runs custom neurons as microcode, which Lava does not expose
publicly (see ``crsnn-report``).
"""

from __future__ import annotations

import numpy as np

from crsnn import loihi2 as L2
from crsnn.lava_compat import import_lava

import_lava()

from lava.magma.core.decorator import implements, requires, tag  # noqa: E402
from lava.magma.core.model.py.model import PyLoihiProcessModel  # noqa: E402
from lava.magma.core.model.py.ports import PyInPort, PyOutPort  # noqa: E402
from lava.magma.core.model.py.type import LavaPyType  # noqa: E402
from lava.magma.core.process.ports.ports import InPort, OutPort  # noqa: E402
from lava.magma.core.process.process import AbstractProcess  # noqa: E402
from lava.magma.core.process.variable import Var  # noqa: E402
from lava.magma.core.resources import CPU  # noqa: E402
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol  # noqa: E402


class CSGRUNeurons(AbstractProcess):
    """A population of fixed-point CS-GRU neurons (:func:`crsnn.loihi2.csgru_step`).

    shape: (n,). vth: threshold mantissa. bias_i: (n,) current bias (v units); bias_r, bias_z:
    (n,) gate biases (Q12), all ``mant << exp`` already. w_z: (n,) 8-bit update-gate weights;
    z_shift: their shift. record_path / num_steps: where and when the spike record is written."""

    def __init__(self, *, shape: tuple[int], vth: int, bias_i, bias_r, bias_z, w_z, z_shift: int,
                 record_path: str, num_steps: int, name: str | None = None) -> None:
        super().__init__(shape=shape, record_path=record_path, num_steps=int(num_steps), name=name)
        self.a_i, self.a_r, self.a_z = InPort(shape=shape), InPort(shape=shape), InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        self.i = Var(shape=shape, init=0)
        self.v = Var(shape=shape, init=0)
        self.s_prev = Var(shape=shape, init=0)
        self.bias_i = Var(shape=shape, init=np.asarray(bias_i, dtype=np.int64))
        self.bias_r = Var(shape=shape, init=np.asarray(bias_r, dtype=np.int64))
        self.bias_z = Var(shape=shape, init=np.asarray(bias_z, dtype=np.int64))
        self.w_z = Var(shape=shape, init=np.asarray(w_z, dtype=np.int64))
        self.z_shift = Var(shape=(1,), init=int(z_shift))
        self.vth = Var(shape=(1,), init=int(vth))


@implements(proc=CSGRUNeurons, protocol=LoihiProtocol)
@requires(CPU)
@tag("bit_accurate_loihi", "fixed_pt")
class PyCSGRUModelFixed(PyLoihiProcessModel):
    """Fixed-point model: per step, receive the three summed inputs, run
    :func:`crsnn.loihi2.csgru_step` in int64, send the spikes, record them."""

    a_i: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int64, precision=32)
    a_r: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int64, precision=32)
    a_z: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int64, precision=32)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=1)
    i: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    v: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    s_prev: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=1)
    bias_i: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    bias_r: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    bias_z: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    w_z: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=9)
    z_shift: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=5)
    vth: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=17)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self._steps = int(proc_params["num_steps"])
        self._path = proc_params["record_path"]
        self._record: np.ndarray | None = None

    def run_spk(self):
        a_i = self.a_i.recv().astype(np.int64)
        a_r = self.a_r.recv().astype(np.int64)
        a_z = self.a_z.recv().astype(np.int64)
        i, v, s, _, _ = L2.csgru_step(self.i.astype(np.int64), self.v.astype(np.int64), self.s_prev.astype(np.int64),
                                      a_r, a_i, a_z, self.bias_r, self.bias_i, self.bias_z, self.w_z,
                                      int(self.z_shift[0]), int(self.vth[0]))
        self.i[:] = i
        self.v[:] = v
        self.s_prev[:] = s
        spikes = s.astype(np.int32)
        self.s_out.send(spikes)
        if self._record is None:
            self._record = np.zeros((1, self._steps, spikes.shape[0]), dtype=np.int32)
        t = self.time_step - 1
        if t < self._steps:
            self._record[0, t] = spikes
        if self.time_step == self._steps:
            np.save(self._path, self._record)
