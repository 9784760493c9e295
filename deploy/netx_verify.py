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
from typing import Any, Callable

import numpy as np
from tqdm import tqdm

from crsnn.atomic_write import check_writable


def verify_netx(checkpoint: str, netx_path: str, data_source: str, n: int | None, out_prefix: str, chunk: int = 32,
                binning_override: dict[str, Any] | None = None, log: Callable[[str], None] = print,
                progress: bool = True) -> dict[str, Any]:
    """Float model, integer simulator and lava-dl netx on Lava on the same ``n`` test samples;
    the report of :func:`crsnn.deploy.cli.verify` (``nir`` names the netx file)."""
    from crsnn.deploy.cli import (CommandError, _progress_runner, float_predictions, checked_test_set, trained_model,
                                  verify_report)
    from crsnn.deploy.evaluate import binning_from_metadata
    from crsnn.deploy.netx_run import run_netx
    from crsnn.export.netx_writer import NetxExportError, netx_metadata, read_netx, same_arithmetic

    from crsnn.deploy.cli import inputs_of

    png, js = f"{out_prefix}.png", f"{out_prefix}.json"
    inputs = inputs_of(checkpoint, netx_path, data=data_source)
    check_writable(js, make_parents=True, inputs=inputs)
    check_writable(png, inputs=inputs)
    model = trained_model(checkpoint)
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
    data = checked_test_set(data_source, net, binning, n)
    n = len(data.y)
    float_pred = float_predictions(model, data.x)
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
    head = {"checkpoint": str(checkpoint), "nir": str(netx_path), "format": "netx"}
    return verify_report(head, data_source, data, binning, meta, float_pred, (integer, t_int),
                         (lava_hidden, np.concatenate(volts), t_lava), "lava-dl netx on Lava", (png, js), log)
