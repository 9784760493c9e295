"""Loaders for files in SHD's HDF5 layout, written here directly with h5py (not with the project's
own writer): variable-length float16 times in seconds, uint16 units, labels, extra/keys as bytes,
extra/speaker."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from crsnn.train.data import (
    Augment,
    bin_events,
    find_split_files,
    load_binned,
    load_splits,
    n_steps_for,
    read_header,
    stratified_split,
)
from crsnn.train.data.augment import blend, shift_channels
from crsnn.train.data.dataset import SpikeBatches, SpikeDataset, collate, shard_indices

KEYS = [b"zero", b"one", b"null"]


def write_shd(path: Path, samples: list[tuple[list[float], list[int]]], labels, speakers=None,
              keys=KEYS) -> Path:
    """A file in the official SHD layout and dtypes."""
    with h5py.File(path, "w") as f:
        t = f.create_dataset("spikes/times", (len(samples),), dtype=h5py.vlen_dtype(np.float16))
        u = f.create_dataset("spikes/units", (len(samples),), dtype=h5py.vlen_dtype(np.uint16))
        for i, (ti, ui) in enumerate(samples):
            t[i] = np.asarray(ti, dtype=np.float16)
            u[i] = np.asarray(ui, dtype=np.uint16)
        f.create_dataset("labels", data=np.asarray(labels, dtype=np.uint16))
        f.create_dataset("extra/keys", data=np.asarray(keys))
        if speakers is not None:
            f.create_dataset("extra/speaker", data=np.asarray(speakers, dtype=np.uint16))
        f.create_dataset("extra/meta_info/gender", data=np.asarray([b"female", b"male"]))
    return path


@pytest.fixture
def small(tmp_path: Path) -> Path:
    samples = [
        ([0.0049, 0.0051, 0.0125], [3, 4, 699]),    # bins 0, 1, 2; groups of 5: 0, 0, 139
        ([0.001, 0.002, 0.0031], [10, 10, 12]),     # three spikes in bin 0
        ([0.0099, 0.031, 0.5], [0, 1, 2]),          # 0.5 s lies beyond a 0.02 s window
        ([], []),                                    # an empty sample
    ]
    return write_shd(tmp_path / "shd_train.h5", samples, labels=[0, 1, 2, 1], speakers=[0, 1, 0, 1])


def test_header_reads_names_from_keys_and_casts(small: Path) -> None:
    h = read_header(small)
    assert h.class_names == ["zero", "one", "null"]
    assert h.labels.dtype == np.int64 and h.labels.tolist() == [0, 1, 2, 1]
    assert h.speakers.dtype == np.int64 and h.speakers.tolist() == [0, 1, 0, 1]
    assert h.n_samples == 4 and h.times_dtype == "float16"


def test_binning_by_hand(small: Path) -> None:
    d = load_binned(small, dt=0.005, max_duration=0.02, channel_group=1)
    assert d.n_steps == 4 and d.n_inputs == 700 and d.is_dense
    x = d.samples([0, 1, 2, 3])
    assert x.dtype == np.uint8 and x.shape == (4, 4, 700)
    # sample 0: 0.0049 s -> bin 0, 0.0051 s -> bin 1, 0.0125 s -> bin 2
    assert x[0, 0, 3] == 1 and x[0, 1, 4] == 1 and x[0, 2, 699] == 1 and x[0].sum() == 3
    assert x[1, 0, 10] == 2 and x[1, 0, 12] == 1 and x[1].sum() == 3
    # sample 2: 0.0099 s -> bin 1; 0.031 and 0.5 s are beyond T*dt = 0.02 s and dropped
    assert x[2, 1, 0] == 1 and x[2].sum() == 1
    assert x[3].sum() == 0
    assert d.spike_counts.tolist() == [3, 3, 3, 0]
    assert d.lengths.tolist() == [3, 1, 4, 0]  # steps up to the last spike, capped at T


def test_channel_grouping_sums_groups_of_five(small: Path) -> None:
    d = load_binned(small, dt=0.005, max_duration=0.02, channel_group=5)
    assert d.n_inputs == 140
    x = d.sample(0)
    assert x.shape == (4, 140)
    assert x[0, 0] == 1 and x[1, 0] == 1 and x[2, 139] == 1  # channels 3, 4 -> 0; 699 -> 139
    y = d.sample(1)
    assert y[0, 2] == 3  # channels 10, 10, 12 -> group 2
    # a factor that does not divide 700 gives a partial last group
    assert load_binned(small, dt=0.005, max_duration=0.02, channel_group=3).n_inputs == 234


def test_max_duration_sets_steps_and_truncates(small: Path) -> None:
    assert n_steps_for(1.0, 0.01) == 100 and n_steps_for(1.4, 1.4 / 250) == 250
    full = load_binned(small, dt=0.01, max_duration=1.0)
    assert full.n_steps == 100
    assert full.sample(2)[50, 2] == 1  # 0.5 s -> step 50 (float16 0.5 is exact)
    short = load_binned(small, dt=0.01, max_duration=0.04)
    assert short.sample(2).sum() == 2  # 0.0099 and 0.031 kept, 0.5 dropped


def test_counts_saturate_at_uint8_cap(tmp_path: Path) -> None:
    n = 300
    path = write_shd(tmp_path / "sat.h5", [([0.001] * n, [7] * n)], labels=[0])
    x = load_binned(path, dt=0.01, max_duration=0.01).sample(0)
    assert x[0, 7] == 255 and x.sum() == 255
    direct = bin_events(np.full(n, 0.001), np.full(n, 7), dt=0.01, n_steps=1, n_channels=700)
    assert direct[0, 7] == 255


def test_lazy_mode_equals_dense(small: Path) -> None:
    dense = load_binned(small, dt=0.005, max_duration=0.05, channel_group=5, cache="dense")
    lazy = load_binned(small, dt=0.005, max_duration=0.05, channel_group=5, max_cache_bytes=10)
    assert dense.is_dense and not lazy.is_dense
    np.testing.assert_array_equal(dense.samples([3, 0, 2, 1]), lazy.samples([3, 0, 2, 1]))


def _many(tmp_path: Path, name: str, per_class: int = 10, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    samples, labels = [], []
    for c in range(3):
        for _ in range(per_class):
            k = int(rng.integers(5, 40))
            t = np.sort(rng.uniform(0.0, 0.09, k))
            samples.append((t, rng.integers(c * 200, c * 200 + 100, k)))
            labels.append(c)
    return write_shd(tmp_path / name, samples, labels, speakers=[i % 4 for i in range(len(labels))])


def test_official_shd_splits_and_stratified_valid(tmp_path: Path) -> None:
    _many(tmp_path, "shd_train.h5", per_class=10)
    _many(tmp_path, "shd_test.h5", per_class=4, seed=1)
    a = load_splits(tmp_path, dt=0.01, max_duration=0.1, valid_fraction=0.2, seed=3)
    assert list(a) == ["train", "valid", "test"]
    assert len(a["test"]) == 12
    tr, va = a["train"].indices, a["valid"].indices
    assert np.intersect1d(tr, va).size == 0 and tr.size + va.size == 30
    assert np.bincount(a["valid"].labels).tolist() == [2, 2, 2]  # 20 % of each class
    b = load_splits(tmp_path, dt=0.01, max_duration=0.1, valid_fraction=0.2, seed=3)
    np.testing.assert_array_equal(va, b["valid"].indices)  # deterministic for a seed
    c = load_splits(tmp_path, dt=0.01, max_duration=0.1, valid_fraction=0.2, seed=4)
    assert not np.array_equal(va, c["valid"].indices)
    assert "valid" not in load_splits(tmp_path, dt=0.01, max_duration=0.1, valid_fraction=0)


def test_stratified_split_properties() -> None:
    labels = np.repeat(np.arange(5), [10, 20, 30, 1, 0])
    keep, held = stratified_split(labels, 0.1, seed=0)
    assert np.union1d(keep, held).tolist() == list(range(labels.size))
    assert np.intersect1d(keep, held).size == 0
    assert np.bincount(labels[held], minlength=4).tolist() == [1, 2, 3, 0]


def test_ssc_uses_its_valid_file(tmp_path: Path) -> None:
    for split, n in (("train", 6), ("valid", 2), ("test", 3)):
        _many(tmp_path, f"ssc_{split}.h5", per_class=n)
    files = find_split_files(tmp_path)
    assert set(files) == {"train", "valid", "test"}
    s = load_splits(tmp_path, dt=0.01, max_duration=0.1, valid_fraction=0.5)
    assert [len(s[k]) for k in ("train", "valid", "test")] == [18, 6, 9]


def test_single_file_and_ambiguous_directory(tmp_path: Path) -> None:
    f = _many(tmp_path, "shd_test.h5", per_class=2)
    assert find_split_files(f) == {"test": f}
    _many(tmp_path, "ssc_test.h5", per_class=2)
    with pytest.raises(ValueError, match="several data sets"):
        find_split_files(tmp_path)
    assert find_split_files(tmp_path, dataset="ssc") == {"test": tmp_path / "ssc_test.h5"}


def test_time_shift_preserves_counts_and_shape() -> None:
    rng = np.random.default_rng(0)
    x = np.zeros((30, 8), dtype=np.uint8)
    x[10:20] = rng.integers(0, 4, (10, 8))  # margin of 10 steps on both sides
    shifts = rng.integers(-10, 11, 8)
    y = shift_channels(x, shifts)
    np.testing.assert_array_equal(y.sum(axis=0), x.sum(axis=0))  # per-channel counts kept
    for c in range(8):
        np.testing.assert_array_equal(np.roll(x[:, c], shifts[c]), y[:, c])
    aug = Augment(max_shift=10)(x, np.random.default_rng(1))
    np.testing.assert_array_equal(aug.sum(axis=0), x.sum(axis=0))
    assert aug.dtype == np.uint8 and aug.shape == x.shape
    # shifting past the end drops those spikes
    edge = np.zeros((5, 1), dtype=np.uint8)
    edge[4, 0] = 3
    assert shift_channels(edge, np.array([1])).sum() == 0


def test_blend_keeps_the_expected_count() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 6, (40, 20)).astype(np.uint8)
    z = rng.integers(0, 6, (40, 20)).astype(np.uint8)
    m = blend(x, z, np.random.default_rng(2), weight=0.5, align=False)
    expect = 0.5 * (int(x.sum()) + int(z.sum()))
    assert abs(int(m.sum()) - expect) < 4 * np.sqrt(expect)
    np.testing.assert_array_equal(blend(x, z, np.random.default_rng(2), weight=1.0), x)


def test_dataset_batches_shuffle_augment_and_shard(tmp_path: Path) -> None:
    _many(tmp_path, "shd_train.h5", per_class=10)
    _many(tmp_path, "shd_test.h5", per_class=2, seed=1)
    s = load_splits(tmp_path, dt=0.01, max_duration=0.1, channel_group=5, valid_fraction=0.2)
    ds = SpikeDataset(s["train"], augment=Augment(max_shift=2, mix_prob=0.5), seed=7)
    x, y = ds[0]
    assert x.dtype == torch.uint8 and x.shape == (10, 140) and isinstance(y, int)
    loader = SpikeBatches(ds, batch_size=5, shuffle=True)
    loader.set_epoch(0)
    batches = list(loader)
    assert len(batches) == len(loader) == 5
    xb, yb = batches[0]
    assert xb.shape == (5, 10, 140) and xb.dtype == torch.uint8 and yb.dtype == torch.int64
    assert sorted(torch.cat([b[1] for b in batches]).tolist()) == sorted(s["train"].labels.tolist())
    again = list(loader)  # same epoch and seed: same batches, augmentation included
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again))
    loader.set_epoch(1)
    assert not torch.equal(torch.cat([b[1] for b in batches]), torch.cat([b[1] for b in loader]))
    # augmentation does not depend on the batch size
    one = SpikeBatches(ds, batch_size=1, shuffle=True)
    one.set_epoch(0)
    np.testing.assert_array_equal(torch.cat([b[0] for b in one]).numpy(),
                                  torch.cat([b[0] for b in batches]).numpy())
    # DDP: two ranks cover every sample, each with the same number of batches
    shards = [SpikeBatches(SpikeDataset(s["train"], seed=7), 4, rank=r, world_size=2) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1])
    p0, p1 = (shard_indices(24, 0, 7, True, r, 2) for r in (0, 1))
    assert np.intersect1d(p0, p1).size == 0 and np.union1d(p0, p1).size == 24
    p = [shard_indices(7, 0, 0, True, r, 3) for r in range(3)]
    assert {len(q) for q in p} == {3} and np.union1d(np.union1d(p[0], p[1]), p[2]).size == 7


def test_collate_pads_in_time() -> None:
    a = torch.ones((3, 4), dtype=torch.uint8)
    b = torch.ones((5, 4), dtype=torch.uint8)
    x, y = collate([(a, 1), (b, 2)])
    assert x.shape == (2, 5, 4) and x[0, 3:].sum() == 0 and x[1].sum() == 20
    assert y.tolist() == [1, 2]
