"""The documentation (issue 25): every --option the README and docs/ name next to a crsnn command
exists in that command's parser, README links point at files, the command pages are written from
the parsers, and the site builds with mkdocs --strict (a broken link or anchor fails it)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _docs_options():
    spec = importlib.util.spec_from_file_location("docs_options", REPO / "scripts" / "docs_options.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


docs_options = _docs_options()


def test_every_option_the_docs_name_exists():
    files = [REPO / "README.md", *docs_options.doc_files(REPO / "docs")]
    assert len(files) > 10
    problems = docs_options.check(files)
    assert not problems, "\n".join(map(str, problems))


def test_checker_catches_a_missing_option_in_code_and_prose(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "```bash\ncrsnn-train --data d --no-such-option 3 \\\n    --epochs 2\ncrsnn-export a.pt b.nir --check\n```\n\n"
        "`crsnn-data encode` cuts silence (`--trim-db 20`); `--fibres-typo` is wrong.\n\n"
        "- `crsnn-run --backend sim`; `crsnn-report` has no `--backend`.\n\n"
        "`bench/fsdd.py --seeds 0 1` is another program.\n\n"
        "| `--recipe fsdd` | `--not-anywhere` |\n")
    problems = [p.text for p in docs_options.check([page])]
    assert problems == ["--no-such-option is not an option of crsnn-train",
                        "--fibres-typo is not an option of crsnn-data encode",
                        "--backend is not an option of crsnn-report",
                        "--not-anywhere is not an option of any crsnn command"], problems


def test_page_command_and_readme_links(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("<!-- options: crsnn-export -->\n\nUse `--portable` or `--epochs`.\n")
    assert [p.text for p in docs_options.check([page])] == ["--epochs is not an option of crsnn-export"]
    readme = tmp_path / "README.md"
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# a\n")
    readme.write_text("[a](docs/a.md) [b](docs/b.md#x) [c](https://example.org) [d](#top)\n")
    assert [p.text for p in docs_options.readme_links(readme)] == ["link to docs/b.md#x: no such file"]


def test_command_pages_list_every_option(tmp_path):
    written = docs_options.write_pages(tmp_path)
    assert {p.name for p in written} == {f"{c}.md" for c in docs_options.COMMANDS} | {"index.md"}
    for command in docs_options.COMMANDS:
        text = (tmp_path / f"{command}.md").read_text()
        for option in docs_options.long_options(docs_options.parser_of(command)) - {"--help"}:
            assert f"`{option}" in text or f", {option}" in text, (command, option)


def _site_copy(tmp_path: Path) -> Path:
    root = tmp_path / "site-src"
    shutil.copytree(REPO / "docs", root / "docs", ignore=shutil.ignore_patterns("commands"))
    shutil.copy(REPO / "mkdocs.yml", root)
    docs_options.write_pages(root / "docs" / "commands")
    return root


def _build(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(root / "site")],
                          cwd=root, capture_output=True, text=True, timeout=120,
                          env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin", "HOME": str(root)})


def test_site_builds_strict_and_fails_on_a_broken_link(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    root = _site_copy(tmp_path)
    done = _build(root)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (root / "site" / "index.html").exists() and (root / "site" / "commands" / "crsnn-train.html").exists()
    with (root / "docs" / "data.md").open("a") as f:
        f.write("\nSee [the results](results.md#no-such-heading) and [gone](gone.md).\n")
    done = _build(root)
    assert done.returncode != 0
    assert "no-such-heading" in done.stdout + done.stderr and "gone.md" in done.stdout + done.stderr
