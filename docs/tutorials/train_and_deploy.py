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
# # Train a CRSNN and deploy it bit-exact on Lava
#
# A recurrent spiking network with learnable axonal delays is trained with quantization-aware
# training, exported to NIR, and run on Lava's fixed-point CPU simulator (the Loihi 2 neuron and
# synapse arithmetic) next to crsnn's integer simulator: every spike and every readout value must
# be the same. The task is the built-in synthetic delay task (`--data synthetic`: the class is the
# gap between two bursts, so the network has to remember), small enough to run in about a minute
# on two cores. Open this file in Jupyter with jupytext, or run it with `python`.

# %%
import json
import os
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from crsnn.deploy.backends import run_batch
from crsnn.deploy.evaluate import binning_from_metadata, load_test_set
from crsnn.deploy.report import format_report, network_report
from crsnn.export.cli import main as crsnn_export
from crsnn.export.nir_reader import load_nir, read_graph
from crsnn.train.cli import main as crsnn_train

small = os.environ.get("CRSNN_TUTORIAL_SMALL") == "1"  # the tests' size
work = Path(os.environ.get("CRSNN_TUTORIAL_DIR") or tempfile.mkdtemp(prefix="crsnn-tutorial-"))
epochs, n_test = (15, 64) if small else (40, 512)

# %% [markdown]
# ## 1. Train with quantization-aware training
#
# `crsnn-train` (here called as a function with the same arguments): two hidden layers of 32
# neurons, a 3-tap convolutional recurrence through one learnable delay per neuron. The last
# quarter of the epochs trains the integer model (QAT), and the last line compares the float
# network with the integer simulator on the test split. 15 epochs (the tests' size) reach well
# above chance (25%), not the task's best: run with `CRSNN_TUTORIAL_SMALL=0` for 40.

# %%
ckpt = work / "crsnn.pt"
rc = crsnn_train(["--data", "synthetic:train=2048", "--model", "crsnn", "--hidden", "32", "32", "--kernel", "3",
                  "--epochs", str(epochs), "--lr", "0.01", "--seed", "0", "--out", str(ckpt), "--no-progress",
                  "--force"])
assert rc == 0

# %%
log = json.loads((work / "crsnn.log.json").read_text())
ep = log["epochs"]
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3))
ax1.plot([e["epoch"] for e in ep], [e["train_acc"] for e in ep], label="train")
ax1.plot([e["epoch"] for e in ep], [e["valid_acc"] for e in ep], label="valid")
qat_from = next((e["epoch"] for e in ep if e["phase"] != "float"), None)
if qat_from is not None:
    ax1.axvline(qat_from, color="grey", ls=":", label="QAT from here")
ax1.set(xlabel="epoch", ylabel="accuracy", title="training")
ax1.legend()
ax2.plot([e["epoch"] for e in ep], [e["delays0"]["mean"] for e in ep], label="layer 1")
ax2.plot([e["epoch"] for e in ep], [e["delays1"]["mean"] for e in ep], label="layer 2")
ax2.set(xlabel="epoch", ylabel="mean delay (steps)", title="learned axonal delays")
ax2.legend()

# %% [markdown]
# ## 2. Export to NIR
#
# `crsnn-export --check` writes the integer network (weights, integer delays, the Conv1d
# recurrence, Loihi 2's neuron parameters) and reads the file back to compare spikes.

# %%
nir_path = work / "crsnn.nir"
assert crsnn_export([str(ckpt), str(nir_path), "--check"]) == 0

# %% [markdown]
# ## 3. Lava next to the integer simulator
#
# The NIR file is read back into the integer network that both backends run. `lava-cpu` builds
# lava-nc processes on `Loihi2SimCfg(select_tag="fixed_pt")`; `sim` is crsnn's integer simulator.

# %%
net = load_nir(nir_path)
meta = dict(read_graph(nir_path).metadata or {})
test = load_test_set("synthetic", net, binning_from_metadata(meta), n_test)
print(f"{len(test.y)} test samples, {test.x.shape[1]} steps, {net.n_in} input channels")
sim = run_batch(net, test.x, backend="sim")
lava = run_batch(net, test.x, backend="lava-cpu")
mismatching_spikes = sum(int((a != b).sum()) for a, b in zip(sim.hidden_spikes, lava.hidden_spikes))
mismatching_readout = int((sim.readout_v != lava.readout_v).sum())
spikes = sum(int(s.sum()) for s in sim.hidden_spikes)
print(f"Lava vs integer simulator: {mismatching_spikes} mismatching spikes of {spikes}, "
      f"{mismatching_readout} mismatching readout values")
assert mismatching_spikes == 0 and mismatching_readout == 0

# %% [markdown]
# The readout's voltage summed over time is the class score, the same on both backends:

# %%
pred_sim = sim.readout_v.sum(axis=1).argmax(axis=1)
pred_lava = lava.readout_v.sum(axis=1).argmax(axis=1)
assert np.array_equal(pred_sim, pred_lava)
print(f"accuracy: integer simulator {np.mean(pred_sim == test.y):.1%}, Lava {np.mean(pred_lava == test.y):.1%} "
      f"(chance {1 / net.n_out:.0%})")

fig, axes = plt.subplots(1, 3, figsize=(11, 3), sharex=True)
axes[0].imshow(test.x[0].T, aspect="auto", cmap="Greys", interpolation="nearest")
axes[0].set(title="input", xlabel="step", ylabel="channel")
for ax, s, name in zip(axes[1:], sim.hidden_spikes, ["hidden 1", "hidden 2"]):
    t, n = np.nonzero(s[0])
    lt, ln = np.nonzero(lava.hidden_spikes[1][0] if name == "hidden 2" else lava.hidden_spikes[0][0])
    ax.plot(t, n, "|", color="tab:blue", ms=5, label="integer simulator")
    ax.plot(lt, ln, ".", color="tab:orange", ms=2, label="Lava")
    ax.set(title=f"{name}: sample 0", xlabel="step", ylabel="neuron")
axes[2].legend(loc="upper right", fontsize=7)

# %% [markdown]
# ## 4. Loihi 2 resources and NeuroBench metrics
#
# `crsnn-report NET.nir --data DATA` prints the same table: per layer neurons, synapses, delays,
# weight bits, neuron cores, and NeuroBench's metrics measured on the deployed integers over the
# test samples (footprint, connection and activation sparsity, effective vs dense synaptic
# operations, neuron updates).

# %%
rep = network_report(net, sim.hidden_spikes, test.x)
print(format_report(rep))
nb = rep["neurobench"]["workload"]["synaptic_operations"]
assert nb["effective_acs"] + nb["effective_macs"] < nb["dense"]
