"""Our lava-nc processes and process models (bit-exact with Lava's own), in a package of their own:
Lava's compiler imports every module in the folder (and package) of a Process class when it
searches for ProcessModels, so this folder holds nothing else."""

from crsnn.deploy.lava_procs.csgru import CSGRUNeurons
from crsnn.deploy.lava_procs.processes import CachedDelaySparse, RecordedLIF

__all__ = ["CachedDelaySparse", "CSGRUNeurons", "RecordedLIF"]
