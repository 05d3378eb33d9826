"""The results layout and file formats (docs/design.md, "Results"); the one owner of result paths.

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

Every other module (the runtime, status, report, diff) asks `ResultsDir` for paths and
reads and writes through the helpers here, so the layout lives in one place.

File rules:
- JSON files are replaced atomically (temporary file, fsync, rename, fsync of the
  folder: `gstc.atomic`, the one writer): a reader or a killed writer never sees half
  a file. NaN and infinities become null (JSON has
  no NaN; `allow_nan=False` guarantees the output is strict JSON).
- JSONL files grow by one fsynced line per record. A process killed mid-write can leave
  a torn last line; readers skip it, the next append drops it, and resume rewrites the
  file with `truncate_jsonl`.

Run status, in run.json's "status": "running", "done", or "failed" (with
"error": {"epoch", "reason"}); "pending" when there is no run.json (no folder yet).
A run killed without a chance to write "failed" stays "running" on disk until resumed.
"damaged": run.json cannot be read, or `gstc run` found another of the run's files
unreadable and said so in damaged.json ({"file", "reason"}); nothing of such a run is
changed until `gstc run --restart RUN_ID` sets its files aside and trains it again.

Summaries (`summarize_run`, docs/design.md "Measurements"), accuracies and stabilities in percent:
- The window for the best test accuracy starts at the last pruning epoch >= 1 and
  includes it (that epoch's test accuracy is measured after its pruning). A run with no
  events, or only an epoch-0 event ("scratch" pruning at initialization), uses every
  epoch. Ties: the first (earliest) epoch of the best accuracy.
- gen_gap = train_acc - test_acc at that epoch (train_acc: running mean over the
  epoch's batches).
- A lottery level's pruning at its start (events.jsonl's `"start": true`) counts as an
  epoch-0 event does: it precedes all of the level's training (below). A moving mask's
  moves (`"move": true`) are no pruning events: they leave the window and the stability.
- mean_stability = mean of "stability" over pruning epochs >= 1; 100.0 when there is
  none. An epoch-0 (scratch) event does NOT count: the paper's stability measures how
  much pruning *during training* costs a trained network, and at initialization the
  accuracy before pruning is chance level, so its pre/post ratio says nothing about
  that (a scratch-pruned run is "a run that never prunes during training", 100%).
  The epoch-0 event is still kept in events.jsonl.

The manifest (`build_manifest`) is computed only from the files on disk, never from a
run's in-memory state. Bootstrap CIs use the fixed seed `BOOTSTRAP_SEED`, so building
it twice from the same files gives byte-identical JSON.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

import gstc
from gstc.atomic import write_text
from gstc.plan import Plan
from gstc.stats import correlate, summarize

ENV_ROOT = "GSTC_RESULTS"
DEFAULT_ROOT = "results"
STATUSES = ("pending", "running", "done", "failed", "damaged")
# The per-run summary's fields, in this order everywhere (run.json, manifest, reports).
SUMMARY_FIELDS = ("best_test_acc", "best_epoch", "gen_gap", "mean_stability", "final_params", "final_nonzero")
# The summary metrics `gstc diff` and `gstc report` test by default: the paper's outcomes. The
# parameter count is fixed by the plan and the best epoch is not an outcome; each test they
# would add makes Holm's correction stricter for the others (`--metric` adds them).
OUTCOMES = ("best_test_acc", "gen_gap", "mean_stability")
# (x, y) metric pairs correlated over runs.
CORRELATIONS = (("mean_stability", "best_test_acc"), ("mean_stability", "gen_gap"))
BOOTSTRAP_SEED = 0
NO_PRUNING_STABILITY = 100.0  # percent: a run that never prunes during training


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


# --- JSON and JSONL --------------------------------------------------------------------


def jsonable(obj: Any) -> Any:
    """A copy of `obj` that strict JSON can hold: non-finite floats -> None, numpy -> Python.

    Tuples become lists; mapping keys must be strings (json would silently coerce others).
    """
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            if not isinstance(key, str):
                raise TypeError(f"JSON object keys must be strings, got {key!r} ({type(key).__name__})")
            out[key] = jsonable(value)
        return out
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    if isinstance(obj, float):  # numpy scalars arrive here as Python floats (above)
        return obj if math.isfinite(obj) else None
    return obj


def _dumps(obj: Any, indent: int | None) -> str:
    return json.dumps(jsonable(obj), indent=indent, sort_keys=False, allow_nan=False, ensure_ascii=False)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write `obj` as indented JSON, atomically (temp file + rename); NaN/inf -> null."""
    write_text(path, _dumps(obj, indent=2) + "\n")


