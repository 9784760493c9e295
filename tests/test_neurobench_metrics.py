"""NeuroBench metrics of the deployed integer network (crsnn.deploy.neurobench_metrics), checked
against the real ``neurobench`` package (2.3.0) on snnTorch networks with the same weights and the
same spikes: where NeuroBench can see the network (``nn.Linear`` + ``snn.Leaky``) every figure
agrees; where it cannot (a convolutional recurrence through axonal delays, written as functions
as in a CRSNN), its synaptic operations and connection sparsity miss exactly the recurrent part."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from crsnn.deploy.neurobench_metrics import format_neurobench, neurobench_metrics, static_metrics
from crsnn.deploy.report import format_report, network_report
from crsnn.models.integer import Connection, IntegerNetwork, Layer, LIFParams, Recurrence
from crsnn.sim.torch_sim import simulate_torch

snn = pytest.importorskip("snntorch")
neurobench = pytest.importorskip("neurobench")


def _net(rng: np.random.Generator, sizes: list[int], n_out: int, rec: bool) -> IntegerNetwork:
    """Integrate-and-fire layers whose integer dynamics a float snn.Leaky reproduces exactly: no
    current memory (du = 4095), no leak (dv = 0), no bias, weight exponent 0, reset to zero."""
    hidden = []
    for n_src, n in zip(sizes[:-1], sizes[1:]):
        w = rng.integers(0, 6, (n, n_src)) * (rng.random((n, n_src)) < 0.6)  # excitatory, ~45% zeros
        r = Recurrence(delays=rng.integers(0, 6, n), kernel=[-6, -4, 0, -4, -6]) if rec else None
        hidden.append(Layer(Connection(w), LIFParams(n, du=4095, dv=0, vth=6), r))
    w_out = rng.integers(-3, 4, (n_out, sizes[-1]))
    return IntegerNetwork(n_in=sizes[0], hidden=hidden, readout=Layer(Connection(w_out), LIFParams(n_out, vth=131071)))


class Mirror(nn.Module):
    """The integer network as snnTorch: nn.Linear feedforward weights (the effective integers),
    snn.Leaky(beta=1, reset to zero at once) neurons, a plain nn.Linear readout; a recurrence is
    F.conv1d of the spikes each neuron emitted 1 + delay steps before (what NeuroBench cannot see).
    Called once per step by NeuroBench's SNNTorchModel; its time runs one step ahead of Lava's per
    layer (no synaptic latency)."""

    def __init__(self, net: IntegerNetwork):
        super().__init__()
        self.fcs = nn.ModuleList()
        self.lifs = nn.ModuleList()
        self.recs = []
        for layer in net.hidden:
            fc = nn.Linear(*layer.ff.shape[::-1], bias=False)
            fc.weight.data = torch.tensor(layer.ff.effective(), dtype=torch.float32)
            self.fcs.append(fc)
            self.lifs.append(snn.Leaky(beta=1.0, threshold=float(layer.neuron.vth), reset_mechanism="zero",
                                       reset_delay=False))
            rec = layer.rec
            self.recs.append(None if rec is None else (torch.tensor(rec.effective_kernel(), dtype=torch.float32),
                                                       torch.tensor(rec.delays)))
        self.readout = nn.Linear(*net.readout.ff.shape[::-1], bias=False)
        self.readout.weight.data = torch.tensor(net.readout.ff.effective(), dtype=torch.float32)
        self.reset()

    def reset(self) -> None:
        self.mems: list[torch.Tensor | None] = [None] * len(self.lifs)
        self.history: list[list[torch.Tensor]] = [[] for _ in self.lifs]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        src = x
        for i, (fc, lif, rec) in enumerate(zip(self.fcs, self.lifs, self.recs)):
            cur = fc(src)
            hist = self.history[i]
            if rec is not None and hist:
                kernel, delays = rec
                past = torch.stack(hist)  # (steps so far, batch, n)
                idx = len(hist) - 1 - delays  # the step each neuron's arriving spike was emitted
                ok = idx >= 0
                delayed = torch.zeros_like(cur)
                cols = torch.nonzero(ok).flatten()
                delayed[:, cols] = past[idx[cols], :, cols].T
                cur = cur + F.conv1d(delayed[:, None, :], kernel.view(1, 1, -1), padding="same")[:, 0]
            mem = self.mems[i] if self.mems[i] is not None else torch.zeros_like(cur)
            src, self.mems[i] = lif(cur, mem)
            hist.append(src)
        return self.readout(src), src


def _integer_run(net: IntegerNetwork, x: np.ndarray) -> list[np.ndarray]:
    return simulate_torch(net, x).hidden_spikes


def _mirror_spikes(mirror: Mirror, x: np.ndarray) -> list[np.ndarray]:
    mirror.reset()
    out = [[] for _ in mirror.lifs]
    with torch.no_grad():
        for t in range(x.shape[1]):
            mirror(torch.tensor(x[:, t], dtype=torch.float32))
            for i, h in enumerate(mirror.history):
                out[i].append(h[-1].numpy().astype(bool))
    return [np.stack(o, axis=1) for o in out]


def _neurobench(mirror: Mirror, x: np.ndarray) -> dict:
    from neurobench.benchmarks import Benchmark
    from neurobench.metrics.static import ConnectionSparsity, Footprint
    from neurobench.metrics.workload import ActivationSparsity, MembraneUpdates, SynapticOperations
    from neurobench.models import SNNTorchModel

    data = torch.utils.data.TensorDataset(torch.tensor(x, dtype=torch.float32), torch.zeros(len(x), dtype=torch.long))
    loader = torch.utils.data.DataLoader(data, batch_size=4)
    bench = Benchmark(SNNTorchModel(mirror), loader, [], [],
                      [[Footprint, ConnectionSparsity], [ActivationSparsity, SynapticOperations, MembraneUpdates]])
    return bench.run(quiet=True)


def _data(rng: np.random.Generator, net: IntegerNetwork, batch: int, steps: int, pad: int) -> np.ndarray:
    x = (rng.random((batch, steps + pad, net.n_in)) < 0.3).astype(np.int64)
    x[:, steps:] = 0  # the last `pad` steps let every layer's latency run out inside the window
    return x


def _aligned(net: IntegerNetwork, x: np.ndarray, mirror: Mirror) -> list[np.ndarray]:
    """The integer simulator's hidden spikes, after checking that the mirror emits the same ones
    (layer l one + l steps earlier) and none that the integer window would cut."""
    ints, mirs = _integer_run(net, x), _mirror_spikes(mirror, x)
    for li, (si, sm) in enumerate(zip(ints, mirs)):
        lag = li + 1
        assert np.array_equal(si[:, lag:], sm[:, :-lag]), f"layer {li}: the snnTorch mirror spikes differently"
        assert not sm[:, -lag:].any() and not si[:, :lag].any()
    assert sum(int(s.sum()) for s in ints) > 100
    return ints


def test_feedforward_lif_network_agrees_with_neurobench_on_every_metric():
    rng = np.random.default_rng(3)
    net = _net(rng, [20, 16, 12], 4, rec=False)
    x = _data(rng, net, batch=8, steps=30, pad=4)
    spikes = _aligned(net, x, mirror := Mirror(net))
    ours = neurobench_metrics(net, x, spikes)
    state_bytes = sum(lif.mem.numel() * lif.mem.element_size() for lif in mirror.lifs)  # the last run's
    nb = _neurobench(mirror, x)
    w = ours["workload"]
    syn = w["synaptic_operations"]
    assert nb["SynapticOperations"]["Effective_ACs"] == pytest.approx(syn["effective_acs"], rel=1e-12)
    assert nb["SynapticOperations"]["Effective_MACs"] == syn["effective_macs"] == 0
    assert nb["SynapticOperations"]["Dense"] == pytest.approx(syn["dense"], rel=1e-12)
    assert nb["ActivationSparsity"] == pytest.approx(w["activation_sparsity"], abs=1e-12)
    assert nb["ConnectionSparsity"] == pytest.approx(ours["connection_sparsity"], abs=5e-5)  # it rounds to 4 places
    # footprint: NeuroBench counts 4 bytes per float32 weight plus snnTorch's neuron buffers,
    # among them the membrane state left by the last batch run (so it depends on the batch size);
    # the deployed network stores 1 byte per weight plus its integer neuron parameters
    weights = sum(layer.ff.weights.size for layer in net.layers)
    neuron_buffers = sum(b.numel() * b.element_size() for lif in mirror.lifs
                         for name, b in lif.named_buffers() if name != "mem")
    assert nb["Footprint"] == 4 * weights + neuron_buffers + state_bytes
    n_neurons = sum(layer.n for layer in net.layers)
    assert ours["footprint_bytes"] == weights + 3 * n_neurons + 8 * len(net.layers)
    # neuron updates: Loihi updates every neuron every step; NeuroBench counts the changed membranes
    # of the snnTorch neuron modules (not the readout)
    assert nb["MembraneUpdates"] < w["neuron_updates"]
    # the effective operations are the report's synaptic operations per sample
    rep = network_report(net, spikes, x)
    assert rep["total"]["synops_per_sample"] == pytest.approx(syn["effective_acs"] + syn["effective_macs"])


def test_conv_recurrence_through_delays_is_invisible_to_neurobench():
    rng = np.random.default_rng(4)
    net = _net(rng, [24, 20], 3, rec=True)
    x = _data(rng, net, batch=8, steps=30, pad=3)
    spikes = _aligned(net, x, mirror := Mirror(net))
    ours = neurobench_metrics(net, x, spikes)
    nb = _neurobench(mirror, x)
    per_layer = ours["workload"]["synaptic_operations_per_layer"]
    s = spikes[0]
    rec_ops = float((s.sum(axis=1) * np.count_nonzero(net.hidden[0].rec.effective(), axis=0)).sum()) / len(x)
    assert rec_ops > 0
    syn = ours["workload"]["synaptic_operations"]
    # NeuroBench sees the two nn.Linear layers only: it misses exactly the recurrent operations
    assert nb["SynapticOperations"]["Effective_ACs"] == pytest.approx(syn["effective_acs"] - rec_ops, rel=1e-12)
    band = 5 * 20 - 2 - 4  # a 5-tap "same" convolution over 20 neurons: 94 synapses
    assert nb["SynapticOperations"]["Dense"] == pytest.approx(syn["dense"] - x.shape[1] * band, rel=1e-12)
    assert per_layer[0]["effective_ops"] > nb["SynapticOperations"]["Effective_ACs"] - per_layer[1]["effective_ops"]
    # the spikes are the same (the neurons are snnTorch modules): activation sparsity agrees
    assert nb["ActivationSparsity"] == pytest.approx(ours["workload"]["activation_sparsity"], abs=1e-12)
    # connection sparsity: the kernel (one zero tap of five) is not among NeuroBench's weights
    ff_zeros = sum(int((l.ff.effective() == 0).sum()) for l in net.layers)
    ff_all = sum(l.ff.weights.size for l in net.layers)
    assert nb["ConnectionSparsity"] == pytest.approx(ff_zeros / ff_all, abs=5e-5)
    assert ours["connection_sparsity"] == pytest.approx((ff_zeros + 1) / (ff_all + 5))


def test_static_metrics_count_delays_kernels_and_graded_inputs_as_macs():
    ff = np.array([[2, 0], [4, 6], [0, 0]])
    rec = Recurrence(delays=[0, 5, 62], kernel=[2, 0, 2])
    net = IntegerNetwork(n_in=2, hidden=[Layer(Connection(ff), LIFParams(3, vth=0), rec)],
                         readout=Layer(Connection(np.array([[2, 2, 2]])), LIFParams(1, vth=131071)),
                         input_message_bits=3)
    st = static_metrics(net)
    # ff 6 + kernel 3 + 3 delays + readout 3 weights; 2 per neuron (bias mantissa, exponent) + 3 per population
    assert st["parameters"] == 6 + 3 + 3 + 3 + 2 * 4 + 3 * 2
    assert st["footprint_bytes"] == 6 + 3 + 3 + 3 + 3 * 4 + 8 * 2
    assert st["connection_sparsity"] == pytest.approx(4 / 12)  # ff 3 zeros + kernel 1 zero, of 6 + 3 + 3
    # over the synapse matrices: ff 3/6, conv band 7 synapses (3 zero after the middle tap), readout 0/3
    assert st["connection_sparsity_synapses"] == pytest.approx((3 + 3) / (6 + 7 + 3))
    x = np.zeros((2, 4, 2), np.int64)
    x[0, 0, 0] = 5  # a graded payload: NeuroBench counts a multiply-accumulate per non-zero synapse
    spikes = [np.zeros((2, 4, 3), bool)]
    spikes[0][0, 2, 1] = True
    m = neurobench_metrics(net, x, spikes)["workload"]
    assert m["synaptic_operations"]["effective_macs"] == 2 / 2
    assert m["synaptic_operations"]["effective_acs"] == (2 + 1) / 2  # 2 recurrent + 1 readout
    assert m["synaptic_operations"]["dense"] == 4 * (6 + 7 + 3)
    assert m["activation_sparsity"] == 1 - 1 / (2 * 4 * 3)
    assert m["neuron_updates"] == 4 * 4
    text = format_report(network_report(net, spikes, x))
    assert "NeuroBench (deployed integers): footprint" in text and "1 effective MACs vs 64 dense" in text
    assert "activation sparsity" not in format_neurobench(neurobench_metrics(net))
