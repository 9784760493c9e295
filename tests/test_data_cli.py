"""``crsnn-data`` run in-process: encode, show, baseline, errors (and synth, slow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.io import wavfile

from crsnn.train.data import load_binned, read_header
from crsnn.train.data.cli import main


def _wav_dir(root: Path, seed: int) -> Path:
    """Two classes of short tones: 'high' (~5 kHz) and 'low' (~400 Hz), in two WAV flavours."""
    rng = np.random.default_rng(seed)
    fs = 16000
    t = np.arange(int(0.15 * fs)) / fs
    for name, f0 in (("low", 400.0), ("high", 5000.0)):
        d = root / name
        (d / "sub").mkdir(parents=True)
        for k in range(2):
            x = np.sin(2 * np.pi * f0 * (1 + 0.05 * rng.standard_normal()) * t) * np.hanning(t.size)
            x += 0.01 * rng.standard_normal(t.size)
            wavfile.write(d / f"a{k}.wav", fs, (x * 20000).astype(np.int16))
        stereo = np.stack([x, x], axis=1).astype(np.float32) * 0.5
        wavfile.write(d / "sub" / "b.wav", fs, stereo)  # float, stereo, in a sub-folder
    return root


def test_encode_show_baseline(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    wavs = _wav_dir(tmp_path / "wavs", 0)
    out = tmp_path / "enc" / "train.h5"
    assert main(["encode", str(wavs), "--out", str(out), "--workers", "1", "--quiet"]) == 0
    h = read_header(out)
    assert h.class_names == ["high", "low"]  # sorted folder names
    assert h.labels.tolist() == [0, 0, 0, 1, 1, 1]
    d = load_binned(out, dt=0.01, max_duration=0.2)
    x = d.samples(np.arange(6)).astype(float)
    centre = [(x[i].sum(0) * np.arange(700)).sum() / x[i].sum() for i in range(6)]
    assert max(centre[:3]) < min(centre[3:])  # the high tones excite lower channel indices
    assert "6 samples, 2 classes (high, low)" in capsys.readouterr().out

    png = tmp_path / "raster.png"
    assert main(["show", str(out), "--index", "4", "--png", str(png)]) == 0
    text = capsys.readouterr().out
    assert png.is_file() and png.stat().st_size > 1000 and str(png) in text
    assert "high" in text and "low" in text and "spikes per sample" in text and "duration" in text

    assert main(["encode", str(_wav_dir(tmp_path / "wavs2", 1)), "--out", str(tmp_path / "enc" / "test.h5"),
                 "--workers", "2", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["baseline", str(tmp_path / "enc"), "--json"]) == 0
    text = capsys.readouterr().out
    assert "test accuracy" in text and '"n_test": 6' in text


def test_cli_errors_are_clear(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["show", str(tmp_path / "nope.h5")]) == 2
    assert "nope.h5: file not found" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["encode", str(tmp_path / "empty"), "--out", str(tmp_path / "x.h5")]) == 2
    assert "no class sub-folders" in capsys.readouterr().err
    assert main(["baseline", str(tmp_path / "empty")]) == 2
    assert "no split files found" in capsys.readouterr().err


@pytest.mark.slow
def test_synth_command(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "bench"
    assert main(["synth", "--out", str(out), "--per-class", "1", "--seed", "2", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "espeak-ng" in text and "train.h5" in text
    h = read_header(out / "train.h5")
    assert h.n_samples == 20 and h.attrs["synthetic"]
    assert main(["baseline", str(out)]) == 0
    assert "test accuracy" in capsys.readouterr().out
