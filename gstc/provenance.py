"""Which code and machine computed a result: recorded in run.json and the manifest, compared by `gstc diff`.

`environment()` is the torch-free part (gstc's version and source, Python, host); the
runtime adds torch, CUDA, cuDNN, the device and its thread count
(`gstc.runtime.environment`). The source is the git commit of gstc's own checkout, with
whether gstc's files had uncommitted changes, when gstc runs from a git checkout; for
an install from a git URL (`pip install git+https://...@COMMIT`), the commit pip
recorded; otherwise nothing, and the version alone says which code it was.
"""

from __future__ import annotations

import functools
import json
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import gstc

PACKAGE = Path(gstc.__file__).resolve().parent
# The files whose changes change gstc's numbers or messages: a tree dirty only elsewhere (a spec,
# a results folder that is not ignored) runs the same code.
CODE_PATHS = ("gstc", "runtime", "pyproject.toml")
GIT_TIMEOUT = 10  # seconds: a git on a hung network file system must not hang a run


def _git(root: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=GIT_TIMEOUT)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def source() -> dict[str, Any] | None:
    """{"commit": sha, "dirty": bool} of gstc's git checkout, {"commit": sha, "dirty": None} of an install
    from a git URL, or None (a release, or no git). Computed once per process."""
    return source_of(PACKAGE)


def source_of(package: Path) -> dict[str, Any] | None:
    """`source()` for the gstc package in folder `package`."""
    package = package.resolve()
    top = _git(package, "rev-parse", "--show-toplevel")
    if top and (Path(top) / "gstc" / "__init__.py").resolve() == package / "__init__.py":  # gstc's own checkout
        commit = _git(Path(top), "rev-parse", "HEAD")
        if commit:
            changes = _git(Path(top), "status", "--porcelain", "--", *CODE_PATHS)
            return {"commit": commit, "dirty": bool(changes) if changes is not None else None}
    try:
        direct = json.loads(metadata.distribution("gstc").read_text("direct_url.json") or "{}")
    except (metadata.PackageNotFoundError, ValueError):
        return None
    commit = (direct.get("vcs_info") or {}).get("commit_id")
    return {"commit": commit, "dirty": None} if commit else None


def environment() -> dict[str, Any]:
    """gstc's version and source, Python and the host name."""
    return {"gstc": gstc.__version__, "source": source(), "python": platform.python_version(),
            "host": socket.gethostname()}


def describe_source(value: Any) -> str:
    """A source for tables: 'abc1234', 'abc1234 (uncommitted changes)', or 'unknown'."""
    if not isinstance(value, dict) or not value.get("commit"):
        return "unknown"
    return str(value["commit"])[:12] + (" (uncommitted changes)" if value.get("dirty") else "")


# run.json's environment fields, in the order the provenance table shows them.
PROVENANCE = ("gstc", "source", "python", "torch", "cuda", "cudnn", "device", "host", "threads")


def tally(manifest: dict | None) -> dict[str, dict[str, int]]:
    """Per field, each value among the side's finished runs, with how many runs had it."""
    out: dict[str, dict[str, int]] = {f: {} for f in PROVENANCE}
    for run in (manifest or {}).get("runs", []):
        if run.get("status") not in ("done", "failed"):
            continue
        env = run.get("environment") or {}
        for f in PROVENANCE:
            value = describe_source(env.get(f)) if f == "source" else env.get(f)
            text = "unknown" if value is None else str(value)
            out[f][text] = out[f].get(text, 0) + 1
    return out
