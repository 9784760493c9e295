"""Summaries and pictures of spike files (``crsnn-data show``) and a linear baseline
(``crsnn-data baseline``): logistic regression on per-channel spike counts."""

from __future__ import annotations

import os
from pathlib import Path


import numpy as np

from crsnn.atomic_write import save_figure

from .layout import SHD_CHANNELS, SpikeFileHeader, iter_spikes, read_header


def file_stats(path: str | os.PathLike, n_channels: int = SHD_CHANNELS) -> dict:
    """Counts per class and per-sample statistics of one SHD-layout file.

    Returns a dict with ``header``, ``per_class`` (name -> count), ``duration_s`` and
    ``spikes`` (each ``min/mean/median/max`` over samples; duration = last spike time, seconds),
    ``active_channels`` (channels with any spike in the file).
    """
    header = read_header(path)
    durations, counts = [], []
    active = np.zeros(n_channels, dtype=bool)
    for _, times, units in iter_spikes(path, n_channels=n_channels):
        for t, u in zip(times, units):
            durations.append(float(t.max()) if t.size else 0.0)
            counts.append(t.size)
            active[u] = True

    def describe(v: list) -> dict:
        a = np.asarray(v, dtype=np.float64)
        if a.size == 0:
            return {"min": 0.0, "mean": 0.0, "median": 0.0, "max": 0.0}
        return {"min": float(a.min()), "mean": float(a.mean()), "median": float(np.median(a)),
                "max": float(a.max())}

    per_class = {name: int(np.sum(header.labels == c)) for c, name in enumerate(header.class_names)}
    return {
        "header": header,
        "per_class": per_class,
        "duration_s": describe(durations),
        "spikes": describe(counts),
        "active_channels": int(active.sum()),
    }


def format_stats(stats: dict) -> str:
    """Human-readable text of :func:`file_stats`."""
    h: SpikeFileHeader = stats["header"]
    lines = [f"{h.path}: {h.n_samples} samples, {len(h.class_names)} classes, times stored as "
             f"{h.times_dtype}"]
    if h.attrs.get("synthetic"):
        lines.append("  SYNTHETIC data (crsnn-data synth), not recordings")
    if h.speakers is not None:
        lines.append(f"  speakers: {len(np.unique(h.speakers))} ({', '.join(map(str, np.unique(h.speakers)))})")
    lines.append("  samples per class:")
    for c, (name, n) in enumerate(stats["per_class"].items()):
        lines.append(f"    {c:3d} {name:<12s} {n}")
    d, s = stats["duration_s"], stats["spikes"]
    lines.append(f"  duration (last spike, s): min {d['min']:.3f}  mean {d['mean']:.3f}  "
                 f"median {d['median']:.3f}  max {d['max']:.3f}")
    lines.append(f"  spikes per sample:        min {s['min']:.0f}  mean {s['mean']:.0f}  "
                 f"median {s['median']:.0f}  max {s['max']:.0f}")
    lines.append(f"  active channels: {stats['active_channels']}")
    return "\n".join(lines)


def raster(path: str | os.PathLike, index: int, out: str | os.PathLike,
           n_channels: int = SHD_CHANNELS) -> Path:
    """Save a spike raster (time in s vs channel) of sample ``index`` as a PNG; returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    header = read_header(path)
    if not 0 <= index < header.n_samples:
        raise IndexError(f"{Path(path).name}: index {index} outside 0..{header.n_samples - 1}")
    _, times, units = next(iter_spikes(path, n_channels=n_channels, start=index, stop=index + 1))
    t, u = times[0], units[0]
    label = int(header.labels[index])
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    ax.scatter(t, u, s=0.5, c="k", marker=".", linewidths=0)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("channel (0 = high frequency)")
    ax.set_ylim(n_channels, -1)
    spk = f", speaker {header.speakers[index]}" if header.speakers is not None else ""
    ax.set_title(f"{Path(path).name} #{index}: {header.class_names[label]} (class {label}{spk}), "
                 f"{t.size} spikes")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        return save_figure(fig, out)
    finally:
        plt.close(fig)


def count_features(path: str | os.PathLike, n_channels: int = SHD_CHANNELS,
                   max_duration: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel spike counts of every sample: float64 ``(N, n_channels)``, labels ``(N,)``."""
    header = read_header(path)
    x = np.zeros((header.n_samples, n_channels))
    for i0, times, units in iter_spikes(path, n_channels=n_channels):
        for k, (t, u) in enumerate(zip(times, units)):
            if max_duration is not None:
                u = u[t < max_duration]
            x[i0 + k] = np.bincount(u, minlength=n_channels)
    return x, header.labels


def baseline(train: str | os.PathLike, test: str | os.PathLike, C: float = 0.1,
             n_channels: int = SHD_CHANNELS) -> dict:
    """Logistic regression on ``log1p`` per-channel spike counts (standardised), fitted on
    ``train`` and scored on ``test``. Returns train/test accuracy and chance level."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    xtr, ytr = count_features(train, n_channels)
    xte, yte = count_features(test, n_channels)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=3000))
    model.fit(np.log1p(xtr), ytr)
    counts = np.bincount(ytr)
    return {
        "train_accuracy": float(model.score(np.log1p(xtr), ytr)),
        "test_accuracy": float(model.score(np.log1p(xte), yte)),
        "chance": float(counts.max() / counts.sum()) if counts.sum() else 0.0,
        "n_train": int(ytr.size),
        "n_test": int(yte.size),
    }
