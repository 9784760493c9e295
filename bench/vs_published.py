"""crsnn's CRSNN against the published CRSNN and DelRec layers, side by side in one run.

For N in ``--sizes``: two hidden layers of N neurons, 140 inputs, 20 classes, T = ``--steps``,
batch ``--batch``, axonal delays uniform in 10..30 steps, kernel k = 3. The same random input
(Poisson counts, clipped to 15) goes through

- ``published_delrec`` / ``published_crsnn``: the published methods as their papers describe them
  (``bench/published_layers.py``: a dense (B, L, N) delay buffer over all L slots, the recurrent
  product applied to every slot each step; DelRec dense N x N, CRSNN a single-channel ``conv1d``),
  loaded with the parameters of the crsnn models below so that all compute on the same numbers;
- ``crsnn_float``: crsnn's CRSNN, float mode at the final delay spread (``--sigma``);
- ``crsnn_qat``: crsnn's CRSNN, QAT mode (the integer arithmetic that is deployed);
- ``crsnn_delrec_float``: crsnn's DelRec (dense recurrence through crsnn's delay loop), float;
- ``torch_sim``: crsnn's integer simulator (``simulate_torch``; on the CPU its compiled,
  event-driven loop, so its time depends on the firing rates, recorded with every row) on
  ``model.to_integer()`` of the CRSNN (bit-exact with Lava).

Inference: eval mode, no gradient, samples per second. Training: one forward + backward step
(train mode, BatchNorm batch statistics, dropout 0.4 / recurrent 0.2, loss CE of sum_t softmax)
of the float models at each ``--train-sigmas`` spread. Every measurement is repeated
``--repeat`` times after one warm-up; the models take turns within a repeat (round robin), so a
change in the machine's load hits all of them alike. Reported: min and median time, samples/s,
and the ratios to the published DelRec and CRSNN. Run once per ``--threads`` setting (default:
1 thread and all the machine's threads).

    .venv/bin/python bench/vs_published.py [--sizes 128 256 512 1024] [--repeat 3] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from _common import round_robin, set_batchnorm_statistics, write_result
from published_layers import PublishedNet, buffer_length

from crsnn.models.network import ModelConfig, SpikingNet, build_model
from crsnn.sim.torch_sim import simulate_torch

N_IN, N_OUT, KERNEL = 140, 20, 3
DELAY_INIT = (10.0, 30.0)
DROPOUT, REC_DROPOUT = 0.4, 0.2
#: The paper's CRSNN-over-DelRec inference speed-ups, at N = 256 and N = 1024.
TARGETS = {256: 25.0, 1024: 52.0}
INFER = ("published_delrec", "published_crsnn", "crsnn_float", "crsnn_qat", "crsnn_delrec_float", "torch_sim")
TRAIN = ("published_delrec", "published_crsnn", "crsnn_float", "crsnn_delrec_float")


def _models(n: int, x: torch.Tensor, sigma: float) -> dict[str, torch.nn.Module]:
    """crsnn's CRSNN and DelRec (seeded, BatchNorm statistics set on ``x`` at spread ``sigma``:
    :func:`_common.set_batchnorm_statistics`), and the published layers carrying their parameters."""
    out: dict[str, torch.nn.Module] = {}
    for name, model in (("crsnn", "crsnn"), ("crsnn_delrec", "delrec")):
        torch.manual_seed(0)
        cfg = ModelConfig(n_in=N_IN, n_out=N_OUT, hidden=[n, n], model=model, kernel=KERNEL, input_message_bits=4,
                          delay_init=["uniform", *DELAY_INIT], dropout=DROPOUT, rec_dropout=REC_DROPOUT)
        m = build_model(cfg)
        set_batchnorm_statistics(m, x, sigma)
        out[name] = m
    for name, src, rec in (("published_delrec", "crsnn_delrec", "dense"), ("published_crsnn", "crsnn", "conv")):
        net = PublishedNet(N_IN, [n, n], N_OUT, recurrence=rec, kernel=KERNEL, dropout=DROPOUT,
                           rec_dropout=REC_DROPOUT, delay_init=DELAY_INIT)
        out[name] = net.load_crsnn(out[src])
    return out


def _stats(times: list[float], batch: int) -> dict:
    lo, med = min(times), statistics.median(times)
    return {"times_s": times, "min_s": lo, "median_s": med, "samples_per_s_best": batch / lo,
            "samples_per_s_median": batch / med}


def _crsnn_train_step(m: SpikingNet, x: torch.Tensor, y: torch.Tensor, sigma: float) -> Callable[[], None]:
    def step() -> None:
        m.train()
        m.sigma.fill_(sigma)
        m.zero_grad(set_to_none=True)
        F.cross_entropy(m.logits(m.forward_float(x)), y).backward()
    return step


def _published_train_step(net: PublishedNet, x: torch.Tensor, y: torch.Tensor, sigma: float) -> Callable[[], None]:
    def step() -> None:
        net.train()
        net.set_sigma(sigma)
        net.zero_grad(set_to_none=True)
        F.cross_entropy(torch.softmax(net(x), 2).sum(1), y).backward()
    return step


def measure(n: int, threads: int, args) -> list[dict]:
    """All inference and training rows for one layer width and thread count."""
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    x = torch.poisson(torch.full((args.batch, args.steps, N_IN), 0.3)).clamp(max=15)
    ms = _models(n, x, args.sigma)
    y = torch.randint(0, N_OUT, (args.batch,))
    c, d = ms["crsnn"], ms["crsnn_delrec"]
    pd, pc = ms["published_delrec"], ms["published_crsnn"]
    rows = []
    # ---- inference
    for m in ms.values():
        m.eval()
    c.sigma.fill_(args.sigma)
    d.sigma.fill_(args.sigma)
    pd.set_sigma(args.sigma)
    pc.set_sigma(args.sigma)
    with torch.no_grad():
        net = c.to_integer()
        xi = c.clip_input_numpy(x)
        rates = {"crsnn_float": [float(s.mean()) for s in c.forward_float(x, return_hidden=True)[1]],
                 "published_crsnn": [float(s.mean()) for s in pc(x, return_hidden=True)[1]],
                 "crsnn_qat": [float(s.mean()) for s in c.qat_readout_int(x, return_hidden=True)[1]],
                 "crsnn_delrec_float": [float(s.mean()) for s in d.forward_float(x, return_hidden=True)[1]],
                 "published_delrec": [float(s.mean()) for s in pd(x, return_hidden=True)[1]],
                 "torch_sim": [float(s.mean()) for s in simulate_torch(net, xi).hidden_spikes]}
        fns = {"published_delrec": lambda: pd(x), "published_crsnn": lambda: pc(x),
               "crsnn_float": lambda: c.forward_float(x), "crsnn_qat": lambda: c.forward_qat(x),
               "crsnn_delrec_float": lambda: d.forward_float(x),
               "torch_sim": lambda: simulate_torch(net, xi, validate=False)}
        times = round_robin(fns, args.repeat)
    L = buffer_length(pd.recs[0].delays, args.sigma)
    for k in INFER:
        rows.append({"n": n, "threads": threads, "mode": "inference", "model": k, "sigma": args.sigma,
                     "hidden_firing_rates": rates[k],
                     **_stats(times[k], args.batch)})
    # ---- training (forward + backward)
    for sigma in args.train_sigmas if not args.no_train else []:
        fns = {"published_delrec": _published_train_step(pd, x, y, sigma),
               "published_crsnn": _published_train_step(pc, x, y, sigma),
               "crsnn_float": _crsnn_train_step(c, x, y, sigma),
               "crsnn_delrec_float": _crsnn_train_step(d, x, y, sigma)}
        times = round_robin(fns, args.train_repeat)
        for k in TRAIN:
            rows.append({"n": n, "threads": threads, "mode": "train", "model": k, "sigma": sigma,
                         **_stats(times[k], args.batch)})
    for r in rows:  # the recurrent work per step and layer, in multiply-adds
        s = r["sigma"]
        Ls = buffer_length(pd.recs[0].delays, s) if s != args.sigma else L
        taps = 2 * int(np.ceil(1 + s)) + 1
        r["recurrent_macs_per_step_layer"] = {
            "published_delrec": args.batch * Ls * n * n, "published_crsnn": args.batch * Ls * n * KERNEL,
            "crsnn_float": args.batch * (n * KERNEL + taps * n), "crsnn_qat": args.batch * (n * KERNEL + n),
            "crsnn_delrec_float": args.batch * (n * n + taps * n), "torch_sim": args.batch * (n * KERNEL + n),
        }[r["model"]]
        r["buffer_slots_L"] = Ls
    return rows


def ratios(rows: list[dict]) -> list[dict]:
    """Speed-ups (samples/s of a model over a reference), from the best and the median times."""
    out = []
    keys = sorted({(r["threads"], r["n"], r["mode"], r["sigma"]) for r in rows})
    for th, n, mode, sigma in keys:
        by = {r["model"]: r for r in rows if (r["threads"], r["n"], r["mode"], r["sigma"]) == (th, n, mode, sigma)}
        for ref in ("published_delrec", "published_crsnn"):
            for k, r in by.items():
                if k.startswith("published"):
                    continue
                out.append({"threads": th, "n": n, "mode": mode, "sigma": sigma, "model": k, "over": ref,
                            "best": by[ref]["min_s"] / r["min_s"], "median": by[ref]["median_s"] / r["median_s"]})
    return out


def targets(rat: list[dict]) -> list[dict]:
    """The paper's range (CRSNN inference >= 25x DelRec at N = 256, >= 52x at N = 1024) checked
    for each crsnn CRSNN path, on the median times."""
    out = []
    for r in rat:
        if r["mode"] == "inference" and r["over"] == "published_delrec" and r["n"] in TARGETS \
                and r["model"] in ("crsnn_float", "crsnn_qat", "torch_sim"):
            out.append({"threads": r["threads"], "n": r["n"], "model": r["model"], "target": TARGETS[r["n"]],
                        "measured_median": r["median"], "measured_best": r["best"],
                        "met": bool(r["median"] >= TARGETS[r["n"]])})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512, 1024])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3, help="inference repeats after one warm-up (default 3)")
    ap.add_argument("--train-repeat", type=int, default=2, help="training-step repeats after one warm-up (default 2)")
    ap.add_argument("--sigma", type=float, default=0.06, help="delay spread at inference (the final epoch's, 0.06)")
    ap.add_argument("--train-sigmas", type=float, nargs="+", default=[0.06],
                    help="delay spreads of the training steps (first epoch 10, last 0.06; default 0.06)")
    ap.add_argument("--no-train", action="store_true", help="inference only")
    ap.add_argument("--threads", type=int, nargs="+", default=None,
                    help="torch thread counts to measure with (default: 1 and the machine's CPU count)")
    ap.add_argument("--json", help="output JSON (default bench/results/vs_published.json)")
    args = ap.parse_args(argv)
    threads = args.threads or sorted({1, os.cpu_count() or 1})
    load0 = os.getloadavg()
    print(f"2 hidden layers of N, {N_IN} inputs, {N_OUT} classes, k = {KERNEL}, delays "
          f"{DELAY_INIT[0]:g}..{DELAY_INIT[1]:g}; T = {args.steps}, batch {args.batch}; inference sigma {args.sigma:g}; {args.repeat} repeats "
          f"(training {args.train_repeat}); load average {load0[0]:.1f}")
    rows = []
    t_start = time.perf_counter()
    for th in threads:
        for n in args.sizes:
            rs = measure(n, th, args)
            rows += rs
            ref = {(r["mode"], r["sigma"]): r for r in rs if r["model"] == "published_delrec"}
            for r in rs:
                base = ref[(r["mode"], r["sigma"])]
                label = f"{r['mode']}" + (f" (sigma {r['sigma']:g})" if r["mode"] == "train" else "")
                print(f"{th} thr  N={n:>5}  {label:<18} {r['model']:<19} {r['samples_per_s_best']:>9.1f} best "
                      f"{r['samples_per_s_median']:>9.1f} median samples/s   x{base['median_s'] / r['median_s']:>7.1f} "
                      f"vs published DelRec (median)", flush=True)
    rat = ratios(rows)
    tg = targets(rat)
    for t in tg:
        print(f"target: {t['threads']} thr N={t['n']} {t['model']}: {t['measured_median']:.1f}x (best "
              f"{t['measured_best']:.1f}x) vs {t['target']:g}x -> {'met' if t['met'] else 'NOT met'}")
    load1 = os.getloadavg()
    write_result("vs_published", {
        "network": {"n_in": N_IN, "n_out": N_OUT, "hidden_layers": 2, "kernel": KERNEL, "delay_init": list(DELAY_INIT),
                    "dropout": DROPOUT, "rec_dropout": REC_DROPOUT},
        "steps": args.steps, "batch": args.batch, "repeat": args.repeat, "train_repeat": args.train_repeat,
        "sigma": args.sigma, "train_sigmas": [] if args.no_train else args.train_sigmas, "threads": threads,
        "load_average_start": list(load0), "load_average_end": list(load1),
        "wall_s": time.perf_counter() - t_start, "rows": rows, "ratios": rat, "targets": tg}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
