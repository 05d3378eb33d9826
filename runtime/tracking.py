"""Trackers: each run's numbers also where researchers watch a sweep (`gstc run --track NAME`, or $GSTC_TRACK).

`Tracking` is a callback of the loop: per run it opens one tracked run named by the run id
(a resumed run continues it), logs every epoch's record and every pruning event (its
stability and each layer's sparsity), and closes it. Trackers are chosen at run time and
are never part of a run's identity. A tracker that raises (a server down, a full disk)
is warned about once, on stderr, and dropped for the rest of the call: training goes on,
and the run's own files are what count.

Built in: `tensorboard` (torch's SummaryWriter; event files under
<out>/tensorboard/<spec>/<configuration>/<run id>, which `tensorboard --logdir
<out>/tensorboard` shows grouped by spec and configuration), `mlflow` (MLflow's
client: an experiment per spec, a run per gstc run tagged with its configuration) and
`wandb` (Weights & Biases: a project per spec, a run per gstc run with its id as id and
name, grouped by configuration; offline under <out>/wandb unless an account is set up,
for `wandb sync` later).
"""

from __future__ import annotations

import json
import sys
from typing import Any, Protocol

from gstc.errors import did_you_mean
from gstc.manifest import ResultsDir
from gstc.runtime.train import Callback, Member, Trainer

ENV = "GSTC_TRACK"  # comma-separated tracker names, used where --track is not given
# name -> (the module it needs, the gstc extra that brings it)
EXTRAS = {"tensorboard": ("tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow"), "wandb": ("wandb", "wandb")}


class Tracker(Protocol):
    """One tracking service for one training call; each method gets a run id."""

    def open(self, run_id: str, config: str, params: dict, resumed_from: int | None) -> None: ...

    def log(self, run_id: str, step: int, metrics: dict[str, float]) -> None:
        """A pruning event's numbers (during its epoch), or an epoch's end (after its checkpoint): its record,
        empty for an epoch without one (the start, after pruning at initialization)."""

    def close(self, run_id: str, status: str) -> None:
        """The run left training: status done, failed, or stopped (killed, interrupted: a later call resumes it)."""


class TensorBoard:
    """torch.utils.tensorboard: one event-file folder per run; a resumed run purges the steps it trains again."""

    def __init__(self, results: ResultsDir, spec: str) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer_class = SummaryWriter
        self.root = results.root / "tensorboard" / spec
        self.writers: dict[str, Any] = {}

    def open(self, run_id: str, config: str, params: dict, resumed_from: int | None) -> None:
        folder = self.root / config.replace("/", "_") / run_id
        # purge_step: the events of epochs after the checkpoint (logged before a kill) are replaced, not doubled
        writer = self.writer_class(log_dir=str(folder), purge_step=None if resumed_from is None else resumed_from + 1)
        if resumed_from is None:
            writer.add_text("configuration", f"```\n{json.dumps(params, indent=1)}\n```", 0)
        self.writers[run_id] = writer

    def log(self, run_id: str, step: int, metrics: dict[str, float]) -> None:
        writer = self.writers[run_id]
        for name, value in metrics.items():
            writer.add_scalar(name, value, step)

    def close(self, run_id: str, status: str) -> None:
        self.writers.pop(run_id).close()


