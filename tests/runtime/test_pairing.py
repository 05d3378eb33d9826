"""Two runs with the same seed share their randomness: the same initial weights, data order, augmentation,
random targets and noise, so they differ only where their configurations do (what paired comparisons rely on)."""

from __future__ import annotations

import pytest

from gstc.jsonio import read_jsonl
from gstc.paths import ResultsDir
from tests.runtime.conftest import compile_text, run_plan

SPEC = """\
gstc: 1
name: pairs
seeds: 2
model: {arch: vgg11_bn, width: 0.125}
data: {dataset: digits, augment: true}
train: {epochs: 2, batch_size: 128, optimizer: {name: sgd, lr: 0.05, momentum: 0.9}}
prune:
  target: random
  schedule: {start: 1}
  layers: [{select: conv8, amount: 0.5}]
variants:
  baseline: {prune: null}
  random: {}
  random-zero: {prune.mode: {kind: zero, duration: {epochs: 1}}}
  noise: {prune.mode: {kind: gaussian, duration: {epochs: 1}}}
  noise-2: {prune.mode: {kind: gaussian, duration: {epochs: 2}}}   # a window past the run's end: epoch 2 as noise's
"""
KEYS = ("train_loss", "train_acc", "test_loss", "test_acc")


@pytest.mark.slow  # 15 s: ten runs
def test_same_seed_runs_share_everything_until_their_configurations_differ(tmp_path):
    plan = compile_text(SPEC)
    results = ResultsDir(tmp_path / "r")
    run_plan(plan, results)
    epochs = {(r.config, r.seed): read_jsonl(results.epochs_jsonl(r.id)) for r in plan.runs}
    events = {(r.config, r.seed): read_jsonl(results.events_jsonl(r.id)) for r in plan.runs}
    for seed in (0, 1):
        # Before the first event (after epoch 1's training): initialization, data order and augmentation are
        # the seed's. Epoch 1's test numbers are measured after the event, so only its training is shared.
        first = {c.id: [epochs[c.id, seed][0][k] for k in KEYS[:2]] for c in plan.configs}
        assert len({tuple(v) for v in first.values()}) == 1, first
        # The random filters an event picks come from (seed, epoch): the same whatever the mode does with them.
        picked = {c: events[c, seed][0]["layers"][0]["mean_score"] for c in ("random", "random-zero", "noise")}
        assert len(set(picked.values())) == 1, picked
    # Different seeds differ from the first epoch on.
    assert epochs["baseline", 0][0]["train_loss"] != epochs["baseline", 1][0]["train_loss"]
    # After the event the configurations differ: pruned, zeroed and noised runs leave the baseline in epoch 2.
    after = {c.id: epochs[c.id, 0][1]["train_loss"] for c in plan.configs if c.id != "noise-2"}
    assert len(set(after.values())) == len(after), after
    # The noise is drawn from (seed, epoch), not from the configuration: two noise configurations whose
    # windows both cover epoch 2 add the same noise to the same weights there, to the last bit.
    for seed in (0, 1):
        assert epochs["noise-2", seed] == [dict(e, seconds=n["seconds"]) for e, n in
                                           zip(epochs["noise", seed], epochs["noise-2", seed])]
