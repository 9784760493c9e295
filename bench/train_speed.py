"""Training throughput (samples/s) of the CRSNN and DelRec layers on this CPU, and inference.

One training step = forward, backward and optimizer step on a random batch (``--batch`` samples of
``--steps`` time steps, 140 inputs); timed in the three regimes a run goes through: float at the
first epoch's delay spread (sigma 10: wide triangles, many taps), float at the last spread, and
QAT (integer delays, integer arithmetic). Best of ``--repeat``. Uses :mod:`crsnn.train.speed`.

    .venv/bin/python bench/train_speed.py [--hidden 256 256] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys

import torch
from _common import write_result

from crsnn.train.speed import measure


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1, what crsnn-train uses)")
    ap.add_argument("--json", help="output JSON (default bench/results/train_speed.json)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"{' x '.join(map(str, args.hidden))} hidden, 140 inputs, T={args.steps}, batch {args.batch}, "
          f"{torch.get_num_threads()} thread(s); best of {args.repeat}")
    rows = []
    for model in ("crsnn", "delrec"):
        for mode, sigma in (("float", 10.0), ("float", 0.06), ("qat", 0.0)):
            r = measure(model, args.hidden, 140, 20, args.steps, args.batch, mode, sigma, args.repeat)
            rows.append(r)
            label = f"float, sigma {sigma:g}" if mode == "float" else "QAT, integer delays"
            print(f"{model:7s} {label:20s} train {r['train_samples_per_s']:6.0f} samples/s | "
                  f"inference {r['infer_samples_per_s']:6.0f} samples/s", flush=True)
    write_result("train_speed", {"hidden": args.hidden, "steps": args.steps, "batch": args.batch,
                                 "threads": args.threads, "rows": rows}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
