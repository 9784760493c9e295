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
from crsnn.input_files import NotRegularFileError, check_regular_input


class CommandError(RuntimeError):
    """A user error: printed as one line, exit status 2."""


USER_ERRORS = (CommandError, EvalDataError, BackendUnavailable)
FAILURES = (LavaRunError, LavaTimeoutError)
DATA_HELP = ("test data: an SHD-layout .h5 file (the test set), a folder (its test file is used; nothing else "
             "is read), or synthetic[:key=value,...]")

_count = count_or_all  # kept for callers of the old name


def _load(nir_path: str, dt: float | None = None, time_unit: str = "seconds"):
    """(integer network, graph metadata) of a NIR file, or of a crsnn-train checkpoint
    (:mod:`crsnn.deploy.artifact`: the artifact of networks NIR cannot express, CS-GRU). ``dt``
    and ``time_unit`` matter only for another tool's graph (see :func:`_graph_time_args`); a crsnn
    graph counts in steps."""
    from crsnn.deploy.artifact import checkpoint_network, is_checkpoint_path
    from crsnn.export.nir_foreign import is_crsnn_graph

    if is_checkpoint_path(nir_path):
        from crsnn.train.checkpoint import CheckpointError

        try:
            return checkpoint_network(nir_path)
        except CheckpointError as exc:
            raise CommandError(str(exc)) from None

    try:
        g = read_graph(nir_path)
        foreign = not is_crsnn_graph(g)
        if foreign and time_unit == "seconds" and dt is None:
            raise CommandError(f"{nir_path}: not a crsnn graph, and its time constants are in seconds: pass "
                               "--graph-dt SECONDS (the simulation step), or --graph-time-unit steps "
                               "(or convert it once with crsnn-import)")
        net = load_nir(g, dt=dt if foreign and time_unit == "seconds" else None)
    except NIRImportError as exc:
        raise CommandError(str(exc)) from None
    meta = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in dict(g.metadata or {}).items()}
    if foreign and dt is not None:
        meta.setdefault("dt", dt)  # default data binning: one step of the graph
    return net, meta


def _graph_time_args(ap: argparse.ArgumentParser) -> None:
    g = ap.add_argument_group("another tool's NIR graph (snnTorch, Norse, ...; ignored for crsnn graphs)")
    g.add_argument("--graph-dt", type=positive_float, default=None,
                   help="simulation step in seconds; the graph's time constants are divided by it (--dt is the "
                        "data binning)")
    g.add_argument("--graph-time-unit", choices=("seconds", "steps"), default="seconds",
                   help="unit of the graph's time constants")


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
    _graph_time_args(ap)
    return ap


def inputs_of(*paths: str | None, data: str | None = None) -> list[str | Path]:
    """The files a deploy command reads (``None`` entries dropped): no output may be one of them."""
    from crsnn.train.datasets import data_files

    return [p for p in paths if p is not None] + (data_files(data) if data else [])


def _refuse_special(path: str, what: str) -> None:
    """A :class:`CommandError` when ``path`` is a FIFO, a device or a socket (see
    :mod:`crsnn.input_files`): a FIFO would block the HDF5 reader until killed."""
    try:
        check_regular_input(path, what)
    except NotRegularFileError as exc:
        raise CommandError(str(exc)) from None


def _run(args: argparse.Namespace) -> int:
    if args.json:
        check_writable(args.json, inputs=inputs_of(args.nir, data=args.data))
    if args.backend == "loihi2":
        _refuse_csgru_on_loihi2(args.nir)
        require_loihi2()
    if args.backend == "sim":
        sim_device(args.device)  # a missing GPU is reported before any work
    net, meta = _load(args.nir, args.graph_dt, args.graph_time_unit)
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


def _refuse_csgru_on_loihi2(path: str) -> None:
    """A checkpoint with CS-GRU layers cannot run on Loihi 2 from here: say what it would need."""
    from crsnn.deploy.artifact import is_checkpoint_path

    if is_checkpoint_path(path):
        from crsnn import loihi2 as L2

        net, _ = _load(path)
        if net.has_csgru:
            raise CommandError(f"{path}: {L2.csgru_hardware_needs()}; run it with --backend lava-cpu or sim")


