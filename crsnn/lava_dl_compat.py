"""Import lava-dl 0.6.0's netx (``lava.lib.dl.netx``) without running ``lava.lib.dl.slayer``'s
package ``__init__``.

netx's ``hdf5`` module imports ``lava.lib.dl.slayer.neuron.rf``; importing any slayer submodule
first runs ``slayer/__init__.py``, which imports slayer's object-detection code and through it
OpenCV and torchvision. Neither has a build that loads next to this project's CPU torch and NumPy
1.x, and netx needs none of that code. :func:`import_netx` therefore registers
``lava.lib.dl.slayer`` as a bare package (a module whose ``__path__`` is the installed folder)
before importing netx: slayer's submodules then import with their real code, its ``__init__``
never runs. lava-nc's own Python 3.11 fix (:mod:`crsnn.lava_compat`) is installed first.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from crsnn.lava_compat import import_lava

SLAYER = "lava.lib.dl.slayer"


class LavaDlNotInstalledError(ImportError):
    """lava-dl (netx) is missing from the environment."""


def _register_bare_slayer() -> None:
    """Put a bare ``lava.lib.dl.slayer`` package into ``sys.modules`` (no ``__init__`` code)."""
    if SLAYER in sys.modules:
        return
    spec = importlib.util.find_spec("lava.lib.dl")
    if spec is None or not spec.submodule_search_locations:
        raise LavaDlNotInstalledError("lava-dl is not installed in this environment; run `make setup` (or `pip install "
                                      "--no-deps --ignore-requires-python lava-dl==0.6.0`)")
    folder = Path(list(spec.submodule_search_locations)[0]) / "slayer"
    if not folder.is_dir():
        raise LavaDlNotInstalledError(f"lava-dl is incomplete: {folder} is missing; reinstall lava-dl==0.6.0")
    mod = ModuleType(SLAYER)
    mod.__path__ = [str(folder)]  # a package: submodules are found here
    mod.__package__ = SLAYER
    mod.__file__ = None
    sys.modules[SLAYER] = mod
    importlib.import_module("lava.lib.dl").slayer = mod  # attribute access as after a normal import


def import_netx() -> ModuleType:
    """Import and return ``lava.lib.dl.netx`` (with ``netx.hdf5``), raising
    :class:`LavaDlNotInstalledError` with the command to run when lava-dl is missing."""
    import_lava()
    try:
        _register_bare_slayer()
        netx = importlib.import_module("lava.lib.dl.netx")
        importlib.import_module("lava.lib.dl.netx.hdf5")
    except ModuleNotFoundError as exc:
        raise LavaDlNotInstalledError(
            f"lava-dl's netx cannot be imported ({exc}); run `make setup` (or `pip install --no-deps "
            "--ignore-requires-python lava-dl==0.6.0`)") from exc
    return netx
