"""The trackers' interface and what they log: TensorBoard and MLflow, and a run's records as tracker rows.

A tracker follows the runs of one training call (`Tracker`: open, log, close, each by run
id); `Tracking` (gstc.runtime.tracking) feeds it from the loop, and W&B's tracker is
gstc.runtime.wandb_tracker. What a tracker logs of a record is `metrics`: scalar series
named `epoch/...`, `event/...`, `kept/<layer>` and `move/<layer>/overlap`. A resumed
call logs again, from the run's own files (`recorded`), the epochs its tracker may lack.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Protocol

from gstc.paths import ResultsDir


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


def recorded(results: ResultsDir, run_id: str, after: int, upto: int) -> dict[int, dict[str, float]]:
    """The run's own records of the epochs after `after` up to `upto` (its checkpoint), as tracker rows by epoch:
    what a resumed call logs again where a killed one may not have reached its tracker."""
    from gstc.jsonio import read_jsonl

    rows: dict[int, dict[str, float]] = {}
    for path in (results.events_jsonl(run_id), results.epochs_jsonl(run_id)):  # an epoch's events first
        for record in read_jsonl(path) if path.exists() else []:
            if after < record["epoch"] <= upto:
                rows.setdefault(record["epoch"], {}).update(metrics(record))
    return rows


def metrics(record: Mapping[str, Any]) -> dict[str, float]:
    """An epochs.jsonl record or an events.jsonl record (gstc.runtime.records; or read back from the file) as scalar
    series."""
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


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """A resolved configuration as dotted parameter names (`train.optimizer.lr`)."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): value}
