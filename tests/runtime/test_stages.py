"""Lottery levels trained by gstc equal an IMP written here: a plain training loop, torch.nn.utils.prune's
global_unstructured for the masks, and the rewinding done by hand."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from gstc.jsonio import read_jsonl
from gstc.paths import ResultsDir

from tests.runtime.conftest import compile_text, run_plan

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402
from torch.nn.utils import prune as torch_prune  # noqa: E402

from gstc.runtime.batches import pack_input  # noqa: E402
from gstc.runtime.data import load  # noqa: E402
from gstc.runtime.rng import ORDER, epoch_generator  # noqa: E402
from gstc.runtime.models import build_model  # noqa: E402

EPOCHS, LEVELS, BATCH = 3, 2, 128
SPEC = f"""
gstc: 1
name: imp
seeds: [3]
model: {{arch: vgg11_bn, width: 0.125}}
data: {{dataset: digits}}
train:
  epochs: {EPOCHS}
  batch_size: {BATCH}
  optimizer: {{name: sgd, lr: 0.05, momentum: 0.9}}
  lr_schedule: {{milestones: [2], gamma: 0.1}}
prune:
  granularity: weight
  scope: global
  scoring: l1
  layers: [{{select: "*"}}]
lottery: {{levels: {LEVELS}, fraction: 0.2}}
variants:
  init: {{}}
  epoch1: {{lottery.rewind: 1}}
