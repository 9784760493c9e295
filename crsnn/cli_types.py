"""Argument types, the help formatter and small parsing helpers shared by every crsnn command.

Every numeric option is checked by argparse with its range, so a bad value is one line and exit
status 2 before any work starts::

    p = CommandParser(prog="crsnn-train")
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--dropout", type=float_range(0, 1, hi_open=True), default=0.4)
    p.add_argument("-n", type=count_or_all, default=None)

Types are small callables with a readable ``__name__`` (argparse shows it in "invalid ... value"
messages) and a message that states the allowed range.
"""

from __future__ import annotations

import argparse
import math
from typing import Callable, Sequence


def _range_text(lo: float | None, hi: float | None, lo_open: bool = False, hi_open: bool = False) -> str:
    if lo is not None and hi is not None:
        return f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {lo:g}"
    if hi is not None:
        return f"{'<' if hi_open else '<='} {hi:g}"
    return "a number"


def int_range(lo: int | None = None, hi: int | None = None, what: str = "an integer") -> Callable[[str], int]:
    """An integer in ``[lo, hi]`` (either bound may be None)."""

    def parse(text: str) -> int:
        try:
            v = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"expected {what} {_range_text(lo, hi)}, got {text}")
        return v

    parse.__name__ = f"int {_range_text(lo, hi)}"
    return parse


def float_range(lo: float | None = None, hi: float | None = None, lo_open: bool = False, hi_open: bool = False,
                finite: bool = True) -> Callable[[str], float]:
    """A float in the given interval (open ends with ``lo_open`` / ``hi_open``); NaN is always
    refused, infinities unless ``finite=False``."""

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if math.isnan(v) or (finite and math.isinf(v)):
            raise argparse.ArgumentTypeError(f"expected a finite number {_range_text(lo, hi, lo_open, hi_open)}, "
                                             f"got {text}")
        below = lo is not None and (v < lo or (lo_open and v == lo))
        above = hi is not None and (v > hi or (hi_open and v == hi))
        if below or above:
            raise argparse.ArgumentTypeError(f"expected a number {_range_text(lo, hi, lo_open, hi_open)}, got {text}")
        return v

    parse.__name__ = f"number {_range_text(lo, hi, lo_open, hi_open)}"
    return parse


positive_int = int_range(1)
non_negative_int = int_range(0)
positive_float = float_range(0, None, lo_open=True)
non_negative_float = float_range(0)
probability = float_range(0, 1)
fraction_below_one = float_range(0, 1, hi_open=True)
seed = int_range(0, 2**32 - 1, "a seed")


def odd_int(lo: int = 1, hi: int | None = None, why: str = "") -> Callable[[str], int]:
    """An odd integer in ``[lo, hi]``; ``why`` is appended to the message for an even one."""
    base = int_range(lo, hi)

    def parse(text: str) -> int:
        v = base(text)
        if v % 2 == 0:
            raise argparse.ArgumentTypeError(f"expected an odd number, got {v}{': ' + why if why else ''}")
        return v

    parse.__name__ = "odd int"
    return parse


def count_or_all(text: str) -> int | None:
    """A positive number of samples, or ``all`` (None)."""
    if text == "all":
        return None
    try:
        n = int(text, 10)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number of samples or 'all', got {text}")
    return n


count_or_all.__name__ = "count"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds ``(default: X)`` where it says something: not for flags (``store_true`` /
    ``store_false``: "default: True" on a ``--no-*`` flag is misleading), not for None, and not
    where the help text already states it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._StoreConstAction,
                                argparse._HelpAction, argparse._VersionAction))
                or action.default is None or action.default is argparse.SUPPRESS or "default" in text
                or not action.option_strings):
            return text
        return super()._get_help_string(action)


class CommandParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` for crsnn commands: :class:`HelpFormatter` by default, and a
    usage error is ONE line (``PROG: error: MESSAGE (see PROG --help)``, exit status 2) instead of
    the whole usage text followed by the message."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # noqa: D102 - argparse API
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def explicit_options(parser: argparse.ArgumentParser, argv: Sequence[str]) -> set[str]:
    """The ``dest`` names of the options ``argv`` sets explicitly (defaults do not count;
    abbreviations do). ``argv`` must already parse."""
    marker = object()
    ns = argparse.Namespace(**{a.dest: marker for a in parser._actions if a.dest != argparse.SUPPRESS})
    try:
        parser.parse_known_args(list(argv), ns)
    except SystemExit:  # pragma: no cover - the caller parsed argv already
        return set()
    return {k for k, v in vars(ns).items() if v is not marker}


def undocumented_options(parser: argparse.ArgumentParser) -> list[str]:
    """Options of ``parser`` (and its sub-commands) without a help text (a test helper)."""
    out: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += [f"{name} {o}" for o in undocumented_options(sub)]
        elif not isinstance(action, argparse._HelpAction) and not (action.help or "").strip():
            out.append(action.option_strings[0] if action.option_strings else action.dest)
    return out