class DamagedFile(ValueError):
    """A result file that exists but cannot be read: cut short, not JSON, not a gstc file."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path, self.reason = Path(path), reason
        super().__init__(f"{path}: {reason}")


def read_json(path: str | os.PathLike[str]) -> Any:
    """A JSON file's content; DamagedFile when it is not JSON (FileNotFoundError when missing)."""
    raw = Path(path).read_bytes()
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        what = "is empty" if not raw.strip() else f"is not valid JSON ({exc}; the file has {len(raw):,} bytes)"
        raise DamagedFile(path, what) from None


def _parse_line(raw: bytes) -> dict | None:
    """The record on one line, or None when it is not a complete JSON object."""
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _tail_start(fh: Any, end: int, chunk: int = 1 << 16) -> int:
    """Offset (bytes) just after the last newline before `end`, or 0 when there is none."""
    pos = end
    while pos > 0:
        step = min(chunk, pos)
        pos -= step
        fh.seek(pos)
        i = fh.read(step).rfind(b"\n")
        if i >= 0:
            return pos + i + 1
    return 0


def append_jsonl(path: str | os.PathLike[str], obj: dict) -> None:
    """Append one record as one line, then flush and fsync (the runtime: one line per epoch).

    A torn last line left by a killed writer (no trailing newline, not valid JSON) is cut
    off first, so the new record starts on a line of its own; a complete last record
    that only lacks its newline gets one.
    """
    line = (_dumps(obj, indent=None) + "\n").encode("utf-8")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "a+b") as fh:
        end = fh.seek(0, os.SEEK_END)
        if end > 0:
            fh.seek(end - 1)
            if fh.read(1) != b"\n":
                start = _tail_start(fh, end)
                fh.seek(start)
                if _parse_line(fh.read(end - start)) is None:
                    fh.truncate(start)
                else:
                    line = b"\n" + line
        fh.write(line)  # "a" mode: always at the end of the file
        fh.flush()
        os.fsync(fh.fileno())


def read_jsonl(path: str | os.PathLike[str]) -> list[dict]:
    """The records of a JSONL file; [] when the file does not exist yet.

    A last line that is not a complete JSON object is a write torn by a killed process
    and is skipped; a bad line anywhere else is corruption and raises ValueError.
    """
    target = Path(path)
    try:
        raw = target.read_bytes()
    except FileNotFoundError:
        return []
    lines = raw.split(b"\n")
    records: list[dict] = []
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        record = _parse_line(text)
        if record is None:
            if all(not rest.strip() for rest in lines[number:]):
                break  # the torn last line
            raise DamagedFile(target, f"has a line ({number}) that is not a JSON object: {text[:80]!r}")
        records.append(record)
    return records


def truncate_jsonl(path: str | os.PathLike[str], keep: Callable[[dict], bool]) -> int:
    """Rewrite a JSONL file atomically with only the records for which `keep` is true.

    Used on resume to drop lines written after the checkpoint's epoch (and any torn
    line). Returns the number of records kept; a missing file stays missing (0).
    """
    target = Path(path)
    if not target.exists():
        return 0
    kept = [r for r in read_jsonl(target) if keep(r)]
    write_text(target, "".join(_dumps(r, indent=None) + "\n" for r in kept))
    return len(kept)


