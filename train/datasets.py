"""Data access for training: ONE adapter (:func:`load_data`) between the trainer and the data
sources, so that the trainer never touches a loader's internals.

Sources:

- a directory or ``.h5`` file in the SHD layout (SHD, SSC, ``crsnn-data synth`` output): read and
  binned by :mod:`crsnn.train.data` (``load_splits``, ``SpikeDataset``, ``SpikeBatches``,
  ``Augment``); its seeded, rank-sharded batching is used for training;
- ``synthetic`` or ``synthetic:key=value,...``: the generated delay task of
  :mod:`crsnn.train.synthetic` (``key`` any :class:`~crsnn.train.synthetic.DelayTask` field, plus
  ``train``/``valid``/``test`` sample counts), held in memory.

Every split yields ``(x, y)``: ``x`` uint8 counts (batch, T, n_in), ``y`` int64 labels.
Evaluation batches are sharded ``rank::world_size`` without padding (every sample exactly once
over all ranks); training batches follow the source's sampler (padded so that all ranks take the
same number of steps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Protocol

import numpy as np
import torch

from .synthetic import DelayTask

if TYPE_CHECKING:
    from .data.augment import Augment


class DataError(ValueError):
    """The data cannot be loaded; the message says why (one line)."""


class Split(Protocol):
    name: str

    def __len__(self) -> int: ...

    @property
    def labels(self) -> np.ndarray: ...

    def train_batches(self, batch_size: int, epoch: int, rank: int = 0, world_size: int = 1
                      ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...

    def eval_batches(self, batch_size: int, rank: int = 0, world_size: int = 1
                     ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...

    def max_count(self) -> int: ...


@dataclass
class DataBundle:
    """The splits and what the model needs to know about them."""

    splits: dict
    n_in: int
    n_classes: int
    n_steps: int
    dt: float
    class_names: list = field(default_factory=list)
    source: dict = field(default_factory=dict)

    def __getitem__(self, name: str) -> Split:
        return self.splits[name]


class ArraySplit:
    """An in-memory split: ``x`` uint8 (N, T, C), ``y`` int64 (N,)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, name: str = "", seed: int = 0) -> None:
        self.x, self.y, self.name, self.seed = np.asarray(x), np.asarray(y, dtype=np.int64), name, int(seed)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def labels(self) -> np.ndarray:
        return self.y

    def _batches(self, pos: np.ndarray, batch_size: int):
        for k in range(0, len(pos), batch_size):
            p = pos[k:k + batch_size]
            yield torch.from_numpy(self.x[p]), torch.from_numpy(self.y[p])

    def train_batches(self, batch_size, epoch, rank=0, world_size=1):
        from .data.dataset import shard_indices

        return self._batches(shard_indices(len(self), epoch, self.seed, True, rank, world_size), batch_size)

    def eval_batches(self, batch_size, rank=0, world_size=1):
        return self._batches(np.arange(rank, len(self), world_size), batch_size)

    def max_count(self) -> int:
        return int(self.x.max()) if self.x.size else 0


class SpikeSplit:
    """A split of an SHD-layout file, through :mod:`crsnn.train.data`."""

    def __init__(self, subset, name: str, seed: int = 0, augment=None) -> None:
        from .data.dataset import SpikeDataset

        self.subset = subset
        self.name = name
        self.dataset = SpikeDataset(subset, augment=augment, seed=seed)
        self.plain = SpikeDataset(subset, augment=None, seed=seed)

    def __len__(self) -> int:
        return len(self.subset)

    @property
    def labels(self) -> np.ndarray:
        return self.subset.labels

    def train_batches(self, batch_size, epoch, rank=0, world_size=1):
        from .data.dataset import SpikeBatches

        batches = SpikeBatches(self.dataset, batch_size, shuffle=True, drop_last=False, rank=rank,
                               world_size=world_size)
        batches.set_epoch(epoch)
        return iter(batches)

    def eval_batches(self, batch_size, rank=0, world_size=1):
        pos = np.arange(rank, len(self), world_size)
        for k in range(0, len(pos), batch_size):
            x, y = self.plain.batch_arrays(pos[k:k + batch_size])
            yield torch.from_numpy(x), torch.from_numpy(y)

    def max_count(self) -> int:
        m = 0
        for x, _ in self.eval_batches(1024):
            m = max(m, int(x.max()) if x.numel() else 0)
        return m


def parse_synthetic(spec: str) -> tuple[DelayTask, dict]:
    """``synthetic[:key=value,...]`` -> (task, sample counts)."""
    _, _, rest = spec.partition(":")
    counts = {"train": 1024, "valid": 256, "test": 512}
    kw: dict = {}
    fields_ = DelayTask.__dataclass_fields__
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, val = item.partition("=")
        key = key.strip().replace("-", "_")
        if not eq:
            raise DataError(f"synthetic data: expected key=value, got {item!r}")
        if key in counts:
            counts[key] = int(val)
        elif key in fields_:
            kw[key] = float(val) if key == "noise_rate" else int(val)
        else:
            raise DataError(f"synthetic data: unknown key {key!r} (known: {', '.join([*counts, *fields_])})")
    return DelayTask(**kw), counts


