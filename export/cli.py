"""``crsnn-export model.pt out.nir [--dt SECONDS] [--check]``: checkpoint -> NIR file
(``--format netx``: lava-dl's netx HDF5, :mod:`crsnn.export.netx_cli`).

Writes the checkpoint's integer network (``model.to_integer()``, the arithmetic QAT trained) as a
NIR graph in the ``crsnn-nir/1`` convention (see :mod:`crsnn.export`), atomically, and prints a
per-layer summary. ``--check`` re-reads the written file with :func:`crsnn.export.nir_reader.load_nir` and
verifies that it produces exactly the spikes and readout voltages of the checkpoint's own integer
mode on a few random inputs. Any problem is one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from crsnn.atomic_write import check_writable
from crsnn.cli_errors import run_command
from crsnn.cli_types import CommandParser, positive_float, positive_int
from crsnn.deploy.report import format_report, network_report
from crsnn.export.nir_reader import NIRImportError, load_nir
from crsnn.export.nir_writer import to_nir, write_nir_atomic
from crsnn.models.integer import IntegerNetwork, NetworkValidationError
from crsnn.sim.compare import compare_runs
from crsnn.sim.torch_sim import simulate_torch


class ExportError(RuntimeError):
    """A user-facing export failure (printed as one line)."""


def _scalar_metadata(info: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten checkpoint info into NIR-writable metadata (str/int/float/bool and 1-D numeric
    lists; None dropped)."""
    out: dict[str, Any] = {}
    for k, v in info.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_scalar_metadata(v, key + "."))
        elif isinstance(v, bool):
            out[key] = int(v)
        elif isinstance(v, (int, float, str)):
            out[key] = v
        elif isinstance(v, (list, tuple)) and v and all(isinstance(e, (int, float)) and not isinstance(e, bool) for e in v):
            out[key] = np.asarray(v)
    return out


def integer_network_of(checkpoint: str | Path) -> tuple[Any, dict[str, Any], IntegerNetwork]:
    """Load a crsnn-train checkpoint and return ``(model, info, integer network)``; raises
    :class:`ExportError` with one line for every user error."""
    from crsnn.train.checkpoint import CheckpointError, load_checkpoint

    try:
        model, info = load_checkpoint(checkpoint, require_integer=True)
    except CheckpointError as exc:
        raise ExportError(str(exc)) from None
    try:
        net = model.to_integer()
    except NetworkValidationError as exc:
        raise ExportError(f"{checkpoint}: the trained network does not fit Loihi 2: {exc}".replace("\n", " ")) from None
    return model, info, net


def check_export(model: Any, nir_path: Path, n_samples: int = 4, steps: int = 80, seed: int = 0,
                 loader: Any = load_nir) -> tuple[int, int, int]:
    """Re-read ``nir_path`` (with ``loader``: a NIR file, or a netx file with
    :func:`crsnn.export.netx_writer.read_netx`) and compare its integer simulation with the
    checkpoint's integer mode (the model's own quantization-aware forward pass in torch,
    ``qat_readout_int``) on random inputs. Returns (spike slots compared, mismatching spikes,
    mismatching readout values)."""
    import torch

    net = loader(nir_path)
    rng = np.random.default_rng(seed)
    active = rng.random((n_samples, steps, net.n_in)) < 0.1
    x = (active * rng.integers(1, net.max_input() + 1, (n_samples, steps, net.n_in))).astype(np.int64)
    with torch.no_grad():
        v, hidden = model.qat_readout_int(torch.from_numpy(x), return_hidden=True)
    ref_hidden = [h.cpu().numpy().astype(bool) for h in hidden]
    ref_v = np.rint(v.cpu().numpy()).astype(np.int64)
    got = simulate_torch(net, x)
    mm = compare_runs(ref_hidden, ref_v, got.hidden_spikes, got.readout_v)
    return sum(int(s.size) for s in got.hidden_spikes), mm.spikes, mm.readout_values