# --- runs ------------------------------------------------------------------------------


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


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def summarize_run(epochs: list[dict], events: list[dict]) -> dict:
    """A run's summary from its epoch and event records (rules in the module docstring).

    Returns {best_test_acc, best_epoch, gen_gap, mean_stability, final_params} and, where the epochs count them
    (weight and N:M granularity), final_nonzero; raises
    ValueError when there is no epoch to summarize.
    """
    if not epochs:
        raise ValueError("summarize_run: no epoch records")
    ordered = sorted(epochs, key=lambda r: r["epoch"])
    # A lottery level's pruning at its start ("start": true) comes before all of its training, as scratch pruning does;
    # a moving mask's move ("move": true) prunes nothing.
    training_events = sorted((e for e in events if e["epoch"] >= 1 and not e.get("start") and not e.get("move")),
                             key=lambda e: e["epoch"])
    first = training_events[-1]["epoch"] if training_events else ordered[0]["epoch"]
    window = [r for r in ordered if r["epoch"] >= first and _finite(r.get("test_acc"))]
    if not window:
        raise ValueError(f"summarize_run: no epoch with a test accuracy from the last pruning epoch ({first}) on")
    best = window[0]
    for record in window[1:]:
        if record["test_acc"] > best["test_acc"]:  # strict: the first epoch wins ties
            best = record
    gap = best["train_acc"] - best["test_acc"] if _finite(best.get("train_acc")) else None
    stabilities = [float(e["stability"]) for e in training_events if _finite(e.get("stability"))]
    # fmean: correctly rounded mean, independent of summation order details.
    stability = statistics.fmean(stabilities) if stabilities else NO_PRUNING_STABILITY
    out = {"best_test_acc": best["test_acc"], "best_epoch": best["epoch"], "gen_gap": gap,
           "mean_stability": stability, "final_params": ordered[-1].get("params")}
    if "nonzero" in ordered[-1]:  # weight and N:M granularity: the parameters not held at zero
        out["final_nonzero"] = ordered[-1]["nonzero"]
    return out


def _run_entry(plan_run: Any, results: ResultsDir) -> dict:
    status, run, found = run_state(results, plan_run.id)
    # config and seed come from this plan: the same run id may have been computed for
    # another spec, whose run.json names its own configuration.
    entry: dict[str, Any] = {"id": plan_run.id, "config": plan_run.config, "seed": plan_run.seed,
                             "status": status, "seconds": (run or {}).get("seconds"), "summary": None}
    if status == "done":
        summary = run.get("summary") if run else None
        if summary is None:
            try:
                summary = summarize_run(read_jsonl(results.epochs_jsonl(plan_run.id)),
                                        read_jsonl(results.events_jsonl(plan_run.id)))
            except DamagedFile as exc:
                status = entry["status"] = "damaged"
                entry["error"] = {"file": str(exc.path), "reason": exc.reason}
            except ValueError as exc:
                raise ValueError(f"{results.run_dir(plan_run.id)}: run is done but cannot be summarized: {exc}") from exc
        if status == "done":
            entry["summary"] = dict(summary)
    elif status == "failed":
        entry["error"] = (run or {}).get("error")
    elif status == "damaged":
        entry["error"] = found
    if run is not None:
        entry["environment"] = run.get("environment") or {}
    return entry


def _correlations(runs: Iterable[dict], point: dict | None, over: str, configs: list[str]) -> list[dict]:
    """Each pair of CORRELATIONS over these runs; `over` (all, pruned, point) and `configs` say which runs."""
    runs = list(runs)
    out = []
    for x, y in CORRELATIONS:
        pairs = [(r["summary"][x], r["summary"][y]) for r in runs
                 if _finite(r["summary"].get(x)) and _finite(r["summary"].get(y))]
        stats = correlate([p[0] for p in pairs], [p[1] for p in pairs], seed=BOOTSTRAP_SEED)
        out.append({"x": x, "y": y, "point": point, "over": over, "configs": configs, **stats})
    return out


def config_runs(plan: Plan, config: Any) -> list[str]:
    """The runs a configuration's summary stands for, in plan order: its own, or a lottery's last level (its
    sparsest tickets or controls; `gstc report` shows the levels before it level by level)."""
    if config.chain is not None:
        return [r.id for r in plan.runs if r.id in set(config.chain[-1])]
    return [r.id for r in plan.runs if r.config == config.id]


