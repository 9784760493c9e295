"""Encode a user's labelled WAV files with the cochlea front end into SHD's layout
(``crsnn-data encode WAV_DIR --out FILE``).

Where the labels come from:

- class folders (the default): ``WAV_DIR`` holds one sub-folder per class; class names are the
  folder names, sorted (class id = position); every ``*.wav`` below a class folder (recursively,
  sorted by path) is one sample.
- file names (``label_pattern``): every ``*.wav`` below ``WAV_DIR`` (recursively, sorted by its
  path relative to ``WAV_DIR``) is one sample; its class is the first group of
  ``re.search(label_pattern, file_name)`` on the file NAME only (not the folders), e.g.
  ``'^(\\d+)_'`` for the Free Spoken Digit Dataset's ``{digit}_{speaker}_{index}.wav``.

Class and speaker names are sorted, numerically when all of them are integers ("10" after "9");
the id is the position in that order. With ``speaker_pattern`` (the first group of
``re.search`` on the file name, in either mode) each sample's speaker id is stored in
``extra/speaker`` (uint16, as SHD; the loaders read it as ``header.speakers``) and the speaker
names, index = id, in the root attribute ``speaker_names`` (a JSON list:
``json.loads(read_header(f).attrs["speaker_names"])``).

With ``test_speakers`` the output is a folder with ``train.h5`` (the other speakers) and
``test.h5`` (the listed ones), both with the full speaker-name list (the same ids in both): the
layout :func:`crsnn.train.data.shd.find_split_files` looks for, so ``crsnn-train --data FOLDER``
takes it as it is (validation: a stratified part of ``train.h5``, of the same speakers).

Each file is mixed to mono, cut to its speech (leading and trailing silence more than ``trim_db``
below the loudest 10-ms frame dropped, 20 ms margin kept), its active RMS normalised to ``level_db`` (unless ``None``) and
encoded to 700-channel spikes from its own sample rate (the channels above its band stay silent:
:func:`crsnn.train.data.cochlea.first_in_band`). The spike generator of file
``i`` (position in the sorted list of all files) is seeded with ``(seed, i)``: the same inputs and
seed give the same spikes, split or not.
"""

from __future__ import annotations

import os
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .cochlea import CochleaParams, _bank, encode, speech_bounds
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


#: The front end of ``crsnn-data encode`` for recordings: the cochlea with the per-recording channel
#: equalisation half way (:func:`~crsnn.train.data.cochlea.equalize_rates`, ``--equalize 0.5``). On
#: the Free Spoken Digit Dataset's unseen voices it raised the fixed probe classifier on the spike
#: counts from 81.0 to 85.3 % (log-mel: 86.3 %; ``bench/encoder_probe.py``, 3 seeds, 5 folds), most
#: on the voice farthest from the others (64.4 -> 75.3 %): it removes the long-term colour of the
#: voice and the microphone, which words do not carry. ``--equalize 0`` is the plain cochlea (as
#: SHD's, and before this default).
RECORDINGS_FRONT_END = CochleaParams(equalize_power=0.5)

NEEDS_SPEAKERS = "--test-speakers needs --speaker-pattern (the speaker of each file)"


@dataclass
class WavSet:
    """The samples found under a folder.

    Attributes:
        root: the folder.
        files: ``(N,)`` WAV paths, in sample order.
        labels: int64 ``(N,)`` class ids.
        classes: class names, index = class id.
        speakers: int64 ``(N,)`` speaker ids, or None without a speaker pattern.
        speaker_names: speaker names, index = speaker id (empty without a speaker pattern).
    """

    root: Path
    files: list[Path]
    labels: np.ndarray
    classes: list[str]
    speakers: np.ndarray | None = None
    speaker_names: list[str] = field(default_factory=list)


def sort_names(names: Sequence[str]) -> list[str]:
    """Distinct names, sorted numerically when all are integers (``"10"`` after ``"9"``), else
    as strings."""
    names = sorted(set(names))
    if names and all(re.fullmatch(r"[+-]?\d+", n) for n in names):
        return sorted(names, key=lambda n: (int(n), n))
    return names


