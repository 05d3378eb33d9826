"""The runtime imports nothing of the compiler: from gstc, only the plan (with its packs), the results layout
and its files (paths, jsonio, runstate, summary, manifest), the atomic writer, provenance, locks and itself; and
the torch-free commands import nothing of the runtime (dependencies run one way)."""

from __future__ import annotations

import ast
from pathlib import Path

RUNTIME = Path(__file__).resolve().parents[2] / "runtime"
# packs: the compiler's grouping of a plan's runs; atomic and provenance: torch-free helpers of the results files;
# archs: the forms of architecture names and the layer-file format; errors: did_you_mean for unknown names;
# costs: a model's parameter and MAC counts, which the plan shows and the runtime records; datasets: known shapes;
# plugins, scorings, methods and modes: the registries whose plugins the runtime calls (torch-free modules; their
# `score`, `apply` and `start` get torch tensors)
ALLOWED = {"gstc.plan", "gstc.packs", "gstc.paths", "gstc.jsonio", "gstc.runstate", "gstc.summary", "gstc.manifest",
           "gstc.atomic", "gstc.provenance", "gstc.archs", "gstc.errors",
           "gstc.costs", "gstc.datasets", "gstc.plugins", "gstc.scorings", "gstc.methods", "gstc.modes",
           "gstc.locks", "gstc.claims", "gstc.slurm_queue",  # the lock files' protocol, claims of runs and Slurm's queue:
           # torch-free, gstc status reads them
           "gstc.executor_options"}  # what `gstc run` tells its executor, checked on the command line before torch


def test_runtime_imports_only_the_plan_and_manifest_from_gstc():
    found = {}
    for path in RUNTIME.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] if node.module != "gstc" else [f"gstc.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                if (name == "gstc" or name.startswith("gstc.")) and not name.startswith("gstc.runtime"):
                    found.setdefault(name, []).append(path.name)
    assert found, "the runtime reads plans: it must import gstc.plan"
    assert set(found) <= ALLOWED, {k: v for k, v in found.items() if k not in ALLOWED}


def test_the_runtimes_modules_import_each_other_without_a_circle():
    imports: dict[str, set[str]] = {}
    for path in RUNTIME.rglob("*.py"):
        parts = path.relative_to(RUNTIME).with_suffix("").parts
        name = ".".join(("gstc", "runtime") + tuple(p for p in parts if p != "__init__"))
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gstc.runtime"):
                # `from gstc.runtime import worker` imports the module gstc.runtime.worker
                subs = {f"{node.module}.{a.name}" for a in node.names}
                found |= subs if node.module == "gstc.runtime" else {node.module}
        imports[name] = found - {name}
    assert len(imports) >= 15 and imports["gstc.runtime.driver"]

    def reach(start: str, at: str, seen: set[str]) -> bool:
        """Whether `start` is imported again somewhere below `at`."""
        for nxt in imports.get(at, ()):
            if nxt == start:
                return True
            if nxt not in seen:
                seen.add(nxt)
                if reach(start, nxt, seen):
                    return True
        return False

    assert [m for m in imports if reach(m, m, set())] == []


def test_the_torch_free_commands_import_nothing_of_the_runtime(tmp_path):
    """validate, plan, status, report and diff, run in a fresh interpreter: no gstc.runtime module is loaded."""
    import subprocess
    import sys

    spec = Path(__file__).resolve().parents[2] / "examples" / "quickstart.yaml"
    code = f"""
import sys
from typer.testing import CliRunner
from gstc.cli import app
for args in (["validate"], ["plan"], ["status", "--out", {str(tmp_path)!r}], ["report", "--out", {str(tmp_path)!r}],
             ["diff", {str(spec)!r}]):
    CliRunner().invoke(app, [args[0], {str(spec)!r}, *args[1:]])
print(sorted(m for m in sys.modules if m.startswith("gstc.runtime") or m == "torch"))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout
