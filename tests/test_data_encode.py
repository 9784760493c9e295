"""``crsnn-data encode``: the batched cochlea against a per-channel reference, determinism,
file-name labels and speakers, the speaker-disjoint split and its errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import signal
from scipy.io import wavfile

from crsnn.train.data import find_split_files, load_splits, read_header
from crsnn.train.data.cli import main
from crsnn.train.data.cochlea import (
    CochleaParams,
    SparseRates,
    _bank,
    _gamma_sums,
    _one_pole_at,
    active_rms,
    best_frequencies,
    channel_for_frequency,
    encode,
    envelopes,
    equalize_rates,
    firing_rates,
    first_in_band,
    gammatone_sos,
    in_band_gain,
    lfilter_blocked,
    normalise,
    renewal_spikes,
    resample,
    sparse_rates,
    speech_bounds,
)
from crsnn.train.data.encode import find_wavs, sort_names
from crsnn.train.data.layout import iter_spikes

P = CochleaParams()


# -- the slow per-channel reference (the front end before it was batched) --------------------------
def reference_envelopes(x: np.ndarray, params: CochleaParams = P) -> np.ndarray:
    """One float64 ``sosfilt`` per channel at its tier's rate: float64 ``(C, n_env)``."""
    dec = int(round(params.fs_hz / params.env_fs_hz))
    n_env = -(-x.size // dec)
    out = np.zeros((params.n_channels, n_env))
    cf = best_frequencies(params)
    versions = {0: np.asarray(x, dtype=np.float64)}
    for tier in _bank(params):
        for j in range(1, tier.k + 1):
            versions.setdefault(j, signal.resample_poly(versions.get(j - 1), 1, 2))
        xk = versions[tier.k]
        rate = params.fs_hz / 2 ** tier.k
        for c in range(tier.start, tier.stop):
            y = np.maximum(signal.sosfilt(gammatone_sos(float(cf[c]), rate), xk), 0.0)
            y = np.concatenate([y, np.zeros((-y.size) % tier.step)]).reshape(-1, tier.step).mean(axis=1)
            out[c, : min(n_env, y.size)] = y[:n_env]
    lp = signal.butter(2, params.lowpass_hz, fs=params.env_fs_hz, output="sos")
    return signal.sosfilt(lp, out, axis=1)


def reference_rates(env: np.ndarray, params: CochleaParams = P) -> np.ndarray:
    """Dense float64 rates with ``lfilter`` for the adaptation."""
    d = np.maximum((np.maximum(env, 0) / params.reference) ** params.compress_power - 1, 0)
    a = math.exp(-1.0 / (params.adapt_tau_s * params.env_fs_hz))
    d = d / (1 + params.adapt_strength * signal.lfilter([1 - a], [1, -a], d, axis=1))
    return params.rate_cap_hz * np.tanh(params.gain_hz * d / params.rate_cap_hz)


def reference_spikes(rates: np.ndarray, fs: float, rng: np.random.Generator, shape: float = 2.0):
    """The renewal process one channel at a time (draws in channel order)."""
    lam = np.cumsum(rates, axis=1, dtype=np.float64) / fs
    ts, us = [], []
    for c in range(rates.shape[0]):
        total = lam[c, -1]
        if total <= 0:
            continue
        k = int(total + 4 * math.sqrt(total / min(shape, 1.0)) + 4)
        s = np.cumsum(rng.gamma(shape, 1.0 / shape, size=k))
        assert s[-1] >= total  # the top-up order differs from the batched version; not exercised here
        s = s[s < total]
        j = np.searchsorted(lam[c], s, side="right")
        start = np.where(j > 0, lam[c, np.maximum(j - 1, 0)], 0.0)
        ts.append((j + (s - start) / (lam[c, j] - start)) / fs)
        us.append(np.full(s.size, c))
    t, u = np.concatenate(ts), np.concatenate(us)
    order = np.lexsort((u, t))
    return t[order], u[order]


def _chirp(fs: float = 48000.0, seconds: float = 0.25, f0: float = 80.0, f1: float = 12000.0) -> np.ndarray:
    t = np.arange(int(seconds * fs)) / fs
    x = signal.chirp(t, f0, seconds, f1, method="logarithmic") * np.hanning(t.size)
    return x / np.sqrt(np.mean(x ** 2))


# -- the batched front end ----------------------------------------------------------------------
def test_filterbank_matches_the_per_channel_iir() -> None:
    rng = np.random.default_rng(0)
    for x in (_chirp(), rng.standard_normal(3001)):  # 3001: not a multiple of any block or step
        ref = reference_envelopes(x)
        got = envelopes(x)
        assert got.shape == ref.shape and got.dtype == np.float32
        peak = np.abs(ref).max(axis=1)
        assert np.all(np.abs(got - ref).max(axis=1) <= 1e-3 * peak + 1e-6)


@pytest.mark.parametrize("freq", [200.0, 1000.0, 3000.0, 9000.0])
def test_tone_envelope_peaks_at_its_channel(freq: float) -> None:
    t = np.arange(int(0.1 * P.fs_hz)) / P.fs_hz
    env = envelopes(np.sin(2 * np.pi * freq * t))
    level = env[:, env.shape[1] // 2:].mean(axis=1)
    assert abs(int(np.argmax(level)) - channel_for_frequency(freq)) <= 6


@pytest.mark.parametrize("n", [1, 31, 32, 33, 1000])
def test_lfilter_blocked_equals_lfilter(n: int) -> None:
    x = np.random.default_rng(n).random((7, n)).astype(np.float32)
    a1 = math.exp(-1 / 300)
    for b, a in (signal.butter(2, 1000, fs=6000), ([1 - a1], [1, -a1]), ([0.5, 0.2], [1.0])):
        ref = signal.lfilter(b, a, x.astype(np.float64), axis=1)
        got = lfilter_blocked(np.asarray(b), np.asarray(a), x)
        assert got.dtype == np.float32 and got.shape == x.shape
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6 * max(1.0, np.abs(ref).max()))


@pytest.mark.parametrize("n", [32, 64, 3008])
def test_one_pole_at_the_entries_equals_lfilter(n: int) -> None:
    """The adaptation low-pass at the entries, given only the blocks that hold entries (the
    state runs through the empty blocks)."""
    rng = np.random.default_rng(n)
    dense = (rng.random((6, n)) * (rng.random((6, n)) < 0.3)).astype(np.float32)
    dense[2] = 0.0  # a silent channel
    dense[4, n // 2:] = 0.0  # a long decay without input
    dense[:, 32: 96] = 0.0  # empty blocks in every channel
    a = math.exp(-1 / 300)
    blocks = dense.reshape(-1, 32)
    idx = np.flatnonzero(blocks.any(axis=1))
    flat = np.flatnonzero(blocks[idx])
    got = _one_pole_at(a, flat, blocks[idx].reshape(-1)[flat], idx, 6, n // 32)
    ref = signal.lfilter([1 - a], [1, -a], dense.astype(np.float64), axis=1).reshape(-1, 32)[idx].reshape(-1)[flat]
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, ref, rtol=2e-6, atol=1e-7)


def test_rates_match_the_dense_reference() -> None:
    env = envelopes(_chirp())
    got = firing_rates(env)
    ref = reference_rates(env.astype(np.float64))
    assert got.dtype == np.float32 and np.abs(got - ref).max() < 1e-3 * P.rate_cap_hz
    sr = sparse_rates(env)
    np.testing.assert_array_equal(sr.dense(), got)
    np.testing.assert_array_equal(SparseRates.from_dense(got).rate, sr.rate)
    assert 0.05 < sr.rate.size / env.size < 0.9  # most of the array is below the threshold, not all


def test_renewal_spikes_are_the_reference_process() -> None:
    env = envelopes(_chirp())
    rates = firing_rates(env)
    t, u = renewal_spikes(rates, P.env_fs_hz, np.random.default_rng(3), P.isi_shape)
    t_ref, u_ref = reference_spikes(rates.astype(np.float64), P.env_fs_hz, np.random.default_rng(3), P.isi_shape)
    # the same variates in the same order: the same spikes, up to rounding of the running sums
    np.testing.assert_array_equal(u, u_ref)
    np.testing.assert_allclose(t, t_ref, rtol=0, atol=1e-9)
    t2, u2 = renewal_spikes(sparse_rates(env), P.env_fs_hz, np.random.default_rng(3), P.isi_shape)
    np.testing.assert_array_equal(t2, t)
    np.testing.assert_array_equal(u2, u)


def test_gamma_sums_top_up_short_rows() -> None:
    k = np.array([1, 3, 1000])
    total = np.array([50.0, 0.5, 20.0])  # rows 0 and 1 (probably) run short of their total
    s, row = _gamma_sums(np.random.default_rng(0), 2.0, k, total)
    for r in range(3):
        sr = s[row == r]
        assert np.all(np.diff(sr) > 0) and np.all(sr < total[r])
    assert abs((row == 0).sum() - 50) < 25  # mean interval 1: about `total` events


def test_spike_statistics_match_the_reference_front_end() -> None:
    """Old front end (per-channel IIR, dense rates, per-channel renewal) vs the batched one on a
    chirp: same counts per channel within noise, the same place map."""
    x = _chirp(seconds=0.3)
    ref_t, ref_u = reference_spikes(reference_rates(reference_envelopes(x)), P.env_fs_hz,
                                    np.random.default_rng(9), P.isi_shape)
    t, u = encode(x, P.fs_hz, seed=np.random.default_rng(9), level_db=None)
    assert abs(t.size - ref_t.size) <= 0.01 * ref_t.size
    a, b = np.bincount(u, minlength=700), np.bincount(ref_u, minlength=700)
    assert np.abs(a - b).max() <= 3 + 0.05 * b.max()
    assert np.corrcoef(a, b)[0, 1] > 0.999
    assert abs(np.mean(t) - np.mean(ref_t)) < 1e-3


# -- recordings below 48 kHz: filtered from their own rate, nothing above their band ---------------
def _band_limited(kind: str, fs: float = 8000.0, seconds: float = 0.4) -> np.ndarray:
    """Normalised test signals at ``fs`` with a smooth start: white noise (the whole band up to
    fs / 2) or a logarithmic chirp from 100 Hz to 3.9 kHz."""
    t = np.arange(int(seconds * fs)) / fs
    if kind == "noise":
        x = np.random.default_rng(4).standard_normal(t.size)
    else:
        x = signal.chirp(t, 100.0, t[-1], 3900.0, method="logarithmic")
    return normalise(x * np.hanning(t.size))


def test_first_in_band() -> None:
    gain_db = 20 * np.log10(in_band_gain(8000.0))
    first = first_in_band(8000.0)
    cf = best_frequencies()
    # for 8 kHz: the channels above 7.2 kHz (4 ERB above 4 kHz), the whole 48 kHz tier
    assert first == next(t for t in _bank(P) if t.k == 0).stop == 139 and cf[first] < 7200 < cf[first - 1]
    assert gain_db[:first].max() < -48.0 <= gain_db[first] and np.all(gain_db[first:] >= -48.0)
    assert first_in_band(48000.0) == first_in_band(96000.0) == 0
    assert first_in_band(16000.0) < first
    assert first_in_band(8000.0, rms=10.0) < first  # a louder recording reaches further


@pytest.mark.parametrize("kind", ["noise", "chirp"])
def test_band_limited_input_against_the_48khz_reference(kind: str) -> None:
    """An 8 kHz recording, filtered from 8 kHz: the channels beyond its band are exactly 0 and
    fire never; the others keep the envelopes of the front end run at 48 kHz (the recording
    resampled to 48 kHz first, per-channel float64 reference) within 1 % of each channel's
    peak (resamplers straight to each tier's rate instead of 48 kHz and halvings: 0.3-0.5 %
    measured), their expected spike counts within 1 % and the spikes their statistics."""
    fs = 8000.0
    x = _band_limited(kind, fs)
    first = first_in_band(fs, P, active_rms(x))
    got = envelopes(x, P, fs)
    x48 = resample(x, fs, P.fs_hz)
    ref = reference_envelopes(x48)
    assert got.shape == ref.shape and first == 139
    assert not got[:first].any()
    assert ref[:first].max() < 0.2 * P.reference  # computed at 48 kHz they could not fire either
    peak = ref[first:].max(axis=1)
    firing = peak > P.reference
    assert firing.sum() > 50
    err = np.abs(got[first:] - ref[first:]).max(axis=1)
    assert np.all(err[firing] <= 1e-2 * peak[firing])
    assert np.abs(got - ref).max() <= 1e-2 * ref.max()
    expected = firing_rates(got).sum(axis=1) / P.env_fs_hz  # expected spike counts
    expected_ref = firing_rates(ref.astype(np.float32)).sum(axis=1) / P.env_fs_hz
    np.testing.assert_allclose(expected, expected_ref, rtol=1e-2, atol=0.05)
    counts, counts_ref = np.zeros(700), np.zeros(700)
    for seed in range(4):
        counts += np.bincount(encode(x, fs, seed=seed, level_db=None)[1], minlength=700)
        counts_ref += np.bincount(encode(x48, P.fs_hz, seed=seed, level_db=None)[1], minlength=700)
    assert counts[:first].sum() == 0
    assert abs(counts.sum() - counts_ref.sum()) <= 0.02 * counts_ref.sum()
    assert np.corrcoef(counts, counts_ref)[0, 1] > 0.97


@pytest.mark.parametrize("params", [CochleaParams(), CochleaParams(equalize_power=0.5),
                                    CochleaParams(fibre_offsets_db=(0.0, 10.0, 20.0))],
                         ids=["plain", "equalised", "fibre-classes"])
def test_encode_equals_the_public_stages(params: CochleaParams) -> None:
    """encode() skips the work where no rate can be non-zero; its spikes are those of the stages
    run in full (with and without the channel equalisation, with fibre classes of staggered
    thresholds)."""
    for kind in ("noise", "chirp"):
        x = _band_limited(kind)
        x[:200] += 0.5  # a sudden start
        t, u = encode(x, 8000.0, seed=np.random.default_rng(2), params=params, level_db=None)
        t_ref, u_ref = renewal_spikes(sparse_rates(envelopes(x, params, 8000.0), params), params.env_fs_hz,
                                      np.random.default_rng(2), params.isi_shape)
        assert t.size > 1000
        np.testing.assert_array_equal(u, u_ref)
        np.testing.assert_allclose(t, t_ref, rtol=0, atol=1e-9)


def _channel_totals(sr: SparseRates) -> np.ndarray:
    return np.bincount(sr.channel, weights=sr.rate.astype(np.float64), minlength=sr.shape[0])


def test_equalize_off_leaves_the_rates_alone() -> None:
    rate = np.array([1.0, 2.0, 30.0], dtype=np.float32)
    assert equalize_rates(rate, np.array([0, 2]), P) is rate


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.05, 20.0), min_size=2, max_size=12), st.integers(0, 2**32 - 1))
def test_equalize_removes_a_fixed_colour_of_the_channels(colour: list, seed: int) -> None:
    """Power 1: every active channel ends with the same total rate (none is below the floor
    here), so a recording whose channels were scaled by any fixed gains (another microphone or
    vocal tract) equalises to the same rates up to one common factor; each channel's time course
    is kept. Power 0.5 halves the spread of the channels' log totals."""
    rng = np.random.default_rng(seed)
    n_ch, n_t = len(colour), 50
    base = (rng.random((n_ch, n_t)) * 100 + 50).astype(np.float32)  # every channel active
    coloured = (base * np.asarray(colour, dtype=np.float32)[:, None]).astype(np.float32)
    first = np.arange(n_ch) * n_t
    eq1 = CochleaParams(equalize_power=1.0, equalize_floor=1e-3)
    a = equalize_rates(base.reshape(-1), first, eq1).reshape(n_ch, n_t)
    b = equalize_rates(coloured.reshape(-1), first, eq1).reshape(n_ch, n_t)
    np.testing.assert_allclose(a.sum(1), a.sum(1).mean(), rtol=1e-5)
    np.testing.assert_allclose(b / b.sum(), a / a.sum(), rtol=1e-4)
    np.testing.assert_allclose(b / b.sum(1, keepdims=True), coloured / coloured.sum(1, keepdims=True), rtol=1e-4)
    half = equalize_rates(coloured.reshape(-1), first, CochleaParams(equalize_power=0.5, equalize_floor=1e-3))
    spread = np.log(coloured.sum(1)).std()
    np.testing.assert_allclose(np.log(half.reshape(n_ch, n_t).sum(1)).std(), spread / 2, rtol=1e-3, atol=1e-6)


