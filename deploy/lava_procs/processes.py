"""lava-nc processes and process models of our own, all bit-exact with Lava's.

``CachedDelaySparse`` is Lava's ``DelaySparse``; its model is Lava's ``PyDelaySparseModelBitAcc``
except that the delay-split weight matrix (one block of rows per delay value) is built once, after
Lava's first-step weight quantization, instead of every step (which costs 1-12 ms per step and
dominated Lava's time for CRSNN layers).

``RecordedLIF`` is Lava's ``LIF`` process; its fixed-point model is Lava's own
``PyLifModelBitAcc`` (the arithmetic is inherited unchanged) that additionally records, every step,
the spikes it sends and/or its voltage ``v``, and writes the whole record to an ``.npy`` file at
the last step of the run. Reading results through sink processes and ``Var.get()`` or a
``Monitor`` costs ~19 µs per element (29 s of a 34 s run for 32 samples x 512 neurons x 100
steps); the file costs milliseconds and removes the sink processes from every step.

Importing this module registers the model with Lava (the ``@implements`` decorator); select it with
``Loihi2SimCfg(select_tag='fixed_pt')`` as usual.
"""

from __future__ import annotations

import numpy as np

from crsnn.lava_compat import import_lava

import_lava()

from lava.magma.core.decorator import implements, requires, tag  # noqa: E402
from lava.magma.core.resources import CPU  # noqa: E402
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol  # noqa: E402
from lava.proc.lif.models import PyLifModelBitAcc  # noqa: E402
from lava.proc.lif.process import LIF  # noqa: E402
from lava.proc.sparse.models import PyDelaySparseModelBitAcc  # noqa: E402
from lava.proc.sparse.process import DelaySparse  # noqa: E402


class RecordedLIF(LIF):
    """``LIF`` whose spikes (``record_spikes``) and/or voltage (``record_v``) are written to
    ``record_path`` (an ``.npy`` file, int32 array (2 or 1, steps, n): spikes first) when the run
    reaches ``num_steps``. All other parameters as Lava's ``LIF``."""

    def __init__(self, *, record_path: str, num_steps: int, record_spikes: bool = True,
                 record_v: bool = False, **kwargs) -> None:
        super().__init__(record_path=record_path, num_steps=int(num_steps), record_spikes=bool(record_spikes),
                         record_v=bool(record_v), **kwargs)


@implements(proc=RecordedLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("bit_accurate_loihi", "fixed_pt")
class PyRecordedLifModelBitAcc(PyLifModelBitAcc):
    """Lava's bit-accurate LIF model plus a per-step record written to a file at the last step."""

    implements_process = None  # let @implements bind this subclass to RecordedLIF (Lava's pattern)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self._steps = int(proc_params["num_steps"])
        self._path = proc_params["record_path"]
        self._what = [k for k in ("record_spikes", "record_v") if proc_params[k]]
        self._record: np.ndarray | None = None

    def run_spk(self):
        super().run_spk()
        if self._record is None:
            self._record = np.zeros((len(self._what), self._steps, self.v.shape[0]), dtype=np.int32)
        t = self.time_step - 1
        if t < self._steps:
            for i, what in enumerate(self._what):
                self._record[i, t] = self.s_out_buff if what == "record_spikes" else self.v
        if self.time_step == self._steps:
            np.save(self._path, self._record)


class CachedDelaySparse(DelaySparse):
    """Lava's ``DelaySparse`` (same parameters); runs with :class:`PyCachedDelaySparseModelBitAcc`."""


@implements(proc=CachedDelaySparse, protocol=LoihiProtocol)
@requires(CPU)
@tag("bit_accurate_loihi", "fixed_pt")
class PyCachedDelaySparseModelBitAcc(PyDelaySparseModelBitAcc):
    """Lava's bit-accurate DelaySparse model with the delay-split matrix computed once.

    Lava calls ``get_delay_wgts_mat(weights, delays, max_delay)`` from ``calc_act`` every step;
    weights are quantized in place on the first step (before the first ``calc_act``) and never
    change afterwards (no learning), so the matrix is cached after that first call.
    """

    implements_process = None

    def calc_act(self, s_in) -> np.ndarray:
        cached = getattr(self, "_delay_wgts", None)
        if cached is None:
            cached = self._delay_wgts = self.get_delay_wgts_mat(self.weights, self.delays, self.a_buff.shape[-1] - 1).tocsr()
        return np.reshape(cached.dot(s_in), (self.a_buff.shape[-1], self.weights.shape[0])).T
