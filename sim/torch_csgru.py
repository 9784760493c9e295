"""The torch integer simulator of a CS-GRU layer (:class:`~crsnn.models.integer.GateSet`): the
same arithmetic as :func:`crsnn.sim.integer_sim.run_csgru_layer` (the NumPy reference) on
float64 tensors holding integers, neuron-major ``(n, batch)``, CPU or CUDA. The compiled CPU loop
(:mod:`crsnn.sim.native`) has no CS-GRU neuron: :func:`crsnn.sim.torch_sim.simulate_torch` runs a
network with CS-GRU layers on these torch operations.

Exactness: every value is an integer below 2**38 in magnitude (:func:`crsnn.loihi2.csgru_step`),
so float64 additions and products are exact; the feedforward products and the recurrent sums are
those of :mod:`crsnn.sim.torch_sim` (exact by the same bounds).
"""

from __future__ import annotations

import numpy as np
import torch

from crsnn import loihi2 as L2
from crsnn.models.integer import Layer
from crsnn.sim.torch_sim import (LOOP_SINGLE_THREAD_MAX, _feedforward64, _prepare_recurrence, _recurrent_input,
                                 _small_work_threads)


def run_csgru_layer(layer: Layer, src: torch.Tensor, max_input: int, steps: int, batch: int) -> torch.Tensor:
    """Run one CS-GRU population for all steps.

    ``src``: (n_in, steps * batch) float, the source's output delayed by one step (as for
    :func:`crsnn.sim.torch_sim._run_layer`). Returns the spike history (n + 1, dmax + 1 + steps,
    batch) float64 with the spike of step t in row dmax + 1 + t (row n and the leading steps zero),
    the layout the next layer reads."""
    g = layer.gates
    assert g is not None and layer.rec is not None
    dev = src.device
    n, nrn = layer.n, layer.neuron
    a_i, _ = _feedforward64(layer, src, max_input, steps, batch)  # (a << 6), (n, steps, batch)
    a_r, _ = _feedforward64(Layer(g.r_ff, nrn), src, max_input, steps, batch)
    dmax = int(layer.rec.delays.max())
    rows = dmax + 1 + steps
    recs = [_prepare_recurrence(layer, steps, rows, dmax, dev, r) for r in (layer.rec, g.r_rec, g.z_rec)]
    hist = torch.zeros((n + 1, rows, batch), dtype=torch.float64, device=dev)
    hist_flat = hist.view((n + 1) * rows, batch)

    def col(a: np.ndarray) -> torch.Tensor:
        return torch.tensor(a.astype(np.float64), device=dev)[:, None]

    bias_i, bias_r, bias_z, w_z = col(nrn.bias()), col(g.bias_r()), col(g.bias_z()), col(g.w_z)
    i = torch.zeros((n, batch), dtype=torch.float64, device=dev)
    v = torch.zeros_like(i)
    s_prev = torch.zeros_like(i)
    unit = 1.0 / 2**L2.ACT_SHIFT  # a_ff holds a << 6: back to a (exact, a power of two)
    with torch.no_grad(), _small_work_threads(dev, n * batch <= LOOP_SINGLE_THREAD_MAX):
        for t in range(steps):
            r_i, r_r, r_z = (_recurrent_input(r, hist_flat, t, n).to(torch.float64) for r in recs)
            i, v, s, _, _ = L2.csgru_step(i, v, s_prev, a_r[:, t] * unit + r_r, a_i[:, t] * unit + r_i, r_z,
                                          bias_r, bias_i, bias_z, w_z, g.z_shift, nrn.vth)
            s_prev = s.to(torch.float64)
            hist[:n, dmax + 1 + t].copy_(s_prev)
    return hist
