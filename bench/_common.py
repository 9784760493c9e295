"""Shared pieces of the benchmark scripts: the machine description, JSON output, the data set."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
#: Where benchmark scripts keep data and checkpoints (ignored by git).
WORK = REPO / "runs" / "bench"


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cpus_visible": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(), "python": sys.version.split()[0], "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d")}


def set_batchnorm_statistics(model, x, sigma: float) -> None:
    """Set a freshly built model's BatchNorm running statistics on the input ``x`` (B, T, n_in)
    at delay spread ``sigma``: one training-mode pass without gradient (crsnn's BatchNorm takes
    the first batch's statistics as they are), as training would leave them. With the initial
    (0, 1) statistics a random network is nearly silent (about 1 % of the first hidden layer and
    none of the second firing per step), which flatters event-driven simulation in a speed
    benchmark. Leaves the model in eval mode."""
    import torch

    with torch.no_grad():
        model.train()
        model.sigma.fill_(sigma)
        model.forward_float(x)
    model.eval()


def command_line() -> str:
    """How this benchmark was started, as the README shows it: ``python bench/NAME.py ARGS``."""
    return "python " + " ".join([f"bench/{Path(sys.argv[0]).name}", *sys.argv[1:]])


def write_result(name: str, obj: dict[str, Any], path: str | None = None) -> Path:
    """Write ``obj`` (plus the machine and the command line) to ``bench/results/<name>.json`` or ``path``."""
    from crsnn.atomic_write import write_json_atomic

    out = Path(path) if path else RESULTS / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    obj = _repo_relative({"benchmark": name, "command": command_line(), "machine": machine(), **obj})
    write_json_atomic(out, obj)
    print(f"wrote {_repo_relative(str(out))}")
    return out


def digits(per_class: int = 100, seed: int = 0, folder: str | os.PathLike | None = None) -> Path:
    """The offline spoken-digit benchmark (``crsnn-data synth --per-class N --seed S``), synthesized
    into ``runs/bench/digits-<N>`` on first use (about 5 min for 100 per class on 2 cores)."""
    from crsnn.train.data.synth import SynthConfig, ensure_benchmark

    out = Path(folder) if folder else WORK / f"digits-{per_class}"
    return ensure_benchmark(out, SynthConfig(per_class=per_class, seed=seed))


def mean_std(xs: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    import numpy as np

    a = np.asarray(xs, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0


def train_run(argv: list[str], out: Path) -> dict:
    """``python -m crsnn.train ARGV --out OUT`` in a subprocess (output in ``OUT.txt``), unless a
    finished run with the same arguments left its JSON log; returns that log (epochs, test)."""
    import subprocess

    argv = [*argv, "--out", str(out)]
    from crsnn.train.loop import log_path_for

    log = log_path_for(out)
    if log.exists():
        d = json.loads(log.read_text())
        if _same_args(d.get("metadata", {}).get("argv") or [], argv) and "test" in d:
            return d
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".txt"), "w") as f:
        rc = subprocess.run([sys.executable, "-m", "crsnn.train", *argv, "--force"], stdout=f,
                            stderr=subprocess.STDOUT).returncode  # --force: replaces an unfinished or older run
    if rc != 0:
        raise RuntimeError(f"training failed (exit {rc}), see {out.with_suffix('.txt')}")
    return json.loads(log.read_text())


def _same_args(a: list[str], b: list[str]) -> bool:
    """Equal argument lists, paths compared after resolving them (relative == absolute)."""
    norm = lambda args: [str(Path(x).resolve()) if Path(x).exists() else x  # noqa: E731
                         for x in args if x != "--force"]
    return norm(a) == norm(b)


def _repo_relative(obj: Any) -> Any:
    """``obj`` with every path inside the repository written relative to its root (results are
    committed: they must not name the folder of the machine that measured them)."""
    if isinstance(obj, str):
        root = str(REPO) + os.sep
        return obj.replace(root, "")
    if isinstance(obj, dict):
        return {k: _repo_relative(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_repo_relative(v) for v in obj]
    return obj


def round_robin(fns: dict[str, Callable[[], object]], repeat: int) -> dict[str, list[float]]:
    """Wall-clock seconds of each callable: one warm-up each, then ``repeat`` rounds in which every
    callable runs once (in turn), so that load on a shared machine hits all of them alike."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return times