def compile_pattern(pattern: str, option: str) -> re.Pattern:
    """``pattern`` compiled; it must have a group (``option`` names it in errors).

    Raises:
        ValueError: not a regular expression, or no group.
    """
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"{option} '{pattern}' is not a regular expression ({exc})") from exc
    if rx.groups < 1:
        raise ValueError(f"{option} '{pattern}' has no group: the first group, e.g. '^(\\d+)_', is the name")
    return rx


def name_from(rx: re.Pattern, path: Path, option: str) -> str:
    """The first group of ``rx.search(path.name)``.

    Raises:
        ValueError: no match, or an empty first group.
    """
    m = rx.search(path.name)
    if m is None or not m.group(1):
        raise ValueError(f"{option} '{rx.pattern}' does not match the file name '{path.name}' ({path})")
    return m.group(1)


def _wav_files(folder: Path) -> list[Path]:
    """The ``*.wav`` files below ``folder``, sorted by relative path. A ``.wav`` entry that is a
    FIFO, device or socket is refused (reading a FIFO would block the encoding)."""
    from crsnn.input_files import check_regular_input

    wavs = [p for p in folder.rglob("*") if p.suffix.lower() == ".wav" and not p.is_dir()]
    for p in wavs:
        check_regular_input(p, "WAV file")
    return sorted(wavs, key=lambda p: p.relative_to(folder).as_posix())


def find_wavs(
    wav_dir: str | os.PathLike, label_pattern: str | None = None, speaker_pattern: str | None = None
) -> WavSet:
    """The samples below ``wav_dir``: labels from class folders or from ``label_pattern``,
    speakers from ``speaker_pattern`` (see the module docstring).

    Raises:
        FileNotFoundError: no directory, no class folders or no WAV files.
        ValueError: a pattern is invalid or does not match a file name.
    """
    root = Path(wav_dir)
    if not root.is_dir():
        hint = "" if label_pattern else " (expected one sub-folder per class)"
        raise FileNotFoundError(f"{root}: not a directory{hint}")
    if label_pattern is None:
        classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not classes:
            raise FileNotFoundError(
                f"{root}: no class sub-folders (expected WAV_DIR/<class>/*.wav, or pass --label-pattern "
                f"to take the class from the file names)")
        files, labels = [], []
        for c, name in enumerate(classes):
            wavs = _wav_files(root / name)
            files.extend(wavs)
            labels.extend([c] * len(wavs))
        if not files:
            raise FileNotFoundError(f"{root}: no .wav files in the class folders {classes}")
    else:
        rx = compile_pattern(label_pattern, "--label-pattern")
        files = _wav_files(root)
        if not files:
            raise FileNotFoundError(f"{root}: no .wav files")
        names = [name_from(rx, p, "--label-pattern") for p in files]
        classes = sort_names(names)
        index = {n: i for i, n in enumerate(classes)}
        labels = [index[n] for n in names]
    out = WavSet(root, files, np.asarray(labels, dtype=np.int64), classes)
    if speaker_pattern is not None:
        rx = compile_pattern(speaker_pattern, "--speaker-pattern")
        names = [name_from(rx, p, "--speaker-pattern") for p in files]
        out.speaker_names = sort_names(names)
        index = {n: i for i, n in enumerate(out.speaker_names)}
        out.speakers = np.asarray([index[n] for n in names], dtype=np.int64)
    return out


