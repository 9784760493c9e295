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
# # Bring an snnTorch network to Lava and Loihi 2
#
# A network built the way snnTorch's tutorials build them (`nn.Linear` layers between `RLeaky`
# and `Leaky` neurons) is exported with snnTorch's own NIR exporter, converted by `crsnn-import`
# into Loihi 2's fixed-point integers, run on Lava next to crsnn's integer simulator (bit-exact),
# and measured twice: by NeuroBench on the snnTorch module, and by `crsnn-report` on the deployed
# integers. Open this file in Jupyter with jupytext, or run it with `python`.

# %%
import json
import os
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import nir
import numpy as np
import snntorch as snn
import torch
from snntorch.export_nir import export_to_nir

from crsnn.deploy.backends import loihi2_missing, run_batch
from crsnn.deploy.report import format_report, network_report
from crsnn.export.import_cli import main as crsnn_import
from crsnn.export.nir_reader import load_nir

work = Path(os.environ.get("CRSNN_TUTORIAL_DIR") or tempfile.mkdtemp(prefix="crsnn-tutorial-"))
N_IN, N_HID, N_OUT, DT = 20, 32, 6, 1e-4  # DT: the step snnTorch's exporter assumes (seconds)

# %% [markdown]
# ## 1. An snnTorch network, exported by snnTorch
#
# snnTorch's exporter needs per-neuron parameters (a tensor `beta` and `threshold`). The weights
# are drawn wide enough that every layer spikes on 10% input activity (an untrained network: the
# point here is the conversion, not a task).

# %%
def vec(n: int, x: float) -> torch.Tensor:
    return torch.full((n,), float(x))


torch.manual_seed(0)
fc1, fc2 = torch.nn.Linear(N_IN, N_HID), torch.nn.Linear(N_HID, N_OUT)
with torch.no_grad():
    fc1.weight.normal_(0.0, 0.5)
    fc2.weight.normal_(0.0, 0.4)
hidden = snn.RLeaky(beta=vec(N_HID, 0.9), linear_features=N_HID, threshold=vec(N_HID, 1.0), init_hidden=True,
                    reset_mechanism="zero")
with torch.no_grad():
    hidden.recurrent.weight.normal_(0.0, 0.2)
out = snn.Leaky(beta=vec(N_OUT, 0.9), threshold=vec(N_OUT, 1.0), init_hidden=True, reset_mechanism="zero",
                output=True)
net_torch = torch.nn.Sequential(fc1, hidden, fc2, out)
graph_path = work / "snntorch.nir"
nir.write(str(graph_path), export_to_nir(net_torch, torch.zeros(1, N_IN), ignore_dims=[0]))
print(sorted(nir.read(str(graph_path)).nodes))

# %% [markdown]
# ## 2. `crsnn-import`: onto Loihi 2's integers
#
# `--dt` is the step in seconds (snnTorch's time constants are in seconds in its graph). The
# report compares, on random inputs, the float simulation of the graph's NIR semantics with the
# quantized integer network: spike-count correlation per layer, and what each quantization step
# costs with `--explain`.

# %%
crsnn_graph = work / "crsnn.nir"
rc = crsnn_import([str(graph_path), str(crsnn_graph), "--dt", str(DT), "--json", str(work / "import.json")])
assert rc == 0
fidelity = json.loads((work / "import.json").read_text())

# %% [markdown]
# ## 3. Lava next to the integer simulator, and the Loihi 2 backend
#
# The imported network runs on Lava's fixed-point CPU simulator and on the integer simulator on
# the same Poisson inputs; they agree spike for spike. `crsnn-run --backend loihi2` needs Intel's
# lava-loihi and a board, and says what is missing when they are not there.

# %%
net = load_nir(crsnn_graph)
rng = np.random.default_rng(1)
x = (rng.random((8, 100, N_IN)) < 0.1).astype(np.int64)  # 8 samples x 100 steps
sim = run_batch(net, x, backend="sim")
lava = run_batch(net, x, backend="lava-cpu")
assert all(np.array_equal(a, b) for a, b in zip(sim.hidden_spikes, lava.hidden_spikes))
assert np.array_equal(sim.readout_v, lava.readout_v)
print(f"Lava == integer simulator: {int(sim.hidden_spikes[0].sum())} hidden spikes, "
      f"{sim.readout_v.size} readout values, 0 differ")
