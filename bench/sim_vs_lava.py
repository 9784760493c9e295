"""Integer simulators vs Lava fixed-point CPU simulator: throughput on a CRSNN-sized network.

Network: 700 -> 256 (conv k=3 recurrence, axonal delays 0..62) -> 256 (same) -> 20, binary
input, 100 steps; a dense-recurrence (DelRec) variant of the same sizes. For each batch size
(8, 32, 128 samples with conv recurrence; 32 and 128 with dense by default) the integer simulator
(:func:`crsnn.sim.torch_sim.simulate_torch`, the one the ``sim`` backend runs: on the CPU its
compiled loop, :mod:`crsnn.sim.native`), the same simulator through its torch operations (what
CUDA and a CPU without a compiler run), the NumPy reference (:func:`crsnn.sim.integer_sim.simulate`)
and Lava run the same samples in one process; spikes and readout are compared (they must be
identical). The simulators are timed over ``--repeats`` runs (min and median reported), Lava once
per configuration (side by side in one run, see crsnn.deploy.lava_network; ``--lava-sequential N``
also times N samples run one Lava run each, the naive way). The float32 GEMM rate of this machine
is measured in the same run on the first layer's feedforward shape; each feedforward part is
reported as the dense product's FLOPs over its time, as a fraction of that rate (the compiled
loop adds only the columns of inputs that spiked, so it can exceed 100 %). Everything runs on
``--threads`` threads (default 1). Writes
``bench/results/sim_vs_lava.json`` (or ``--json``) only when every run completes and matches.

    .venv/bin/python bench/sim_vs_lava.py [--samples 8 32 128] [--dense-samples 32 128] [--steps 100]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any, Callable

import numpy as np
import torch
from _common import write_result

from crsnn.deploy.lava_network import run_lava
from crsnn.sim import native, torch_sim
from crsnn.sim.compare import compare_runs
from crsnn.sim.integer_sim import simulate
from crsnn.sim.random_networks import random_crsnn


def timed(fn: Callable[[], Any], repeats: int) -> tuple[Any, list[float]]:
    """(last result, wall seconds of each of ``repeats`` calls)."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, times


def gemm_rate(m: int, k: int, n: int, repeats: int = 7) -> float:
    """float32 GEMM rate of this machine in FLOP/s (best of ``repeats``) for (m, k) @ (k, n)."""
    a, b = torch.randn(m, k), torch.randn(k, n)
    torch.mm(a, b)
    _, times = timed(lambda: torch.mm(a, b), repeats)
    return 2.0 * m * k * n / min(times)


def torch_ops_with_feedforward_time(net, x, device: str) -> tuple[Any, float]:
    """simulate_torch through its torch operations, and the seconds spent in its feedforward
    products (all layers)."""
    spent = [0.0]
    inner = torch_sim._feedforward64

    def wrapped(*a, **k):
        if device != "cpu":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = inner(*a, **k)
        if device != "cpu":
            torch.cuda.synchronize()
        spent[0] += time.perf_counter() - t0
        return out

    torch_sim._feedforward64 = wrapped
    try:
        res = torch_sim.simulate_torch(net, x, device=device, native=False)
    finally:
        torch_sim._feedforward64 = inner
    return res, spent[0]


def _stats(times: list[float]) -> dict[str, Any]:
    return {"min": min(times), "median": statistics.median(times), "repeats": len(times)}


def _ratio(slow: list[float], fast: list[float]) -> dict[str, float]:
    return {"min": min(slow) / min(fast), "median": statistics.median(slow) / statistics.median(fast)}


