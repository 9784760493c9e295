"""Loaders for SHD / SSC files (and anything else in their layout, e.g. ``crsnn-data synth``).

Each file is read once, in chunks, and binned into a dense uint8 array of shape ``(N, T, G)``
(``T`` time steps of ``dt`` seconds, ``G`` channel groups) when that fits in the memory budget;
otherwise the events are kept in memory in a compact form and each sample is binned when it is
asked for. The HDF5 file is never read again per sample.

Typical use::

    splits = load_splits("data/shd", dt=0.01, max_duration=1.0, channel_group=5,
                         valid_fraction=0.1, seed=0)
    splits["train"], splits["valid"], splits["test"]      # SpikeSubset views

File discovery (a directory): ``shd_{train,test}.h5``, ``ssc_{train,valid,test}.h5`` or
``{train,valid,test}.h5``. A single ``.h5`` file is also accepted.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .binning import bin_many, last_step, n_groups_for, n_steps_for
from .layout import SHD_CHANNELS, SpikeFileError, SpikeFileHeader, check_spike_input, iter_spikes, read_header

SPLITS = ("train", "valid", "test")
_PREFIXES = ("shd", "ssc", "")


def _split_of(name: str) -> str | None:
    m = re.search(r"(?:^|[_\-.])(train|valid|validation|val|test)(?:[_\-.]|$)", name.lower())
    if not m:
        return None
    return {"validation": "valid", "val": "valid"}.get(m.group(1), m.group(1))


def find_split_files(path: str | os.PathLike, dataset: str | None = None) -> dict[str, Path]:
    """Map split names (``train``/``valid``/``test``) to files.

    Args:
        path: a directory holding the split files, or one ``.h5`` file (its split is guessed
            from its name; ``data`` if the name says nothing).
        dataset: ``"shd"``, ``"ssc"`` or ``""`` (plain ``train.h5``...) to choose among several
            sets in one directory.

    Raises:
        SpikeFileError: nothing matching is found, or the directory holds several data sets.
    """
    path = check_spike_input(path)
    if path.is_file() or path.suffix == ".h5":
        if not path.exists():
            gz = path.with_name(path.name + ".gz")
            hint = f" (found {gz.name}: decompress it first)" if gz.exists() else ""
            raise SpikeFileError(f"{path}: file not found{hint}")
        return {_split_of(path.stem) or "data": path}
    if not path.is_dir():
        raise SpikeFileError(f"{path}: no such file or directory")
    found: dict[str, dict[str, Path]] = {}
    prefixes = _PREFIXES if dataset is None else (dataset.lower(),)
    for prefix in prefixes:
        for split in SPLITS:
            name = f"{prefix}_{split}.h5" if prefix else f"{split}.h5"
            if check_spike_input(path / name).is_file():  # a FIFO named like a split file is refused, not skipped
                found.setdefault(prefix, {})[split] = path / name
    if not found:
        gz = sorted(p.name for p in path.glob("*.h5.gz"))
        hint = f"; found {', '.join(gz)}: decompress them first (gunzip -k)" if gz else ""
        raise SpikeFileError(
            f"{path}: no split files found (expected shd_train.h5/shd_test.h5, "
            f"ssc_train.h5/ssc_valid.h5/ssc_test.h5, or train.h5/test.h5){hint}"
        )
    if len(found) > 1:
        raise SpikeFileError(
            f"{path}: holds several data sets ({', '.join(p or 'plain' for p in found)}); "
            f"pass dataset= one of them"
        )
    return next(iter(found.values()))


def _available_memory() -> int:
    """Bytes of memory available (Linux MemAvailable, else free pages, else 4 GiB)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def default_cache_budget() -> int:
    """Bytes a dense cache may take: half the available memory, at most 32 GiB."""
    return min(_available_memory() // 2, 32 << 30)


class BinnedSpikes:
    """All samples of one file, binned (``dt`` seconds per step, ``n_steps`` steps).

    Attributes:
        header: labels, class names, speakers and attributes of the file.
        dt: bin width in seconds.
        n_steps: ``T``.
        n_channels: channels in the file (700 for SHD/SSC).
        channel_group: channels summed per input; ``n_inputs = ceil(n_channels/channel_group)``.
        lengths: int64 ``(N,)``: steps up to and including the last spike, capped at ``T``.
        spike_counts: int64 ``(N,)``: spikes per sample in the file (before truncation).
        dense: uint8 ``(N, T, G)`` cache, or None when samples are binned lazily.
    """

    def __init__(
        self,
        header: SpikeFileHeader,
        dt: float,
        n_steps: int,
        n_channels: int,
        channel_group: int,
        lengths: np.ndarray,
        spike_counts: np.ndarray,
        dense: np.ndarray | None = None,
        events: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    ):
        if (dense is None) == (events is None):
            raise ValueError("give exactly one of dense or events")
        self.header = header
        self.dt = float(dt)
        self.n_steps = int(n_steps)
        self.n_channels = int(n_channels)
        self.channel_group = int(channel_group)
        self.n_inputs = n_groups_for(n_channels, channel_group)
        self.lengths = lengths
        self.spike_counts = spike_counts
        self.dense = dense
        self._events = events  # (offsets (N+1,), times float32/64 seconds, units int32)

    # -- metadata -----------------------------------------------------------------------------
    @property
    def labels(self) -> np.ndarray:
        """int64 ``(N,)``."""
        return self.header.labels

    @property
    def class_names(self) -> list[str]:
        return self.header.class_names

    @property
    def n_classes(self) -> int:
        return len(self.header.class_names)

    @property
    def speakers(self) -> np.ndarray | None:
        return self.header.speakers

    @property
    def is_dense(self) -> bool:
        return self.dense is not None

    def __len__(self) -> int:
        return self.header.n_samples

    def __repr__(self) -> str:
        mode = "dense" if self.is_dense else "lazy"
        return (f"BinnedSpikes({self.header.path.name}: {len(self)} samples, T={self.n_steps} x "
                f"dt={self.dt:g}s, {self.n_inputs} inputs, {self.n_classes} classes, {mode})")

    # -- data ---------------------------------------------------------------------------------
    def samples(self, indices: np.ndarray | list[int]) -> np.ndarray:
        """uint8 counts of shape ``(len(indices), T, G)`` (a new array)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if self.dense is not None:
            return self.dense[idx]
        off, t, u = self._events
        times = [t[off[i]:off[i + 1]] for i in idx]
        units = [u[off[i]:off[i + 1]] for i in idx]
        return bin_many(times, units, self.dt, self.n_steps, self.n_channels, self.channel_group)

    def sample(self, index: int) -> np.ndarray:
        """uint8 counts of shape ``(T, G)`` (a new array)."""
        return self.samples([index])[0]


def load_binned(
    path: str | os.PathLike,
    dt: float = 0.01,
    max_duration: float = 1.0,
    channel_group: int = 1,
    n_channels: int = SHD_CHANNELS,
    cache: str = "auto",
    max_cache_bytes: int | None = None,
    chunk_size: int = 1024,
    progress: bool = False,
) -> BinnedSpikes:
    """Read one SHD-layout file and bin it.

    Args:
        path: the ``.h5`` file.
        dt: bin width in seconds (SHD: commonly 0.01; SSC: 1.4/250).
        max_duration: seconds kept; ``T = ceil(max_duration/dt)``; later spikes are dropped.
        channel_group: sum groups of this many adjacent channels (5: 700 -> 140).
        n_channels: channels in the file; a unit id outside ``0..n_channels-1`` is an error.
        cache: ``"auto"`` (dense if ``N*T*G`` bytes fit ``max_cache_bytes``), ``"dense"``, ``"lazy"``.
        max_cache_bytes: budget of the dense cache (default: half the available memory).
        chunk_size: samples read and binned at once.
        progress: show a tqdm bar.
    """
    if cache not in ("auto", "dense", "lazy"):
        raise ValueError(f"cache must be 'auto', 'dense' or 'lazy', got {cache!r}")
    header = read_header(path)
    n = header.n_samples
    T = n_steps_for(max_duration, dt)
    G = n_groups_for(n_channels, channel_group)
    need = n * T * G
    budget = default_cache_budget() if max_cache_bytes is None else int(max_cache_bytes)
    dense_mode = cache == "dense" or (cache == "auto" and need <= budget)
    dense = np.zeros((n, T, G), dtype=np.uint8) if dense_mode else None
    lengths = np.zeros(n, dtype=np.int64)
    counts = np.zeros(n, dtype=np.int64)
    t_parts, u_parts = [], []
    # lazy mode keeps the events compactly; float32 holds float16/float32 times exactly
    t_keep = np.float32 if header.times_dtype in ("float16", "float32") else np.float64
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, desc=f"binning {Path(path).name}", unit="sample")
    for i0, times, units in iter_spikes(path, n_channels=n_channels, chunk_size=chunk_size):
        i1 = i0 + len(times)
        counts[i0:i1] = [len(t) for t in times]
        lengths[i0:i1] = last_step(times, dt, T)
        if dense is not None:
            bin_many(times, units, dt, T, n_channels, channel_group, out=dense[i0:i1])
        else:
            t_parts.extend(t.astype(t_keep) for t in times)
            u_parts.extend(u.astype(np.int32) for u in units)
        if bar is not None:
            bar.update(i1 - i0)
    if bar is not None:
        bar.close()
    events = None
    if dense is None:
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        cat_t = np.concatenate(t_parts) if t_parts else np.zeros(0, t_keep)
        cat_u = np.concatenate(u_parts) if u_parts else np.zeros(0, np.int32)
        events = (offsets, cat_t, cat_u)
    return BinnedSpikes(header, dt, T, n_channels, channel_group, lengths, counts, dense, events)


@dataclass
class SpikeSubset:
    """A view of some samples of a :class:`BinnedSpikes` (a split).

    Attributes:
        data: the binned file.
        indices: int64 ``(n,)`` sample indices into ``data``.
        name: split name.
    """

    data: BinnedSpikes
    indices: np.ndarray
    name: str = ""

    def __len__(self) -> int:
        return int(self.indices.size)

    @property
    def labels(self) -> np.ndarray:
        """int64 ``(n,)``."""
        return self.data.labels[self.indices]

    @property
    def class_names(self) -> list[str]:
        return self.data.class_names

    @property
    def n_steps(self) -> int:
        return self.data.n_steps

    @property
    def n_inputs(self) -> int:
        return self.data.n_inputs

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """All samples: uint8 ``(n, T, G)`` and int64 labels ``(n,)``."""
        return self.data.samples(self.indices), self.labels


def stratified_split(labels: np.ndarray, fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split sample indices into (kept, held out), holding out ``round(fraction * n_c)`` of
    each class ``c``. Deterministic for a seed; both outputs sorted and disjoint."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    held = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        k = int(round(fraction * idx.size))
        held.append(rng.permutation(idx)[:k])
    held_out = np.sort(np.concatenate(held)) if held else np.zeros(0, np.int64)
    mask = np.ones(labels.size, dtype=bool)
    mask[held_out] = False
    return np.flatnonzero(mask).astype(np.int64), held_out.astype(np.int64)


def load_splits(
    path: str | os.PathLike,
    dt: float = 0.01,
    max_duration: float = 1.0,
    channel_group: int = 1,
    valid_fraction: float = 0.1,
    seed: int = 0,
    dataset: str | None = None,
    n_channels: int = SHD_CHANNELS,
    cache: str = "auto",
    max_cache_bytes: int | None = None,
    progress: bool = False,
) -> dict[str, SpikeSubset]:
    """Load the official splits of SHD/SSC (or a single file) and bin them.

    Returns ``{"train", "valid", "test"}`` subsets (whichever exist). When there is no
    validation file (SHD), ``valid`` is a class-stratified, seeded ``valid_fraction`` of the
    training file and ``train`` the rest; ``valid_fraction=0`` gives no ``valid`` split.
    All files must list the same class names. A single file gives one split named after it.
    """
    files = find_split_files(path, dataset)
    budget = default_cache_budget() if max_cache_bytes is None else int(max_cache_bytes)
    out: dict[str, SpikeSubset] = {}
    names = None
    for split, file in files.items():
        data = load_binned(file, dt, max_duration, channel_group, n_channels, cache,
                           budget, progress=progress)
        if data.is_dense:
            budget -= data.dense.nbytes
        if names is not None and data.class_names != names[1]:
            raise SpikeFileError(
                f"{file.name}: class names {data.class_names} differ from those of "
                f"{names[0]} {names[1]}"
            )
        names = (file.name, data.class_names)
        idx = np.arange(len(data), dtype=np.int64)
        if split == "train" and "valid" not in files and valid_fraction > 0:
            keep, held = stratified_split(data.labels, valid_fraction, seed)
            out["train"] = SpikeSubset(data, keep, "train")
            out["valid"] = SpikeSubset(data, held, "valid")
        else:
            out[split] = SpikeSubset(data, idx, split)
    return {k: out[k] for k in sorted(out, key=lambda s: (SPLITS + ("data",)).index(s))}


def test_file_of(path: str | os.PathLike) -> Path:
    """The one file that holds the test set of ``path``: a single file is the test set (whatever
    its name); a folder must hold a test file (``test.h5``, ``shd_test.h5``, ``ssc_test.h5``).
    Nothing is opened. Raises :class:`SpikeFileError`."""
    path = check_spike_input(path)
    if path.is_dir():
        files = find_split_files(path)
        if "test" not in files:
            raise SpikeFileError(f"{path}: no test file (expected test.h5, shd_test.h5 or ssc_test.h5; found "
                                 f"{', '.join(p.name for p in files.values())}); or give the test file itself")
        return files["test"]
    if not path.exists():
        gz = path.with_name(path.name + ".gz")
        hint = f" (found {gz.name}: decompress it first, e.g. `gunzip -k {gz}`)" if gz.exists() else ""
        raise SpikeFileError(f"{path}: no such file or folder{hint}")
    return path


def load_test_split(
    path: str | os.PathLike,
    dt: float = 0.01,
    max_duration: float = 1.0,
    channel_group: int = 1,
    n_channels: int = SHD_CHANNELS,
    progress: bool = False,
) -> SpikeSubset:
    """Only the test set of ``path`` (see :func:`test_file_of`), binned: for evaluation, where a
    missing or broken training file must not matter. Returns a subset named ``test``."""
    data = load_binned(test_file_of(path), dt, max_duration, channel_group, n_channels, progress=progress)
    return SpikeSubset(data, np.arange(len(data), dtype=np.int64), "test")
