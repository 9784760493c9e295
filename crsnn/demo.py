"""The end-to-end demo (``make demo``, ``python -m crsnn.demo``): offline data -> QAT training ->
NIR export -> Lava verification -> plots and a Loihi 2 resource report.

1. synthesizes a small offline spoken-digit set (``crsnn-data synth``; reused when present);
2. trains a small CRSNN with quantization-aware training (``crsnn-train``);
3. exports it to NIR with integer delays and conv connectivity, checked (``crsnn-export --check``);
4. runs the NIR graph on Lava's fixed-point CPU simulator and the integer simulator on every test
   sample, spike for spike (``crsnn-verify``), and reports float / integer / Lava accuracy;
5. writes the training curves, the delay histogram and the Loihi 2 resource report.

Exit status 0 only when every step worked and Lava matched the integer simulator exactly.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable

from crsnn.atomic_write import write_json_atomic
from crsnn.cli_errors import Interrupted, run_command
from crsnn.cli_types import CommandParser, odd_int, positive_int, seed


class DemoError(RuntimeError):
    """A demo step failed; the message names the step."""


def _step(k: int, n: int, title: str) -> None:
    print(f"\n=== [{k}/{n}] {title} ===", flush=True)


def _call(name: str, main: Callable[[list[str]], int], argv: list[str]) -> None:
    """Run a command's ``main(argv)`` in this process; raise :class:`DemoError` unless it exits 0."""
    print(f"$ {name} {' '.join(argv)}", flush=True)
    rc = main(argv)
    if rc > 128:  # the step was interrupted by a signal (it said so): stop with the same status
        raise Interrupted(rc - 128)
    if rc != 0:
        raise DemoError(f"{name} exited with status {rc} (its message is above)")


def build_parser() -> argparse.ArgumentParser:
    ap = CommandParser(prog="python -m crsnn.demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/demo", help="folder for everything the demo writes (replaced on a re-run)")
    ap.add_argument("--per-class", type=positive_int, default=40,
                    help="training utterances per class (test: a quarter)")
    ap.add_argument("--hidden", type=positive_int, nargs="+", default=[128, 128], help="hidden layer sizes")
    ap.add_argument("--kernel", type=odd_int(1), default=3, help="CRSNN recurrent kernel size (3 or 5)")
    ap.add_argument("--epochs", type=positive_int, default=30, help="training epochs (QAT in the last quarter)")
    ap.add_argument("--seed", type=seed, default=0, help="data and training seed")
    ap.add_argument("--workers", type=positive_int, default=None, help="processes for the cochlea front end")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    return ap


