"""``crsnn-data``: make, encode, inspect and score spike data sets in SHD's layout.

Subcommands::

    crsnn-data synth --out DIR [--per-class N] [--seed S]   offline spoken-digit benchmark
    crsnn-data encode WAV_DIR --out FILE.h5                  your WAV files -> spikes
    crsnn-data encode WAV_DIR --label-pattern '^(\\d+)_' --speaker-pattern '^\\d+_([a-z]+)_' \\
        --test-speakers theo --out DIR                       named files, speaker-disjoint split
    crsnn-data show FILE.h5 [--index I] [--png PATH]         statistics + spike raster PNG
    crsnn-data baseline DIR | TRAIN.h5 TEST.h5               logistic-regression baseline
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from .layout import SpikeFileError


def _synth(args: argparse.Namespace) -> int:
    from .synth import SynthConfig, synthesize_benchmark

    cfg = SynthConfig(per_class=args.per_class, seed=args.seed, test_fraction=args.test_fraction)
    s = synthesize_benchmark(args.out, cfg, workers=args.workers, progress=not args.quiet)
    syn = s["synthesizer"]
    print(f"synthesized with {syn['synthesizer']} {syn['version']} ({syn['source']}), seed {args.seed}, "
          f"in {s['seconds']:.1f} s")
    for split, f in s["files"].items():
        print(f"  {f['path']}: {f['samples']} samples, speakers {f['speakers']}, "
              f"{f['mean_spikes']:.0f} spikes/sample, {f['bytes'] / 1e6:.1f} MB")
    return 0


def _encode(args: argparse.Namespace) -> int:
    from .encode import encode_folder

    level = None if args.keep_level else args.level_db
    test = None if args.test_speakers is None else args.test_speakers.split(",")
    s = encode_folder(args.wav_dir, args.out, seed=args.seed, level_db=level,
                      max_duration=args.max_duration, workers=args.workers, progress=not args.quiet,
                      label_pattern=args.label_pattern, speaker_pattern=args.speaker_pattern,
                      test_speakers=test)
    speakers = f", {len(s['speakers'])} speakers" if s["speakers"] else ""
    print(f"{s['samples']} samples, {len(s['classes'])} classes ({', '.join(s['classes'])}){speakers}, "
          f"{s['mean_spikes']:.0f} spikes/sample, {s['mean_duration_s']:.2f} s/sample, in {s['seconds']:.1f} s")
    for split, f in s["files"].items():
        who = f", speakers {', '.join(f['speakers'])}" if f["speakers"] else ""
        print(f"  {f['path']}: {f['samples']} samples{who}, {f['bytes'] / 1e6:.2f} MB")
    return 0


def _show(args: argparse.Namespace) -> int:
    from .summary import file_stats, format_stats, raster

    print(format_stats(file_stats(args.file)))
    if not args.no_png:
        png = args.png or Path.cwd() / f"{Path(args.file).stem}_{args.index}.png"
        print(f"raster of sample {args.index}: {raster(args.file, args.index, png)}")
    return 0


def _baseline(args: argparse.Namespace) -> int:
    from .shd import find_split_files
    from .summary import baseline

    if args.test is None:
        files = find_split_files(args.data)
        if "train" not in files or "test" not in files:
            raise SpikeFileError(f"{args.data}: needs a train and a test file, found {sorted(files)}")
        train, test = files["train"], files["test"]
    else:
        train, test = Path(args.data), Path(args.test)
    r = baseline(train, test, C=args.C)
    print(f"logistic regression on per-channel spike counts ({train.name} -> {test.name}): "
          f"test accuracy {r['test_accuracy']:.3f} (train {r['train_accuracy']:.3f}, "
          f"chance {r['chance']:.3f}, {r['n_train']} / {r['n_test']} samples)")
    if args.json:
        print(json.dumps(r))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="crsnn-data", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("synth", help="synthesize the offline spoken-digit benchmark (needs espeak-ng)")
    s.add_argument("--out", required=True, type=Path, help="output directory (train.h5, test.h5)")
    s.add_argument("--per-class", type=int, default=100,
                   help="training utterances per class (test: per-class * test-fraction); default 100")
    s.add_argument("--test-fraction", type=float, default=0.25)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--workers", type=int, default=None, help="processes (default: CPU count)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(fn=_synth)

    e = sub.add_parser("encode", help="encode WAV files (class folders or named files) into SHD-layout files",
                       description="Encode WAV_DIR/<class>/*.wav, or with --label-pattern every *.wav below "
                                   "WAV_DIR, into 700-channel cochlea spikes in SHD's layout.")
    e.add_argument("wav_dir", type=Path)
    e.add_argument("--out", required=True, type=Path,
                   help="output .h5 file; with --test-speakers a folder (train.h5, test.h5)")
    e.add_argument("--label-pattern", metavar="REGEX", default=None,
                   help="class = first group of re.search(REGEX, file name), e.g. '^(\\d+)_' for "
                        "FSDD's {digit}_{speaker}_{index}.wav (default: the class folders)")
    e.add_argument("--speaker-pattern", metavar="REGEX", default=None,
                   help="speaker = first group of re.search(REGEX, file name), stored in extra/speaker "
                        "(ids; names in the attribute speaker_names), e.g. '^\\d+_([a-z]+)_'")
    e.add_argument("--test-speakers", metavar="A,B", default=None,
                   help="write --out/train.h5 (other speakers) and --out/test.h5 (these speakers)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--level-db", type=float, default=0.0, help="normalised active RMS (dB re. 1)")
    e.add_argument("--keep-level", action="store_true", help="do not normalise the level")
    e.add_argument("--max-duration", type=float, default=None, help="seconds kept per file (default: all)")
    e.add_argument("--workers", type=int, default=None, help="processes (default: CPU count, at most 8)")
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(fn=_encode)

    w = sub.add_parser("show", help="counts per class, length statistics, raster PNG of a sample")
    w.add_argument("file", type=Path)
    w.add_argument("--index", type=int, default=0)
    w.add_argument("--png", type=Path, default=None, help="default: ./<file stem>_<index>.png")
    w.add_argument("--no-png", action="store_true")
    w.set_defaults(fn=_show)

    b = sub.add_parser("baseline", help="logistic regression on per-channel spike counts")
    b.add_argument("data", type=Path, help="directory with train/test files, or the train file")
    b.add_argument("test", type=Path, nargs="?", default=None, help="test file (with a train file)")
    b.add_argument("--C", type=float, default=0.1, help="inverse L2 strength")
    b.add_argument("--json", action="store_true")
    b.set_defaults(fn=_baseline)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``crsnn-data``; returns the exit status (2 on a data error)."""
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (SpikeFileError, FileNotFoundError, IndexError, ValueError) as exc:
        print(f"crsnn-data {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # e.g. espeak-ng unavailable
        print(f"crsnn-data {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
