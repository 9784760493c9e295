"""The training defaults on the gap-timing task: ``crsnn-train --model crsnn`` with no tuning flag
against ``--model delrec`` (same command, same epochs), and both with the previous defaults.

The task is the generated one of :mod:`crsnn.train.synthetic` (two bursts on the two halves of the
inputs; the class is the gap between them, 3 / 7 / 11 / 15 steps), with sparse background spikes
(``noise_rate=0.002``). Each run is ``python -m crsnn.train`` (QAT for the last quarter); the
figure is the integer (deployed) test accuracy of its best checkpoint.

    .venv/bin/python bench/gap_defaults.py [--seeds 0 1 2] [--epochs 20] [--jobs 2]
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ThreadPoolExecutor

from _common import WORK, mean_std, train_run, write_result
from tqdm import tqdm

TASK = "synthetic:noise_rate=0.002"
#: The defaults before the per-group learning rates (what ``crsnn-train`` used to do).
PREVIOUS = ["--lr", "1e-3", "--lr-kernel", "1e-3", "--dropout", "0.4", "--rec-dropout", "0.2",
            "--delay-init", "uniform:10:30", "--sigma0", "10"]
SETTINGS = {"defaults": [], "previous defaults": PREVIOUS}
WORK_DIR = WORK / "gap_defaults"


def common_args(hidden: list[int], epochs: int) -> list[str]:
    """The ``crsnn-train`` options every run of the gap-timing benchmarks shares."""
    return ["--data", TASK, "--hidden", *map(str, hidden), "--epochs", str(epochs), "--threads", "1", "--no-progress"]


def default_run(model: str, seed: int, hidden: list[int], epochs: int) -> dict:
    """The log of ``crsnn-train --model MODEL`` with the current defaults (trained on first use;
    shared with :mod:`dcls_accuracy`)."""
    return train_run([*common_args(hidden, epochs), "--model", model, "--seed", str(seed)],
                     WORK_DIR / f"default-{model}-seed{seed}.pt")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--hidden", type=int, nargs="+", default=[64, 64])
    ap.add_argument("--jobs", type=int, default=2, help="trainings run in parallel (one torch thread each)")
    ap.add_argument("--json", help="output JSON (default bench/results/gap_defaults.json)")
    args = ap.parse_args(argv)

    common = common_args(args.hidden, args.epochs)
    jobs = [(s, m, seed) for s in SETTINGS for m in ("crsnn", "delrec") for seed in args.seeds]

    def one(job):
        s, m, seed = job
        if not SETTINGS[s]:
            return job, default_run(m, seed, args.hidden, args.epochs)
        return job, train_run([*common, "--model", m, *SETTINGS[s], "--seed", str(seed)],
                              WORK_DIR / f"prev-{m}-seed{seed}.pt")

    runs: dict = {}
    with ThreadPoolExecutor(args.jobs) as pool:
        for (s, m, seed), log in tqdm(pool.map(one, jobs), total=len(jobs), desc="trainings", unit="run"):
            runs.setdefault(s, {}).setdefault(m, {})[seed] = {k: log["test"][k]["acc"] for k in ("float", "integer")}
    summary = {}
    print(f"\ngap task, {' x '.join(map(str, args.hidden))}, {args.epochs} epochs, seeds {args.seeds}: "
          "integer test accuracy, mean +- std")
    for s, by_model in runs.items():
        summary[s] = {}
        for m, by_seed in by_model.items():
            mean, std = mean_std([r["integer"] for r in by_seed.values()])
            summary[s][m] = {"integer_mean": mean, "integer_std": std}
            print(f"{s:<18}{m:<8}{100 * mean:8.2f} +- {100 * std:4.2f}")
        gap = summary[s]["delrec"]["integer_mean"] - summary[s]["crsnn"]["integer_mean"]
        summary[s]["delrec_minus_crsnn"] = gap
        print(f"{s:<18}DelRec - CRSNN: {100 * gap:+.2f} pp")
    write_result("gap_defaults", {"task": TASK, "train_args": common, "settings": SETTINGS, "seeds": args.seeds,
                                  "epochs": args.epochs, "summary": summary, "runs": runs}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
