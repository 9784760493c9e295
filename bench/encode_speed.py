"""Throughput of ``crsnn-data encode`` on real recordings, optionally against an older revision.

    python bench/encode_speed.py [WAV_DIR] [--files 200] [--workers 1] [--repeats 3] [--baseline REV] [--rev REV]

``WAV_DIR`` (default ``$FSDD_RECORDINGS``, else ``data/fsdd/recordings``: the Free Spoken Digit Dataset) holds
``{label}_*.wav`` files; a fixed, evenly spread subset of ``--files`` of them is linked into class
folders (the layout every revision of the command reads) and encoded ``--repeats`` times by
``python -m crsnn.train.data.cli encode`` in a subprocess. With ``--baseline REV`` the same runs
are made, interleaved, with the code of git revision ``REV`` (exported with ``git archive``), and
the ratio of the best times is reported; ``--rev REV`` measures revision ``REV`` instead of the
working tree as the current code. Wall time includes the interpreter's start (~1 s); CPU
time (user + system of the subprocess) is less sensitive to other load on a shared machine.
Results: ``bench/results/encode_speed.json``.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from io import BytesIO
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, write_result  # noqa: E402


def pick_files(wav_dir: Path, n: int, label_pattern: str) -> list[tuple[Path, str]]:
    """``n`` files spread evenly over the sorted list, with their labels."""
    rx = re.compile(label_pattern)
    files = sorted(p for p in wav_dir.iterdir() if p.suffix.lower() == ".wav" and rx.search(p.name))
    if not files:
        raise SystemExit(f"{wav_dir}: no .wav files matching {label_pattern!r}")
    stride = max(1, len(files) // n)
    return [(p, rx.search(p.name).group(1)) for p in files[::stride][:n]]


def class_folders(files: list[tuple[Path, str]], root: Path) -> Path:
    """Symbolic links ``root/<label>/<file>``."""
    for path, label in files:
        (root / label).mkdir(parents=True, exist_ok=True)
        (root / label / path.name).symlink_to(path.resolve())
    return root


def export_revision(rev: str, dest: Path) -> Path:
    """The package of git revision ``rev`` as an importable ``crsnn`` folder under ``dest``
    (its folders mapped as in that revision's pyproject.toml); returns the folder for PYTHONPATH."""
    data = subprocess.run(["git", "-C", str(REPO), "archive", rev], check=True, capture_output=True).stdout
    src = dest / "src"
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(src, filter="data")
    mapping = tomllib.loads((src / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    pkg = dest / "pkg"
    shutil.copytree(src / mapping["crsnn"], pkg / "crsnn")
    for name, folder in mapping.items():
        if name.count(".") == 1:  # crsnn.<sub> -> <folder>
            (pkg / "crsnn" / name.split(".")[1]).symlink_to(src / folder)
    return pkg


def run_once(wavs: Path, out: Path, workers: int, pythonpath: Path | None) -> dict:
    """One ``encode`` subprocess: wall and CPU seconds."""
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    cmd = [sys.executable, "-m", "crsnn.train.data.cli", "encode", str(wavs), "--out", str(out),
           "--workers", str(workers), "--quiet"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, cwd=tempfile.gettempdir())
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("wav_dir", nargs="?", type=Path, default=Path(os.environ.get("FSDD_RECORDINGS", REPO / "data" / "fsdd" / "recordings")))
    ap.add_argument("--label-pattern", default=r"^(\d+)_")
    ap.add_argument("--files", type=int, default=200)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--baseline", default=None,
                    help="git revision to compare against (e.g. a commit before the speed-up)")
    ap.add_argument("--rev", default=None, help="git revision measured as the current code (default: the working tree)")
    ap.add_argument("--out", default=None, help="JSON path (default bench/results/encode_speed.json)")
    args = ap.parse_args()
    if not args.wav_dir.is_dir():
        raise SystemExit(f"{args.wav_dir}: no such folder (give the folder of the recordings)")

    from crsnn.train.data.encode import read_wav

    files = pick_files(args.wav_dir, args.files, args.label_pattern)
    audio_s = sum(x.size / fs for x, fs in (read_wav(p) for p, _ in files))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        wavs = class_folders(files, tmp / "wavs")
        versions = {"current": export_revision(args.rev, tmp / "current") if args.rev else None}
        if args.baseline:
            versions = {"baseline": export_revision(args.baseline, tmp / "baseline"), **versions}
        runs = {v: [] for v in versions}
        for r in range(args.repeats):
            for v, path in versions.items():
                runs[v].append(run_once(wavs, tmp / f"{v}.h5", args.workers, path))
                print(f"repeat {r + 1}/{args.repeats} {v}: {runs[v][-1]}", flush=True)
    result = {"data": os.path.relpath(args.wav_dir.resolve(), REPO), "files": len(files), "audio_s": round(audio_s, 2),
              "workers": args.workers, "repeats": args.repeats, "baseline_rev": args.baseline,
              "current_rev": args.rev or "working tree", "runs": runs}
    for v, rs in runs.items():
        best = min(r["wall_s"] for r in rs)
        result[v] = {"best_wall_s": best, "best_cpu_s": min(r["cpu_s"] for r in rs),
                     "files_per_s": round(len(files) / best, 2), "audio_s_per_s": round(audio_s / best, 2)}
    if args.baseline:
        for key in ("best_wall_s", "best_cpu_s"):
            result[f"speedup_{key[5:]}"] = round(result["baseline"][key] / result["current"][key], 2)
    for v in versions:
        print(f"{v}: {result[v]}")
    if args.baseline:
        print(f"speed-up: wall {result['speedup_wall_s']}x, CPU {result['speedup_cpu_s']}x")
    write_result("encode_speed", result, args.out)


if __name__ == "__main__":
    main()
