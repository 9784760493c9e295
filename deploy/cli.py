"""The deploy commands: ``crsnn-run``, ``crsnn-verify`` and ``crsnn-report``.

``--data`` is the test set: a single SHD-layout file is the test set, a folder uses its test file
(``test.h5``, ``shd_test.h5``, ``ssc_test.h5``), nothing else is read. Every output path is
checked before any work; outputs are written atomically. A user error is one line and exit status
2; a signal ends every Lava process within ~1 s and exits 128 + its number (130 SIGINT, 143 SIGTERM,
129 SIGHUP); see :mod:`crsnn.cli_errors`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from tqdm import tqdm

from crsnn.atomic_write import check_writable, json_bytes, write_bytes_atomic, write_together
from crsnn.cli_errors import run_command
from crsnn.cli_types import CommandParser, count_or_all, positive_float, positive_int
from crsnn.deploy.backends import (BACKENDS, SIM_DEVICES, BackendUnavailable, require_loihi2, run_batch,
                                   sim_device)
from crsnn.deploy.evaluate import (EvalDataError, binning_from_metadata, confusion_matrix, format_confusion,
                                   load_test_set, plot_rasters, predict)
from crsnn.deploy.report import format_report, network_report
from crsnn.deploy.watchdog import LavaRunError, LavaTimeoutError
from crsnn.export.nir_reader import NIRImportError, load_nir, read_graph


class CommandError(RuntimeError):
    """A user error: printed as one line, exit status 2."""


USER_ERRORS = (CommandError, EvalDataError, BackendUnavailable)
FAILURES = (LavaRunError, LavaTimeoutError)
DATA_HELP = ("test data: an SHD-layout .h5 file (the test set), a folder (its test file is used; nothing else "
             "is read), or synthetic[:key=value,...]")

_count = count_or_all  # kept for callers of the old name


def _load(nir_path: str, dt: float | None = None):
    """(integer network, graph metadata) of a NIR file."""
    try:
        g = read_graph(nir_path)
        net = load_nir(g, dt=dt)
    except NIRImportError as exc:
        raise CommandError(str(exc)) from None
    meta = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in dict(g.metadata or {}).items()}
    return net, meta


def _binning_args(ap: argparse.ArgumentParser) -> None:
    g = ap.add_argument_group("binning (default: what the network was trained with, from the file's metadata)")
    g.add_argument("--dt", type=positive_float, default=None, help="bin width in seconds")
    g.add_argument("--max-time", type=positive_float, default=None, help="seconds of each sample kept")
    g.add_argument("--channel-group", type=positive_int, default=None, help="sum groups of this many input channels")


def _progress_runner(net, x: np.ndarray, backend: str, chunk: int, desc: str, progress: bool = True,
                     device: str = "cpu") -> tuple[Any, float]:
    bar = tqdm(total=len(x), desc=desc, unit="sample", file=sys.stderr, disable=not progress)
    t0 = time.perf_counter()
    try:
        out = run_batch(net, x, backend=backend, chunk=chunk, progress=bar.update, device=device)
    finally:
        bar.close()
    return out, time.perf_counter() - t0


# ------------------------------------------------------------------------------------ crsnn-run
def run_parser() -> argparse.ArgumentParser:
    ap = CommandParser(prog="crsnn-run",
                                 description="Run a NIR network on a test set and print its accuracy and "
                                             "confusion matrix.")
    ap.add_argument("nir", help="NIR file (crsnn-export output, or another tool's LIF/CubaLIF graph)")
    ap.add_argument("--data", required=True, help=DATA_HELP)
    ap.add_argument("--backend", choices=BACKENDS, default="lava-cpu", help="where the network runs")
    ap.add_argument("--device", choices=SIM_DEVICES, default="auto",
                    help="where --backend sim runs: cpu, cuda, or auto (CUDA when available; same results)")
    ap.add_argument("-n", type=count_or_all, default=None, help="number of test samples, or 'all' (default: all)")
    ap.add_argument("--chunk", type=positive_int, default=32, help="samples run side by side per Lava run")
    ap.add_argument("--json", help="also write the results to this JSON file")
    ap.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    _binning_args(ap)
    return ap


def _run(args: argparse.Namespace) -> int:
    if args.json:
        check_writable(args.json)
    if args.backend == "loihi2":
        require_loihi2()
    if args.backend == "sim":
        sim_device(args.device)  # a missing GPU is reported before any work
    net, meta = _load(args.nir)
    binning = binning_from_metadata(meta, args.dt, args.max_time, args.channel_group)
    data = load_test_set(args.data, net, binning, args.n)
    out, secs = _progress_runner(net, data.x, args.backend, args.chunk, f"{args.backend}", args.progress,
                                 device=args.device)
    pred = predict(out.readout_v, meta)
    acc = float((pred == data.y).mean()) if len(data.y) else 0.0
    n_classes = max(len(data.class_names), int(data.y.max()) + 1, net.n_out)
    cm = confusion_matrix(data.y, pred, n_classes)
    print(format_confusion(cm, data.class_names))
    print(f"{len(data.y)} samples in {secs:.1f} s ({len(data.y) / secs:.2f} samples/s) on {args.backend}")
    if args.json:
        write_bytes_atomic(args.json, json_bytes({"backend": args.backend, "samples": len(data.y), "accuracy": acc,
                                                  "seconds": secs, "confusion": cm.tolist(),
                                                  "class_names": data.class_names}))
    print(f"accuracy: {100 * acc:.2f}% ({int((pred == data.y).sum())}/{len(data.y)}) on {args.backend}")
    return 0


def run_main(argv: list[str] | None = None) -> int:
    args = run_parser().parse_args(argv)
    return run_command("crsnn-run", lambda: _run(args), USER_ERRORS, FAILURES)


# --------------------------------------------------------------------------------- crsnn-verify
def verify(checkpoint: str, nir_path: str, data_source: str, n: int | None, out_prefix: str, chunk: int = 32,
           binning_override: dict[str, Any] | None = None, log: Callable[[str], None] = print,
           progress: bool = True) -> dict[str, Any]:
    """Float model, integer simulator and Lava on the same ``n`` test samples. Returns the report
    (also written to ``<out_prefix>.json`` with the raster plot ``<out_prefix>.png``, together;
    both paths are checked before anything runs)."""
    import torch

    from crsnn.sim.compare import compare_runs
    from crsnn.train.checkpoint import CheckpointError, load_checkpoint, networks_equal

    png, js = f"{out_prefix}.png", f"{out_prefix}.json"
    check_writable(js, make_parents=True)
    check_writable(png)
    try:
        model, info = load_checkpoint(checkpoint, require_integer=True)
    except CheckpointError as exc:
        raise CommandError(str(exc)) from None
    net, meta = _load(nir_path)
    if not networks_equal(net, model.to_integer()):
        raise CommandError(f"{nir_path} is not the integer network of {checkpoint} (re-export it with crsnn-export)")
    binning = binning_from_metadata(meta, **(binning_override or {}))
    try:
        data = load_test_set(data_source, net, binning, n)
    except EvalDataError as exc:
        raise CommandError(str(exc)) from None
    n = len(data.y)
    with torch.no_grad():
        v_float = model.forward_float(torch.from_numpy(data.x)).double()
        float_pred = model.logits(v_float).argmax(dim=1).numpy()
    integer, t_int = _progress_runner(net, data.x, "sim", chunk, "integer simulator", progress)
    lava, t_lava = _progress_runner(net, data.x, "lava-cpu", chunk, "Lava (Loihi2SimCfg)", progress)
    mm = compare_runs(integer.hidden_spikes, integer.readout_v, lava.hidden_spikes, lava.readout_v)
    acc = {"float": float((float_pred == data.y).mean()),
           "integer": float((predict(integer.readout_v, meta) == data.y).mean()),
           "lava": float((predict(lava.readout_v, meta) == data.y).mean())}
    report = {
        "checkpoint": str(checkpoint), "nir": str(nir_path), "data": str(data_source), "samples": n,
        "binning": binning, "steps": int(data.x.shape[1]),
        "mismatching_spikes_per_layer": mm.spikes_per_layer, "mismatching_spikes": mm.spikes,
        "mismatching_readout_values": mm.readout_values, "first_mismatch": mm.first,
        "spikes_per_layer": [int(s.sum()) for s in integer.hidden_spikes],
        "spike_slots_per_layer": [int(s.size) for s in integer.hidden_spikes],
        "accuracy": acc,
        "seconds": {"integer": t_int, "lava": t_lava},
        "samples_per_s": {"integer": n / t_int, "lava": n / t_lava},
        "raster_png": png,
    }
    image = plot_rasters(png, integer.hidden_spikes, lava.hidden_spikes, 0,
                         title=f"{Path(nir_path).name}: Lava vs integer simulator, test sample 0")
    write_together([(png, image), (js, json_bytes(report))])
    for li, (m, s, slots) in enumerate(zip(mm.spikes_per_layer, report["spikes_per_layer"],
                                           report["spike_slots_per_layer"])):
        log(f"hidden layer {li}: {m} mismatching spikes ({s} spikes in {slots} neuron-steps)")
    log(f"readout: {mm.readout_values} mismatching voltages ({integer.readout_v.size} values)")
    log(f"speed: integer simulator {n / t_int:.1f} samples/s, Lava {n / t_lava:.2f} samples/s")
    log(f"wrote {png} and {js}")
    return report


def verify_parser() -> argparse.ArgumentParser:
    ap = CommandParser(prog="crsnn-verify",
                                 description="Check that the exported network running on Lava is the trained "
                                             "network: float model vs integer simulator vs Lava.")
    ap.add_argument("checkpoint", help="model.pt from crsnn-train")
    ap.add_argument("nir", help="out.nir from crsnn-export")
    ap.add_argument("--data", required=True, help=DATA_HELP)
    ap.add_argument("-n", type=count_or_all, default=64, help="test samples, or 'all'")
    ap.add_argument("--out", default=None, help="prefix of the PNG/JSON report (default: next to the NIR file, "
                                                "<nir without .nir>_verify)")
    ap.add_argument("--chunk", type=positive_int, default=32, help="samples side by side per Lava run")
    ap.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    _binning_args(ap)
    return ap


def _verify(args: argparse.Namespace) -> int:
    out = args.out or str(Path(args.nir).with_suffix("")) + "_verify"
    override = {k: v for k, v in (("dt", args.dt), ("max_time", args.max_time), ("channel_group", args.channel_group))
                if v is not None}
    rep = verify(args.checkpoint, args.nir, args.data, args.n, out, args.chunk, override, progress=args.progress)
    a = rep["accuracy"]
    print(f"lava-vs-integer: {rep['mismatching_spikes']} mismatching spikes, {rep['mismatching_readout_values']} "
          f"mismatching readout values over {rep['samples']} samples; accuracy float {100 * a['float']:.2f}% "
          f"integer {100 * a['integer']:.2f}% lava {100 * a['lava']:.2f}%")
    return 0 if rep["mismatching_spikes"] == 0 and rep["mismatching_readout_values"] == 0 else 1


def verify_main(argv: list[str] | None = None) -> int:
    args = verify_parser().parse_args(argv)
    return run_command("crsnn-verify", lambda: _verify(args), USER_ERRORS, FAILURES)


# --------------------------------------------------------------------------------- crsnn-report
def report_parser() -> argparse.ArgumentParser:
    ap = CommandParser(prog="crsnn-report",
                                 description="Loihi 2 resources of a NIR network: neurons, synapses, delays, "
                                             "weight bits, fit, cores, synaptic operations per sample.")
    ap.add_argument("nir", help="NIR file (crsnn-export output, or another tool's LIF/CubaLIF graph)")
    ap.add_argument("--data", help="measure synaptic operations on this test data (integer simulator): " + DATA_HELP)
    ap.add_argument("-n", type=count_or_all, default=64, help="samples for --data, or 'all'")
    ap.add_argument("--json", help="also write the report to this JSON file")
    _binning_args(ap)
    return ap


def _report(args: argparse.Namespace) -> int:
    if args.json:
        check_writable(args.json)
    net, meta = _load(args.nir)
    spikes = x = None
    if args.data:
        data = load_test_set(args.data, net, binning_from_metadata(meta, args.dt, args.max_time, args.channel_group),
                             args.n)
        x = data.x
        spikes = run_batch(net, x, backend="sim").hidden_spikes
    rep = network_report(net, spikes, x)
    print(format_report(rep))
    if args.json:
        write_bytes_atomic(args.json, json_bytes(rep))
    return 0 if rep["total"]["fits"] else 1


def report_main(argv: list[str] | None = None) -> int:
    args = report_parser().parse_args(argv)
    return run_command("crsnn-report", lambda: _report(args), USER_ERRORS, FAILURES)
