"""Per-synapse (DCLS-style) delays next to the CRSNN and DelRec on the gap-timing task: integer
test accuracy, learned against frozen synaptic delays, parameters and synaptic operations.

The task, sizes, epochs and seeds are those of :mod:`gap_defaults` (whose CRSNN and DelRec runs
are reused: the same command trains them once). Variants, each ``crsnn-train`` with the defaults:

- ``dcls``: feedforward LIF layers with one learnable delay per synapse (``--model dcls``,
  integer delays 0..25 steps after QAT), no recurrence;
- ``dcls-frozen``: the same random initial synaptic delays, never updated (``--lr-delay 0``);
- ``dcls-netx``: ``dcls`` quantized within what lava-dl's netx format stores (``--target netx
  --vth 64``: weight exponents -1..0, biases in steps of 64), i.e. exportable with ``--format netx``;
- ``crsnn``, ``delrec``: recurrent, one learnable axonal delay per neuron.

Per run: the integer (deployed) test accuracy of its best checkpoint; parameters; synaptic
operations per test sample on the integer network (every input event or spike counts one per
non-zero outgoing synapse, recurrent ones included: :func:`crsnn.deploy.report.network_report`).
The FSDD leave-one-speaker-out figures of ``dcls`` are in ``bench/fsdd.py --models dcls ...``.

    .venv/bin/python bench/dcls_accuracy.py [--seeds 0 1 2] [--epochs 20] [--jobs 2]
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from _common import mean_std, train_run, write_result
from gap_defaults import TASK, WORK_DIR, common_args, default_run
from tqdm import tqdm

#: Options of the dcls variants on top of the defaults.
DCLS = {"dcls": ["--model", "dcls"], "dcls-frozen": ["--model", "dcls", "--lr-delay", "0"],
        "dcls-netx": ["--model", "dcls", "--target", "netx", "--vth", "64"]}
MODELS = ("dcls", "dcls-frozen", "dcls-netx", "crsnn", "delrec")
NAMES = {"dcls": "DCLS-style synaptic delays", "dcls-frozen": "synaptic delays frozen at random",
         "dcls-netx": "DCLS-style, netx profile", "crsnn": "CRSNN", "delrec": "DelRec"}


def cost_of(checkpoint: Path, samples: int = 256) -> dict:
    """Parameters of the trained model and synaptic operations per sample of its integer network
    on ``samples`` test samples of the task (integer simulator)."""
    from crsnn.deploy.report import network_report
    from crsnn.models.network import parameter_counts
    from crsnn.sim.torch_sim import simulate_torch
    from crsnn.train.checkpoint import load_checkpoint
    from crsnn.train.datasets import load_test_data

    model, info = load_checkpoint(checkpoint)
    net = model.to_integer()
    test = load_test_data(TASK, dt=info["dt"]).splits["test"]
    x, _ = next(test.eval_batches(samples))
    x = np.clip(x.numpy().astype(np.int64), 0, net.max_input())
    res = simulate_torch(net, x)
    rep = network_report(net, res.hidden_spikes, x)
    return {"parameters": parameter_counts(model.config)["total"], "synops_per_sample": rep["total"]["synops_per_sample"],
            "synapses": rep["total"]["synapses"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--hidden", type=int, nargs="+", default=[64, 64])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--jobs", type=int, default=2, help="trainings run in parallel (one torch thread each)")
    args = ap.parse_args(argv)

    common = common_args(args.hidden, args.epochs)
    jobs = [(m, seed) for m in args.models for seed in args.seeds]

    def one(job):
        m, seed = job
        if m in DCLS:
            out = WORK_DIR / f"{m}-seed{seed}.pt"
            return job, out, train_run([*common, *DCLS[m], "--seed", str(seed)], out)
        return job, WORK_DIR / f"default-{m}-seed{seed}.pt", default_run(m, seed, args.hidden, args.epochs)

    runs: dict = {}
    with ThreadPoolExecutor(args.jobs) as pool:
        for (m, seed), out, log in tqdm(pool.map(one, jobs), total=len(jobs), desc="trainings", unit="run"):
            runs.setdefault(m, {})[seed] = {**{k: log["test"][k]["acc"] for k in ("float", "integer")},
                                            **cost_of(out)}
    summary = {}
    print(f"\ngap task, {' x '.join(map(str, args.hidden))}, {args.epochs} epochs, seeds {args.seeds}: "
          "integer test accuracy, mean +- std; parameters; synaptic ops per sample")
    for m, by_seed in runs.items():
        mean, std = mean_std([r["integer"] for r in by_seed.values()])
        fmean, fstd = mean_std([r["float"] for r in by_seed.values()])
        ops = float(np.mean([r["synops_per_sample"] for r in by_seed.values()]))
        params = next(iter(by_seed.values()))["parameters"]
        summary[m] = {"integer_mean": mean, "integer_std": std, "float_mean": fmean, "float_std": fstd,
                      "parameters": params, "synops_per_sample": ops}
        print(f"{NAMES[m]:<36}{100 * mean:8.2f} +- {100 * std:5.2f}{params:>10,}{ops:>12,.0f}")
    write_result("dcls_accuracy", {"task": TASK, "train_args": common, "variants": DCLS, "seeds": args.seeds,
                                   "epochs": args.epochs, "hidden": args.hidden, "summary": summary, "runs": runs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
