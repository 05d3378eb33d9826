"""gstc.runstate: a run's status from its files, a damaged file being a status of its own (never an exception)."""

from __future__ import annotations

from gstc.jsonio import read_json, write_json
from gstc.paths import ResultsDir
from gstc.runstate import STATUSES, run_state, run_status


def write_run(results: ResultsDir, run_id: str, status: str, epoch: int = 2) -> None:
    info = {"id": run_id, "config": "small", "seed": 0, "status": status, "seconds": 0.1 * epoch}
    if status == "failed":
        info["error"] = {"epoch": epoch, "reason": "training loss is nan"}
    write_json(results.run_json(run_id), info)


def test_run_status(tmp_path):
    results = ResultsDir(tmp_path)
    a, b, c = "a", "b", "c"
    assert run_status(results, a) == "pending"
    write_run(results, a, "running")
    write_run(results, b, "failed", epoch=3)
    write_run(results, c, "done")
    assert [run_status(results, r) for r in (a, b, c)] == ["running", "failed", "done"]
    assert read_json(results.run_json(b))["error"] == {"epoch": 3, "reason": "training loss is nan"}
    # Unreadable run.json files are a status of their own, with the file and the reason (never an exception).
    write_json(results.run_json(a), {"status": "exploded"})
    assert run_status(results, a) == "damaged"
    assert run_state(results, a)[2] == {"file": str(results.run_json(a)),
                                        "reason": "has an unknown status 'exploded' (expected running, done or failed)"}
    results.run_json(b).write_text('{"id": "x", "sta')  # cut short
    assert run_status(results, b) == "damaged" and "is not valid JSON" in run_state(results, b)[2]["reason"]
    assert run_state(results, c)[2] is None
    # damaged.json: what `gstc run` found wrong with another of the run's files
    write_json(results.damaged_json(c), {"file": "checkpoint.pt", "reason": "is cut short"})
    assert run_status(results, c) == "done"  # a finished run stays finished
    write_run(results, c, "running")
    assert run_status(results, c) == "damaged" and run_state(results, c)[2]["reason"] == "is cut short"
    assert {run_status(results, r) for r in (a, b, c, "d")} <= set(STATUSES)
