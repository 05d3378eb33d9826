"""A spec's results as pandas DataFrames: `gstc.results(SPEC, out=...)` (this module's `results`), and
`gstc export` to CSV or Parquet.

    >>> r = gstc.results("examples/quickstart.yaml", out="results")
    >>> r.runs.groupby("config", observed=True)["best_test_acc"].mean()

Four tables, read from the run folders through the manifest's own readers (the same
numbers as `gstc report`), without torch:

- runs: one row per run of the plan: id, config, variant, each sweep axis as its own
  column, seed, status, the summary metrics, seconds, the environment (`env.*`), and for
  lottery levels their level, kind and sparsity;
- epochs: one row per run and epoch (epochs.jsonl), kept units per layer as `kept.<layer>`;
- events: one row per run, event and layer: pruning events (`kind` "prune"), a lottery
  level's pruning at its start ("start") and a moving mask's moves ("move");
- flatness: one row per run and measured epoch (flatness.json's scalars).

Configurations, variants, statuses and layers are categoricals, epochs and seeds
integers. Runs not done are rows of `runs` with their status (and listed in `missing`);
the other tables hold what their files hold. pandas is an optional extra
(`pip install 'gstc[results]'`; pyarrow too, for Parquet), imported only here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gstc.jsonio import DamagedFile, read_json, read_jsonl
from gstc.manifest import build_manifest
from gstc.paths import ResultsDir
from gstc.summary import SUMMARY_FIELDS
from gstc.plan import Plan

TABLES = ("runs", "epochs", "events", "flatness")


class ResultsError(Exception):
    """A spec without results where gstc looked, or a missing optional package."""


def _pandas() -> Any:
    try:
        import pandas
    except ImportError:
        raise ResultsError("gstc.results needs pandas, which is not installed: pip install 'gstc[results]'") from None
    return pandas


@dataclass
class Results:
    """A spec's results as DataFrames (see the module's docstring); `missing`: the ids of runs not done."""

    plan: Plan
    root: Path
    runs: Any
    epochs: Any
    events: Any
    flatness: Any
    missing: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        done = len(self.runs) - len(self.missing)
        return (f"<gstc results of {self.plan.spec}: {done} of {len(self.runs)} runs done under {self.root}; "
                f"tables: runs {self.runs.shape}, epochs {self.epochs.shape}, events {self.events.shape}, "
                f"flatness {self.flatness.shape}>")

    def tables(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in TABLES}


def results(spec: str | os.PathLike[str] | Plan, out: str | os.PathLike[str] | None = None) -> Results:
    """The results of a spec (a file, or its compiled plan) under `out` (default $GSTC_RESULTS or ./results)."""
    pd = _pandas()
    if isinstance(spec, Plan):
        plan = spec
    else:
        from gstc.compile import compile_file

        plan = compile_file(str(spec))
    where = ResultsDir(out)
    if not any(where.run_dir(r.id).exists() for r in plan.runs):
        raise ResultsError(f"no results of spec {plan.spec!r} under {where.root}: none of its {len(plan.runs)} runs "
                           f"has a folder in {where.runs_dir} (`gstc run` writes them; --out or $GSTC_RESULTS says "
                           "where)")
    manifest = build_manifest(plan, where)
    by_run = {r.id: r for r in plan.runs}
    configs = {c.id: c for c in plan.configs}
    axes = list(dict.fromkeys(k for c in plan.configs for k in c.point))
    rows, epochs, events, flatness = [], [], [], []
    for entry in manifest["runs"]:
        run, config = by_run[entry["id"]], configs[entry["config"]]
        row: dict[str, Any] = {"id": run.id, "config": config.id, "variant": config.variant,
                               **{axis: config.point.get(axis) for axis in axes}, "seed": run.seed,
                               "status": entry["status"], **{m: (entry["summary"] or {}).get(m) for m in SUMMARY_FIELDS},
                               "seconds": entry["seconds"]}
        if run.stage is not None:
            row.update(level=run.stage.level, stage=run.stage.kind, sparsity=run.stage.sparsity)
        row.update({f"env.{k}": v for k, v in (entry.get("environment") or {}).items() if not isinstance(v, (dict, list))})
        rows.append(row)
        key = {"run": run.id, "config": config.id, "seed": run.seed}
        epochs += [{**key, **{k: v for k, v in e.items() if k != "kept"},
                    **{f"kept.{layer}": n for layer, n in (e.get("kept") or {}).items()}}
                   for e in _records(where.epochs_jsonl(run.id))]
        for e in _records(where.events_jsonl(run.id)):
            kind = "start" if e.get("start") else "move" if e.get("move") else "prune"
            head = {**key, "epoch": e["epoch"], "kind": kind,
                    **{k: v for k, v in e.items() if k not in ("epoch", "layers", "start", "move")}}
            events += [{**head, **layer} for layer in e.get("layers") or [{}]]
        flatness += [{**key, "epoch": int(epoch), **{k: v for k, v in m.items() if not isinstance(v, (dict, list))}}
                     for epoch, m in _flatness(where, run.id).items()]
    categories = {"config": [c.id for c in plan.configs], "variant": list(dict.fromkeys(c.variant for c in plan.configs))}
    for axis in axes:  # each sweep axis: its values in plan order (numbers stay numbers, in order)
        values = [c.point[axis] for c in plan.configs if axis in c.point]
        if all(isinstance(v, (str, int, float, bool)) for v in values):
            categories[axis] = list(dict.fromkeys(values))
    runs = _typed(pd, pd.DataFrame(rows), categories, status=True)
    return Results(plan=plan, root=where.root, runs=runs, epochs=_typed(pd, pd.DataFrame(epochs), categories),
                   events=_typed(pd, pd.DataFrame(events), categories), flatness=_typed(pd, pd.DataFrame(flatness),
                                                                                        categories),
                   missing=[r["id"] for r in manifest["runs"] if r["status"] != "done"])


def _records(path: Path) -> list[dict]:
    """A JSONL file's records; none where it is missing or damaged (the runs table says the run's status)."""
    try:
        return read_jsonl(path) if path.exists() else []
    except DamagedFile:
        return []


def _flatness(where: ResultsDir, run_id: str) -> dict:
    path = where.flatness_json(run_id)
    try:
        return read_json(path).get("epochs", {}) if path.exists() else {}
    except DamagedFile:
        return {}


def _typed(pd: Any, frame: Any, categories: dict[str, list[str]], status: bool = False) -> Any:
    """Categoricals for configurations, variants, statuses, layers and event kinds; integers for seeds and epochs."""
    for name, values in categories.items():
        if name in frame and (name in ("config", "variant") or name in frame.columns):
            frame[name] = pd.Categorical(frame[name], categories=values)
    if status:
        from gstc.runstate import STATUSES

        frame["status"] = pd.Categorical(frame["status"], categories=list(STATUSES))
    for name in ("layer", "kind", "stage"):
        if name in frame:
            frame[name] = frame[name].astype("category")
    for name in ("seed", "epoch", "batch", "level", "best_epoch", "final_params", "final_nonzero", "params", "macs",
                 "nonzero", "prune", "kept", "active", "moved"):
        if name in frame:
            frame[name] = frame[name].astype("Int64")
    return frame


def export(res: Results, folder: Path, fmt: str) -> list[Path]:
    """Write each table as `folder`/<table>.csv or .parquet; the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, frame in res.tables().items():
        path = folder / f"{name}.{fmt}"
        if fmt == "csv":
            frame.to_csv(path, index=False)
        else:
            try:
                frame.to_parquet(path, index=False)
            except ImportError:
                raise ResultsError("--format parquet needs pyarrow, which is not installed: "
                                   "pip install 'gstc[results]'") from None
        written.append(path)
    return written
