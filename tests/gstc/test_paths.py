"""gstc.paths: the results layout, one folder name per run id and spec name."""

from __future__ import annotations

from pathlib import Path

import pytest

from gstc.paths import ResultsDir


def test_paths(tmp_path):
    r = ResultsDir(tmp_path)
    assert r.run_dir("abc") == tmp_path / "runs" / "abc"
    assert r.run_json("abc") == tmp_path / "runs" / "abc" / "run.json"
    assert r.epochs_jsonl("abc") == tmp_path / "runs" / "abc" / "epochs.jsonl"
    assert r.events_jsonl("abc") == tmp_path / "runs" / "abc" / "events.jsonl"
    assert r.flatness_json("abc") == tmp_path / "runs" / "abc" / "flatness.json"
    assert r.checkpoint("abc") == tmp_path / "runs" / "abc" / "checkpoint.pt"
    assert r.spec_dir("fig2") == tmp_path / "specs" / "fig2"
    assert r.manifest_json("fig2") == tmp_path / "specs" / "fig2" / "manifest.json"
    for bad in ("", "..", "a/b"):
        with pytest.raises(ValueError):
            r.run_dir(bad)


def test_root_from_env_then_default(tmp_path, monkeypatch):
    monkeypatch.setenv("GSTC_RESULTS", str(tmp_path / "env"))
    assert ResultsDir().root == tmp_path / "env"
    assert ResultsDir(tmp_path / "arg").root == tmp_path / "arg"
    monkeypatch.delenv("GSTC_RESULTS")
    assert ResultsDir().root == Path("results")
