"""Float vs QAT vs integer vs Lava accuracy on the offline spoken-digit benchmark's test split.

Trains (or reuses) a CRSNN and a DelRec of the same size with QAT, exports each to NIR, and runs
the NIR graph on Lava's fixed-point CPU simulator and on the integer simulator for every test
sample (held-out speakers), spike for spike. Float and QAT accuracy come from the checkpoint
(``crsnn-train``'s evaluation), integer and Lava from the exported graph. With ``--docs`` it also
writes the README's plots (training curve, delay histogram, Lava-vs-integer raster) for the CRSNN.

    .venv/bin/python bench/accuracy.py [--hidden 128 128] [--epochs 30] [--docs docs]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from _common import REPO, WORK, digits, train_run, write_result

from crsnn.deploy.cli import verify
from crsnn.export.cli import main as export_main
from crsnn.train.plots import plot_checkpoint


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", help="SHD-layout folder (default: the offline benchmark, 100 per class, seed 0)")
    ap.add_argument("--hidden", type=int, nargs="+", default=[128, 128])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--docs", default=str(REPO / "docs"), help="folder for the README plots ('' for none)")
    ap.add_argument("--json", help="output JSON (default bench/results/accuracy.json)")
    args = ap.parse_args(argv)

    data = Path(args.data) if args.data else digits(100, 0)
    work = WORK / "accuracy"
    rows = {}
    for model in ("crsnn", "delrec"):
        ckpt = work / f"{model}.pt"
        print(f"{model}: training (or reusing) {ckpt} ...", flush=True)
        log = train_run(["--data", str(data), "--model", model, "--hidden", *map(str, args.hidden), "--kernel", "3",
                         "--epochs", str(args.epochs), "--channel-group", "5", "--max-time", "1.4", "--threads", "1",
                         "--no-progress", "--seed", str(args.seed)], ckpt)
        nir_path = work / f"{model}.nir"
        if export_main([str(ckpt), str(nir_path), "--check"]) != 0:
            print(f"{model}: export failed", file=sys.stderr)
            return 1
        rep = verify(str(ckpt), str(nir_path), str(data), None, str(work / f"{model}_verify"))
        test = log["test"]
        rows[model] = {
            "test_samples": rep["samples"], "float": test["float"]["acc"], "qat": test["qat"]["acc"],
            "integer": rep["accuracy"]["integer"], "lava": rep["accuracy"]["lava"],
            "integer_from_training": test["integer"]["acc"],
            "mismatching_spikes": rep["mismatching_spikes"],
            "mismatching_readout_values": rep["mismatching_readout_values"],
            "spike_slots_compared": sum(rep["spike_slots_per_layer"]),
            "lava_samples_per_s": rep["samples_per_s"]["lava"], "integer_samples_per_s": rep["samples_per_s"]["integer"],
            "train_seconds": sum(e["time_s"] for e in log["epochs"]),
        }
        if args.docs and model == "crsnn":
            docs = Path(args.docs)
            docs.mkdir(parents=True, exist_ok=True)
            plot_checkpoint(ckpt, docs / "training_curve.png", docs / "delays.png",
                            f"CRSNN {' x '.join(map(str, args.hidden))}, offline spoken digits (seed {args.seed})",
                            "CRSNN: learned integer axonal delays")
            shutil.copyfile(rep["raster_png"], docs / "lava_vs_integer_raster.png")
            print(f"wrote {docs}/training_curve.png, delays.png, lava_vs_integer_raster.png")

    print(f"\n{' x '.join(map(str, args.hidden))} hidden, {args.epochs} epochs, seed {args.seed}; test accuracy "
          f"({rows['crsnn']['test_samples']} samples, held-out speakers)")
    print(f"{'model':<8}{'float':>9}{'QAT':>9}{'integer':>9}{'Lava':>9}   Lava vs integer")
    for model, r in rows.items():
        print(f"{model:<8}" + "".join(f"{100 * r[k]:>8.2f}%" for k in ("float", "qat", "integer", "lava"))
              + f"   {r['mismatching_spikes']} mismatching spikes / {r['spike_slots_compared']:,} slots, "
              f"{r['mismatching_readout_values']} readout values")
    write_result("accuracy", {"data": str(data), "hidden": args.hidden, "epochs": args.epochs, "seed": args.seed,
                              "rows": rows}, args.json)
    exact = all(r["mismatching_spikes"] == 0 and r["mismatching_readout_values"] == 0 for r in rows.values())
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
