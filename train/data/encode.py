"""Encode a user's labelled WAV files with the cochlea front end into SHD's layout
(``crsnn-data encode WAV_DIR --out FILE``).

``WAV_DIR`` holds one sub-folder per class; class names are the folder names, sorted (class id =
position); every ``*.wav`` below a class folder (recursively, sorted by path) is one sample.
Each file is mixed to mono, its active RMS normalised to ``level_db`` (unless ``None``),
resampled to the front end's rate and encoded to 700-channel spikes.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .cochlea import CochleaParams, encode
from .layout import write_spike_file
from .parallel import map_ordered


def read_wav(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """Read a WAV file: mono float64 samples in [-1, 1] ``(n,)`` and the sample rate in Hz."""
    from scipy.io import wavfile

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", wavfile.WavFileWarning)
        try:
            fs, x = wavfile.read(path)
        except (ValueError, OSError) as exc:
            raise ValueError(f"{path}: cannot read as WAV ({exc})") from exc
    if x.dtype == np.uint8:
        x = (x.astype(np.float64) - 128.0) / 128.0
    elif x.dtype.kind == "i":
        x = x.astype(np.float64) / float(2 ** (8 * x.dtype.itemsize - 1))
    else:
        x = x.astype(np.float64)
    if x.ndim == 2:
        x = x.mean(axis=1)
    return x, float(fs)


def find_wavs(wav_dir: str | os.PathLike) -> tuple[list[str], list[tuple[Path, int]]]:
    """Class names (sorted sub-folder names) and ``(file, class id)`` pairs.

    Raises:
        FileNotFoundError: no class folders or no WAV files.
    """
    root = Path(wav_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a directory (expected one sub-folder per class)")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise FileNotFoundError(f"{root}: no class sub-folders (expected WAV_DIR/<class>/*.wav)")
    files = []
    for c, name in enumerate(classes):
        wavs = sorted(p for p in (root / name).rglob("*") if p.is_file() and p.suffix.lower() == ".wav")
        files.extend((p, c) for p in wavs)
    if not files:
        raise FileNotFoundError(f"{root}: no .wav files in the class folders {classes}")
    return classes, files


@dataclass(frozen=True)
class _Task:
    path: Path
    seed: int
    params: CochleaParams
    level_db: float | None
    max_duration: float | None


def _encode_one(task: _Task) -> tuple[np.ndarray, np.ndarray, float]:
    x, fs = read_wav(task.path)
    if task.max_duration is not None:
        x = x[: int(task.max_duration * fs)]
    t, u = encode(x, fs, np.random.default_rng(task.seed), task.params, task.level_db)
    return t, u, x.size / fs


def encode_folder(
    wav_dir: str | os.PathLike,
    out: str | os.PathLike,
    seed: int = 0,
    params: CochleaParams = CochleaParams(),
    level_db: float | None = 0.0,
    max_duration: float | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> dict:
    """Encode every WAV file under ``wav_dir`` into one SHD-layout file ``out``.

    Args:
        seed: spike-generator seed (file ``i`` uses ``(seed, i)``): same inputs -> same spikes.
        params: front-end parameters.
        level_db: normalise each file's active RMS to this level (dB re. 1); None: keep levels.
        max_duration: keep at most this many seconds of each file.
        workers: processes (default: CPU count, at most 8).

    Returns:
        summary dict (path, samples, classes, bytes, seconds, mean spikes, mean duration).
    """
    t0 = time.perf_counter()
    classes, files = find_wavs(wav_dir)
    workers = workers or min(8, os.cpu_count() or 1)
    tasks = [_Task(p, int(np.random.SeedSequence([seed, i]).generate_state(1)[0]), params,
                   level_db, max_duration) for i, (p, _) in enumerate(files)]
    res = map_ordered(_encode_one, tasks, workers, "encode", progress)
    root = Path(wav_dir)
    provenance = {
        "generator": "crsnn.train.data.encode",
        "front_end": "crsnn gammatone cochlea model (not the Lauscher model of SHD)",
        "seed": seed,
        "level_db": level_db,
        "cochlea": params.to_dict(),
        "files": [str(p.relative_to(root)) for p, _ in files],
    }
    path = write_spike_file(
        out, [r[0] for r in res], [r[1] for r in res], [c for _, c in files], classes,
        attrs={"synthetic": False, "crsnn_encode": provenance},
    )
    return {
        "path": str(path),
        "samples": len(files),
        "classes": classes,
        "bytes": path.stat().st_size,
        "seconds": time.perf_counter() - t0,
        "mean_spikes": float(np.mean([r[0].size for r in res])),
        "mean_duration_s": float(np.mean([r[2] for r in res])),
    }
