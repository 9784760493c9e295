"""Training / inference throughput of the CRSNN and DelRec layers (random input, no data needed).

    python -m crsnn.train.speed --hidden 256 256 --steps 100 --batch 32 --threads 2

For each model and mode (float training at the first epoch's delay spread ``sigma0``, float at
the last epoch's spread, QAT) prints the best-of-``repeat`` time of one training step (forward,
backward, optimizer) and of one inference batch, in samples per second.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from crsnn.models.network import ModelConfig, build_model


def measure(model: str, hidden: list[int], n_in: int, n_out: int, steps: int, batch: int, mode: str,
            sigma: float, repeat: int = 5, kernel: int = 3, seed: int = 0, **config) -> dict:
    """Best-of-``repeat`` training-step and inference times; ``config``: further
    :class:`~crsnn.models.network.ModelConfig` fields (e.g. ``max_delay`` for ``dcls``)."""
    torch.manual_seed(seed)
    cfg = ModelConfig(n_in=n_in, n_out=n_out, hidden=hidden, model=model, kernel=kernel, input_message_bits=4,
                      delay_init=["uniform", 10, 30], dropout=0.4, rec_dropout=0.2, **config)
    m = build_model(cfg)
    m.set_qat(mode == "qat")
    m.sigma.fill_(sigma)
    opt = torch.optim.AdamW(m.parameters(), 1e-3)
    x = torch.poisson(torch.full((batch, steps, n_in), 0.3)).clamp(max=15)
    y = torch.randint(0, n_out, (batch,))
    m.train()
    train_t = []
    for _ in range(repeat + 1):
        t0 = time.perf_counter()
        loss = F.cross_entropy(m.logits(m(x)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        train_t.append(time.perf_counter() - t0)
    m.eval()
    infer_t = []
    with torch.no_grad():
        for _ in range(repeat + 1):
            t0 = time.perf_counter()
            m(x)
            infer_t.append(time.perf_counter() - t0)
    tt, ti = min(train_t[1:]), min(infer_t[1:])
    return {"model": model, "mode": mode, "sigma": sigma, "train_step_s": tt, "train_samples_per_s": batch / tt,
            "infer_s": ti, "infer_samples_per_s": batch / ti}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m crsnn.train.speed", description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["crsnn", "delrec"])
    p.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    p.add_argument("--n-in", type=int, default=140)
    p.add_argument("--n-out", type=int, default=20)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--sigma", type=float, nargs=2, default=[10.0, 0.06], metavar=("FIRST", "LAST"))
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"{' x '.join(map(str, args.hidden))} hidden, {args.n_in} inputs, T={args.steps}, batch {args.batch}, "
          f"{torch.get_num_threads()} thread(s); best of {args.repeat}")
    for model in args.models:
        for mode, sigma in (("float", args.sigma[0]), ("float", args.sigma[1]), ("qat", 0.0)):
            r = measure(model, args.hidden, args.n_in, args.n_out, args.steps, args.batch, mode, sigma, args.repeat)
            label = f"{mode} (sigma {sigma:g})" if mode == "float" else "qat (integer delays)"
            print(f"{model:7s} {label:22s} train {r['train_step_s']:.3f} s/step = {r['train_samples_per_s']:6.0f} "
                  f"samples/s | inference {r['infer_s']:.3f} s = {r['infer_samples_per_s']:6.0f} samples/s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