def build_parser() -> argparse.ArgumentParser:
    ap = CommandParser(prog="crsnn-export", description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", help="model.pt written by crsnn-train")
    ap.add_argument("out", help="NIR file to write (HDF5)")
    ap.add_argument("--dt", type=positive_float, default=None, help="time step in seconds (default: the checkpoint's)")
    ap.add_argument("--check", action="store_true", help="re-read the file and verify it spike for spike")
    ap.add_argument("--check-samples", type=positive_int, default=4, help="random inputs used by --check")
    ap.add_argument("--format", choices=("nir", "netx"), default="nir",
                    help="nir (crsnn-nir/1), or netx: lava-dl's HDF5 for feedforward networks "
                         "(crsnn.export.netx_writer)")
    ap.add_argument("--portable", action="store_true",
                    help="write plain NIR other tools open ((N,) shapes, 2-D weights, the conv recurrence as its "
                         "Linear matrix, time in seconds; crsnn.export.portable) instead of crsnn-nir/1")
    return ap


def _export(args: argparse.Namespace) -> int:
    if args.format == "netx":
        from crsnn.export.netx_cli import export_netx

        return export_netx(args)
    if args.portable and args.check:
        raise ExportError("--check verifies crsnn-nir/1 files spike for spike; a --portable graph is re-read "
                          "approximately (crsnn-import)")
    check_writable(args.out, inputs=[args.checkpoint])
    model, info, net = integer_network_of(args.checkpoint)
    dt, meta = time_step_and_metadata(args, info)
    try:
        if args.portable:
            from crsnn.export.portable import to_portable_nir

            graph = to_portable_nir(net, dt=float(dt), metadata=meta)
        else:
            graph = to_nir(net, dt=float(dt), metadata=meta)
    except (ValueError, NetworkValidationError) as exc:
        raise ExportError(f"{args.checkpoint}: {exc}".replace("\n", " ")) from None
    path = write_nir_atomic(graph, args.out)
    print(format_report(network_report(net)))
    print(f"wrote {path} ({path.stat().st_size / 1024:.1f} KiB, {len(graph.nodes)} nodes, dt = {dt} s)")
    return run_check(model, path, args.check_samples) if args.check else 0


def time_step_and_metadata(args: argparse.Namespace, info: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """The export's time step (seconds: ``--dt``, else the checkpoint's) and the graph metadata
    (the checkpoint's scalar facts plus ``dt``). Raises :class:`ExportError` without a positive one."""
    dt = args.dt if args.dt is not None else info.get("dt")
    if dt is None:
        raise ExportError(f"{args.checkpoint}: the checkpoint records no time step; pass --dt SECONDS")
    if not dt > 0:
        raise ExportError(f"{args.checkpoint}: its time step {dt} is not positive; pass --dt SECONDS")
    meta = _scalar_metadata({k: v for k, v in info.items() if k not in ("path", "history")})
    meta["dt"] = float(dt)
    return float(dt), meta


def run_check(model: Any, path: Path, samples: int, loader: Any = load_nir,
              unreadable: tuple[type[Exception], ...] = (NIRImportError,)) -> int:
    """``--check``: re-read ``path`` (with ``loader``, default the NIR reader), compare it with the
    model on ``samples`` random inputs, print the result line; exit status 0 (identical) or 1."""
    try:
        compared, spikes, readout = check_export(model, path, n_samples=samples, loader=loader)
    except unreadable as exc:
        print(f"crsnn-export: error: --check could not re-read {path}: {exc}", file=sys.stderr)
        return 1
    ok = spikes == 0 and readout == 0 and compared > 0
    print(f"check: {compared} spike slots compared, {spikes} mismatching spikes, {readout} mismatching readout "
          f"values: {'OK' if ok else 'FAILED'}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command("crsnn-export", lambda: _export(args), (ExportError,))


if __name__ == "__main__":
    sys.exit(main())
