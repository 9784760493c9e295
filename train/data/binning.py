"""Spike events -> dense count arrays (time bins x channel groups).

Conventions: time bin ``k`` covers ``[k*dt, (k+1)*dt)`` seconds (a tolerance of 1e-9 bin absorbs
floating-point error at exact bin edges); spikes at or after ``n_steps*dt`` are dropped
(truncation to the maximum duration); channel group ``g`` sums channels
``g*group .. g*group+group-1``; counts saturate at ``cap`` (255 for uint8).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

_EDGE_TOL = 1e-9


def n_steps_for(max_duration: float, dt: float) -> int:
    """Number of time steps ``T`` covering ``max_duration`` seconds with bins of ``dt`` seconds."""
    if dt <= 0 or not math.isfinite(dt):
        raise ValueError(f"dt must be a positive number of seconds, got {dt}")
    if max_duration <= 0 or not math.isfinite(max_duration):
        raise ValueError(f"max_duration must be a positive number of seconds, got {max_duration}")
    return max(1, int(math.ceil(max_duration / dt - 1e-6)))


def n_groups_for(n_channels: int, channel_group: int) -> int:
    """Number of channel groups: ``ceil(n_channels / channel_group)`` (the last may be partial)."""
    if channel_group < 1:
        raise ValueError(f"channel_group must be >= 1, got {channel_group}")
    return -(-n_channels // channel_group)


def bin_many(
    times: Sequence[np.ndarray],
    units: Sequence[np.ndarray],
    dt: float,
    n_steps: int,
    n_channels: int,
    channel_group: int = 1,
    cap: int = 255,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Bin several samples at once.

    Args:
        times: per sample, spike times in seconds.
        units: per sample, channel ids in ``0..n_channels-1``.
        dt: bin width in seconds.
        n_steps: number of bins ``T``.
        n_channels: number of input channels.
        channel_group: channels summed per output channel.
        cap: saturation value of the counts.
        out: optional uint8 array of shape ``(len(times), T, G)`` to fill.

    Returns:
        uint8 array of shape ``(len(times), T, G)`` with ``G = ceil(n_channels/channel_group)``.
    """
    n = len(times)
    g = n_groups_for(n_channels, channel_group)
    if out is None:
        out = np.zeros((n, n_steps, g), dtype=np.uint8)
    if n == 0:
        return out
    lens = np.fromiter((len(t) for t in times), dtype=np.int64, count=n)
    sample = np.repeat(np.arange(n, dtype=np.int64), lens)
    t = np.concatenate([np.asarray(x, dtype=np.float64).reshape(-1) for x in times])
    u = np.concatenate([np.asarray(x, dtype=np.int64).reshape(-1) for x in units])
    step = np.floor(t / dt + _EDGE_TOL).astype(np.int64)
    keep = (step >= 0) & (step < n_steps)
    flat = (sample[keep] * n_steps + step[keep]) * g + u[keep] // channel_group
    counts = np.bincount(flat, minlength=n * n_steps * g)
    np.minimum(counts, cap, out=counts)
    out[...] = counts.reshape(n, n_steps, g)
    return out


def bin_events(
    times: np.ndarray,
    units: np.ndarray,
    dt: float,
    n_steps: int,
    n_channels: int,
    channel_group: int = 1,
    cap: int = 255,
) -> np.ndarray:
    """Bin one sample: returns uint8 counts of shape ``(T, G)`` (see :func:`bin_many`)."""
    return bin_many([times], [units], dt, n_steps, n_channels, channel_group, cap)[0]


def last_step(times: Sequence[np.ndarray], dt: float, n_steps: int) -> np.ndarray:
    """Per sample, the number of steps up to and including its last spike, capped at ``n_steps``
    (0 for a sample without spikes). int64, shape ``(N,)``."""
    out = np.zeros(len(times), dtype=np.int64)
    for i, t in enumerate(times):
        if len(t):
            out[i] = min(n_steps, int(np.floor(float(np.max(t)) / dt + _EDGE_TOL)) + 1)
    return out
