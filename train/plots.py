"""Plots of a training run: learning curves with the delay-spread schedule, and the learned
integer axonal delays. Both take what a checkpoint holds (its epoch history, its integer network)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from crsnn import loihi2 as L2
from crsnn.atomic_write import save_figure
from crsnn.models.integer import IntegerNetwork


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike) -> Path:
    fig.tight_layout()
    try:
        return save_figure(fig, Path(path), dpi=110)
    finally:
        _pyplot().close(fig)


def plot_training(history: Sequence[dict[str, Any]], path: str | os.PathLike, title: str = "") -> Path:
    """Three panels over epochs: train/valid loss; train/valid accuracy (QAT epochs shaded, the best
    checkpoint marked); the delay spread ``sigma`` (steps) and each layer's mean/min/max delay
    (steps). ``history``: the per-epoch records of ``crsnn-train`` (checkpoint or JSON log)."""
    plt = _pyplot()
    ep = np.array([h["epoch"] for h in history])
    qat = [h["epoch"] for h in history if h.get("phase") == "qat"]
    fig, axes = plt.subplots(3, 1, figsize=(8, 8.5), sharex=True)
    for k, ax in enumerate(axes):
        if qat:
            ax.axvspan(min(qat) - 0.5, max(qat) + 0.5, color="0.92", label="QAT (integer forward)" if k == 0 else None)
    ax = axes[0]
    ax.plot(ep, [h["train_loss"] for h in history], "o-", ms=3, label="train")
    ax.plot(ep, [h["valid_loss"] for h in history], "o-", ms=3, label="valid")
    ax.set_ylabel("loss")
    ax.legend(fontsize=8)
    ax = axes[1]
    ax.plot(ep, [100 * h["train_acc"] for h in history], "o-", ms=3, label="train")
    ax.plot(ep, [100 * h["valid_acc"] for h in history], "o-", ms=3, label="valid")
    best = [h for h in history if h.get("best")]
    if best:
        b = max(best, key=lambda h: h["epoch"])
        ax.plot([b["epoch"]], [100 * b["valid_acc"]], "k*", ms=12, label=f"best (epoch {b['epoch']})")
    ax.set_ylabel("accuracy (%)")
    ax.legend(fontsize=8)
    ax = axes[2]
    ax.plot(ep, [h["sigma"] for h in history], "k--", label="spread sigma")
    layers = sorted({k for h in history for k in h if k.startswith("delays")})
    for i, k in enumerate(layers):
        c = f"C{i}"
        mean = [h[k]["mean"] for h in history]
        ax.plot(ep, mean, "-", color=c, label=f"layer {k[len('delays'):]} delay mean (min..max)")
        ax.fill_between(ep, [h[k]["min"] for h in history], [h[k]["max"] for h in history], color=c, alpha=0.15)
    ax.set_ylabel("time steps")
    ax.set_xlabel("epoch")
    ax.legend(fontsize=8)
    fig.suptitle(title or "training")
    return _save(fig, path)


def plot_delays(net: IntegerNetwork, path: str | os.PathLike, title: str = "",
                init_range: tuple[float, float] | None = None) -> Path:
    """Histogram of the integer axonal delays (0..62 time steps) of each recurrent layer, as
    deployed; ``init_range`` (steps) marks where the delays were initialised."""
    plt = _pyplot()
    layers = [(i, l.rec) for i, l in enumerate(net.hidden) if l.rec is not None]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    bins = np.arange(L2.DELAY_MAX + 2) - 0.5
    if init_range is not None:
        ax.axvspan(*init_range, color="0.9", label="initialised in")
    for i, rec in layers:
        d = np.asarray(rec.delays)
        ax.hist(d, bins=bins, histtype="step", lw=1.6, label=f"layer {i} ({d.size} neurons, mean {d.mean():.1f})")
    ax.set_xlabel("axonal delay d (time steps; recurrent latency 1 + d)")
    ax.set_ylabel("neurons")
    ax.set_xlim(-1, L2.DELAY_MAX + 1)
    ax.legend(fontsize=8)
    ax.set_title(title or "learned integer delays")
    return _save(fig, path)


def plot_checkpoint(checkpoint: str | os.PathLike, training_png: str | os.PathLike, delays_png: str | os.PathLike,
                    training_title: str = "", delays_title: str = "") -> tuple[Path, Path]:
    """:func:`plot_training` from every epoch of the run's JSON log (the checkpoint's own history
    stops at its best epoch) and :func:`plot_delays` of its integer network, with the initial
    delay range of a uniform ``delay_init``. Returns the two PNG paths."""
    import json

    from .checkpoint import load_checkpoint
    from .loop import log_path_for

    model, _ = load_checkpoint(checkpoint, require_integer=True)
    epochs = json.loads(log_path_for(checkpoint).read_text())["epochs"]
    init = model.config.delay_init
    return (plot_training(epochs, training_png, training_title),
            plot_delays(model.to_integer(), delays_png, delays_title,
                        init_range=(init[1], init[2]) if init[0] == "uniform" else None))