def load_data(source: str, dt: float = 0.01, max_time: float = 1.0, channel_group: int = 1,
              valid_fraction: float = 0.1, seed: int = 0, augment: "Augment | None" = None,
              max_train: int | None = None, progress: bool = False) -> DataBundle:
    """Load ``source`` (see the module docstring) into a :class:`DataBundle` with ``train``,
    ``valid`` and ``test`` splits. ``augment``: a :class:`crsnn.train.data.augment.Augment` for the
    training split of spike files (None or a disabled one: none). ``max_train``: keep only the
    first N training samples (quick runs). Raises :class:`DataError` with a one-line message."""
    if source == "synthetic" or source.startswith("synthetic:"):
        task, counts = parse_synthetic(source)
        try:
            raw = task.splits(counts["train"], counts["valid"], counts["test"], seed=seed)
        except ValueError as e:
            raise DataError(f"synthetic data: {e}") from None
        if max_train:
            raw["train"] = (raw["train"][0][:max_train], raw["train"][1][:max_train])
        splits = {k: ArraySplit(x, y, k, seed) for k, (x, y) in raw.items()}
        return DataBundle(splits, task.n_channels, task.n_classes, task.n_steps, dt,
                          [f"gap {g}" for g in task.gaps], {"kind": "synthetic", **task.to_dict(), **counts})
    try:
        from .data.layout import SpikeFileError
        from .data.shd import load_splits
    except ImportError as e:  # the data package is being written elsewhere
        raise DataError(f"crsnn.train.data is not importable ({e})") from None
    try:
        subsets = load_splits(source, dt=dt, max_duration=max_time, channel_group=channel_group,
                              valid_fraction=valid_fraction, seed=seed, progress=progress)
    except (SpikeFileError, OSError, ValueError) as e:
        raise DataError(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
    missing = [s for s in ("train", "valid", "test") if s not in subsets]
    if missing:
        raise DataError(f"{source}: no {'/'.join(missing)} split found (found {', '.join(subsets) or 'none'}); "
                        "give a directory with train and test files")
    augment = augment if augment is not None and augment.enabled else None
    train_sub = subsets["train"]
    if max_train and max_train < len(train_sub):
        train_sub = type(train_sub)(train_sub.data, train_sub.indices[:max_train], train_sub.name)
    splits = {"train": SpikeSplit(train_sub, "train", seed, augment),
              "valid": SpikeSplit(subsets["valid"], "valid", seed),
              "test": SpikeSplit(subsets["test"], "test", seed)}
    first = subsets["test"]
    return DataBundle(splits, int(first.n_inputs), len(first.class_names), int(first.n_steps), float(dt),
                      list(first.class_names),
                      {"kind": "spike-files", "path": str(source), "dt": dt, "max_time": max_time,
                       "channel_group": channel_group, "valid_fraction": valid_fraction})


def load_test_data(source: str, dt: float = 0.01, max_time: float = 1.0, channel_group: int = 1,
                   seed: int = 0, progress: bool = False) -> DataBundle:
    """Only the test split of ``source``, for evaluation: a single file is the test set, a
    folder uses its test file (:func:`crsnn.train.data.shd.test_file_of`), nothing else is read
    -- a missing or broken training file does not matter. ``synthetic[:...]`` generates its test
    split. The bundle has one split, ``test``. Raises :class:`DataError` (one line)."""
    if source == "synthetic" or source.startswith("synthetic:"):
        bundle = load_data(source, dt=dt, max_time=max_time, channel_group=channel_group, seed=seed)
        bundle.splits = {"test": bundle.splits["test"]}
        return bundle
    from .data.layout import SpikeFileError
    from .data.shd import load_test_split

    try:
        sub = load_test_split(source, dt=dt, max_duration=max_time, channel_group=channel_group, progress=progress)
    except (SpikeFileError, OSError, ValueError) as e:
        raise DataError(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
    return DataBundle({"test": SpikeSplit(sub, "test", seed)}, int(sub.n_inputs), len(sub.class_names),
                      int(sub.n_steps), float(dt), list(sub.class_names),
                      {"kind": "spike-files", "path": str(sub.data.header.path), "dt": dt, "max_time": max_time,
                       "channel_group": channel_group})


def data_files(source: str) -> list[Path]:
    """The files a data ``source`` may read (nothing is opened): the split files of a folder, the
    file itself, none for ``synthetic``. Commands pass them to
    :func:`crsnn.atomic_write.check_writable` so that no output replaces its own data; a source
    that is not usable yields what it names and is reported when it is loaded."""
    if source == "synthetic" or source.startswith("synthetic:"):
        return []
    path = Path(source)
    if not path.is_dir():
        return [path]
    from .data.layout import SpikeFileError
    from .data.shd import find_split_files

    found: list[Path] = []
    for dataset in ("shd", "ssc", ""):  # every data set of the folder, even when it holds several
        try:
            found += find_split_files(path, dataset).values()
        except SpikeFileError:
            pass
    return found


def message_bits_for(max_count: int) -> int:
    """Input message bits for counts up to ``max_count``: 0 (binary spikes) for <= 1, else
    ``ceil(log2(max_count + 1))``, at most 8."""
    if max_count <= 1:
        return 0
    return int(min(8, math.ceil(math.log2(max_count + 1))))
