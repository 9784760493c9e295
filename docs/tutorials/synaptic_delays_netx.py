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
# # Per-synapse delays to lava-dl's netx
#
# `--model dcls` learns one delay per feedforward synapse (DCLS-style: each delay is a Gaussian
# kernel position that narrows to an integer during training). `--target netx` keeps weights and
# biases within what lava-dl's netx HDF5 format stores, so the trained network runs on Intel's
# own netx loader (`netx.hdf5.Network`) on Lava, here checked spike for spike against crsnn's
# integer simulator. Open this file in Jupyter with jupytext, or run it with `python`.

# %%
import json
import os
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from crsnn.deploy.cli import verify_main
from crsnn.deploy.report import format_report, network_report
from crsnn.export.cli import integer_network_of
from crsnn.export.cli import main as crsnn_export
from crsnn.train.cli import main as crsnn_train

small = os.environ.get("CRSNN_TUTORIAL_SMALL") == "1"  # the tests' size
work = Path(os.environ.get("CRSNN_TUTORIAL_DIR") or tempfile.mkdtemp(prefix="crsnn-tutorial-"))
epochs, n_verify = (15, 8) if small else (40, 64)

# %% [markdown]
# ## 1. Train synaptic delays (up to 12 steps) with the netx profile
#
# `--vth 64` and `--target netx`: weight exponents -1..0 and biases in steps of 64, what netx
# 0.6.0 can hold. The task is the synthetic delay task (the class is the gap between two bursts).

# %%
ckpt = work / "dcls.pt"
assert crsnn_train(["--data", "synthetic:train=2048", "--model", "dcls", "--hidden", "32", "32", "--max-delay", "12",
                    "--target", "netx", "--vth", "64", "--epochs", str(epochs), "--lr", "0.01", "--seed", "0",
                    "--out", str(ckpt), "--no-progress", "--force"]) == 0

# %% [markdown]
# The deployed delays are integers 0..12 (time steps), one per synapse with a non-zero weight:

# %%
_, _, net = integer_network_of(ckpt)
fig, axes = plt.subplots(1, 2, figsize=(9, 3))
for ax, (li, layer) in zip(axes, enumerate(net.hidden)):
    d = layer.ff.delays[layer.ff.effective() != 0]
    ax.hist(d, bins=np.arange(-0.5, 13.5, 1.0), color="tab:green")
    ax.set(title=f"hidden {li + 1}: {d.size} synapses", xlabel="delay (steps)", ylabel="synapses")
    print(f"hidden {li + 1}: delays {d.min()}..{d.max()}, mean {d.mean():.2f} steps")

# %% [markdown]
# ## 2. Export to lava-dl's netx HDF5
#
# `crsnn-export --format netx --check` writes the file and reads it back with crsnn's netx reader
# to compare spikes; a network netx cannot express (recurrent axonal delays, weight exponents
# beyond 0, biases not in steps of 64) is refused with the layer and the reason.

# %%
netx_path = work / "dcls.net.h5"
assert crsnn_export([str(ckpt), str(netx_path), "--format", "netx", "--check"]) == 0

# %% [markdown]
# ## 3. netx's own loader on Lava against the integer simulator
#
# `crsnn-verify CHECKPOINT NET.h5` builds the network with `netx.hdf5.Network` (lava-dl's loader,
# not crsnn's) on Lava's fixed-point CPU simulator and compares it with the integer simulator and
# the float model on test samples; it writes a raster plot and a JSON report.

# %%
assert verify_main([str(ckpt), str(netx_path), "--data", "synthetic", "-n", str(n_verify),
                    "--out", str(work / "verify"), "--no-progress"]) == 0
rep = json.loads((work / "verify.json").read_text())
assert rep["mismatching_spikes"] == 0 and rep["mismatching_readout_values"] == 0
fig = plt.figure(figsize=(10, 4))
plt.imshow(plt.imread(work / "verify.png"))
plt.axis("off")

# %% [markdown]
# ## 4. Loihi 2 resources and NeuroBench metrics
#
# Every delayed synapse costs 6 delay bits on Loihi 2 (in the synapse memory estimate) and one
# stored byte in the footprint; its synaptic operations count once per spike it carries, whatever
# its delay. NeuroBench itself could not see the delays of such a network: they are not a module
# it hooks.

# %%
from crsnn.deploy.evaluate import binning_from_metadata, load_test_set
from crsnn.deploy.backends import run_batch

test = load_test_set("synthetic", net, binning_from_metadata(net.metadata), 64)
sim = run_batch(net, test.x, backend="sim")
print(format_report(network_report(net, sim.hidden_spikes, test.x)))
