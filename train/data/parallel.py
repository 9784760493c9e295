"""Ordered parallel map over CPU workers with an optional tqdm progress bar."""

from __future__ import annotations

import multiprocessing as mp
from typing import Any, Callable, Sequence


def map_ordered(fn: Callable[[Any], Any], tasks: Sequence[Any], workers: int = 1,
                desc: str = "", progress: bool = False, chunksize: int = 4) -> list:
    """``[fn(t) for t in tasks]``, computed by ``workers`` processes (results in task order).

    ``fn`` must be a module-level function. On Linux the workers are forked (no re-import of
    ``__main__``); they must not use libraries that are unsafe after fork (torch, espeak-ng).
    """
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(tasks), desc=desc, unit="item")
    out = []
    try:
        if workers <= 1 or len(tasks) <= 1:
            for t in tasks:
                out.append(fn(t))
                if bar is not None:
                    bar.update(1)
        else:
            method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
            with mp.get_context(method).Pool(min(workers, len(tasks))) as pool:
                for r in pool.imap(fn, tasks, chunksize=chunksize):
                    out.append(r)
                    if bar is not None:
                        bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return out
