"""Integer simulator vs Lava fixed-point CPU simulator: throughput on a CRSNN-sized network.

Network: 700 -> 256 (conv k=3 recurrence, axonal delays 0..62) -> 256 (same) -> 20, binary
input, 100 steps, 32 samples (defaults). Both executors run the same samples in one process;
the spikes and readout are compared (they must be identical) and the throughput of each is
printed in samples x steps per second, with their ratio. Lava runs the batch as side-by-side
copies in one run (see crsnn.deploy.lava_network); ``--lava-sequential N`` also times N samples
run one Lava run each, the naive way. Writes ``bench/results/sim_vs_lava.json`` (or ``--json``).

    .venv/bin/python bench/sim_vs_lava.py [--samples 32] [--steps 100]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from _common import write_result

from crsnn.deploy.lava_network import run_lava
from crsnn.sim.compare import compare_runs
from crsnn.sim.integer_sim import simulate
from crsnn.sim.random_networks import random_crsnn


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    ap.add_argument("--kernel", type=int, default=3)
    ap.add_argument("--dense", action="store_true", help="dense (DelRec) recurrence instead of conv")
    ap.add_argument("--input-rate", type=float, default=0.02, help="input spike probability per channel and step")
    ap.add_argument("--lava-sequential", type=int, default=2, help="also run this many samples one Lava run each")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", help="output JSON (default bench/results/sim_vs_lava.json)")
    args = ap.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    net = random_crsnn(rng, 700, args.hidden, 20, kernel=args.kernel, dense=args.dense, input_rate=args.input_rate)
    x = (rng.random((args.samples, args.steps, 700)) < args.input_rate).astype(np.int64)
    work = args.samples * args.steps

    t0 = time.perf_counter()
    ref = simulate(net, x)
    sim_s = time.perf_counter() - t0
    rates = [float(s.mean()) for s in ref.hidden_spikes]
    print(f"network: 700 -> {' -> '.join(map(str, args.hidden))} -> 20, "
          f"{'dense' if args.dense else f'conv k={args.kernel}'} recurrence, delays 0..62; "
          f"{args.samples} samples x {args.steps} steps; hidden firing rates {', '.join(f'{r:.3f}' for r in rates)}")
    print(f"integer simulator: {sim_s:8.3f} s  {work / sim_s:12.1f} sample-steps/s")

    t0 = time.perf_counter()
    lava = run_lava(net, x, timeout_s=3600)
    lava_s = time.perf_counter() - t0
    mm = compare_runs(ref.hidden_spikes, ref.readout_v, lava.hidden_spikes, lava.readout_v)
    print(f"Lava (side by side, one run): {lava_s:8.3f} s  {work / lava_s:12.1f} sample-steps/s "
          f"(build {lava.timings['build_s']:.2f} s, compile+run {lava.timings['run_s']:.2f} s, "
          f"reading results back {lava.timings['readout_s']:.2f} s)")
    seq_s = None
    if args.lava_sequential > 0:
        n = min(args.lava_sequential, args.samples)
        t0 = time.perf_counter()
        for b in range(n):
            run_lava(net, x[b:b + 1], timeout_s=3600)
        seq_s = (time.perf_counter() - t0) / n * args.samples  # extrapolated to all samples
        print(f"Lava (one run per sample, {n} timed): {seq_s / args.samples:8.3f} s/sample  "
              f"{work / seq_s:12.1f} sample-steps/s")
    print(f"spike-for-spike: {mm.spikes} mismatching spikes, {mm.readout_values} mismatching readout values")
    ratio = lava_s / sim_s
    print(f"throughput ratio integer simulator / Lava (side by side): {ratio:.1f}x"
          + (f"; / Lava (one run per sample): {seq_s / sim_s:.1f}x" if seq_s else ""))
    report = {
        "network": {"n_in": 700, "hidden": args.hidden, "n_out": 20, "kernel": args.kernel, "dense": args.dense},
        "samples": args.samples, "steps": args.steps, "hidden_firing_rates": rates,
        "sim_s": sim_s, "lava_side_by_side_s": lava_s, "lava_sequential_s_extrapolated": seq_s,
        "sim_sample_steps_per_s": work / sim_s, "lava_sample_steps_per_s": work / lava_s,
        "ratio_sim_over_lava": ratio, "mismatching_spikes": mm.spikes, "mismatching_readout": mm.readout_values,
    }
    write_result("sim_vs_lava", report, args.json)
    return 0 if mm.exact else 1


if __name__ == "__main__":
    sys.exit(main())