def test_equalize_floor_limits_the_gain_and_silent_channels_stay_silent() -> None:
    """A weak channel is raised at most 1 / floor ** power times; channels without rates are not
    counted in the mean and stay without spikes; on real spikes the weak channel's count rises."""
    rate = np.r_[np.full(10, 100.0), np.full(10, 100.0), np.full(10, 1.0)].astype(np.float32)
    first = np.array([0, 10, 20])
    out = equalize_rates(rate, first, CochleaParams(equalize_power=1.0, equalize_floor=0.2))
    mean = (1000 + 1000 + 10) / 3
    np.testing.assert_allclose(out[20:], 1.0 / 0.2, rtol=1e-6)  # floored: gain 5
    np.testing.assert_allclose(out[:10], 100.0 * mean / 1000, rtol=1e-6)
    x = _band_limited("chirp")
    env = envelopes(x, P, 8000.0)
    plain, eq = sparse_rates(env, P), sparse_rates(env, CochleaParams(equalize_power=0.5))
    np.testing.assert_array_equal(plain.channel, eq.channel)  # the same entries, other rates
    tot, tot_eq = _channel_totals(plain), _channel_totals(eq)
    assert np.array_equal(tot == 0, tot_eq == 0) and (tot == 0).sum() >= 139
    active = tot > 0
    strong = tot >= 0.2 * tot[active].mean()  # above the floor: the log spread halves exactly
    assert strong.sum() > 100
    np.testing.assert_allclose(np.log(tot_eq[strong]).std(), np.log(tot[strong]).std() / 2, rtol=1e-3)
    weak = active & ~strong  # raised by the largest gain, 5 ** 0.5
    assert weak.any() and np.all(tot_eq[weak] > 2 * tot[weak])


