"""The integer simulator in PyTorch, on CPU or CUDA: same inputs, outputs and arithmetic as
:func:`crsnn.sim.integer_sim.simulate` (the readable NumPy reference), bit-exact with it and so
with Lava, by construction. On the CPU, :func:`simulate_torch` hands each layer's loop to the
compiled, event-driven loop of :mod:`crsnn.sim.native` when it is available (several times
faster: see its docstring); the torch operations below run on CUDA, and on a CPU without a C
compiler.

Same clock as :mod:`crsnn.sim.integer_sim`: input step t is integrated by layer 1 at step t + 1,
every feedforward hop adds one step, a recurrent spike of neuron j at step t arrives at step
t + 1 + delays[j].

How it stays exact
------------------
- **State** (``u``, ``v``, the aligned input ``a << 6``) is float64 holding integers; every value
  is below 2**44 in magnitude (sums validated below 2**31, shifted by at most 2**13), far below
  2**53, so additions and the power-of-two scalings are exact. A decay is one multiply by a 12-bit
  factor and one truncation (:func:`crsnn.loihi2.lif_step_float_`).
- **Wraps** (int32, 24-bit current) are applied only where :func:`crsnn.loihi2.lif_wraps` cannot
  prove them to be the identity, from bounds computed once per layer.
- **Products**: a float32 product is used only where every partial sum, in any summation order,
  is an integer (times a power of two) of magnitude below 2**24: the bound is
  ``max_i sum_j |w_ij| * max_input`` (:func:`crsnn.bounds.exact_float32`, shared with
  quantization-aware training); otherwise float64, which is exact
  below 2**53 (guaranteed by :meth:`IntegerNetwork.validate`'s 2**31 bound).
- **Weight exponents**: ``floor_shift`` of the sum (:func:`crsnn.loihi2.floor_shift`); with a
  negative recurrent exponent and several delay groups, each group's sum is floored on its own,
  like Lava (one batched product over the groups' own columns, padded to the largest group).

Layout and speed
----------------
Neuron-major: the state of a layer is ``(n, batch)``. Each layer's feedforward input for all steps
is one matrix product ``(n, n_in) @ (n_in, steps * batch)`` (with per-synapse delays: one product
per distinct delay value on the input shifted by that many steps); the per-step loop only runs the
recurrence (one row gather from the spike history, then k shifted adds for a conv kernel or one
product for a dense matrix) and the neuron update (about 12 tensor operations). Spikes are kept in
a history ``(n + 1, delay_max + 1 + steps, batch)`` (row ``n`` and the leading steps are zero), read
back by the recurrence with precomputed indices and by the next layer's product as a strided view.
There is no Python work per neuron or sample and no device synchronisation inside the loop.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from crsnn import loihi2 as L2
from crsnn.bounds import (  # noqa: F401 (FLOAT32_EXACT, FLOAT64_EXACT, sum_abs_bound: re-exported)
    FLOAT32_EXACT, FLOAT64_EXACT, exact_float32, shifted_bound, sum_abs_bound)
from crsnn.models.integer import IntegerNetwork, Layer, Recurrence
from crsnn.sim import native as native_sim
from crsnn.sim.integer_sim import SimResult

#: On the CPU, the per-step loop of a layer whose state has at most this many elements
#: (neurons x batch) runs on one thread: its operations are too small to gain from more, and a
#: multi-threaded BLAS call on tiny matrices can wait milliseconds for a busy core.
LOOP_SINGLE_THREAD_MAX = 1 << 18
#: Likewise for a feedforward product of at most this many multiply-adds.
GEMM_SINGLE_THREAD_MAX = 1 << 24


@contextmanager
def _small_work_threads(device: torch.device, small: bool) -> Iterator[None]:
    """Run the body on one CPU thread when ``small`` (restoring the caller's setting after)."""
    threads = torch.get_num_threads()
    single = small and device.type == "cpu" and threads > 1
    if single:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if single:
            torch.set_num_threads(threads)


def resolve_device(device: str | torch.device = "cpu") -> torch.device:
    """``"cpu"``, ``"cuda"`` (``"cuda:N"``) or ``"auto"`` (CUDA when available, else CPU).
    Raises ``ValueError`` for CUDA on a machine without it."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but torch.cuda.is_available() is False "
                         "(no GPU, or a CPU-only torch build); use --device cpu or auto")
    return dev


@dataclass
class _Recurrence:
    """A layer's recurrent path, prepared on the device.

    idx: (steps, G * m) int64 flat rows of the spike history read at each step (group-major, then
        slot; padding slots read the zero row). weights: conv taps ``[(offset, w)]`` or a matrix
        ``(n, n)`` (one group) or ``(G, n, m)`` (groups), already scaled by ``2**max(exp, 0)``.
    floor_scale: ``2**exp`` multiplied before the floor for a negative exponent, else None.
    """

    idx: torch.Tensor
    groups: int
    slot: int
    taps: list[tuple[int, float]] | None
    weights: torch.Tensor | None
    floor_scale: float | None
    dtype: torch.dtype
    max_abs: int  # bound of |shifted recurrent input| per step


def _prepare_recurrence(layer: Layer, steps: int, rows: int, dmax: int, device: torch.device,
                        rec: Recurrence | None = None) -> _Recurrence:
    """``layer``'s recurrence (or ``rec``, another recurrence over the same neurons and delays)
    prepared for :func:`_recurrent_input`."""
    rec = rec if rec is not None else layer.rec
    assert rec is not None
    n = layer.n
    delays = rec.delays.astype(np.int64)
    exp = rec.weight_exp
    eff = rec.effective()
    group_vals = np.unique(delays)
    grouped = exp < 0 and len(group_vals) > 1
    dtype = torch.float32 if exact_float32(eff, 1, exp) else torch.float64
    scale = 2.0 ** max(exp, 0)
    floor_scale = 2.0**exp if exp < 0 else None
    # Spike of neuron j at step t sits in history row dmax + 1 + t; it arrives at step t + 1 + d_j,
    # so at step t the recurrence reads row t + dmax - d_j of neuron j (flat index j * rows + row).
    if grouped:
        members = [np.flatnonzero(delays == d) for d in group_vals]
        m = max(len(g) for g in members)
        cols = np.full((len(members), m), n, dtype=np.int64)  # n: the zero row of the history
        w = np.zeros((len(members), n, m), dtype=np.float64)
        for g, js in enumerate(members):
            cols[g, : len(js)] = js
            w[g, :, : len(js)] = eff[:, js]
        cols = cols.reshape(-1)
        weights = torch.tensor(w, dtype=dtype, device=device)
        taps = None
        groups, slot = len(members), m
    else:
        cols = np.arange(n, dtype=np.int64)
        groups, slot = 1, n
        if rec.is_conv:
            k_eff = rec.effective_kernel()
            c = (len(k_eff) - 1) // 2
            taps = sorted(((m - c, float(k_eff[m]) * scale) for m in range(len(k_eff))
                           if k_eff[m] != 0 and abs(m - c) < n), key=lambda tw: tw[0] != 0)  # centre first
            weights = None
        else:
            taps = None
            weights = torch.tensor(eff.astype(np.float64) * scale, dtype=dtype, device=device)
    pad = cols == n
    d_cols = np.where(pad, 0, delays[np.minimum(cols, n - 1)])
    base = np.where(pad, n * rows, cols * rows + dmax - d_cols)
    idx = torch.tensor(base, device=device)[None, :] + torch.where(
        torch.tensor(pad, device=device), 0, torch.arange(steps, device=device)[:, None])
    acc = L2.max_abs_accumulation(eff, 1)
    return _Recurrence(idx=idx, groups=groups, slot=slot, taps=taps, weights=weights, floor_scale=floor_scale,
                       dtype=dtype, max_abs=shifted_bound(acc, exp, groups if grouped else 1))


def _recurrent_input(r: _Recurrence, hist_flat: torch.Tensor, t: int, n: int) -> torch.Tensor:
    """The shifted recurrent sum integrated at step t: (n, batch), float32 or float64 integers."""
    arrived = hist_flat.index_select(0, r.idx[t])  # (G * m, batch)
    if r.taps is not None:
        out = None
        for off, w in r.taps:  # out[i] += w * arrived[i + off]
            if off == 0:
                out = arrived * w if out is None else out.add_(arrived, alpha=w)
                continue
            if out is None:
                out = torch.zeros_like(arrived)
            if off > 0:
                out[: n - off].add_(arrived[off:], alpha=w)
            else:
                out[-off:].add_(arrived[: n + off], alpha=w)
        if out is None:
            out = torch.zeros_like(arrived)
    elif r.groups == 1:
        out = torch.mm(r.weights, arrived)
    else:
        out = torch.bmm(r.weights, arrived.view(r.groups, r.slot, -1))  # (G, n, batch)
        return out.mul_(r.floor_scale).floor_().sum(0)
    if r.floor_scale is not None:
        out.mul_(r.floor_scale).floor_()
    return out


def _feedforward64(layer: Layer, src: torch.Tensor, max_input: int, steps: int, batch: int) -> tuple[torch.Tensor, int]:
    """``(shift(W @ x[t - 1]) << 6)`` for every step: (n, steps, batch) float64, and the bound of
    the shifted sum. ``src``: (n_in, steps * batch) view of the source, zero at step 0."""
    eff = layer.ff.effective()
    exp = layer.ff.weight_exp
    dtype = torch.float32 if exact_float32(eff, max_input) else torch.float64
    if layer.ff.delays is not None:
        a64, groups = _delayed_feedforward64(layer, eff, src, dtype, steps, batch)
    else:
        groups = 1
        w = torch.tensor(eff.astype(np.float64), dtype=dtype, device=src.device)
        with _small_work_threads(src.device, w.numel() * src.shape[1] <= GEMM_SINGLE_THREAD_MAX):
            acc = torch.mm(w, src.to(dtype)).to(torch.float64)
        a64 = L2.floor_shift(acc, exp).mul_(2**L2.ACT_SHIFT) if exp < 0 else acc.mul_(2.0 ** (exp + L2.ACT_SHIFT))
    # The wrap proofs need a bound of |shifted sum|: the worst case over all inputs, or (tighter,
    # and just as rigorous for this run) the largest value this batch actually delivers.
    worst = shifted_bound(L2.max_abs_accumulation(eff, max_input), exp, groups)
    actual = int(a64.abs().max().item()) // 2**L2.ACT_SHIFT if a64.numel() else 0
    return a64.view(layer.n, steps, batch), min(worst, actual)


def _delayed_feedforward64(layer: Layer, eff: np.ndarray, src: torch.Tensor, dtype: torch.dtype, steps: int,
                           batch: int) -> tuple[torch.Tensor, int]:
    """:func:`_feedforward64` of a connection with per-synapse delays: one product per distinct
    delay d, ``W_d @ x[t - 1 - d]`` (the source view shifted by d more steps), each group's sum
    shifted by the weight exponent on its own (Lava's ``DelayDense``). Returns the aligned input
    ``(n, steps * batch)`` float64 and the number of delay groups."""
    exp = layer.ff.weight_exp
    n, n_in = eff.shape
    x = src.view(n_in, steps, batch)
    out = torch.zeros((n, steps, batch), dtype=torch.float64, device=src.device)
    groups = layer.ff.delay_groups()
    with _small_work_threads(src.device, eff.size * src.shape[1] <= GEMM_SINGLE_THREAD_MAX):
        for d, mask in groups:
            if d >= steps:
                continue
            w = torch.tensor(np.where(mask, eff, 0).astype(np.float64), dtype=dtype, device=src.device)
            acc = torch.mm(w, x[:, : steps - d].reshape(n_in, (steps - d) * batch).to(dtype)).to(torch.float64)
            acc = L2.floor_shift(acc, exp) if exp < 0 else acc.mul_(2.0**exp)
            out[:, d:].add_(acc.view(n, steps - d, batch))
    return out.view(n, steps * batch).mul_(2**L2.ACT_SHIFT), len(groups)


def _run_layer(layer: Layer, src: torch.Tensor, max_input: int, steps: int, batch: int, record_v: bool
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run one population for all steps. ``src``: (n_in, steps * batch) float, the source's output
    delayed by one step. Returns ``(history (n + 1, dmax + 1 + steps, batch) float with the spike
    of step t in row dmax + 1 + t, readout voltages (n, steps, batch) float64 or None)``."""
    dev = src.device
    n = layer.n
    nrn = layer.neuron
    a_ff, ff_max = _feedforward64(layer, src, max_input, steps, batch)
    dmax = int(layer.rec.delays.max()) if layer.rec is not None else 0
    rows = dmax + 1 + steps
    rec = _prepare_recurrence(layer, steps, rows, dmax, dev) if layer.rec is not None else None
    hist = torch.empty((n + 1, rows, batch), dtype=rec.dtype if rec else torch.float32, device=dev)
    hist[n].zero_()  # the zero row read by padding slots
    hist[:, : dmax + 1].zero_()  # before step 0 (every later row is written by its step)
    hist_flat = hist.view((n + 1) * rows, batch)
    bias_np = nrn.bias()
    bias = torch.tensor(bias_np.astype(np.float64), device=dev)[:, None]
    wraps = L2.lif_wraps(ff_max + (rec.max_abs if rec else 0), nrn.du, int(np.abs(bias_np).max(initial=0)))
    u = torch.zeros((n, batch), dtype=torch.float64, device=dev)
    v = torch.zeros_like(u)
    vs = torch.empty((n, steps, batch), dtype=torch.float64, device=dev) if record_v else None
    with _small_work_threads(dev, n * batch <= LOOP_SINGLE_THREAD_MAX):
        for t in range(steps):
            a64 = a_ff[:, t] if rec is None else torch.add(a_ff[:, t], _recurrent_input(rec, hist_flat, t, n),
                                                           alpha=2**L2.ACT_SHIFT)
            u, v, s = L2.lif_step_float_(u, v, a64, nrn.du, nrn.dv, nrn.vth, bias, wraps)
            hist[:n, dmax + 1 + t].copy_(s)
            if vs is not None:
                vs[:, t].copy_(v)
    return hist, vs


def shifted_source(x: np.ndarray, device: torch.device) -> torch.Tensor:
    """What the first layer integrates, as one matrix for its feedforward product: ``x`` (batch,
    steps, n_in) integers as a float32 ``(n_in, steps * batch)`` view of ``(n_in, steps, batch)``
    in which step t holds ``x[:, t - 1]`` (zero at t = 0)."""
    batch, steps, n_in = x.shape
    xin = torch.empty((n_in, steps, batch), dtype=torch.float32, device=device)
    xin[:, 0].zero_()
    xin[:, 1:] = torch.from_numpy(x[:, :-1].transpose(2, 1, 0).astype(np.float32)).to(device)
    return xin.view(n_in, steps * batch)


def runs_compiled_loop(device: str | torch.device = "cpu", native: bool | None = None) -> bool:
    """Whether :func:`simulate_torch` on ``device`` with this ``native`` argument runs the
    compiled CPU loop (:mod:`crsnn.sim.native`) rather than torch operations."""
    return resolve_device(device).type == "cpu" and native is not False and (bool(native) or native_sim.enabled())


@lru_cache(maxsize=None)
def _warn_no_native(reason: str) -> None:
    """Say once per reason that the CPU runs the slower torch operations, and why."""
    short = " ".join(reason.split())[:300]
    warnings.warn(f"the integer simulator's compiled CPU loop is unavailable ({short}); "
                  f"running its torch operations instead: same results, 2-4x slower "
                  f"(set {native_sim.ENV_SWITCH}=0 to choose this silently)", RuntimeWarning, stacklevel=3)


def simulate_torch(net: IntegerNetwork, x: np.ndarray | torch.Tensor, device: str | torch.device = "cpu",
                   validate: bool = True, native: bool | None = None) -> SimResult:
    """Run ``net`` on a batch with PyTorch on ``device`` (``"cpu"``, ``"cuda"`` or ``"auto"``).

    ``native``: on the CPU, run each layer's loop compiled (:mod:`crsnn.sim.native`, same results,
    several times faster) instead of torch operations. None (default): whenever it is
    :func:`~crsnn.sim.native.enabled`; True: always (``RuntimeError`` if it cannot be built);
    False: never. CUDA always runs the torch operations, and so does a network with CS-GRU layers
    (the compiled loop has no CS-GRU neuron; :mod:`crsnn.sim.torch_csgru`), whatever ``native``.

    ``x``: (batch, steps, n_in) integers (binary spikes, or graded payloads within
    ``net.input_message_bits``). Returns a :class:`~crsnn.sim.integer_sim.SimResult` of NumPy
    arrays, identical to :func:`crsnn.sim.integer_sim.simulate` (and so to Lava): hidden spikes
    bool (batch, steps, n_l), readout voltages int64 (batch, steps, n_out), readout spikes bool.
    """
    dev = resolve_device(device)
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    if validate:
        net.validate()
        x = net.validate_input(x)
    x = np.asarray(x, dtype=np.int64)
    batch, steps, _ = x.shape
    if steps == 0 or batch == 0:
        from crsnn.sim.integer_sim import simulate

        return simulate(net, x, validate=False)
    # CS-GRU layers have no compiled loop: such a network runs on the torch operations
    if runs_compiled_loop(dev, native) and not net.has_csgru:
        return native_sim.simulate_native(net, x)
    if dev.type == "cpu" and native is None and not native_sim.switched_off() and not net.has_csgru:
        _warn_no_native(native_sim.unavailable_reason() or "")
    src = shifted_source(x, dev)
    max_input = net.max_input()
    hidden = []
    with torch.no_grad():
        for layer in net.hidden:
            if layer.is_csgru:
                from crsnn.sim.torch_csgru import run_csgru_layer

                hist = run_csgru_layer(layer, src, max_input, steps, batch)
            else:
                hist, _ = _run_layer(layer, src, max_input, steps, batch, record_v=False)
            d0 = hist.shape[1] - steps  # dmax + 1
            hidden.append(hist[: layer.n, d0:])  # (n, steps, batch)
            src = hist[: layer.n, d0 - 1: d0 - 1 + steps].reshape(layer.n, steps * batch)  # a view
            max_input = 1
        hist, vs = _run_layer(net.readout, src, max_input, steps, batch, record_v=True)
        assert vs is not None
        ro_s = hist[: net.readout.n, 1:]
        out_h = [h.permute(2, 1, 0).to(torch.bool).cpu().numpy() for h in hidden]
        readout_v = vs.permute(2, 1, 0).to(torch.int64).cpu().numpy()
        readout_s = ro_s.permute(2, 1, 0).to(torch.bool).cpu().numpy()
    return SimResult(hidden_spikes=out_h, readout_v=readout_v, readout_spikes=readout_s)
