"""CRSNN vs DelRec as the layer width N grows: parameters, recurrent synapses, and inference speed.

For N in ``--sizes`` (default 128 256 512 1024), two hidden layers of N neurons (140 inputs,
20 classes, the offline benchmark's shape), conv kernel k = 3 for the CRSNN, dense N x N for
DelRec, both with one axonal delay per neuron. Measures, on random input (``--steps`` x
``--batch``), best of ``--repeat``:

- torch inference (eval mode, no gradient) in the float mode (delays at their final spread) and in
  the QAT mode (the integer arithmetic that is deployed), samples per second;
- the integer simulator (:func:`crsnn.sim.torch_sim.simulate_torch`, on the CPU its compiled loop) on
  ``model.to_integer()``, samples per second.

Parameters: recurrent parameters per layer (kernel + delays vs N^2 + delays) and the model total.
The BatchNorm statistics are set on the benchmark input first (``_common.set_batchnorm_statistics``),
so that the random networks fire like trained ones.

    .venv/bin/python bench/crsnn_vs_delrec.py [--sizes 128 256 512 1024] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
from _common import set_batchnorm_statistics, write_result

from crsnn.models.network import ModelConfig, build_model, parameter_counts
from crsnn.sim.torch_sim import simulate_torch


def _best(fn, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def measure(model: str, n: int, args) -> dict:
    torch.manual_seed(0)
    cfg = ModelConfig(n_in=140, n_out=20, hidden=[n, n], model=model, kernel=3, input_message_bits=4,
                      delay_init=["uniform", 10, 30])
    m = build_model(cfg)
    x = torch.poisson(torch.full((args.batch, args.steps, 140), 0.3)).clamp(max=15)
    set_batchnorm_statistics(m, x, 0.06)  # so that it fires like a trained network
    counts = parameter_counts(cfg)
    out = {"model": model, "n": n, "parameters": counts["total"], "recurrent_parameters": counts["recurrent"],
           "recurrent_synapses_per_layer": 3 * n if model == "crsnn" else n * n}
    with torch.no_grad():
        m.set_qat(False)
        m.sigma.fill_(0.06)
        out["torch_float_samples_per_s"] = args.batch / _best(lambda: m(x), args.repeat)
        m.set_qat(True)
        out["torch_qat_samples_per_s"] = args.batch / _best(lambda: m(x), args.repeat)
        net = m.to_integer()
    xi = np.clip(x.numpy().astype(np.int64), 0, net.max_input())
    res = simulate_torch(net, xi)
    out["hidden_firing_rates"] = [float(s.mean()) for s in res.hidden_spikes]
    out["integer_sim_samples_per_s"] = args.batch / _best(lambda: simulate_torch(net, xi, validate=False), args.repeat)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512, 1024])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--json", help="output JSON (default bench/results/crsnn_vs_delrec.json)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    print(f"2 hidden layers of N, 140 inputs, 20 classes; T={args.steps}, batch {args.batch}, "
          f"{torch.get_num_threads()} torch thread(s); inference samples/s, best of {args.repeat}")
    print(f"{'N':>5} {'model':>7} {'params':>10} {'rec params':>11} {'torch float':>12} {'torch QAT':>10} "
          f"{'integer sim':>12}")
    for n in args.sizes:
        pair = {}
        for model in ("crsnn", "delrec"):
            r = measure(model, n, args)
            rows.append(r)
            pair[model] = r
            print(f"{n:>5} {model:>7} {r['parameters']:>10,} {r['recurrent_parameters']:>11,} "
                  f"{r['torch_float_samples_per_s']:>12.0f} {r['torch_qat_samples_per_s']:>10.0f} "
                  f"{r['integer_sim_samples_per_s']:>12.0f}", flush=True)
        c, d = pair["crsnn"], pair["delrec"]
        print(f"{n:>5} {'ratio':>7} {d['parameters'] / c['parameters']:>9.1f}x "
              f"{d['recurrent_parameters'] / c['recurrent_parameters']:>10.0f}x "
              f"{c['torch_float_samples_per_s'] / d['torch_float_samples_per_s']:>11.2f}x "
              f"{c['torch_qat_samples_per_s'] / d['torch_qat_samples_per_s']:>9.2f}x "
              f"{c['integer_sim_samples_per_s'] / d['integer_sim_samples_per_s']:>11.2f}x  (DelRec/CRSNN params; "
              "CRSNN/DelRec speed)")
    write_result("crsnn_vs_delrec", {"steps": args.steps, "batch": args.batch, "repeat": args.repeat, "rows": rows},
                 args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
