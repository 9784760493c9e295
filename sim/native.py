"""The CPU integer simulator's fused layer loop: ``lif_layer.c``, compiled on first use, loaded
with :mod:`ctypes`.

Why C. The torch simulator (:mod:`crsnn.sim.torch_sim`) spends most of its CPU time between
operations: per layer and step about 20 small tensor operations, each paying the dispatcher's
overhead on a (neurons x batch) tensor of a few thousand elements. The C loop runs one layer
for every step of a batch in one call: per step it adds only the weight columns of the sources
that spiked (event-driven; spikes are sparse, so this beats a dense product), then updates the
neurons with Lava's integer rules (:mod:`crsnn.loihi2`) in int64. Sums are int32, exact for
every network :meth:`~crsnn.models.integer.IntegerNetwork.validate` accepts (checked again here). Same inputs, outputs and clock as :func:`crsnn.sim.integer_sim.simulate`; the tests
compare the three simulators on random networks.

Build. ``cc -O3 -march=native`` (``$CC`` if set; without ``-march=native`` where the compiler
refuses it) into ``$CRSNN_CACHE_DIR`` (default ``$XDG_CACHE_HOME/crsnn`` or ``~/.cache/crsnn``),
under a name that hashes the source, the flags and the CPU (a cache shared by different machines
never loads a library built for another CPU); written atomically, so concurrent first uses (DDP
ranks, parallel tests) are safe. No compiler, a failed build, or ``CRSNN_NATIVE=0``: the
simulator runs its torch operations instead (same results, slower); :func:`unavailable_reason`
says why. ``python -m crsnn.sim.native`` builds it and prints where it is.

The cache holds code that crsnn runs as the calling user, so it is trusted only when nobody else
can have written it (:mod:`crsnn.sim.private_cache`): the folder must be a real folder (not a
symbolic link) of the calling user without group or other write permission (a missing one is
created 0700 whatever the umask), and a library a regular file of the user that nobody else may
write (built ones are 0500); both are checked on open descriptors and the library is loaded from
the descriptor that was checked. A cache folder that fails this is neither read nor written: the
loop is compiled into a private temporary folder for this process instead (a few seconds per
process), with one :class:`UnsafeCacheWarning` saying why (:func:`cache_problem`); so does a
cache that cannot be created or written. A library that fails it inside a safe folder is rebuilt
in its place, with the same warning. A cache folder shared between users is therefore never
used: each user needs their own.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import numpy as np

from crsnn import loihi2 as L2
from crsnn.sim import private_cache

SOURCE = Path(__file__).with_name("lif_layer.c")
#: Set to ``0`` to run the torch operations instead of the compiled loop.
ENV_SWITCH = "CRSNN_NATIVE"
BASE_FLAGS = ["-O3", "-std=c99", "-shared", "-fPIC"]
#: The loop's sums are int32: every partial sum must stay below this (see _PreparedLayer).
ACC_LIMIT = 2**31
#: A batch is split over threads only when each gets at least this many samples.
MIN_SAMPLES_PER_THREAD = 4

_I64P = ctypes.POINTER(ctypes.c_int64)
_I32P = ctypes.POINTER(ctypes.c_int32)
_F64P = ctypes.POINTER(ctypes.c_double)


class UnsafeCacheWarning(RuntimeWarning):
    """The build cache was not used as it was (someone else could have written it); the
    message says why and what was done instead."""


def cache_dir() -> Path:
    """Where built libraries are kept: ``$CRSNN_CACHE_DIR``, else ``$XDG_CACHE_HOME/crsnn``, else
    ``~/.cache/crsnn``."""
    if os.environ.get("CRSNN_CACHE_DIR"):
        return Path(os.environ["CRSNN_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "crsnn"


def _compiler() -> str | None:
    cc = os.environ.get("CC")
    if cc:
        return shutil.which(cc) or cc
    return next((p for p in map(shutil.which, ("cc", "gcc", "clang")) if p), None)


def _cpu_signature() -> str:
    """Machine type plus the CPU's feature flags (what ``-march=native`` depends on)."""
    sig = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return sig + line
    except OSError:
        pass
    return sig + platform.processor()


