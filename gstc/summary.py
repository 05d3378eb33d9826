"""A run's summary: what one training run measured, from its epoch and event records (docs/design.md,
"Measurements").

Accuracies and stabilities are in percent:
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
"""

from __future__ import annotations

import math
import statistics
from typing import Any

# The per-run summary's fields, in this order everywhere (run.json, manifest, reports).
SUMMARY_FIELDS = ("best_test_acc", "best_epoch", "gen_gap", "mean_stability", "final_params", "final_nonzero")
# The summary metrics `gstc diff` and `gstc report` test by default: the paper's outcomes. The
# parameter count is fixed by the plan and the best epoch is not an outcome; each test they
# would add makes Holm's correction stricter for the others (`--metric` adds them).
OUTCOMES = ("best_test_acc", "gen_gap", "mean_stability")
NO_PRUNING_STABILITY = 100.0  # percent: a run that never prunes during training


def finite(value: Any) -> bool:
    """Whether `value` is a finite number (a summary field may be None, NaN in memory, or a bool it must not count)."""
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
    window = [r for r in ordered if r["epoch"] >= first and finite(r.get("test_acc"))]
    if not window:
        raise ValueError(f"summarize_run: no epoch with a test accuracy from the last pruning epoch ({first}) on")
    best = window[0]
    for record in window[1:]:
        if record["test_acc"] > best["test_acc"]:  # strict: the first epoch wins ties
            best = record
    gap = best["train_acc"] - best["test_acc"] if finite(best.get("train_acc")) else None
    stabilities = [float(e["stability"]) for e in training_events if finite(e.get("stability"))]
    # fmean: correctly rounded mean, independent of summation order details.
    stability = statistics.fmean(stabilities) if stabilities else NO_PRUNING_STABILITY
    out = {"best_test_acc": best["test_acc"], "best_epoch": best["epoch"], "gen_gap": gap,
           "mean_stability": stability, "final_params": ordered[-1].get("params")}
    if "nonzero" in ordered[-1]:  # weight and N:M granularity: the parameters not held at zero
        out["final_nonzero"] = ordered[-1]["nonzero"]
    return out