def test_encode_is_bit_for_bit_deterministic() -> None:
    x = np.random.default_rng(1).standard_normal(4000) * np.hanning(4000)
    a = encode(x, 8000.0, seed=5)
    b = encode(x, 8000.0, seed=5)
    c = encode(x, 8000.0, seed=6)
    assert a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes()
    assert a[0].size != c[0].size or not np.array_equal(a[0], c[0])


# -- crsnn-data encode on flat-named files --------------------------------------------------------
def _fsdd_like(root: Path, digits=(0, 1, 2, 10), speakers=("ann", "bob", "cy"), per=2) -> Path:
    """``{digit}_{speaker}_{i}.wav`` at 8 kHz: a tone whose pitch follows the digit; one speaker's
    files in a sub-folder."""
    rng = np.random.default_rng(0)
    fs = 8000
    t = np.arange(int(0.12 * fs)) / fs
    for d in digits:
        for s in speakers:
            for i in range(per):
                folder = root / "sub" if s == "cy" else root
                folder.mkdir(parents=True, exist_ok=True)
                x = np.sin(2 * np.pi * (300 + 250 * d) * t) * np.hanning(t.size) + 0.01 * rng.standard_normal(t.size)
                wavfile.write(folder / f"{d}_{s}_{i}.wav", fs, (x * 12000).astype(np.int16))
    (root / "README.txt").write_text("not a wav")
    return root


