"""The W&B tracker: one Weights & Biases run per gstc run, and the runs this process holds open.

W&B takes one open run per id in a process and finishes what is open at exit with its
own hook: `WANDB_OPEN` is this process's table of open runs, so that a later call of the
same process finishes an interrupted call's run before opening it again, and the runs
still open at exit are finished (with the marker a resumed call reads) before wandb's
own hook runs. See `WandB` for the modes, the rows and what a resumed call logs again.
"""

from __future__ import annotations

import json
from typing import Any

from gstc.paths import ResultsDir
from gstc.runtime.trackers import recorded


class WandB:
    """Weights & Biases: one W&B run per gstc run, its id and name the run id, in the project named after the spec,
    grouped by configuration, with the resolved configuration as its config; run.json and epochs.jsonl are saved with
    it when it closes. The runs of a pack are open at once, each logged through its own Run object.

    Mode: W&B's own ($WANDB_MODE) where set or where an API key is ($WANDB_API_KEY, or `wandb login`'s .netrc);
    else offline, with no account and no network: one folder per run and call under <out>/wandb/wandb
    (offline-run-<time>-<run id>; $WANDB_DIR where set) for `wandb sync`. Online without an API key fails at once
    (no login prompt ever waits), as does a server that does not answer within $WANDB_INIT_TIMEOUT seconds (default
    60), or (wandb with finish_timeout) an upload still stalled $WANDB_FINISH_TIMEOUT seconds (default 60) after a
    run closes, its rest left in the run's folder for `wandb sync`: the tracker is dropped with its warning.

    Rows: W&B's step is the epoch (an event's numbers and its epoch's record make one row), committed when the
    epoch ends, after its checkpoint (Tracking's phase follows Checkpoints', gstc.runtime.train). A call that closes its
    runs (done, failed, or stopped to be resumed) records in the run's folder (wandb.json) the last step W&B
    holds for certain. A resumed call (`resumed_from`: its checkpoint's epoch) continues the same W&B run
    (`resume="allow"`; offline, a new folder with the same run id, which `wandb sync` replays after the first): it
    logs again, from the run's own files, the epochs after that step up to its checkpoint, then the epochs it
    trains. So a call killed with SIGKILL, whose wandb had not written what it was given (offline: nothing of that
    call), costs no epoch; what it had written is held twice only in its own offline folder (online, W&B drops a
    step it holds). A run that ends done finishes with exit code 0; failed, or stopped, with 1 (W&B shows it failed
    until a resumed call continues it).
    """

    def __init__(self, results: ResultsDir, spec: str) -> None:
        import os
        import re

        local = ("offline", "dryrun", "disabled")
        account = _wandb_credentials()
        mode = os.environ.get("WANDB_MODE") or (None if account else "offline")
        if mode not in local and not account:
            raise RuntimeError("WANDB_MODE is online but no W&B API key is set up (WANDB_API_KEY, or `wandb login`); "
                               "set WANDB_MODE=offline to keep the runs locally for `wandb sync`")
        os.environ.setdefault("WANDB_SILENT", "true")  # no banner per run: a pack opens many
        if mode in local:
            os.environ.setdefault("WANDB_ERROR_REPORTING", "false")  # wandb's own telemetry: nothing on the network
        import atexit

        import wandb

        atexit.unregister(_finish_all)  # once per process, after wandb's own hook (exit hooks run last in, first out)
        atexit.register(_finish_all)
        if tuple(int(n) for n in re.findall(r"\d+", wandb.__version__)[:3]) < (0, 19, 10):
            raise RuntimeError(f"--track wandb needs wandb 0.19.10 or later (several runs open in one process), "
                               f"found {wandb.__version__}: pip install -U 'gstc[wandb]'")
        self.wandb, self.spec, self.results, self.mode = wandb, spec, results, mode
        self.dir: str | None = None
        if not os.environ.get("WANDB_DIR"):
            (results.root / "wandb").mkdir(parents=True, exist_ok=True)
            self.dir = str(results.root / "wandb")
        settings: dict[str, Any] = {
            "init_timeout": float(os.environ.get("WANDB_INIT_TIMEOUT") or 60),  # a server that does not answer
            "console": "off",  # the pack's stdout is every run's: captured by none
            "silent": True,
            "x_disable_stats": True,  # system metrics: the pack's, not a run's
        }
        if "finish_timeout" in wandb.Settings.model_fields:  # newer wandb: a stalled upload fails, not blocks
            settings.update(finish_timeout=float(os.environ.get("WANDB_FINISH_TIMEOUT") or 60),
                            finish_timeout_raises=True)
        self.settings = wandb.Settings(**settings)
        self.runs: dict[str, Any] = {}
        self.after: dict[str, int] = {}  # run id -> the last epoch W&B already holds (skipped when logged again)
        self.held: dict[str, tuple[int, dict[str, float]]] = {}  # run id -> (epoch, its event's numbers not committed)
        self.committed: dict[str, list[int]] = {}  # run id -> the last step W&B held at open, and the steps logged

    def open(self, run_id: str, config: str, params: dict, resumed_from: int | None) -> None:
        if run_id in WANDB_OPEN:  # an earlier call of this process, interrupted: W&B takes one open run per id
            try:
                _finish(run_id, 1)
            except Exception:
                pass
        run = self.wandb.init(id=run_id, name=run_id, project=self.spec, group=config, config=params, dir=self.dir,
                              mode=self.mode, resume="allow", reinit="create_new", settings=self.settings)
        self.runs[run_id] = run
        self.after[run_id] = -1 if resumed_from is None else resumed_from
        self.committed[run_id] = [self.after[run_id]]
        WANDB_OPEN[run_id] = (run, self.committed[run_id], _marker(self.results, run_id))
        if resumed_from is not None:
            self._replay(run_id, resumed_from)

    def _replay(self, run_id: str, resumed_from: int) -> None:
        """The epochs up to the checkpoint that W&B may not hold: a call killed with SIGKILL loses what wandb had
        not written yet (offline, its whole folder), so the rows after the last step a closed call committed (its
        marker) are logged again from the run's own files. A step W&B already holds online is dropped by W&B."""
        marker = _marker(self.results, run_id)
        held = json.loads(marker.read_text())["step"] if marker.exists() else -1
        rows = recorded(self.results, run_id, held, resumed_from)
        for step in sorted(rows):
            self._commit(run_id, step, rows[step])

    def log(self, run_id: str, step: int, metrics: dict[str, float]) -> None:
        if step <= self.after[run_id]:
            return  # W&B holds it from before the kill
        held_step, held = self.held.pop(run_id, (step, {}))
        if held_step != step:  # an event whose epoch did not end with it (cannot happen in the loop): its own row
            self._commit(run_id, held_step, held)
            held = {}
        row = {**held, **metrics}
        if metrics and not any(name.startswith("epoch/") for name in metrics):  # an event: held to its epoch's end
            self.held[run_id] = (step, row)
        else:
            self._commit(run_id, step, row)

    def _commit(self, run_id: str, step: int, row: dict[str, float]) -> None:
        if row:
            self.runs[run_id].log(row, step=step, commit=True)
            self.committed[run_id].append(step)

    def close(self, run_id: str, status: str) -> None:
        import shutil
        from pathlib import Path

        run = self.runs.pop(run_id)
        held = self.held.pop(run_id, None)
        if held is not None and status != "stopped":  # a failed run's last event; a stopped run logs it again
            self._commit(run_id, *held)
        if not getattr(run, "disabled", False):  # (WANDB_MODE=disabled: no run folder)
            for path in (self.results.run_json(run_id), self.results.epochs_jsonl(run_id)):
                if path.exists():  # a copy, saved from there: a snapshot, not a link to a file that changes
                    saved = Path(run.dir) / path.name
                    shutil.copyfile(path, saved)
                    run.save(str(saved), base_path=run.dir, policy="now")
        self.committed.pop(run_id, None)
        _finish(run_id, 0 if status == "done" else 1)


