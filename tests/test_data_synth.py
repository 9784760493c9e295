"""The offline spoken-digit benchmark: real espeak-ng speech, SHD layout, determinism.

espeak-ng (the optional extra espeakng-loader, installed by scripts/setup.sh) is REQUIRED here:
if it is missing these tests fail, they do not skip.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from crsnn.train.data import load_splits, read_header
from crsnn.train.data.speech import Utterance, synthesize_all
from crsnn.train.data.synth import CLASS_NAMES, SynthConfig, synthesize_benchmark

TINY = dict(per_class=1, classes=(0, 15), train_speakers=2, test_speakers=1)


def _spikes(path: Path) -> tuple[list, list, np.ndarray]:
    with h5py.File(path, "r") as f:
        return ([np.asarray(t) for t in f["spikes/times"]], [np.asarray(u) for u in f["spikes/units"]],
                np.asarray(f["labels"]))


def test_espeak_speaks_and_is_repeatable() -> None:
    utts = [Utterance("zero", "en-us", "m3", seed=1), Utterance("fünf", "de", "f2", seed=2)]
    a, info = synthesize_all(utts)
    b, _ = synthesize_all(utts)
    assert info["synthesizer"] == "espeak-ng" and info["sample_rate"] > 8000
    assert all(x.dtype == np.int16 and x.size > 0.2 * info["sample_rate"] for x in a)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert np.abs(a[0]).max() > 1000  # not silence


def test_tiny_benchmark_is_deterministic_and_in_shd_layout(tmp_path: Path) -> None:
    cfg = SynthConfig(seed=11, **TINY)
    s1 = synthesize_benchmark(tmp_path / "a", cfg, workers=1, progress=False)
    synthesize_benchmark(tmp_path / "b", cfg, workers=2, progress=False)
    s3 = synthesize_benchmark(tmp_path / "c", SynthConfig(seed=12, **TINY), workers=1, progress=False)
    for split in ("train", "test"):
        ta, ua, la = _spikes(tmp_path / "a" / f"{split}.h5")
        tb, ub, lb = _spikes(tmp_path / "b" / f"{split}.h5")
        tc, _, _ = _spikes(tmp_path / "c" / f"{split}.h5")
        assert len(ta) == 2 and sorted(la.tolist()) == [0, 15]
        assert all(np.array_equal(x, y) for x, y in zip(ta, tb))
        assert all(np.array_equal(x, y) for x, y in zip(ua, ub))
        assert np.array_equal(la, lb)
        assert not all(x.size == y.size and np.array_equal(x, y) for x, y in zip(ta, tc))
        assert (tmp_path / "a" / f"{split}.h5").read_bytes() == (tmp_path / "b" / f"{split}.h5").read_bytes()
        with h5py.File(tmp_path / "a" / f"{split}.h5", "r") as f:
            assert h5py.check_vlen_dtype(f["spikes/times"].dtype) == np.float16
            assert h5py.check_vlen_dtype(f["spikes/units"].dtype) == np.uint16
            assert bool(f.attrs["synthetic"]) is True
            prov = json.loads(f.attrs["crsnn_synth"])
        assert prov["seed"] == 11 and prov["synthesizer"]["synthesizer"] == "espeak-ng"
        assert prov["config"]["cochlea"]["n_channels"] == 700
    h_train = read_header(tmp_path / "a" / "train.h5")
    h_test = read_header(tmp_path / "a" / "test.h5")
    assert h_train.class_names == list(CLASS_NAMES) and len(CLASS_NAMES) == 20
    # held-out speakers with voice variants never heard in training
    assert set(h_train.speakers.tolist()).isdisjoint(h_test.speakers.tolist())
    spk = {s["id"]: s["variant"] for s in prov["speakers"]}
    assert {spk[i] for i in h_train.speakers}.isdisjoint({spk[i] for i in h_test.speakers})
    assert s1["files"]["train"]["mean_spikes"] > 500 and s3["files"]["test"]["samples"] == 2
    # and the loaders read it
    sp = load_splits(tmp_path / "a", dt=0.01, max_duration=1.4, channel_group=5, valid_fraction=0)
    x, y = sp["train"].arrays()
    assert x.shape == (2, 140, 140) and x.sum() > 0 and sorted(y.tolist()) == [0, 15]