def _library_name(cc: str, flags: list[str]) -> str:
    h = hashlib.sha256(SOURCE.read_bytes())
    for part in (cc, " ".join(flags), _cpu_signature(), sys.platform):
        h.update(part.encode())
    return f"lif_layer-{h.hexdigest()[:16]}.so"


def _compile(cc: str, flags: list[str]) -> bytes | str:
    """Compile in a private temporary folder. Returns the library's bytes, or the compiler's
    complaint (a str)."""
    with tempfile.TemporaryDirectory(prefix="crsnn-build-") as tmp:
        lib = Path(tmp) / "lib.so"
        try:
            r = subprocess.run([cc, *flags, "-o", str(lib), str(SOURCE)], capture_output=True, text=True,
                               timeout=120)
        except (OSError, subprocess.TimeoutExpired) as e:
            return str(e)
        if r.returncode != 0 or not lib.exists():
            msg = (r.stderr or r.stdout).strip()
            return "\n".join(msg.splitlines()[:5]) or f"exit code {r.returncode}"
        return lib.read_bytes()


def _library_in(dir_fd: int, cc: str) -> tuple[int, str, tuple[str, str] | None]:
    """The library in the (checked, open) folder ``dir_fd``, compiled and installed there when
    missing or untrustworthy. Returns ``(descriptor of the checked library, its name, (name,
    reason) of an existing file that was replaced, or None)``; raises ``RuntimeError`` when no
    build works."""
    errors, replaced = [], None
    for flags in (BASE_FLAGS + ["-march=native"], BASE_FLAGS):
        name = _library_name(cc, flags)
        try:
            return private_cache.open_private_file(dir_fd, name), name, replaced
        except FileNotFoundError:
            pass
        except private_cache.UnsafeError as e:
            replaced = replaced or (name, str(e))
        built = _compile(cc, flags)
        if isinstance(built, str):
            errors.append(f"{cc} {' '.join(flags)}: {built}")
            continue
        private_cache.install(dir_fd, name, built)
        return private_cache.open_private_file(dir_fd, name), name, replaced
    raise RuntimeError("compiling lif_layer.c failed:\n" + "\n".join(errors))


class _CacheUnusable(Exception):
    """The build cache cannot be used; the message says which folder and why."""


def _from_cache(cc: str) -> tuple[int, Path, str | None]:
    """The checked library from the build cache (built there if needed): ``(descriptor, path,
    note)``, the note saying which untrustworthy file was replaced and why. Raises
    :class:`_CacheUnusable` or ``RuntimeError`` (no build works)."""
    folder = cache_dir()
    try:
        dir_fd = private_cache.open_private_dir(folder)
    except private_cache.UnsafeError as e:
        raise _CacheUnusable(f"not using the build cache {folder}: {e}, so what it holds could come from someone "
                             "else, and crsnn would run it as you") from None
    except OSError as e:
        raise _CacheUnusable(f"not using the build cache {folder}: it cannot be created or opened "
                             f"({e.strerror or e})") from None
    try:
        fd, name, replaced = _library_in(dir_fd, cc)
    except private_cache.UnsafeError as e:  # only if the file changed under our install
        raise _CacheUnusable(f"not using the build cache {folder}: a library there changed while it was "
                             f"installed ({e})") from None
    except OSError as e:  # e.g. a folder in the library's place, an unreadable file, a full disk
        raise _CacheUnusable(f"not using the build cache {folder}: the library there cannot be read or written "
                             f"({e.strerror or e})") from None
    finally:
        os.close(dir_fd)
    note = None if replaced is None else (f"replaced {folder / replaced[0]} in the build cache: {replaced[1]}; "
                                          "it was not loaded, and a fresh build (mode 0500) took its place")
    return fd, folder / name, note


_FIX = ("point CRSNN_CACHE_DIR at a folder of your own that nobody else can write (a new one is created 0700), "
        "or make this one a real folder owned by you with chmod 700")


