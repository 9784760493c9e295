"""The cochlea's optional stages: fibre classes of staggered thresholds in the rate stage
(``crsnn-data encode --fibres``: each channel's threshold, the rates against the dense reference
channel by channel; encode() against the public stages is in test_data_encode.py) and the outer/middle-ear high-pass
(``--ear-highpass``: its response, causality, its place before the level normalisation); the
options' provenance and ranges."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from crsnn.train.data.cli import main
from crsnn.train.data.cochlea import (CochleaParams, channel_thresholds, encode, envelopes, firing_rates,
                                      renewal_spikes, sparse_rates)
from crsnn.train.data.layout import iter_spikes, read_header
from test_data_encode import LABEL, _band_limited, _chirp, _fsdd_like, reference_rates

FIBRES = CochleaParams(fibre_offsets_db=(0.0, 10.0, 20.0))


def test_thresholds_take_the_classes_in_turn() -> None:
    np.testing.assert_array_equal(channel_thresholds(CochleaParams()), np.full(700, 0.02))
    thr = channel_thresholds(FIBRES)
    np.testing.assert_allclose(thr[:6], [0.02, 0.02 * 10 ** 0.5, 0.2] * 2, rtol=1e-12)
    assert thr.shape == (700,) and np.all(thr[3:] == thr[:-3])


@pytest.mark.parametrize("offsets", [(), (-10.0,), (0.0, 61.0), (float("nan"),)])
def test_offsets_below_the_reference_or_absurd_are_refused(offsets: tuple) -> None:
    with pytest.raises(ValueError, match="fibre_offsets_db"):
        CochleaParams(fibre_offsets_db=offsets)


def test_rates_match_the_dense_reference_class_by_class() -> None:
    """Channel c's rates are the one-class front end's with ``reference`` = its threshold."""
    env = envelopes(_chirp(), FIBRES)
    got = firing_rates(env, FIBRES)
    ref = np.zeros_like(got, dtype=np.float64)
    for k, offset in enumerate(FIBRES.fibre_offsets_db):
        one = dataclasses.replace(CochleaParams(), reference=0.02 * 10 ** (offset / 20))
        ref[k::3] = reference_rates(env[k::3].astype(np.float64), one)
    assert np.abs(got - ref).max() < 1e-3 * FIBRES.rate_cap_hz
    # the higher the threshold, the fewer entries
    active = [(got[k::3] > 0).mean() for k in range(3)]
    assert active[0] > active[1] > active[2] > 0


def test_fibres_option_is_recorded_and_checked(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    wavs = _fsdd_like(tmp_path / "wavs", digits=(0, 1), speakers=("ann",), per=1)
    spikes = {}
    for name, extra in (("one", []), ("three", ["--fibres", "0,20,40"])):
        out = tmp_path / f"{name}.h5"
        assert main(["encode", str(wavs), "--out", str(out), "--label-pattern", LABEL, "--workers", "1", "--quiet",
                     *extra]) == 0
        stored = json.loads(read_header(out).attrs["crsnn_encode"])["cochlea"]
        spikes[name] = sum(u.size for _, _, units in iter_spikes(out) for u in units)
        assert stored["fibre_offsets_db"] == ([0.0] if name == "one" else [0.0, 20.0, 40.0])
    assert 0 < spikes["three"] < spikes["one"]  # two classes in three need the envelope 20 or 40 dB higher
    capsys.readouterr()
    for bad in ("-5", "0,,20", "70"):
        with pytest.raises(SystemExit) as e:
            main(["encode", str(wavs), "--out", str(tmp_path / "x.h5"), "--fibres", bad])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert "--fibres: expected comma-separated offsets in dB" in err and len(err.strip().splitlines()) == 1


# -- stage 0: the outer/middle-ear high-pass ------------------------------------------------------
def test_middle_ear_is_a_first_order_high_pass_and_off_by_default() -> None:
    from crsnn.train.data.cochlea import middle_ear

    fs, n = 8000.0, 16000
    t = np.arange(n) / fs
    x = np.random.default_rng(0).standard_normal(n)
    np.testing.assert_array_equal(middle_ear(x, fs), x)  # corner 0: the audio as it is
    ear = CochleaParams(ear_highpass_hz=500.0)

    def gain_db(f: float) -> float:
        y = middle_ear(np.sin(2 * np.pi * f * t), fs, ear)[n // 2:]  # past the start-up
        return 20 * np.log10(np.sqrt(2 * np.mean(y ** 2)))

    assert abs(gain_db(500.0) + 3.0) < 0.3  # -3 dB at the corner
    assert abs(gain_db(125.0) - gain_db(250.0) + 5.0) < 1.0  # ~6 dB per octave below it
    assert gain_db(3000.0) > -0.5
    # causal: a chunk's output depends on nothing after it
    y = middle_ear(x, fs, ear)
    np.testing.assert_allclose(middle_ear(x[:5000], fs, ear), y[:5000], rtol=0, atol=1e-12)


def test_encode_applies_the_ear_before_the_level_normalisation() -> None:
    from crsnn.train.data.cochlea import middle_ear, normalise

    ear = CochleaParams(ear_highpass_hz=500.0)
    x = _band_limited("chirp")
    t, u = encode(x, 8000.0, seed=np.random.default_rng(3), params=ear, level_db=0.0)
    heard = normalise(middle_ear(x, 8000.0, ear), 0.0)
    t_ref, u_ref = renewal_spikes(sparse_rates(envelopes(heard, ear, 8000.0), ear), ear.env_fs_hz,
                                  np.random.default_rng(3), ear.isi_shape)
    np.testing.assert_array_equal(u, u_ref)
    np.testing.assert_allclose(t, t_ref, rtol=0, atol=1e-9)
    # the low channels (below the corner) lose spikes to the others
    plain = encode(x, 8000.0, seed=np.random.default_rng(3), level_db=0.0)[1]
    low = 560  # best frequency below ~300 Hz
    assert (u >= low).mean() < 0.7 * (plain >= low).mean()


def test_ear_option_is_recorded_and_checked(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    wavs = _fsdd_like(tmp_path / "wavs", digits=(0,), speakers=("ann",), per=1)
    out = tmp_path / "ear.h5"
    assert main(["encode", str(wavs), "--out", str(out), "--label-pattern", LABEL, "--workers", "1", "--quiet",
                 "--ear-highpass", "500"]) == 0
    assert json.loads(read_header(out).attrs["crsnn_encode"])["cochlea"]["ear_highpass_hz"] == 500.0
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(["encode", str(wavs), "--out", str(tmp_path / "x.h5"), "--ear-highpass", "-1"])
    assert e.value.code == 2 and "--ear-highpass: expected a number in [0, 4000]" in capsys.readouterr().err


def test_recordings_are_equalised_by_default_and_the_plain_cochlea_is_one_option_away(tmp_path: Path) -> None:
    from crsnn.train.data.encode import encode_folder

    wavs = _fsdd_like(tmp_path / "wavs", digits=(0, 1), speakers=("ann",), per=1)
    common = ["--label-pattern", LABEL, "--workers", "1", "--quiet"]
    assert main(["encode", str(wavs), "--out", str(tmp_path / "default.h5"), *common]) == 0
    assert json.loads(read_header(tmp_path / "default.h5").attrs["crsnn_encode"])["cochlea"]["equalize_power"] == 0.5
    assert main(["encode", str(wavs), "--out", str(tmp_path / "plain.h5"), "--equalize", "0", *common]) == 0
    encode_folder(wavs, tmp_path / "api.h5", params=CochleaParams(), workers=1, progress=False, label_pattern=LABEL)
    assert (tmp_path / "plain.h5").read_bytes() == (tmp_path / "api.h5").read_bytes()
    assert (tmp_path / "plain.h5").read_bytes() != (tmp_path / "default.h5").read_bytes()
