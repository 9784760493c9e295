"""``crsnn-data``: make, encode, inspect and score spike data sets in SHD's layout.

Subcommands::

    crsnn-data synth --out DIR [--per-class N] [--seed S]   offline spoken-digit benchmark
    crsnn-data encode WAV_DIR --out FILE.h5                  your WAV files -> spikes
    crsnn-data encode WAV_DIR --label-pattern '^(\\d+)_' --speaker-pattern '^\\d+_([a-z]+)_' \\
        --test-speakers theo --out DIR                       named files, speaker-disjoint split
    crsnn-data split ALL.h5 --test-speakers theo --out DIR   the same split from one encoding
    crsnn-data show FILE.h5 [--index I] [--png PATH]         statistics (+ spike raster PNG)
    crsnn-data baseline DIR | TRAIN.h5 TEST.h5               logistic-regression baseline
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from crsnn.atomic_write import check_writable
from crsnn.cli_errors import run_command
from crsnn.cli_types import (CommandParser, float_range, non_negative_int, positive_float, positive_int,
                             seed)

from .layout import SpikeFileError


def db_offsets(text: str) -> list[float]:
    """``--fibres``: comma-separated offsets in dB, each in [0, 60] (a threshold below ``reference``
    would reach channels that :func:`~crsnn.train.data.cochlea.first_in_band` counts as silent)."""
    parse = float_range(0, 60)
    try:
        values = [parse(v) for v in text.split(",")]
    except argparse.ArgumentTypeError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated offsets in dB: {e}") from None
    if not 1 <= len(values) <= 8:
        raise argparse.ArgumentTypeError(f"expected 1 to 8 offsets, got {len(values)}")
    return values


db_offsets.__name__ = "dB offsets"


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
    from .cochlea import CochleaParams
    from .encode import encode_folder

    if args.test_speakers is None:  # outputs checked before the work
        check_writable(args.out, make_parents=True)
    elif args.out.suffix.lower() not in (".h5", ".hdf5"):
        for split in ("train", "test"):
            check_writable(args.out / f"{split}.h5", make_parents=True)
    level = None if args.keep_level else args.level_db
    test = None if args.test_speakers is None else args.test_speakers.split(",")
    trim = None if args.no_trim else args.trim_db
    params = CochleaParams(equalize_power=args.equalize, fibre_offsets_db=tuple(args.fibres),
                           ear_highpass_hz=args.ear_highpass)
    s = encode_folder(args.wav_dir, args.out, seed=args.seed, params=params, level_db=level,
                      max_duration=args.max_duration, trim_db=trim, workers=args.workers, progress=not args.quiet,
                      label_pattern=args.label_pattern, speaker_pattern=args.speaker_pattern,
                      test_speakers=test)
    speakers = f", {len(s['speakers'])} speakers" if s["speakers"] else ""
    print(f"{s['samples']} samples, {len(s['classes'])} classes ({', '.join(s['classes'])}){speakers}, "
          f"{s['mean_spikes']:.0f} spikes/sample, {s['mean_duration_s']:.2f} s/sample, in {s['seconds']:.1f} s")
    for split, f in s["files"].items():
        who = f", speakers {', '.join(f['speakers'])}" if f["speakers"] else ""
        print(f"  {f['path']}: {f['samples']} samples{who}, {f['bytes'] / 1e6:.2f} MB")
    return 0


def _split(args: argparse.Namespace) -> int:
    from .encode import split_encoded

    for split in ("train", "test"):
        check_writable(args.out / f"{split}.h5", make_parents=True, inputs=[args.file])
    s = split_encoded(args.file, args.test_speakers.split(","), args.out)
    for f in s["files"].values():
        print(f"  {f['path']}: {f['samples']} samples, speakers {', '.join(f['speakers'])}, {f['bytes'] / 1e6:.2f} MB")
    return 0


def _show(args: argparse.Namespace) -> int:
    from .summary import file_stats, format_stats, raster

    if args.png is not None:
        check_writable(args.png, make_parents=True, inputs=[args.file])
    print(format_stats(file_stats(args.file)))
    if args.png is not None:
        print(f"raster of sample {args.index}: {raster(args.file, args.index, args.png)}")
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
    from .encode import RECORDINGS_FRONT_END

    p = CommandParser(prog="crsnn-data", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("synth", help="synthesize the offline spoken-digit benchmark (needs espeak-ng)",
                       description="Synthesize the offline spoken-digit benchmark (train.h5, test.h5).")
    s.add_argument("--out", required=True, type=Path, help="output directory (train.h5, test.h5)")
    s.add_argument("--per-class", type=positive_int, default=100,
                   help="training utterances per class (test: per-class * test-fraction)")
    s.add_argument("--test-fraction", type=float_range(0, 1, lo_open=True, hi_open=True), default=0.25,
                   help="test utterances per training utterance")
    s.add_argument("--seed", type=seed, default=0, help="seed of speakers, noise and spikes")
    s.add_argument("--workers", type=positive_int, default=None, help="processes (default: CPU count, at most 8)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(fn=_synth)

    e = sub.add_parser("encode", help="encode WAV files (class folders or named files) into SHD-layout files",
                       description="Encode WAV_DIR/<class>/*.wav, or with --label-pattern every *.wav below "
                                   "WAV_DIR, into 700-channel cochlea spikes in SHD's layout.")
    e.add_argument("wav_dir", type=Path, help="folder of WAV files (one sub-folder per class without --label-pattern)")
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
    e.add_argument("--seed", type=seed, default=0, help="seed of the spike generator")
    e.add_argument("--level-db", type=float_range(), default=0.0, help="normalised active RMS (dB re. 1)")
    e.add_argument("--keep-level", action="store_true", help="do not normalise the level")
    e.add_argument("--trim-db", type=float_range(0, lo_open=True), default=20.0, metavar="DB",
                   help="cut leading/trailing silence: keep from the first to the last 10-ms frame within DB "
                        "of the loudest one, plus 20 ms each side")
    e.add_argument("--no-trim", action="store_true", help="keep every sample (no silence cut)")
    e.add_argument("--ear-highpass", type=float_range(0, 4000), default=0.0, metavar="HZ",
                   help="outer/middle-ear stage: a first-order high-pass at HZ before the level normalisation "
                        "(0: off)")
    e.add_argument("--fibres", type=db_offsets, default=[0.0], metavar="DB[,DB...]",
                   help="fibre classes: each channel's rate threshold is raised by these offsets (dB) in turn "
                        "along the channels, e.g. 0,20,40 (three classes of staggered thresholds at each place, as "
                        "the auditory nerve's high-, medium- and low-spontaneous-rate fibres); 0: one class")
    e.add_argument("--equalize", type=float_range(0, 1), default=RECORDINGS_FRONT_END.equalize_power, metavar="POWER",
                   help="per-recording channel equalisation: scale each cochlea channel's rates by "
                        "(mean over active channels / its own mean) ** POWER, gain at most 5 ** POWER "
                        "(0: off, the plain cochlea as SHD's; default 0.5: for voices and microphones the network "
                        "has not heard)")
    e.add_argument("--max-duration", type=positive_float, default=None, help="seconds kept per file (default: all)")
    e.add_argument("--workers", type=positive_int, default=None, help="processes (default: CPU count, at most 8)")
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    e.set_defaults(fn=_encode)

    t = sub.add_parser("split", help="a speaker-disjoint train/test split of one encoded file (no re-encoding)",
                       description="Write OUT/train.h5 and OUT/test.h5 from FILE, written by crsnn-data encode "
                                   "--speaker-pattern without --test-speakers: the same bytes as encoding again "
                                   "with --test-speakers, without the encoding (encode once, split per fold).")
    t.add_argument("file", type=Path, help="SHD-layout .h5 file of crsnn-data encode --speaker-pattern")
    t.add_argument("--test-speakers", metavar="A,B", required=True, help="speakers of test.h5 (the others: train.h5)")
    t.add_argument("--out", required=True, type=Path, help="output folder (train.h5, test.h5)")
    t.set_defaults(fn=_split)

    w = sub.add_parser("show", help="counts per class, length statistics, raster PNG of a sample",
                       description="Counts per class and length statistics of a spike file; with --png, a "
                                   "spike raster of one sample.")
    w.add_argument("file", type=Path, help="SHD-layout .h5 file")
    w.add_argument("--index", type=non_negative_int, default=0, help="sample drawn by --png")
    w.add_argument("--png", type=Path, default=None, help="write a spike raster of sample --index to this PNG")
    w.add_argument("--no-png", action="store_true", help="no effect (kept for old scripts): no PNG without --png")
    w.set_defaults(fn=_show)

    b = sub.add_parser("baseline", help="logistic regression on per-channel spike counts",
                       description="Logistic regression on per-channel spike counts (a difficulty check).")
    b.add_argument("data", type=Path, help="directory with train/test files, or the train file")
    b.add_argument("test", type=Path, nargs="?", default=None, help="test file (with a train file)")
    b.add_argument("--C", type=positive_float, default=0.1, help="inverse L2 strength")
    b.add_argument("--json", action="store_true", help="also print the result as one JSON line")
    b.set_defaults(fn=_baseline)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``crsnn-data``; returns the exit status (2 on a data error)."""
    args = build_parser().parse_args(argv)
    # RuntimeError: e.g. espeak-ng unavailable
    return run_command(f"crsnn-data {args.command}", lambda: args.fn(args),
                       (SpikeFileError, FileNotFoundError, IndexError, ValueError, RuntimeError))


if __name__ == "__main__":
    sys.exit(main())
