"""The one writer: whole files replace atomically and durably (write, fsync, rename, fsync the folder)."""

from __future__ import annotations

import os
import stat

import pytest

from gstc import atomic


def test_write_fsyncs_the_file_then_renames_then_fsyncs_the_folder(tmp_path, monkeypatch):
    synced: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        synced.append("folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    def replace(src, dst):
        synced.append("rename")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    atomic.write_text(tmp_path / "a" / "run.json", "{}\n")
    assert synced == ["file", "rename", "folder"]  # a power cut after the call keeps the new file
    assert (tmp_path / "a" / "run.json").read_text() == "{}\n"


def test_a_writer_that_fails_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic.replace(path) as fh:
            fh.write(b"half of the new")
            raise RuntimeError("killed mid-write")
    assert path.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


def test_create_makes_a_file_once(tmp_path):
    path = tmp_path / "lock.json"
    assert atomic.create(path, b"first") is True
    assert atomic.create(path, b"second") is False
    assert path.read_bytes() == b"first" and sorted(p.name for p in tmp_path.iterdir()) == ["lock.json"]
