"""``crsnn-verify model.pt out.net.h5``: the netx branch of :func:`crsnn.deploy.cli.verify`.

The netx file (``crsnn-export --format netx``) is loaded with lava-dl's own
``lava.lib.dl.netx.hdf5.Network`` and run on ``Loihi2SimCfg(select_tag='fixed_pt')``
(:func:`crsnn.deploy.netx_run.run_netx`); every hidden spike and readout voltage is compared with
crsnn's integer simulator running the checkpoint's integer network. Same report, files and last
line as for a NIR file.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from tqdm import tqdm

from crsnn.atomic_write import check_writable, json_bytes, write_together


def verify_netx(checkpoint: str, netx_path: str, data_source: str, n: int | None, out_prefix: str, chunk: int = 32,
                binning_override: dict[str, Any] | None = None, log: Callable[[str], None] = print,
                progress: bool = True) -> dict[str, Any]:
    """Float model, integer simulator and lava-dl netx on Lava on the same ``n`` test samples;
    the report of :func:`crsnn.deploy.cli.verify` (``nir`` names the netx file)."""
    import torch

    from crsnn.deploy.cli import CommandError, _progress_runner
    from crsnn.deploy.evaluate import EvalDataError, binning_from_metadata, load_test_set, plot_rasters, predict
    from crsnn.deploy.netx_run import run_netx
    from crsnn.export.netx_writer import NetxExportError, netx_metadata, read_netx, same_arithmetic
    from crsnn.sim.compare import compare_runs
    from crsnn.train.checkpoint import CheckpointError, load_checkpoint

    png, js = f"{out_prefix}.png", f"{out_prefix}.json"
    check_writable(js, make_parents=True)
    check_writable(png)
    try:
        model, info = load_checkpoint(checkpoint, require_integer=True)
    except CheckpointError as exc:
        raise CommandError(str(exc)) from None
    net = model.to_integer()
    try:
        from_file = read_netx(netx_path)
    except (NetxExportError, ValueError) as exc:
        raise CommandError(f"{netx_path}: {exc}".replace("\n", " ")) from None
    if not same_arithmetic(from_file, net):
        raise CommandError(f"{netx_path} is not the integer network of {checkpoint} (re-export it with "
                           "crsnn-export --format netx)")
    meta = netx_metadata(netx_path)
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
    bar = tqdm(total=n, desc="lava-dl netx (Loihi2SimCfg)", unit="sample", file=sys.stderr, disable=not progress)
    t0 = time.perf_counter()
    hidden: list[list[np.ndarray]] = []
    volts: list[np.ndarray] = []
    try:
        for lo in range(0, n, chunk):
            res = run_netx(netx_path, data.x[lo:lo + chunk], net.input_message_bits)
            hidden.append(res.hidden_spikes)
            volts.append(res.readout_v)
            bar.update(len(res.readout_v))
    finally:
        bar.close()
    t_lava = time.perf_counter() - t0
    lava_hidden = [np.concatenate([h[li] for h in hidden]) for li in range(len(net.hidden))]
    lava_v = np.concatenate(volts)
    mm = compare_runs(integer.hidden_spikes, integer.readout_v, lava_hidden, lava_v)
    acc = {"float": float((float_pred == data.y).mean()),
           "integer": float((predict(integer.readout_v, meta) == data.y).mean()),
           "lava": float((predict(lava_v, meta) == data.y).mean())}
    report = {
        "checkpoint": str(checkpoint), "nir": str(netx_path), "format": "netx", "data": str(data_source),
        "samples": n, "binning": binning, "steps": int(data.x.shape[1]),
        "mismatching_spikes_per_layer": mm.spikes_per_layer, "mismatching_spikes": mm.spikes,
        "mismatching_readout_values": mm.readout_values, "first_mismatch": mm.first,
        "spikes_per_layer": [int(s.sum()) for s in integer.hidden_spikes],
        "spike_slots_per_layer": [int(s.size) for s in integer.hidden_spikes],
        "accuracy": acc, "seconds": {"integer": t_int, "lava": t_lava},
        "samples_per_s": {"integer": n / t_int, "lava": n / t_lava}, "raster_png": png,
    }
    image = plot_rasters(png, integer.hidden_spikes, lava_hidden, 0,
                         title=f"{Path(netx_path).name}: lava-dl netx vs integer simulator, test sample 0")
    write_together([(png, image), (js, json_bytes(report))])
    for li, (m, s, slots) in enumerate(zip(mm.spikes_per_layer, report["spikes_per_layer"],
                                           report["spike_slots_per_layer"])):
        log(f"hidden layer {li}: {m} mismatching spikes ({s} spikes in {slots} neuron-steps)")
    log(f"readout: {mm.readout_values} mismatching voltages ({integer.readout_v.size} values)")
    log(f"speed: integer simulator {n / t_int:.1f} samples/s, lava-dl netx on Lava {n / t_lava:.2f} samples/s")
    log(f"wrote {png} and {js}")
    return report
