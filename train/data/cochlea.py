"""A cochlea-like front end: audio -> 700 channels of spikes, on SHD's frequency map.

Stages (per channel ``c``):

0. Outer and middle ear (:func:`middle_ear`, off by default): a first-order high-pass before the
   level normalisation.
1. Gammatone band-pass filter (4th order, Slaney's cascade of four biquads, designed in float64)
   centred on the best frequency ``cf[c] = cf_max * exp(-cf_decay * c)`` (20.6 kHz *
   exp(-0.00757 c): channel 0 is the HIGH end, as in SHD), clamped to ``[cf_min, 0.45 fs]``.
   Each channel is filtered at the lowest rate ``fs / 2^k`` of a multi-rate bank with
   ``cf <= tier_ratio * rate`` (its tier). A recording below 48 kHz is resampled from its own
   rate straight to each tier's rate (down, or up only as far as the tier needs), not to 48 kHz
   first. The filters run as their impulse responses (cut where 1e-7 of the l2 norm is left) by
   batched FFT convolution in float32, all channels of a tier at once (:func:`envelopes`).
2. Half-wave rectification, block averaging down to the envelope rate ``env_fs_hz`` and a
   2nd-order low-pass at ``lowpass_hz`` (hair-cell loss of phase locking).
3. Threshold and compression ``d = max((e / thr_c) ** power - 1, 0)`` (``thr_c`` is channel
   ``c``'s threshold envelope, the active RMS of the input being 1: ``reference``, raised by
   ``fibre_offsets_db[c mod K]`` dB when several fibre classes of staggered thresholds share the
   places, :func:`channel_thresholds`; one class by default), divisive adaptation
   ``d / (1 + k * m)`` where ``m`` is ``d`` low-passed with time constant ``adapt_tau_s``.
4. Firing rate ``rate_cap * tanh(gain * d / rate_cap)`` in Hz (soft cap).
4b. Per-recording channel equalisation (:func:`equalize_rates`; ``equalize_power``, 0 here as in
   SHD's cochlea, 0.5 in ``crsnn-data encode``'s front end for recordings,
   :data:`crsnn.train.data.encode.RECORDINGS_FRONT_END`), a gain per channel that pulls each
   channel's mean rate over the recording towards the mean of the active channels. It removes most
   of the recording's long-term spectrum (the voice's and the microphone's colour) and keeps each
   channel's time course. Its gains need the whole recording: a clip's stage, not a stream's.
5. A renewal process (gamma-distributed inter-spike intervals of shape ``isi_shape`` in the
   rate-rescaled time) gives the spike times. Stages 3-5 visit only the (channel, sample)
   entries above the threshold (:class:`SparseRates`).

A recording sampled at ``fs`` carries nothing above ``fs / 2``: the channels whose filter passes
less than :data:`OUT_OF_BAND_DB` (-48 dB) of every frequency below ``fs / 2``, too little for
the recording to bring them to the threshold (:func:`first_in_band`; for 8 kHz recordings the
139 channels above 7.2 kHz, 4 ERB above 4 kHz) receive no signal: their envelope is exactly 0
and they are not computed.

It reproduces the coarse spectro-temporal structure of SHD's inputs, not the fine timing of the
original Lauscher model. Input audio is a float array in arbitrary units: :func:`encode` scales
it to an RMS of 1 over its active part (or ``10**(level_db/20)``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from fractions import Fraction
from functools import lru_cache

import numpy as np
from scipy import fft as sfft
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
    # per-recording channel equalisation (stage 4b): 0 = off
    equalize_power: float = 0.0
    equalize_floor: float = 0.2
    # a channel is filtered at the lowest rate fs/2^k with cf <= tier_ratio * rate
    tier_ratio: float = 0.3
    # fibre classes: channel c's threshold is reference * 10 ** (fibre_offsets_db[c % K] / 20)
    fibre_offsets_db: tuple = (0.0,)
    # outer/middle ear (stage 0): first-order high-pass corner in Hz; 0 = off
    ear_highpass_hz: float = 0.0

    def __post_init__(self) -> None:
        offsets = tuple(float(v) for v in self.fibre_offsets_db)
        if not offsets or not all(0.0 <= v <= 60.0 for v in offsets):
            # below 0 dB a channel could fire where first_in_band says the recording is silent
            raise ValueError(f"fibre_offsets_db must hold 1 or more offsets in [0, 60] dB, got {self.fibre_offsets_db}")
        object.__setattr__(self, "fibre_offsets_db", offsets)
        if not 0.0 <= float(self.ear_highpass_hz) <= 4000.0:
            raise ValueError(f"ear_highpass_hz must be in [0, 4000] Hz, got {self.ear_highpass_hz}")

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


#: Relative l2 norm of the impulse-response tail that the FIR truncation drops (see :func:`envelopes`).
IR_TAIL = 1e-7
#: Float32 values per batch of channels in :func:`envelopes` (1 MB: the batch stays in the L2 cache).
_BATCH_VALUES = 1 << 18
#: Samples per block of :func:`lfilter_blocked`.
_IIR_BLOCK = 32
#: Channels per batch of :func:`sparse_rates` (at least, in :func:`encode`).
_RATE_ROWS = 64


def impulse_response(sos: np.ndarray, tail: float = IR_TAIL) -> np.ndarray:
    """Impulse response of a gammatone (:func:`gammatone_sos`), float64 ``(L,)``, cut after the
    last sample whose remaining tail still holds ``tail`` of the response's l2 norm.

    The four sections share the pole pair ``r exp(+-i w)`` (``r**2`` is each section's ``a2``), so
    the response decays like ``n**3 r**n``; it is computed for ``40 / -log(r)`` samples (where that
    envelope is below 1e-12 of its peak) before it is cut.
    """
    r = math.sqrt(float(sos[0, 5]))
    impulse = np.zeros(int(math.ceil(40.0 / -math.log(r))) + 16)
    impulse[0] = 1.0
    h = signal.sosfilt(sos, impulse)
    energy_after = np.cumsum((h * h)[::-1])[::-1]  # energy_after[m] = sum(h[m:] ** 2)
    keep = int(np.argmax(energy_after <= tail * tail * energy_after[0]))
    return h[: max(keep, 1)]


@dataclass(frozen=True)
class _Tier:
    """Channels filtered at the rate ``fs_hz / 2**k``.

    Attributes:
        k: rate index.
        start, stop: the tier's channels are ``start..stop-1`` (a contiguous range: cf decreases
            with the channel index).
        step: tier samples per envelope sample.
        irs: float64 ``(stop - start, taps)`` truncated impulse responses, zero-padded.
    """

    k: int
    start: int
    stop: int
    step: int
    irs: np.ndarray


@lru_cache(maxsize=4)
def _bank(params: CochleaParams) -> tuple[_Tier, ...]:
    """The filterbank, tier by tier, lowest rate first. A channel is filtered at the lowest rate
    ``fs/2^k`` with ``cf <= tier_ratio * rate`` (the highest channels at ``fs``)."""
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
        hs = [impulse_response(gammatone_sos(float(cf[c]), rate)) for c in chans]
        irs = np.zeros((chans.size, max(h.size for h in hs)))
        for i, h in enumerate(hs):
            irs[i, : h.size] = h
        tiers.append(_Tier(k, int(chans[0]), int(chans[-1]) + 1, int(round(rate / params.env_fs_hz)), irs))
    return tuple(tiers)


#: In-band gain (dB) below which a channel cannot reach the threshold from a recording at the
#: normalised level (active RMS 1), and counts as outside the recording's band: see :func:`first_in_band`.
OUT_OF_BAND_DB = -48.0


@lru_cache(maxsize=16)
def _band_gains(params: CochleaParams, fs: float) -> np.ndarray:
    """:func:`in_band_gain`, cached (read-only)."""
    gain = np.ones(params.n_channels)
    for tier in _bank(params):
        rate = params.fs_hz / 2 ** tier.k
        if fs >= rate:
            continue  # the tier's whole band, centre frequencies included: gain 1
        grid = max(8192, 8 * tier.irs.shape[1])  # bins of rate / grid (<= 6 Hz at 48 kHz)
        top = int(fs / 2 / rate * grid)
        gain[tier.start: tier.stop] = np.abs(np.fft.rfft(tier.irs, grid, axis=1)[:, : top + 1]).max(axis=1)
    gain.setflags(write=False)
    return gain


def in_band_gain(fs: float, params: CochleaParams = CochleaParams()) -> np.ndarray:
    """Each channel's largest gain (its filter as applied, at its tier's rate) over the band
    ``0..fs/2`` Hz that a recording sampled at ``fs`` Hz can carry: float64 ``(n_channels,)``;
    1 where that band reaches the channel's centre frequency."""
    return _band_gains(params, float(fs)).copy()


