"""DESIGN.md section 1: the runtime imports nothing from gstc but the plan (with its packs) and manifest."""

from __future__ import annotations

import ast
from pathlib import Path

RUNTIME = Path(__file__).resolve().parents[2] / "runtime"
ALLOWED = {"gstc.plan", "gstc.packs", "gstc.manifest"}  # packs: the compiler's grouping of a plan's runs


def test_runtime_imports_only_the_plan_and_manifest_from_gstc():
    found = {}
    for path in RUNTIME.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] if node.module != "gstc" else [f"gstc.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                if name == "gstc" or name.startswith("gstc."):
                    found.setdefault(name, []).append(path.name)
    assert found, "the runtime reads plans: it must import gstc.plan"
    assert set(found) <= ALLOWED, {k: v for k, v in found.items() if k not in ALLOWED}
