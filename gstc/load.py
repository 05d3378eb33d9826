"""Safe YAML loading that remembers where every value came from.

PyYAML composes the file into nodes (which carry line/column marks); we build plain
Python values from those nodes ourselves, so that:

- only plain data is ever constructed: any tag that is not one of YAML's standard
  scalar/sequence/mapping tags (`!!python/object`, `!custom`, ...) is an error;
- scalars resolve by the YAML 1.2 core schema, not YAML 1.1: `no`, `on`, `off`, `yes`,
  `y` stay strings, `1e-4` is a float, `0755` is the integer 755, `1:30` is a string;
- duplicate keys are errors (YAML forbids them; PyYAML silently keeps the last);
- size, nesting depth and alias expansion are bounded (no "billion laughs");
- every value's dotted path maps to its (line, column), for error messages.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import BaseResolver
from yaml.scanner import Scanner

from gstc.errors import SpecError, SpecErrors, dotted, show

MAX_BYTES = 1 << 20  # 1 MiB: a spec is twenty lines; anything near this is a mistake
MAX_DEPTH = 32  # nesting levels of mappings/lists
MAX_NODES = 100_000  # values built, counting every alias expansion
PLAIN_KEYS = "mapping keys must be plain strings"  # the JSON Schema says it too (gstc.schema)

Path = tuple[Any, ...]

_TAG = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL = (_TAG + t for t in ("str", "int", "float", "bool", "null"))
_SEQ, _MAP, _MERGE = _TAG + "seq", _TAG + "map", _TAG + "merge"


class _Core12Resolver(BaseResolver):
    """Implicit scalar types of the YAML 1.2 core schema (plus `<<` merge keys)."""


for _tag, _regex, _first in [
    (_BOOL, r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    (_NULL, r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    (_INT, r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    (
        _FLOAT,
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+0123456789.",
    ),
    (_MERGE, r"^<<$", "<"),
]:
    _Core12Resolver.add_implicit_resolver(_tag, re.compile(_regex), list(_first))


class _Loader(Reader, Scanner, Parser, Composer, _Core12Resolver):
    def __init__(self, stream: str):
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        Composer.__init__(self)
        _Core12Resolver.__init__(self)
        self.depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        # PyYAML composes recursively: stop at the depth limit (with the place) rather than
        # at Python's recursion limit (`[[[[...` five thousand times).
        step = 0 if isinstance(parent, MappingNode) and index is None else 1  # a key: its value's level
        self.depth += step
        try:
            if self.depth > MAX_DEPTH + 1:  # the root is depth 0 for _Builder, 1 here
                raise _TooBig(self.peek_event(), f"values are nested more than {MAX_DEPTH} levels deep")
            return Composer.compose_node(self, parent, index)
        finally:
            self.depth -= step


def _scalar(tag: str, text: str) -> Any:
    """Convert a scalar's text by its (resolved or explicit) standard tag."""
    if tag == _STR:
        return text
    if tag == _NULL:
        return None
    if tag == _BOOL:
        return text.lower() == "true"
    if tag == _INT:
        if text.startswith("0o"):
            return int(text[2:], 8)
        if text.startswith("0x"):
            return int(text[2:], 16)
        return int(text)
    if tag == _FLOAT:
        low = text.lower()
        if low.endswith(".inf"):
            return -math.inf if low.startswith("-") else math.inf
        if low == ".nan":
            return math.nan
        return float(text)
    raise ValueError(tag)


@dataclass
class Document:
    """A loaded YAML file: its data and where each value and key stands in it."""

    file: str
    data: Any
    positions: dict[Path, tuple[int, int]] = field(default_factory=dict)  # value marks
    key_positions: dict[Path, tuple[int, int]] = field(default_factory=dict)  # key marks

    def where(self, path: Path, key: bool = False) -> tuple[int, int]:
        """(line, col) of the value at `path`, or of its nearest existing ancestor."""
        path = tuple(path)
        if key and path in self.key_positions:
            return self.key_positions[path]
        while path:
            if path in self.positions:
                return self.positions[path]
            path = path[:-1]
        return self.positions.get((), (1, 1))

    def error(self, path: Path, message: str, key: bool = False) -> SpecError:
        line, col = self.where(path, key=key)
        return SpecError(self.file, line, col, dotted(path), message)