def first_in_band(fs: float, params: CochleaParams = CochleaParams(), rms: float = 1.0) -> int:
    """The first channel that a recording sampled at ``fs`` Hz, of active RMS ``rms``
    (:func:`active_rms`), can drive: channels ``0..first-1`` (the highest centre frequencies)
    pass less than :data:`OUT_OF_BAND_DB` (-48 dB, lowered by the level above 1:
    ``-48 - 20 log10(rms)``) of every frequency below ``fs / 2`` (:func:`in_band_gain`). They
    receive no signal: their envelopes are 0 and are not computed. 0 for ``fs >= 48 kHz``.

    Why -48 dB: a channel fires only where its envelope (the rectified output averaged over
    1/6 ms and low-passed) exceeds ``reference`` = 0.02, -34 dB re. an active RMS of 1. A
    channel of in-band gain ``g`` driven at the band's top by a sinusoid of amplitude ``A``
    averages ``g A / pi``; normalised speech never reaches ``A`` = 13 (the largest sample of the
    2,500 recordings of the Free Spoken Digit Dataset), so ``g`` < -48 dB keeps the envelope
    below 0.017 even if the loudest instant of the loudest recording sat entirely at the band's
    top, while speech has ~20 dB less there. The gammatone's low-frequency skirt is shallow: for
    8 kHz recordings this is cf > 7.2 kHz, 4 ERB above 4 kHz (139 channels, the whole 48 kHz
    tier); -60 dB would be reached only 5.8 ERB above (cf > 11.9 kHz, 73 channels). Over all
    2,500 FSDD recordings, computed at 48 kHz as before, the channels between -60 and -48 dB
    stay below 0.006 after the recording's first 10 ms and fire only within them (about one
    spike per channel in the whole data set): the sudden start of a trimmed recording, taken
    from silence to its first sample at 48 kHz, made a click that drove them through the skirt
    and the resampler's images, which is not a response to sound that the recording holds.
    """
    gain = _band_gains(params, float(fs))
    inside = np.flatnonzero(gain * max(float(rms), 1.0) >= 10 ** (OUT_OF_BAND_DB / 20))
    return int(inside[0]) if inside.size else params.n_channels


@lru_cache(maxsize=48)
def _spectra(params: CochleaParams, k: int, nfft: int) -> np.ndarray:
    """Tier ``k``'s truncated impulse responses divided by the tier's ``step`` (a power of 2: the
    average over a step becomes a sum, exactly) on an ``nfft``-point grid: complex64
    ``(C_k, nfft//2 + 1)``. 48 grids: more than the ~30 lengths that spoken digits need (~50 MB)."""
    tier = next(t for t in _bank(params) if t.k == k)
    spec = sfft.rfft(tier.irs.astype(np.float32), nfft, axis=1)  # complex64
    spec *= np.float32(1.0 / tier.step)
    return spec


#: FFT lengths of :func:`_block_size`: ``m * 2^j`` (``m`` = 1, 3, 5 or 15) from 32 to 32768; pocketfft
#: runs them at the speed per sample of powers of 2, and they waste less zero padding.
_FFT_SIZES = tuple(sorted({m << j for m in (1, 3, 5, 15) for j in range(16) if 32 <= m << j <= 1 << 15}))


