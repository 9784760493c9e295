"""The Heidelberg spiking data sets' HDF5 layout (SHD, SSC): reading with checks, and writing.

One HDF5 file per split. Datasets (``N`` samples)::

    spikes/times[i]   variable-length float array: spike times of sample i, in SECONDS
    spikes/units[i]   variable-length integer array: channel of each spike, 0..n_channels-1
    labels[i]         class id of sample i
    extra/keys[c]     class name of class c (bytes)                       (required here)
    extra/speaker[i]  speaker id of sample i                               (optional)
    extra/meta_info/  per-speaker information                              (optional, ignored)

The published files do not document their dtypes (SHD stores float16 times and uint16 units):
everything is cast on read (times -> float64, units/labels/speakers -> int64), so that no
arithmetic ever runs in float16 or wraps around in uint16. Sample counts differ between
releases, so nothing here assumes one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from crsnn.input_files import not_regular_message, special_kind

#: Number of cochlea channels in SHD and SSC.
SHD_CHANNELS = 700

LAYOUT_HINT = "expected SHD layout: spikes/times, spikes/units, labels, extra/keys"
_REQUIRED = ("spikes/times", "spikes/units", "labels", "extra/keys")


class SpikeFileError(ValueError):
    """A spike file is missing, unreadable or not in the SHD layout; the message says why."""


def _h5py():
    import h5py  # imported lazily: only the HDF5 paths need it

    return h5py


@dataclass
class SpikeFileHeader:
    """What a spike file holds, apart from the spikes themselves.

    Attributes:
        path: the file.
        n_samples: number of samples ``N``.
        labels: class id per sample, int64, shape ``(N,)``.
        class_names: from ``extra/keys`` (bytes decoded as UTF-8), index = class id.
        speakers: speaker id per sample, int64, shape ``(N,)``, or None if absent.
        attrs: root attributes of the file (e.g. ``synthetic`` and provenance), as Python values.
        times_dtype: dtype the times are stored with (informational).
    """

    path: Path
    n_samples: int
    labels: np.ndarray
    class_names: list[str]
    speakers: np.ndarray | None
    attrs: dict[str, Any] = field(default_factory=dict)
    times_dtype: str = ""


def _decode(name: Any) -> str:
    if isinstance(name, (bytes, np.bytes_)):
        return bytes(name).decode("utf-8")
    return str(name)


def _attr_value(value: Any) -> Any:
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def check_spike_input(path: str | os.PathLike) -> Path:
    """Refuse a data path that exists but is neither a regular file nor a folder (a FIFO would
    block the HDF5 library until killed, a device feed it an endless stream). Returns ``path``;
    raises :class:`SpikeFileError`."""
    kind = special_kind(path)
    if kind is not None:
        raise SpikeFileError(not_regular_message(path, kind, "data file in SHD layout (.h5) or a folder of them"))
    return Path(path)


def _open(path: Path):
    h5py = _h5py()
    check_spike_input(path)
    if not path.exists():
        gz = path.with_name(path.name + ".gz")
        extra = f" (found {gz.name}: decompress it first, e.g. `gunzip -k {gz}`)" if gz.exists() else ""
        raise SpikeFileError(f"{path}: file not found{extra}")
    if path.is_dir():
        raise SpikeFileError(f"{path}: is a directory, expected an HDF5 file")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise SpikeFileError(f"{path}: cannot be opened as HDF5 ({exc})") from exc


def _check_layout(f, path: Path) -> None:
    for name in _REQUIRED:
        if name not in f:
            raise SpikeFileError(f"{path.name}: missing dataset '{name}' ({LAYOUT_HINT})")
    n = len(f["labels"])
    for name in ("spikes/times", "spikes/units"):
        ds = f[name]
        if not hasattr(ds, "shape") or len(ds.shape) != 1:
            raise SpikeFileError(
                f"{path.name}: '{name}' should be a 1-D dataset of variable-length arrays "
                f"(one per sample), found shape {getattr(ds, 'shape', None)} ({LAYOUT_HINT})"
            )
        if len(ds) != n:
            raise SpikeFileError(
                f"{path.name}: '{name}' has {len(ds)} samples but 'labels' has {n}"
            )
    if "extra/speaker" in f and len(f["extra/speaker"]) != n:
        raise SpikeFileError(
            f"{path.name}: 'extra/speaker' has {len(f['extra/speaker'])} entries but 'labels' has {n}"
        )


def read_header(path: str | os.PathLike) -> SpikeFileHeader:
    """Open ``path``, check the SHD layout, and read labels, class names, speakers, attributes.

    Raises:
        SpikeFileError: the file is missing, not HDF5, lacks a dataset, or labels are out of range.
    """
    path = Path(path)
    with _open(path) as f:
        _check_layout(f, path)
        labels = np.asarray(f["labels"][()]).astype(np.int64).reshape(-1)
        names = [_decode(k) for k in np.asarray(f["extra/keys"][()]).reshape(-1)]
        speakers = None
        if "extra/speaker" in f:
            speakers = np.asarray(f["extra/speaker"][()]).astype(np.int64).reshape(-1)
        attrs = {k: _attr_value(v) for k, v in f.attrs.items()}
        base = _h5py().check_vlen_dtype(f["spikes/times"].dtype)
        times_dtype = str(base if base is not None else f["spikes/times"].dtype)
    if len(names) == 0:
        raise SpikeFileError(f"{path.name}: 'extra/keys' is empty ({LAYOUT_HINT})")
    if labels.size and (labels.min() < 0 or labels.max() >= len(names)):
        bad = int(np.flatnonzero((labels < 0) | (labels >= len(names)))[0])
        raise SpikeFileError(
            f"{path.name}: labels[{bad}] = {labels[bad]} is outside 0..{len(names) - 1} "
            f"(extra/keys names {len(names)} classes)"
        )
    return SpikeFileHeader(path, int(labels.size), labels, names, speakers, attrs, times_dtype)


def iter_spikes(
    path: str | os.PathLike,
    n_channels: int = SHD_CHANNELS,
    chunk_size: int = 2048,
    start: int = 0,
    stop: int | None = None,
) -> Iterator[tuple[int, list[np.ndarray], list[np.ndarray]]]:
    """Read the spikes of samples ``start..stop-1`` in chunks, checked and cast.

    Yields:
        ``(first_index, times, units)``: lists (one entry per sample of the chunk) of
        float64 times in seconds and int64 channel ids.

    Raises:
        SpikeFileError: a sample's times and units differ in length, a channel is outside
        ``0..n_channels-1``, or a time is negative or not finite.
    """
    path = Path(path)
    with _open(path) as f:
        _check_layout(f, path)
        n = len(f["labels"])
        stop = n if stop is None else min(stop, n)
        dt, du = f["spikes/times"], f["spikes/units"]
        for i0 in range(start, stop, chunk_size):
            i1 = min(i0 + chunk_size, stop)
            try:
                tt = dt[i0:i1]
                uu = du[i0:i1]
            except (TypeError, ValueError, OSError) as exc:
                raise SpikeFileError(
                    f"{path.name}: cannot read spikes/times or spikes/units [{i0}:{i1}] ({exc}); "
                    f"{LAYOUT_HINT}"
                ) from exc
            times, units = [], []
            for k, (t, u) in enumerate(zip(tt, uu)):
                i = i0 + k
                try:
                    t = np.asarray(t, dtype=np.float64).reshape(-1)
                    u = np.asarray(u).reshape(-1)
                except (TypeError, ValueError) as exc:
                    raise SpikeFileError(f"{path.name}: sample {i}: spikes are not numeric ({exc})") from exc
                if u.dtype.kind not in "iu":
                    if u.size and not np.all(np.mod(u, 1) == 0):
                        raise SpikeFileError(f"{path.name}: spikes/units[{i}] holds non-integer channel ids")
                u = u.astype(np.int64)
                if t.size != u.size:
                    raise SpikeFileError(
                        f"{path.name}: sample {i}: spikes/times has {t.size} entries but "
                        f"spikes/units has {u.size}"
                    )
                if u.size and (u.min() < 0 or u.max() >= n_channels):
                    bad = int(u.max() if u.max() >= n_channels else u.min())
                    raise SpikeFileError(
                        f"{path.name}: spikes/units[{i}] holds channel {bad}, outside "
                        f"0..{n_channels - 1} (n_channels={n_channels})"
                    )
                if t.size and (not np.all(np.isfinite(t)) or t.min() < 0):
                    raise SpikeFileError(
                        f"{path.name}: spikes/times[{i}] holds a negative or non-finite time"
                    )
                times.append(t)
                units.append(u)
            yield i0, times, units


def write_spike_file(
    path: str | os.PathLike,
    times: Sequence[np.ndarray],
    units: Sequence[np.ndarray],
    labels: Sequence[int] | np.ndarray,
    class_names: Sequence[str],
    speakers: Sequence[int] | np.ndarray | None = None,
    attrs: Mapping[str, Any] | None = None,
    speaker_gender: Sequence[str] | None = None,
) -> Path:
    """Write samples in SHD's layout and dtypes (float16 seconds, uint16 units/labels/speakers),
    atomically (:mod:`crsnn.atomic_write`: the file is built in memory, then written; a failure
    leaves the previous file, or none).

    Args:
        path: output file (replaced; its folder is created).
        times: per sample, spike times in seconds (any float dtype; stored as float16 like SHD).
        units: per sample, channel ids (stored as uint16).
        labels: class id per sample, shape ``(N,)``.
        class_names: stored as bytes in ``extra/keys``.
        speakers: speaker id per sample, shape ``(N,)`` (optional).
        attrs: root attributes; dicts/lists are stored as JSON strings.
        speaker_gender: ``extra/meta_info/gender[speaker]`` (optional).
    """
    from crsnn.atomic_write import write_bytes_atomic

    path = Path(path)
    data = spike_file_bytes(times, units, labels, class_names, speakers, attrs, speaker_gender)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_bytes_atomic(path, data)


def spike_file_bytes(
    times: Sequence[np.ndarray],
    units: Sequence[np.ndarray],
    labels: Sequence[int] | np.ndarray,
    class_names: Sequence[str],
    speakers: Sequence[int] | np.ndarray | None = None,
    attrs: Mapping[str, Any] | None = None,
    speaker_gender: Sequence[str] | None = None,
) -> bytes:
    """The bytes of the file :func:`write_spike_file` writes (built in memory)."""
    from crsnn.atomic_write import hdf5_bytes

    h5py = _h5py()
    labels = np.asarray(labels)
    if not (len(times) == len(units) == len(labels)):
        raise ValueError("times, units and labels must have one entry per sample")
    kw = dict(track_times=False)

    def fill(f) -> None:
        ft = f.create_dataset("spikes/times", (len(times),), dtype=h5py.vlen_dtype(np.float16), **kw)
        fu = f.create_dataset("spikes/units", (len(units),), dtype=h5py.vlen_dtype(np.uint16), **kw)
        for i, (t, u) in enumerate(zip(times, units)):
            ft[i] = np.asarray(t, dtype=np.float16)
            fu[i] = np.asarray(u, dtype=np.uint16)
        f.create_dataset("labels", data=labels.astype(np.uint16), **kw)
        f.create_dataset("extra/keys", data=np.array([n.encode("utf-8") for n in class_names]), **kw)
        if speakers is not None:
            f.create_dataset("extra/speaker", data=np.asarray(speakers).astype(np.uint16), **kw)
        if speaker_gender is not None:
            f.create_dataset(
                "extra/meta_info/gender", data=np.array([g.encode() for g in speaker_gender]), **kw
            )
        for key, value in (attrs or {}).items():
            if isinstance(value, (dict, list, tuple)):
                value = json.dumps(value, sort_keys=True)
            f.attrs[key] = value

    return hdf5_bytes(fill, track_order=False)
