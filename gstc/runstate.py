"""A run's status, read from its files alone (docs/design.md, "Results").

run.json's "status" is "running", "done", or "failed" (with "error": {"epoch", "reason"});
a run is "pending" when there is no run.json (no folder yet). A run killed without a
chance to write "failed" stays "running" on disk until resumed. A run is "damaged" when
run.json cannot be read, or when `gstc run` found another of the run's files unreadable
and said so in damaged.json ({"file", "reason"}); nothing of such a run is changed until
`gstc run --restart RUN_ID` sets its files aside and trains it again.
"""

from __future__ import annotations

from gstc.jsonio import DamagedFile, read_json
from gstc.paths import ResultsDir

STATUSES = ("pending", "running", "done", "failed", "damaged")


def read_run(results: ResultsDir, run_id: str) -> dict | None:
    """run.json's content, or None when the run has not started (no run.json); DamagedFile when unreadable."""
    path = results.run_json(run_id)
    try:
        run = read_json(path)
    except FileNotFoundError:
        return None
    if not isinstance(run, dict):
        raise DamagedFile(path, f"holds a JSON {type(run).__name__}, not an object")
    status = run.get("status")
    if status not in ("running", "done", "failed"):
        raise DamagedFile(path, f"has an unknown status {status!r} (expected running, done or failed)")
    return run


def run_state(results: ResultsDir, run_id: str) -> tuple[str, dict | None, dict | None]:
    """(status, run.json's content, damage) from one reading of the run's files.

    status: 'pending' (no run.json), run.json's 'running', 'done' or 'failed', or 'damaged':
    run.json cannot be read, or, for a run not done, damaged.json says what `gstc run`
    found wrong. damage: {"file", "reason"} of a damaged run, else None.
    """
    try:
        run = read_run(results, run_id)
    except DamagedFile as exc:
        return "damaged", None, {"file": str(exc.path), "reason": exc.reason}
    if run is None or run["status"] != "done":
        try:
            found = read_json(results.damaged_json(run_id))
        except FileNotFoundError:
            found = None
        except DamagedFile as exc:
            found = {"file": str(exc.path), "reason": exc.reason}
        if found is not None:
            return "damaged", run, found if isinstance(found, dict) else {"file": str(results.damaged_json(run_id)),
                                                                          "reason": "is not an object"}
    return ("pending" if run is None else run["status"]), run, None


def run_status(results: ResultsDir, run_id: str) -> str:
    """See `run_state`."""
    return run_state(results, run_id)[0]