def _obtain() -> tuple[int, Path, str | None]:
    """The checked library, open: from the build cache, or, when the cache is unusable, compiled
    into a private temporary folder that is removed again (the descriptor keeps the library).
    Returns ``(descriptor, path, note)``; the note, when not None, is what the user should be
    told. Raises ``RuntimeError`` when no library can be had."""
    cc = _compiler()
    if cc is None:
        raise RuntimeError("no C compiler found (cc, gcc or clang; or set $CC)")
    try:
        return _from_cache(cc)
    except _CacheUnusable as e:
        problem = str(e)
    try:
        folder = tempfile.mkdtemp(prefix="crsnn-native-")  # new, 0700, ours
        try:
            dir_fd = private_cache.open_private_dir(Path(folder))
            try:
                fd, name, _ = _library_in(dir_fd, cc)
            finally:
                os.close(dir_fd)
        finally:
            shutil.rmtree(folder, ignore_errors=True)  # the open descriptor keeps the library
    except (RuntimeError, OSError, private_cache.UnsafeError) as e:
        raise RuntimeError(f"{problem}; building a private copy failed too: {e}") from None
    return fd, Path(folder) / name, (f"{problem}. Compiled the loop into a private temporary folder for this "
                                     f"process instead (a few seconds at each start). Fix: {_FIX}")


def build() -> Path:
    """Compile ``lif_layer.c`` into the build cache (once per source, flags and CPU) and return
    the library's path. Raises ``RuntimeError``: when the cache folder could have been written
    by someone else or cannot be created (then nothing is read or written there; the message
    says why and what to do), or with the compiler's message when no build works."""
    cc = _compiler()
    if cc is None:
        raise RuntimeError("no C compiler found (cc, gcc or clang; or set $CC)")
    try:
        fd, path, _ = _from_cache(cc)
    except _CacheUnusable as e:
        raise RuntimeError(f"{e}. Fix: {_FIX}") from None
    os.close(fd)
    return path