def metric_values(manifest: dict, config_id: str, metric: str) -> tuple[list[float], list[int]]:
    """A configuration's done runs' finite values of `metric` and their seeds, in plan order."""
    ids = set(next(c["runs"] for c in manifest["configs"] if c["id"] == config_id))
    runs = [r for r in manifest["runs"] if r["id"] in ids and r["status"] == "done" and r.get("summary")
            and _finite(r["summary"].get(metric))]
    return [float(r["summary"][metric]) for r in runs], [int(r["seed"]) for r in runs]


def correlation_groups(plan: Plan) -> list[dict]:
    """The groups of configurations correlated apart from the overall one, as partial sweep points.

    Every sweep point, in plan order; then, when the sweep has more than one axis, every
    value of each axis (`{"prune.schedule.every": 40}`: the configurations of every
    target at that cadence, as the paper's Figure 3 correlates them at each rate).
    """
    points: list[dict] = []
    for config in plan.configs:
        if config.point and config.point not in points:
            points.append(dict(config.point))
    axes = list(dict.fromkeys(k for p in points for k in p))
    if len(axes) > 1:
        for axis in axes:
            values: list = []  # a swept value may be a list (milestones): not hashable
            for p in points:
                if axis in p and p[axis] not in values:
                    values.append(p[axis])
            points.extend({axis: value} for value in values)
    return points


def build_manifest(plan: Plan, results: ResultsDir, environment: dict | None = None) -> dict:
    """The spec's manifest, computed from the run folders on disk only.

    runs: every plan run in plan order with its status, seconds, summary (done), error
    (failed: {"epoch", "reason"}; damaged: {"file", "reason"}) and environment (its
    run.json's: the code and machine that trained it). configs: per configuration, its runs
    (`config_runs`: a lottery's, its last level), n done and summarize() of every summary metric over them (bootstrap seed
    BOOTSTRAP_SEED). correlations (with p-values and CIs, `correlate`): over all done
    runs ("point": null, "over": "all"); where some configurations prune and some do not,
    over the done runs of those that prune ("over": "pruned": a baseline's best epoch may be
    any epoch, a pruned run's only one from its last event on, which alone can make a
    correlation over all runs); then over the done runs of each group of
    `correlation_groups` ("over": "point": configurations whose `point` holds every entry of
    that group's; configurations with an empty point only enter the overall entries). Each
    entry lists the configurations it covers ("configs").
    """
    runs = [_run_entry(r, results) for r in plan.runs]
    done = [r for r in runs if r["status"] == "done"]
    configs = []
    for config in plan.configs:
        ids = config_runs(plan, config)
        mine = [r for r in done if r["id"] in set(ids)]
        metrics = {name: summarize([r["summary"][name] for r in mine if _finite(r["summary"].get(name))],
                                   seed=BOOTSTRAP_SEED)
                   for name in SUMMARY_FIELDS}
        configs.append({"id": config.id, "n": len(mine), "runs": ids, "metrics": metrics})
    correlations = _correlations(done, None, "all", [c.id for c in plan.configs])
    pruned = [c.id for c in plan.configs if c.schedules or c.chain is not None]
    if pruned and len(pruned) < len(plan.configs):
        correlations += _correlations((r for r in done if r["config"] in set(pruned)), None, "pruned", pruned)
    for point in correlation_groups(plan):
        ids = [c.id for c in plan.configs if c.point and all(c.point.get(k) == v for k, v in point.items())]
        correlations.extend(_correlations((r for r in done if r["config"] in set(ids)), point, "point", ids))
    return {
        "spec": plan.spec,
        "spec_hash": plan.spec_hash,
        "plan": plan.model_dump(mode="json"),
        "gstc_version": gstc.__version__,
        "environment": dict(environment) if environment else {},
        "runs": runs,
        "configs": configs,
        "correlations": correlations,
    }


def write_manifest(plan: Plan, results: ResultsDir, environment: dict | None = None) -> Path:
    """Build the manifest and write it atomically to specs/<name>/manifest.json."""
    path = results.manifest_json(plan.spec)
    write_json(path, build_manifest(plan, results, environment))
    return path
