"""How much memory a command may still allocate, so that it can refuse work that would not fit
(one line, before allocating) instead of dying with a ``MemoryError`` traceback or being killed.

The budget is the smaller of the memory the kernel reports available (``MemAvailable`` in
``/proc/meminfo``) and, when the process runs under an address-space limit (``ulimit -v``,
``RLIMIT_AS``), that limit minus the address space already in use (``VmSize``): every allocation
counts against it, touched or not.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass
from pathlib import Path

GiB = 2**30


@dataclass(frozen=True)
class Budget:
    """``bytes``: what may still be allocated; ``limit``: what sets it, in words."""

    bytes: int
    limit: str


def _meminfo_kib(key: str, path: str = "/proc/meminfo") -> int | None:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _vm_size_bytes() -> int:
    kib = _meminfo_kib("VmSize", "/proc/self/status")
    return 1024 * kib if kib is not None else 0


def available() -> Budget:
    """The memory this process may still allocate (see the module docstring); a very large
    budget when nothing can be read (not Linux)."""
    best = Budget(2**62, "no known limit")
    free = _meminfo_kib("MemAvailable")
    if free is not None:
        best = Budget(1024 * free, "memory available on this machine")
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        left = max(0, soft - _vm_size_bytes())
        if left < best.bytes:
            best = Budget(left, f"the address-space limit (ulimit -v / RLIMIT_AS, {soft / GiB:.2f} GiB, "
                                f"{_vm_size_bytes() / GiB:.2f} GiB in use)")
    return best


def gib(n: float) -> str:
    """``n`` bytes in GiB, for messages."""
    return f"{n / GiB:.2f} GiB" if n < 1000 * GiB else f"{n / GiB:.3g} GiB"
