"""Run the tutorials (jupytext percent-format scripts in docs/tutorials/) and render each into a
Markdown page of the site, with its printed output and its plots.

    python scripts/tutorials.py                      # every tutorial -> docs/tutorials/NAME.md (+ NAME_files/)
    python scripts/tutorials.py docs/tutorials/train_and_deploy.py --out /tmp/t   # one, elsewhere

A tutorial is a Python script: ``# %%`` starts a code cell, ``# %% [markdown]`` a Markdown cell
whose lines are comments (``# text``). It opens as a notebook in Jupyter with jupytext, and runs
as a plain script (``python docs/tutorials/NAME.py``). Here every code cell runs in one namespace
in a fresh process per tutorial, with the working directory set to a scratch folder
(``CRSNN_TUTORIAL_DIR``, shown as ``WORK`` in the pages), matplotlib's Agg backend, and ``CRSNN_TUTORIAL_SMALL=1`` unless set;
after each cell its standard output is kept and every open figure is saved as a PNG and closed.
A failing cell (an ``assert`` of the tutorial included) fails the run: exit status 1, no page.
Nothing here needs Jupyter or a network connection.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TUTORIALS = REPO / "docs" / "tutorials"
_CELL = re.compile(r"^# %%(.*)$")


@dataclass
class Cell:
    kind: str  # "code" or "markdown"
    source: str


def tutorial_files(folder: Path = TUTORIALS) -> list[Path]:
    """The tutorial scripts of ``folder``, in name order."""
    return sorted(p for p in folder.glob("*.py") if not p.name.startswith("_"))


def parse(text: str) -> list[Cell]:
    """The cells of a percent-format script (a header before the first ``# %%`` is dropped:
    jupytext's metadata block)."""
    cells: list[Cell] = []
    kind, lines = None, []

    def flush() -> None:
        if kind is None:
            return
        body = "\n".join(lines).strip("\n")
        if kind == "markdown":
            body = "\n".join(re.sub(r"^# ?", "", ln) for ln in body.splitlines())
        if body.strip():
            cells.append(Cell(kind, body))

    for line in text.splitlines():
        m = _CELL.match(line)
        if m:
            flush()
            kind, lines = ("markdown" if "[markdown]" in m.group(1) else "code"), []
        elif kind is not None:
            lines.append(line)
    flush()
    return cells


def code_of(cells: list[Cell]) -> list[str]:
    """The code cells' sources (what a rendered page must show: see tests/test_tutorials.py)."""
    return [c.source for c in cells if c.kind == "code"]


def _execute(script: Path, page: Path, workdir: Path) -> float:
    """Run every cell of ``script`` in this process and write the Markdown page ``page`` (its
    figures in ``page.stem + '_files'`` beside it). Returns the seconds it took."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = parse(script.read_text())
    figures = page.parent / f"{page.stem}_files"
    figures.mkdir(parents=True, exist_ok=True)
    for old in figures.glob("*.png"):
        old.unlink()
    namespace: dict = {"__name__": "__main__", "__file__": str(script)}
    out: list[str] = [f"<!-- written by scripts/tutorials.py from {script.name}: edit that file, not this one -->", ""]
    n_fig = 0
    t0 = time.perf_counter()
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        for i, cell in enumerate(cells):
            if cell.kind == "markdown":
                out += [cell.source, ""]
                continue
            out += ["```python", cell.source, "```", ""]
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
                try:
                    exec(compile(cell.source, f"{script.name}, cell {i + 1}", "exec"), namespace)
                except Exception:
                    sys.__stderr__.write(buf.getvalue())
                    raise
            text = buf.getvalue().rstrip().replace(str(workdir), "WORK")  # no scratch paths in pages
            if text:
                out += ["```text", text, "```", ""]
            for num in plt.get_fignums():
                n_fig += 1
                name = f"figure_{n_fig}.png"
                plt.figure(num).savefig(figures / name, dpi=80, bbox_inches="tight")
                out += [f"![figure {n_fig}]({figures.name}/{name})", ""]
            plt.close("all")
    finally:
        os.chdir(cwd)
    seconds = time.perf_counter() - t0
    page.write_text("\n".join(out).rstrip() + "\n")
    return seconds


def render(script: Path, page: Path, timeout: float = 600.0) -> float:
    """Run ``script`` in a fresh Python process and write ``page``; raises ``RuntimeError`` with
    the end of the output when a cell fails. Returns the seconds the cells took."""
    env = dict(os.environ)
    env.setdefault("CRSNN_TUTORIAL_SMALL", "1")
    env.setdefault("MPLBACKEND", "Agg")
    with tempfile.TemporaryDirectory(prefix="crsnn-tutorial-") as work:
        env["CRSNN_TUTORIAL_DIR"] = work
        proc = subprocess.run([sys.executable, __file__, "--one", str(script), str(page), work], env=env,
                              capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{script.name} failed:\n{(proc.stdout + proc.stderr)[-4000:]}")
    return float(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Run the tutorials and render their pages.")
    ap.add_argument("scripts", nargs="*", type=Path, help="tutorial scripts (default: every one in docs/tutorials)")
    ap.add_argument("--out", type=Path, default=None, help="folder for the pages (default: beside each script)")
    ap.add_argument("--one", nargs=3, metavar=("SCRIPT", "PAGE", "WORKDIR"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        try:
            print(f"{_execute(Path(args.one[0]).resolve(), Path(args.one[1]).resolve(), Path(args.one[2])):.1f}")
        except Exception:
            traceback.print_exc()
            return 1
        return 0
    failed = 0
    for script in args.scripts or tutorial_files():
        page = (args.out or script.parent) / f"{script.stem}.md"
        page.parent.mkdir(parents=True, exist_ok=True)
        try:
            print(f"{script.name}: {render(script.resolve(), page.resolve()):.1f} s -> {page}")
        except RuntimeError as exc:
            print(exc, file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
