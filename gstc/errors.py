"""The one error type of spec loading, validation and compilation.

Every problem found in a spec becomes a `SpecError` that names where it is (file, line,
column of the YAML node, 1-based like editors show them), the dotted path of the value,
and, when not every configuration has it (an override's error, or a base node some
variants leave incomplete), which configurations do. Errors are
collected, never raised one at a time, so a user sees all of a file's problems at once.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import asdict, dataclass, replace
from typing import Any, Iterable, Sequence


@dataclass(frozen=True)
class SpecError:
    """One problem in a spec file."""

    file: str
    line: int  # 1-based
    col: int  # 1-based
    path: str  # dotted path such as "prune.layers[2].amount"; "" for the whole file
    message: str  # what was expected and what was found
    # The configurations that have this error, when not every one of them does (an override's
    # error, or a base node that some variant or sweep point leaves incomplete).
    configs: tuple[str, ...] = ()
    # Set where the error comes from the command line rather than the file (`--set train.epochs=abc`): it is
    # reported at that option, since no line of the file holds the value.
    option: str = ""

    def where(self) -> str:
        """' (in configuration X)', ' (in configurations X and Y)', ...; '' for the whole spec."""
        names = self.configs
        if not names:
            return ""
        if len(names) == 1:
            return f" (in configuration {names[0]})"
        if len(names) <= 3:
            return f" (in configurations {', '.join(names[:-1])} and {names[-1]})"
        return f" (in {len(names)} configurations: {', '.join(names[:3])}, ...)"

    def format(self) -> str:
        where = self.option or f"{self.file}:{self.line}:{self.col}"
        what = (f"{self.path}: {self.message}" if self.path else self.message) + self.where()
        return f"{where}: error: {printable(what)}"

    def github(self) -> str:
        # GitHub workflow command; message must stay on one line.
        msg = (f"{self.path}: " if self.path else "") + self.message + self.where()
        msg = printable(msg).replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
        return f"::error file={self.file},line={self.line},col={self.col}::{msg}"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["configs"] = list(self.configs)
        if not self.option:
            del out["option"]
        return out


class SpecErrors(Exception):
    """Raised with every error of a spec once collection is finished."""

    def __init__(self, errors: Sequence[SpecError]):
        self.errors = list(errors)
        super().__init__("\n".join(e.format() for e in self.errors))


class Collected:
    """Errors of the whole spec, each once. A configuration's error is kept with the configurations
    that had it, so that one in every configuration of the base is reported once, as the base's."""

    def __init__(self) -> None:
        self.errors: dict[tuple, SpecError] = {}
        self.configs: dict[tuple, dict[str, None]] = {}  # error -> the configurations that had it, in order

    def add(self, errs: list[SpecError], config: str | None = None) -> None:
        for e in errs:
            key = (e.file, e.line, e.col, e.path, e.message)
            self.errors.setdefault(key, e)
            if config is not None:
                self.configs.setdefault(key, {})[config] = None

    def __bool__(self) -> bool:
        return bool(self.errors)

    def result(self, all_configs: dict[str, None], override_marks: set[tuple[int, int]]) -> list[SpecError]:
        """Every error once, in file order, with the configurations that had it; none where every configuration of
        `all_configs` had it at a node no override wrote (`override_marks`: the overrides' positions)."""
        out = []
        for key, e in self.errors.items():
            names = self.configs.get(key, {})
            if names and (e.line, e.col) not in override_marks and all_configs.keys() <= names.keys():
                names = {}  # the base's error: every configuration has it
            out.append(replace(e, configs=tuple(names)))
        return sorted(out, key=lambda e: (e.line, e.col))


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean "x"?)' when a close match exists, else ''."""
    matches = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f' (did you mean "{matches[0]}"?)' if matches else ""


def show(value: Any, limit: int = 60) -> str:
    """A short, YAML-flavoured rendering of a found value for messages."""
    if value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = quote(value)
    elif isinstance(value, dict):
        text = "a mapping" if value else "an empty mapping"
    elif isinstance(value, list):
        text = "a list" if value else "an empty list"
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def printable(text: str) -> str:
    """`text` with control and invisible characters escaped (\u001b), the rest as it is."""
    return "".join(c if c.isprintable() else json.dumps(c)[1:-1] for c in text)


def quote(text: str) -> str:
    """A double-quoted string as written, with control and invisible characters escaped
    (a message printed to a terminal must not carry escape sequences from the spec)."""
    return '"' + "".join(c if c.isprintable() and c not in '"\\' else json.dumps(c)[1:-1] for c in text) + '"'


def dotted(path: Sequence[Any]) -> str:
    """('prune', 'layers', 2, 'amount') -> 'prune.layers[2].amount'."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif "." in str(part) or "[" in str(part) or not str(part).isprintable() or '"' in str(part):
            out += f"[{quote(str(part))}]"  # a key that is itself a dotted path (variants, sweep), or odd
        else:
            out += ("." if out else "") + str(part)
    return out
