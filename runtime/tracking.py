"""Trackers: each run's numbers also where researchers watch a sweep (`gstc run --track NAME`, or $GSTC_TRACK).

`Tracking` is a callback of the loop: per run it opens one tracked run named by the run id
(a resumed run continues it), logs every epoch's record and every pruning event (its
stability and each layer's sparsity), and closes it. Trackers are chosen at run time and
are never part of a run's identity. A tracker that raises (a server down, a full disk)
is warned about once, on stderr, and dropped for the rest of the call: training goes on,
and the run's own files are what count.

Built in: `tensorboard` (torch's SummaryWriter; event files under
<out>/tensorboard/<spec>/<configuration>/<run id>, which `tensorboard --logdir
<out>/tensorboard` shows grouped by spec and configuration) and `mlflow` (MLflow's
client: an experiment per spec, a run per gstc run tagged with its configuration).
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
EXTRAS = {"tensorboard": ("tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow")}


class Tracker(Protocol):
    """One tracking service for one training call; each method gets a run id."""

    def open(self, run_id: str, config: str, params: dict, resumed_from: int | None) -> None: ...

    def log(self, run_id: str, step: int, metrics: dict[str, float]) -> None: ...

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


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """A resolved configuration as dotted parameter names (`train.optimizer.lr`)."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): value}


BUILT_IN = {"tensorboard": TensorBoard, "mlflow": MLflow}
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
            if m.k in records:
                self._each("log", m.run.id, epoch, metrics(records[m.k]))

    def event(self, trainer: Trainer, member: Member, record: dict) -> None:
        self._each("log", member.run.id, record["epoch"], metrics(record))

    def end(self, trainer: Trainer) -> None:
        for m in trainer.members:
            status = "done" if trainer.finished(m) else "failed" if m.failure is not None else "stopped"
            self._each("close", m.run.id, status)


__all__ = ["BUILT_IN", "ENV", "Tracking", "check", "metrics"]