# run id -> its W&B run open in this process, the steps it holds, its marker (W&B refuses a second open run with an
# id: WandB.open finishes an interrupted call's; what is open at exit is finished before wandb's own exit hook runs)
WANDB_OPEN: dict[str, tuple[Any, list[int], Any]] = {}


def _marker(results: ResultsDir, run_id: str):
    """Where a closed call records the last step its W&B run holds for certain: in the run's folder, which
    `gstc run --restart` moves away with the rest of the run."""
    return results.run_dir(run_id) / "wandb.json"


def _finish(run_id: str, exit_code: int) -> None:
    """Finish a W&B run (its data written), then record the last step it holds: a resumed call logs after it."""
    from gstc.atomic import write_text

    run, steps, marker = WANDB_OPEN.pop(run_id)
    run.finish(exit_code=exit_code)
    write_text(marker, json.dumps({"step": max(steps)}) + "\n")


def _finish_all() -> None:
    """At exit (Ctrl-C, an exception): the runs still open, finished as stopped. Registered after wandb's import,
    so it runs before wandb's own exit hook, which would finish them without the marker."""
    for run_id in list(WANDB_OPEN):
        try:
            _finish(run_id, 1)
        except Exception:
            pass


def _wandb_credentials() -> bool:
    """Whether a W&B API key is set up: $WANDB_API_KEY, an identity token file, or `wandb login`'s .netrc entry."""
    import os

    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    try:
        from wandb.sdk.lib.wbauth import wbnetrc

        return wbnetrc.read_netrc_auth(host=os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai") is not None
    except Exception:  # no .netrc, or wandb's private module moved: as if none
        return False
