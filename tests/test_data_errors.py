"""Clear errors for missing or malformed spike files."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from crsnn.train.data import SpikeFileError, find_split_files, load_binned, load_splits


def _write(path: Path, skip: str | None = None, units=(3, 700), times=(0.1, 0.2), labels=(0,)):
    with h5py.File(path, "w") as f:
        if skip != "spikes/times":
            t = f.create_dataset("spikes/times", (1,), dtype=h5py.vlen_dtype(np.float16))
            t[0] = np.asarray(times, dtype=np.float16)
        if skip != "spikes/units":
            u = f.create_dataset("spikes/units", (1,), dtype=h5py.vlen_dtype(np.uint16))
            u[0] = np.asarray(units, dtype=np.uint16)
        if skip != "labels":
            f.create_dataset("labels", data=np.asarray(labels, dtype=np.uint16))
        if skip != "extra/keys":
            f.create_dataset("extra/keys", data=np.asarray([b"zero", b"one"]))
    return path


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpikeFileError, match=r"shd_train\.h5: file not found"):
        load_binned(tmp_path / "shd_train.h5")
    with pytest.raises(SpikeFileError, match="no split files found"):
        load_splits(tmp_path)


def test_compressed_download_is_pointed_out(tmp_path: Path) -> None:
    (tmp_path / "shd_train.h5.gz").write_bytes(b"\x1f\x8b")
    with pytest.raises(SpikeFileError, match="decompress"):
        find_split_files(tmp_path)
    with pytest.raises(SpikeFileError, match="decompress"):
        load_binned(tmp_path / "shd_train.h5")


@pytest.mark.parametrize("missing", ["spikes/times", "spikes/units", "labels", "extra/keys"])
def test_missing_dataset_names_file_dataset_and_layout(tmp_path: Path, missing: str) -> None:
    path = _write(tmp_path / "shd_train.h5", skip=missing, units=(3, 4))
    with pytest.raises(SpikeFileError) as err:
        load_binned(path)
    msg = str(err.value)
    assert f"shd_train.h5: missing dataset '{missing}'" in msg
    assert "expected SHD layout: spikes/times, spikes/units, labels, extra/keys" in msg


def test_unit_out_of_range(tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.h5", units=(3, 700))
    with pytest.raises(SpikeFileError, match=r"bad\.h5: spikes/units\[0\] holds channel 700, outside 0\.\.699"):
        load_binned(path)


def test_length_mismatch_and_bad_label(tmp_path: Path) -> None:
    path = _write(tmp_path / "len.h5", units=(3,), times=(0.1, 0.2))
    with pytest.raises(SpikeFileError, match="spikes/times has 2 entries but spikes/units has 1"):
        load_binned(path)
    path = _write(tmp_path / "lab.h5", units=(3, 4), labels=(5,))
    with pytest.raises(SpikeFileError, match=r"labels\[0\] = 5 is outside 0\.\.1"):
        load_binned(path)


def test_not_hdf5(tmp_path: Path) -> None:
    path = tmp_path / "shd_test.h5"
    path.write_text("not hdf5")
    with pytest.raises(SpikeFileError, match="cannot be opened as HDF5"):
        load_binned(path)