def run_config(net, x, args, dense: bool) -> dict[str, Any]:
    """One network and batch: the simulator (what the ``sim`` backend runs: the compiled loop on
    the CPU, else the torch operations), its torch operations, the NumPy reference and Lava, side
    by side; every output compared."""
    samples, steps = x.shape[0], x.shape[1]
    work = samples * steps
    compiled = torch_sim.runs_compiled_loop(args.device)
    torch_sim.simulate_torch(net, x[:1], device=args.device)  # warm-up (and the build, once)
    sim, sim_t = timed(lambda: torch_sim.simulate_torch(net, x, device=args.device), args.repeats)
    ops, ops_t = timed(lambda: torch_sim.simulate_torch(net, x, device=args.device, native=False), args.repeats)
    ref, np_t = timed(lambda: simulate(net, x), args.numpy_repeats)
    ops_ff_t = min(torch_ops_with_feedforward_time(net, x, args.device)[1] for _ in range(args.repeats))
    sim_ff_t = None
    if compiled:  # seconds of the compiled loop spent on the feedforward sums, all layers
        ff_times = []
        for _ in range(args.repeats):
            per_layer: list[float] = []
            native.simulate_native(net, x, timing=per_layer)
            ff_times.append(sum(per_layer))
        sim_ff_t = min(ff_times)
    same = [compare_runs(ref.hidden_spikes, ref.readout_v, r.hidden_spikes, r.readout_v) for r in (sim, ops)]
    t0 = time.perf_counter()
    lava = run_lava(net, x, timeout_s=3600)
    lava_s = time.perf_counter() - t0
    mm = compare_runs(sim.hidden_spikes, sim.readout_v, lava.hidden_spikes, lava.readout_v)
    sizes = [(l.n, l.ff.shape[1]) for l in net.layers]
    ff_flop = 2.0 * sum(a * b for a, b in sizes) * work  # the dense products' FLOPs
    row = {
        "recurrence": "dense" if dense else f"conv k={args.kernel}", "samples": samples, "steps": steps,
        "hidden_firing_rates": [float(s.mean()) for s in sim.hidden_spikes],
        "input_rate": float((x != 0).mean()),
        "simulator": "compiled loop, crsnn.sim.native;" if compiled else f"torch operations, {args.device};",
        "sim_s": _stats(sim_t), "torch_ops_s": _stats(ops_t), "numpy_sim_s": _stats(np_t),
        "lava_side_by_side_s": lava_s, "lava_repeats": 1, "lava_timings": lava.timings,
        "ratio_sim_over_lava": {"min": lava_s / min(sim_t), "median": lava_s / statistics.median(sim_t)},
        "ratio_sim_over_torch_ops": _ratio(ops_t, sim_t),
        "ratio_sim_over_numpy": _ratio(np_t, sim_t),
        "ratio_torch_ops_over_lava": {"min": lava_s / min(ops_t), "median": lava_s / statistics.median(ops_t)},
        "feedforward_dense_gflop": ff_flop / 1e9,
        "torch_ops_feedforward_s": ops_ff_t, "torch_ops_feedforward_gflop_per_s": ff_flop / ops_ff_t / 1e9,
        "sim_feedforward_s": sim_ff_t,
        "sim_feedforward_dense_equivalent_gflop_per_s": ff_flop / sim_ff_t / 1e9 if sim_ff_t else None,
        "mismatching_spikes": mm.spikes + sum(c.spikes for c in same),
        "mismatching_readout": mm.readout_values + sum(c.readout_values for c in same),
    }
    print(f"{row['recurrence']:>9}, {samples:4d} samples: simulator {min(sim_t):7.3f} s (median {statistics.median(sim_t):.3f})"
          f" | torch ops {min(ops_t):7.3f} s | numpy {min(np_t):7.3f} s | Lava {lava_s:7.2f} s"
          f" | sim/Lava {row['ratio_sim_over_lava']['min']:6.1f}x (median {row['ratio_sim_over_lava']['median']:.1f}x),"
          f" sim/torch ops {row['ratio_sim_over_torch_ops']['min']:4.1f}x"
          f" | mismatches {row['mismatching_spikes']} spikes, {row['mismatching_readout']} readout", flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, nargs="+", default=[8, 32, 128], help="batch sizes, conv recurrence")
    ap.add_argument("--dense-samples", type=int, nargs="*", default=[32, 128], help="batch sizes, dense recurrence")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    ap.add_argument("--kernel", type=int, default=3)
    ap.add_argument("--input-rate", type=float, default=0.02, help="input spike probability per channel and step")
    ap.add_argument("--lava-sequential", type=int, default=2, help="also run this many samples one Lava run each")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs of the simulator (and of its torch operations)")
    ap.add_argument("--numpy-repeats", type=int, default=3, help="timed runs of the NumPy simulator")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--device", default="cpu", help="device of the torch simulator (cpu, cuda)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", help="output JSON (default bench/results/sim_vs_lava.json)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    rows, nets = [], {}
    for dense, batches in ((False, args.samples), (True, args.dense_samples)):
        if not batches:
            continue
        rng = np.random.default_rng(args.seed)
        net = random_crsnn(rng, 700, args.hidden, 20, kernel=args.kernel, dense=dense, input_rate=args.input_rate)
        nets[dense] = net
        for b in batches:
            x = (np.random.default_rng([args.seed, b]).random((b, args.steps, 700)) < args.input_rate).astype(np.int64)
            rows.append(run_config(net, x, args, dense))

    # the machine's float32 GEMM rate on the first layer's feedforward shape, at the largest batch
    big = max(args.samples)
    rate = gemm_rate(args.hidden[0], 700, args.steps * big)
    for r in rows:
        r["torch_ops_feedforward_fraction_of_gemm_rate"] = r["torch_ops_feedforward_gflop_per_s"] * 1e9 / rate
        if r["sim_feedforward_dense_equivalent_gflop_per_s"]:
            r["sim_feedforward_fraction_of_gemm_rate"] = r["sim_feedforward_dense_equivalent_gflop_per_s"] * 1e9 / rate
    print(f"float32 GEMM ({args.hidden[0]} x 700 @ 700 x {args.steps * big}, {args.threads} thread(s)): "
          f"{rate / 1e9:.1f} GFLOP/s. Feedforward part, dense-product FLOPs / time, as a fraction of it: "
          + ", ".join(f"{r['recurrence']}/{r['samples']}: simulator "
                      f"{100 * r.get('sim_feedforward_fraction_of_gemm_rate', float('nan')):.0f} %, torch ops "
                      f"{100 * r['torch_ops_feedforward_fraction_of_gemm_rate']:.0f} %" for r in rows))

    # headline configuration (kept for bench/results_table.py): conv, 32 samples if measured
    head = next((r for r in rows if r["recurrence"] != "dense" and r["samples"] == 32), rows[0])
    net = nets[head["recurrence"] == "dense"]
    x = (np.random.default_rng([args.seed, head["samples"]]).random((head["samples"], args.steps, 700))
         < args.input_rate).astype(np.int64)
    seq_s = None
    if args.lava_sequential > 0:
        n = min(args.lava_sequential, head["samples"])
        t0 = time.perf_counter()
        for b in range(n):
            run_lava(net, x[b:b + 1], timeout_s=3600)
        seq_s = (time.perf_counter() - t0) / n * head["samples"]  # extrapolated to all samples
        print(f"Lava (one run per sample, {n} timed): {seq_s / head['samples']:8.3f} s/sample")
    work = head["samples"] * args.steps
    sim_s = head["sim_s"]["min"]
    mismatches = sum(r["mismatching_spikes"] for r in rows)
    readout = sum(r["mismatching_readout"] for r in rows)
    print(f"spike-for-spike over all runs: {mismatches} mismatching spikes, {readout} mismatching readout values")
    report = {
        "network": {"n_in": 700, "hidden": args.hidden, "n_out": 20, "kernel": args.kernel,
                    "dense": head["recurrence"] == "dense"},
        "samples": head["samples"], "steps": args.steps, "hidden_firing_rates": head["hidden_firing_rates"],
        "simulator": head["simulator"], "threads": args.threads,
        "sim_s": sim_s, "lava_side_by_side_s": head["lava_side_by_side_s"], "lava_sequential_s_extrapolated": seq_s,
        "sim_sample_steps_per_s": work / sim_s, "lava_sample_steps_per_s": work / head["lava_side_by_side_s"],
        "ratio_sim_over_lava": head["lava_side_by_side_s"] / sim_s,
        "numpy_sim_s": head["numpy_sim_s"]["min"], "torch_ops_s": head["torch_ops_s"]["min"],
        "gemm_float32_gflop_per_s": rate / 1e9,
        "runs": rows,
        "mismatching_spikes": mismatches, "mismatching_readout": readout,
    }
    if mismatches or readout:
        print("not writing the results: the runs differ")
        return 1
    write_result("sim_vs_lava", report, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
