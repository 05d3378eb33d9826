"""Moving masks: a RigL step equals one written here, SET grows among the inactive weights, each layer's sparsity
stays constant to the weight while training, and moved weights start with no optimizer state."""

from __future__ import annotations

import math

import pytest

from gstc.jsonio import read_jsonl
from gstc.paths import ResultsDir

from tests.runtime.conftest import compile_text, run_plan

torch = pytest.importorskip("torch")

from gstc.runtime.data import load  # noqa: E402
from gstc.runtime.moving import fraction, move, move_batches, moved  # noqa: E402
from gstc.runtime.train import Trainer  # noqa: E402

SPEC = """
gstc: 1
name: m
seeds: 1
model: {{arch: vgg11_bn, width: 0.125}}
data: {{dataset: digits}}
train: {{epochs: 2, batch_size: 128, optimizer: {{name: sgd, lr: 0.05, momentum: 0.9}}}}
prune:
  granularity: weight
  target: random
  schedule: {{epochs: [0]}}
  amount: 0.8
  distribution: erk
  layers: [{{select: "*"}}]
moving: {{rule: {rule}, delta_t: {delta_t}}}
"""


def random_layer(seed: int, shape=(16, 8, 3, 3), sparsity: float = 0.8):
    g = torch.Generator().manual_seed(seed)
    weight, grad = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    held = torch.rand(shape, generator=g) < sparsity
    return weight.masked_fill(held, 0), grad, held


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_rigl_step_equals_one_written_with_topk(seed):
    weight, grad, held = random_layer(seed)
    active = int((~held).sum())
    n = moved(active, 0.3)
    # by hand: the n active weights of smallest |w| leave; of the weights inactive then, the n of largest |grad| come
    drop = torch.topk(weight.abs().masked_fill(held, float("inf")).flatten(), n, largest=False).indices
    inactive = held.flatten().clone()
    inactive[drop] = True
    grow = torch.topk(grad.abs().flatten().masked_fill(~inactive, -1.0), n).indices
    expected = inactive.clone()
    expected[grow] = False
    new = move(weight, grad, held, n, "rigl")
    assert torch.equal(new.flatten(), expected)
    assert int(new.sum()) == int(held.sum())  # the layer's sparsity, to the weight


def test_a_set_step_grows_at_random_among_the_inactive_weights():
    weight, grad, held = random_layer(3)
    n = moved(int((~held).sum()), 0.3)
    new = move(weight, grad, held, n, "set", torch.Generator().manual_seed(0))
    again = move(weight, grad, held, n, "set", torch.Generator().manual_seed(0))
    other = move(weight, grad, held, n, "set", torch.Generator().manual_seed(1))
    assert torch.equal(new, again) and not torch.equal(new, other)  # drawn from the generator
    dropped = held.logical_not() & new
    assert int(dropped.sum()) <= n and int(new.sum()) == int(held.sum())
    smallest = weight.abs().masked_fill(held, float("inf")).flatten().sort().values[n - 1]
    assert bool((weight.abs()[dropped] <= smallest).all())  # what left were the smallest active ones


def test_the_moved_fraction_decays_with_a_cosine_to_zero_at_the_stop():
    assert fraction(0, 100, 0.3) == pytest.approx(0.3)
    assert fraction(50, 100, 0.3) == pytest.approx(0.15)
    assert fraction(100, 100, 0.3) == pytest.approx(0.0, abs=1e-12) and fraction(101, 100, 0.3) == 0.0
    assert moved(10, 0.25) == 3 and moved(10, 0.24) == 2  # round half up: 2.5 -> 3
    from gstc.moving import MovingSpec

    assert move_batches(MovingSpec(rule="set", delta_t=10, stop=0.5), 100) == [10, 20, 30, 40, 50]


