"""What Slurm says of gstc's jobs, without torch: for `gstc status` and for the Slurm executor.

`gstc run --executor slurm` records each job array it submits in
`<out>/slurm/<spec>/submitted.json` (`ResultsDir.slurm_submitted`): {job id: [run ids]}.
`squeue` then says which of those jobs are still queued or running, so that `gstc status`
shows a queued run as queued (with its job id) and a second `gstc run` leaves the runs of
live jobs to them instead of submitting them again.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from gstc.atomic import write_text
from gstc.jsonio import DamagedFile, read_json

SQUEUE_TIMEOUT = 30  # seconds: a slurmctld that does not answer must not hang gstc


def queue_states(job_ids: list[str]) -> dict[str, str] | None:
    """{job id: state} of these jobs that squeue still lists (PENDING, RUNNING, COMPLETING, ...); array tasks
    as `ARRAY_TASK`. None when squeue cannot be asked (no Slurm here, or it failed)."""
    if not job_ids:
        return {}
    arrays = sorted({j.split("_")[0] for j in job_ids})
    try:
        proc = subprocess.run(["squeue", "-h", "-r", "-j", ",".join(arrays), "-o", "%i %T"], capture_output=True,
                              text=True, timeout=SQUEUE_TIMEOUT)
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        # squeue refuses ids it no longer knows ("Invalid job id specified") when none is left
        return {} if "invalid job id" in proc.stderr.lower() else None
    states = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2:
            states[parts[0]] = parts[1]
    return states


def end_state(job_id: str) -> str:
    """A finished job's state from `scontrol show job` (kept for MinJobAge after its end), else 'unknown'."""
    try:
        out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True,
                             timeout=SQUEUE_TIMEOUT).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    m = re.search(r"JobState=(\S+)", out)
    return m.group(1) if m else "unknown"


def read_submitted(path: Path) -> dict[str, list[str]]:
    """{job id: run ids} of every job recorded in submitted.json ({} when there is none or it is damaged)."""
    try:
        return dict(read_json(path).get("jobs", {})) if path.exists() else {}
    except (DamagedFile, AttributeError):
        return {}


def record_submitted(path: Path, jobs: dict[str, list[str]]) -> None:
    """Add jobs to submitted.json (atomically), dropping those squeue no longer lists."""
    import json

    known = read_submitted(path)
    live = queue_states(list(known)) if known else {}
    kept = {j: r for j, r in known.items() if live is None or j in live}
    write_text(path, json.dumps({"jobs": {**kept, **jobs}}, indent=1) + "\n")


def live_runs(path: Path) -> dict[str, tuple[str, str]]:
    """{run id: (job id, state)} for the runs of recorded jobs that squeue lists as queued or running."""
    known = read_submitted(path)
    states = queue_states(list(known)) if known else {}
    out: dict[str, tuple[str, str]] = {}
    for job, runs in known.items():
        state = (states or {}).get(job)
        if state is not None and state not in ("COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "OUT_OF_MEMORY"):
            for rid in runs:
                out[rid] = (job, state)
    return out
