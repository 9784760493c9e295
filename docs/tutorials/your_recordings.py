# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Your own recordings: encode, train, verify
#
# Recordings of your own (WAV files) go through the same cochlea front end as the built-in data
# (`crsnn-data encode`: 700 channels of spikes in SHD's layout), split by speaker so that the
# test speaker is never heard in training, then train, export and run on Lava bit-exact. So that
# this page runs anywhere, step 1 writes a small stand-in set of recordings (three kinds of
# whistles by four "speakers" of different pitch); replace `wav_dir` with your own folder.
# Open this file in Jupyter with jupytext, or run it with `python`.

# %%
import os
import tempfile
import wave
from pathlib import Path

import h5py
import matplotlib.pyplot as plt
import numpy as np

from crsnn.deploy.cli import report_main, verify_main
from crsnn.export.cli import main as crsnn_export
from crsnn.train.cli import main as crsnn_train
from crsnn.train.data.cli import main as crsnn_data

work = Path(os.environ.get("CRSNN_TUTORIAL_DIR") or tempfile.mkdtemp(prefix="crsnn-tutorial-"))

# %% [markdown]
# ## 1. Recordings
#
# Any layout works: one folder per class (`WAV_DIR/<class>/*.wav`), or flat names from which a
# regular expression takes the class (`--label-pattern`) and the speaker (`--speaker-pattern`),
# like the Free Spoken Digit Dataset's `{digit}_{speaker}_{index}.wav`. Here: `{class}_{speaker}_{i}.wav`,
# 16 kHz mono, 16 bits.

# %%
wav_dir = work / "recordings"
wav_dir.mkdir(exist_ok=True)
rate = 16000
rng = np.random.default_rng(0)


def whistle(kind: str, f0: float, seconds: float) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    u = t / seconds  # 0..1 over the sound
    if kind == "up":  # a rising glide
        phase = 2 * np.pi * f0 * seconds * (u + 0.75 * u**2)
    elif kind == "down":  # a falling glide
        phase = 2 * np.pi * f0 * seconds * (2.5 * u - 0.75 * u**2)
    else:  # "two": two notes
        phase = 2 * np.pi * f0 * t * np.where(u < 0.5, 1.0, 2.5)
    y = 0.3 * np.sin(phase) * np.hanning(t.size) + 0.01 * rng.standard_normal(t.size)
    return np.concatenate([np.zeros(rate // 10), y, np.zeros(rate // 10)])


for speaker, f0 in [("ann", 300), ("bob", 350), ("cat", 420), ("dan", 500)]:
    for kind in ["up", "down", "two"]:
        for i in range(10):
            pcm = whistle(kind, f0 * rng.uniform(0.95, 1.05), 0.4 * rng.uniform(0.9, 1.1))
            with wave.open(str(wav_dir / f"{kind}_{speaker}_{i}.wav"), "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(rate)
                w.writeframes((np.clip(pcm, -1, 1) * 32767).astype("<i2").tobytes())
print(len(list(wav_dir.glob("*.wav"))), "recordings")

# %% [markdown]
# ## 2. Encode, speaker-disjoint
#
# `--test-speakers dan` writes `train.h5` (the other speakers) and `test.h5` (dan's recordings).

# %%
data = work / "encoded"
assert crsnn_data(["encode", str(wav_dir), "--out", str(data), "--label-pattern", "^([a-z]+)_",
                   "--speaker-pattern", "^[a-z]+_([a-z]+)_", "--test-speakers", "dan", "--workers", "1",
                   "--quiet"]) == 0

with h5py.File(data / "test.h5") as f:
    times, units = f["spikes/times"][0], f["spikes/units"][0]
    label = f["extra/keys"][f["labels"][0]] if "extra/keys" in f else f["labels"][0]
label = label.decode() if isinstance(label, bytes) else label
fig, ax = plt.subplots(figsize=(8, 3))
ax.plot(times, units, ",", color="k")
ax.set(title=f"test sample 0 (class {label}): cochlea spikes", xlabel="time (s)", ylabel="channel")

# %% [markdown]
# ## 3. Train, export, verify on Lava
#
# `--channel-group 10` sums groups of 10 neighbouring channels (70 inputs), `--max-time 0.6`
# keeps the first 0.6 s (60 steps of 10 ms).

# %%
ckpt, nir_path = work / "whistles.pt", work / "whistles.nir"
assert crsnn_train(["--data", str(data), "--model", "crsnn", "--hidden", "32", "32", "--channel-group", "10",
                    "--max-time", "0.6", "--epochs", "30", "--lr", "0.01", "--seed", "0", "--out", str(ckpt),
                    "--no-progress", "--force"]) == 0

# %%
assert crsnn_export([str(ckpt), str(nir_path), "--check"]) == 0
assert verify_main([str(ckpt), str(nir_path), "--data", str(data), "-n", "all", "--out", str(work / "verify"),
                    "--no-progress"]) == 0
fig = plt.figure(figsize=(10, 4))
plt.imshow(plt.imread(work / "verify.png"))
plt.axis("off")

# %% [markdown]
# ## 4. Loihi 2 resources and NeuroBench metrics over the test speaker's recordings

# %%
assert report_main([str(nir_path), "--data", str(data), "-n", "all", "--json", str(work / "report.json")]) == 0
