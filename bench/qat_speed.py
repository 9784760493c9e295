"""QAT (training-time integer forward) against float, side by side: forward and training step.

The same model (CRSNN and DelRec, ``--hidden`` hidden layers, 140 inputs, 20 outputs, dropout 0.4
and recurrent dropout 0.2, the training configuration of ``bench/train_speed.py``) runs in train
mode in float and in QAT, interleaved (float forward, QAT forward, float step, QAT step, repeated),
so that a busy machine slows both alike; each figure is the minimum over ``--repeat`` rounds.
A training step is forward + backward (no optimizer: it is the same for both). Reports the
ratios QAT / float.

    .venv/bin/python bench/qat_speed.py [--hidden 256 256] [--threads 1] [--repeat 7]
"""

from __future__ import annotations

import argparse
import sys

import torch
import torch.nn.functional as F
from _common import round_robin, write_result

from crsnn.models.network import ModelConfig, build_model


def measure(model: str, hidden: list[int], steps: int, batch: int, repeat: int, seed: int = 0) -> dict:
    """Minimum times (s) of the float and QAT forward and training step, interleaved."""
    torch.manual_seed(seed)
    cfg = ModelConfig(n_in=140, n_out=20, hidden=hidden, model=model, kernel=3, input_message_bits=4,
                      delay_init=["uniform", 10, 30], dropout=0.4, rec_dropout=0.2)
    m = build_model(cfg)
    m.sigma.fill_(0.06)  # the last epoch's delay spread (the float loop's cheapest regime)
    m.train()
    x = torch.poisson(torch.full((batch, steps, 140), 0.3)).clamp(max=15)
    y = torch.randint(0, 20, (batch,))

    def forward(qat: bool) -> None:
        m.set_qat(qat)
        m(x)

    def train_step(qat: bool) -> None:
        m.set_qat(qat)
        m.zero_grad(set_to_none=True)
        F.cross_entropy(m.logits(m(x)), y).backward()

    runs = {"float_forward": lambda: forward(False), "qat_forward": lambda: forward(True),
            "float_step": lambda: train_step(False), "qat_step": lambda: train_step(True)}
    best = {f"{k}_s": min(v) for k, v in round_robin(runs, repeat).items()}
    return {"model": model, **best, "forward_ratio": best["qat_forward_s"] / best["float_forward_s"],
            "step_ratio": best["qat_step_s"] / best["float_step_s"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1, what crsnn-train uses)")
    ap.add_argument("--models", nargs="+", default=["crsnn", "delrec"])
    ap.add_argument("--json", help="output JSON (default bench/results/qat_speed.json)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"{' x '.join(map(str, args.hidden))} hidden, 140 inputs, T={args.steps}, batch {args.batch}, "
          f"{torch.get_num_threads()} thread(s), train mode with dropout; min of {args.repeat}, interleaved")
    rows = []
    for model in args.models:
        r = measure(model, args.hidden, args.steps, args.batch, args.repeat)
        rows.append(r)
        print(f"{model:7s} forward float {r['float_forward_s'] * 1e3:6.1f} ms, QAT {r['qat_forward_s'] * 1e3:6.1f} ms "
              f"(x{r['forward_ratio']:.2f}) | train step float {r['float_step_s'] * 1e3:6.1f} ms, "
              f"QAT {r['qat_step_s'] * 1e3:6.1f} ms (x{r['step_ratio']:.2f})", flush=True)
    write_result("qat_speed", {"hidden": args.hidden, "steps": args.steps, "batch": args.batch,
                               "threads": args.threads, "rows": rows}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
