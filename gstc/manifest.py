"""A spec's manifest: every run's status and summary, per-configuration statistics and correlations.

The manifest (`build_manifest`, written to specs/<name>/manifest.json) is computed only
from the files on disk, never from a run's in-memory state: run folders are read through
`gstc.runstate` and summarized by `gstc.summary`. Bootstrap CIs use the fixed seed
`BOOTSTRAP_SEED`, so building it twice from the same files gives byte-identical JSON.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import gstc
from gstc.jsonio import DamagedFile, read_jsonl, write_json
from gstc.paths import ResultsDir
from gstc.plan import Plan
from gstc.runstate import run_state
from gstc.stats import correlate, summarize
from gstc.summary import SUMMARY_FIELDS, finite, summarize_run

# (x, y) metric pairs correlated over runs.
CORRELATIONS = (("mean_stability", "best_test_acc"), ("mean_stability", "gen_gap"))
BOOTSTRAP_SEED = 0


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
                 if finite(r["summary"].get(x)) and finite(r["summary"].get(y))]
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
            and finite(r["summary"].get(metric))]
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
        metrics = {name: summarize([r["summary"][name] for r in mine if finite(r["summary"].get(name))],
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