print("Loihi 2 hardware here:", "; ".join(loihi2_missing()) or "available")

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3))
t, n = np.nonzero(sim.hidden_spikes[0][0])
lt, ln = np.nonzero(lava.hidden_spikes[0][0])
ax1.plot(t, n, "|", ms=5, label="integer simulator")
ax1.plot(lt, ln, ".", ms=2, label="Lava")
ax1.set(title="RLeaky layer on Loihi 2 integers, sample 0", xlabel="step", ylabel="neuron")
ax1.legend(fontsize=7, loc="upper right")
ax2.plot(sim.readout_v[0], lw=0.8)
ax2.set(title="readout voltages (integer units), sample 0", xlabel="step")

# %% [markdown]
# ## 4. NeuroBench on the snnTorch module, `crsnn-report` on the deployed integers
#
# NeuroBench measures the float snnTorch module (its spikes, its float32 parameters); `crsnn-report`
# measures the integer network Loihi 2 would run (its spikes, its 8-bit weights). Both count
# a synaptic operation per spike and non-zero outgoing weight, and both see this network's
# synapses (`RLeaky`'s recurrence is an `nn.Linear`, which NeuroBench hooks). Where they differ:
#
# - footprint: 4 bytes per float32 parameter and snnTorch's buffers, against 1 byte per weight;
# - connection sparsity: quantization rounds a few small weights to 0;
# - activation sparsity and effective operations: the two networks do not emit the same spikes
#   (quantization, and snnTorch's delayed zero reset, which also drops the input of the step
#   after a spike, where NIR's LIF and Loihi keep it), and NeuroBench also counts the output
#   `Leaky` layer's spikes as activations;
# - NeuroBench counts `RLeaky`'s recurrent operations twice: with `reset_mechanism="zero"`,
#   snnTorch calls the recurrent `nn.Linear` twice per step (once for the state, once for the
#   reset), and NeuroBench's hook counts every call. The dense counts differ by exactly one
#   recurrent matrix per step.

# %%
from neurobench.benchmarks import Benchmark
from neurobench.metrics.static import ConnectionSparsity, Footprint
from neurobench.metrics.workload import ActivationSparsity, SynapticOperations
from neurobench.models import SNNTorchModel

data = torch.utils.data.TensorDataset(torch.tensor(x, dtype=torch.float32), torch.zeros(len(x), dtype=torch.long))
nb = Benchmark(SNNTorchModel(net_torch), torch.utils.data.DataLoader(data, batch_size=8), [], [],
               [[Footprint, ConnectionSparsity], [ActivationSparsity, SynapticOperations]]).run(quiet=True)
rep = network_report(net, sim.hidden_spikes, x)
ours = rep["neurobench"]
print(f"{'':24}{'NeuroBench (snnTorch)':>24}{'crsnn-report (integers)':>26}")
print(f"{'footprint (bytes)':24}{nb['Footprint']:>24}{ours['footprint_bytes']:>26}")
print(f"{'connection sparsity':24}{nb['ConnectionSparsity']:>24.4f}{ours['connection_sparsity']:>26.4f}")
print(f"{'activation sparsity':24}{nb['ActivationSparsity']:>24.4f}{ours['workload']['activation_sparsity']:>26.4f}")
print(f"{'effective ACs / sample':24}{nb['SynapticOperations']['Effective_ACs']:>24.0f}"
      f"{ours['workload']['synaptic_operations']['effective_acs']:>26.0f}")
print(f"{'dense ops / sample':24}{nb['SynapticOperations']['Dense']:>24.0f}"
      f"{ours['workload']['synaptic_operations']['dense']:>26.0f}")
print()
print(format_report(rep))
steps = x.shape[1]
assert nb["SynapticOperations"]["Dense"] == ours["workload"]["synaptic_operations"]["dense"] + steps * N_HID * N_HID
rec_ops = ours["workload"]["synaptic_operations_per_layer"][0]["effective_ops"] - float(
    (np.count_nonzero(x, axis=1) * np.count_nonzero(net.hidden[0].ff.effective(), axis=0)).sum()) / len(x)
print(f"\ndense: NeuroBench - crsnn = {steps} steps x {N_HID} x {N_HID} recurrent synapses (counted twice there); "
      f"crsnn's effective ops with the recurrent ones counted twice: "
      f"{ours['workload']['synaptic_operations']['effective_acs'] + rec_ops:.0f}")
