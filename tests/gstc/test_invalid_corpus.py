"""Invalid specs through the real CLI: exit 1, every expected error at its line, no traceback.

Each file of tests/gstc/invalid/ starts with `# expect: LINE: SUBSTRING` lines: for each,
some reported error must stand at LINE (1-based) and contain SUBSTRING in its message
(with its "(in configuration ...)" suffix). A few cases cannot be committed as text files
(empty, not UTF-8, over the size limit, deeply nested, a NUL byte); they are written at
test time.

To stay fast, the whole corpus goes through two `gstc validate` subprocesses (text and
JSON output), and a handful of files also run alone.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gstc.errors import SpecError
from gstc.load import MAX_BYTES, MAX_DEPTH
from tests.conftest import REPO

CORPUS = Path(__file__).parent / "invalid"
EXPECT = re.compile(r"^# expect: (\d+): (.+?)\s*$", re.M)

# name -> (content, expectations); written into a temporary folder by `generated`.
_deep_block = "gstc: 1\n" + "".join("  " * i + f"k{i}:\n" for i in range(MAX_DEPTH + 8)).rstrip("\n") + " 1\n"
GENERATED: dict[str, tuple[bytes, list[tuple[int, str]]]] = {
    "empty.yaml": (b"", [(1, "the file is empty")]),
    "whitespace-only.yaml": (b"  \n\n   \n", [(1, "the file is empty")]),
    "not-utf8.yaml": (b"gstc: 1\nname: caf\xe9\nmodel: vgg11_bn\n", [(2, "the file is not UTF-8 text")]),
    "latin1-in-comment.yaml": (b"gstc: 1\n# r\xe9sum\xe9\n", [(2, "the file is not UTF-8 text")]),
    "nul-byte.yaml": (b"gstc: 1\nname: a\x00b\n", [(2, "unacceptable character #x0000")]),
    "huge.yaml": (b"gstc: 1\ndescription: " + b"x" * MAX_BYTES + b"\n", [(1, "over the 1024 KiB limit")]),
    # the value of k32 is the 33rd level below the root; it starts on line 35 (k33's line)
    "deep-block.yaml": (_deep_block.encode(), [(35, f"nested more than {MAX_DEPTH} levels deep")]),
    # thousands of unclosed brackets: stopped at the limit, not at Python's recursion limit
    "deep-flow.yaml": (b"gstc: 1\nname: " + b"[" * 5000 + b"\n", [(2, f"nested more than {MAX_DEPTH} levels deep")]),
}


def expectations(path: Path) -> list[tuple[int, str]]:
    if path.name in GENERATED:
        return GENERATED[path.name][1]
    return [(int(line), text) for line, text in EXPECT.findall(path.read_text(encoding="utf-8"))]


CORPUS_FILES = sorted(CORPUS.glob("*.yaml"))
NAMES = [p.name for p in CORPUS_FILES] + list(GENERATED)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("generated")
    out = {p.name: p for p in CORPUS_FILES}
    for name, (content, _) in GENERATED.items():
        (folder / name).write_bytes(content)
        out[name] = folder / name
    return out


def gstc(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "gstc", *args], capture_output=True, text=True, cwd=REPO,
                          encoding="utf-8", errors="replace", timeout=300)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    assert "internal error" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="module")
def text_run(files) -> subprocess.CompletedProcess:
    return gstc("validate", *map(str, files.values()))


@pytest.fixture(scope="module")
def json_run(files) -> dict[str, dict]:
    proc = gstc("validate", "--format", "json", *map(str, files.values()))
    assert proc.returncode == 1, proc.stderr
    results = json.loads(proc.stdout)
    assert [r["file"] for r in results] == list(map(str, files.values()))
    return {Path(r["file"]).name: r for r in results}


def error_lines(stderr: str, path: Path) -> list[tuple[int, str]]:
    """(line, rest of the line) of each `FILE:LINE:COL: error: ...` line about `path`."""
    pattern = re.compile(rf"^{re.escape(str(path))}:(\d+):(\d+): error: (.*)$", re.M)
    return [(int(m[1]), m[3]) for m in pattern.finditer(stderr)]


def test_the_corpus_covers_enough_cases():
    assert len(CORPUS_FILES) >= 34
    for path in CORPUS_FILES:
        text = path.read_text(encoding="utf-8")
        assert text.startswith("# expect: "), f"{path.name} must start with an `# expect: LINE: SUBSTRING` line"
        assert expectations(path), path.name


@pytest.mark.parametrize("name", NAMES)
def test_text_output_reports_each_expected_error(name, files, text_run):
    assert text_run.returncode == 1
    path = files[name]
    reported = error_lines(text_run.stderr, path)
    assert reported, f"no error reported for {name}:\n{text_run.stderr}"
    for line, text in expectations(path):
        assert any(at == line and text in message for at, message in reported), (
            f"{name}: expected an error at line {line} containing {text!r}, got:\n"
            + "\n".join(f"  {at}: {message}" for at, message in reported)
        )


@pytest.mark.parametrize("name", NAMES)
def test_json_output_reports_each_expected_error(name, json_run, files):
    result = json_run[name]
    assert result["valid"] is False and result["errors"]
    assert "configs" not in result and "runs" not in result
    for error in result["errors"]:
        assert error["file"] == str(files[name])
        assert isinstance(error["line"], int) and error["line"] >= 1
        assert isinstance(error["col"], int) and error["col"] >= 1
        assert error["message"] and "\n" not in error["message"]
    shown = [(e["line"], e["message"] + SpecError(**{**e, "configs": tuple(e["configs"])}).where())
             for e in result["errors"]]
    for line, text in expectations(files[name]):
        assert any(at == line and text in message for at, message in shown), (name, line, text, shown)


# A handful alone, as a user would run them: one per kind of failure (loader, schema,
# compiler, overrides) and the files that are not text.
ALONE = ["tag-python-object.yaml", "alias-bomb.yaml", "yaml-unclosed-bracket.yaml", "unknown-key-typo-layer-entry.yaml",
         "variant-error-names-config.yaml", "several-errors.yaml", "not-utf8.yaml", "huge.yaml", "deep-flow.yaml",
         "empty.yaml"]


@pytest.mark.parametrize("name", ALONE)
def test_single_file_exits_1_with_errors_on_stderr(name, files):
    path = files[name]
    proc = gstc("validate", str(path))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout == ""  # nothing is "ok"
    reported = error_lines(proc.stderr, path)
    for line, text in expectations(path):
        assert any(at == line and text in message for at, message in reported), (line, text, proc.stderr)
    assert re.search(r"^\d+ errors? in 1 of 1 file\(s\)$", proc.stderr, re.M), proc.stderr


def test_github_format(files):
    path = files["several-errors.yaml"]
    proc = gstc("validate", "--format", "github", str(path))
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert len(lines) == len(expectations(path)) == 3
    pattern = re.compile(rf"^::error file={re.escape(str(path))},line=(\d+),col=(\d+)::(.+)$")
    found = []
    for text in lines:
        m = pattern.match(text)
        assert m, text
        found.append((int(m[1]), m[3]))
    for line, text in expectations(path):
        assert any(at == line and text in message for at, message in found), (line, text, found)
