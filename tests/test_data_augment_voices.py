"""Augmentations for unseen voices: channel shift, time stretch and background spikes on binned
counts ``(T, G)``."""

from __future__ import annotations

import numpy as np
import pytest

from crsnn.train.data.augment import Augment, shift_inputs, stretch_time


def _counts(seed=0, T=40, G=12):
    return np.random.default_rng(seed).integers(0, 3, size=(T, G)).astype(np.uint8)


@pytest.mark.parametrize("k", [-3, -1, 0, 2, 11, 12, 20])
def test_channel_shift_moves_every_input_by_k(k):
    x = _counts()
    y = shift_inputs(x, k)
    G = x.shape[1]
    for c in range(G):
        src = c - k
        expect = x[:, src] if 0 <= src < G else np.zeros(x.shape[0], np.uint8)
        assert np.array_equal(y[:, c], expect)
    assert y.dtype == x.dtype and y.shape == x.shape


def test_stretch_moves_counts_in_time_and_keeps_them():
    x = _counts(1)
    assert np.array_equal(stretch_time(x, 1.0), x)
    slow = stretch_time(x, 0.8)  # faster speech: everything earlier, counts merge, none lost
    assert slow.sum() == x.sum()
    assert np.array_equal(slow[0], x[0] + x[1])  # floor(0.8) = 0: steps 0 and 1 land together
    y = np.zeros_like(x)
    y[10, 3] = 2
    assert stretch_time(y, 1.25)[12, 3] == 2  # floor(10 * 1.25) = 12
    assert stretch_time(y, 0.75)[7, 3] == 2
    long = stretch_time(x, 1.2)  # slower: the tail runs past T and is dropped
    kept = x[np.floor(np.arange(x.shape[0]) * 1.2) < x.shape[0]].sum()
    assert long.sum() == kept


def test_stretch_saturates_at_the_uint8_range():
    x = np.full((10, 1), 200, np.uint8)
    assert stretch_time(x, 0.5).max() == 255


def test_background_spikes_have_the_requested_rate_and_are_seeded():
    x = np.zeros((200, 100), np.uint8)
    aug = Augment(noise=0.02)
    y = aug(x, np.random.default_rng(5))
    assert abs(y.mean() - 0.02) < 0.004 and y.max() == 1
    assert np.array_equal(y, aug(x, np.random.default_rng(5)))
    assert not np.array_equal(y, aug(x, np.random.default_rng(6)))


def test_all_augmentations_together_keep_shape_dtype_and_input():
    x = _counts(2)
    before = x.copy()
    aug = Augment(max_shift=1, channel_shift=2, stretch=0.1, noise=0.01)
    assert aug.enabled
    y = aug(x, np.random.default_rng(0))
    assert y.shape == x.shape and y.dtype == np.uint8
    assert np.array_equal(x, before)  # the stored sample is never modified


@pytest.mark.parametrize("kw", [{"channel_shift": -1}, {"stretch": 1.0}, {"stretch": -0.1}, {"noise": 1.5}])
def test_bad_settings_are_refused(kw):
    with pytest.raises(ValueError):
        Augment(**kw)


def test_spectral_tilt_thins_one_end_and_keeps_the_other():
    from crsnn.train.data.augment import tilt_spectrum

    x = np.full((400, 20), 10, np.uint8)
    y = tilt_spectrum(x, np.log(4.0), np.random.default_rng(0))  # slope > 0: the high inputs are kept
    assert np.array_equal(y[:, -1], x[:, -1])
    assert abs(y[:, 0].mean() / 10 - 0.25) < 0.02  # the other end keeps 1/4
    assert np.all(np.diff(y.mean(axis=0)) > -0.15)  # monotone up to sampling noise
    y = tilt_spectrum(x, -np.log(4.0), np.random.default_rng(0))
    assert np.array_equal(y[:, 0], x[:, 0]) and abs(y[:, -1].mean() / 10 - 0.25) < 0.02
    assert np.array_equal(tilt_spectrum(x, 0.0, np.random.default_rng(0)), x)


def test_frequency_mask_silences_one_band_only():
    from crsnn.train.data.augment import mask_inputs

    x = np.ones((5, 30), np.uint8)
    y = mask_inputs(x, 7, np.random.default_rng(3))
    silent = np.flatnonzero(y.sum(axis=0) == 0)
    assert silent.size == 7 and np.all(np.diff(silent) == 1)
    assert np.all(y[:, np.setdiff1d(np.arange(30), silent)] == 1)
    assert mask_inputs(x, 0, np.random.default_rng(3)) is x
    assert mask_inputs(x, 99, np.random.default_rng(3)).sum() == 0


@pytest.mark.parametrize("kw", [{"tilt": 0.5}, {"freq_mask": -1}])
def test_bad_tilt_and_mask_are_refused(kw):
    with pytest.raises(ValueError):
        Augment(**kw)


def test_training_options_reach_the_training_split_only(tmp_path):
    from crsnn.train.data.layout import write_spike_file
    from crsnn.train.datasets import load_data

    rng = np.random.default_rng(0)
    for part, n in (("train", 40), ("test", 10)):
        times = [np.sort(rng.uniform(0, 0.3, 50)) for _ in range(n)]
        units = [rng.integers(0, 700, 50) for _ in range(n)]
        write_spike_file(tmp_path / f"{part}.h5", times, units, np.arange(n) % 2, ["a", "b"])
    data = load_data(str(tmp_path), max_time=0.3, channel_group=10,
                     augment=Augment(channel_shift=2, stretch=0.1, noise=0.01, tilt=3.0, freq_mask=4))
    aug = data["train"].dataset.augment
    assert (aug.channel_shift, aug.stretch, aug.noise, aug.tilt, aug.freq_mask) == (2, 0.1, 0.01, 3.0, 4)
    assert data["valid"].dataset.augment is None and data["test"].dataset.augment is None
    assert load_data(str(tmp_path), max_time=0.3, channel_group=10)["train"].dataset.augment is None
    assert load_data(str(tmp_path), max_time=0.3, channel_group=10, augment=Augment())["train"].dataset.augment is None
