"""A crsnn-train checkpoint as a deployment artifact, beside the NIR graph.

Networks with CS-GRU layers (:class:`crsnn.models.integer.GateSet`) have no NIR form: NIR has no
gated neuron, and a crsnn-only extension node would be a graph no other tool could run. For them
the checkpoint itself is what ``crsnn-run``, ``crsnn-verify`` and ``crsnn-report`` take in place of
the NIR file: it holds the integer network (``quant.network``, what QAT optimised) and the
metadata (time step, data binning, readout decision rule) a NIR export would carry. Any
checkpoint works this way, not only CS-GRU ones.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from crsnn.models.integer import IntegerNetwork


def is_checkpoint_path(path: str | Path) -> bool:
    """Whether ``path`` looks like a crsnn-train checkpoint (``.pt``, or a torch zip archive) rather
    than a NIR (HDF5) file. A missing file counts by its suffix."""
    p = Path(path)
    if p.suffix == ".pt":
        return True
    try:
        return p.is_file() and zipfile.is_zipfile(p)
    except OSError:
        return False


def checkpoint_network(path: str | Path) -> tuple[IntegerNetwork, dict[str, Any]]:
    """``(integer network, metadata)`` of a checkpoint, the metadata flattened like a NIR export's
    (``metadata.data.dt``, ``config.loss``, ...). Raises
    :class:`crsnn.train.checkpoint.CheckpointError` (one line) for a bad file."""
    from crsnn.train.checkpoint import load_checkpoint

    model, info = load_checkpoint(path, require_integer=True)
    meta = _flatten({k: v for k, v in info.items() if k not in ("path", "history")})
    meta.setdefault("dt", float(model.config.dt))
    return model.to_integer(), meta


def _flatten(info: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in info.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        elif isinstance(v, (bool, int, float, str)):
            out[key] = v
    return out
