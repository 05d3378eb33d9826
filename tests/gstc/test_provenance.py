"""Which code computed a result: gstc's version, and the commit of its checkout with whether gstc's files
had uncommitted changes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

import gstc
from gstc.provenance import describe_source, environment, source, source_of
from tests.conftest import REPO

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A git repository shaped like gstc's: gstc/, runtime/, a README."""
    for name in ("gstc/__init__.py", "runtime/train.py", "README.md"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x = 1\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "-A")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    return tmp_path


def test_the_commit_of_a_checkout_and_whether_gstcs_files_changed(checkout: Path):
    head = git(checkout, "rev-parse", "HEAD")
    assert source_of(checkout / "gstc") == {"commit": head, "dirty": False}
    (checkout / "README.md").write_text("other docs\n")  # not gstc's code: still the same code
    (checkout / "results").mkdir()
    (checkout / "results" / "run.json").write_text("{}")
    assert source_of(checkout / "gstc") == {"commit": head, "dirty": False}
    (checkout / "runtime" / "train.py").write_text("x = 2\n")
    assert source_of(checkout / "gstc") == {"commit": head, "dirty": True}
    assert describe_source(source_of(checkout / "gstc")) == head[:12] + " (uncommitted changes)"


def test_a_gstc_inside_another_repository_is_not_that_repositorys_commit(checkout: Path):
    # gstc installed into a virtual environment inside a user's own git repository (site-packages/gstc):
    # the repository's commit says nothing of gstc's code.
    inner = checkout / "venv" / "site-packages" / "gstc"
    inner.mkdir(parents=True)
    (inner / "__init__.py").write_text("x = 1\n")
    found = source_of(inner)
    assert found is None or found["commit"] != git(checkout, "rev-parse", "HEAD")


def test_this_process_records_its_own_checkout():
    env = environment()
    assert env["gstc"] == gstc.__version__ and env["host"] and env["python"]
    if (REPO / ".git").exists():
        assert env["source"]["commit"] == git(REPO, "rev-parse", "HEAD")
        assert env["source"] == source()
    assert describe_source(None) == "unknown"