def switched_off() -> bool:
    """Whether ``$CRSNN_NATIVE`` turns the compiled loop off (read at every call)."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() in ("0", "false", "no", "off")


def enabled() -> bool:
    """Whether the simulator should use the compiled loop: not switched off, and it builds."""
    return not switched_off() and available()


@lru_cache(maxsize=None)
def _load() -> tuple[ctypes.CDLL | None, str | None, str | None]:
    """``(library, why unavailable, cache problem)``, once per process; warns about a cache
    problem here (so once)."""
    try:
        fd, path, note = _obtain()
    except (RuntimeError, OSError) as e:
        return None, str(e), None
    if note:
        warnings.warn(f"crsnn.sim.native: {note}", UnsafeCacheWarning, stacklevel=3)
    try:
        lib = private_cache.load_library(fd)
    except OSError as e:
        return None, f"cannot load {path}: {e}", note
    fn = lib.crsnn_lif_layer
    i64 = ctypes.c_int64
    fn.argtypes = [i64, i64, i64, i64,
                   i64, _I32P, _I64P, _I64P, _I64P, _I32P, i64,
                   _I64P,
                   i64, i64, _I64P, _I64P, _I64P, _I64P, _I32P, i64,
                   i64, i64, i64, _I64P,
                   _I32P, _I64P, _F64P]
    fn.restype = ctypes.c_int
    return lib, None, note


def available() -> bool:
    """Whether the compiled loop can be loaded (builds it on first call; ignores the switch)."""
    return _load()[0] is not None


def unavailable_reason() -> str | None:
    """None when the loop is :func:`enabled`, else why not (switched off, no compiler, build
    error)."""
    if switched_off():
        return f"switched off by {ENV_SWITCH}={os.environ[ENV_SWITCH]}"
    return _load()[1]


def cache_problem() -> str | None:
    """Why the build cache was not used as it was (the text of the :class:`UnsafeCacheWarning`),
    or None. Loads the loop on first call."""
    return _load()[2]


# --------------------------------------------------------------------------------------------
# Networks in the loop's layout
# --------------------------------------------------------------------------------------------
class _Columns:
    """A weight matrix (n_out, n_in) stored by source column: column j covers output rows
    ``[lo[j], hi[j])`` (its first to last non-zero), values at ``vals[off[j]:]`` (int32)."""

    def __init__(self, eff: np.ndarray) -> None:
        wt = np.ascontiguousarray(np.asarray(eff, dtype=np.int64).T)  # (n_in, n_out)
        n_src, n = wt.shape
        nz = wt != 0
        has = nz.any(axis=1)
        lo = np.where(has, np.argmax(nz, axis=1), 0)
        hi = np.where(has, n - np.argmax(nz[:, ::-1], axis=1), 0)
        self.lo = lo.astype(np.int64)
        self.hi = hi.astype(np.int64)
        self.off = (np.arange(n_src, dtype=np.int64) * n + self.lo).astype(np.int64)
        self.vals = wt.astype(np.int32).reshape(-1)


def _ptr(a: np.ndarray | None, kind):
    return None if a is None else a.ctypes.data_as(kind)


def _column_ptrs(cols: _Columns | None) -> tuple:
    """``lo, hi, off, vals`` pointers of a column store (NULLs for none)."""
    if cols is None:
        return None, None, None, None
    return _ptr(cols.lo, _I64P), _ptr(cols.hi, _I64P), _ptr(cols.off, _I64P), _ptr(cols.vals, _I32P)


class _PreparedLayer:
    """Everything :c:func:`crsnn_lif_layer` needs for one layer, as contiguous arrays."""

    def __init__(self, layer, max_input: int) -> None:
        nrn = layer.neuron
        self.n = layer.n
        self.ff_delays = layer.ff.delays is not None
        eff = None if self.ff_delays else layer.ff.effective()
        self.ff = None if eff is None else _Columns(eff)
        self.ff_exp = int(layer.ff.weight_exp)
        self.bias = np.ascontiguousarray(nrn.bias(), dtype=np.int64)
        self.du, self.dv, self.vth_scaled = int(nrn.du), int(nrn.dv), L2.scaled_threshold(nrn.vth)
        rec = layer.rec
        rec_eff = None if rec is None else rec.effective()
        # The loop sums in int32. With inputs >= 0, every partial sum of row i lies between minus
        # its negative weights' magnitudes and its positive weights (times the largest input):
        # L2.max_abs_accumulation, which IntegerNetwork.validate keeps below 2**31.
        for what, e, payload in (("feedforward", eff, max_input), ("recurrent", rec_eff, 1)):
            if e is not None and L2.max_abs_accumulation(e, payload) >= ACC_LIMIT:
                raise ValueError(f"{what} sums of a {self.n}-neuron layer can reach 2**31: validate the network "
                                 "first (IntegerNetwork.validate says what to change)")
        self.rec = None if rec is None else _Columns(rec_eff)
        self.rec_exp = 0 if rec is None else int(rec.weight_exp)
        self.delays = None if rec is None else np.ascontiguousarray(rec.delays, dtype=np.int64)
        # Lava floors each delay group's sum on its own when the exponent is negative
        self.grouped = rec is not None and self.rec_exp < 0 and len(np.unique(self.delays)) > 1

    def run(self, src: np.ndarray | None, a_ff: np.ndarray | None, record_v: bool, threads: int,
            timing: list[float] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """All steps of this layer. ``src``: (batch, steps, n_in) int32 source output (step t
        integrates ``src[:, t - 1]``), or ``a_ff``: (batch, steps, n) int64 shifted feedforward
        input. Returns ``(spikes (batch, steps, n) int32, voltages int64 or None)``."""
        fn = _load()[0]
        assert fn is not None
        fn = fn.crsnn_lif_layer
        batch, steps = (src if a_ff is None else a_ff).shape[:2]
        n_in = src.shape[2] if src is not None else 0
        spikes = np.empty((batch, steps, self.n), dtype=np.int32)
        vs = np.empty((batch, steps, self.n), dtype=np.int64) if record_v else None
        ff = self.ff if a_ff is None else None
        rec = self.rec
        chunks = max(1, min(threads, batch // MIN_SAMPLES_PER_THREAD))
        bounds = np.linspace(0, batch, chunks + 1).astype(np.int64)
        seconds = [ctypes.c_double(0.0) for _ in range(chunks)]

        def call(c: int) -> int:
            return fn(int(bounds[c]), int(bounds[c + 1]), steps, self.n,
                      n_in, _ptr(src, _I32P), *_column_ptrs(ff), self.ff_exp,
                      _ptr(a_ff, _I64P),
                      int(rec is not None), int(self.grouped), _ptr(self.delays, _I64P),
                      *_column_ptrs(rec), self.rec_exp,
                      self.du, self.dv, self.vth_scaled, _ptr(self.bias, _I64P),
                      _ptr(spikes, _I32P), _ptr(vs, _I64P),
                      ctypes.byref(seconds[c]) if timing is not None else None)

        if chunks == 1:
            rcs = [call(0)]
        else:  # ctypes releases the GIL during the call: the chunks run in parallel
            with ThreadPoolExecutor(chunks) as pool:
                rcs = list(pool.map(call, range(chunks)))
        if any(rcs):
            raise MemoryError("crsnn_lif_layer: out of memory")
        if timing is not None:
            timing.append(max(s.value for s in seconds))
        return spikes, vs


def _delayed_feedforward(layer, src: np.ndarray, max_input: int) -> np.ndarray:
    """The shifted input of a connection with per-synapse delays, (batch, steps, n) int64: the
    torch simulator's exact products (one per delay value), on the CPU. ``max_input``: the
    largest value in ``src``."""
    import torch

    from crsnn.sim.torch_sim import _feedforward64, shifted_source

    batch, steps, _ = src.shape
    a64, _ = _feedforward64(layer, shifted_source(src, torch.device("cpu")), max_input, steps, batch)
    return np.ascontiguousarray(a64.div_(2**L2.ACT_SHIFT).permute(2, 1, 0).to(torch.int64).numpy())


def simulate_native(net, x: np.ndarray, threads: int | None = None, timing: list[float] | None = None):
    """Run ``net`` (an :class:`~crsnn.models.integer.IntegerNetwork`, already validated) on
    ``x`` (batch, steps, n_in) integers with the compiled loop; returns a
    :class:`~crsnn.sim.integer_sim.SimResult` identical to :func:`crsnn.sim.integer_sim.simulate`.

    ``threads``: the batch is split over this many threads (default: torch's thread count).
    ``timing``: if given, receives per layer the seconds spent on feedforward sums (benchmarks).
    Raises ``RuntimeError`` when the loop is not :func:`available`.
    """
    from crsnn.sim.integer_sim import SimResult

    if not available():
        raise RuntimeError(f"the compiled simulator loop is unavailable: {_load()[1]}")
    if threads is None:
        import torch

        threads = torch.get_num_threads()
    src = np.ascontiguousarray(x, dtype=np.int32)
    hidden = []
    for li, layer in enumerate(net.layers):
        max_input = int(src.max(initial=0))
        prep = _PreparedLayer(layer, max_input)
        a_ff = _delayed_feedforward(layer, src, max_input) if prep.ff_delays else None
        last = li == len(net.layers) - 1
        s, vs = prep.run(None if a_ff is not None else src, a_ff, record_v=last, threads=threads, timing=timing)
        if last:
            assert vs is not None
            return SimResult(hidden_spikes=hidden, readout_v=vs, readout_spikes=s.astype(bool))
        hidden.append(s.astype(bool))
        src = s
    raise AssertionError("a network has a readout layer")


def main() -> int:
    """Build the library now (e.g. in a set-up script) and say where it is, or why not. Exit
    code 0 when the loop works, even if only from a private copy (a problem with the cache is
    said on stderr), 1 when it does not."""
    t0 = time.perf_counter()
    try:
        fd, path, note = _obtain()
    except RuntimeError as e:
        print(f"crsnn.sim.native: {e}\nthe integer simulator will use its torch operations (slower, same results)",
              file=sys.stderr)
        return 1
    os.close(fd)
    if note:
        print(f"crsnn.sim.native: warning: {note}", file=sys.stderr)
    where = str(path) if path.parent == cache_dir() else "a private copy for this process, not cached"
    print(f"crsnn.sim.native: {where} ({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