def run_main(argv: list[str] | None = None) -> int:
    args = run_parser().parse_args(argv)
    return run_command("crsnn-run", lambda: _run(args), USER_ERRORS, FAILURES)


# --------------------------------------------------------------------------------- crsnn-verify
BINNING_KEYS = (("dt", "--dt SECONDS", ("metadata.data.dt", "data.dt", "dt")),
                ("max_time", "--max-time SECONDS", ("metadata.data.max_time", "data.max_time")),
                ("channel_group", "--channel-group N", ("metadata.data.channel_group", "data.channel_group")))


def _required_binning(nir_path: str, meta: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """The binning of a check without a checkpoint: each of dt, max_time and channel_group given or
    in the graph's metadata (a foreign graph's ``--graph-dt`` counts as its ``dt``); no guessing."""
    missing = [opt for key, opt, names in BINNING_KEYS
               if override.get(key) is None and not any(meta.get(k) is not None for k in names)]
    if missing:
        raise CommandError(f"{nir_path}: without a checkpoint the data binning must be given or be in the graph's "
                           f"metadata, which has no {', '.join(m.split()[0][2:] for m in missing)}: pass "
                           f"{' '.join(missing)}")
    return binning_from_metadata(meta, **override)


def verify(checkpoint: str | None, nir_path: str, data_source: str, n: int | None, out_prefix: str, chunk: int = 32,
           binning_override: dict[str, Any] | None = None, log: Callable[[str], None] = print,
           progress: bool = True, graph_dt: float | None = None, graph_time_unit: str = "seconds") -> dict[str, Any]:
    """Float model, integer simulator and Lava on the same ``n`` test samples. Returns the report
    (also written to ``<out_prefix>.json`` with the raster plot ``<out_prefix>.png``, together;
    both paths are checked before anything runs).

    ``checkpoint=None``: the graph alone (a crsnn export, a ``crsnn-import`` output, or another
    tool's graph with ``graph_dt``/``graph_time_unit``): integer simulator against Lava only (no
    float model, ``accuracy['float']`` is None); the binning must then be in ``binning_override``
    or the graph's metadata."""
    from crsnn.export.netx_writer import is_netx_file

    _refuse_special(nir_path, "NIR or netx file")  # before is_netx_file opens it
    if is_netx_file(nir_path):  # lava-dl netx file (crsnn-export --format netx): run with netx's loader
        from crsnn.deploy.netx_verify import verify_netx

        if checkpoint is None:
            raise CommandError(f"{nir_path}: a netx file is verified against its checkpoint: pass "
                               "crsnn-verify MODEL.pt OUT.net.h5")

        return verify_netx(checkpoint, nir_path, data_source, n, out_prefix, chunk, binning_override, log, progress)
    from crsnn.deploy.artifact import is_checkpoint_path
    from crsnn.train.checkpoint import networks_equal

    if checkpoint is None and is_checkpoint_path(nir_path):  # the checkpoint is the artifact
        checkpoint = nir_path
    png, js = f"{out_prefix}.png", f"{out_prefix}.json"
    inputs = inputs_of(checkpoint, nir_path, data=data_source)
    check_writable(js, make_parents=True, inputs=inputs)
    check_writable(png, inputs=inputs)
    model = None if checkpoint is None else trained_model(checkpoint)
    net, meta = _load(nir_path, graph_dt, graph_time_unit)
    if model is not None and not networks_equal(net, model.to_integer()):
        raise CommandError(f"{nir_path} is not the integer network of {checkpoint} (re-export it with crsnn-export)")
    if model is None:
        binning = _required_binning(nir_path, meta, binning_override or {})
    else:
        binning = binning_from_metadata(meta, **(binning_override or {}))
    data = checked_test_set(data_source, net, binning, n)
    float_pred = None if model is None else float_predictions(model, data.x)
    integer, t_int = _progress_runner(net, data.x, "sim", chunk, "integer simulator", progress)
    lava, t_lava = _progress_runner(net, data.x, "lava-cpu", chunk, "Lava (Loihi2SimCfg)", progress)
    head = {"checkpoint": None if checkpoint is None else str(checkpoint), "nir": str(nir_path)}
    return verify_report(head, data_source, data, binning, meta, float_pred, (integer, t_int),
                         (lava.hidden_spikes, lava.readout_v, t_lava), "Lava", (png, js), log)


def trained_model(checkpoint: str) -> Any:
    """The QAT-trained model of ``checkpoint`` (eval mode); a bad file is a :class:`CommandError`."""
    from crsnn.train.checkpoint import CheckpointError, load_checkpoint

    try:
        return load_checkpoint(checkpoint, require_integer=True)[0]
    except CheckpointError as exc:
        raise CommandError(str(exc)) from None


def checked_test_set(data_source: str, net: Any, binning: dict[str, Any], n: int | None) -> Any:
    """:func:`~crsnn.deploy.evaluate.load_test_set` with its data errors as :class:`CommandError`."""
    try:
        return load_test_set(data_source, net, binning, n)
    except EvalDataError as exc:
        raise CommandError(str(exc)) from None


def float_predictions(model: Any, x: np.ndarray) -> np.ndarray:
    """The float model's predicted class per sample of ``x`` ((samples, steps, n_in) integers)."""
    import torch

    with torch.no_grad():
        return model.logits(model.forward_float(torch.from_numpy(x)).double()).argmax(dim=1).numpy()


def verify_report(head: dict[str, Any], data_source: str, data: Any, binning: dict[str, Any], meta: dict[str, Any],
                  float_pred: np.ndarray | None, integer_run: tuple[Any, float],
                  lava_run: tuple[list[np.ndarray], np.ndarray, float], lava_name: str, outputs: tuple[str, str],
                  log: Callable[[str], None]) -> dict[str, Any]:
    """Compare the integer simulator's run with Lava's on the same test samples, write the report
    JSON and the raster PNG together, log one line per layer and return the report (shared by the
    NIR and the netx checks).

    head: the report's first keys (checkpoint, graph path, format). data: the test set (``x``
    (samples, steps, n_in) integers, ``y`` labels). float_pred: the float model's predicted classes
    (None without a checkpoint). integer_run: ``(SimResult, seconds)``. lava_run: hidden spikes
    (one bool (samples, steps, n) per layer), readout voltages int (samples, steps, n_out),
    seconds. lava_name: how the Lava run is named in the plot and the speed line."""
    from crsnn.sim.compare import compare_runs

    integer, t_int = integer_run
    lava_hidden, lava_v, t_lava = lava_run
    png, js = outputs
    n = len(data.y)
    mm = compare_runs(integer.hidden_spikes, integer.readout_v, lava_hidden, lava_v)
    acc = {"float": None if float_pred is None else float((float_pred == data.y).mean()),
           "integer": float((predict(integer.readout_v, meta) == data.y).mean()),
           "lava": float((predict(lava_v, meta) == data.y).mean())}
    report = {
        **head, "data": str(data_source), "samples": n, "binning": binning, "steps": int(data.x.shape[1]),
        "mismatching_spikes_per_layer": mm.spikes_per_layer, "mismatching_spikes": mm.spikes,
        "mismatching_readout_values": mm.readout_values, "first_mismatch": mm.first,
        "spikes_per_layer": [int(s.sum()) for s in integer.hidden_spikes],
        "spike_slots_per_layer": [int(s.size) for s in integer.hidden_spikes],
        "accuracy": acc,
        "seconds": {"integer": t_int, "lava": t_lava},
        "samples_per_s": {"integer": n / t_int, "lava": n / t_lava},
        "raster_png": png,
    }
    image = plot_rasters(png, integer.hidden_spikes, lava_hidden, 0,
                         title=f"{Path(head['nir']).name}: {lava_name} vs integer simulator, test sample 0")
    write_together([(png, image), (js, json_bytes(report))])
    for li, (m, s, slots) in enumerate(zip(mm.spikes_per_layer, report["spikes_per_layer"],
                                           report["spike_slots_per_layer"])):
        log(f"hidden layer {li}: {m} mismatching spikes ({s} spikes in {slots} neuron-steps)")
    log(f"readout: {mm.readout_values} mismatching voltages ({integer.readout_v.size} values)")
    log(f"speed: integer simulator {n / t_int:.1f} samples/s, {lava_name} {n / t_lava:.2f} samples/s")
    log(f"wrote {png} and {js}")
    return report


def verify_parser() -> argparse.ArgumentParser:
    ap = CommandParser(prog="crsnn-verify",
                                 description="Check that the exported network running on Lava is the trained "
                                             "network: float model vs integer simulator vs Lava. With the NIR "
                                             "file alone (a crsnn-import output, or another tool's graph with "
                                             "--graph-dt): integer simulator vs Lava, every spike and readout "
                                             "value; the binning then comes from --dt/--max-time/--channel-group "
                                             "or the graph's metadata.")
    ap.add_argument("checkpoint", nargs="?", default=None,
                    help="model.pt from crsnn-train (optional: without it there is no float model to compare)")
    ap.add_argument("nir", help="out.nir from crsnn-export (or out.net.h5 from crsnn-export --format netx), or "
                                "any NIR graph when no checkpoint is given")
    ap.add_argument("--data", required=True, help=DATA_HELP)
    ap.add_argument("-n", type=count_or_all, default=64, help="test samples, or 'all'")
    ap.add_argument("--out", default=None, help="prefix of the PNG/JSON report (default: next to the NIR file, "
                                                "<nir without .nir>_verify)")
    ap.add_argument("--chunk", type=positive_int, default=32, help="samples side by side per Lava run")
    ap.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    _binning_args(ap)
    _graph_time_args(ap)
    return ap


def _verify(args: argparse.Namespace) -> int:
    out = args.out or str(Path(args.nir).with_suffix("")) + "_verify"
    override = {k: v for k, v in (("dt", args.dt), ("max_time", args.max_time), ("channel_group", args.channel_group))
                if v is not None}
    rep = verify(args.checkpoint, args.nir, args.data, args.n, out, args.chunk, override, progress=args.progress,
                 graph_dt=args.graph_dt, graph_time_unit=args.graph_time_unit)
    a = rep["accuracy"]
    fl = "" if a["float"] is None else f"float {100 * a['float']:.2f}% "
    print(f"lava-vs-integer: {rep['mismatching_spikes']} mismatching spikes, {rep['mismatching_readout_values']} "
          f"mismatching readout values over {rep['samples']} samples; accuracy {fl}"
          f"integer {100 * a['integer']:.2f}% lava {100 * a['lava']:.2f}%")
    return 0 if rep["mismatching_spikes"] == 0 and rep["mismatching_readout_values"] == 0 else 1


def verify_main(argv: list[str] | None = None) -> int:
    args = verify_parser().parse_intermixed_args(argv)  # [checkpoint] nir, options anywhere
    return run_command("crsnn-verify", lambda: _verify(args), USER_ERRORS, FAILURES)


# --------------------------------------------------------------------------------- crsnn-report
def report_parser() -> argparse.ArgumentParser:
    ap = CommandParser(prog="crsnn-report",
                                 description="Loihi 2 resources of a NIR network: neurons, synapses, delays, "
                                             "weight bits, fit, cores, synaptic operations per sample; and "
                                             "NeuroBench's metrics of the deployed integers (footprint, connection "
                                             "sparsity; with --data activation sparsity, effective and dense "
                                             "synaptic operations, neuron updates).")
    ap.add_argument("nir", help="NIR file (crsnn-export output, or another tool's LIF/CubaLIF graph)")
    ap.add_argument("--data", help="measure synaptic operations and NeuroBench's workload metrics on this test "
                                   "data (integer simulator): " + DATA_HELP)
    ap.add_argument("-n", type=count_or_all, default=64, help="samples for --data, or 'all'")
    ap.add_argument("--json", help="also write the report to this JSON file")
    _binning_args(ap)
    _graph_time_args(ap)
    return ap


def _report(args: argparse.Namespace) -> int:
    if args.json:
        check_writable(args.json, inputs=inputs_of(args.nir, data=args.data))
    net, meta = _load(args.nir, args.graph_dt, args.graph_time_unit)
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
