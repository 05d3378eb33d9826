"""Where every result file lives: `ResultsDir`, the one owner of result paths (docs/design.md, "Results").

```
<root>/runs/<run-id>/{run.json, epochs.jsonl, events.jsonl, flatness.json, checkpoint.pt}
<root>/runs/<run-id>/rewind-<epoch>.pt            # a lottery's level 0: its weights after that epoch
<root>/runs/<run-id>/{lock.json, claims.jsonl}   # who trains the run now (gstc.locks); every claim of it
<root>/runs/<run-id>/damaged.json                # which of its files `gstc run` found unreadable, and why
<root>/runs/<run-id>/export/{model.pt2, export.json}   # `gstc export-model`: the pruned model, physically smaller
<root>/restarted/<run-id>.<UTC time>/            # a run's files before `gstc run --restart RUN_ID`
<root>/specs/<name>/manifest.json
<root>/specs/<name>/manifest.lock                # serializes rebuilding the manifest
<root>/slurm/<name>/<job-id>/                     # `--executor slurm`: submitit's job files and logs
```

Every other module (the runtime, status, report, diff) asks `ResultsDir` for paths, so
the layout lives in one place; what the files hold and how they are written is
`gstc.jsonio`'s and `gstc.atomic`'s.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_ROOT = "GSTC_RESULTS"
DEFAULT_ROOT = "results"


def _component(name: str, what: str) -> str:
    """A run id or spec name used as one folder name: no separators, no '.'/'..'."""
    if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise ValueError(f"invalid {what} for a results folder: {name!r}")
    return name


class ResultsDir:
    """Paths of the results layout under `root` (argument, else $GSTC_RESULTS, else 'results')."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        if root is None:
            root = os.environ.get(ENV_ROOT) or DEFAULT_ROOT
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"ResultsDir({str(self.root)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ResultsDir) and other.root == self.root

    def __hash__(self) -> int:
        return hash(self.root)

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def specs_dir(self) -> Path:
        return self.root / "specs"

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / _component(run_id, "run id")

    def run_json(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "run.json"

    def epochs_jsonl(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "epochs.jsonl"

    def events_jsonl(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "events.jsonl"

    def flatness_json(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "flatness.json"

    def export_dir(self, run_id: str) -> Path:
        """`gstc export-model`: the run's model physically pruned (model.pt2) and its measurements (export.json)."""
        return self.run_dir(run_id) / "export"

    def checkpoint(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "checkpoint.pt"

    def rewind_point(self, run_id: str, epoch: int) -> Path:
        """A lottery's level 0: its weights after `epoch`, which later levels rewind to."""
        return self.run_dir(run_id) / f"rewind-{epoch}.pt"

    def lock(self, run_id: str) -> Path:
        """The run's lock (gstc.locks): present while a worker trains the run."""
        return self.run_dir(run_id) / "lock.json"

    def claims_jsonl(self, run_id: str) -> Path:
        """One line per claim of the run by a worker (owner, time, epoch it started from)."""
        return self.run_dir(run_id) / "claims.jsonl"

    def damaged_json(self, run_id: str) -> Path:
        """Written by `gstc run` when one of the run's files cannot be read: {"file", "reason", "time"}."""
        return self.run_dir(run_id) / "damaged.json"

    def restarted_dir(self, run_id: str, stamp: str) -> Path:
        """Where `gstc run --restart` moves a run's files before training it again (`stamp`: UTC time)."""
        return self.root / "restarted" / f"{_component(run_id, 'run id')}.{_component(stamp, 'time stamp')}"

    def spec_dir(self, spec_name: str) -> Path:
        return self.specs_dir / _component(spec_name, "spec name")

    def manifest_json(self, spec_name: str) -> Path:
        return self.spec_dir(spec_name) / "manifest.json"

    def manifest_lock(self, spec_name: str) -> Path:
        """Held while the manifest is rebuilt, so the last writer has read the latest run folders."""
        return self.spec_dir(spec_name) / "manifest.lock"

    def slurm_dir(self, spec_name: str) -> Path:
        """`--executor slurm`: submitit's folder (pickled jobs, stdout and stderr logs), one subfolder per job."""
        return self.root / "slurm" / _component(spec_name, "spec name")

    def slurm_submitted(self, spec_name: str) -> Path:
        """`--executor slurm`: the spec's submitted jobs and their runs ({"jobs": {job id: [run ids]}})."""
        return self.slurm_dir(spec_name) / "submitted.json"
