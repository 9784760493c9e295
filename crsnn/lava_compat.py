"""Make lava-nc 0.10.0 importable on Python 3.11: the one known incompatibility, fixed here.

lava-nc 0.10.0 declares ``Requires-Python <3.11``. On 3.11 exactly one thing breaks:
``lava/magma/compiler/var_model.py`` declares dataclass fields with a mutable default instance
(``x: ByteEncoder = ByteEncoder()``), which Python 3.11's ``dataclasses`` rejects with
``ValueError: mutable default ... use default_factory``. Every Lava compile imports that module.

Instead of editing installed files, :func:`install` puts an import hook on ``sys.meta_path`` that
rewrites those field declarations to ``dataclasses.field(default_factory=ByteEncoder)`` while
the module is loaded. That is what the code meant (3.10 shared one instance between all
encoders; a factory gives each its own, which nothing in Lava relies on either way). The hook
touches only that one module, only when the expected text is present, and is a no-op on Python
< 3.11 or once Lava ships a fix. Lava's runtime forks its worker processes (Linux default), so
they inherit the patched module.

Use :func:`import_lava` (or call :func:`install` before the first ``import lava...``).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import re
import sys
from types import ModuleType

PATCHED_MODULE = "lava.magma.compiler.var_model"
# `    x: ByteEncoder = ByteEncoder()` -> `    x: ByteEncoder = <dataclasses.field>(default_factory=ByteEncoder)`
_MUTABLE_DEFAULT = re.compile(r"^(\s+\w+\s*:\s*ByteEncoder\s*=\s*)ByteEncoder\(\)\s*$", re.M)
_FACTORY_FIELD = r"\1__import__('dataclasses').field(default_factory=ByteEncoder)"


def patch_source(source: str) -> str:
    """Return ``var_model.py``'s source with the mutable ``ByteEncoder()`` defaults replaced by
    ``default_factory`` fields (unchanged if there are none)."""
    return _MUTABLE_DEFAULT.sub(_FACTORY_FIELD, source)


class _PatchingLoader(importlib.machinery.SourceFileLoader):
    def get_code(self, fullname: str):  # type: ignore[override]
        source = self.get_data(self.path).decode("utf-8")
        return compile(patch_source(source), self.path, "exec", dont_inherit=True)


class _VarModelFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):  # noqa: D102
        if fullname != PATCHED_MODULE:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.origin and spec.origin.endswith(".py"):
                spec.loader = _PatchingLoader(fullname, spec.origin)
                return spec
            if spec is not None:
                return spec
        return None


def install() -> None:
    """Install the import hook (idempotent). Must run before ``var_model`` is first imported."""
    if sys.version_info < (3, 11):
        return
    if any(isinstance(f, _VarModelFinder) for f in sys.meta_path):
        return
    if PATCHED_MODULE in sys.modules:
        return  # already imported (it could only have succeeded if it needed no patch)
    sys.meta_path.insert(0, _VarModelFinder())


def _import_lava_runtime() -> None:
    """Import Lava's runtime, which calls ``multiprocessing.set_start_method('fork')`` at import
    time and so fails ("context has already been set") if anything fixed the start method first
    (a tqdm progress bar does, through its multiprocessing lock; so does being in a forked child).
    When the method in force already is 'fork', that call is made a no-op for the import."""
    import multiprocessing as mp

    if "lava.magma.runtime.message_infrastructure.multiprocessing" in sys.modules:
        return
    current = mp.get_start_method(allow_none=True)
    if current is None:
        import lava.magma.core.process.process  # noqa: F401
        return
    if current != "fork":
        raise RuntimeError(
            f"Lava needs the 'fork' multiprocessing start method, but '{current}' is already set in "
            "this process; import crsnn.lava_compat.import_lava() before setting another method")
    original = mp.set_start_method
    mp.set_start_method = lambda method, force=False: None if method == "fork" else original(method, force)
    try:
        import lava.magma.core.process.process  # noqa: F401
    finally:
        mp.set_start_method = original


class LavaNotInstalledError(ImportError):
    """lava-nc is missing from the environment."""


def import_lava() -> ModuleType:
    """Install the 3.11 fix and import ``lava`` (the package), with an actionable error if
    lava-nc is not installed."""
    install()
    try:
        import lava  # noqa: F401
        import lava.magma.compiler.var_model  # noqa: F401  (fails here if the fix did not apply)
        _import_lava_runtime()
    except ModuleNotFoundError as exc:  # pragma: no cover - depends on the environment
        raise LavaNotInstalledError(
            "lava-nc is not installed in this environment; run `make setup` (or "
            "`pip install --no-deps --ignore-requires-python lava-nc==0.10.0` plus the pinned "
            "dependencies in requirements.txt)"
        ) from exc
    return sys.modules["lava"]
