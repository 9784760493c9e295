"""Spike-for-spike comparison of two executions of the same integer network."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Mismatch:
    """Differences between two runs (e.g. the integer simulator and Lava).

    spikes_per_layer: mismatching (sample, step, neuron) spike entries per hidden layer.
    readout_values: mismatching (sample, step, neuron) readout voltages.
    first: a description of the first difference found, or None.
    """

    spikes_per_layer: list[int] = field(default_factory=list)
    readout_values: int = 0
    first: str | None = None

    @property
    def spikes(self) -> int:
        return int(sum(self.spikes_per_layer))

    @property
    def exact(self) -> bool:
        return self.spikes == 0 and self.readout_values == 0


def compare_runs(hidden_a: list[np.ndarray], readout_a: np.ndarray,
                 hidden_b: list[np.ndarray], readout_b: np.ndarray) -> Mismatch:
    """Count differences. Arrays are (batch, steps, neurons): spikes bool, readout int."""
    if len(hidden_a) != len(hidden_b) or readout_a.shape != readout_b.shape:
        raise ValueError("the two runs have different layer counts or readout shapes")
    out = Mismatch()
    for li, (a, b) in enumerate(zip(hidden_a, hidden_b)):
        if a.shape != b.shape:
            raise ValueError(f"hidden layer {li}: shapes {a.shape} and {b.shape} differ")
        diff = a != b
        out.spikes_per_layer.append(int(diff.sum()))
        if out.first is None and diff.any():
            s, t, n = (int(i) for i in np.argwhere(diff)[0])
            out.first = f"hidden layer {li}, sample {s}, step {t}, neuron {n}: {bool(a[s, t, n])} vs {bool(b[s, t, n])}"
    diff = readout_a != readout_b
    out.readout_values = int(diff.sum())
    if out.first is None and diff.any():
        s, t, n = (int(i) for i in np.argwhere(diff)[0])
        out.first = f"readout, sample {s}, step {t}, neuron {n}: v = {int(readout_a[s, t, n])} vs {int(readout_b[s, t, n])}"
    return out