class MLflow:
    """MLflow's client: one MLflow run per gstc run, in the experiment named after the spec, tagged and named by the
    run id, so that a resumed run finds and continues it; the tracking URI is MLflow's own ($MLFLOW_TRACKING_URI,
    else its default local store). Epochs a resumed run trains again are not logged twice (their numbers are those
    logged before the kill). run.json and epochs.jsonl are the run's artifacts."""

    def __init__(self, results: ResultsDir, spec: str) -> None:
        import os

        # A server that is down fails the call at once (MLflow retries for minutes by default), and is dropped.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        from mlflow.entities import Metric
        from mlflow.tracking import MlflowClient

        self.metric, self.client, self.results, self.spec = Metric, MlflowClient(), results, spec
        found = self.client.get_experiment_by_name(spec)
        self.experiment = found.experiment_id if found else self.client.create_experiment(spec)
        self.runs: dict[str, str] = {}  # gstc run id -> MLflow run id
        self.logged: dict[str, dict[str, int]] = {}  # gstc run id -> metric -> last step already logged

    def open(self, run_id: str, config: str, params: dict, resumed_from: int | None) -> None:
        found = self.client.search_runs([self.experiment], filter_string=f"tags.`gstc.run_id` = '{run_id}'",
                                        max_results=1)
        if found:
            mlflow_id = found[0].info.run_id
            self.client.update_run(mlflow_id, status="RUNNING")
            history = {key: max(m.step for m in self.client.get_metric_history(mlflow_id, key))
                       for key in found[0].data.metrics}
        else:
            from mlflow.entities import Param

            run = self.client.create_run(self.experiment, run_name=run_id, tags={
                "gstc.run_id": run_id, "gstc.spec": self.spec, "gstc.config": config})
            mlflow_id, history = run.info.run_id, {}
            flat = _flatten(params)
            items = [Param(k, str(v)[:6000]) for k, v in flat.items()]
            for i in range(0, len(items), 100):  # MLflow takes at most 100 parameters a batch
                self.client.log_batch(mlflow_id, params=items[i:i + 100])
        self.runs[run_id], self.logged[run_id] = mlflow_id, history
        if resumed_from is not None:  # epochs up to the checkpoint that a killed call had not logged yet
            for step, row in sorted(recorded(self.results, run_id, -1, resumed_from).items()):
                self.log(run_id, step, row)

    def log(self, run_id: str, step: int, metrics: dict[str, float]) -> None:
        import time

        done = self.logged[run_id]
        now = int(time.time() * 1000)
        batch = [self.metric(k, v, now, step) for k, v in metrics.items() if done.get(k, -1) < step]
        if batch:
            self.client.log_batch(self.runs[run_id], metrics=batch)

    def close(self, run_id: str, status: str) -> None:
        mlflow_id = self.runs.pop(run_id)
        for path in (self.results.run_json(run_id), self.results.epochs_jsonl(run_id)):
            if path.exists():
                self.client.log_artifact(mlflow_id, str(path))
        if status != "stopped":  # a stopped run stays RUNNING: the next call continues it
            self.client.set_terminated(mlflow_id, "FINISHED" if status == "done" else "FAILED")


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
    epoch ends, after its checkpoint (Tracking follows Checkpoints in the loop's callbacks). A call that closes its
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


def recorded(results: ResultsDir, run_id: str, after: int, upto: int) -> dict[int, dict[str, float]]:
    """The run's own records of the epochs after `after` up to `upto` (its checkpoint), as tracker rows by epoch:
    what a resumed call logs again where a killed one may not have reached its tracker."""
    from gstc.manifest import read_jsonl

    rows: dict[int, dict[str, float]] = {}
    for path in (results.events_jsonl(run_id), results.epochs_jsonl(run_id)):  # an epoch's events first
        for record in read_jsonl(path) if path.exists() else []:
            if after < record["epoch"] <= upto:
                rows.setdefault(record["epoch"], {}).update(metrics(record))
    return rows


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """A resolved configuration as dotted parameter names (`train.optimizer.lr`)."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): value}


BUILT_IN = {"tensorboard": TensorBoard, "mlflow": MLflow, "wandb": WandB}
# (results folder, tracker) pairs that failed in this process: off for its later packs too (a warning apiece)
OFF: set[tuple[str, str]] = set()


def check(names: list[str]) -> None:
    """ValueError for an unknown tracker (did-you-mean) or one whose package is not installed (the extra)."""
    import importlib.util

    for name in names:
        if name not in BUILT_IN:
            raise ValueError(f"--track: unknown tracker {name!r}{did_you_mean(name, BUILT_IN)}; known: "
                             f"{', '.join(BUILT_IN)}")
        module, extra = EXTRAS[name]
        if importlib.util.find_spec(module) is None:
            raise ValueError(f"--track {name} needs {module}, which is not installed: pip install 'gstc[{extra}]'")


def metrics(record: dict) -> dict[str, float]:
    """An epochs.jsonl record or an events.jsonl record as scalar series."""
    if "train_loss" in record:
        names = ("train_loss", "train_acc", "test_loss", "test_acc", "lr", "params", "nonzero")
        return {f"epoch/{k}": float(record[k]) for k in names if isinstance(record.get(k), (int, float))}
    out = {f"event/{k}": float(record[k]) for k in ("pre_acc", "post_acc", "stability") if record.get(k) is not None}
    for layer in record.get("layers") or []:
        if "kept" in layer:  # the units of the layer left after the event
            out[f"kept/{layer['layer']}"] = float(layer["kept"])
        if "overlap" in layer:  # a moving mask's move
            out[f"move/{layer['layer']}/overlap"] = float(layer["overlap"])
    return out


class Tracking(Callback):
    """The trackers named for this call, fed by the loop; a failing one is warned about once and dropped."""

    def __init__(self, results: ResultsDir, spec: str, names: list[str]) -> None:
        self.trackers: dict[str, Any] = {}
        self.where = str(results.root)
        for name in names:
            if (self.where, name) not in OFF:
                self._guard(name, lambda name=name: self.trackers.__setitem__(name, BUILT_IN[name](results, spec)))

    def _guard(self, name: str, action: Any) -> None:
        try:
            action()
        except Exception as exc:  # a tracker never stops training
            self.trackers.pop(name, None)
            if (self.where, name) not in OFF:
                OFF.add((self.where, name))
                print(f"warning: tracker {name} failed and is off for the rest of this call ({type(exc).__name__}: "
                      f"{exc}); the runs' own files are complete", file=sys.stderr)

    def _each(self, method: str, *args: Any) -> None:
        for name, tracker in list(self.trackers.items()):
            self._guard(name, lambda tracker=tracker: getattr(tracker, method)(*args))

    def start(self, trainer: Trainer, resumed_from: int | None) -> None:
        for m in trainer.members:
            self._each("open", m.run.id, m.config.id, m.config.resolved.model_dump(mode="json"), resumed_from)

    def epoch_end(self, trainer: Trainer, epoch: int, records: dict[int, dict]) -> None:
        for m in trainer.alive:
            # empty where the epoch has no record: a tracker holding the epoch's events back commits them here
            self._each("log", m.run.id, epoch, metrics(records[m.k]) if m.k in records else {})

    def event(self, trainer: Trainer, member: Member, record: dict) -> None:
        self._each("log", member.run.id, record["epoch"], metrics(record))

    def end(self, trainer: Trainer) -> None:
        for m in trainer.members:
            status = "done" if trainer.finished(m) else "failed" if m.failure is not None else "stopped"
            self._each("close", m.run.id, status)


__all__ = ["BUILT_IN", "ENV", "Tracking", "check", "metrics"]