class _Builder:
    def __init__(self, doc: Document):
        self.doc = doc
        self.errors: list[SpecError] = []
        self.count = 0
        self.seen: set[int] = set()  # nodes built once; meeting one again is an alias expansion
        self.fresh: list[Node] = []  # nodes being built for the first time (their text is where they are)

    def fail(self, node: Node, path: Path, message: str) -> None:
        m = node.start_mark
        self.errors.append(SpecError(self.doc.file, m.line + 1, m.column + 1, dotted(path), message))

    def build(self, node: Node, path: Path, depth: int) -> Any:
        if id(node) in self.seen:
            return self._build(node, path, depth)
        self.seen.add(id(node))
        self.fresh.append(node)
        try:
            return self._build(node, path, depth)
        finally:
            self.fresh.pop()

    def _build(self, node: Node, path: Path, depth: int) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            # Blame the innermost node written out in the text, not the anchored node that an
            # alias repeats (which stands earlier in the file, where nothing is wrong yet).
            raise _TooBig(self.fresh[-1] if self.fresh else node, f"the document expands to more than "
                          f"{MAX_NODES:,} values (are aliases expanding exponentially?)")
        if depth > MAX_DEPTH:
            raise _TooBig(node, f"values are nested more than {MAX_DEPTH} levels deep")
        self.doc.positions[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, ScalarNode):
            if node.tag not in (_STR, _INT, _FLOAT, _BOOL, _NULL):
                self.fail(node, path, _tag_message(node.tag, "a value"))
                return None
            try:
                return _scalar(node.tag, node.value)
            except ValueError:
                self.fail(node, path, f"{node.value!r} is not a valid {node.tag.rsplit(':', 1)[-1]}")
                return None
        if isinstance(node, SequenceNode):
            if node.tag != _SEQ:
                self.fail(node, path, _tag_message(node.tag, "a list"))
                return None
            return [self.build(item, path + (i,), depth + 1) for i, item in enumerate(node.value)]
        assert isinstance(node, MappingNode)
        if node.tag != _MAP:
            self.fail(node, path, _tag_message(node.tag, "a mapping"))
            return None
        out: dict[str, Any] = {}
        merges: list[Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                merges.extend(value_node.value if isinstance(value_node, SequenceNode) else [value_node])
                continue
            if not isinstance(key_node, ScalarNode) or key_node.tag not in (_STR, _INT, _FLOAT, _BOOL, _NULL):
                self.fail(key_node, path, PLAIN_KEYS)
                continue
            key = key_node.value  # keys are names: always their text (so `1:` or `no:` stay "1", "no")
            if key in out:
                first = self.doc.key_positions[path + (key,)]
                self.fail(key_node, path + (key,), f"duplicate key {key!r} (first defined at line {first[0]})")
                continue
            self.doc.key_positions[path + (key,)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            out[key] = self.build(value_node, path + (key,), depth + 1)
        if merges:  # `<<: *defaults`: explicit keys (and their positions) win over merged ones
            explicit = dict(self.doc.positions)
            for merged in merges:
                if not isinstance(merged, MappingNode):
                    self.fail(merged, path, "a merge key (<<) must refer to a mapping")
                    continue
                for key, item in (self.build(merged, path, depth) or {}).items():
                    out.setdefault(key, item)
            self.doc.positions.update(explicit)
        return out


def _tag_message(tag: str, what: str) -> str:
    shown = "!!" + tag[len(_TAG):] if tag.startswith(_TAG) else tag  # as written: !!python/object
    return (f"YAML tag {shown!r} is not allowed on {what}: a spec holds plain data only "
            "(strings, numbers, booleans, null, lists, mappings)")


class _TooBig(Exception):
    def __init__(self, node: Any, message: str):  # a Node or an Event: anything with a start_mark
        self.node, self.message = node, message


def load_text(text: str, file: str = "<string>") -> Document:
    """Parse YAML text into a Document; raise SpecErrors listing every problem."""
    doc = Document(file=file, data=None)
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise SpecErrors([SpecError(file, 1, 1, "", f"the file is larger than the {MAX_BYTES // 1024} KiB limit for a spec")])
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        lines = text.splitlines()
        if "flow" in problem and 0 < line <= len(lines) and "[" in lines[line - 1]:
            problem += " (inside {...} or [...], quote keys and values that contain [ ] { } or commas)"
        elif exc.problem == "mapping values are not allowed here":
            problem += " (check this line's indentation, and quote values that contain ': ')"
        cm = exc.context_mark
        if exc.context and exc.problem and cm is not None and mark is not cm and cm.line != mark.line:
            # "while parsing a flow mapping" began elsewhere (an unclosed bracket or quote): say where
            what = re.sub(r"^while (parsing|scanning) (an? )?", "", exc.context)
            problem = problem.replace(exc.context + " ", "", 1) + f" (in the {what} that starts at line {cm.line + 1}, column {cm.column + 1})"
        raise SpecErrors([SpecError(file, line, col, "", f"invalid YAML: {problem}")]) from None
    except yaml.reader.ReaderError as exc:  # a control character, NUL, ...
        pos = exc.position if isinstance(exc.position, int) and 0 <= exc.position <= len(text) else 0
        line, col = text.count("\n", 0, pos) + 1, pos - text.rfind("\n", 0, pos)
        char = f"#x{exc.character:04x}" if isinstance(exc.character, int) else repr(exc.character)
        raise SpecErrors([SpecError(file, line, col, "", f"invalid YAML: unacceptable character {char}: {exc.reason}")]) from None
    except yaml.YAMLError as exc:
        raise SpecErrors([SpecError(file, 1, 1, "", f"invalid YAML: {' '.join(str(exc).split())}")]) from None
    except _TooBig as exc:
        m = exc.node.start_mark
        raise SpecErrors([SpecError(file, m.line + 1, m.column + 1, "", exc.message)]) from None
    except RecursionError:
        raise SpecErrors([SpecError(file, 1, 1, "", f"values are nested more than {MAX_DEPTH} levels deep")]) from None
    if node is None:
        raise SpecErrors([SpecError(file, 1, 1, "", "the file is empty; a spec is a mapping that starts with `gstc: 1`")])
    builder = _Builder(doc)
    try:
        doc.data = builder.build(node, (), 0)
    except _TooBig as exc:
        m = exc.node.start_mark
        raise SpecErrors([SpecError(file, m.line + 1, m.column + 1, "", exc.message)]) from None
    if builder.errors:
        raise SpecErrors(builder.errors)
    return doc


def load_file(path: str | os.PathLike[str]) -> Document:
    """Read and parse a spec file; unreadable, oversized and non-UTF-8 files are SpecErrors."""
    name = os.fspath(path)
    try:
        size = os.path.getsize(name)
        if size > MAX_BYTES:
            raise SpecErrors([SpecError(name, 1, 1, "", f"the file is {size:,} bytes, over the {MAX_BYTES // 1024} KiB limit for a spec")])
        with open(name, "rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise SpecErrors([SpecError(name, 1, 1, "", f"cannot read the file: {exc.strerror or exc}")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SpecErrors([SpecError(name, line, 1, "", f"the file is not UTF-8 text (byte {exc.start})")]) from None
    return load_text(text, name)


def parse_scalar(text: str) -> Any:
    """Parse a command-line value (`--set train.epochs=3`) like a YAML flow value."""
    if not text.strip():
        return None  # as in YAML, an empty value is null
    return load_text(text, "<command line>").data


__all__ = ["Document", "load_file", "load_text", "parse_scalar", "show", "MAX_BYTES", "MAX_DEPTH", "MAX_NODES"]
