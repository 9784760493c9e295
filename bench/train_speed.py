"""Training throughput (samples/s) of the CRSNN and DelRec layers (or any ``--models``: ``dcls``
with ``--max-delay``) on this CPU, and inference.

One training step = forward, backward and optimizer step on a random batch (``--batch`` samples of
``--steps`` time steps, 140 inputs); timed in the three regimes a run goes through: float at the
first epoch's delay spread (sigma 10: wide triangles, many taps), float at the last spread, and
QAT (integer delays, integer arithmetic). Best of ``--repeat``. Uses :mod:`crsnn.train.speed`.

    .venv/bin/python bench/train_speed.py [--hidden 256 256] [--threads 1]
    .venv/bin/python bench/train_speed.py --models crsnn dcls --hidden 128 128 --repeat 2 --name dcls_speed
"""

from __future__ import annotations

import argparse
import sys

import torch
from _common import write_result

from crsnn.models.network import MODELS
from crsnn.train.speed import measure


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1, what crsnn-train uses)")
    ap.add_argument("--models", nargs="+", default=["crsnn", "delrec"], choices=MODELS)
    ap.add_argument("--max-delay", type=int, default=25, help="dcls: largest synaptic delay (steps)")
    ap.add_argument("--name", default="train_speed", help="result name: bench/results/NAME.json")
    ap.add_argument("--json", help="output JSON (default bench/results/NAME.json)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    dcls = "dcls" in args.models
    print(f"{' x '.join(map(str, args.hidden))} hidden, 140 inputs, T={args.steps}, batch {args.batch}, "
          + (f"dcls max delay {args.max_delay}, " if dcls else "")
          + f"{torch.get_num_threads()} thread(s); best of {args.repeat}")
    rows = []
    for model in args.models:
        extra = {"max_delay": args.max_delay} if model == "dcls" else {}
        for mode, sigma in (("float", 10.0), ("float", 0.06), ("qat", 0.0)):
            r = measure(model, args.hidden, 140, 20, args.steps, args.batch, mode, sigma, args.repeat, **extra)
            rows.append(r)
            label = f"float, sigma {sigma:g}" if mode == "float" else "QAT, integer delays"
            print(f"{model:7s} {label:20s} train {r['train_samples_per_s']:6.0f} samples/s | "
                  f"inference {r['infer_samples_per_s']:6.0f} samples/s", flush=True)
    write_result(args.name, {"hidden": args.hidden, "steps": args.steps, "batch": args.batch, "threads": args.threads,
                             **({"max_delay": args.max_delay} if dcls else {}), "rows": rows}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
