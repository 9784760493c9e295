"""The tutorials (docs/tutorials/*.py, jupytext percent scripts) run on small sizes, every cell
and every check they make (e.g. Lava bit-exact with the integer simulator), and the pages of the
site show what they run: a page whose code no longer matches its script fails here."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _tutorials_module():
    spec = importlib.util.spec_from_file_location("crsnn_tutorials", REPO / "scripts" / "tutorials.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


tutorials = _tutorials_module()
SCRIPTS = tutorials.tutorial_files()


def _page_code(page: str) -> list[str]:
    return re.findall(r"```python\n(.*?)\n```", page, flags=re.S)


def test_percent_cells_are_parsed():
    cells = tutorials.parse("# ---\n# jupyter: x\n# ---\n\n# %% [markdown]\n# # Title\n#\n# text\n\n"
                            "# %%\nx = 1\n\n# %%\nprint(x)\n")
    assert [(c.kind, c.source) for c in cells] == [("markdown", "# Title\n\ntext"), ("code", "x = 1"),
                                                   ("code", "print(x)")]


def test_every_tutorial_has_a_page_in_the_site_matching_its_code():
    nav = (REPO / "mkdocs.yml").read_text()
    assert SCRIPTS
    for script in SCRIPTS:
        page = script.with_suffix(".md")
        assert page.is_file(), f"{page.name} missing: run scripts/tutorials.py"
        assert f"tutorials/{page.name}" in nav
        text = page.read_text()
        assert _page_code(text) == tutorials.code_of(tutorials.parse(script.read_text())), \
            f"{page.name} is stale: run scripts/tutorials.py {script.relative_to(REPO)}"
        for image in re.findall(r"!\[[^]]*\]\(([^)]+)\)", text):
            assert (page.parent / image).is_file(), image
        assert "![figure" in text, f"{page.name} has no plot"


@pytest.mark.lava
@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_tutorial_runs_and_renders_its_plots(script: Path, tmp_path: Path):
    seconds = tutorials.render(script, tmp_path / f"{script.stem}.md")
    page = (tmp_path / f"{script.stem}.md").read_text()
    assert _page_code(page) == tutorials.code_of(tutorials.parse(script.read_text()))
    assert list((tmp_path / f"{script.stem}_files").glob("figure_*.png"))
    assert "Traceback" not in page
    assert seconds < 120, f"{script.name} took {seconds:.0f} s: keep the tests' size under a minute"
