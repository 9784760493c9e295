"""The documentation's command options, from the commands' own argparse parsers.

    python scripts/docs_options.py pages docs/commands   # write one page per command (every option)
    python scripts/docs_options.py check                 # every --option the docs name must exist

``pages`` writes ``crsnn-*.md`` and ``index.md`` from the parsers, so the option reference cannot
drift from the code. ``check`` reads README.md and every hand-written page under docs/ and finds
each ``--option`` next to a crsnn command: in a code line, the command the line runs; in prose, the
last command named earlier in the same paragraph, list item or table row, else the page's own
command (an HTML comment ``<!-- options: crsnn-train -->`` on the page), else any crsnn command.
Options after another program (``bench/*.py``, ``pip``, ``torchrun`` before ``-m crsnn.train``, ...)
are not checked. It also checks that README.md's relative links point at files that exist.
Exit status 1 and one line per problem when something is wrong.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GENERATED = "commands"
"""The folder under docs/ that ``pages`` writes (not checked: it is the parsers themselves)."""

COMMANDS: dict[str, tuple[str, str, str]] = {
    # command: (module, parser function, the page that explains it)
    "crsnn-data": ("crsnn.train.data.cli", "build_parser", "data.md"),
    "crsnn-train": ("crsnn.train.cli", "build_parser", "training.md"),
    "crsnn-export": ("crsnn.export.cli", "build_parser", "export.md"),
    "crsnn-import": ("crsnn.export.import_cli", "build_parser", "bring-your-own.md"),
    "crsnn-run": ("crsnn.deploy.cli", "run_parser", "deploy.md"),
    "crsnn-verify": ("crsnn.deploy.cli", "verify_parser", "deploy.md"),
    "crsnn-report": ("crsnn.deploy.cli", "report_parser", "deploy.md"),
    "crsnn-demo": ("crsnn.demo", "build_parser", "getting-started.md"),
}
"""Every command of the docs; ``crsnn-demo`` is ``python -m crsnn.demo`` (``make demo``)."""


def parser_of(command: str) -> argparse.ArgumentParser:
    module, func, _ = COMMANDS[command]
    return getattr(importlib.import_module(module), func)()


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def long_options(parser: argparse.ArgumentParser) -> set[str]:
    """Every ``--option`` of ``parser`` and of its sub-commands."""
    out = {s for a in parser._actions for s in a.option_strings if s.startswith("--")}
    for sub in subparsers(parser).values():
        out |= long_options(sub)
    return out


# ------------------------------------------------------------------------------------- pages
def _cell(text: str) -> str:
    text = " ".join(text.split())
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")


def _invocation(action: argparse.Action, formatter: argparse.HelpFormatter) -> str:
    if not action.option_strings:
        return formatter._metavar_formatter(action, action.dest)(1)[0]
    if action.nargs == 0:
        return ", ".join(action.option_strings)
    args = formatter._format_args(action, formatter._get_default_metavar_for_optional(action))
    return ", ".join(f"{s} {args}" for s in action.option_strings)


def _options_table(parser: argparse.ArgumentParser) -> list[str]:
    formatter = parser._get_formatter()
    out = []
    for group in parser._action_groups:
        rows = [a for a in group._group_actions if a.help != argparse.SUPPRESS
                and not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))]
        if not rows:
            continue
        out += ["", f"**{group.title}**", "", "| option | what it does |", "|---|---|"]
        for a in rows:
            help_text = formatter._expand_help(a) if a.help else ""
            if a.choices is not None and not isinstance(a.choices, dict) and "{" not in _invocation(a, formatter):
                help_text += f" (one of: {', '.join(map(str, a.choices))})"
            out.append(f"| `{_cell(_invocation(a, formatter)).replace('`', '')}` | {_cell(help_text)} |")
    return out


def _usage(parser: argparse.ArgumentParser) -> list[str]:
    usage = parser.format_usage().strip()
    return ["```text", usage.removeprefix("usage: "), "```"]


def _description(parser: argparse.ArgumentParser) -> str:
    """The parser's description without its leading ``name``: and with Sphinx roles as plain code."""
    text = re.sub(r"^``[^`]+``:\s*", "", (parser.description or "").strip())
    return re.sub(r":\w+:`", "`", text)


