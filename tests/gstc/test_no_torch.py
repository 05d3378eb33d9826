"""gstc's torch-free commands must not import torch (docs/design.md, "Layering").

A fake `torch` package that fails loudly on import is put first on the path, so the
test means something whether or not the real torch is installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


@pytest.fixture
def poisoned_env(tmp_path: Path) -> dict[str, str]:
    fake = tmp_path / "fake" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('gstc imported torch')\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "fake"), str(REPO)])
    return env


@pytest.mark.parametrize(
    "args",
    [
        ["validate", "{spec}"],
        ["plan", "{spec}"],
        ["plan", "{spec}", "--json"],
        ["layers", "resnet56"],
        ["schema"],
        ["diff", "{spec}", "{spec}"],
    ],
)
def test_cli_commands_do_not_import_torch(args, small_spec, poisoned_env):
    argv = [a.format(spec=small_spec) for a in args]
    proc = subprocess.run([sys.executable, "-m", "gstc", *argv], capture_output=True, text=True, env=poisoned_env)
    assert proc.returncode == 0, proc.stderr
    assert "torch" not in proc.stderr


@pytest.mark.parametrize("spec", ["examples/own-model.yaml", "examples/torchvision-mobilenet.yaml"])
def test_specs_of_own_and_torchvision_models_validate_and_plan_without_torch(spec, poisoned_env, tmp_path):
    # Their layer tables come from the layer files next to them; only `gstc layers SPEC --write` builds models.
    for command in (["validate", spec], ["plan", spec, "--json"]):
        proc = subprocess.run([sys.executable, "-m", "gstc", *command], capture_output=True, text=True,
                              env=poisoned_env, cwd=REPO)
        assert proc.returncode == 0, proc.stderr
    # Without its layer file: a clear error naming the command that writes it, still without torch.
    copy = tmp_path / "spec.yaml"
    copy.write_text((REPO / spec).read_text())
    proc = subprocess.run([sys.executable, "-m", "gstc", "validate", str(copy)], capture_output=True, text=True,
                          env=poisoned_env)
    assert proc.returncode == 1 and "does not exist" in proc.stderr and f"gstc layers {copy} --write" in proc.stderr
    assert "Traceback" not in proc.stderr and "gstc imported torch" not in proc.stderr


def test_gstc_modules_do_not_import_torch(poisoned_env):
    code = (
        "import sys, pkgutil, importlib, gstc\n"
        "for m in pkgutil.iter_modules(gstc.__path__):\n"
        "    if m.name != '__main__': importlib.import_module('gstc.' + m.name)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=poisoned_env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


@pytest.mark.parametrize("fmt", ["text", "html"])
def test_report_does_not_import_torch(fmt, small_spec, poisoned_env, tmp_path):
    # A report is read from run folders: tables, comparisons, plots and the HTML page need no torch.
    from gstc.compile import compile_file
    from gstc.paths import ResultsDir
    from tests.gstc.test_report import fake_run

    results = ResultsDir(tmp_path / "r")
    for run in compile_file(str(small_spec)).runs:
        fake_run(results, run, [50.0 + i + run.seed for i in range(10)], 1000, [90.0 + run.seed] * 4)
    proc = subprocess.run([sys.executable, "-m", "gstc", "report", str(small_spec), "--out", str(results.root),
                           "--format", fmt], capture_output=True, text=True, env=poisoned_env)
    assert proc.returncode == 0, proc.stderr
    assert "gstc imported torch" not in proc.stderr and "wrote" in proc.stderr
