"""gstc.plugins' imports of module:attribute targets: the spec's folder is searched first, and importing a target
leaves sys.path as it was."""

from __future__ import annotations

import os
import re
import sys
import uuid

import pytest

from gstc.plugins import PluginError, import_path, import_target


@pytest.fixture
def own_module(tmp_path):
    """A module of its own name (fresh per test: sys.modules would hand back an earlier one) in a folder of its own."""
    name = f"own_{uuid.uuid4().hex[:8]}"
    folder = tmp_path / "spec"
    folder.mkdir()
    (folder / f"{name}.py").write_text("VALUE = 42\n\nclass Net:\n    depth = 3\n")
    yield name, str(folder)
    sys.modules.pop(name, None)


def test_importing_a_target_leaves_sys_path_as_it_was(own_module):
    name, folder = own_module
    before = list(sys.path)
    assert import_target(f"{name}:Net.depth", "architecture", [folder]) == 3
    assert sys.path == before
    missing = rf"no module named 'nowhere_\w+' \(looked in {re.escape(folder)}, the current folder"
    with pytest.raises(PluginError, match=missing):
        import_target(f"nowhere_{uuid.uuid4().hex[:8]}:Net", "architecture", [folder])
    assert sys.path == before
    with pytest.raises(PluginError, match="has no attribute 'Missing'"):
        import_target(f"{name}:Missing", "architecture", [folder])
    assert sys.path == before


def test_the_search_folder_comes_first_then_the_current_one(own_module, tmp_path, monkeypatch):
    name, folder = own_module
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    (elsewhere / f"{name}.py").write_text("VALUE = 0\n")  # the same module name in the current folder
    monkeypatch.chdir(elsewhere)
    assert import_target(f"{name}:VALUE", "dataset", [folder]) == 42
    sys.modules.pop(name)
    assert import_target(f"{name}:VALUE", "dataset", []) == 0  # no search folder: the current one


def test_import_path_puts_its_folders_first_for_the_block_only(own_module):
    name, folder = own_module
    before = list(sys.path)
    with pytest.raises(RuntimeError):
        with import_path([folder]):
            assert sys.path[:2] == [folder, os.getcwd()]
            assert import_target(f"{name}:VALUE", "dataset") == 42  # no search of its own: the import path as set
            sys.path.append("added-by-the-block")  # what the block does to sys.path itself is its own
            raise RuntimeError("the block fails")
    assert sys.path == [*before, "added-by-the-block"]
    sys.path.remove("added-by-the-block")