def page(command: str) -> str:
    parser = parser_of(command)
    module, _, guide = COMMANDS[command]
    title = "python -m crsnn.demo" if command == "crsnn-demo" else command
    lines = [f"# {title}", "", "<!-- written by scripts/docs_options.py from the command's parser: do not edit -->",
             "", _cell(_description(parser)), "", *_usage(parser),
             "", f"How to use it: [{guide.removesuffix('.md').replace('-', ' ')}](../{guide}). "
             f"Every option below is read from the parser (`{module}`)."]
    subs = subparsers(parser)
    lines += _options_table(parser)
    for name, sub in subs.items():
        lines += ["", f"## {title} {name}", "", _cell(_description(sub)), "", *_usage(sub)]
        lines += _options_table(sub)
    return "\n".join(lines) + "\n"


def write_pages(folder: Path) -> list[Path]:
    """Write one page per command and an index into ``folder``; usage lines are wrapped at 100
    columns whatever the terminal (``COLUMNS`` is restored afterwards)."""
    import os

    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"
    try:
        return _write_pages(folder)
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old


def _write_pages(folder: Path) -> list[Path]:
    from crsnn.atomic_write import write_bytes_atomic

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    index = ["# Commands", "", "<!-- written by scripts/docs_options.py: do not edit -->", "",
             "Every option of every command, read from the commands' own parsers "
             "(`crsnn-COMMAND --help` prints the same).", "", "| command | what it does |", "|---|---|"]
    for command in COMMANDS:
        path = folder / f"{command}.md"
        write_bytes_atomic(path, page(command).encode())
        written.append(path)
        desc = _description(parser_of(command)).split("\n\n")[0]
        index.append(f"| [{'python -m crsnn.demo' if command == 'crsnn-demo' else command}]({command}.md) "
                     f"| {_cell(desc)} |")
    write_bytes_atomic(folder / "index.md", ("\n".join(index) + "\n").encode())
    return [*written, folder / "index.md"]


# ------------------------------------------------------------------------------------- check
_TOOL = re.compile(
    r"(?P<crsnn>crsnn-(?:data|train|export|import|run|verify|report)\b(?!\.))(?P<sub>\s+`?(?:synth|encode|split|show|baseline)\b)?"
    r"|(?P<demo>crsnn\.demo\b|make demo\b)"
    r"|(?P<trainmod>-m crsnn\.train(?![.\w]))"
    r"|(?P<other>bench/[\w/]+\.py|results_table\.py|crsnn\.sim\.check_lava|crsnn\.sim\.native|crsnn\.train\.speed"
    r"|torchrun|\bpip\b|mkdocs|pytest|scripts/[\w.]+|\bmake\b|docs_options\.py)")
_OPTION = re.compile(r"(?<![\w-])--[A-Za-z][\w-]*")
_PAGE_COMMAND = re.compile(r"^<!--\s*options:\s*([\w-]+)\s*-->\s*$", re.M)


@dataclass
class Problem:
    path: Path
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.path.relative_to(REPO) if self.path.is_relative_to(REPO) else self.path}:{self.line}: {self.text}"


