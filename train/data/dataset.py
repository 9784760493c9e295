"""PyTorch access to binned spike data: a map-style ``Dataset`` and a fast batch iterator.

Batches are ``(x, y)``: ``x`` uint8 counts of shape ``(batch, T, G)`` (time steps x inputs;
convert with ``x.float()``), ``y`` int64 labels of shape ``(batch,)``. Every sample is already
zero-padded / truncated to the same ``T`` when binned, so collation is stacking.

Shuffling and augmentation are seeded: the order of an epoch comes from ``(seed, epoch)`` and
the augmentation of a sample from ``(seed, epoch, position)``, so they do not depend on the
batch size, worker processes or rank. Distributed training: give each rank ``rank`` and
``world_size`` (no global state is read); each rank sees ``ceil(n / world_size)`` samples of the
same permutation (the last few repeated, as ``torch.utils.data.DistributedSampler`` does), so
all ranks run the same number of steps. Call ``set_epoch(epoch)`` before each epoch.
"""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np
import torch

from .augment import Augment
from .shd import SpikeSubset


def shard_indices(
    n: int,
    epoch: int = 0,
    seed: int = 0,
    shuffle: bool = True,
    rank: int = 0,
    world_size: int = 1,
) -> np.ndarray:
    """Positions ``0..n-1`` this rank visits in ``epoch`` (int64, length ``ceil(n/world_size)``)."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in 0..world_size-1, got rank={rank}, world_size={world_size}")
    order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)
    if world_size > 1 and n > 0:
        pad = (-n) % world_size
        order = np.concatenate([order, np.resize(order, pad)])
    return order[rank::world_size].astype(np.int64)


class SpikeDataset(torch.utils.data.Dataset):
    """Map-style dataset over a :class:`~crsnn.train.data.shd.SpikeSubset`.

    ``ds[i]`` is ``(x, label)`` with ``x`` a uint8 tensor ``(T, G)``. With ``augment`` set, the
    sample is augmented with a generator seeded by ``(seed, epoch, i)``; call
    :meth:`set_epoch` each epoch (with a ``DataLoader``, keep ``persistent_workers=False`` so that
    the workers of each epoch copy the current epoch).
    """

    def __init__(self, subset: SpikeSubset, augment: Augment | None = None, seed: int = 0):
        self.subset = subset
        self.augment = augment if augment is not None and augment.enabled else None
        self.seed = int(seed)
        self.epoch = 0
        labels = subset.labels
        self._by_class = {int(c): np.flatnonzero(labels == c) for c in np.unique(labels)}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.subset)

    @property
    def labels(self) -> np.ndarray:
        return self.subset.labels

    def _augment(self, x: np.ndarray, pos: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.epoch, pos, 1])
        label = int(self.subset.labels[pos])

        def partner(r: np.random.Generator) -> np.ndarray:
            same = self._by_class[label]
            return self.subset.data.sample(int(self.subset.indices[same[r.integers(same.size)]]))

        return self.augment(x, rng, partner)

    def batch_arrays(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Samples at ``positions`` (into this dataset): uint8 ``(B, T, G)``, int64 ``(B,)``."""
        positions = np.asarray(positions, dtype=np.int64)
        x = self.subset.data.samples(self.subset.indices[positions])
        if self.augment is not None:
            for k, pos in enumerate(positions):
                x[k] = self._augment(x[k], int(pos))
        return x, self.subset.labels[positions]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i = i % len(self)
        x, y = self.batch_arrays(np.array([i]))
        return torch.from_numpy(x[0]), int(y[0])


def collate(batch: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack ``(x, label)`` pairs into ``x`` uint8 ``(B, T, G)`` and ``y`` int64 ``(B,)``;
    samples shorter than the longest are zero-padded at the end (in time)."""
    T = max(x.shape[0] for x, _ in batch)
    G = batch[0][0].shape[1]
    x = torch.zeros((len(batch), T, G), dtype=batch[0][0].dtype)
    for k, (xi, _) in enumerate(batch):
        x[k, : xi.shape[0]] = xi
    return x, torch.tensor([int(y) for _, y in batch], dtype=torch.int64)


class SpikeBatches:
    """Iterable over batches of a :class:`SpikeDataset`, without worker processes.

    Args:
        dataset: the data (with its augmentation and seed).
        batch_size: samples per batch (per rank).
        shuffle: new permutation each epoch (seeded by ``(dataset.seed, epoch)``).
        drop_last: drop the last incomplete batch of this rank.
        rank, world_size: shard for distributed training (see the module docstring).
        device: move batches there (``non_blocking``); None keeps them on the CPU.
    """

    def __init__(
        self,
        dataset: SpikeDataset,
        batch_size: int,
        shuffle: bool = True,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        device: torch.device | str | None = None,
    ):
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.device = device
        shard_indices(0, rank=self.rank, world_size=self.world_size)  # validates rank

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (permutation and augmentation); it is stored on the dataset."""
        self.dataset.set_epoch(epoch)

    @property
    def epoch(self) -> int:
        return self.dataset.epoch

    def _positions(self) -> np.ndarray:
        return shard_indices(len(self.dataset), self.dataset.epoch, self.dataset.seed, self.shuffle,
                             self.rank, self.world_size)

    def __len__(self) -> int:
        n = len(self._positions())
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        pos = self._positions()
        for k in range(len(self)):
            x, y = self.dataset.batch_arrays(pos[k * self.batch_size:(k + 1) * self.batch_size])
            xt, yt = torch.from_numpy(x), torch.from_numpy(y)
            if self.device is not None:
                xt = xt.to(self.device, non_blocking=True)
                yt = yt.to(self.device, non_blocking=True)
            yield xt, yt