def run(args: argparse.Namespace) -> dict:
    from crsnn.deploy.cli import CommandError, report_main, verify
    from crsnn.export.cli import main as export_main
    from crsnn.train.cli import main as train_main
    from crsnn.train.data.synth import SynthConfig, ensure_benchmark
    from crsnn.train.loop import log_path_for
    from crsnn.train.plots import plot_checkpoint

    t0 = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data, ckpt, nir_path = out / "data", out / "crsnn.pt", out / "crsnn.nir"
    n = 5
    _step(1, n, "data: offline spoken digits (espeak-ng voices -> 700-channel cochlea -> spikes, SHD layout)")
    ensure_benchmark(data, SynthConfig(per_class=args.per_class, seed=args.seed), workers=args.workers,
                     progress=not args.no_progress)

    _step(2, n, "train a CRSNN with quantization-aware training")
    train_argv = ["--data", str(data), "--model", "crsnn", "--hidden", *map(str, args.hidden),
                  "--kernel", str(args.kernel), "--epochs", str(args.epochs), "--channel-group", "5",
                  "--max-time", "1.4", "--seed", str(args.seed), "--out", str(ckpt), "--force"]
    if args.no_progress:
        train_argv.append("--no-progress")
    _call("crsnn-train", train_main, train_argv)

    _step(3, n, "export to NIR (integer delays, Conv1d recurrence) and check the file")
    _call("crsnn-export", export_main, [str(ckpt), str(nir_path), "--check"])

    _step(4, n, "run on Lava (Loihi2SimCfg, fixed point) vs the integer simulator, every test sample")
    print(f"$ crsnn-verify {ckpt} {nir_path} --data {data} -n all", flush=True)
    try:
        rep = verify(str(ckpt), str(nir_path), str(data), None, str(out / "verify"))
    except CommandError as exc:
        raise DemoError(f"crsnn-verify: {exc}") from None

    _step(5, n, "plots and the Loihi 2 resource report")
    curves, delays = plot_checkpoint(ckpt, out / "training.png", out / "delays.png",
                                     f"CRSNN {' x '.join(map(str, args.hidden))} on the offline spoken digits",
                                     "learned integer axonal delays (as deployed)")
    _call("crsnn-report", report_main, [str(nir_path), "--data", str(data), "--json", str(out / "loihi2_report.json")])

    test = json.loads(log_path_for(ckpt).read_text()).get("test", {})
    summary = {
        "seconds": time.perf_counter() - t0,
        "test_samples": rep["samples"],
        "accuracy": {"float": rep["accuracy"]["float"], "qat": test.get("qat", {}).get("acc"),
                     "integer": rep["accuracy"]["integer"], "lava": rep["accuracy"]["lava"]},
        "mismatching_spikes": rep["mismatching_spikes"],
        "mismatching_readout_values": rep["mismatching_readout_values"],
        "lava_samples_per_s": rep["samples_per_s"]["lava"],
        "integer_samples_per_s": rep["samples_per_s"]["integer"],
        "files": {"data": [str(data / "train.h5"), str(data / "test.h5")], "checkpoint": str(ckpt),
                  "training log": str(log_path_for(ckpt)), "nir": str(nir_path),
                  "plots": [str(curves), str(delays), rep["raster_png"]],
                  "reports": [str(out / "verify.json"), str(out / "loihi2_report.json"), str(out / "summary.json")]},
    }
    write_json_atomic(out / "summary.json", summary)
    return summary


def format_summary(s: dict) -> str:
    a, f = s["accuracy"], s["files"]
    pct = lambda x: "-" if x is None else f"{100 * x:.2f}%"  # noqa: E731
    exact = s["mismatching_spikes"] == 0 and s["mismatching_readout_values"] == 0
    lines = [
        "",
        f"crsnn demo: done in {s['seconds'] / 60:.1f} min",
        f"  accuracy on {s['test_samples']} test samples (held-out speakers): float {pct(a['float'])} | "
        f"QAT {pct(a['qat'])} | integer {pct(a['integer'])} | Lava {pct(a['lava'])}",
        f"  Lava vs integer simulator: {s['mismatching_spikes']} mismatching spikes, "
        f"{s['mismatching_readout_values']} mismatching readout values -> {'bit-exact' if exact else 'MISMATCH'}",
        f"  speed: integer simulator {s['integer_samples_per_s']:.0f} samples/s, Lava {s['lava_samples_per_s']:.1f}"
        " samples/s",
        "  files:",
        f"    data        {', '.join(f['data'])}",
        f"    checkpoint  {f['checkpoint']} (training log {f['training log']})",
        f"    NIR graph   {f['nir']}",
        f"    plots       {', '.join(f['plots'])}",
        f"    reports     {', '.join(f['reports'])}",
    ]
    return "\n".join(lines)


def _demo(args: argparse.Namespace) -> int:
    try:
        s = run(args)
    except (DemoError, OSError) as exc:
        print(f"\ncrsnn demo: FAILED: {exc}", file=sys.stderr)
        return 1
    print(format_summary(s))
    return 0 if s["mismatching_spikes"] == 0 and s["mismatching_readout_values"] == 0 else 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command("crsnn demo", lambda: _demo(args))


if __name__ == "__main__":
    sys.exit(main())