def speaker_split(wavs: WavSet, test_speakers: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Sample indices ``(train, test)``: test = the samples of ``test_speakers``.

    Raises:
        ValueError: no speakers in ``wavs``, an unknown speaker, or an empty split.
    """
    if wavs.speakers is None:
        raise ValueError(NEEDS_SPEAKERS)
    wanted = [s.strip() for s in test_speakers if s.strip()]
    if not wanted:
        raise ValueError("--test-speakers lists no speaker")
    unknown = [s for s in wanted if s not in wavs.speaker_names]
    if unknown:
        raise ValueError(f"--test-speakers: no file of speaker {unknown[0]!r} "
                         f"(--speaker-pattern found: {', '.join(wavs.speaker_names)})")
    ids = [wavs.speaker_names.index(s) for s in wanted]
    is_test = np.isin(wavs.speakers, ids)
    if is_test.all():
        raise ValueError(f"--test-speakers {','.join(wanted)} leaves no training files "
                         f"(speakers: {', '.join(wavs.speaker_names)})")
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


@dataclass(frozen=True)
class _Task:
    path: Path
    seed: int
    params: CochleaParams
    level_db: float | None
    max_duration: float | None
    trim_db: float | None


def _encode_one(task: _Task) -> tuple[np.ndarray, np.ndarray, float]:
    x, fs = read_wav(task.path)
    if task.trim_db is not None:
        start, stop = speech_bounds(x, fs, task.trim_db)
        x = x[start:stop]
    if task.max_duration is not None:
        x = x[: int(task.max_duration * fs)]
    t, u = encode(x, fs, np.random.default_rng(task.seed), task.params, task.level_db)
    return t, u, x.size / fs


def _write(path: Path, wavs: WavSet, idx: np.ndarray, res: list, attrs: dict) -> Path:
    """One SHD-layout file of the samples ``idx`` (``res``: the results of all samples)."""
    files = [wavs.files[i].relative_to(wavs.root).as_posix() for i in idx]
    attrs = {**attrs, "crsnn_encode": {**attrs["crsnn_encode"], "files": files}}
    if wavs.speakers is not None:
        attrs["speaker_names"] = list(wavs.speaker_names)
    return write_spike_file(
        path, [res[i][0] for i in idx], [res[i][1] for i in idx], wavs.labels[idx], wavs.classes,
        speakers=None if wavs.speakers is None else wavs.speakers[idx], attrs=attrs,
    )


def encode_folder(
    wav_dir: str | os.PathLike,
    out: str | os.PathLike,
    seed: int = 0,
    params: CochleaParams = RECORDINGS_FRONT_END,
    level_db: float | None = 0.0,
    max_duration: float | None = None,
    workers: int | None = None,
    progress: bool = True,
    label_pattern: str | None = None,
    speaker_pattern: str | None = None,
    test_speakers: Sequence[str] | None = None,
    trim_db: float | None = 20.0,
) -> dict:
    """Encode every WAV file under ``wav_dir`` into one SHD-layout file ``out``, or, with
    ``test_speakers``, into ``out/train.h5`` and ``out/test.h5``.

    Args:
        seed: spike-generator seed (file ``i`` uses ``(seed, i)``): same inputs -> same spikes.
        params: front-end parameters.
        level_db: normalise each file's active RMS to this level (dB re. 1); None: keep levels.
        max_duration: keep at most this many seconds of each file (after the trim).
        trim_db: cut leading and trailing silence: keep from the first to the last 10-ms frame
            within this many dB of the file's loudest one, plus 20 ms each side
            (:func:`~crsnn.train.data.cochlea.speech_bounds`); None: keep every sample.
        workers: processes (default: CPU count, at most 8).
        label_pattern: class = first group of this regex on the file name (default: folders).
        speaker_pattern: speaker = first group of this regex on the file name.
        test_speakers: speaker names for ``test.h5``; the others go to ``train.h5``.

    Returns:
        summary dict: ``files`` ({split or "data": {path, samples, speakers, bytes}}), classes,
        speakers, samples, seconds, mean spikes, mean duration.

    Raises:
        ValueError / FileNotFoundError: bad options or inputs (one-line messages).
    """
    t0 = time.perf_counter()
    out = Path(out)
    if test_speakers is not None and speaker_pattern is None:
        raise ValueError(NEEDS_SPEAKERS)
    if test_speakers is not None and out.suffix.lower() in (".h5", ".hdf5"):
        raise ValueError(f"--out {out}: with --test-speakers, --out is a folder (train.h5 and test.h5 go there)")
    wavs = find_wavs(wav_dir, label_pattern, speaker_pattern)
    if test_speakers is not None:
        train, test = speaker_split(wavs, test_speakers)
        splits = {"train": (out / "train.h5", train), "test": (out / "test.h5", test)}
    else:
        splits = {"data": (out, np.arange(len(wavs.files)))}
    workers = workers or min(8, os.cpu_count() or 1)
    _bank(params)  # built once here, inherited by forked workers
    tasks = [_Task(p, int(np.random.SeedSequence([seed, i]).generate_state(1)[0]), params,
                   level_db, max_duration, trim_db) for i, p in enumerate(wavs.files)]
    res = map_ordered(_encode_one, tasks, workers, "encode", progress)
    provenance = {
        "generator": "crsnn.train.data.encode",
        "front_end": "crsnn gammatone cochlea model (not the Lauscher model of SHD)",
        "seed": seed,
        "level_db": level_db,
        "max_duration": max_duration,
        "trim_db": trim_db,
        "label_pattern": label_pattern,
        "speaker_pattern": speaker_pattern,
        "test_speakers": None if test_speakers is None else list(test_speakers),
        "cochlea": params.to_dict(),
    }
    summary = {"files": {}, "classes": wavs.classes, "speakers": wavs.speaker_names,
               "samples": len(wavs.files)}
    for split, (path, idx) in splits.items():
        attrs = {"synthetic": False, "crsnn_encode": provenance}
        if split != "data":
            attrs["split"] = split
        path = _write(path, wavs, idx, res, attrs)
        summary["files"][split] = {
            "path": str(path), "samples": int(idx.size), "bytes": path.stat().st_size,
            "speakers": [] if wavs.speakers is None else
            [wavs.speaker_names[s] for s in np.unique(wavs.speakers[idx])],
        }
    summary["seconds"] = time.perf_counter() - t0
    summary["mean_spikes"] = float(np.mean([r[0].size for r in res]))
    summary["mean_duration_s"] = float(np.mean([r[2] for r in res]))
    return summary


def split_encoded(
    encoded: str | os.PathLike, test_speakers: Sequence[str], out: str | os.PathLike
) -> dict:
    """Write ``out/train.h5`` and ``out/test.h5`` from ONE file that :func:`encode_folder` wrote
    with a speaker pattern and no split: the same bytes as encoding the recordings again with
    ``test_speakers`` (the spikes of a file depend on its position in the sorted list of all
    files, not on the split). Encode once, then derive every leave-one-speaker-out fold.

    Returns the summary of :func:`encode_folder` (``files``, ``classes``, ``speakers``, ``samples``).

    Raises:
        SpikeFileError: not a readable SHD-layout file.
        ValueError: the file has no speakers, is a split already, or a speaker is unknown.
    """
    import json

    from .layout import iter_spikes, read_header

    head = read_header(encoded)
    prov = head.attrs.get("crsnn_encode")
    prov = json.loads(prov) if isinstance(prov, str) else None
    if head.speakers is None or "speaker_names" not in head.attrs or prov is None:
        raise ValueError(f"{encoded}: not a file of crsnn-data encode with --speaker-pattern (no speakers to "
                         "split by); encode it with --speaker-pattern")
    if prov.get("test_speakers") is not None or "split" in head.attrs:
        raise ValueError(f"{encoded}: is already the {head.attrs.get('split', '?')} part of a split; give the "
                         "file encoded without --test-speakers")
    names = json.loads(head.attrs["speaker_names"])
    root = Path("/")
    wavs = WavSet(root, [root / f for f in prov["files"]], head.labels, head.class_names, head.speakers, names)
    train, test = speaker_split(wavs, test_speakers)
    res = []
    for _, times, units in iter_spikes(encoded):
        res.extend(zip(times, units))
    provenance = {**prov, "test_speakers": [s.strip() for s in test_speakers if s.strip()]}
    out = Path(out)
    summary = {"files": {}, "classes": wavs.classes, "speakers": names, "samples": len(res)}
    for split, idx in (("train", train), ("test", test)):
        attrs = {"synthetic": bool(head.attrs.get("synthetic", False)), "crsnn_encode": provenance, "split": split}
        path = _write(out / f"{split}.h5", wavs, idx, res, attrs)
        summary["files"][split] = {"path": str(path), "samples": int(idx.size), "bytes": path.stat().st_size,
                                   "speakers": [names[s] for s in np.unique(wavs.speakers[idx])]}
    return summary