def _chunks(text: str) -> list[tuple[int, str]]:
    """(first line number, text) of every unit that carries its own command context: a logical
    line of a code block (joined over trailing backslashes), or a prose paragraph, list item,
    heading or table row."""
    out: list[tuple[int, str]] = []
    cur: list[str] = []
    start = 0
    fence = False

    def flush() -> None:
        nonlocal cur
        if cur:
            out.append((start, "\n".join(cur)))
        cur = []

    lines = text.splitlines()
    for i, line in enumerate(lines, 1):
        s = line.strip()
        if s.startswith("```"):
            flush()
            fence = not fence
            continue
        if fence:
            if not cur:
                start = i
            cur.append(line)
            if not s.endswith("\\"):
                flush()
            continue
        if not s:
            flush()
            continue
        if s.startswith(("- ", "* ", "|", "#")) or re.match(r"\d+\.\s", s):
            flush()
        if not cur:
            start = i
        cur.append(line)
        if s.startswith(("|", "#")):
            flush()
    flush()
    return out


def check_text(text: str, path: Path, options: dict[str, set[str]]) -> list[Problem]:
    """Problems of one page: ``options`` maps each command (``crsnn-data encode`` for a
    sub-command) to its long options."""
    problems = []
    m = _PAGE_COMMAND.search(text)
    page_default = m.group(1) if m else None
    if page_default and page_default not in options:
        problems.append(Problem(path, 1, f"page command {page_default} is not a crsnn command"))
        page_default = None
    everything = set().union(*options.values())
    for first, chunk in _chunks(text):
        context: str | None = page_default
        events = sorted([(t.start(), "tool", t) for t in _TOOL.finditer(chunk)]
                        + [(o.start(), "opt", o) for o in _OPTION.finditer(chunk)], key=lambda e: e[0])
        for pos, kind, match in events:
            if kind == "tool":
                if match.group("crsnn"):
                    sub = (match.group("sub") or "").strip(" `\t\n")
                    context = f"{match.group('crsnn')} {sub}".strip()
                elif match.group("demo"):
                    context = "crsnn-demo"
                elif match.group("trainmod"):
                    context = "crsnn-train"
                else:
                    context = "other"
                continue
            opt = match.group(0)
            if context == "other":
                continue
            allowed = options.get(context, everything) if context else everything
            if opt not in allowed:
                where = context or "any crsnn command"
                line = first + chunk.count("\n", 0, pos)
                problems.append(Problem(path, line, f"{opt} is not an option of {where}"))
    return problems


def _options_by_command() -> dict[str, set[str]]:
    out = {}
    for command in COMMANDS:
        parser = parser_of(command)
        out[command] = long_options(parser)
        for name, sub in subparsers(parser).items():
            out[f"{command} {name}"] = {s for a in parser._actions for s in a.option_strings
                                        if s.startswith("--")} | long_options(sub)
    return out


def doc_files(docs: Path) -> list[Path]:
    return sorted(p for p in docs.rglob("*.md") if GENERATED not in p.relative_to(docs).parts[:1])


def readme_links(readme: Path) -> list[Problem]:
    """Relative links and images of README.md that point at no file."""
    problems = []
    for i, line in enumerate(readme.read_text().splitlines(), 1):
        for target in re.findall(r"\]\(([^)\s]+)\)", line):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            if not (readme.parent / target.split("#", 1)[0]).exists():
                problems.append(Problem(readme, i, f"link to {target}: no such file"))
    return problems


def check(files: list[Path]) -> list[Problem]:
    options = _options_by_command()
    problems = []
    for f in files:
        problems += check_text(f.read_text(), f, options)
        if f.name == "README.md":
            problems += readme_links(f)
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    p = sub.add_parser("pages", help="write docs/commands/*.md from the parsers")
    p.add_argument("folder", type=Path, nargs="?", default=REPO / "docs" / GENERATED, help="where to write them")
    c = sub.add_parser("check", help="check the options the docs name against the parsers")
    c.add_argument("files", type=Path, nargs="*", help="Markdown files (default: README.md and docs/**/*.md)")
    args = ap.parse_args(argv)
    if args.what == "pages":
        for path in write_pages(args.folder):
            print(f"wrote {path}")
        return 0
    files = args.files or [REPO / "README.md", *doc_files(REPO / "docs")]
    problems = check(files)
    for p in problems:
        print(p, file=sys.stderr)
    print(f"options checked in {len(files)} files: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
