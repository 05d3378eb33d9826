"""gstc.jsonio: strict JSON written atomically, JSONL that survives a writer killed mid-line."""

from __future__ import annotations

import os

import numpy as np
import pytest

from gstc.jsonio import DamagedFile, append_jsonl, read_json, read_jsonl, truncate_jsonl, write_json


def test_write_json_is_strict_and_atomic(tmp_path):
    path = tmp_path / "a" / "x.json"
    write_json(path, {"b": float("nan"), "a": [float("inf"), np.int64(3), np.float32(0.5)], "c": (1, 2)})
    text = path.read_text()
    assert text == '{\n  "b": null,\n  "a": [\n    null,\n    3,\n    0.5\n  ],\n  "c": [\n    1,\n    2\n  ]\n}\n'
    assert read_json(path) == {"b": None, "a": [None, 3, 0.5], "c": [1, 2]}
    assert os.listdir(path.parent) == ["x.json"]  # no temporary file left behind


def test_read_jsonl_skips_torn_last_line(tmp_path):
    path = tmp_path / "e.jsonl"
    path.write_text('{"epoch": 1}\n{"epoch": 2}\n{"epoch": 3, "test_a')
    assert read_jsonl(path) == [{"epoch": 1}, {"epoch": 2}]
    path.write_bytes(b'{"epoch": 1}\n{"epoch": 2, "x": "\xc3')  # torn inside a UTF-8 character
    assert read_jsonl(path) == [{"epoch": 1}]
    path.write_text('{"epoch": 1}\n{"epoch": 2}')  # complete, only the newline missing
    assert read_jsonl(path) == [{"epoch": 1}, {"epoch": 2}]
    assert read_jsonl(tmp_path / "missing.jsonl") == []


def test_read_jsonl_bad_middle_line_is_an_error(tmp_path):
    path = tmp_path / "e.jsonl"
    path.write_text('{"epoch": 1}\n{"epoch": 2\n{"epoch": 3}\n')
    with pytest.raises(DamagedFile, match=r"e.jsonl: has a line \(2\) that is not a JSON object") as info:
        read_jsonl(path)
    assert info.value.path == path


def test_append_jsonl_after_torn_line(tmp_path):
    path = tmp_path / "r" / "e.jsonl"
    append_jsonl(path, {"epoch": 1, "loss": float("nan")})
    with open(path, "a") as fh:
        fh.write('{"epoch": 2, "te')  # killed mid-write
    append_jsonl(path, {"epoch": 2})
    assert path.read_text() == '{"epoch": 1, "loss": null}\n{"epoch": 2}\n'
    with open(path, "a") as fh:
        fh.write('{"epoch": 3}')  # complete record, newline missing: kept
    append_jsonl(path, {"epoch": 4})
    assert [r["epoch"] for r in read_jsonl(path)] == [1, 2, 3, 4]
    assert path.read_text().endswith('{"epoch": 3}\n{"epoch": 4}\n')


def test_truncate_jsonl(tmp_path):
    path = tmp_path / "e.jsonl"
    for epoch in range(1, 6):
        append_jsonl(path, {"epoch": epoch})
    with open(path, "a") as fh:
        fh.write('{"epoch": 6, ')
    assert truncate_jsonl(path, lambda r: r["epoch"] <= 3) == 3
    assert path.read_text() == '{"epoch": 1}\n{"epoch": 2}\n{"epoch": 3}\n'
    assert os.listdir(tmp_path) == ["e.jsonl"]
    assert truncate_jsonl(path, lambda r: False) == 0
    assert path.read_text() == "" and read_jsonl(path) == []
    assert truncate_jsonl(tmp_path / "none.jsonl", lambda r: True) == 0
    assert not (tmp_path / "none.jsonl").exists()
