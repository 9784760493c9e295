"""The cochlea-like front end: frequency map, tonotopy, stability, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from crsnn.train.data.cochlea import (
    CochleaParams,
    best_frequencies,
    channel_for_frequency,
    encode,
    gammatone_sos,
)


def test_frequency_map_is_shd_like() -> None:
    cf = best_frequencies()
    assert cf.shape == (700,)
    assert np.all(np.diff(cf) < 0)  # channel 0 is the high-frequency end
    assert cf[0] == pytest.approx(20600.0)
    assert cf[280] == pytest.approx(20600.0 * np.exp(-0.00757 * 280))
    assert channel_for_frequency(20600.0 * np.exp(-0.00757 * 400)) == pytest.approx(400)
    clamped = best_frequencies(CochleaParams(cf_min_hz=150.0))
    assert clamped.min() == pytest.approx(150.0)


@pytest.mark.parametrize("cf,fs", [(45.0, 6000.0), (100.0, 48000.0), (20600.0, 48000.0)])
def test_gammatone_is_stable_with_unit_gain(cf: float, fs: float) -> None:
    sos = gammatone_sos(cf, fs)
    poles = np.concatenate([np.roots(s[3:]) for s in sos])
    assert np.all(np.abs(poles) < 1.0)
    _, h = signal.sosfreqz(sos, worN=[cf, cf * 2], fs=fs)
    assert abs(h[0]) == pytest.approx(1.0, rel=1e-6) and abs(h[1]) < 0.5


@pytest.mark.parametrize("freq", [300.0, 1500.0, 6000.0])
def test_pure_tone_excites_the_channels_of_its_frequency(freq: float) -> None:
    fs = 48000.0
    t = np.arange(int(0.3 * fs)) / fs
    tone = np.sin(2 * np.pi * freq * t)
    times, units = encode(tone, fs, seed=0)
    assert times.dtype == np.float64 and units.dtype == np.int64 and times.size > 100
    assert np.all(np.diff(times) >= 0) and units.min() >= 0 and units.max() < 700
    counts = np.bincount(units, minlength=700).astype(float)
    smooth = np.convolve(counts, np.ones(9) / 9, mode="same")
    expected = channel_for_frequency(freq)
    assert abs(int(np.argmax(smooth)) - expected) < 25
    # most spikes lie near the expected place, none near the other end of the map
    near = counts[max(0, int(expected) - 60): int(expected) + 60].sum()
    assert near > 0.8 * counts.sum()


def test_higher_tone_lower_channel() -> None:
    fs = 48000.0
    t = np.arange(int(0.2 * fs)) / fs
    peaks = []
    for f in (500.0, 1000.0, 4000.0):
        _, u = encode(np.sin(2 * np.pi * f * t), fs, seed=1)
        peaks.append(np.median(u))
    assert peaks[0] > peaks[1] > peaks[2]


def test_encode_is_deterministic_and_silence_is_silent() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(8000) * np.hanning(8000)
    a = encode(x, 16000.0, seed=5)
    b = encode(x, 16000.0, seed=5)
    c = encode(x, 16000.0, seed=6)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[0].size != c[0].size or not np.array_equal(a[0], c[0])
    t, u = encode(np.zeros(4000), 16000.0, seed=0)
    assert t.size == 0 and u.size == 0


@pytest.mark.parametrize("freq", [300.0, 1500.0, 3500.0])
def test_tone_at_8khz_excites_the_place_it_does_at_48khz(freq: float) -> None:
    """A recording below 48 kHz is filtered from its own rate: the same tone, the same place."""
    medians = []
    for fs in (8000.0, 48000.0):
        t = np.arange(int(0.25 * fs)) / fs
        _, u = encode(np.sin(2 * np.pi * freq * t) * np.hanning(t.size), fs, seed=0)
        medians.append(np.median(u))
    assert abs(medians[0] - medians[1]) <= 2
    assert abs(medians[0] - channel_for_frequency(freq)) < 25
