"""gstc.summary: a run's summary from its epoch and event records, checked against numbers worked out by hand."""

from __future__ import annotations

import pytest

from gstc.summary import summarize_run


def epoch_records(tests, trains=None, params_=None):
    return [{"epoch": i, "train_acc": (trains or [90.0] * len(tests))[i - 1], "test_acc": t,
             "params": (params_ or [100] * len(tests))[i - 1]} for i, t in enumerate(tests, start=1)]


def test_summarize_run_baseline_uses_all_epochs_first_best():
    epochs = epoch_records([50, 60, 72, 65, 72, 70], trains=[60, 70, 80, 85, 88, 90], params_=[9, 9, 9, 9, 9, 8])
    assert summarize_run(epochs, []) == {"best_test_acc": 72, "best_epoch": 3, "gen_gap": 8,
                                         "mean_stability": 100.0, "final_params": 8}


def test_summarize_run_best_from_last_pruning_epoch_on():
    epochs = epoch_records([50, 60, 76, 71, 74, 74], trains=[60, 70, 80, 85, 90.5, 91], params_=[10, 9, 9, 8, 8, 8])
    events = [{"epoch": 4, "stability": 80.0}, {"epoch": 2, "stability": 95.5}]
    s = summarize_run(list(reversed(epochs)), events)  # record order does not matter
    assert s == {"best_test_acc": 74, "best_epoch": 5, "gen_gap": 16.5, "mean_stability": 87.75, "final_params": 8}
    # the last pruning epoch itself is in the window (its accuracy is measured after pruning)
    assert summarize_run(epoch_records([50, 60, 76, 75, 74, 74]), events)["best_epoch"] == 4


def test_summarize_run_scratch_event_does_not_count():
    epochs = epoch_records([50, 80, 70])
    scratch = {"epoch": 0, "stability": 10.0}
    # only an epoch-0 event: a run that never prunes during training
    assert summarize_run(epochs, [scratch]) == summarize_run(epochs, [])
    assert summarize_run(epochs, [scratch])["mean_stability"] == 100.0
    assert summarize_run(epochs, [scratch])["best_epoch"] == 2
    s = summarize_run(epochs, [scratch, {"epoch": 3, "stability": 90.0}])
    assert (s["mean_stability"], s["best_epoch"], s["best_test_acc"]) == (90.0, 3, 70)


def test_summarize_run_without_epochs():
    with pytest.raises(ValueError, match="no epoch"):
        summarize_run([], [{"epoch": 1, "stability": 90.0}])