LABEL = r"^(\d+)_"
SPEAKER = r"^\d+_([a-z]+)_"


def test_sort_names_is_numeric_for_integers() -> None:
    assert sort_names(["10", "9", "0", "9"]) == ["0", "9", "10"]
    assert sort_names(["b", "a10", "a9"]) == ["a10", "a9", "b"]


def test_label_and_speaker_patterns(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    wavs = _fsdd_like(tmp_path / "wavs")
    found = find_wavs(wavs, LABEL, SPEAKER)
    assert found.classes == ["0", "1", "2", "10"] and found.speaker_names == ["ann", "bob", "cy"]
    assert len(found.files) == 24 and any(p.parent.name == "sub" for p in found.files)
    out = tmp_path / "all.h5"
    assert main(["encode", str(wavs), "--out", str(out), "--label-pattern", LABEL,
                 "--speaker-pattern", SPEAKER, "--workers", "1", "--quiet"]) == 0
    assert "24 samples, 4 classes (0, 1, 2, 10), 3 speakers" in capsys.readouterr().out
    h = read_header(out)
    names = json.loads(h.attrs["speaker_names"])
    files = json.loads(h.attrs["crsnn_encode"])["files"]
    assert h.class_names == ["0", "1", "2", "10"] and names == ["ann", "bob", "cy"]
    for f, label, spk in zip(files, h.labels, h.speakers):
        digit, speaker, _ = Path(f).name.split("_")
        assert h.class_names[label] == digit and names[spk] == speaker
    # higher pitch, lower channels: the classes are told apart by place
    centre = {}
    for _, times, units in iter_spikes(out):
        for label, u in zip(h.labels, units):
            centre.setdefault(int(label), []).append(np.median(u))
    med = [np.median(centre[c]) for c in range(4)]
    assert med[0] > med[1] > med[2] > med[3]


def test_test_speakers_split(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    wavs = _fsdd_like(tmp_path / "wavs")
    common = ["--label-pattern", LABEL, "--speaker-pattern", SPEAKER, "--workers", "2", "--quiet"]
    assert main(["encode", str(wavs), "--out", str(tmp_path / "split"), "--test-speakers", "bob,cy", *common]) == 0
    text = capsys.readouterr().out
    assert "train.h5: 8 samples, speakers ann" in text and "test.h5: 16 samples, speakers bob, cy" in text
    files = find_split_files(tmp_path / "split")
    assert set(files) == {"train", "test"}
    train, test = read_header(files["train"]), read_header(files["test"])
    assert set(train.speakers) == {0} and set(test.speakers) == {1, 2}
    assert train.attrs["speaker_names"] == test.attrs["speaker_names"]
    assert train.class_names == test.class_names == ["0", "1", "2", "10"]
    splits = load_splits(tmp_path / "split", max_duration=0.2, valid_fraction=0.25)
    assert len(splits["train"]) + len(splits["valid"]) == 8 and len(splits["test"]) == 16
    # file i is seeded by its place among all files: split or not, the same spikes
    assert main(["encode", str(wavs), "--out", str(tmp_path / "all.h5"), *common]) == 0
    every = {}
    all_files = json.loads(read_header(tmp_path / "all.h5").attrs["crsnn_encode"])["files"]
    for _, times, _units in iter_spikes(tmp_path / "all.h5"):
        every.update(zip(all_files, times))
    split_files = json.loads(test.attrs["crsnn_encode"])["files"]
    for _, times, _units in iter_spikes(files["test"]):
        for f, t in zip(split_files, times):
            np.testing.assert_array_equal(t, every[f])


def test_encoded_files_are_byte_identical_per_seed(tmp_path: Path) -> None:
    wavs = _fsdd_like(tmp_path / "wavs", digits=(0, 1), speakers=("ann", "bob"), per=1)
    outs = []
    for k, workers in enumerate(("1", "2", "1")):
        out = tmp_path / f"run{k}.h5"
        seed = "7" if k < 2 else "8"
        assert main(["encode", str(wavs), "--out", str(out), "--label-pattern", LABEL, "--seed", seed,
                     "--workers", workers, "--quiet"]) == 0
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]  # same seed, any number of workers
    assert outs[0] != outs[2]


def test_encode_equalize_option(tmp_path: Path) -> None:
    """``--equalize 0.5`` is stored in the file's provenance and evens out the channels: a
    tone's few strong channels lose spikes to its weak ones, the spikes' times stay in the word."""
    wavs = _fsdd_like(tmp_path / "wavs", digits=(0, 1), speakers=("ann",), per=1)
    counts = {}
    for power in ("0", "0.5"):
        out = tmp_path / f"eq{power}.h5"
        assert main(["encode", str(wavs), "--out", str(out), "--label-pattern", LABEL, "--equalize", power,
                     "--workers", "1", "--quiet"]) == 0
        stored = json.loads(read_header(out).attrs["crsnn_encode"])["cochlea"]
        assert stored["equalize_power"] == float(power) and stored["equalize_floor"] == 0.2
        per = [np.bincount(u, minlength=700) for _, _, units in iter_spikes(out) for u in units]
        counts[power] = np.stack(per).astype(float)
    for plain, eq in zip(counts["0"], counts["0.5"]):
        active = plain > 0
        assert eq[:139].sum() == 0 and plain[:139].sum() == 0  # above 4 kHz: nothing either way
        top = plain >= np.quantile(plain[active], 0.9)
        weak = active & (plain <= np.quantile(plain[active], 0.3))
        assert eq[top].sum() < 0.8 * plain[top].sum() and eq[weak].sum() > 1.1 * plain[weak].sum()
        assert abs(eq.sum() - plain.sum()) < 0.3 * plain.sum()  # spikes moved, not made or lost


def test_encode_equalize_out_of_range(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as e:
        main(["encode", str(tmp_path), "--out", str(tmp_path / "x.h5"), "--equalize", "1.5"])
    assert e.value.code == 2
    assert "--equalize: expected a number in [0, 1], got 1.5" in capsys.readouterr().err


@pytest.mark.parametrize("extra,message", [
    (["--test-speakers", "ann"], "--test-speakers needs --speaker-pattern"),
    (["--speaker-pattern", SPEAKER, "--test-speakers", "zoe"], "--test-speakers: no file of speaker 'zoe'"),
    (["--speaker-pattern", SPEAKER, "--test-speakers", "ann,bob,cy"], "leaves no training files"),
    (["--speaker-pattern", r"^\d+_([A-Z]+)_"], r"--speaker-pattern '^\d+_([A-Z]+)_' does not match the file name"),
    (["--speaker-pattern", r"^\d+_[a-z]+_"], "has no group"),
    (["--speaker-pattern", "(["], "is not a regular expression"),
    (["--speaker-pattern", SPEAKER, "--test-speakers", "ann", "--out", "x.h5"], "--out is a folder"),
])
def test_encode_option_errors(tmp_path: Path, capsys: pytest.CaptureFixture, extra: list, message: str) -> None:
    wavs = _fsdd_like(tmp_path / "wavs", digits=(0, 1), per=1)
    out = ["--out", str(tmp_path / "out")] if "--out" not in extra else []
    extra = [str(tmp_path / a) if a == "x.h5" else a for a in extra]
    assert main(["encode", str(wavs), "--label-pattern", LABEL, *out, *extra, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("crsnn-data encode: error:") and message in err and "\n" not in err
    assert not list(tmp_path.rglob("*.h5"))


def test_label_pattern_that_misses_a_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    wavs = _fsdd_like(tmp_path / "wavs", digits=(0,), speakers=("ann",), per=1)
    wavfile.write(wavs / "noise.wav", 8000, np.zeros(800, dtype=np.int16))
    assert main(["encode", str(wavs), "--out", str(tmp_path / "o.h5"), "--label-pattern", LABEL, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert r"--label-pattern '^(\d+)_' does not match the file name 'noise.wav'" in err


# -- silence trimming ------------------------------------------------------------------------------
def _burst(fs: int, lead: float, length: float, tail: float, noise_db: float = -60.0, seed: int = 0) -> np.ndarray:
    """Noise at ``noise_db`` re. the burst, a 400 Hz burst of ``length`` s after ``lead`` s of it, ``tail`` s after."""
    rng = np.random.default_rng(seed)
    n_lead, n_burst, n_tail = (int(round(v * fs)) for v in (lead, length, tail))
    x = 10 ** (noise_db / 20) * rng.standard_normal(n_lead + n_burst + n_tail)
    x[n_lead: n_lead + n_burst] += np.sin(2 * np.pi * 400 * np.arange(n_burst) / fs)
    return x


def test_speech_bounds_cut_silence_to_the_margin() -> None:
    fs = 8000
    x = _burst(fs, lead=0.25, length=0.3, tail=0.2)
    start, stop = speech_bounds(x, fs, below_db=20.0, margin=0.02)
    assert start == int(0.25 * fs) - int(0.02 * fs)  # the burst starts on a frame boundary
    assert stop == int(0.55 * fs) + int(0.02 * fs)
    # a quieter onset (a fricative 15 dB down) is kept at 20 dB, dropped at 10 dB
    y = x.copy()
    y[int(0.15 * fs): int(0.25 * fs)] += 10 ** (-15 / 20) * np.random.default_rng(1).standard_normal(int(0.1 * fs))
    assert speech_bounds(y, fs, 20.0, 0.0)[0] == int(0.15 * fs)
    assert speech_bounds(y, fs, 10.0, 0.0)[0] == int(0.25 * fs)


@pytest.mark.parametrize("x", [np.zeros(4000), np.ones(30), np.zeros(0)])
def test_speech_bounds_keep_silence_and_short_input_whole(x: np.ndarray) -> None:
    assert speech_bounds(x, 8000) == (0, x.size)


@settings(max_examples=60, deadline=None)
@given(lead=st.integers(0, 40), length=st.integers(1, 40), tail=st.integers(0, 40), margin=st.integers(0, 5),
       below=st.floats(1.0, 50.0))
def test_speech_bounds_bracket_the_loud_frames(lead: int, length: int, tail: int, margin: int, below: float) -> None:
    """In 10-ms frames: the range holds every frame within ``below`` dB of the loudest, widened
    by the margin and clipped to the recording, and nothing else."""
    fs = 1000  # 10 samples per frame
    x = _burst(fs, lead / 100, length / 100, tail / 100, noise_db=-80.0)
    start, stop = speech_bounds(x, fs, below_db=below, margin=margin / 100)
    assert 0 <= start < stop <= x.size
    assert start == max(0, 10 * (lead - margin))
    assert stop == (x.size if tail == 0 else min(x.size, 10 * (lead + length + margin)))


def test_encode_trims_leading_silence(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Two recordings that differ only in their leading silence: the same first spike time
    after the trim (margin 20 ms), 0.2 s apart without it; the option is in the provenance."""
    fs = 8000
    wavs = tmp_path / "wavs"
    wavs.mkdir()
    for i, lead in enumerate((0.05, 0.25)):
        x = _burst(fs, lead, 0.2, 0.05, noise_db=-50.0, seed=3)
        wavfile.write(wavs / f"0_ann_{i}.wav", fs, (x * 12000).astype(np.int16))
    onsets = {}
    for opt in ([], ["--no-trim"]):
        out = tmp_path / f"o{len(opt)}.h5"
        assert main(["encode", str(wavs), "--out", str(out), "--label-pattern", LABEL, "--workers", "1", "--quiet",
                     *opt]) == 0
        assert json.loads(read_header(out).attrs["crsnn_encode"])["trim_db"] == (None if opt else 20.0)
        _, times, _ = next(iter_spikes(out))
        onsets[bool(opt)] = [float(np.percentile(t, 1)) for t in times]
    trimmed, whole = onsets[False], onsets[True]
    assert abs(trimmed[0] - trimmed[1]) < 0.005
    assert abs((whole[1] - whole[0]) - 0.2) < 0.01
    assert 0.01 < trimmed[0] < 0.06
