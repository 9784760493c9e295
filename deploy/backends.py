"""Execution backends for an integer network: ``sim`` (the integer simulator in torch, on CPU or
CUDA: :func:`crsnn.sim.torch_sim.simulate_torch`), ``lava-cpu``
(Lava's fixed-point CPU simulator, ``Loihi2SimCfg``) and ``loihi2`` (a Loihi 2 board through
Intel's lava-loihi extension, ``Loihi2HwCfg``).

All three take a batch ``x`` (batch, steps, n_in) and return hidden spikes and readout voltages
in the same layout. ``lava-cpu`` runs the batch in chunks of side-by-side copies
(:mod:`crsnn.deploy.lava_network`).
"""

from __future__ import annotations

import importlib.util
import shutil
from dataclasses import dataclass
from typing import Callable

import numpy as np

from crsnn.models.integer import IntegerNetwork

BACKENDS = ("sim", "lava-cpu", "loihi2")
#: Where the ``sim`` backend runs: ``auto`` is CUDA when torch sees a GPU, else the CPU.
SIM_DEVICES = ("cpu", "cuda", "auto")


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run on this machine; the message says what is missing."""


@dataclass
class BatchResult:
    """hidden_spikes: list of bool (batch, steps, n); readout_v: int64 (batch, steps, n_out)."""

    hidden_spikes: list[np.ndarray]
    readout_v: np.ndarray


def loihi2_missing() -> list[str]:
    """What this machine lacks to run on Loihi 2 (empty when everything is there)."""
    missing = []
    if importlib.util.find_spec("lava") is None:
        return ["lava-nc is not installed (run `make setup`)"]
    try:
        from crsnn.lava_compat import import_lava

        import_lava()
        from lava.utils import loihi

        has_ext = loihi.is_installed()
    except Exception:  # noqa: BLE001 - any failure means the extension is unusable
        has_ext = False
    if not has_ext:
        missing.append("Intel's lava-loihi extension is not installed (`import lava.utils.loihi2_profiler` fails); "
                       "it is distributed to Intel Neuromorphic Research Community (INRC) members")
    if importlib.util.find_spec("lava.proc.embedded_io") is None:
        missing.append("lava.proc.embedded_io (the PyToNx/NxToPy spike adapters of lava-loihi) is not importable")
    if shutil.which("sinfo") is None and not _ethernet_host_configured():
        missing.append("no Loihi 2 board is reachable: no SLURM controller (`sinfo` not found) and no Ethernet host "
                       "configured (NXSDKHOST / LOIHI_GEN environment variables)")
    return missing


def _ethernet_host_configured() -> bool:
    import os

    return bool(os.environ.get("NXSDKHOST")) and bool(os.environ.get("LOIHI_GEN"))


def require_loihi2() -> None:
    """Raise :class:`BackendUnavailable` naming everything that is missing for ``loihi2``."""
    missing = loihi2_missing()
    if missing:
        raise BackendUnavailable("cannot run on Loihi 2: " + "; ".join(missing)
                                 + ". Use --backend lava-cpu (bit-exact CPU simulation of the same network).")


def sim_device(device: str = "cpu"):
    """The torch device of the ``sim`` backend for ``cpu``, ``cuda`` or ``auto``; raises
    :class:`BackendUnavailable` for ``cuda`` on a machine without a usable GPU."""
    from crsnn.sim.torch_sim import resolve_device

    if device not in SIM_DEVICES:
        raise ValueError(f"unknown device {device!r}; choose one of {', '.join(SIM_DEVICES)}")
    try:
        return resolve_device(device)
    except ValueError as exc:
        raise BackendUnavailable(str(exc)) from None


def run_batch(net: IntegerNetwork, x: np.ndarray, backend: str = "sim", chunk: int = 32,
              progress: Callable[[int], None] | None = None, timeout_s: float = 3600.0,
              device: str = "cpu") -> BatchResult:
    """Run ``x`` (batch, steps, n_in) on a backend, ``chunk`` samples per Lava run (side by side).
    ``progress(k)`` is called with the number of samples finished after each chunk. ``device``
    (``cpu``, ``cuda``, ``auto``) is where the ``sim`` backend runs; the results are the same bits."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "loihi2":
        require_loihi2()
    dev = sim_device(device) if backend == "sim" else None
    hidden: list[list[np.ndarray]] = [[] for _ in net.hidden]
    readout = []
    step = len(x) if backend == "sim" else max(1, chunk)
    for start in range(0, len(x), step):
        xb = x[start:start + step]
        if backend == "sim":
            from crsnn.sim.torch_sim import simulate_torch

            r = simulate_torch(net, xb, device=dev)
        elif backend == "lava-cpu":
            from crsnn.deploy.lava_network import run_lava

            r = run_lava(net, xb, timeout_s=timeout_s)
        else:  # pragma: no cover - needs a Loihi 2 board
            from crsnn.deploy.lava_network import run_lava

            r = run_lava(net, xb, timeout_s=timeout_s, hardware=True)
        for li, s in enumerate(r.hidden_spikes):
            hidden[li].append(s)
        readout.append(r.readout_v)
        if progress is not None:
            progress(len(xb))
    return BatchResult(hidden_spikes=[np.concatenate(h) for h in hidden], readout_v=np.concatenate(readout))
