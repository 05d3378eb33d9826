"""What every command shares: the typer app, rich output in gstc's style, and errors of the command line (a
spec's errors with file, line and column; an option's with its name), always exit status 1, never a traceback."""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path
from typing import Any, List, Optional

import typer

from gstc.errors import SpecError, SpecErrors

app = typer.Typer(
    name="gstc",
    help="Compile YAML pruning-experiment specs into exact plans, run them, and compare results.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class Format(str, Enum):
    text = "text"
    json = "json"
    github = "github"


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _table(title: str):
    """A rich table in gstc's compact style (a rule under the header, no frame, one space between columns), so
    that the tables of `gstc plan`, `status` and `layers` keep their cells whole in an 80-column terminal."""
    from rich import box
    from rich.table import Table

    return Table(title=title, title_justify="left", title_style="bold", box=box.SIMPLE_HEAD, show_edge=False,
                 pad_edge=False, collapse_padding=True, padding=(0, 1, 0, 0))


def _print_tables(console, tables: list, empty: str | None = None) -> None:
    """Print (title, header, rows, caption) tables with rich, one line per row where the terminal allows."""
    from rich.markup import escape

    for title, header, rows, caption in tables:
        t = _table(title)
        for h in header:
            t.add_column(h, overflow="fold")
        for row in rows:
            t.add_row(*(escape(c) for c in row))
        if not rows and empty:
            t.add_row(empty, *[""] * (len(header) - 1))
        console.print(t)
        if caption:  # words wrapped at the terminal's width, not cut
            console.print(caption, markup=False, soft_wrap=False, style="dim")
        console.print()


def _wide(console) -> bool:
    from gstc.render import WIDE

    return console.width >= WIDE


class Correction(str, Enum):
    holm = "holm"
    bh = "bh"
    none = "none"


def _metrics(names: Optional[List[str]], also: Optional[str] = None) -> tuple[str, ...]:
    """The metrics to test: --metric values (default: the outcomes), plus --fail-if-worse's."""
    from gstc.summary import OUTCOMES, SUMMARY_FIELDS

    chosen = list(names or OUTCOMES)
    for name in chosen:
        if name not in SUMMARY_FIELDS:
            _option_fail("--metric", f"unknown metric {name!r}: choose from {', '.join(SUMMARY_FIELDS)}")
    if also and also not in chosen:
        chosen.append(also)
    return tuple(chosen)


def _fail(errors: list[SpecError]) -> None:
    err = _console(stderr=True)
    for e in errors:
        err.print(e.format(), markup=False)
    raise typer.Exit(1)


def _option_fail(option: str, message: str) -> None:
    """Bad input on the command line: `error: --OPTION: what was expected, found what`, exit status 1."""
    text = message if not option or message.startswith((option + " ", option + ":")) else f"{option}: {message}"
    _console(stderr=True).print(f"error: {text}", markup=False)
    raise typer.Exit(1)


DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")  # what --device accepts, checked before torch is imported


def _parse_sets(sets: Optional[List[str]]) -> list[tuple[str, Any]]:
    from gstc.load import parse_scalar

    out = []
    for item in sets or []:
        path, sep, text = item.partition("=")
        if not sep or not path:
            _option_fail("--set", f"expected PATH=VALUE, found {item!r}")
        try:
            out.append((path.strip(), parse_scalar(text) if text.strip() else ""))
        except SpecErrors as exc:
            _option_fail(f"--set {item}", f"cannot parse value {text!r}: {exc.errors[0].message}")
    return out


def _compile(spec: Path, sets: Optional[List[str]] = None):
    from gstc.compile import compile_file

    try:
        return compile_file(str(spec), _parse_sets(sets))
    except SpecErrors as exc:
        _fail(exc.errors)



def _pack_size(text: str):
    from gstc.packs import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        _option_fail("--pack", str(exc))


def _need_torch(what: str) -> None:
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        _option_fail("", f"{what} builds the model, which needs PyTorch: "
                         "pip install torch torchvision")