"""


class Reference:
    """IMP by hand on gstc's model and data (the same initialization, data order and inputs)."""

    def __init__(self, plan, seed: int):
        config = plan.configs[0]
        self.data = load(config.resolved.data)
        d = self.data
        torch.manual_seed(seed)
        self.model = build_model(arch="vgg11_bn", width=0.125, classes=d.classes, channels=d.channels, size=d.size,
                                 args={}, layers=config.layers).double()
        names = [layer.name for layer in config.layers]
        modules = {**{n: p.conv for n, p in self.model.prunable().items()}, **self.model.dense()}
        self.targets = [(modules[n], "weight") for n in [*names, *[n for n in self.model.dense() if n not in names]]]
        self.seed = seed
        self.init = self.weights()

    def weights(self) -> dict[str, torch.Tensor]:
        """Parameters and buffers by their unpruned names (weight_orig read as weight)."""
        return {k.replace("weight_orig", "weight"): v.detach().clone() for k, v in self.model.state_dict().items()
                if not k.endswith("weight_mask")}

    def rewind(self, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for k, v in self.model.state_dict().items():
                if not k.endswith("weight_mask"):
                    v.copy_(state[k.replace("weight_orig", "weight")])

    def prune(self, count: int) -> None:
        torch_prune.global_unstructured(self.targets, pruning_method=torch_prune.L1Unstructured, amount=count)

    def masks(self) -> list[torch.Tensor]:
        return [m.weight_mask == 0 for m, _ in self.targets]

    def train(self, start: int, keep: int | None = None) -> tuple[list[float], dict | None]:
        """Epochs start+1..EPOCHS with a fresh SGD and the LR schedule from `start`: test accuracies, and the
        weights after epoch `keep`."""
        model, d = self.model, self.data
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[2], gamma=0.1)
        model.zero_grad(set_to_none=True)  # the previous level's last gradients
        for _ in range(start):
            opt.step()  # no gradients: moves nothing, and keeps the scheduler's order warning quiet
            sched.step()
        accs, kept = [], None
        for epoch in range(start + 1, EPOCHS + 1):
            model.train()
            order = torch.randperm(len(d.train_y), generator=epoch_generator(self.seed, epoch, ORDER))
            for i in range(0, len(order), BATCH):
                idx = order[i:i + BATCH]
                x = pack_input(d.train_x[idx].permute(0, 2, 3, 1)[None], d, torch.float64, False)
                loss = F.cross_entropy(model(x), d.train_y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
            sched.step()
            model.eval()
            with torch.no_grad():
                x = pack_input(d.test_x.permute(0, 2, 3, 1)[None], d, torch.float64, False)
                accs.append(100.0 * float((model(x).argmax(1) == d.test_y).double().mean()))
            if epoch == keep:
                kept = self.weights()
        return accs, kept


@pytest.mark.slow  # 66 s: five runs by gstc and five by hand, in float64
def test_lottery_levels_equal_an_imp_written_with_torch_prune_for_rewinding_to_init_and_to_epoch_1(tmp_path):
    plan = compile_text(SPEC)
    results = ResultsDir(tmp_path)
    report, _ = run_plan(plan, results, dtype=torch.float64)
    assert not report.failed and not report.unfinished, report

    for config in plan.configs:
        chain = [level[0] for level in config.chain]
        runs = {r.id: r for r in plan.runs}
        start = 1 if config.variant == "epoch1" else 0
        # The plan's counts: level l keeps ceil(0.8 x what level l-1 kept), over every conv and the dense layer.
        total = sum(s.units for s in config.schedules)
        kept = total
        for level in range(1, LEVELS + 1):
            event, = runs[chain[level]].stage.events
            assert (event.prune, event.kept) == (kept - math.ceil(Fraction(4, 5) * kept), math.ceil(Fraction(4, 5) * kept))
            kept = event.kept

        ref = Reference(plan, seed=3)
        accs, rewind_point = ref.train(0, keep=start or None)
        assert [r["test_acc"] for r in read_jsonl(results.epochs_jsonl(chain[0]))] == pytest.approx(accs, abs=1e-9)
        rewind_to = ref.init if start == 0 else rewind_point
        for level in range(1, LEVELS + 1):
            run = runs[chain[level]]
            ref.prune(run.stage.events[0].prune)
            ref.rewind(rewind_to)
            accs, _ = ref.train(start)
            final = torch.load(results.checkpoint(run.id), weights_only=True)
            held = [final["pruner"]["layers"][name]["held"] for name in config.schedules[0].group]
            assert all(torch.equal(a, b) for a, b in zip(held, ref.masks())), f"level {level}: masks differ"
            assert sum(int(h.sum()) for h in held) == total - run.stage.events[0].kept
            records = read_jsonl(results.epochs_jsonl(run.id))
            assert [r["epoch"] for r in records] == list(range(start + 1, EPOCHS + 1))
            assert [r["test_acc"] for r in records] == pytest.approx(accs, abs=1e-9), f"level {level}"
            # gstc's trained weights equal the reference's (its pruned ones exactly zero, as torch's mask makes them)
            mine = {k: v for k, v in ref.model.state_dict().items() if not k.endswith(("_orig", "_mask"))}
            mine.update({f"{k.removesuffix('_orig')}": v * ref.model.state_dict()[k.replace("_orig", "_mask")]
                         for k, v in ref.model.state_dict().items() if k.endswith("_orig")})
            for key, value in mine.items():
                assert torch.allclose(final["model"][key], value, rtol=0, atol=1e-9), key


def small(levels: int, name: str = "s") -> str:
    return f"""
gstc: 1
name: {name}
seeds: 1
model: {{arch: vgg11_bn, width: 0.125}}
data: {{dataset: digits}}
train: {{epochs: 1, batch_size: 256, optimizer: {{name: sgd, lr: 0.05, momentum: 0.9}}}}
prune: {{granularity: weight, scope: global, layers: [{{select: "*"}}]}}
lottery: {{levels: {levels}, fraction: 0.5}}
"""


def claims(results: ResultsDir, run_id: str) -> int:
    return len((results.run_dir(run_id) / "claims.jsonl").read_text().splitlines())


@pytest.mark.slow  # 4 s: two chains trained
def test_a_spec_sharing_levels_trains_only_the_levels_it_adds(tmp_path):
    results = ResultsDir(tmp_path)
    two, three = compile_text(small(2, "two")), compile_text(small(3, "three"))
    report, _ = run_plan(two, results)
    assert not report.unfinished and not report.failed
    report, infos = run_plan(three, results)
    assert [i["status"] for i in infos] == ["done"] * 4
    shared = [r.id for r in two.runs]
    assert [r.id for r in three.runs][:3] == shared
    assert [claims(results, rid) for rid in shared] == [1, 1, 1]  # trained once, by the first spec
    assert claims(results, three.runs[3].id) == 1
    # level 3's mask holds what the plan says: half of what level 2 kept
    final = torch.load(results.checkpoint(three.runs[3].id), weights_only=True)
    held = sum(int(t["held"].sum()) for t in final["pruner"]["layers"].values())
    event, = three.runs[3].stage.events
    assert held == event.of - event.kept


def test_a_level_waits_on_an_input_not_done_and_a_damaged_input_is_named_with_its_run(tmp_path):
    from gstc.jsonio import write_json

    results = ResultsDir(tmp_path)
    plan = compile_text(small(3))
    dense, one, two, three = plan.runs
    report, _ = run_plan(plan, results, runs=[dense])
    assert report.unfinished == [] and results.checkpoint(dense.id).exists()
    # level 0 failed: the chain waits, and says on what
    info = {"id": dense.id, "status": "failed", "error": {"epoch": 1, "reason": "test"}}
    saved = results.run_json(dense.id).read_text()
    write_json(results.run_json(dense.id), info)
    report, _ = run_plan(plan, results, runs=[one, two, three])
    assert [r.id for r in report.unfinished] == [one.id, two.id, three.id]
    assert "level 0" in report.stopped[one.id] and "failed" in report.stopped[one.id]
    assert one.id in report.stopped[two.id] and "pending" in report.stopped[two.id]
    # level 0 done again, but its checkpoint cut short: level 1 waits, naming the run that wrote the file
    results.run_json(dense.id).write_text(saved)
    data = results.checkpoint(dense.id).read_bytes()
    results.checkpoint(dense.id).write_bytes(data[: len(data) // 2])
    report, _ = run_plan(plan, results)
    why = report.stopped[one.id]
    assert f"run {dense.id}, whose {results.checkpoint(dense.id)} is cut short" in why and "--restart" in why
    assert not results.epochs_jsonl(one.id).exists() and not report.failed


@pytest.mark.slow  # 40 s: a chain trained twice, once killed
def test_kill_9_mid_level_then_resume_gives_the_same_numbers(tmp_path):
    """A level killed after its second epoch resumes from its own checkpoint (not from its inputs again) and ends
    with the numbers of the chain trained without a kill."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from gstc.compile import compile_file
    from gstc.jsonio import read_json
    from tests.runtime.test_run import gstc, numbers

    spec = tmp_path / "chain.yaml"
    spec.write_text(small(2).replace("epochs: 1,", "epochs: 4,").replace("fraction: 0.5}", "fraction: 0.5, rewind: 1}"))
    plan = compile_file(str(spec))
    level = plan.runs[1]
    reference = ResultsDir(tmp_path / "reference")
    assert gstc("run", str(spec), "--out", str(reference.root), "--device", "cpu").returncode == 0
    results = ResultsDir(tmp_path / "killed")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "gstc", "run", str(spec), "--out", str(results.root), "--device",
                             "cpu"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 120
    while time.time() < deadline:  # level 1 trains epochs 2..4: kill it during epoch 4
        if results.epochs_jsonl(level.id).exists() and len(read_jsonl(results.epochs_jsonl(level.id))) >= 2:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert read_json(results.run_json(level.id))["status"] == "running"
    done = gstc("run", str(spec), "--out", str(results.root), "--device", "cpu")
    assert done.returncode == 0, done.stderr
    assert read_json(results.run_json(level.id))["resumed_from"] in (2, 3)
    for run in plan.runs:
        assert numbers(results, run.id) == numbers(reference, run.id), run.stage.level


@pytest.mark.slow  # 6 s: six runs trained
def test_the_report_shows_accuracy_by_level_and_compares_configurations_level_by_level_by_seed(tmp_path):
    from gstc.report import build, plot, tables

    plan = compile_text(small(2).replace("seeds: 1", "seeds: 2") + "variants:\n  ticket: {}\n"
                        "  random: {lottery.control: random_mask}\n")
    results = ResultsDir(tmp_path)
    run_plan(plan, results)
    report = build(plan, results)
    lottery = report["lottery"]
    acc = {r.id: read_jsonl(results.epochs_jsonl(r.id))[-1]["test_acc"] for r in plan.runs}  # 1 epoch: the best
    for row in lottery["levels"]:
        ids = plan.config(row["config"]).chain[row["level"]]
        assert row["acc"]["mean"] == pytest.approx(sum(acc[i] for i in ids) / len(ids))
        assert row["sparsity"] == next(r for r in plan.runs if r.id == ids[0]).stage.sparsity
    assert [c["config"] for c in lottery["comparisons"]] == ["L1 random", "L2 random"]
    assert all(c["paired"] and c["pairs"] == 2 for c in lottery["comparisons"])
    first = lottery["comparisons"][0]
    ticket, control = plan.config("ticket").chain[1], plan.config("random").chain[1]
    assert first["diff"] == pytest.approx(sum(acc[b] - acc[a] for a, b in zip(ticket, control)) / 2)
    # a configuration's own row stands for its last level
    assert report["configs"][1]["metrics"]["best_test_acc"]["mean"] == pytest.approx(
        sum(acc[i] for i in plan.config("random").chain[2]) / 2)
    # the random-mask control: the ticket's count in every layer, at other positions
    for a, b in zip(plan.config("ticket").chain[2], plan.config("random").chain[2]):
        mine, its = (torch.load(results.checkpoint(i), weights_only=True)["pruner"]["layers"] for i in (a, b))
        assert {k: int(v["held"].sum()) for k, v in mine.items()} == {k: int(v["held"].sum()) for k, v in its.items()}
        assert any(not torch.equal(mine[k]["held"], its[k]["held"]) for k in mine)
    titles = [t[0] for t in tables(report)]
    assert "Lottery: best test accuracy (%) by level" in titles
    assert (tmp_path / "lottery.png") in plot(plan, results, report, tmp_path)
