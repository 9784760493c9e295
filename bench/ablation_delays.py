"""Ablation on the offline spoken-digit benchmark: learnable axonal delays vs fixed random delays
vs no delays on the CRSNN's recurrent path, several seeds each, mean +- std of the test accuracy.

Variants (everything else identical, including the spread schedule):

- ``learned``: delays drawn from ``--delay-init`` and trained (the CRSNN recipe);
- ``fixed``:   the same random draw, never updated (``--lr-delay 0``);
- ``none``:    every delay 0 (recurrent latency 1 step), not updated, no spread.

Each run is ``python -m crsnn.train`` (QAT for the last quarter of the epochs); the reported
accuracies are the float, QAT and integer (deployed arithmetic) accuracy of its best checkpoint on
the held-out speakers. Runs already finished with the same arguments are reused.

    .venv/bin/python bench/ablation_delays.py [--seeds 0 1 2] [--epochs 30] [--jobs 2]
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from _common import WORK, digits, mean_std, train_run, write_result
from tqdm import tqdm

VARIANTS = {
    "learned": [],
    "fixed": ["--lr-delay", "0"],
    "none": ["--delay-init", "constant:0", "--lr-delay", "0", "--sigma0", "0"],
}


def delay_change(ckpt: Path, seed: int) -> float:
    """Mean |integer delay after training - integer delay at initialisation| (time steps) over the
    recurrent neurons; the initial delays are rebuilt the way ``crsnn-train`` draws them (same seed)."""
    import torch

    from crsnn.models.network import build_model
    from crsnn.train.checkpoint import load_checkpoint

    model, _ = load_checkpoint(ckpt)
    torch.manual_seed(seed)
    init = build_model(model.config)
    moved = [(a.delays.detach().round() - b.delays.detach().round()).abs().flatten()
             for a, b in zip(model.layers, init.layers) if a.recurrence is not None]
    return float(torch.cat(moved).mean()) if moved else 0.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", help="SHD-layout folder (default: the offline benchmark, 100 per class, seed 0)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--hidden", type=int, nargs="+", default=[128, 128])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--jobs", type=int, default=2, help="trainings run in parallel (one torch thread each)")
    ap.add_argument("--json", help="output JSON (default bench/results/ablation_delays.json)")
    args = ap.parse_args(argv)

    data = Path(args.data) if args.data else digits(100, 0)
    work = WORK / "ablation"
    work.mkdir(parents=True, exist_ok=True)
    common = ["--data", str(data), "--model", "crsnn", "--hidden", *map(str, args.hidden), "--kernel", "3",
              "--epochs", str(args.epochs), "--channel-group", "5", "--max-time", "1.4", "--threads", "1",
              "--no-progress"]
    jobs = [(v, s) for v in args.variants for s in args.seeds]

    def one(job):
        v, s = job
        return job, train_run([*common, *VARIANTS[v], "--seed", str(s)], work / f"{v}-seed{s}.pt")

    runs: dict[str, dict[int, dict]] = {v: {} for v in args.variants}
    with ThreadPoolExecutor(args.jobs) as pool:
        for (v, s), log in tqdm(pool.map(one, jobs), total=len(jobs), desc="trainings", unit="run"):
            last = log["epochs"][-1]
            runs[v][s] = {mode: log["test"][mode]["acc"] for mode in ("float", "qat", "integer")}
            runs[v][s]["test_samples"] = log["test"]["integer"]["n"]
            runs[v][s]["delays_final"] = {k: last[k] for k in last if k.startswith("delays")}
            runs[v][s]["train_seconds"] = sum(e["time_s"] for e in log["epochs"])
            runs[v][s]["delay_change_steps"] = delay_change(work / f"{v}-seed{s}.pt", s)

    summary = {}
    print(f"\nCRSNN {' x '.join(map(str, args.hidden))}, {args.epochs} epochs, seeds {args.seeds}; "
          f"test accuracy on held-out speakers, mean +- std")
    print(f"{'delays':<10}{'float':>18}{'integer':>18}{'|d - d_init|':>14}")
    for v in args.variants:
        f_m, f_s = mean_std([r["float"] for r in runs[v].values()])
        i_m, i_s = mean_std([r["integer"] for r in runs[v].values()])
        moved = float(np.mean([r["delay_change_steps"] for r in runs[v].values()]))
        summary[v] = {"float_mean": f_m, "float_std": f_s, "integer_mean": i_m, "integer_std": i_s,
                      "mean_delay_change_steps": moved}
        print(f"{v:<10}{100 * f_m:>10.2f} +- {100 * f_s:4.2f}{100 * i_m:>10.2f} +- {100 * i_s:4.2f}{moved:>14.2f}")
    write_result("ablation_delays", {"data": str(data), "train_args": common, "variants": VARIANTS,
                                     "seeds": args.seeds, "summary": summary, "runs": runs}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
