"""Packed runs: a member's numbers are those it would have alone.

The pack trains K runs as one model (grouped convolutions, BN over K x C channels, a
batched dense layer). Adam, SGD, weight decay and masks act element by element, so in
float64 the only difference from separate runs is the order of floating-point sums:
the per-epoch numbers must agree to 1e-9 relative.
"""

from __future__ import annotations

import math
import textwrap
import warnings

import pytest

from gstc.jsonio import read_json, read_jsonl
from gstc.paths import ResultsDir
from gstc.packs import make_packs
from tests.runtime.conftest import CUDA, DEVICES, compile_text, run_plan

torch = pytest.importorskip("torch")

from gstc.runtime import worker  # noqa: E402
from gstc.runtime.progress import Progress  # noqa: E402
from gstc.runtime.models import build_model, member_state, pack_states  # noqa: E402

RTOL = 1e-9


def spec(arch: str, width: float, extra: str = "", seeds: str = "[0, 1]") -> str:
    return textwrap.dedent(f"""\
        gstc: 1
        name: pack
        seeds: {seeds}
        model: {{arch: {arch}, width: {width}}}
        data: {{dataset: digits}}
        train:
          epochs: 3
          batch_size: 32
          optimizer: {{name: adam, lr: 0.003, weight_decay: 0.0001}}
          lr_schedule: {{milestones: [2]}}
        """) + textwrap.dedent(extra)


# float64 convolutions are slow on the CPU: the tests train on a slice of digits, 128
# training images (4 batches of 32 per epoch) and 128 test images, so the default run
# stays short.
TRAIN, TEST = 128, 128


@pytest.fixture(autouse=True)
def small_digits(monkeypatch):
    from gstc.runtime.data import Dataset

    real = worker.load

    def load(data, device="cpu"):
        d = real(data, device)
        return Dataset(d.train_x[:TRAIN], d.train_y[:TRAIN], d.test_x[:TEST], d.test_y[:TEST], d.mean, d.std, d.classes)

    monkeypatch.setattr(worker, "load", load)


# Three configurations in one pack: a baseline, permanent pruning in two layers, and a
# zero window that restores the trained weights (8 batches: held across an epoch boundary).
VGG = spec("vgg11_bn", 0.125, """\
    prune:
      schedule: {start: 1, end: 2, every: 1}
      layers:
        - {select: conv6, amount: 0.5}
        - {select: conv8, amount: 0.5, target: largest}
    variants:
      baseline: {prune: null}
      pruned: {}
      zeroed:
        prune.mode: {kind: zero, duration: {batches: 8}, restore: trained}
    """)
# ResNet20: option-A shortcuts, masks after the residual add, activation_l1 scoring
# (recorded from the pack's activations) and random targets (per-member generators).
RESNET = spec("resnet20", 0.25, """\
    prune:
      scoring: activation_l1
      schedule: {start: 1, end: 2, every: 1}
      layers:
        - {select: layer2.0.conv2, amount: 0.5}
        - {select: layer3.1.conv1, amount: 0.5, target: random}
    variants:
      baseline: {prune: null}
      pruned: {}
      noisy:
        prune.mode: {kind: gaussian, duration: {batches: 3}}
    """)


# Weight granularity in every mode: per-layer unstructured pruning beside a gaussian window on random weights, a
# zero window restoring trained weights across an epoch boundary, and 2:4 groups ranked globally (each member's held
# weights kept at zero by one multiply per packed weight), random targets from each member's own generator.
WEIGHTS = spec("vgg11_bn", 0.125, """\
    prune:
      granularity: weight
      scoring: l1
      schedule: {start: 1, end: 2, every: 1}
      layers:
        - {select: conv6, amount: 0.5}
        - {select: conv8, amount: 0.75, target: random, mode: {kind: gaussian, duration: {batches: 3}}}
    variants:
      layer: {}
      windows:
        prune.mode: {kind: zero, duration: {batches: 8}, restore: trained}
        prune.layers.1.mode: null
      nm-global:
        prune.granularity: "2:4"
        prune.scope: global
        prune.amount: 0.6
        prune.layers: [{select: "conv[68]"}, {select: fc}]   # the dense layer too (the pack's PackedLinear)
    """, seeds="[0]")


# Gradient scorings in a pack: each member's probe sees only its own loss (SNIP's gradient, GraSP's Hessian-gradient
# product), on its own batches, at initialization and after an epoch.
PROBES = spec("vgg11_bn", 0.125, """\
    prune:
      granularity: weight
      scoring: snip
      schedule: {start: 0, end: 1, every: 1}
      layers:
        - {select: "conv[68]", amount: 0.5}
    variants:
      snip: {}
      grasp: {prune.scoring: grasp}
    """, seeds="[0]")


def numbers(results: ResultsDir, run_id: str) -> tuple[list[dict], list[dict]]:
    epochs = [{k: v for k, v in r.items() if k != "seconds"} for r in read_jsonl(results.epochs_jsonl(run_id))]
    return epochs, read_jsonl(results.events_jsonl(run_id))


