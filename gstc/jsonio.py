"""Reading and writing result files as JSON and JSONL, safely against kills and torn writes.

- JSON files are replaced atomically (temporary file, fsync, rename, fsync of the
  folder: `gstc.atomic`, the one writer): a reader or a killed writer never sees half
  a file. NaN and infinities become null (JSON has no NaN; `allow_nan=False`
  guarantees the output is strict JSON).
- JSONL files grow by one fsynced line per record. A process killed mid-write can leave
  a torn last line; readers skip it, the next append drops it, and resume rewrites the
  file with `truncate_jsonl`.
- A file that exists but cannot be read raises `DamagedFile`, naming the file and why;
  `gstc run` and `gstc status` report such a run as damaged instead of failing.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from gstc.atomic import write_text


def jsonable(obj: Any) -> Any:
    """A copy of `obj` that strict JSON can hold: non-finite floats -> None, numpy -> Python.

    Tuples become lists; mapping keys must be strings (json would silently coerce others).
    """
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            if not isinstance(key, str):
                raise TypeError(f"JSON object keys must be strings, got {key!r} ({type(key).__name__})")
            out[key] = jsonable(value)
        return out
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    if isinstance(obj, float):  # numpy scalars arrive here as Python floats (above)
        return obj if math.isfinite(obj) else None
    return obj


def _dumps(obj: Any, indent: int | None) -> str:
    return json.dumps(jsonable(obj), indent=indent, sort_keys=False, allow_nan=False, ensure_ascii=False)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write `obj` as indented JSON, atomically (temp file + rename); NaN/inf -> null."""
    write_text(path, _dumps(obj, indent=2) + "\n")


class DamagedFile(ValueError):
    """A result file that exists but cannot be read: cut short, not JSON, not a gstc file."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path, self.reason = Path(path), reason
        super().__init__(f"{path}: {reason}")


def read_json(path: str | os.PathLike[str]) -> Any:
    """A JSON file's content; DamagedFile when it is not JSON (FileNotFoundError when missing)."""
    raw = Path(path).read_bytes()
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        what = "is empty" if not raw.strip() else f"is not valid JSON ({exc}; the file has {len(raw):,} bytes)"
        raise DamagedFile(path, what) from None


def _parse_line(raw: bytes) -> dict | None:
    """The record on one line, or None when it is not a complete JSON object."""
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _tail_start(fh: Any, end: int, chunk: int = 1 << 16) -> int:
    """Offset (bytes) just after the last newline before `end`, or 0 when there is none; reads `chunk` bytes a step."""
    pos = end
    while pos > 0:
        step = min(chunk, pos)
        pos -= step
        fh.seek(pos)
        i = fh.read(step).rfind(b"\n")
        if i >= 0:
            return pos + i + 1
    return 0


def append_jsonl(path: str | os.PathLike[str], obj: dict) -> None:
    """Append one record as one line, then flush and fsync (the runtime: one line per epoch).

    A torn last line left by a killed writer (no trailing newline, not valid JSON) is cut
    off first, so the new record starts on a line of its own; a complete last record
    that only lacks its newline gets one.
    """
    line = (_dumps(obj, indent=None) + "\n").encode("utf-8")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "a+b") as fh:
        end = fh.seek(0, os.SEEK_END)
        if end > 0:
            fh.seek(end - 1)
            if fh.read(1) != b"\n":
                start = _tail_start(fh, end)
                fh.seek(start)
                if _parse_line(fh.read(end - start)) is None:
                    fh.truncate(start)
                else:
                    line = b"\n" + line
        fh.write(line)  # "a" mode: always at the end of the file
        fh.flush()
        os.fsync(fh.fileno())


def read_jsonl(path: str | os.PathLike[str]) -> list[dict]:
    """The records of a JSONL file; [] when the file does not exist yet.

    A last line that is not a complete JSON object is a write torn by a killed process
    and is skipped; a bad line anywhere else is corruption and raises DamagedFile.
    """
    target = Path(path)
    try:
        raw = target.read_bytes()
    except FileNotFoundError:
        return []
    lines = raw.split(b"\n")
    records: list[dict] = []
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        record = _parse_line(text)
        if record is None:
            if all(not rest.strip() for rest in lines[number:]):
                break  # the torn last line
            raise DamagedFile(target, f"has a line ({number}) that is not a JSON object: {text[:80]!r}")
        records.append(record)
    return records


def truncate_jsonl(path: str | os.PathLike[str], keep: Callable[[dict], bool]) -> int:
    """Rewrite a JSONL file atomically with only the records for which `keep` is true.

    Used on resume to drop lines written after the checkpoint's epoch (and any torn
    line). Returns the number of records kept; a missing file stays missing (0).
    """
    target = Path(path)
    if not target.exists():
        return 0
    kept = [r for r in read_jsonl(target) if keep(r)]
    write_text(target, "".join(_dumps(r, indent=None) + "\n" for r in kept))
    return len(kept)
