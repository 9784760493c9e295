"""How much of a spoken word an encoding keeps: a fixed probe classifier on its binned counts.

A 45-minute SNN training per encoder setting is too slow to compare encoders, and it mixes the
encoding's loss with the network's. This benchmark trains two fixed, non-spiking probes on each
encoding's features instead, leave-one-speaker-out over the FSDD speakers, three seeds, in
minutes:

- ``cnn``: a small 1-D CNN over time (three conv layers, 64-128-128 channels, batch norm, ReLU,
  max pooling; global mean and max over time; dropout 0.3; Adam 2e-3 with a cosine schedule,
  weight decay 1e-4, batch 32, 20 epochs). Its recipe was fixed before any test fold was looked at.
- ``lr``: logistic regression (L2, C = 1) on each feature channel's mean over four equal parts of
  the word and its standard deviation over the word.

Features, per 10 ms bin: for a spike encoding, the spike count of each group of
``--channel-group`` cochlea channels (10: 700 -> 70, the ``fsdd`` recipe's grouping), as
``log(1 + count)``; for the ``logmel`` reference, 20 mel bands (25 ms Hann window, 0-4 kHz)
of the same trimmed, level-normalised audio, ``log(power + 1e-8)``. Each feature is standardised
with the training fold's mean and standard deviation (no per-utterance normalisation). Words are
cut or zero-padded to ``--max-time`` (0.8 s, as the recipe).

Every encoding is made once over all recordings by ``crsnn-data encode`` (one file with the
speakers; the folds are index subsets of it) and kept under ``runs/bench/encoder_probe/``.

    .venv/bin/python bench/encoder_probe.py [--recordings DIR] [--encoding NAME="ENCODE OPTIONS" ...]
                                            [--seeds 0 1 2] [--no-logmel]

``--encoding`` names a set of ``crsnn-data encode`` options (``default=""`` is the command's
default; ``legacy="--front-end legacy"``). Results: ``bench/results/encoder_probe.json`` (per
encoding, probe and fold: the accuracy on the held-out speaker, mean over seeds).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _common import REPO, WORK, command_line, write_result
from fsdd import LABEL_PATTERN, SPEAKER_PATTERN

DT = 0.01
N_MELS = 20


#: The code an encoding depends on: a cached encoding is reused only while these are unchanged.
ENCODER_SOURCES = ("train/data/cochlea.py", "train/data/encode.py", "train/data/cli.py", "train/data/layout.py")


def encoded_file(recordings: Path, options: str, root: Path) -> Path:
    """All recordings encoded by ``crsnn-data encode RECORDINGS --out FILE OPTIONS`` (cached by
    the options' text, the recordings' folder and the encoder's source code, so that a changed
    default or stage is never read from an old file)."""
    h = hashlib.sha256(f"{options}\0{recordings.resolve()}".encode())
    for name in ENCODER_SOURCES:
        h.update((REPO / name).read_bytes())
    key = h.hexdigest()[:12]
    out = root / f"{key}.h5"
    if not out.exists():
        cmd = [sys.executable, "-m", "crsnn.train.data.cli", "encode", str(recordings), "--out", str(out),
               "--label-pattern", LABEL_PATTERN, "--speaker-pattern", SPEAKER_PATTERN, "--quiet",
               *shlex.split(options)]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True)
        print(f"  encoded in {time.perf_counter() - t0:.0f} s: {out}", flush=True)
    return out


def spike_features(path: Path, channel_group: int, max_time: float) -> tuple[np.ndarray, ...]:
    """``(features (n, groups, steps) float32, labels, speakers, speaker names, recording names)``
    of a spike file encoded with speakers:
    log(1 + count) per channel group and 10-ms bin."""
    from crsnn.train.data.layout import SHD_CHANNELS, iter_spikes, read_header

    head = read_header(path)
    steps = int(round(max_time / DT))
    groups = -(-SHD_CHANNELS // channel_group)
    x = np.zeros((head.n_samples, groups, steps), dtype=np.float32)
    for i0, times, units in iter_spikes(path):
        for k, (t, u) in enumerate(zip(times, units)):
            b = (t / DT).astype(np.int64)
            keep = b < steps
            np.add.at(x[i0 + k], (u[keep] // channel_group, b[keep]), 1.0)
    names = json.loads(head.attrs["speaker_names"])
    files = json.loads(head.attrs["crsnn_encode"])["files"]
    return np.log1p(x), head.labels, head.speakers, names, files


def logmel_features(recordings: Path, files: list[str], max_time: float, trim_db: float = 20.0,
                    level_db: float = 0.0) -> np.ndarray:
    """20-band log-mel ``(n, 20, steps)`` float32 of the recordings ``files`` (relative names),
    trimmed and level-normalised as ``crsnn-data encode`` does."""
    from crsnn.train.data.cochlea import normalise, speech_bounds
    from crsnn.train.data.encode import read_wav

    steps = int(round(max_time / DT))
    out = np.zeros((len(files), N_MELS, steps), dtype=np.float32)
    fb_cache: dict[float, tuple[np.ndarray, int, int]] = {}
    for i, name in enumerate(files):
        x, fs = read_wav(recordings / name)
        a, b = speech_bounds(x, fs, trim_db)
        x = normalise(x[a:b], level_db)
        if fs not in fb_cache:
            fb_cache[fs] = _mel_bank(fs)
        bank, win, hop = fb_cache[fs]
        frames = np.lib.stride_tricks.sliding_window_view(np.pad(x, (win // 2, win)), win)[::hop]
        power = np.abs(np.fft.rfft(frames * np.hanning(win), axis=1)) ** 2
        mel = np.log(power @ bank.T + 1e-8).T[:, :steps]
        out[i, :, : mel.shape[1]] = mel
    return out


def _mel_bank(fs: float) -> tuple[np.ndarray, int, int]:
    """Triangular mel filters ``(20, win // 2 + 1)`` for a 25-ms window, 0 Hz to min(4 kHz, fs/2)."""
    win, hop = int(round(0.025 * fs)), int(round(DT * fs))
    mel = lambda f: 2595 * np.log10(1 + f / 700)  # noqa: E731
    imel = lambda m: 700 * (10 ** (m / 2595) - 1)  # noqa: E731
    edges = imel(np.linspace(0, mel(min(4000.0, fs / 2)), N_MELS + 2))
    freqs = np.fft.rfftfreq(win, 1 / fs)
    bank = np.zeros((N_MELS, freqs.size))
    for m in range(N_MELS):
        lo, c, hi = edges[m: m + 3]
        bank[m] = np.clip(np.minimum((freqs - lo) / (c - lo), (hi - freqs) / (hi - c)), 0, None)
    return bank, win, hop


class ProbeCNN(torch.nn.Module):
    """The fixed probe: (batch, features, steps) -> 10 logits."""

    def __init__(self, n_in: int, n_out: int = 10) -> None:
        super().__init__()

        def block(a: int, b: int, k: int) -> list[torch.nn.Module]:
            return [torch.nn.Conv1d(a, b, k, padding=k // 2), torch.nn.BatchNorm1d(b), torch.nn.ReLU()]

        self.body = torch.nn.Sequential(*block(n_in, 64, 5), torch.nn.MaxPool1d(2), *block(64, 128, 5),
                                        torch.nn.MaxPool1d(2), *block(128, 128, 3))
        self.head = torch.nn.Sequential(torch.nn.Dropout(0.3), torch.nn.Linear(256, n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x)
        return self.head(torch.cat([h.mean(2), h.amax(2)], 1))


def standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per feature channel, with the training set's mean and std over samples and steps."""
    mu = train.mean(axis=(0, 2), keepdims=True)
    sd = train.std(axis=(0, 2), keepdims=True) + 1e-6
    return (train - mu) / sd, (test - mu) / sd


def cnn_accuracy(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, yte: np.ndarray, seed: int,
                 epochs: int = 20) -> float:
    """Test accuracy of the probe CNN trained on ``(xtr, ytr)``."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    xtr, xte = standardise(xtr, xte)
    model = ProbeCNN(xtr.shape[1], int(max(ytr.max(), yte.max())) + 1)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3, weight_decay=1e-4)
    batches = -(-len(xtr) // 32)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * batches)
    xt, yt = torch.from_numpy(xtr), torch.from_numpy(ytr)
    for _ in range(epochs):
        model.train()
        order = torch.from_numpy(rng.permutation(len(xtr)))
        for b in range(batches):
            idx = order[b * 32: (b + 1) * 32]
            loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(torch.from_numpy(xte[i: i + 256])).argmax(1) for i in range(0, len(xte), 256)])
    return float((pred.numpy() == yte).mean())


def _summary(x: np.ndarray) -> np.ndarray:
    """LR features: each channel's mean over four equal parts of the word and its std."""
    parts = np.array_split(x, 4, axis=2)
    return np.concatenate([p.mean(2) for p in parts] + [x.std(2)], axis=1)


def lr_accuracy(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, yte: np.ndarray) -> float:
    """Test accuracy of L2 logistic regression on :func:`_summary` features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(_summary(xtr))
    clf = LogisticRegression(C=1.0, max_iter=3000).fit(scaler.transform(_summary(xtr)), ytr)
    return float((clf.predict(scaler.transform(_summary(xte))) == yte).mean())


def probe(x: np.ndarray, labels: np.ndarray, speakers: np.ndarray, names: list[str], seeds: list[int],
          progress: str = "") -> dict:
    """LOSO accuracies ``{"cnn": {speaker: mean over seeds}, "lr": {...}, "cnn_mean", "lr_mean",
    "cnn_seed_std"}``."""
    out: dict = {"cnn": {}, "lr": {}, "cnn_by_seed": {}}
    for s_id, name in enumerate(names):
        te, tr = speakers == s_id, speakers != s_id
        accs = [cnn_accuracy(x[tr], labels[tr], x[te], labels[te], seed) for seed in seeds]
        out["cnn"][name] = float(np.mean(accs))
        out["cnn_by_seed"][name] = accs
        out["lr"][name] = lr_accuracy(x[tr], labels[tr], x[te], labels[te])
        print(f"  {progress} {name}: cnn {100 * out['cnn'][name]:.1f} %  lr {100 * out['lr'][name]:.1f} %", flush=True)
    by_seed = np.array([out["cnn_by_seed"][n] for n in names]).mean(0)
    out["cnn_mean"] = float(np.mean(list(out["cnn"].values())))
    out["lr_mean"] = float(np.mean(list(out["lr"].values())))
    out["cnn_seed_std"] = float(by_seed.std())
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recordings", type=Path,
                   default=Path(os.environ.get("FSDD_RECORDINGS", REPO / "data" / "fsdd" / "recordings")))
    p.add_argument("--encoding", action="append", default=None, metavar='NAME="OPTIONS"',
                   help="a named set of crsnn-data encode options (repeatable; default: default=\"\")")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--channel-group", type=int, default=10)
    p.add_argument("--max-time", type=float, default=0.8)
    p.add_argument("--no-logmel", action="store_true", help="skip the log-mel reference")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="result JSON (default bench/results/encoder_probe.json)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    root = WORK / "encoder_probe"
    root.mkdir(parents=True, exist_ok=True)
    encodings = dict(e.split("=", 1) for e in (args.encoding or ['default=']))
    results: dict = {}
    files = None
    for name, options in encodings.items():
        print(f"{name}: crsnn-data encode {options}", flush=True)
        path = encoded_file(args.recordings, options, root)
        x, labels, speakers, names, files = spike_features(path, args.channel_group, args.max_time)
        t0 = time.perf_counter()
        results[name] = {"options": options, **probe(x, labels, speakers, names, args.seeds, name)}
        results[name]["seconds"] = time.perf_counter() - t0
        print(f"{name}: cnn {100 * results[name]['cnn_mean']:.1f} %  lr {100 * results[name]['lr_mean']:.1f} %",
              flush=True)
    if not args.no_logmel and files is not None:
        x = logmel_features(args.recordings, files, args.max_time)
        results["logmel"] = {"options": "20-band log-mel", **probe(x, labels, speakers, names, args.seeds, "logmel")}
        print(f"logmel: cnn {100 * results['logmel']['cnn_mean']:.1f} %  lr {100 * results['logmel']['lr_mean']:.1f} %")
    write_result("encoder_probe", {"command": command_line(), "seeds": args.seeds,
                                   "channel_group": args.channel_group, "max_time": args.max_time,
                                   "results": results}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
