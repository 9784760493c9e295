"""Render the results table of docs/results.md from ``bench/results/*.json`` (what the other scripts wrote).

    .venv/bin/python bench/results_table.py          # print the Markdown
    .venv/bin/python bench/results_table.py --docs   # replace the table in docs/results.md in place

Every number in the table is read from a result file; a missing file leaves its rows out and says so.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from _common import REPO, RESULTS

from crsnn.atomic_write import write_bytes_atomic

BEGIN, END = "<!-- results:begin (bench/results_table.py) -->", "<!-- results:end -->"


def _load(name: str) -> dict | None:
    p = RESULTS / f"{name}.json"
    return json.loads(p.read_text()) if p.exists() else None


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _pm(m: float, s: float) -> str:
    return f"{100 * m:.1f} ± {100 * s:.1f} %"


def _rows_vs_published(r: dict) -> Iterator[str]:
    """Row (h): speed-ups over the published DelRec (ratios of median times), per layer width, on
    one thread (the JSON also holds the runs on all the machine's threads)."""
    med = {(x["threads"], x["n"], x["mode"], x["sigma"], x["model"]): x["median_s"] for x in r["rows"]}
    one = min(r["threads"])
    tsig = r["train_sigmas"][-1] if r["train_sigmas"] else None
    targets = {(t["threads"], t["n"], t["model"]): t for t in r["targets"]}

    def up(n: int, model: str, mode: str = "inference", th: int = one) -> float:
        sigma = r["sigma"] if mode == "inference" else tsig
        return med[(th, n, mode, sigma, "published_delrec")] / med[(th, n, mode, sigma, model)]

    cells = []
    for n in sorted({x["n"] for x in r["rows"]}):
        c = f"N = {n}: crsnn CRSNN float **{up(n, 'crsnn_float'):.1f}×**"
        t = targets.get((one, n, "crsnn_float"))
        if t:
            c += f" (paper {t['target']:g}×: {'met' if t['met'] else 'not met'})"
        sim = targets.get((one, n, "torch_sim"))
        rates = next(x["hidden_firing_rates"] for x in r["rows"]
                     if x["n"] == n and x["threads"] == one and x["model"] == "torch_sim")
        c += (f", QAT {up(n, 'crsnn_qat'):.1f}×, integer simulator **{up(n, 'torch_sim'):.1f}×**"
              + (f" ({'met' if sim['met'] else 'not met'})" if sim else "")
              + f" (event-driven: hidden firing rates {' / '.join(f'{100 * q:.1f} %' for q in rates)}), crsnn DelRec "
              f"{up(n, 'crsnn_delrec_float'):.1f}×, published CRSNN {up(n, 'published_crsnn'):.2f}×")
        if tsig is not None:
            c += (f"; training step CRSNN float {up(n, 'crsnn_float', 'train'):.1f}×, published CRSNN "
                  f"{up(n, 'published_crsnn', 'train'):.2f}×")
        cells.append(c)
    yield (f"| (h) inference speed over the published DelRec method (dense delay buffer over all L slots, "
            f"re-implemented in `bench/published_layers.py`), 2 × N, T = {r['steps']}, batch {r['batch']}, {one} "
            f"thread, median of {r['repeat']} | {'; '.join(cells)} | `{r['command']}` |")


def _rows_sim_vs_lava(r: dict) -> Iterator[str]:
    """Row (a): the integer simulator against Lava."""
    net = " → ".join(map(str, [r["network"]["n_in"], *r["network"]["hidden"], r["network"]["n_out"]]))
    seq = r["lava_sequential_s_extrapolated"]
    runs = "; ".join(
        f"{x['recurrence']}, {x['samples']} samples: **{x['ratio_sim_over_lava']['min']:.0f}×** "
        f"(median {x['ratio_sim_over_lava']['median']:.0f}×)" for x in r["runs"])
    ff = [x for x in r["runs"] if x.get("sim_feedforward_fraction_of_gemm_rate")]
    ops = min(x["ratio_sim_over_torch_ops"]["min"] for x in r["runs"]), max(
        x["ratio_sim_over_torch_ops"]["min"] for x in r["runs"])
    yield (f"| (a) integer simulator ({r['simulator']} {r['threads']} thread) vs Lava `Loihi2SimCfg` side by side, "
        f"{net} CRSNN, {r['steps']} steps | {runs}"
        + (f"; {seq / r['sim_s']:.0f}× one Lava run per sample ({r['samples']} samples)" if seq else "")
        + f". {ops[0]:.1f}–{ops[1]:.1f}× its torch operations"
        + (f"; feedforward part at {min(100 * x['sim_feedforward_fraction_of_gemm_rate'] for x in ff):.0f}–"
           f"{max(100 * x['sim_feedforward_fraction_of_gemm_rate'] for x in ff):.0f} % of this machine's float32 "
           f"GEMM rate ({r['gemm_float32_gflop_per_s']:.0f} GFLOP/s; dense-product FLOPs / time, event-driven)"
           if ff else "")
        + f"; {r['mismatching_spikes']} mismatching spikes | `{r['command']}` |")


def _rows_crsnn_vs_delrec(r: dict) -> Iterator[str]:
    """Rows (b): CRSNN against DelRec per layer width."""
    by = {(x["model"], x["n"]): x for x in r["rows"]}
    for n in sorted({x["n"] for x in r["rows"]}):
        c, d = by[("crsnn", n)], by[("delrec", n)]
        yield (f"| (b) CRSNN vs DelRec, 2 × {n} neurons | recurrent parameters {c['recurrent_parameters']:,} vs "
            f"{d['recurrent_parameters']:,} (**{d['recurrent_parameters'] / c['recurrent_parameters']:.0f}× fewer**, "
            f"total {c['parameters']:,} vs {d['parameters']:,}); inference CRSNN/DelRec speed: torch float "
            f"{c['torch_float_samples_per_s'] / d['torch_float_samples_per_s']:.2f}×, torch QAT "
            f"{c['torch_qat_samples_per_s'] / d['torch_qat_samples_per_s']:.2f}×, integer simulator "
            f"{c['integer_sim_samples_per_s'] / d['integer_sim_samples_per_s']:.2f}× "
            f"({c['integer_sim_samples_per_s']:,.0f} vs {d['integer_sim_samples_per_s']:,.0f} samples/s) "
            f"| `{r['command']}` |")


def _rows_train_speed(r: dict) -> Iterator[str]:
    """Row (c): training throughput (and the QAT/float time ratios of ``qat_speed``)."""
    size = " × ".join(map(str, r["hidden"]))
    parts = []
    for model in ("crsnn", "delrec"):
        rows = [x for x in r["rows"] if x["model"] == model]
        fl = [x for x in rows if x["mode"] == "float"]
        q = [x for x in rows if x["mode"] == "qat"][0]
        parts.append(f"{'CRSNN' if model == 'crsnn' else 'DelRec'} float {fl[0]['train_samples_per_s']:.0f}–"
                     f"{fl[-1]['train_samples_per_s']:.0f} (σ = {fl[0]['sigma']:g} → {fl[-1]['sigma']:g}), "
                     f"QAT {q['train_samples_per_s']:.0f}")
    cmds = f"`{r['command']}`"
    q = _load("qat_speed")
    if q:
        by = {x["model"]: x for x in q["rows"]}
        parts[-1] += (f". QAT / float time, side by side ({' × '.join(map(str, q['hidden']))}, train mode with "
                      f"dropout): forward ×{by['crsnn']['forward_ratio']:.2f} CRSNN, "
                      f"×{by['delrec']['forward_ratio']:.2f} DelRec; forward + backward "
                      f"×{by['crsnn']['step_ratio']:.2f}, ×{by['delrec']['step_ratio']:.2f} (shared 2-core machine, "
                      "noisy)")
        cmds += f", `{q['command']}`"
    yield (f"| (c) training throughput, {size}, T = {r['steps']}, batch {r['batch']}, {r['threads']} thread "
        f"| samples/s: {'; '.join(parts)} | {cmds} |")


def _rows_ablation_delays(r: dict) -> Iterator[str]:
    """Row (d): the delay ablation on the offline digits."""
    s = r["summary"]
    label = {"learned": "learned delays", "fixed": "fixed random delays", "none": "no delays"}
    cells = "; ".join(f"{label[v]} **{_pm(s[v]['integer_mean'], s[v]['integer_std'])}**" for v in s)
    if "learned" in s:
        cells += (f" (learned delays moved {s['learned']['mean_delay_change_steps']:.1f} steps on average from "
                  "their random initial values)")
    yield (f"| (d) ablation, CRSNN 2 × 128 on the offline spoken digits, seeds {', '.join(map(str, r['seeds']))} "
        f"(integer model, test split) | {cells} | `{r['command']}` |")


def _rows_accuracy(r: dict) -> Iterator[str]:
    """Rows (e): float, QAT, integer and Lava accuracy on the offline digits."""
    for model, x in r["rows"].items():
        name = "CRSNN" if model == "crsnn" else "DelRec"
        yield (f"| (e) {name} {' × '.join(map(str, r['hidden']))}, offline spoken digits, {x['test_samples']} test "
            f"samples | float {_pct(x['float'])} · QAT {_pct(x['qat'])} · integer {_pct(x['integer'])} · "
            f"Lava **{_pct(x['lava'])}**; Lava vs integer: {x['mismatching_spikes']} mismatching spikes of "
            f"{x['spike_slots_compared']:,} | `{r['command']}` |")


def _rows_fsdd(r: dict) -> Iterator[str]:
    """Row (f): FSDD leave-one-speaker-out."""
    from fsdd import NAMES as names

    def seeds(x: dict) -> str:
        n = len(x["seeds"])
        if n == 1:
            return "1 seed"
        return f"{n} seeds, ± {100 * x['integer_seed_std']:.1f} over seeds"

    cells = "; ".join(f"{names[v]} **{_pm(x['integer_mean'], x['integer_std'])}** (float "
                      f"{_pm(x['float_mean'], x['float_std'])}; {seeds(x)})" for v, x in r["rows"].items())
    commands = list(dict.fromkeys(x["command"] for x in r["rows"].values()))
    yield (f"| (f) real speech, unseen speakers: FSDD leave-one-speaker-out ({len(r['speakers'])} folds), 2 × 128, "
        f"`--recipe {r['recipe']}` (integer model, held-out speaker; ± std over folds) "
        f"| {cells} | {', '.join(f'`{c}`' for c in commands)} |")


def _rows_gap_defaults(r: dict) -> Iterator[str]:
    """Row (g): the training defaults on the gap-timing task."""
    s = r["summary"]
    cells = "; ".join(f"{k}: CRSNN **{_pm(v['crsnn']['integer_mean'], v['crsnn']['integer_std'])}**, DelRec "
                      f"{_pm(v['delrec']['integer_mean'], v['delrec']['integer_std'])}" for k, v in s.items())
    yield (f"| (g) `crsnn-train` defaults on the gap-timing task, {r['epochs']} epochs, seeds "
        f"{', '.join(map(str, r['seeds']))} (integer test accuracy) | {cells} | `{r['command']}` |")


def _rows_dcls_accuracy(r: dict) -> Iterator[str]:
    """Row (i): per-synapse delays on the gap-timing task."""
    from dcls_accuracy import NAMES as dcls_names

    cells = "; ".join(f"{dcls_names[m]} **{_pm(x['integer_mean'], x['integer_std'])}** ({x['parameters']:,} "
                      f"parameters, {x['synops_per_sample']:,.0f} synaptic ops/sample)"
                      for m, x in r["summary"].items())
    yield (f"| (i) per-synapse delays (`--model dcls`) on the gap-timing task, {' × '.join(map(str, r['hidden']))}, "
        f"{r['epochs']} epochs, seeds {', '.join(map(str, r['seeds']))} (integer test accuracy) | {cells} "
        f"| `{r['command']}` |")


def _rows_dcls_speed(r: dict) -> Iterator[str]:
    """Row (j): training and inference speed of per-synapse delays."""
    parts = []
    for model in ("dcls", "crsnn"):
        fl = sorted((x for x in r["rows"] if x["model"] == model and x["mode"] == "float"), key=lambda x: -x["sigma"])
        q = next(x for x in r["rows"] if x["model"] == model and x["mode"] == "qat")
        parts.append(f"{'DCLS-style' if model == 'dcls' else 'CRSNN'} train {fl[0]['train_samples_per_s']:.0f}–"
                     f"{fl[-1]['train_samples_per_s']:.0f} (float), {q['train_samples_per_s']:.0f} (QAT); "
                     f"inference {q['infer_samples_per_s']:.0f} (QAT)")
    yield (f"| (j) speed of per-synapse delays, {' × '.join(map(str, r['hidden']))}, max delay {r['max_delay']}, "
        f"T = {r['steps']}, batch {r['batch']}, {r['threads']} thread | samples/s: {'; '.join(parts)} "
        f"| `{r['command']}` |")


SECTIONS: list[tuple[str, Callable[[dict], Iterable[str]]]] = [
    ("sim_vs_lava", _rows_sim_vs_lava),
    ("crsnn_vs_delrec", _rows_crsnn_vs_delrec),
    ("train_speed", _rows_train_speed),
    ("ablation_delays", _rows_ablation_delays),
    ("accuracy", _rows_accuracy),
    ("fsdd", _rows_fsdd),
    ("gap_defaults", _rows_gap_defaults),
    ("vs_published", _rows_vs_published),
    ("dcls_accuracy", _rows_dcls_accuracy),
    ("dcls_speed", _rows_dcls_speed),
]
"""Result name and the function that turns its JSON into table rows, in table order."""


def render() -> str:
    out, missing, machines = [], [], {}
    row = out.append

    row("| figure | result | reproduce |")
    row("|---|---|---|")
    for name, rows_of in SECTIONS:
        r = _load(name)
        if not r:
            missing.append(name)
            continue
        machines[r["machine"]["cpu"]] = r["machine"]
        out += rows_of(r)
    if machines:  # the first CPU met, as its latest result recorded it
        m = next(iter(machines.values()))
        row("")
        row(f"Measured on {m['cpu']}, {m['cpus_visible']} cores visible, Python {m['python']}, torch {m['torch']}, "
            f"{m['date']}; every figure is read from `bench/results/*.json` by `bench/results_table.py`.")
    if missing:
        row("")
        row(f"Not measured yet: {', '.join(missing)} (run the scripts named above).")
    return "\n".join(out)


TABLE_PAGE = REPO / "docs" / "results.md"
"""The page whose marked block holds the table."""


def write_table(table: str, page: Path = TABLE_PAGE) -> int:
    """Replace the block between BEGIN and END of ``page`` with ``table``, atomically."""
    name = page.relative_to(REPO) if page.is_relative_to(REPO) else page
    text = page.read_text()
    if BEGIN not in text or END not in text:
        print(f"{name} has no {BEGIN} ... {END} block", file=sys.stderr)
        return 1
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    write_bytes_atomic(page, f"{head}{BEGIN}\n{table}\n{END}{tail}".encode())
    print(f"{name}: results table updated")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", "--readme", dest="docs", action="store_true",
                    help="replace the table in docs/results.md (--readme: the former name)")
    args = ap.parse_args(argv)
    table = render()
    if not args.docs:
        print(table)
        return 0
    return write_table(table)


if __name__ == "__main__":
    sys.exit(main())
