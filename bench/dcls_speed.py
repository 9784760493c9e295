"""Training and inference throughput (samples/s) of ``dcls`` (learnable per-synapse feedforward
delays) beside the CRSNN, on this CPU: one training step (forward, backward, optimizer step) and
one inference batch on random input, in float training at the first and last delay spread and in
QAT (integer delays). Uses :func:`crsnn.train.speed.measure`; short by default.

    .venv/bin/python bench/dcls_speed.py [--hidden 128 128] [--max-delay 25] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys

import torch
from _common import write_result

from crsnn.train.speed import measure


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hidden", type=int, nargs="+", default=[128, 128])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--max-delay", type=int, default=25, help="dcls: largest synaptic delay (steps)")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1, what crsnn-train uses)")
    ap.add_argument("--json", help="output JSON (default bench/results/dcls_speed.json)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"{' x '.join(map(str, args.hidden))} hidden, 140 inputs, T={args.steps}, batch {args.batch}, "
          f"dcls max delay {args.max_delay}, {torch.get_num_threads()} thread(s); best of {args.repeat}")
    rows = []
    for model in ("crsnn", "dcls"):
        for mode, sigma in (("float", 10.0), ("float", 0.06), ("qat", 0.0)):
            extra = {"max_delay": args.max_delay} if model == "dcls" else {}
            r = measure(model, args.hidden, 140, 20, args.steps, args.batch, mode, sigma, args.repeat, **extra)
            rows.append(r)
            label = f"float, sigma {sigma:g}" if mode == "float" else "QAT, integer delays"
            print(f"{model:6s} {label:20s} train {r['train_samples_per_s']:6.0f} samples/s | "
                  f"inference {r['infer_samples_per_s']:6.0f} samples/s", flush=True)
    write_result("dcls_speed", {"hidden": args.hidden, "steps": args.steps, "batch": args.batch,
                                "max_delay": args.max_delay, "threads": args.threads, "rows": rows}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