@pytest.mark.slow  # trains runs: with the slow tests (the default run stays under 4 minutes)
@pytest.mark.parametrize("rule", ["rigl", "set"])
def test_training_keeps_every_layers_sparsity_to_the_weight_while_the_mask_moves(rule, tmp_path):
    plan = compile_text(SPEC.format(rule=rule, delta_t=3))
    results = ResultsDir(tmp_path)
    report, _ = run_plan(plan, results)
    assert not report.failed and not report.unfinished
    run, config = plan.runs[0], plan.configs[0]
    records = read_jsonl(results.epochs_jsonl(run.id))
    assert [r["nonzero"] for r in records] == [config.counts.nonzero[1]] * 2
    kept = {s.layer: s.kept[-1] for s in config.schedules}
    assert all(r["kept"] == records[0]["kept"] for r in records)
    moves = [e for e in read_jsonl(results.events_jsonl(run.id)) if e.get("move")]
    batches = 2 * math.ceil(len(load(config.resolved.data).train_y) / 128)  # the training's
    end = int(0.75 * batches)  # T_end: `stop` (0.75 by default) of the training's batches
    assert [e["batch"] for e in moves] == [t for t in move_batches(config.resolved.moving, batches)
                                           if any(moved(kept[s.layer], fraction(t, end, 0.3)) for s in config.schedules
                                                  if s.kept[-1] < s.units)]
    for e in moves:
        for layer in e["layers"]:
            assert layer["active"] == kept[layer["layer"]]  # constant: the mask moved, its size did not
            assert layer["moved"] == moved(kept[layer["layer"]], e["fraction"]) > 0
            assert 1 - layer["moved"] / layer["active"] <= layer["overlap"] < 1
    final = torch.load(results.checkpoint(run.id), weights_only=True)
    for name, state in final["pruner"]["layers"].items():
        assert int((~state["held"]).sum()) == kept[name]
        weight = final["model"][f"{name}.weight"]
        assert bool((weight[state["held"]] == 0).all())  # the inactive weights are exactly zero


def test_moved_weights_start_without_optimizer_state_and_dropped_ones_at_zero():
    plan = compile_text(SPEC.format(rule="rigl", delta_t=1000))
    config = plan.configs[0]
    trainer = Trainer(plan.runs, plan.configs, load(config.resolved.data), torch.device("cpu"))
    trainer.plugins_epoch(0)  # the first mask
    trainer.train_epoch(1)  # no move (delta_t past the training): momentum of trained steps
    torch.manual_seed(0)
    for p in trainer.model.parameters():  # a dense gradient, as a move reads it (before the hooks mask it)
        p.grad = torch.randn_like(p)
    m = trainer.members[0]
    st = m.pruner.weights["conv5"]
    before, buffer = st.held.clone(), trainer.opt.state[st.p.conv.weight]["momentum_buffer"].clone()
    record = trainer.plugins[0].move_member(trainer, m, config.resolved.moving, 5)
    changed = before ^ st.held
    assert record["layers"] and int(changed.sum()) > 0
    after = trainer.opt.state[st.p.conv.weight]["momentum_buffer"]
    assert bool((after[changed] == 0).all()) and torch.equal(after[~changed], buffer[~changed])
    assert bool((st.p.weight.detach()[st.held] == 0).all())
    assert math.isclose(record["fraction"], fraction(5, trainer.plugins[0].end[0], 0.3))


@pytest.mark.slow  # 17 s: four runs in float64
def test_a_pack_moves_each_members_mask_as_it_would_move_alone(tmp_path):
    """Two seeds as one packed model: each member's moves, masks and numbers are those it has alone (float64)."""
    plan = compile_text(SPEC.format(rule="rigl", delta_t=4).replace("seeds: 1", "seeds: 2"))
    alone, packed = ResultsDir(tmp_path / "alone"), ResultsDir(tmp_path / "packed")
    run_plan(plan, alone, dtype=torch.float64)
    run_plan(plan, packed, dtype=torch.float64, pack=2)
    for run in plan.runs:
        assert read_jsonl(packed.events_jsonl(run.id)) == read_jsonl(alone.events_jsonl(run.id))
        a, b = read_jsonl(alone.epochs_jsonl(run.id)), read_jsonl(packed.epochs_jsonl(run.id))
        assert [r["test_acc"] for r in a] == pytest.approx([r["test_acc"] for r in b], abs=1e-9)
