"""On-the-fly augmentation of binned spike counts (arrays of shape ``(T, G)``, time steps x inputs).

- Per-channel time shift: every input channel is shifted by its own random integer number of
  time steps in ``[-max_shift, max_shift]``; vacated steps are zero, spikes moved outside
  ``0..T-1`` are dropped (as truncation would drop them), all others are kept unchanged.
- Same-class blending: each count of the sample is thinned binomially with probability ``w``,
  each count of another sample of the same class with ``1 - w``, and the two are summed
  (optionally after aligning their temporal centres of mass), saturating at 255.

Randomness comes from a ``numpy.random.Generator`` passed in by the caller (the data loaders
derive one per sample from ``(seed, epoch, position)``), so results do not depend on batching,
worker processes or distributed ranks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Augment:
    """Augmentation settings.

    Attributes:
        max_shift: largest per-channel time shift, in time steps (0: off).
        mix_prob: probability of blending a sample with another of its class (0: off).
        mix_weight: keep probability ``w`` of the sample's own spikes (partner: ``1 - w``).
        align: shift the partner so that both temporal centres of mass coincide before blending.
    """

    max_shift: int = 0
    mix_prob: float = 0.0
    mix_weight: float = 0.5
    align: bool = True

    def __post_init__(self) -> None:
        if self.max_shift < 0:
            raise ValueError("max_shift must be >= 0")
        if not 0.0 <= self.mix_prob <= 1.0 or not 0.0 <= self.mix_weight <= 1.0:
            raise ValueError("mix_prob and mix_weight must be in [0, 1]")

    @property
    def enabled(self) -> bool:
        return self.max_shift > 0 or self.mix_prob > 0

    def __call__(
        self,
        x: np.ndarray,
        rng: np.random.Generator,
        partner: Callable[[np.random.Generator], np.ndarray] | None = None,
    ) -> np.ndarray:
        """Augment one sample ``x`` (uint8 ``(T, G)``); ``partner(rng)`` returns another sample
        of the same class (only called when blending). Returns a new uint8 ``(T, G)`` array."""
        y = x
        if self.mix_prob > 0 and partner is not None and rng.random() < self.mix_prob:
            y = blend(y, partner(rng), rng, self.mix_weight, self.align)
        if self.max_shift > 0:
            shifts = rng.integers(-self.max_shift, self.max_shift + 1, size=x.shape[1])
            y = shift_channels(y, shifts)
        return y if y is not x else x.copy()


def shift_channels(x: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """``y[t, c] = x[t - shifts[c], c]`` (zero where ``t - shifts[c]`` is outside ``0..T-1``).

    Args:
        x: counts ``(T, G)``.
        shifts: integer time steps per channel ``(G,)``; positive = later.
    """
    T, G = x.shape
    src = np.arange(T)[:, None] - np.asarray(shifts, dtype=np.int64)[None, :]
    valid = (src >= 0) & (src < T)
    y = x[np.clip(src, 0, T - 1), np.arange(G)[None, :]]
    y[~valid] = 0
    return y


def centre_of_mass(x: np.ndarray) -> float:
    """Mean time step of the spikes of ``x`` ``(T, G)`` (``(T-1)/2`` when there are none)."""
    per_t = x.sum(axis=1, dtype=np.int64)
    total = per_t.sum()
    if total == 0:
        return (x.shape[0] - 1) / 2
    return float(np.dot(np.arange(x.shape[0]), per_t) / total)


def blend(
    x: np.ndarray, other: np.ndarray, rng: np.random.Generator, weight: float = 0.5, align: bool = True
) -> np.ndarray:
    """Binomially thin ``x`` (keep prob. ``weight``) and ``other`` (``1 - weight``) and add them.

    Both are uint8 ``(T, G)``; with ``align`` the partner is first shifted (all channels alike)
    so that its centre of mass matches that of ``x``. Expected spike count:
    ``weight * n(x) + (1 - weight) * n(other)``. Returns uint8 ``(T, G)``, saturating at 255.
    """
    if align:
        d = int(round(centre_of_mass(x) - centre_of_mass(other)))
        if d:
            other = shift_channels(other, np.full(other.shape[1], d))
    a = rng.binomial(x.astype(np.int64), weight)
    b = rng.binomial(other.astype(np.int64), 1.0 - weight)
    return np.minimum(a + b, 255).astype(np.uint8)
