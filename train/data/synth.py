"""An offline spoken-digit benchmark in SHD's exact HDF5 layout (``crsnn-data synth``).

20 classes in SHD's order: English ``zero..nine`` (0-9), German ``null..neun`` (10-19), spoken by
synthetic "speakers" (espeak-ng accent x voice variant x pitch x pitch range x rate x
vocal-tract warp) and encoded by :mod:`crsnn.train.data.cochlea` into 700-channel spikes.
Each speaker says both languages, as in SHD. ``test.h5`` holds only held-out speakers whose voice
variants never occur in ``train.h5``. Per utterance: jittered pitch/rate/warp, random level,
leading silence, optional reverberation and coloured noise at a random SNR; these set the
difficulty (see ``SynthConfig``).

Deterministic: the same configuration and seed give identical spikes (espeak-ng runs in a fresh
process in a fixed order, every random choice is drawn from generators keyed by
``(seed, split, index)``, and the front end is plain float64 numpy/scipy).

The files are marked ``synthetic = True`` (root attribute) with provenance
(``crsnn_synth``: synthesizer and version, seed, configuration, front-end parameters).
espeak-ng is GPL-3 and optional; see :mod:`crsnn.train.data.speech`.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import signal

from crsnn.atomic_write import check_writable, write_together

from .cochlea import CochleaParams, envelopes, firing_rates, normalise, renewal_spikes, resample
from .layout import spike_file_bytes
from .parallel import map_ordered
from .speech import ENGLISH_VOICES, GERMAN_VOICE, Utterance, list_variants, synthesize_all

#: Class names in SHD's order (ASCII spelling for ``fünf``).
CLASS_NAMES = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    "null", "eins", "zwei", "drei", "vier", "fuenf", "sechs", "sieben", "acht", "neun",
)
#: What is spoken for each class.
WORDS = CLASS_NAMES[:15] + ("fünf",) + CLASS_NAMES[16:]

FORMAT_VERSION = 2


@dataclass(frozen=True)
class SynthConfig:
    """Benchmark configuration (times in seconds, levels in dB).

    Sizes: ``per_class`` training utterances per class, ``round(per_class * test_fraction)``
    (at least 1) test utterances per class; speakers are assigned round-robin within a class.
    Speaker ranges are drawn once per speaker; ``*_jitter`` once per utterance.
    """

    per_class: int = 100
    test_fraction: float = 0.25
    train_speakers: int = 12
    test_speakers: int = 4
    classes: tuple[int, ...] = tuple(range(20))
    seed: int = 0
    # speakers
    pitch: tuple[float, float] = (15, 85)
    pitch_range: tuple[float, float] = (10, 90)
    rate_wpm: tuple[float, float] = (120, 220)
    warp: tuple[float, float] = (0.85, 1.15)
    # per utterance
    pitch_jitter: float = 10
    range_jitter: float = 15
    rate_jitter: float = 0.15
    warp_jitter: float = 0.04
    level_db: tuple[float, float] = (-12.0, 6.0)
    snr_db: tuple[float, float] = (5.0, 30.0)
    noise_slope: tuple[float, float] = (0.5, 2.0)
    reverb_prob: float = 0.5
    rt60: tuple[float, float] = (0.1, 0.6)
    lead: tuple[float, float] = (0.02, 0.3)
    tail: tuple[float, float] = (0.05, 0.2)
    max_duration: float = 1.4
    cochlea: CochleaParams = field(default_factory=CochleaParams)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["cochlea"] = self.cochlea.to_dict()
        return d


@dataclass(frozen=True)
class Speaker:
    """A synthetic speaker: espeak-ng English accent + variant and base prosody."""

    id: int
    english_voice: str
    variant: str
    pitch: float
    pitch_range: float
    rate_wpm: float
    warp: float


@dataclass(frozen=True)
class Item:
    """One utterance of the benchmark with all its random choices."""

    split: str
    index: int
    label: int
    speaker: int
    utterance: Utterance
    warp: float
    level_db: float
    snr_db: float
    noise_slope: float
    rt60: float  # 0: no reverberation
    wet: float
    lead: float
    tail: float
    seed: int


def _uniform(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    return float(rng.uniform(lo_hi[0], lo_hi[1]))


def make_speakers(config: SynthConfig, variants: Sequence[str]) -> list[Speaker]:
    """Speakers ``0..train_speakers-1`` (train) then the held-out ones; all variants distinct."""
    n = config.train_speakers + config.test_speakers
    if len(variants) < n:
        raise ValueError(f"{n} speakers need {n} voice variants, espeak-ng has {len(variants)}")
    rng = np.random.default_rng([config.seed, 1000])
    chosen = rng.choice(len(variants), size=n, replace=False)
    out = []
    for i, v in enumerate(chosen):
        out.append(Speaker(
            id=i,
            english_voice=ENGLISH_VOICES[int(rng.integers(len(ENGLISH_VOICES)))],
            variant=variants[int(v)],
            pitch=_uniform(rng, config.pitch),
            pitch_range=_uniform(rng, config.pitch_range),
            rate_wpm=_uniform(rng, config.rate_wpm),
            warp=_uniform(rng, config.warp),
        ))
    return out


def make_items(config: SynthConfig, speakers: Sequence[Speaker]) -> dict[str, list[Item]]:
    """All utterances of both splits, in file order (class-interleaved), with their choices."""
    n_test = max(1, int(round(config.per_class * config.test_fraction)))
    plan = {
        "train": (speakers[: config.train_speakers], config.per_class),
        "test": (speakers[config.train_speakers:], n_test),
    }
    out: dict[str, list[Item]] = {}
    for split_id, (split, (spk, per_class)) in enumerate(plan.items()):
        items = []
        for k in range(per_class):
            for label in config.classes:
                idx = len(items)
                s = spk[(k + label) % len(spk)]
                rng = np.random.default_rng([config.seed, split_id, idx])
                german = label >= 10
                utt = Utterance(
                    text=WORDS[label],
                    voice=GERMAN_VOICE if german else s.english_voice,
                    variant=s.variant,
                    rate=int(round(s.rate_wpm * (1 + rng.uniform(-1, 1) * config.rate_jitter))),
                    pitch=int(round(s.pitch + rng.uniform(-1, 1) * config.pitch_jitter)),
                    pitch_range=int(round(s.pitch_range + rng.uniform(-1, 1) * config.range_jitter)),
                    seed=int(rng.integers(2 ** 31)),
                )
                reverb = rng.random() < config.reverb_prob
                items.append(Item(
                    split=split, index=idx, label=label, speaker=s.id, utterance=utt,
                    warp=s.warp * (1 + rng.uniform(-1, 1) * config.warp_jitter),
                    level_db=_uniform(rng, config.level_db),
                    snr_db=_uniform(rng, config.snr_db),
                    noise_slope=_uniform(rng, config.noise_slope),
                    rt60=_uniform(rng, config.rt60) if reverb else 0.0,
                    wet=float(rng.uniform(0.2, 0.8)) if reverb else 0.0,
                    lead=_uniform(rng, config.lead),
                    tail=_uniform(rng, config.tail),
                    seed=int(rng.integers(2 ** 63)),
                ))
        out[split] = items
    return out


def trim(audio: np.ndarray, fs: float, rel_db: float = -40.0) -> np.ndarray:
    """Cut leading/trailing silence: keep from the first to the last 5 ms frame within
    ``rel_db`` of the loudest frame."""
    x = np.asarray(audio, dtype=np.float64)
    frame = max(1, int(fs * 0.005))
    n = x.size // frame
    if n == 0:
        return x
    e = (x[: n * frame].reshape(n, frame) ** 2).mean(axis=1)
    on = np.flatnonzero(e >= e.max() * 10 ** (rel_db / 10))
    return x[on[0] * frame:(on[-1] + 1) * frame]


def coloured_noise(n: int, slope: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise with power spectrum ~ ``1/f**slope`` (0 white, 1 pink, 2 brown), RMS 1."""
    spec = rng.standard_normal(n // 2 + 1) + 1j * rng.standard_normal(n // 2 + 1)
    f = np.arange(n // 2 + 1, dtype=np.float64)
    f[0] = 1.0
    y = np.fft.irfft(spec / f ** (slope / 2), n)
    return y / (np.sqrt(np.mean(y ** 2)) + 1e-12)


def render(item: Item, audio: np.ndarray, fs_in: float, config: SynthConfig) -> np.ndarray:
    """Speech (int16 at ``fs_in`` Hz) -> augmented float64 audio at the front end's rate."""
    p = config.cochlea
    fs = p.fs_hz
    rng = np.random.default_rng([item.seed, 1])
    # vocal-tract/pitch warp: play the recording at fs_in*warp
    x = resample(trim(audio.astype(np.float64) / 32768.0, fs_in), fs_in * item.warp, fs)
    if item.rt60 > 0:
        n_ir = int(item.rt60 * fs)
        ir = rng.standard_normal(n_ir) * np.exp(-6.91 * np.arange(n_ir) / n_ir)
        wet = signal.fftconvolve(x, ir)[: x.size + n_ir // 2]
        wet *= np.sqrt(np.mean(x ** 2) / (np.mean(wet ** 2) + 1e-20))
        x = np.concatenate([x, np.zeros(wet.size - x.size)]) + item.wet * wet
    x = normalise(x, item.level_db)
    x = np.concatenate([np.zeros(int(item.lead * fs)), x, np.zeros(int(item.tail * fs))])
    x = x[: int(config.max_duration * fs)]
    noise = coloured_noise(x.size, item.noise_slope, rng)
    return x + noise * 10 ** ((item.level_db - item.snr_db) / 20)


def encode_item(args: tuple[Item, np.ndarray, float, SynthConfig]) -> tuple[np.ndarray, np.ndarray]:
    """Worker: one utterance -> (times float64 seconds, units int64)."""
    item, audio, fs_in, config = args
    x = render(item, audio, fs_in, config)
    p = config.cochlea
    rates = firing_rates(envelopes(x, p), p)
    return renewal_spikes(rates, p.env_fs_hz, np.random.default_rng([item.seed, 2]), p.isi_shape)


def _crsnn_version() -> str:
    try:
        from crsnn import __version__

        return __version__
    except ImportError:  # pragma: no cover
        return "unknown"


def synthesize_benchmark(
    out_dir: str | os.PathLike,
    config: SynthConfig = SynthConfig(),
    workers: int | None = None,
    progress: bool = True,
) -> dict:
    """Write ``train.h5`` and ``test.h5`` to ``out_dir``; returns a summary dict.

    Args:
        out_dir: output directory (created; if the synthesis fails, the folders created here are
            removed again while they are empty: a failed run leaves no empty folder behind).
        config: sizes, speakers, augmentation, front end, seed.
        workers: processes for the front end (default: the CPU count, at most 8).
        progress: show tqdm progress bars.
    """
    out_dir = Path(out_dir)
    created = _missing_folders(out_dir)
    try:
        return _synthesize_benchmark(out_dir, config, workers, progress)
    except BaseException:
        _remove_empty(created)
        raise


def _missing_folders(folder: Path) -> list[Path]:
    """``folder`` and those of its parents that do not exist yet, deepest first."""
    missing = []
    for p in (folder, *folder.parents):
        if os.path.lexists(p):
            break
        missing.append(p)
    return missing


def _remove_empty(folders: Sequence[Path]) -> None:
    """Remove ``folders`` (deepest first) while they are empty; stop at the first that is not."""
    for p in folders:
        try:
            os.rmdir(p)
        except FileNotFoundError:
            continue
        except OSError:
            return


def _synthesize_benchmark(out_dir: Path, config: SynthConfig, workers: int | None, progress: bool) -> dict:
    """:func:`synthesize_benchmark` without the clean-up of its output folder on failure."""
    t0 = time.perf_counter()
    for split in ("train", "test"):  # before minutes of work
        check_writable(out_dir / f"{split}.h5", make_parents=True)
    workers = workers or min(8, os.cpu_count() or 1)
    speakers = make_speakers(config, list_variants())
    plan = make_items(config, speakers)
    items = [it for split in ("train", "test") for it in plan[split]]
    audio, info = synthesize_all([it.utterance for it in items])
    fs_in = float(info["sample_rate"])
    t_speech = time.perf_counter() - t0
    tasks = [(it, a, fs_in, config) for it, a in zip(items, audio)]
    spikes = map_ordered(encode_item, tasks, workers, "cochlea", progress)
    provenance = {
        "format_version": FORMAT_VERSION,
        "generator": "crsnn.train.data.synth",
        "crsnn_version": _crsnn_version(),
        "synthesizer": {k: info[k] for k in ("synthesizer", "version", "source", "sample_rate")},
        "seed": config.seed,
        "config": config.to_dict(),
        "speakers": [asdict(s) for s in speakers],
    }
    summary = {"out_dir": str(out_dir), "files": {}}
    k = 0
    images = []
    for split in ("train", "test"):
        its = plan[split]
        sp = spikes[k:k + len(its)]
        k += len(its)
        path = out_dir / f"{split}.h5"
        images.append((path, spike_file_bytes(
            [t for t, _ in sp], [u for _, u in sp],
            [it.label for it in its], list(CLASS_NAMES),
            speakers=[it.speaker for it in its],
            attrs={"synthetic": True, "split": split,
                   "description": "crsnn offline spoken-digit benchmark (espeak-ng + "
                                  "gammatone front end) in SHD's layout; NOT the SHD recordings",
                   "crsnn_synth": provenance},
        )))
        summary["files"][split] = {
            "path": str(path), "samples": len(its), "bytes": len(images[-1][1]),
            "speakers": sorted({it.speaker for it in its}),
            "mean_spikes": float(np.mean([t.size for t, _ in sp])) if sp else 0.0,
        }
    write_together(images)  # train and test as one unit: never a new train file next to an old test file
    summary["seconds"] = time.perf_counter() - t0
    summary["speech_seconds"] = t_speech
    summary["synthesizer"] = provenance["synthesizer"]
    return summary


def existing_benchmark(out_dir: str | os.PathLike, config: SynthConfig = SynthConfig()) -> bool:
    """True when ``out_dir`` already holds ``train.h5`` and ``test.h5`` synthesized with exactly
    ``config`` (same seed, sizes and front end) by this format version (read from their provenance)."""
    import json

    import h5py

    want = json.loads(json.dumps(config.to_dict()))
    for split in ("train", "test"):
        path = Path(out_dir) / f"{split}.h5"
        try:
            with h5py.File(path, "r") as f:
                prov = json.loads(f.attrs["crsnn_synth"])
        except (OSError, KeyError, ValueError):
            return False
        if prov.get("format_version") != FORMAT_VERSION or prov.get("config") != want:
            return False
    return True


def ensure_benchmark(out_dir: str | os.PathLike, config: SynthConfig = SynthConfig(), workers: int | None = None,
                     progress: bool = True, log=print) -> Path:
    """Synthesize the benchmark into ``out_dir`` unless :func:`existing_benchmark` finds it there
    (the generator is deterministic: the same config gives byte-identical files). Returns the folder."""
    out_dir = Path(out_dir)
    if existing_benchmark(out_dir, config):
        log(f"data: reusing {out_dir} ({config.per_class} per class, seed {config.seed})")
        return out_dir
    log(f"data: synthesizing the offline spoken-digit benchmark into {out_dir} "
        f"({config.per_class} per class, seed {config.seed})")
    s = synthesize_benchmark(out_dir, config, workers=workers, progress=progress)
    log(f"data: {s['files']['train']['samples']} train / {s['files']['test']['samples']} test samples "
        f"in {s['seconds']:.0f} s")
    return out_dir
