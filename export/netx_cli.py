"""``crsnn-export model.pt out.net.h5 --format netx [--check]``: a checkpoint as lava-dl's netx
HDF5 file (see :mod:`crsnn.export.netx_writer` for what netx can express and why the rest is
refused). ``--check`` re-reads the file (:func:`crsnn.export.netx_writer.read_netx`) and compares
its integer simulation with the checkpoint's quantization-aware forward pass on random inputs;
``crsnn-verify model.pt out.net.h5`` runs the file with netx's own loader on Lava."""

from __future__ import annotations

import argparse
import sys

from crsnn.atomic_write import check_writable
from crsnn.export.netx_writer import NetxExportError, netx_problems, read_netx, write_netx_atomic


def export_netx(args: argparse.Namespace) -> int:
    """The ``--format netx`` branch of ``crsnn-export`` (``args`` as its parser makes them)."""
    from crsnn.deploy.report import format_report, network_report
    from crsnn.export.cli import ExportError, _scalar_metadata, check_export, integer_network_of

    check_writable(args.out)
    model, info, net = integer_network_of(args.checkpoint)
    dt = args.dt if args.dt is not None else info.get("dt")
    if dt is None or not dt > 0:
        raise ExportError(f"{args.checkpoint}: the checkpoint records no positive time step; pass --dt SECONDS")
    problems = netx_problems(net)
    if problems:
        raise ExportError(f"{args.checkpoint}: netx cannot express this network: {'; '.join(problems)}")
    meta = _scalar_metadata({k: v for k, v in info.items() if k not in ("path", "history")})
    meta["dt"] = float(dt)
    try:
        path = write_netx_atomic(net, args.out, float(dt), meta)
    except NetxExportError as exc:
        raise ExportError(f"{args.checkpoint}: {exc}") from None
    print(format_report(network_report(net)))
    print(f"wrote {path} ({path.stat().st_size / 1024:.1f} KiB, lava-dl netx: {len(net.layers) + 1} layers, "
          f"dt = {dt} s)")
    if args.check:
        try:
            compared, spikes, readout = check_export(model, path, n_samples=args.check_samples, loader=read_netx)
        except NetxExportError as exc:
            print(f"crsnn-export: error: --check could not re-read {path}: {exc}", file=sys.stderr)
            return 1
        ok = spikes == 0 and readout == 0 and compared > 0
        print(f"check: {compared} spike slots compared, {spikes} mismatching spikes, {readout} mismatching readout "
              f"values: {'OK' if ok else 'FAILED'}")
        return 0 if ok else 1
    return 0