@lru_cache(maxsize=1024)
def _block_size(taps: int, n: int, step: int) -> tuple[int, int]:
    """``(nfft, hop)`` for overlap-save filtering of ``n`` samples with ``taps``-long filters:
    the FFT length of :data:`_FFT_SIZES` (at least ``2 * taps``) with the least work
    ``blocks * nfft * log2(nfft)``; ``hop`` (new outputs per block) is a multiple of ``step``."""
    best = None
    for nfft in _FFT_SIZES:
        hop = (nfft - taps + 1) // step * step
        if nfft < 2 * taps or hop <= 0:
            continue
        cost = -(-n // hop) * nfft * math.log2(nfft)
        if best is None or cost < best[0]:
            best = (cost, nfft, hop)
    return best[1], best[2]


def _tier_batches(xk: np.ndarray, tier: _Tier, params: CochleaParams, n_env: int, n_pad: int, lo: int = 0):
    """Filter ``xk`` (float ``(n,)`` at the tier's rate) with the tier's channels
    ``tier.start + lo .. tier.stop - 1`` by overlap-save FFT convolution in float32, half-wave
    rectify and average over ``step`` samples: yields ``(channel, u)`` per batch of channels,
    ``u`` float32 ``(channels, n_pad)`` at ``env_fs`` from ``channel`` on, zero from ``n_env``
    on. Outputs at or after ``n_env * step`` count as zeros (the filter runs to the end of the
    input only)."""
    taps, step = tier.irs.shape[1], tier.step
    n_ch = tier.stop - tier.start - lo
    n_out = n_env * step
    nfft, hop = _block_size(taps, n_out, step)
    lead = nfft - hop  # >= taps - 1: the outputs of a block that wrap around are dropped
    n_blocks = -(-n_out // hop)
    m = min(xk.size, n_out)
    xp = np.zeros(lead + n_blocks * hop, dtype=np.float32)
    xp[lead: lead + m] = xk[:m]
    X = sfft.rfft(np.lib.stride_tricks.sliding_window_view(xp, nfft)[::hop], axis=1)  # (blocks, F)
    spec = _spectra(params, tier.k, nfft)[lo:]
    per = max(1, _BATCH_VALUES // (n_blocks * nfft))
    for c in range(0, n_ch, per):
        y = sfft.irfft(spec[c: c + per, None, :] * X[None], nfft, axis=2, overwrite_x=True)
        if m < n_blocks * hop:
            y[:, m // hop, lead + m % hop:] = 0.0
            y[:, m // hop + 1:] = 0.0
        kept = y[:, :, lead:]
        u = np.zeros((y.shape[0], n_pad), dtype=np.float32)
        if step == 1:  # rectified straight into ``u``, block by block
            for j in range(n_blocks):
                w = min(hop, n_env - j * hop)
                np.maximum(kept[:, j, :w], 0.0, out=u[:, j * hop: j * hop + w])
        else:
            np.maximum(kept, 0.0, out=kept)
            # the sum over each step (the filters carry the 1 / step); not a BLAS product with a
            # vector of ones: OpenBLAS would run it on every core
            parts = kept.reshape(y.shape[0], n_blocks, hop // step, step)
            total = parts[..., 0] + parts[..., 1]
            for i in range(2, step):
                total += parts[..., i]
            u[:, :n_env] = total.reshape(y.shape[0], -1)[:, :n_env]
        yield tier.start + lo + c, u


def _resampled_size(n: int, fs_in: float, fs_out: float) -> int:
    """Length of :func:`resample` ``(n samples, fs_in, fs_out)``."""
    if abs(fs_in - fs_out) < 1e-9:
        return n
    up, down = _ratio(fs_in, fs_out)
    return -(-n * up // down)


def _tier_inputs(x: np.ndarray, fs: float, params: CochleaParams, ks: list[int]) -> dict[int, np.ndarray]:
    """The recording at the rate of each tier ``k`` in ``ks``: float64 ``{k: (n_k,)}``.

    At or above the front end's rate ``fs_hz``: resampled to ``fs_hz``, then halved tier by tier
    (the path every recording took before; unchanged for 48 kHz). Below it: resampled from ``fs``
    straight to each tier's rate, down or up (polyphase filters of :func:`resample`, which keep
    the band below ``min(fs, rate) / 2``).
    """
    if fs >= params.fs_hz - 1e-9:
        versions = {0: resample(x, fs, params.fs_hz)}
        for j in range(1, max(ks, default=0) + 1):
            versions[j] = signal.resample_poly(versions[j - 1], 1, 2, window=_resampler(1, 2))
        return {k: versions[k] for k in ks}
    return {k: resample(x, fs, params.fs_hz / 2 ** k) for k in ks}


def _filterbank(x: np.ndarray, fs: float, params: CochleaParams):
    """Stages 1 and 2 up to the low-pass: ``(first, n_env, batches)`` with
    ``first = first_in_band(fs, params, active_rms(x))`` and ``batches`` an iterator of
    ``(channel, u)``: the rectified outputs of channels ``channel..channel+len(u)-1`` (together,
    channels ``first..n_channels-1``, tier by tier) averaged down to ``env_fs`` (before the
    low-pass), float32 ``(channels, n_pad)``, zero from ``n_env`` on; ``n_pad`` is a multiple of
    :data:`_IIR_BLOCK`."""
    dec = int(round(params.fs_hz / params.env_fs_hz))
    n_env = -(-_resampled_size(x.size, fs, params.fs_hz) // dec)
    first = first_in_band(fs, params, active_rms(x)) if fs < params.fs_hz else 0
    n_pad = -(-n_env // _IIR_BLOCK) * _IIR_BLOCK
    tiers = [t for t in _bank(params) if t.stop > first] if n_env else []

    def batches():
        inputs = _tier_inputs(x, fs, params, [t.k for t in tiers])
        for tier in tiers:
            yield from _tier_batches(inputs[tier.k], tier, params, n_env, n_pad, max(first - tier.start, 0))

    return first, n_env, batches()


@lru_cache(maxsize=4)
def _lowpass(params: CochleaParams) -> tuple[np.ndarray, np.ndarray]:
    """The envelope low-pass (Butterworth, 2nd order) ``(b, a)``."""
    return signal.butter(2, params.lowpass_hz, fs=params.env_fs_hz)


def envelopes(audio: np.ndarray, params: CochleaParams = CochleaParams(), fs: float | None = None) -> np.ndarray:
    """Rectified, low-passed filterbank outputs.

    Each channel is filtered at its tier's rate, half-wave rectified and averaged over blocks of
    ``rate / env_fs`` samples (decimation to ``env_fs``); then all channels are low-passed at
    ``lowpass_hz`` together. Each tier's input is the recording resampled from its own rate
    ``fs`` straight to the tier's rate (:func:`_tier_inputs`); below 48 kHz, the channels that
    the recording's band cannot reach (``0..first_in_band(fs, params, active_rms(audio))-1``)
    are 0 and not computed.

    How, and why so: the 700 gammatones have 700 different recursive filters, which scipy cannot
    batch (``sosfilt``/``lfilter`` apply one filter to every row of an array; the gammatone as a
    cascade of complex one-pole filters after a frequency shift still has one pole per channel),
    and one call per channel costs mostly call overhead (~50 of ~80 ms for a 0.45 s word, 700
    calls; a Python loop over samples vectorised over channels is slower still). Here all channels
    of a tier are filtered together by overlap-save FFT convolution (one real FFT of the input
    blocks, a product with every channel's spectrum and one batched inverse FFT) with each
    gammatone's impulse response cut where the dropped tail holds less than :data:`IR_TAIL` of its
    l2 norm (<= 640 taps at 6 kHz, <= 230 at the other rates), so that
    ``|y[n] - y_iir[n]| <= 1e-7 * ||h||_2 * ||x||_2`` apart from float32 rounding (~1e-6 of the
    channel's output; float32 is safe in this FIR form, while the float32 IIR is not stable at the
    low channels). FFT lengths (:data:`_FFT_SIZES`) minimise the work for each signal length;
    the filter spectra are cached per length. The low-pass runs as :func:`lfilter_blocked`.
    Work is proportional to the samples at the tier rates: for 8 kHz recordings, without the 139
    silent channels of the 48 kHz tier, 5.6 instead of 12.2 million per second of audio (the
    6 kHz tier is filled from 8 kHz by one 3/4 resampler, the 12 and 24 kHz tiers by 3/2 and 3/1
    ones). The rectified outputs are summed over each step by adding strided views (the filters
    carry the 1 / step): a product with a vector of ones would run OpenBLAS's matrix-vector
    product on every core, which on a loaded machine costs more CPU time than it saves.

    Args:
        audio: float ``(n,)`` at ``fs`` Hz.
        fs: the recording's sample rate (default ``params.fs_hz``).

    Returns:
        float32 ``(n_channels, n_env)`` (channel-major) at ``params.env_fs_hz`` Hz,
        ``n_env = ceil(n48 / dec)`` with ``dec = fs_hz / env_fs`` and ``n48`` the length of the
        recording resampled to ``fs_hz`` (:func:`resample`).
    """
    x = np.asarray(audio, dtype=np.float64).reshape(-1)
    first, n_env, batches = _filterbank(x, params.fs_hz if fs is None else float(fs), params)
    out = np.zeros((params.n_channels, n_env), dtype=np.float32)
    b, a = _lowpass(params)
    for c, u in batches:
        out[c: c + u.shape[0]] = _lfilter_padded(b, a, u, _IIR_BLOCK)[:, :n_env]
    return out


#: Multiply-adds per call of :func:`_matmul` (OpenBLAS 0.3 ran products up to about this size on one thread).
_MATMUL_SIZE = 1 << 19


def _matmul(x: np.ndarray, w: np.ndarray, s: np.ndarray | None = None, f: np.ndarray | None = None) -> np.ndarray:
    """``x @ w`` (plus ``s @ f``) for a tall float32 ``x`` ``(M, K)``, in row blocks of at most
    :data:`_MATMUL_SIZE` multiply-adds: OpenBLAS splits a larger product over all cores, which on
    a shared machine costs 2-5x the CPU time of one thread for these thin matrices (and the
    caller may run one process per core); the second product is added block by block, in cache.
    A single output column is summed without BLAS."""
    if w.shape[1] == 1 and s is None:  # numpy would call OpenBLAS's matrix-vector product, threaded above 9216 values
        return np.einsum("ij,j->i", x, w[:, 0])[:, None]
    out = np.empty((x.shape[0], w.shape[1]), dtype=np.float32)
    rows = max(1, _MATMUL_SIZE // (w.shape[0] * w.shape[1]))
    for i in range(0, x.shape[0], rows):
        np.matmul(x[i: i + rows], w, out=out[i: i + rows])
        if s is not None:
            out[i: i + rows] += s[i: i + rows] * f[0] if f.shape[0] == 1 else s[i: i + rows] @ f
    return out


def lfilter_blocked(b: np.ndarray, a: np.ndarray, x: np.ndarray, block: int = _IIR_BLOCK) -> np.ndarray:
    """``scipy.signal.lfilter(b, a, x, axis=1)`` (zero initial state) for many rows at once, in
    float32: float32 ``(C, n)`` from ``(C, n)``.

    ``lfilter`` runs its recursion row by row, one sample at a time. Here the signal is cut into
    blocks of ``block`` samples and, with the filter's state-space form ``(A, B, C, D)`` of order
    ``q``: each block's input carried to the state at its end is one matrix product (with
    ``A^(block-1-i) B`` for input ``i``), the state at each block's start follows
    ``s_{j+1} = A^block s_j + (input of block j)`` (:func:`_block_states`), and the output is
    one more product, with the Toeplitz matrix of the first ``block`` impulse-response samples,
    plus the start state's response ``C A^i s_j`` (:func:`_lfilter_blocks`). The result equals
    ``lfilter``'s up to float32 rounding (the block recursion is exact algebra; a state older
    than the filter's memory, below 1e-9, is dropped).
    """
    x = np.asarray(x, dtype=np.float32)
    rows, n = x.shape
    if n == 0 or rows == 0:
        return x.copy()
    n_blocks = -(-n // block)
    if n % block or not x.flags.c_contiguous:
        xb = np.zeros((rows, n_blocks * block), dtype=np.float32)
        xb[:, :n] = x
    else:
        xb = x
    return _lfilter_padded(b, a, xb, block)[:, :n]


def _lfilter_padded(b: np.ndarray, a: np.ndarray, xb: np.ndarray, block: int) -> np.ndarray:
    """:func:`lfilter_blocked` of a float32 ``(rows, n)`` with ``n`` a multiple of ``block``: each
    block's zero-state response (a product with the Toeplitz matrix of the impulse response)
    plus its start state's response. A block's start state is the sum of the last ``memory``
    blocks' inputs carried to it (older ones add less than 1e-9 of them), else it runs through
    the blocks (:func:`_block_states`)."""
    rows, n = xb.shape
    n_blocks = n // block
    blocks = xb.reshape(rows * n_blocks, block)
    to_state, a_block, toeplitz, from_state, memory = _block_matrices(
        tuple(np.atleast_1d(b).astype(float)), tuple(np.atleast_1d(a).astype(float)), block)
    q = a_block.shape[0]
    drive = _matmul(blocks, to_state).reshape(rows, n_blocks, q)  # each block's input carried to its end
    state = _block_states(drive, a_block, memory).reshape(-1, q)
    return _matmul(blocks, toeplitz, state, from_state).reshape(rows, n)


def _block_states(drive: np.ndarray, a_block: np.ndarray, memory: int) -> np.ndarray:
    """The state at each block's start, float32 ``(rows, blocks, q)``: ``s_0 = 0``,
    ``s_{j+1} = s_j @ a_block + drive_j``. A scalar state runs as one ``lfilter`` over the blocks;
    when ``a_block^memory`` is negligible (below 1e-9: the envelope low-pass forgets a block within
    the next one), the sum of the last ``memory`` drives, vectorised over all blocks; otherwise a
    loop over blocks, vectorised over rows."""
    rows, n_blocks, q = drive.shape
    if q == 1:
        s = signal.lfilter([0.0, 1.0], [1.0, -float(a_block[0, 0])], drive[:, :, 0], axis=1)
        return np.asarray(s, dtype=np.float32)[:, :, None]
    state = np.zeros((rows, n_blocks, q), dtype=np.float32)
    if memory <= 4:
        power = np.eye(q, dtype=np.float32)
        for i in range(1, min(memory, n_blocks - 1) + 1):
            state[:, i:] += drive[:, :-i] if i == 1 else drive[:, :-i] @ power
            power = power @ a_block
        return state
    for j in range(1, n_blocks):
        np.matmul(state[:, j - 1], a_block, out=state[:, j])
        state[:, j] += drive[:, j - 1]
    return state


@lru_cache(maxsize=16)
def _block_matrices(b: tuple, a: tuple, block: int) -> tuple:
    """float32 matrices of :func:`lfilter_blocked` (state-space form of order ``q``): input ->
    state at the block's end ``(block, q)``, ``(A^block)^T`` ``(q, q)``, the Toeplitz matrix of the
    impulse response ``(block, block)`` (input i -> output j >= i), the block's start state ->
    output ``(q, block)``; and the number of blocks after which ``A^block`` to that power is below
    1e-9 (a large number if never)."""
    order = max(len(a), len(b))  # pad at the end: tf2ss pads a short b in front (a delay)
    A, Bv, Cv, Dv = signal.tf2ss(np.r_[b, np.zeros(order - len(b))], np.r_[a, np.zeros(order - len(a))])
    powers = [np.eye(A.shape[0])]
    for _ in range(block):
        powers.append(A @ powers[-1])
    h = np.array([Dv[0, 0]] + [(Cv @ powers[i] @ Bv)[0, 0] for i in range(block - 1)])
    toeplitz = np.zeros((block, block))
    for i in range(block):
        toeplitz[i, i:] = h[: block - i]
    to_state = np.stack([(powers[block - 1 - i] @ Bv)[:, 0] for i in range(block)])
    from_state = np.stack([(Cv @ powers[i])[0] for i in range(block)], axis=1)
    memory, p = 1, powers[block]
    while memory < 1 << 20 and np.abs(p).max() >= 1e-9:
        memory, p = memory + 1, p @ powers[block]
    return (*(m.astype(np.float32) for m in (to_state, powers[block].T, toeplitz, from_state)), memory)


@dataclass(frozen=True)
class SparseRates:
    """The non-zero entries of a firing-rate array ``(n_channels, n)``, in row-major order
    (by channel, then by sample): ``channel`` and ``sample`` int32 ``(m,)``, ``rate`` float32 Hz
    ``(m,)``. Below the threshold a channel's rate is exactly 0, which is most of the array for
    speech (~70 % of it for spoken digits), so the rate and spike stages work on these entries
    only (12 bytes per entry: for dense activity, e.g. loud noise, 3x the dense array)."""

    channel: np.ndarray
    sample: np.ndarray
    rate: np.ndarray
    shape: tuple[int, int]

    def dense(self) -> np.ndarray:
        """float32 ``shape``."""
        out = np.zeros(self.shape, dtype=np.float32)
        out[self.channel, self.sample] = self.rate
        return out

    @classmethod
    def from_dense(cls, rates: np.ndarray) -> "SparseRates":
        c, t = np.nonzero(rates > 0)
        return cls(c.astype(np.int32), t.astype(np.int32), np.asarray(rates[c, t], dtype=np.float32),
                   tuple(rates.shape))


def sparse_rates(env: np.ndarray, params: CochleaParams = CochleaParams()) -> SparseRates:
    """Envelopes ``(C, n_env)`` -> firing rates in Hz (the non-zero entries).

    ``d = max((env / reference) ** compress_power - 1, 0)`` (zero at and below the threshold
    ``reference``), adaptation ``d / (1 + adapt_strength * m)`` with ``m = lowpass(d)`` (one
    pole, time constant ``adapt_tau_s``: :func:`_one_pole_at`), then
    ``rate_cap * tanh(gain * d / rate_cap)``. Computed in float32, :data:`_RATE_ROWS` channels at
    a time (bounded temporaries), in the blocks of :data:`_IIR_BLOCK` samples that hold entries.
    """
    env = np.asarray(env, dtype=np.float32)
    rows, n = env.shape
    n_blocks = -(-n // _IIR_BLOCK)
    n_pad = n_blocks * _IIR_BLOCK
    padded = np.zeros((rows, n_pad), dtype=np.float32)
    padded[:, :n] = env
    chs, ts, rates = [np.zeros(0, np.int32)], [np.zeros(0, np.int32)], [np.zeros(0, np.float32)]
    for r in range(0, rows, _RATE_ROWS):
        part = padded[r: r + _RATE_ROWS]
        flat, rate, blocks = _rates_of_rows(part.reshape(-1, _IIR_BLOCK), part.shape[0], params, r)
        keep = rate > 0  # d > 0 can round to 0 Hz
        pos = blocks[flat[keep] // _IIR_BLOCK] * _IIR_BLOCK + flat[keep] % _IIR_BLOCK
        chs.append((pos // n_pad + r).astype(np.int32))
        ts.append((pos % n_pad).astype(np.int32))
        rates.append(rate[keep])
    rate = np.concatenate(rates)
    chan = np.concatenate(chs)
    return SparseRates(chan, np.concatenate(ts), equalize_rates(rate, _first_entries(chan), params), (rows, n))


def _first_entries(channel: np.ndarray) -> np.ndarray:
    """Index of each channel's first entry in channel-sorted entries ``channel`` (int ``(m,)``):
    int64, increasing, one per channel present (empty for no entries)."""
    if channel.size == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.r_[True, channel[1:] != channel[:-1]])


def equalize_rates(rate: np.ndarray, first: np.ndarray, params: CochleaParams = CochleaParams()) -> np.ndarray:
    """Per-recording channel equalisation of the rate entries (stage 4b); ``rate`` unchanged
    when ``params.equalize_power`` is 0.

    Channel ``c``'s rates are multiplied by ``g_c = (M / max(R_c, floor * M)) ** power``, where
    ``R_c`` is the sum of its rates over the recording and ``M`` the mean of ``R_c`` over the
    channels that fire at all (``R_c > 0``; channels outside the recording's band do not count).
    ``power = 1`` gives every active channel the same mean rate (as far as the floor lets a weak
    channel be raised: at most ``1 / floor`` times); ``power = 0.5`` goes half the way in the log
    domain. A speaker's voice and microphone colour the long-term spectrum of everything they say
    (on the Free Spoken Digit Dataset one speaker has half the others' spikes above 2.5 kHz); the
    words differ in how the channels change over time, which the gains keep.

    Args:
        rate: float32 Hz entries ``(m,)``, channel by channel (as in :class:`SparseRates`).
        first: int index of each channel's first entry ``(n_channels_with_entries,)``, increasing.

    Returns:
        float32 ``(m,)``.
    """
    power = float(params.equalize_power)
    if power == 0.0 or rate.size == 0:
        return rate
    r64 = rate.astype(np.float64)
    totals = np.add.reduceat(r64, first)
    active = totals > 0
    if not active.any():
        return rate
    mean = totals[active].mean()
    gain = (mean / np.maximum(totals, params.equalize_floor * mean)) ** power
    # in float64 and in place: the same numbers as rate * gain, without numpy's slow mixed-type loop
    r64 *= np.repeat(gain, np.diff(np.r_[first, rate.size]))
    return r64.astype(np.float32)


@lru_cache(maxsize=8)
def _thresholds(params: CochleaParams) -> tuple[np.ndarray, bool]:
    """:func:`channel_thresholds` (read-only) and whether they are all the same (one class)."""
    thr = channel_thresholds(params)
    thr.setflags(write=False)
    return thr, len(set(params.fibre_offsets_db)) == 1


def channel_thresholds(params: CochleaParams = CochleaParams()) -> np.ndarray:
    """Each channel's rate threshold (envelope units, the active RMS is 1), float64
    ``(n_channels,)``: ``reference`` raised by its fibre class's offset, the classes taken in turn
    along the channels (channel ``c`` is of class ``c mod K``)."""
    offsets = np.asarray(params.fibre_offsets_db, dtype=np.float64)
    c = np.arange(params.n_channels)
    return params.reference * 10 ** (offsets[c % offsets.size] / 20)


def _rates_of_rows(env: np.ndarray, rows: int, params: CochleaParams, first: int = 0) -> tuple[np.ndarray, ...]:
    """The rates of :func:`sparse_rates` above the threshold of the envelopes ``env`` float32
    ``(rows * n_blocks, block)``: ``rows`` rows cut into blocks of :data:`_IIR_BLOCK` samples
    (at most ``reference`` past the signal's end). Returns ``(flat, rate, blocks)``: the blocks
    that hold entries (increasing), the entries' flat indices into the array of these blocks
    (int64, increasing: by row, then by sample) and their float32 rates (>= 0: some round to
    0 Hz). The rest is done in these blocks only (a third of the rows' blocks for speech)."""
    n_blocks = env.shape[0] // rows
    thr, uniform = _thresholds(params)
    thr = thr[first: first + rows]
    above = env > (np.float32(thr[0]) if uniform else np.repeat(thr.astype(np.float32), n_blocks)[:, None])
    idx = np.flatnonzero(_any_per_block(above))
    env, above = env[idx], above[idx]
    flat = np.flatnonzero(above)
    d = np.take(env.reshape(-1), flat)
    if uniform:
        d *= np.float32(1.0 / thr[0])
    else:
        d *= np.take((1.0 / thr).astype(np.float32), idx[flat // _IIR_BLOCK] // n_blocks)
    if params.compress_power == 0.5:
        np.sqrt(d, out=d)
    else:
        np.power(d, np.float32(params.compress_power), out=d)
    d -= np.float32(1.0)
    if params.adapt_strength > 0 and d.size:
        a = math.exp(-1.0 / (params.adapt_tau_s * params.env_fs_hz))
        m = _one_pole_at(a, flat, d, idx, rows, n_blocks)
        m *= np.float32(params.adapt_strength)
        m += np.float32(1.0)
        d /= m
    d *= np.float32(params.gain_hz / params.rate_cap_hz)
    np.tanh(d, out=d)
    d *= np.float32(params.rate_cap_hz)
    return flat, d, idx


def _any_per_block(flags: np.ndarray) -> np.ndarray:
    """``flags.any(axis=1)`` for a C-contiguous bool ``(m, block)``, ``block`` a multiple of 8:
    the flags read 8 at a time as 64-bit words (numpy's ``any`` over a short axis is ~10x slower)."""
    words = flags.view(np.uint64).reshape(flags.shape[0], -1)
    out = words[:, 0] != 0
    for i in range(1, words.shape[1]):
        out |= words[:, i] != 0
    return out


def _one_pole_at(a: float, flat: np.ndarray, d: np.ndarray, idx: np.ndarray, rows: int, n_blocks: int,
                 block: int = _IIR_BLOCK) -> np.ndarray:
    """``lfilter([1 - a], [1, -a], D, axis=1)`` at the non-zero entries of ``D``, ``rows`` rows
    of ``n_blocks`` blocks of ``block`` samples (a power of 2), non-zero only in the blocks
    ``idx`` (increasing): ``d`` at the flat indices ``flat`` (increasing) of the
    ``(len(idx), block)`` array of these blocks. float32 ``(m,)``.

    The entries are scattered into these blocks, each laid next to its start state,
    ``[d_j | s_j]``, and filtered as in :func:`_lfilter_padded` by one product with
    ``[Toeplitz ; from_state]``; the states run through every block of the rows, the empty ones
    included (one ``lfilter`` over the blocks). Equal to ``lfilter`` up to float32 rounding
    (~1e-6 relative). Cost: two passes over the blocks (one a matrix product on one thread) and
    a scatter and a gather over the entries; the exact float64 alternative that visits the
    entries only (a running sum restarted per block) made ~20 passes over them and took twice
    as long.
    """
    to_state, a_block, toeplitz, from_state, memory = _block_matrices((1.0 - a,), (1.0, -a), block)
    aug = np.zeros((idx.size, block + 1), dtype=np.float32)
    aug.reshape(-1)[flat + (flat >> (block.bit_length() - 1))] = d  # entry (block j, i) -> aug[j, i]
    drive = np.zeros(rows * n_blocks, dtype=np.float32)
    drive[idx] = np.einsum("ij,j->i", aug[:, :block], to_state[:, 0])
    aug[:, block] = _block_states(drive.reshape(rows, n_blocks, 1), a_block, memory).reshape(-1)[idx]
    return np.take(_matmul(aug, np.concatenate([toeplitz, from_state])).reshape(-1), flat)


def firing_rates(env: np.ndarray, params: CochleaParams = CochleaParams()) -> np.ndarray:
    """Envelopes ``(C, n_env)`` -> firing rates in Hz, float32 ``(C, n_env)``: :func:`sparse_rates`
    as a dense array."""
    return sparse_rates(env, params).dense()


def renewal_spikes(
    rates: np.ndarray | SparseRates, fs: float, rng: np.random.Generator, shape: float = 2.0
) -> tuple[np.ndarray, np.ndarray]:
    """Spikes of a renewal process per channel with time-varying rate (time rescaling).

    Channel ``c`` fires when its expected count ``Lambda_c(t)`` (the integral of its rate) crosses
    the partial sums of gamma variates of shape ``shape`` and mean 1. All channels are drawn at
    once: one ``rng.gamma`` call for ``k_c = L + 4 sqrt(L / min(shape, 1)) + 4`` variates per
    channel with ``L = Lambda_c(end) > 0`` (in channel order; their sum falls short of ``L`` with
    a probability below 1e-4, 4 standard deviations), then, only for the rare channel whose
    partial sums stop short of ``L``, ``k_c`` more at a time, in channel order. Each spike is placed by
    linear interpolation of ``Lambda_c`` within its sample. Only samples with a non-zero rate are
    visited (``Lambda_c`` is flat elsewhere).

    Args:
        rates: Hz, non-negative, ``(C, n)`` (channel-major) or its :class:`SparseRates`, sampled
            at ``fs`` Hz (constant within a sample).
        rng: random generator (same state -> same spikes).
        shape: shape of the gamma inter-spike intervals in rescaled time (1 = Poisson).

    Returns:
        ``(times, units)``: float64 seconds and int64 channels, sorted by time then channel.
    """
    sr = rates if isinstance(rates, SparseRates) else SparseRates.from_dense(np.asarray(rates))
    if sr.rate.size == 0:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    first = _first_entries(sr.channel)
    e, _, frac = _renewal(sr.rate, first, fs, rng, shape)
    return _spike_train((sr.sample[e] + frac) / fs, sr.channel[e].astype(np.int64))


def _renewal(
    rate: np.ndarray, first: np.ndarray, fs: float, rng: np.random.Generator, shape: float
) -> tuple[np.ndarray, ...]:
    """The renewal process of :func:`renewal_spikes` on the entries ``rate`` (Hz, >= 0), the
    channels' entries in order, channel ``r`` starting at entry ``first[r]``: the entry in which
    each spike falls, its channel ``r`` and the fraction of the entry's sample before it
    (``(e, r, frac)``, channel by channel, in time order). Channels whose rates are all 0 draw
    nothing, as if absent."""
    # g: the running sum of the rates over all entries, channel after channel; channel r's
    # Lambda (the expected count) at the end of an entry is (g - base_r) / fs
    g = np.cumsum(rate.astype(np.float64))
    last = np.r_[first[1:], rate.size] - 1
    base = np.where(first > 0, g[first - 1], 0.0)
    tot = (g[last] - base) / fs
    live = tot > 0
    if not live.all():
        first, last, base, tot = first[live], last[live], base[live], tot[live]
    k = (tot + 4 * np.sqrt(tot / min(shape, 1.0)) + 4).astype(np.int64)
    s, row = _gamma_sums(rng, shape, k, tot)
    target = s * fs + base[row]  # g lies above the other channels' values on channel r's entries
    e = np.searchsorted(g, target, side="right")
    np.clip(e, first[row], last[row], out=e)  # the entry (sample) in which each spike falls
    start = np.where(e > first[row], g[e - 1], base[row])
    width = g[e] - start
    frac = np.where(width > 0, (target - start) / np.where(width > 0, width, 1.0), 0.0)
    return e, np.flatnonzero(live)[row], frac


def _spike_train(t: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Spikes (float64 times, int64 channels) in channel order, each channel's in time order,
    sorted by time then channel (a stable sort by time)."""
    order = np.argsort(t, kind="stable")
    return t[order], u[order]


def _gamma_sums(
    rng: np.random.Generator, shape: float, k: np.ndarray, total: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Partial sums below ``total[r]`` of gamma(shape, 1/shape) variates, ``k[r]`` drawn at first
    for each row ``r`` (rows in order, one call), more for a row that falls short: float64
    values ``(m,)`` (row by row, increasing within a row) and int64 rows ``(m,)``."""
    g = rng.gamma(shape, 1.0 / shape, size=int(k.sum()))
    ends = np.cumsum(k)
    s = np.cumsum(g)
    before = np.r_[0.0, s[ends[:-1] - 1]]
    last = s[ends - 1] - before  # each row's largest partial sum
    s -= np.repeat(before, k)
    row = np.repeat(np.arange(k.size), k)
    keep = s < total[row]
    s, row = s[keep], row[keep]
    short = np.flatnonzero(last < total)  # rare: rows that need more variates
    if short.size:
        parts_s, parts_r = [s], [row]
        for r in short:
            top = float(last[r])
            while top < total[r]:
                more = top + np.cumsum(rng.gamma(shape, 1.0 / shape, size=int(k[r])))
                parts_s.append(more[more < total[r]])
                parts_r.append(np.full(parts_s[-1].size, r, dtype=np.int64))
                top = float(more[-1])
        order = np.argsort(np.concatenate(parts_r), kind="stable")
        s, row = np.concatenate(parts_s)[order], np.concatenate(parts_r)[order]
    return s, row


def active_rms(audio: np.ndarray, frame: int = 256) -> float:
    """RMS of ``audio`` over its active frames (``frame`` samples each, within 40 dB of the
    loudest frame); 0 for silence."""
    x = np.asarray(audio, dtype=np.float64).reshape(-1)
    if x.size == 0 or not np.any(x):
        return 0.0
    n = x.size // frame * frame
    energy = (x[:n].reshape(-1, frame) ** 2).mean(axis=1) if n else np.array([np.mean(x ** 2)])
    active = energy[energy >= energy.max() * 1e-4]
    return math.sqrt(float(active.mean()))


def speech_bounds(audio: np.ndarray, fs: float, below_db: float = 20.0, margin: float = 0.02,
                  frame: float = 0.01) -> tuple[int, int]:
    """Sample range ``[start, stop)`` of ``audio`` from its first to its last loud frame.

    Frames of ``frame`` seconds whose mean power is within ``below_db`` dB of the loudest frame
    are loud; the range runs from the first to the end of the last of them, widened by
    ``margin`` seconds on each side (clipped to the recording). Leading and trailing silence
    (and breath or hum well below the speech) falls outside.

    Why: recordings of one corpus start anywhere from 0 to 300 ms before the speech (FSDD's
    speaker "lucas" ~150 ms, others ~10 ms); a classifier that has only heard one speaker's
    timing then misreads another's. Cutting at 20 dB below the loudest 10-ms frame keeps weak
    onsets (/s/ of "six", /f/ of "four" lie within ~20 dB of the vowel, and the margin keeps
    their rise); a logistic regression on the spike counts, leave-one-speaker-out on FSDD,
    goes from 61 % to 72 % with it (30 dB: 68 %, 40 dB: 64 %).

    Args:
        audio: ``(n,)`` samples; fs: sample rate in Hz; below_db: dB below the loudest frame
            (> 0); margin, frame: seconds.
    Returns:
        ``(start, stop)`` sample indices; ``(0, n)`` when the recording is silent or shorter
        than one frame.
    """
    x = np.asarray(audio, dtype=np.float64).reshape(-1)
    size = max(1, int(round(frame * fs)))
    n = x.size // size
    if n == 0 or not np.any(x):
        return 0, x.size
    power = (x[: n * size].reshape(n, size) ** 2).mean(axis=1)
    loud = np.flatnonzero(power >= power.max() * 10 ** (-below_db / 10))
    pad = int(round(margin * fs))
    start = max(0, int(loud[0]) * size - pad)
    stop = x.size if loud[-1] == n - 1 else min(x.size, (int(loud[-1]) + 1) * size + pad)
    return start, stop


def normalise(audio: np.ndarray, level_db: float = 0.0, frame: int = 256) -> np.ndarray:
    """Scale ``audio`` so that its RMS over the active frames (:func:`active_rms`) is
    ``10**(level_db/20)``. Silence is returned unchanged."""
    x = np.asarray(audio, dtype=np.float64)
    rms = active_rms(x, frame)
    if rms == 0.0:
        return x
    return x * (10 ** (level_db / 20) / rms)


def middle_ear(audio: np.ndarray, fs: float, params: CochleaParams = CochleaParams()) -> np.ndarray:
    """Stage 0, the outer and middle ear: a first-order Butterworth high-pass at
    ``params.ear_highpass_hz`` Hz (6 dB per octave below it), float64 ``(n,)``; the audio as it is
    when the corner is 0.

    The middle ear attenuates low frequencies. Down there lie the voice's fundamental (100-250 Hz),
    which says who speaks rather than what is said, and the microphone's low end, which differs
    most between recordings; on the cochlea's logarithmic frequency map a quarter of the
    channels of an 8 kHz recording sit there. Applied before the level normalisation, so that the
    level is that of what the ear passes. Causal, with one state value: a stream can run it
    chunk by chunk (``scipy.signal.lfilter`` with ``zi``).
    """
    x = np.asarray(audio, dtype=np.float64).reshape(-1)
    if params.ear_highpass_hz <= 0.0:
        return x
    b, a = signal.butter(1, min(params.ear_highpass_hz, 0.45 * fs), btype="highpass", fs=fs)
    return signal.lfilter(b, a, x)


def encode(
    audio: np.ndarray,
    fs: float,
    seed: int | np.random.Generator = 0,
    params: CochleaParams = CochleaParams(),
    level_db: float | None = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Audio -> spikes.

    The spikes of ``renewal_spikes(sparse_rates(envelopes(x, params, fs)), ...)`` for the audio
    ``x = normalise(middle_ear(audio))`` (the same numbers), computed with less work
    (:func:`_encode_spikes`).
    A recording below 48 kHz is filtered from its own rate, and the channels above its band
    stay silent (:func:`first_in_band`).

    Args:
        audio: float or int ``(n,)`` mono samples at ``fs`` Hz.
        fs: sample rate in Hz (the filterbank starts from it: :func:`envelopes`).
        seed: seed or generator of the spike generator.
        level_db: normalise the active RMS to this level (dB re. 1) first; None: use as is.

    Returns:
        ``(times, units)``: float64 seconds ``(n_spikes,)`` and int64 channels ``(n_spikes,)``.
    """
    x = middle_ear(audio, fs, params)
    if level_db is not None:
        x = normalise(x, level_db)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    return _encode_spikes(x, float(fs), params, rng)


def _encode_spikes(
    x: np.ndarray, fs: float, params: CochleaParams, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``renewal_spikes(sparse_rates(envelopes(x, params, fs)), ...)`` with less work: the
    low-pass and the rates run on batches of at least :data:`_RATE_ROWS` channels as the
    filterbank makes them (the rows stay in the cache from the filters to the rates; no
    ``(channels, n_env)`` array), the rates only in the blocks of :data:`_IIR_BLOCK` samples that
    hold entries above the threshold, and the entries stay flat indices into those blocks until
    the spikes are placed."""
    _, n_env, batches = _filterbank(x, fs, params)
    b, a = _lowpass(params)
    parts = []
    for c, u in _merged(batches, _RATE_ROWS):
        rows, n_pad = u.shape
        env = _lfilter_padded(b, a, u, _IIR_BLOCK)
        env[:, n_env:] = 0.0  # the low-pass's response past the end
        flat, rate, idx = _rates_of_rows(env.reshape(-1, _IIR_BLOCK), rows, params, c)
        if rate.size:
            # each row's first entry: its first block's first entry
            n_blocks = n_pad // _IIR_BLOCK
            starts = np.searchsorted(flat, np.searchsorted(idx, np.arange(rows + 1) * n_blocks) * _IIR_BLOCK)
            parts.append((c, flat, rate, idx, starts, n_blocks))
    if not parts:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    parts.sort(key=lambda p: p[0])  # channel order (the tiers come lowest rate, highest channels, first)
    offsets = np.cumsum([0] + [p[2].size for p in parts])
    rate = np.concatenate([p[2] for p in parts])
    starts = np.concatenate([p[4][:-1] + o for p, o in zip(parts, offsets)])
    channels = np.concatenate([np.arange(p[0], p[0] + p[4].size - 1) for p in parts])
    has = np.diff(np.r_[starts, rate.size]) > 0
    rate = equalize_rates(rate, starts[has], params)
    e, row, frac = _renewal(rate, starts[has], params.env_fs_hz, rng, params.isi_shape)
    # spike entry -> part -> block -> sample
    which = np.searchsorted(offsets, e, side="right") - 1
    t = np.empty(e.size, dtype=np.int64)
    shift = _IIR_BLOCK.bit_length() - 1
    for k, (_, flat, _, idx, _, n_blocks) in enumerate(parts):
        sel = which == k
        f = flat[e[sel] - offsets[k]]
        t[sel] = idx[f >> shift] % n_blocks * _IIR_BLOCK + (f & (_IIR_BLOCK - 1))
    return _spike_train((t + frac) / params.env_fs_hz, channels[has][row].astype(np.int64))


def _merged(batches, rows: int):
    """``(channel, u)`` batches (:func:`_filterbank`) joined while their channels follow on, into
    batches of at least ``rows`` channels (fewer calls for the stages after the filters)."""
    pending, start, count = [], 0, 0
    for c, u in batches:
        if pending and c != start + count:
            yield start, np.concatenate(pending) if len(pending) > 1 else pending[0]
            pending, count = [], 0
        if not pending:
            start = c
        pending.append(u)
        count += u.shape[0]
        if count >= rows:
            yield start, np.concatenate(pending) if len(pending) > 1 else pending[0]
            pending, count = [], 0
    if pending:
        yield start, np.concatenate(pending) if len(pending) > 1 else pending[0]


def _ratio(fs_in: float, fs_out: float) -> tuple[int, int]:
    """``(up, down)``: ``fs_out / fs_in`` as a fraction (denominator <= 2000)."""
    r = Fraction(fs_out / fs_in).limit_denominator(2000)
    return r.numerator, r.denominator


def resample(x: np.ndarray, fs_in: float, fs_out: float) -> np.ndarray:
    """Polyphase resampling from ``fs_in`` to ``fs_out`` Hz (rational approximation; scipy's
    ``resample_poly`` with its default Kaiser-window filter, designed once per ratio)."""
    if abs(fs_in - fs_out) < 1e-9:
        return np.asarray(x, dtype=np.float64)
    up, down = _ratio(fs_in, fs_out)
    return signal.resample_poly(np.asarray(x, dtype=np.float64), up, down, window=_resampler(up, down))


@lru_cache(maxsize=32)
def _resampler(up: int, down: int) -> np.ndarray:
    """The low-pass that ``resample_poly(x, up, down)`` designs by default (float64)."""
    g = math.gcd(up, down)
    rate = max(up, down) // g
    return signal.firwin(2 * 10 * rate + 1, 1.0 / rate, window=("kaiser", 5.0))
