"""Real speech from unseen speakers: leave-one-speaker-out on the Free Spoken Digit Dataset.

Each fold holds one speaker out as the test set and trains on the others (the validation split
that picks the best epoch is drawn from the training speakers; the test speaker is never looked at
before the final evaluation). Models, all with ``crsnn-train --recipe fsdd`` (2 x 128, QAT for the
last quarter of the epochs):

- ``crsnn``: conv recurrence (k = 3) with learned axonal delays;
- ``crsnn-frozen``: the same random initial delays, never updated (``--lr-delay 0``);
- ``crsnn-nodelay``: every delay 0 (recurrent latency 1 step), no spread;
- ``delrec``: dense recurrence with learned delays;
- ``ff``: no recurrence;
- ``dcls``: no recurrence, one learned delay per feedforward synapse (0..25 steps);
- ``dcls-frozen``: the same random initial synaptic delays, never updated;
- ``crsnn-dcls``: both: learned synaptic delays on the feedforward connections and the CRSNN's conv
  recurrence with learned axonal delays;
- ``csgru``: convolutional spiking GRU cells with learned axonal delays in both layers.

The recordings are encoded once (``crsnn-data encode``, into ``runs/bench/fsdd/folds/<encode
options>/all.h5``) and each fold is split from that file (``crsnn-data split --test-speakers S``,
into ``.../<S>/``; both reused afterwards). Figures: float and integer
(deployed arithmetic) test accuracy per fold, mean +- std over folds (of each fold's mean over
seeds) and the std over seeds of the leave-one-speaker-out mean; JSON in ``bench/results/fsdd.json``;
plots of the accuracy per fold and of the learned delays in ``docs/``. ``--keep-rows`` keeps the
rows of models not run now (same recipe, options and folds), so that ``make bench`` can give the
CRSNN, its delay ablations and DelRec three seeds and the other rows one.

The folds are encoded with the per-recording channel equalisation (``--equalize 0.5``; what it
changed is in the ``fsdd`` recipe's notes, :mod:`crsnn.train.recipes`).

    .venv/bin/python bench/fsdd.py --recordings FSDD/recordings [--models crsnn delrec ff]
                                   [--seeds 0] [--epochs 30] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from _common import REPO, WORK, command_line, mean_std, train_run, write_result
from tqdm import tqdm

LABEL_PATTERN = r"^(\d+)_"
SPEAKER_PATTERN = r"^\d+_([a-z]+)_"
#: ``crsnn-data encode`` options of the folds (their folder is named after them, so that folds
#: encoded otherwise, and the trainings on them, are never reused for these figures).
ENCODE_OPTIONS = ["--trim-db", "20", "--equalize", "0.5"]
VARIANTS = {
    "crsnn": ["--model", "crsnn"],
    "crsnn-frozen": ["--model", "crsnn", "--lr-delay", "0"],
    "crsnn-nodelay": ["--model", "crsnn", "--delay-init", "constant:0", "--lr-delay", "0", "--sigma0", "0"],
    "delrec": ["--model", "delrec"],
    "ff": ["--model", "ff"],
    "dcls": ["--model", "dcls", "--recurrent-layers", "none"],
    "dcls-frozen": ["--model", "dcls", "--recurrent-layers", "none", "--lr-delay", "0"],
    "crsnn-dcls": ["--model", "dcls", "--recurrent-layers", "all"],
    "csgru": ["--model", "csgru"],
}
NAMES = {"crsnn": "CRSNN", "crsnn-frozen": "CRSNN, frozen random delays", "crsnn-nodelay": "CRSNN, no delays",
         "delrec": "DelRec", "ff": "feedforward", "dcls": "DCLS-style synaptic delays",
         "dcls-frozen": "synaptic delays frozen at random",
         "crsnn-dcls": "CRSNN + synaptic delays", "csgru": "CS-GRU (both layers)"}


def speakers_in(recordings: Path) -> list[str]:
    """The speaker names of the FSDD file names ``{digit}_{speaker}_{index}.wav``, sorted."""
    names = {m.group(1) for p in recordings.glob("*.wav") if (m := re.match(SPEAKER_PATTERN, p.name))}
    if not names:
        raise SystemExit(f"{recordings}: no FSDD recordings ({{digit}}_{{speaker}}_{{index}}.wav)")
    return sorted(names)


def encode_all(recordings: Path, folder: Path, options: list[str]) -> Path:
    """Every recording encoded once with the ``crsnn-data encode`` ``options`` (``all.h5``, with
    the speakers), on first use."""
    path = folder / "all.h5"
    if not path.exists():
        subprocess.run([sys.executable, "-m", "crsnn.train.data.cli", "encode", str(recordings), "--out", str(path),
                        "--label-pattern", LABEL_PATTERN, "--speaker-pattern", SPEAKER_PATTERN, *options,
                        "--quiet"], check=True)
    return path


def split_fold(encoded: Path, speaker: str, folder: Path) -> Path:
    """``train.h5`` / ``test.h5`` of the fold that holds ``speaker`` out, split from the one
    encoding (``crsnn-data split``: the same bytes as encoding the fold on its own)."""
    if not ((folder / "train.h5").exists() and (folder / "test.h5").exists()):
        subprocess.run([sys.executable, "-m", "crsnn.train.data.cli", "split", str(encoded), "--test-speakers",
                        speaker, "--out", str(folder)], check=True, stdout=subprocess.DEVNULL)
    return folder


def plot_folds(rows: dict, speakers: list[str], path: Path) -> Path:
    """Grouped bars: integer test accuracy per held-out speaker and model (mean over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from crsnn.atomic_write import save_figure

    fig, ax = plt.subplots(figsize=(10, 3.6))
    width = 0.8 / max(1, len(rows))
    x = np.arange(len(speakers))
    for i, (v, r) in enumerate(rows.items()):
        acc = [100 * np.mean([s["integer"] for s in r["folds"][spk].values()]) for spk in speakers]
        seeds = len(r.get("seeds", [0]))
        ax.bar(x + (i - (len(rows) - 1) / 2) * width, acc, width,
               label=f"{NAMES[v]} ({100 * r['integer_mean']:.1f} %, {seeds} seed{'s' if seeds > 1 else ''})")
    ax.set_xticks(x, [f"test: {s}" for s in speakers])
    ax.set_ylabel("integer test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title("FSDD, leave one speaker out")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="mean over folds and seeds",
              title_fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    try:
        return save_figure(fig, path, dpi=110)
    finally:
        plt.close(fig)


def fold_statistics(folds: dict) -> dict:
    """Float and integer accuracy of one model: the mean over every (fold, seed) run, its std over
    folds (of each fold's mean over seeds), and the std over seeds of the leave-one-speaker-out
    mean (None for one seed). ``folds``: {speaker: {seed: {"float", "integer", ...}}}."""
    out: dict = {}
    seeds = sorted({seed for f in folds.values() for seed in f})
    for m in ("float", "integer"):
        per_fold = [float(np.mean([x[m] for x in f.values()])) for f in folds.values()]
        out[f"{m}_mean"] = float(np.mean([x[m] for f in folds.values() for x in f.values()]))
        out[f"{m}_std"] = mean_std(per_fold)[1]
        loso = [float(np.mean([f[seed][m] for f in folds.values() if seed in f])) for seed in seeds]
        out[f"{m}_seed_std"] = mean_std(loso)[1] if len(seeds) > 1 else None
    return out


def recipe_values(name: str) -> dict:
    """The option values of a ``crsnn-train`` recipe (what its name stood for in this run)."""
    from crsnn.train.recipes import RECIPES

    return dict(RECIPES[name])


def kept_rows(args, common: list[str], speakers: list[str]) -> dict:
    """The rows of the existing result for models not run now (``--keep-rows``), if it was made
    with the same recipe, training options, encoding and folds; else none (and why)."""
    from _common import RESULTS

    path = RESULTS / f"{args.tag}.json"
    if not path.exists():
        return {}
    old = json.loads(path.read_text())
    same = (old.get("recipe") == args.recipe and old.get("recipe_values") == recipe_values(args.recipe)
            and old.get("train_args") == common and old.get("encode_options") == args.encode
            and old.get("speakers") == speakers)
    if not same:
        print(f"--keep-rows: {path.name} was made with other options or folds; its rows are not kept")
        return {}
    return {v: r for v, r in old["rows"].items() if v not in args.models and v in VARIANTS}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recordings", type=Path, default=os.environ.get("FSDD_RECORDINGS"),
                    help="folder of the FSDD WAV files (default: $FSDD_RECORDINGS)")
    ap.add_argument("--models", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--speakers", nargs="+", default=None, help="held-out speakers (default: every speaker)")
    ap.add_argument("--epochs", type=int, default=None, help="default: the recipe's")
    ap.add_argument("--recipe", default="fsdd")
    ap.add_argument("--extra", nargs=argparse.REMAINDER, default=[],
                    help="further crsnn-train options for every run (must come last)")
    ap.add_argument("--encode", type=shlex.split, default=ENCODE_OPTIONS, metavar='"OPTIONS"',
                    help="crsnn-data encode options of the folds (default: %(default)s)")
    ap.add_argument("--jobs", type=int, default=2, help="trainings run in parallel (one torch thread each)")
    ap.add_argument("--tag", default="fsdd", help="name of the JSON result and of the run folder")
    ap.add_argument("--no-plots", dest="plots", action="store_false")
    ap.add_argument("--keep-rows", action="store_true",
                    help="keep the rows of the models not run now from the existing result, if it was made with the "
                         "same recipe, options and folds (so that models can differ in their number of seeds)")
    args = ap.parse_args(argv)
    if args.recordings is None or not Path(args.recordings).is_dir():
        ap.error("give --recordings FOLDER (or set FSDD_RECORDINGS) with the FSDD WAV files")

    speakers = args.speakers or speakers_in(args.recordings)
    data_root = WORK / "fsdd" / "folds" / "_".join(o.lstrip("-") for o in args.encode)
    encoded = encode_all(args.recordings, data_root, args.encode)
    folds = {s: split_fold(encoded, s, data_root / s) for s in speakers}
    common = ["--recipe", args.recipe, "--threads", "1", "--no-progress", *args.extra]
    if args.epochs:
        common += ["--epochs", str(args.epochs)]
    work = WORK / args.tag
    jobs = [(v, s, seed) for v in args.models for seed in args.seeds for s in speakers]  # models in the given order

    def one(job):
        v, s, seed = job
        return job, train_run(["--data", str(folds[s]), *VARIANTS[v], *common, "--seed", str(seed)],
                              work / f"{v}-{s}-seed{seed}.pt")

    rows: dict = {v: {"folds": {s: {} for s in speakers}} for v in args.models}
    with ThreadPoolExecutor(args.jobs) as pool:
        for (v, s, seed), log in tqdm(pool.map(one, jobs), total=len(jobs), desc="trainings", unit="run"):
            rows[v]["folds"][s][seed] = {**{m: log["test"][m]["acc"] for m in ("float", "integer")},
                                         "n": log["test"]["integer"]["n"],
                                         "best_valid": max(e["valid_acc"] for e in log["epochs"]),
                                         "train_seconds": sum(e["time_s"] for e in log["epochs"])}
    for v, r in rows.items():
        r.update(seeds=list(args.seeds), command=command_line(), **fold_statistics(r["folds"]))
    if args.keep_rows:
        merged = {**kept_rows(args, common, speakers), **rows}
        rows = {v: merged[v] for v in VARIANTS if v in merged}  # the table's order
    print(f"\nFSDD leave-one-speaker-out ({', '.join(speakers)}), recipe {args.recipe}: test accuracy on the "
          "held-out speaker, mean +- std over folds (of the seeds' mean per fold)")
    print(f"{'model':<34}{'seeds':>8}{'float':>16}{'integer':>16}   per fold (integer)")
    for v, r in rows.items():
        per = " ".join(f"{100 * np.mean([x['integer'] for x in r['folds'][s].values()]):5.1f}" for s in speakers)
        print(f"{NAMES[v]:<34}{len(r['seeds']):>8}{100 * r['float_mean']:>8.2f} +- {100 * r['float_std']:4.2f}"
              f"{100 * r['integer_mean']:>8.2f} +- {100 * r['integer_std']:4.2f}   {per}")
    plots = {}
    if args.plots:
        from crsnn.train.checkpoint import load_checkpoint
        from crsnn.train.plots import plot_delays

        plots["folds"] = str(plot_folds(rows, speakers, REPO / "docs" / f"{args.tag}_folds.png"))
        if "crsnn" in rows:
            ckpt = work / f"crsnn-{speakers[0]}-seed{rows['crsnn']['seeds'][0]}.pt"
            model, _ = load_checkpoint(ckpt)
            init = model.config.delay_init
            plots["delays"] = str(plot_delays(model.to_integer(), REPO / "docs" / f"{args.tag}_delays.png",
                                              title=f"CRSNN learned delays, FSDD (test speaker {speakers[0]})",
                                              init_range=(init[1], init[2]) if init[0] == "uniform" else None))
    write_result(args.tag, {"speakers": speakers, "recipe": args.recipe, "recipe_values": recipe_values(args.recipe),
                            "train_args": common,
                            "encode_options": args.encode, "variants": {v: VARIANTS[v] for v in rows},
                            "rows": rows, "plots": plots})
    return 0


if __name__ == "__main__":
    sys.exit(main())
