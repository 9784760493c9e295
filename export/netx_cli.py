"""``crsnn-export model.pt out.net.h5 --format netx [--check]``: a checkpoint as lava-dl's netx
HDF5 file (see :mod:`crsnn.export.netx_writer` for what netx can express and why the rest is
refused). ``--check`` re-reads the file (:func:`crsnn.export.netx_writer.read_netx`) and compares
its integer simulation with the checkpoint's quantization-aware forward pass on random inputs;
``crsnn-verify model.pt out.net.h5`` runs the file with netx's own loader on Lava."""

from __future__ import annotations

import argparse

from crsnn.atomic_write import check_writable
from crsnn.export.netx_writer import NetxExportError, netx_problems, read_netx, write_netx_atomic


def export_netx(args: argparse.Namespace) -> int:
    """The ``--format netx`` branch of ``crsnn-export`` (``args`` as its parser makes them)."""
    from crsnn.deploy.report import format_report, network_report
    from crsnn.export.cli import ExportError, integer_network_of, run_check, time_step_and_metadata

    check_writable(args.out, inputs=[args.checkpoint])
    model, info, net = integer_network_of(args.checkpoint)
    dt, meta = time_step_and_metadata(args, info)
    problems = netx_problems(net)
    if problems:
        raise ExportError(f"{args.checkpoint}: netx cannot express this network: {'; '.join(problems)}")
    try:
        path = write_netx_atomic(net, args.out, float(dt), meta)
    except NetxExportError as exc:
        raise ExportError(f"{args.checkpoint}: {exc}") from None
    print(format_report(network_report(net)))
    print(f"wrote {path} ({path.stat().st_size / 1024:.1f} KiB, lava-dl netx: {len(net.layers) + 1} layers, "
          f"dt = {dt} s)")
    return run_check(model, path, args.check_samples, read_netx, (NetxExportError,)) if args.check else 0
