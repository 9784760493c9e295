"""``crsnn-import IN.nir OUT.nir --dt SECONDS``: another tool's NIR graph -> a crsnn graph for Loihi 2.

Reads a graph as snnTorch, Norse (and other NIR exporters) write it (:mod:`crsnn.export.nir_foreign`:
tolerant types and shapes, nested subgraphs flattened, recurrent biases folded), quantizes it onto
Loihi 2 (:func:`crsnn.export.nir_reader.load_nir`: 8-bit weights with per-connection exponents, integer
decays, threshold scale), prints per layer what it chose, and a fidelity report: the float
simulation of the graph's NIR semantics (:mod:`crsnn.export.nir_float_ref`) against the integer
network on the same inputs (Bernoulli spikes at ``--rate``, or ``--data FILE.h5``). Writes a
``crsnn-nir/1`` graph that ``crsnn-run``, ``crsnn-report`` and ``crsnn-verify`` read exactly.

Time: ``--dt`` is the length of one simulation step in seconds. With ``--time-unit seconds`` (the
default) the graph's time constants are in seconds and are divided by ``--dt`` (snnTorch writes
them for dt = 1e-4 s, Norse for 1e-3 s); with ``--time-unit steps`` they already count steps and
``--dt`` is optional (metadata and ``--data`` binning only).

A graph that cannot be mapped, a bad file or an unwritable output is one line and exit status 2;
nothing is written then. ``--min-corr`` makes a fidelity below it exit 1 (the file is still written).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import nir
import numpy as np

from crsnn.atomic_write import check_writable, json_bytes, write_together
from crsnn.cli_errors import run_command
from crsnn.cli_types import CommandParser, float_range, positive_float, positive_int, probability, seed
from crsnn.export.nir_float_ref import fidelity, fidelity_bytes_per_sample, populations, quantization_summary
from crsnn.export.nir_foreign import implied_dt, is_crsnn_graph, normalize_foreign
from crsnn.export.nir_reader import NIRImportError, load_nir, read_graph
from crsnn.export.nir_writer import FORMAT, nir_bytes, to_nir
from crsnn.memory import available, gib
from crsnn.models.integer import IntegerNetwork


def build_parser() -> argparse.ArgumentParser:
    ap = CommandParser(prog="crsnn-import", description=__doc__.split("\n\n")[0])
    ap.add_argument("graph", help="NIR file written by another tool (snnTorch export_to_nir, Norse to_nir, ...)")
    ap.add_argument("out", help="crsnn NIR file to write (crsnn-nir/1)")
    ap.add_argument("--dt", type=positive_float, default=None,
                    help="one simulation step in seconds (required with --time-unit seconds)")
    ap.add_argument("--time-unit", choices=("seconds", "steps"), default="seconds",
                    help="unit of the graph's time constants")
    g = ap.add_argument_group("fidelity inputs (default: random Bernoulli spikes)")
    g.add_argument("--rate", type=probability, default=0.1, help="spike probability per input and step")
    g.add_argument("--steps", type=positive_int, default=100, help="steps per random sample")
    g.add_argument("--samples", type=positive_int, default=32, help="random samples (or samples of --data)")
    g.add_argument("--seed", type=seed, default=0, help="seed of the random inputs")
    g.add_argument("--data", default=None, help="use this SHD-layout .h5 file (binned with --dt) instead")
    g.add_argument("--max-time", type=positive_float, default=1.0, help="seconds of each --data sample kept")
    g.add_argument("--channel-group", type=positive_int, default=1, help="sum groups of this many --data channels")
    ap.add_argument("--explain", action="store_true",
                    help="attribution: replay the float reference with one quantization step at a time and report "
                         "what each costs per layer")
    ap.add_argument("--calibrate", action="store_true",
                    help="choose per layer the scale and recurrent exponent that agree best with the float reference "
                         "(on random inputs of the next seed, or on the --data samples) and write that network")
    ap.add_argument("--json", default=None, help="also write the report to this JSON file")
    ap.add_argument("--min-corr", type=float_range(-1, 1), default=None,
                    help="exit 1 when a spiking layer's spike-count correlation is below this")
    return ap


#: Samples of the fidelity inputs the attribution (--explain) replays.
ATTRIBUTION_SAMPLES = 32
#: Random samples --calibrate measures its candidates on (at least; --samples when more).
CALIBRATION_SAMPLES = 64


def _hint(g: nir.NIRGraph) -> str:
    dt = implied_dt(g)
    return f" (its r = tau/dt suggests --dt {dt:g})" if dt else ""


def _check_steps(ng: nir.NIRGraph, dt: float | None, g: nir.NIRGraph) -> None:
    """Every time constant must be at least one step (forward Euler is unstable below)."""
    for name, node in ng.nodes.items():
        for f in ("tau", "tau_mem", "tau_syn"):
            if hasattr(node, f):
                t = float(np.min(np.asarray(getattr(node, f))))
                if t < 1.0:
                    unit = f"dt = {dt:g} s" if dt else "steps"
                    raise NIRImportError(f"node '{name}' ({type(node).__name__}): {f} is {t:.3g} steps at {unit}, "
                                         f"shorter than one step; pass the step in the graph's time unit with --dt"
                                         f"{_hint(g)} or --time-unit steps")


def _inputs(args: argparse.Namespace, net: IntegerNetwork) -> tuple[np.ndarray, str]:
    if args.data:
        from crsnn.deploy.evaluate import EvalDataError, load_test_set

        if args.dt is None:
            raise NIRImportError("--data needs --dt SECONDS to bin the spikes into steps")
        binning = {"dt": args.dt, "max_time": args.max_time, "channel_group": args.channel_group}
        try:
            data = load_test_set(args.data, net, binning, args.samples)
        except EvalDataError as exc:
            raise NIRImportError(str(exc)) from None
        return data.x.astype(np.int64), f"{len(data.x)} samples of {args.data} x {data.x.shape[1]} steps"
    rng = np.random.default_rng(args.seed)
    x = (rng.random((args.samples, args.steps, net.n_in)) < args.rate).astype(np.int64)
    return x, f"{args.samples} samples x {args.steps} steps, Bernoulli input p = {args.rate:g}"


def _fidelity_chunk(args: argparse.Namespace, pops: list, n_in: int) -> int:
    """Samples the fidelity check simulates at once so that it fits the memory this process may
    still allocate (:func:`crsnn.memory.available`); refuses, in one line and before allocating,
    a check that does not fit with even one sample."""
    steps = args.steps if not args.data else max(1, int(round(args.max_time / args.dt)))
    per = fidelity_bytes_per_sample(pops, steps, n_in)
    inputs = 0 if args.data else 8 * args.samples * steps * n_in  # the random input, held whole
    budget = available()
    room = int(0.8 * budget.bytes) - inputs
    if room < per:
        neurons = sum(p.n for p in pops)
        raise NIRImportError(f"the fidelity check needs about {gib(inputs + per)} for one sample of {steps} steps x "
                             f"{neurons + n_in} neurons{' and its input' if inputs > per // 10 else ''}, more than the "
                             f"{gib(0.8 * budget.bytes)} it may use (80 % of the {gib(budget.bytes)} left by "
                             f"{budget.limit}); lower --steps{' or --samples' if inputs > per // 10 else ''}, or free memory")
    return max(1, min(args.samples, room // per))


def _fmt(v: float, nd: int = 4) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{nd}f}"


def format_quantization(rows: list[dict[str, Any]], thresholds: list[np.ndarray | None]) -> list[str]:
    lines = ["quantization onto Loihi 2 (8-bit mixed-sign weights, CUBA LIF):"]
    for i, (r, thr) in enumerate(zip(rows, thresholds)):
        parts = [f"  layer {i} '{r['name']}' ({r['kind']}, {r['neurons']} neurons):",
                 f"leak {r['beta']:.4f} -> dv {r['dv']} ({r['beta_int']:.4f})"]
        if "alpha" in r:
            parts.append(f"current leak {r['alpha']:.4f} -> du {r['du']} ({r['alpha_int']:.4f})")
        if thr is not None:
            t = f"{thr.min():g}" if np.all(thr == thr[0]) else f"{thr.min():g}..{thr.max():g} (rows rescaled)"
            parts.append(f"threshold {t} -> vth {r['vth']}")
        else:
            parts.append(f"no threshold (readout, vth {r['vth']})")
        parts.append(f"scale {r['scale']:.6g} units per 1.0")
        parts.append(f"ff weights x 2^{r['ff_weight_exp']}: {r['ff_clipped']} clipped, {r['ff_zeroed']} rounded to 0, "
                     f"rms error {100 * r['ff_rms_error']:.2f} %")
        if "rec_weight_exp" in r:
            parts.append(f"recurrent x 2^{r['rec_weight_exp']}: {r['rec_clipped']} clipped, {r['rec_zeroed']} rounded "
                         f"to 0, rms error {100 * r['rec_rms_error']:.2f} %")
        parts.append(f"bias x 2^{r['bias_exp']}, {r['bias_clipped']} clipped")
        lines.append(parts[0] + " " + "; ".join(parts[1:]))
    return lines


def format_fidelity(fid: dict[str, Any], inputs: str) -> list[str]:
    lines = [f"fidelity: float NIR reference vs integer network ({inputs}):"]
    for i, l in enumerate(fid["layers"]):
        if not l["spiking"]:
            lines.append(f"  layer {i} '{l['name']}' ({l['kind']}): non-spiking readout")
            continue
        quiet = "  (no spikes: the comparison says nothing, raise --rate)" if l["spikes_float"] == 0 else ""
        lines.append(f"  layer {i} '{l['name']}': spikes {l['spikes_float']} float / {l['spikes_integer']} integer; "
                     f"spike-count correlation {_fmt(l['count_corr'])}; spike-time agreement "
                     f"{_fmt(l['time_jaccard'], 3)} exact, {_fmt(l['time_jaccard_1'], 3)} within 1 step{quiet}")
    o = fid["output"]
    lines.append(f"  output: decision ({o['decision']} arg-max) agrees on {100 * o['decision_agreement']:.1f} % of "
                 f"samples; readout voltage correlation {_fmt(o['voltage_corr'])}")
    return lines


def _metadata(src: Path, g: nir.NIRGraph, dt: float | None, unit: str,
              binning: dict[str, Any] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"imported_from": src.name, "import_time_unit": unit}
    if dt is not None:
        meta["import_dt"] = float(dt)
    for k, v in (binning or {}).items():  # the --data binning: crsnn-run/-verify use it by default
        meta[f"data.{k}"] = v
    for k, v in dict(g.metadata or {}).items():
        v = v.decode() if isinstance(v, bytes) else v
        if isinstance(v, (str, int, float)) and not isinstance(v, bool) and k not in ("format", "dt"):
            meta[f"source.{k}"] = v
    return meta


def import_graph(source: str | Path | nir.NIRGraph, dt: float | None, time_unit: str = "seconds",
                 notes: list[str] | None = None) -> tuple[nir.NIRGraph, IntegerNetwork, nir.NIRGraph]:
    """(original graph, integer network, normalized graph in steps) of a foreign graph.

    ``dt``: one step in seconds; with ``time_unit='seconds'`` the graph's time constants are divided
    by it, with ``'steps'`` they are taken as steps. Raises :class:`NIRImportError` (one line)."""
    g = read_graph(source)
    if is_crsnn_graph(g):
        raise NIRImportError(f"{source}: already a {FORMAT} graph (written by crsnn-export); use it as it is")
    if time_unit == "seconds" and dt is None:
        raise NIRImportError(f"{source}: its time constants are in seconds: pass --dt SECONDS (the simulation step)"
                             f"{_hint(g)}, or --time-unit steps")
    step = dt if time_unit == "seconds" else None
    ng = normalize_foreign(g, step, notes)
    _check_steps(ng, step, g)
    return g, load_nir(ng), ng


def _import(args: argparse.Namespace) -> int:
    from crsnn.train.datasets import data_files

    inputs = [args.graph, *(data_files(args.data) if args.data else [])]  # no output replaces an input
    check_writable(args.out, inputs=inputs)
    if args.json:
        check_writable(args.json, inputs=inputs)
    notes: list[str] = []
    g, net, ng = import_graph(args.graph, args.dt, args.time_unit, notes)
    pops, _ = populations(ng)
    chunk = _fidelity_chunk(args, pops, net.n_in)
    x, what = _inputs(args, net)
    extra: dict[str, Any] = {}
    lines: list[str] = []
    if args.explain:
        from crsnn.export.nir_attribution import attribute, format_attribution

        att = attribute(pops, net, x[:ATTRIBUTION_SAMPLES])
        extra["attribution"] = att
        lines += format_attribution(att, pops)
    if args.calibrate:
        from crsnn.export.nir_calibrate import calibrate, format_calibration

        if args.data:
            xc, cwhat = x, f"the {len(x)} --data samples (also the fidelity inputs)"
        else:
            rng = np.random.default_rng(args.seed + 1)
            xc = (rng.random((max(args.samples, CALIBRATION_SAMPLES), args.steps, net.n_in)) < args.rate).astype(np.int64)
            cwhat = f"{len(xc)} random samples (seed {args.seed + 1}, not the fidelity inputs)"
        before = fidelity(pops, net, x, chunk=chunk)
        net, cal = calibrate(ng, pops, net, xc)
        extra["calibration"] = {"layers": cal, "fidelity_before": before}
        lines += format_calibration(cal, cwhat)
        lines += ["  before calibration:" + "".join(f" layer {i} {_fmt(l['count_corr'])};" for i, l in
                                                   enumerate(before["layers"]) if l["spiking"])
                  + f" decision {100 * before['output']['decision_agreement']:.1f} % (fidelity inputs)"]
    fid = fidelity(pops, net, x, chunk=chunk)
    rows = quantization_summary(pops, net)
    net.metadata = {}
    graph = to_nir(net, dt=float(args.dt) if args.dt else 1.0,
                   metadata=_metadata(Path(args.graph), g, args.dt, args.time_unit,
                                      {"dt": float(args.dt), "max_time": float(args.max_time),
                                       "channel_group": int(args.channel_group)} if args.data else None))
    if args.dt is None:  # time in steps: the graph states no step length (binning must then be given)
        del graph.metadata["dt"]
    report = {"source": str(args.graph), "out": str(args.out), "dt": args.dt, "time_unit": args.time_unit,
              "normalisation": notes, "quantization": rows, "fidelity": fid, **extra}
    items = [(args.out, nir_bytes(graph))] + ([(args.json, json_bytes(report))] if args.json else [])
    write_together(items)
    print(f"crsnn-import: {args.graph}: {len(pops)} layers, {net.n_in} inputs -> {net.n_out} outputs"
          + (f", dt = {args.dt:g} s" if args.dt else ", time in steps"))
    for n in notes:
        print(f"  {n}")
    thresholds = [p.p["v_threshold"] if p.spiking else None for p in pops]
    print("\n".join(format_quantization(rows, thresholds)))
    if lines:
        print("\n".join(lines))
    print("\n".join(format_fidelity(fid, what)))
    print(f"wrote {args.out} ({FORMAT}, {len(graph.nodes)} nodes): crsnn-run, crsnn-report and crsnn-verify read it "
          "exactly" + (f"; report {args.json}" if args.json else ""))
    if args.min_corr is not None:
        low = [l for l in fid["layers"] if l["spiking"] and not (l["count_corr"] >= args.min_corr)]
        if low:
            print(f"crsnn-import: spike-count correlation below {args.min_corr:g} in "
                  f"{', '.join(repr(l['name']) for l in low)}", file=sys.stderr)
            return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command("crsnn-import", lambda: _import(args), (NIRImportError,))


if __name__ == "__main__":
    sys.exit(main())