def assert_close(a, b, path="") -> None:
    """Equal structure; floats within RTOL relative (absolute for values near 0); the rest exactly."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            assert_close(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=RTOL, abs_tol=RTOL), f"{path}: {a} != {b}"
    else:
        assert a == b, path


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("text, pack", [(VGG, 3), pytest.param(RESNET, 6, marks=pytest.mark.slow),  # 15 s
                                        (WEIGHTS, 3), pytest.param(PROBES, 2, marks=pytest.mark.slow)],  # 9 s
                         ids=["vgg11-pack3", "resnet20-pack6", "vgg11-weights-pack3", "vgg11-probes-pack2"])
def test_a_pack_computes_what_separate_runs_compute(text, pack, device, tmp_path):
    plan = compile_text(text)
    alone, packed = ResultsDir(tmp_path / "alone"), ResultsDir(tmp_path / "packed")
    assert [len(p.runs) for p in make_packs(plan, plan.runs, pack)] == [pack] * (len(plan.runs) // pack)
    run_plan(plan, alone, device, dtype=torch.float64, pack=1)
    run_plan(plan, packed, device, dtype=torch.float64, pack=pack)
    for run in plan.runs:
        assert read_json(packed.run_json(run.id))["pack"]["size"] == pack
        a, b = numbers(alone, run.id), numbers(packed, run.id)
        assert len(a[0]) == 3 and (len(a[1]) == 2) == bool(run.events)
        assert_close(a, b, run.config)
    # The members differ from each other (each its own seed, data order and events).
    finals = {numbers(packed, r.id)[0][-1]["test_loss"] for r in plan.runs}
    assert len(finals) == len(plan.runs)


@pytest.mark.parametrize("device", DEVICES)
def test_member_checkpoints_resume_alone_with_the_same_numbers(device, tmp_path):
    # A member's checkpoint is in the layout of a model built alone: a pack stopped after
    # epoch 2 resumes each member on its own, and the numbers equal an unbroken pack's.
    plan = compile_text(VGG)
    runs = plan.runs[:3]
    whole, split = ResultsDir(tmp_path / "whole"), ResultsDir(tmp_path / "split")
    run_plan(plan, whole, device, dtype=torch.float64, pack=3, runs=runs)

    # Stop the pack after epoch 2's checkpoints, from the progress display, like a kill.
    class Stop(Exception):
        pass

    class StopAfter2(Progress):
        def epoch(self, run, record):
            if record["epoch"] == 2 and run.id == runs[-1].id:
                raise Stop

    with pytest.raises(Stop):
        run_plan(plan, split, device, dtype=torch.float64, pack=3, runs=runs, progress=StopAfter2())
    for r in runs:
        assert read_json(split.run_json(r.id))["status"] == "running"
        run_plan(plan, split, device, dtype=torch.float64, pack=1, runs=[r])  # each alone
        assert read_json(split.run_json(r.id))["resumed_from"] == 2
        assert_close(numbers(whole, r.id), numbers(split, r.id), r.config)


@pytest.mark.parametrize("device", [CUDA])
@pytest.mark.parametrize("text", [VGG, RESNET], ids=["vgg11-zero-window", "resnet20-gaussian-window"])
def test_training_batches_never_wait_for_the_gpu(text, device, tmp_path):
    # No per-batch host syncs. A pack of 6 in the epoch after its first
    # pruning events (permanent holds, a zero or gaussian window, activation recording) trains
    # under CUDA's sync debug mode, which warns at each synchronizing call: the few of the epoch
    # (its draws moved to the device, its loss and accuracy read once) stay below one per batch.
    from gstc.runtime.data import load
    from gstc.runtime.train import Trainer

    plan = compile_text(text)
    device = torch.device(device)
    data = load(plan.configs[0].resolved.data, device)  # all of digits: 45 batches of 32
    trainer = Trainer(plan.runs, [plan.config(r.config) for r in plan.runs], data, device)
    trainer.train_epoch(1)
    trainer.prune_epoch(1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            trainer.train_epoch(2)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchronizing" in str(w.message)]
    assert len(syncs) < trainer.batches, f"{len(syncs)} synchronizing calls in an epoch of {trainer.batches} batches"


@pytest.mark.parametrize("device", [CUDA])
def test_auto_pack_size_follows_memory_and_gives_its_probe_memory_back(device, monkeypatch):
    # --pack auto probes one training step of one run; ResNet20 at width 0.25 needs a few MiB,
    # so the whole group of 6 fits; a budget smaller than one run's step gives packs of 1.
    from gstc.runtime.data import load

    plan = compile_text(RESNET)
    device = torch.device(device)
    data = load(plan.configs[0].resolved.data, device)
    before = torch.cuda.memory_allocated(device)
    assert worker.auto_pack_size(plan, plan.runs, device, data) == len(plan.runs)
    assert torch.cuda.memory_allocated(device) == before  # the probe's model and optimizer are gone
    monkeypatch.setattr(worker, "AUTO_MEMORY_FRACTION", 1e-9)
    assert worker.auto_pack_size(plan, plan.runs, device, data) == 1


def test_pack_state_round_trips_through_members():
    torch.manual_seed(0)
    members = [build_model("resnet20", 0.25, 10) for _ in range(3)]
    packed = build_model("resnet20", 0.25, 10, pack=3)
    packed.load_state_dict(pack_states([m.state_dict() for m in members]))
    for k, m in enumerate(members):
        got = member_state(packed.state_dict(), k, 3)
        assert all(torch.equal(got[name], t) for name, t in m.state_dict().items())
    x = torch.randn(4, 3, 32, 32, dtype=torch.float32)
    packed.eval()
    out = packed(x.repeat(1, 3, 1, 1)).view(4, 3, 10)
    for k, m in enumerate(members):
        m.eval()
        torch.testing.assert_close(out[:, k], m(x), rtol=1e-5, atol=1e-5)
