"""crsnn.train.data: spike data in the Heidelberg (SHD/SSC) HDF5 layout.

- :mod:`.layout`   reading (checked, cast) and writing the SHD layout
- :mod:`.binning`  events -> uint8 counts ``(T, channel groups)``
- :mod:`.shd`      loaders for SHD/SSC files and splits (dense in-memory cache or lazy binning)
- :mod:`.augment`  per-channel time shift, same-class blending
- :mod:`.dataset`  PyTorch ``Dataset`` and a seeded, DDP-shardable batch iterator
- :mod:`.cochlea`  gammatone front end: audio -> 700-channel spikes on SHD's frequency map
- :mod:`.speech`   espeak-ng through ctypes (GPL-3, optional extra ``crsnn[data]``)
- :mod:`.synth`    the offline spoken-digit benchmark (``crsnn-data synth``)
- :mod:`.encode`   a user's WAV files -> SHD layout (``crsnn-data encode``)
- :mod:`.summary`  statistics, rasters, logistic-regression baseline
- :mod:`.cli`      the ``crsnn-data`` command

Importing this package does not import torch or espeak-ng; :mod:`.dataset` needs torch.
"""

from .augment import Augment
from .binning import bin_events, bin_many, n_groups_for, n_steps_for
from .layout import SHD_CHANNELS, SpikeFileError, read_header, write_spike_file
from .shd import BinnedSpikes, SpikeSubset, find_split_files, load_binned, load_splits, stratified_split

__all__ = [
    "Augment", "BinnedSpikes", "SHD_CHANNELS", "SpikeFileError", "SpikeSubset", "bin_events",
    "bin_many", "find_split_files", "load_binned", "load_splits", "n_groups_for", "n_steps_for",
    "read_header", "stratified_split", "write_spike_file",
]
