"""Evaluation helpers shared by ``crsnn-run``, ``crsnn-verify`` and ``crsnn-report``: the test
data a deployed network expects, the class decision from readout voltages, accuracy, confusion
matrix and the spike-raster comparison plot."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from crsnn.atomic_write import figure_bytes
from crsnn.models.integer import IntegerNetwork


class EvalDataError(ValueError):
    """The evaluation data cannot be loaded (one-line message)."""


@dataclass
class EvalSet:
    """x: int64 (n, steps, n_in) clipped to the network's input range; y: int64 (n,)."""

    x: np.ndarray
    y: np.ndarray
    class_names: list[str]
    binning: dict[str, Any]


def _meta(meta: dict[str, Any], *keys: str, default: Any = None) -> Any:
    for k in keys:
        if k in meta and meta[k] is not None:
            v = meta[k]
            return v.decode() if isinstance(v, bytes) else v
    return default


def binning_from_metadata(meta: dict[str, Any], dt: float | None = None, max_time: float | None = None,
                          channel_group: int | None = None) -> dict[str, Any]:
    """The binning the network was trained with (graph or checkpoint metadata), overridden by any
    argument that is not None. Keys: dt (s), max_time (s), channel_group."""
    return {
        "dt": float(dt if dt is not None else _meta(meta, "metadata.data.dt", "data.dt", "dt", default=0.01)),
        "max_time": float(max_time if max_time is not None else _meta(meta, "metadata.data.max_time", "data.max_time",
                                                                       default=1.0)),
        "channel_group": int(channel_group if channel_group is not None else
                             _meta(meta, "metadata.data.channel_group", "data.channel_group", default=1)),
    }


def load_test_set(source: str, net: IntegerNetwork, binning: dict[str, Any], n: int | None = None,
                  progress: bool = False) -> EvalSet:
    """The first ``n`` samples (all if None) of the test set of ``source``, binned like the
    training data and clipped to the input message range exactly as training clips them. A single
    SHD-layout file is the test set; a folder uses its test file; nothing else is read
    (:func:`crsnn.train.data.shd.load_test_split`); ``synthetic[:...]`` generates its test split."""
    from crsnn.train.data.layout import SpikeFileError
    from crsnn.train.data.shd import load_test_split
    from crsnn.train.datasets import DataError, SpikeSplit, load_data

    dt, max_time, group = binning["dt"], binning["max_time"], binning["channel_group"]
    try:
        if source == "synthetic" or source.startswith("synthetic:"):
            bundle = load_data(source, dt=dt, max_time=max_time, channel_group=group)
            test, names, n_in = bundle["test"], list(bundle.class_names), bundle.n_in
        else:
            sub = load_test_split(source, dt=dt, max_duration=max_time, channel_group=group, progress=progress)
            test, names, n_in = SpikeSplit(sub, "test"), list(sub.class_names), int(sub.n_inputs)
    except (DataError, SpikeFileError, OSError, ValueError) as exc:
        raise EvalDataError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    if n_in != net.n_in:
        raise EvalDataError(f"{source}: the data has {n_in} input channels after grouping by "
                            f"{binning['channel_group']}, the network expects {net.n_in} (check --channel-group)")
    xs, ys = [], []
    for xb, yb in test.eval_batches(256):
        xs.append(xb.numpy())
        ys.append(yb.numpy())
        if n is not None and sum(len(b) for b in ys) >= n:
            break
    x = np.concatenate(xs)[:n]
    y = np.concatenate(ys)[:n].astype(np.int64)
    x = np.clip(x.astype(np.int64), 0, net.max_input())
    return EvalSet(x=x, y=y, class_names=names, binning=binning)


def predict(readout_v: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
    """Classes from integer readout voltages (n, steps, n_out), with the training decision rule
    (``loss`` and ``readout_scale`` from metadata; time-averaged voltage otherwise)."""
    import torch

    from crsnn.models.network import readout_logits

    loss = _meta(meta, "loss", "config.loss", default="mean")
    scale = float(_meta(meta, "readout_scale", "config.readout_scale", default=1.0))
    v = torch.from_numpy(readout_v.astype(np.float64)) / scale
    return readout_logits(v, loss).argmax(dim=1).numpy()


def confusion_matrix(y: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) counts, rows = true class, columns = predicted."""
    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(m, (y, pred), 1)
    return m


def format_confusion(m: np.ndarray, names: list[str]) -> str:
    short = [str(i) for i in range(len(m))]
    w = max(3, max(len(str(v)) for v in m.ravel()) + 1)
    lines = ["true\\pred " + "".join(s.rjust(w) for s in short)]
    for i, row in enumerate(m):
        label = f"{i} {names[i] if i < len(names) else ''}"[:9].ljust(9)
        lines.append(f"{label} " + "".join(str(v).rjust(w) for v in row))
    return "\n".join(lines)


def plot_rasters(path: str, integer_hidden: list[np.ndarray], lava_hidden: list[np.ndarray], sample: int = 0,
                 title: str = "") -> bytes:
    """The PNG (returned as bytes, for an atomic write to ``path``): per hidden layer, the spikes of
    one sample from the integer simulator (dots) and Lava (rings); a mismatch would show as a red
    cross."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(integer_hidden)
    fig, axes = plt.subplots(n, 1, figsize=(10, 3.2 * n), squeeze=False)
    for li, (a, b) in enumerate(zip(integer_hidden, lava_hidden)):
        ax = axes[li, 0]
        ta, na = np.nonzero(a[sample])
        tb, nb = np.nonzero(b[sample])
        ax.scatter(tb, nb, s=18, facecolors="none", edgecolors="tab:orange", linewidths=0.8, label="Lava (Loihi2SimCfg)")
        ax.scatter(ta, na, s=3, c="tab:blue", label="integer simulator")
        td, nd = np.nonzero(a[sample] != b[sample])
        if td.size:
            ax.scatter(td, nd, s=30, marker="x", c="red", label=f"mismatch ({td.size})")
        ax.set_ylabel(f"hidden {li} neuron")
        ax.set_xlim(-1, a.shape[1])
        ax.set_ylim(-1, a.shape[2])
        ax.set_title(f"layer {li}: {int(a[sample].sum())} spikes (integer), {int(b[sample].sum())} (Lava), "
                     f"{int((a[sample] != b[sample]).sum())} mismatches", fontsize=9)
        ax.legend(loc="upper right", fontsize=7)
    axes[-1, 0].set_xlabel("time step")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    try:
        return figure_bytes(fig, path, dpi=110)
    finally:
        plt.close(fig)
