"""`pip install gstc` installs one top-level import name, gstc: the runtime's folder is gstc.runtime."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import REPO

BUILD = """\
import json, os, sys, zipfile
from setuptools import build_meta
out = sys.argv[1]  # build_meta rewrites sys.argv
name = build_meta.build_wheel(out)
print(json.dumps(zipfile.ZipFile(os.path.join(out, name)).namelist()))
"""


def test_the_wheel_holds_only_gstc_owned_names_and_every_source_file(tmp_path: Path):
    # setuptools' own backend (the dev extra installs it), as pip runs it, without pip's isolated build environment
    proc = subprocess.run([sys.executable, "-c", BUILD, str(tmp_path)], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    names = json.loads(proc.stdout.strip().splitlines()[-1])
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"gstc"}, top
    # every module of both folders is in it, the runtime's under gstc/runtime/ (a subpackage left out of
    # pyproject's package list would be missing here)
    expected = {f"gstc/{p.relative_to(REPO / 'gstc')}" for p in (REPO / "gstc").rglob("*.py")}
    expected |= {f"gstc/runtime/{p.relative_to(REPO / 'runtime')}" for p in (REPO / "runtime").rglob("*.py")}
    assert expected <= set(names), sorted(expected - set(names))
    (info,) = [n for n in names if n.endswith(".dist-info/top_level.txt")] or [None]
    if info is not None:
        with zipfile.ZipFile(next(tmp_path.glob("*.whl"))) as wheel:
            assert wheel.read(info).decode().split() == ["gstc"]


def test_the_runtime_is_imported_as_gstc_runtime():
    # An editable install maps gstc.runtime to runtime/ by its own finder (gstc adds no import hook); importing the
    # package imports no torch, so the test stays quick.
    code = "import gstc.runtime as m, sys; print(m.__name__, m.__file__, 'runtime' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["gstc.runtime", str(REPO / "runtime" / "__init__.py"), "False"]  # no `runtime`


def test_gstc_puts_no_import_hook_in_front_of_python(tmp_path: Path):
    """Importing gstc leaves sys.meta_path as it was: an installed gstc is found the way Python finds packages."""
    code = "import sys; before = list(sys.meta_path); import gstc; print(sys.meta_path == before)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == "True", proc.stderr
