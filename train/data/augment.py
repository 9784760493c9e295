"""On-the-fly augmentation of binned spike counts (arrays of shape ``(T, G)``, time steps x inputs).

- Per-channel time shift: every input channel is shifted by its own random integer number of
  time steps in ``[-max_shift, max_shift]``; vacated steps are zero, spikes moved outside
  ``0..T-1`` are dropped (as truncation would drop them), all others are kept unchanged.
- Same-class blending: each count of the sample is thinned binomially with probability ``w``,
  each count of another sample of the same class with ``1 - w``, and the two are summed
  (optionally after aligning their temporal centres of mass), saturating at 255.
- Channel shift: the whole sample moves by one random number of input channels in
  ``[-max, max]`` (vacated channels are empty). On a cochlea's tonotopic axis this is a shift of
  every frequency by the same ratio: another vocal-tract length or pitch, i.e. another voice.
- Time stretch: the sample is played ``r`` times slower (``r`` uniform in ``[1 - s, 1 + s]``):
  every count at step ``t`` moves to step ``floor(t * r)`` (counts that land on the same step add
  up, those beyond ``T - 1`` are dropped); speaking rate varies between and within speakers.
- Spectral tilt: the counts of input ``c`` (of ``G``) are thinned binomially with keep
  probability ``exp(a c / (G - 1) - max(a, 0))``, ``a`` uniform in ``[-ln r, ln r]``: one end of
  the inputs keeps everything, the other ``1 / r`` at most. Microphones and voices differ in
  spectral tilt; on the Free Spoken Digit Dataset one speaker has half the others' spikes above
  2.5 kHz and 1.5 times more below 1 kHz, which a network trained on the others misreads.
- Frequency mask (SpecAugment): a band of up to ``w`` adjacent inputs is silenced.
- Background spikes: independent spikes with probability ``p`` per step and input (a Bernoulli
  count of one added), like the spontaneous activity of auditory nerve fibres or a quiet noise
  floor.

Randomness comes from a ``numpy.random.Generator`` passed in by the caller (the data loaders
derive one per sample from ``(seed, epoch, position)``), so results do not depend on batching,
worker processes or distributed ranks.
"""

from __future__ import annotations

import math
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
    channel_shift: int = 0
    stretch: float = 0.0
    noise: float = 0.0
    tilt: float = 1.0
    freq_mask: int = 0

    def __post_init__(self) -> None:
        if self.max_shift < 0 or self.channel_shift < 0:
            raise ValueError("max_shift and channel_shift must be >= 0")
        if not 0.0 <= self.mix_prob <= 1.0 or not 0.0 <= self.mix_weight <= 1.0:
            raise ValueError("mix_prob and mix_weight must be in [0, 1]")
        if not 0.0 <= self.stretch < 1.0:
            raise ValueError("stretch must be in [0, 1)")
        if not 0.0 <= self.noise <= 1.0:
            raise ValueError("noise must be in [0, 1]")
        if not self.tilt >= 1.0:
            raise ValueError("tilt must be >= 1 (1: off)")
        if self.freq_mask < 0:
            raise ValueError("freq_mask must be >= 0")

    @property
    def enabled(self) -> bool:
        return (self.max_shift > 0 or self.mix_prob > 0 or self.channel_shift > 0 or self.stretch > 0
                or self.noise > 0 or self.tilt > 1.0 or self.freq_mask > 0)

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
        if self.stretch > 0:
            y = stretch_time(y, 1.0 + rng.uniform(-self.stretch, self.stretch))
        if self.max_shift > 0:
            shifts = rng.integers(-self.max_shift, self.max_shift + 1, size=x.shape[1])
            y = shift_channels(y, shifts)
        if self.channel_shift > 0:
            y = shift_inputs(y, int(rng.integers(-self.channel_shift, self.channel_shift + 1)))
        if self.tilt > 1.0:
            y = tilt_spectrum(y, rng.uniform(-math.log(self.tilt), math.log(self.tilt)), rng)
        if self.freq_mask > 0:
            y = mask_inputs(y, int(rng.integers(0, self.freq_mask + 1)), rng)
        if self.noise > 0:
            y = np.minimum(y.astype(np.int64) + (rng.random(y.shape) < self.noise), 255).astype(np.uint8)
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


def shift_inputs(x: np.ndarray, k: int) -> np.ndarray:
    """``y[:, c] = x[:, c - k]`` (zero where ``c - k`` is outside ``0..G-1``) for counts ``(T, G)``:
    every input channel moves ``k`` channels up (``k < 0``: down)."""
    y = np.zeros_like(x)
    G = x.shape[1]
    if k >= 0:
        y[:, k:] = x[:, : max(G - k, 0)]
    else:
        y[:, : G + k] = x[:, -k:]
    return y


def tilt_spectrum(x: np.ndarray, slope: float, rng: np.random.Generator) -> np.ndarray:
    """Counts ``(T, G)`` thinned binomially with keep probability ``exp(slope * c / (G - 1) -
    max(slope, 0))`` for input ``c`` (the end the slope favours keeps all its counts)."""
    G = x.shape[1]
    g = float(slope) * np.linspace(0.0, 1.0, G)
    keep = np.exp(g - g.max())
    return rng.binomial(x.astype(np.int64), keep[None, :]).astype(x.dtype)


def mask_inputs(x: np.ndarray, width: int, rng: np.random.Generator) -> np.ndarray:
    """Counts ``(T, G)`` with a random band of ``width`` adjacent inputs set to 0."""
    G = x.shape[1]
    width = min(int(width), G)
    if width <= 0:
        return x
    c0 = int(rng.integers(0, G - width + 1))
    y = x.copy()
    y[:, c0:c0 + width] = 0
    return y


def stretch_time(x: np.ndarray, rate: float) -> np.ndarray:
    """Counts ``(T, G)`` played ``rate`` times slower: the count at step ``t`` moves to step
    ``floor(t * rate)``; counts landing on one step add up (saturating at 255), counts beyond
    ``T - 1`` are dropped. ``rate = 1`` returns a copy. The total count is kept unless the
    stretched sample runs past ``T``."""
    T, G = x.shape
    dst = np.floor(np.arange(T) * float(rate)).astype(np.int64)
    keep = dst < T
    y = np.zeros((T, G), dtype=np.int64)
    np.add.at(y, dst[keep], x[keep].astype(np.int64))
    return np.minimum(y, 255).astype(x.dtype)


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
