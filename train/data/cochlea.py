"""A cochlea-like front end: audio -> 700 channels of spikes, on SHD's frequency map.

Stages (per channel ``c``):

1. Gammatone band-pass filter (4th order, Slaney's cascade of four biquads, designed and run in
   float64 so that it stays stable at low centre frequencies) centred on the best frequency
   ``cf[c] = cf_max * exp(-cf_decay * c)`` (20.6 kHz * exp(-0.00757 c): channel 0 is the HIGH
   end, as in SHD), clamped to ``[cf_min, 0.45 fs]``. Low channels are filtered at a decimated
   rate (multi-rate bank) to save time.
2. Half-wave rectification, block averaging down to the envelope rate ``env_fs_hz`` and a
   2nd-order low-pass at ``lowpass_hz`` (hair-cell loss of phase locking).
3. Threshold and compression ``d = max((e / reference) ** power - 1, 0)`` (``reference`` is
   the threshold envelope: the active RMS of the input is 1), divisive adaptation
   ``d / (1 + k * m)`` where ``m`` is ``d`` low-passed with time constant ``adapt_tau_s``.
4. Firing rate ``rate_cap * tanh(gain * d / rate_cap)`` in Hz (soft cap).
5. A renewal process (gamma-distributed inter-spike intervals of shape ``isi_shape`` in the
   rate-rescaled time) gives the spike times.

It reproduces the coarse spectro-temporal structure of SHD's inputs, not the fine timing of the
original Lauscher model. Input audio is a float array in arbitrary units: :func:`encode` scales
it to an RMS of 1 over its active part (or ``10**(level_db/20)``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
from scipy import signal


@dataclass(frozen=True)
class CochleaParams:
    """Front-end parameters (frequencies in Hz, times in seconds, rates in spikes/s)."""

    n_channels: int = 700
    cf_max_hz: float = 20600.0
    cf_decay: float = 0.00757
    cf_min_hz: float = 50.0
    fs_hz: float = 48000.0
    env_fs_hz: float = 6000.0
    lowpass_hz: float = 1000.0
    compress_power: float = 0.4
    reference: float = 0.02
    adapt_tau_s: float = 0.05
    adapt_strength: float = 0.5
    gain_hz: float = 200.0
    rate_cap_hz: float = 300.0
    isi_shape: float = 2.0
    # a channel is filtered at the lowest rate fs/2^k with cf <= tier_ratio * rate
    tier_ratio: float = 0.3

    def to_dict(self) -> dict:
        return asdict(self)


def best_frequencies(params: CochleaParams = CochleaParams()) -> np.ndarray:
    """Centre frequency of each channel in Hz, float64 ``(n_channels,)``, decreasing with index."""
    c = np.arange(params.n_channels, dtype=np.float64)
    cf = params.cf_max_hz * np.exp(-params.cf_decay * c)
    return np.clip(cf, params.cf_min_hz, 0.45 * params.fs_hz)


def channel_for_frequency(freq_hz: float, params: CochleaParams = CochleaParams()) -> float:
    """Inverse of the frequency map: the (fractional) channel whose best frequency is ``freq_hz``."""
    return math.log(params.cf_max_hz / freq_hz) / params.cf_decay


def gammatone_sos(cf: float, fs: float) -> np.ndarray:
    """4th-order gammatone (Slaney 1993, ERB bandwidth of Glasberg & Moore) as four biquads,
    float64 ``(4, 6)`` second-order sections, gain 1 at ``cf`` Hz for sample rate ``fs`` Hz."""
    T = 1.0 / fs
    erb = cf / 9.26449 + 24.7
    B = 1.019 * 2 * np.pi * erb
    arg = 2 * np.pi * cf * T
    e = np.exp(B * T)
    b1 = -2 * np.cos(arg) / e
    b2 = np.exp(-2 * B * T)
    sos = np.zeros((4, 6))
    for k, s in enumerate((math.sqrt(3 + 2 ** 1.5), -math.sqrt(3 + 2 ** 1.5),
                           math.sqrt(3 - 2 ** 1.5), -math.sqrt(3 - 2 ** 1.5))):
        a1 = -(2 * T * np.cos(arg) / e + 2 * s * T * np.sin(arg) / e) / 2
        sos[k] = [T, a1, 0.0, 1.0, b1, b2]
    _, h = signal.sosfreqz(sos, worN=[cf], fs=fs)
    sos[0, :3] /= abs(h[0])
    return sos


@lru_cache(maxsize=4)
def _bank(params: CochleaParams) -> tuple:
    """Per tier k (rate fs/2^k): channel indices, their filters, decimation step to env_fs."""
    cf = best_frequencies(params)
    dec_total = params.fs_hz / params.env_fs_hz
    n_tiers = 1
    while dec_total / 2 ** n_tiers >= 1 and float(dec_total / 2 ** n_tiers).is_integer():
        n_tiers += 1
    tiers = []
    assigned = np.zeros(cf.size, dtype=bool)
    for k in reversed(range(n_tiers)):
        rate = params.fs_hz / 2 ** k
        chans = np.flatnonzero(~assigned & (cf <= params.tier_ratio * rate)) if k else np.flatnonzero(~assigned)
        assigned[chans] = True
        if chans.size == 0:
            continue
        filters = [gammatone_sos(float(cf[c]), rate) for c in chans]
        step = int(round(rate / params.env_fs_hz))
        tiers.append((k, chans, filters, step))
    return tuple(tiers)


def envelopes(audio: np.ndarray, params: CochleaParams = CochleaParams()) -> np.ndarray:
    """Rectified, low-passed filterbank outputs.

    Each channel is filtered at its tier's rate, half-wave rectified and averaged over blocks of
    ``rate / env_fs`` samples (decimation to ``env_fs``); then all channels are low-passed at
    ``lowpass_hz`` together.

    Args:
        audio: float ``(n,)`` at ``params.fs_hz`` Hz.

    Returns:
        float64 ``(n_channels, n_env)`` (channel-major) at ``params.env_fs_hz`` Hz,
        ``n_env = ceil(n / dec)`` with ``dec = fs / env_fs``.
    """
    x = np.asarray(audio, dtype=np.float64)
    dec = int(round(params.fs_hz / params.env_fs_hz))
    n_env = -(-x.size // dec)
    out = np.zeros((params.n_channels, n_env))
    versions = {0: x}
    for k, chans, filters, step in _bank(params):
        for j in range(1, k + 1):
            if j not in versions:
                versions[j] = signal.resample_poly(versions[j - 1], 1, 2)
        xk = versions[k]
        pad = (-xk.size) % step
        for c, sos in zip(chans, filters):
            y = signal.sosfilt(sos, xk)
            np.maximum(y, 0.0, out=y)
            if step > 1:
                y = np.concatenate([y, np.zeros(pad)]).reshape(-1, step).mean(axis=1)
            m = min(n_env, y.size)
            out[c, :m] = y[:m]
    lp = signal.butter(2, params.lowpass_hz, fs=params.env_fs_hz, output="sos")
    return signal.sosfilt(lp, out, axis=1)


def firing_rates(env: np.ndarray, params: CochleaParams = CochleaParams()) -> np.ndarray:
    """Envelopes ``(C, n_env)`` -> firing rates in Hz, float32 ``(C, n_env)``.

    ``d = max((env / reference) ** compress_power - 1, 0)`` (zero below the threshold
    ``reference``), adaptation ``d / (1 + adapt_strength * lowpass(d))``, then
    ``rate_cap * tanh(gain * d / rate_cap)``. Computed in float32 for speed.
    """
    y = np.maximum(env, 0.0).astype(np.float32)
    y *= np.float32(1.0 / params.reference)
    if params.compress_power == 0.5:
        np.sqrt(y, out=y)
    else:
        np.power(y, np.float32(params.compress_power), out=y)
    y -= np.float32(1.0)
    np.maximum(y, 0, out=y)
    if params.adapt_strength > 0:
        a = math.exp(-1.0 / (params.adapt_tau_s * params.env_fs_hz))
        m = signal.lfilter(np.array([1 - a], np.float32), np.array([1, -a], np.float32), y, axis=1)
        m *= np.float32(params.adapt_strength)
        m += np.float32(1.0)
        y /= m
    y *= np.float32(params.gain_hz / params.rate_cap_hz)
    np.tanh(y, out=y)
    y *= np.float32(params.rate_cap_hz)
    return y


def renewal_spikes(
    rates: np.ndarray, fs: float, rng: np.random.Generator, shape: float = 2.0
) -> tuple[np.ndarray, np.ndarray]:
    """Spikes of a renewal process per channel with time-varying rate (time rescaling).

    Args:
        rates: Hz, ``(C, n)`` (channel-major), sampled at ``fs`` Hz (constant within a sample).
        rng: random generator (channels are drawn in order 0..C-1).
        shape: shape of the gamma inter-spike intervals in rescaled time (1 = Poisson).

    Returns:
        ``(times, units)``: float64 seconds and int64 channels, sorted by time then channel.
    """
    C, n = rates.shape
    lam = np.cumsum(rates, axis=1, dtype=np.float64) / fs  # expected spikes up to each sample's end
    all_t, all_u = [], []
    for c in range(C):
        total = lam[c, -1] if n else 0.0
        if total <= 0:
            continue
        k = int(total * 1.3 + 10 * math.sqrt(total) + 10)
        s = np.cumsum(rng.gamma(shape, 1.0 / shape, size=k))
        while s[-1] < total:  # rare: draw more
            s = np.concatenate([s, s[-1] + np.cumsum(rng.gamma(shape, 1.0 / shape, size=k))])
        s = s[s < total]
        if s.size == 0:
            continue
        col = lam[c]
        j = np.searchsorted(col, s, side="right")  # sample in which the spike falls
        start = np.where(j > 0, col[np.maximum(j - 1, 0)], 0.0)
        width = col[j] - start
        frac = np.where(width > 0, (s - start) / np.where(width > 0, width, 1.0), 0.0)
        all_t.append((j + frac) / fs)
        all_u.append(np.full(s.size, c, dtype=np.int64))
    if not all_t:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    t = np.concatenate(all_t)
    u = np.concatenate(all_u)
    order = np.lexsort((u, t))
    return t[order], u[order]


def normalise(audio: np.ndarray, level_db: float = 0.0, frame: int = 256) -> np.ndarray:
    """Scale ``audio`` so that its RMS over the active frames (``frame`` samples each, within
    40 dB of the loudest frame) is ``10**(level_db/20)``. Silence is returned unchanged."""
    x = np.asarray(audio, dtype=np.float64)
    if x.size == 0 or not np.any(x):
        return x
    n = x.size // frame * frame
    energy = (x[:n].reshape(-1, frame) ** 2).mean(axis=1) if n else np.array([np.mean(x ** 2)])
    active = energy[energy >= energy.max() * 1e-4]
    rms = math.sqrt(float(active.mean()))
    return x * (10 ** (level_db / 20) / rms)


def encode(
    audio: np.ndarray,
    fs: float,
    seed: int | np.random.Generator = 0,
    params: CochleaParams = CochleaParams(),
    level_db: float | None = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Audio -> spikes.

    Args:
        audio: float or int ``(n,)`` mono samples at ``fs`` Hz.
        fs: sample rate in Hz (resampled to ``params.fs_hz``).
        seed: seed or generator of the spike generator.
        level_db: normalise the active RMS to this level (dB re. 1) first; None: use as is.

    Returns:
        ``(times, units)``: float64 seconds ``(n_spikes,)`` and int64 channels ``(n_spikes,)``.
    """
    x = np.asarray(audio, dtype=np.float64).reshape(-1)
    if level_db is not None:
        x = normalise(x, level_db)
    x = resample(x, fs, params.fs_hz)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    rates = firing_rates(envelopes(x, params), params)
    return renewal_spikes(rates, params.env_fs_hz, rng, params.isi_shape)


def resample(x: np.ndarray, fs_in: float, fs_out: float) -> np.ndarray:
    """Polyphase resampling from ``fs_in`` to ``fs_out`` Hz (rational approximation)."""
    if abs(fs_in - fs_out) < 1e-9:
        return np.asarray(x, dtype=np.float64)
    from fractions import Fraction

    r = Fraction(fs_out / fs_in).limit_denominator(2000)
    return signal.resample_poly(np.asarray(x, dtype=np.float64), r.numerator, r.denominator)
