"""specs/paper/*.yaml compile to exactly the paper's experiments (its appendix's settings).

The expectations here are written by hand from the paper's settings and computed
independently of the compiler: event epochs by a plain loop, filter counts by integer
arithmetic only (amounts as integer fractions num/den, ceilings by negated floor
division). Nothing from gstc.compile is used but `compile_file` to get the plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gstc.compile import compile_file

REPO = Path(__file__).resolve().parents[2]
PAPER = REPO / "specs" / "paper"


# --- independent arithmetic ------------------------------------------------------------


def ceil_div(a: int, b: int) -> int:
    """ceil(a / b) for integers, b > 0."""
    return -((-a) // b)


def kept_after_events(filters: int, num: int, den: int, events: int) -> list[int]:
    """Kept filters after each event for amount num/den over `events` events.

    final = ceil((1 - num/den) * N); kept_i = ceil(final + (N - final) * (n - i) / n).
    """
    final = ceil_div((den - num) * filters, den)
    return [final + ceil_div((filters - final) * (events - i), events) for i in range(1, events + 1)]


def event_epochs(start: int, end: int, every: int) -> list[int]:
    out, epoch = [], start
    while epoch <= end:
        out.append(epoch)
        epoch += every
    return out


def test_independent_arithmetic_matches_the_design_anchors():
    # docs/design.md's rule, on the paper's VGG11: conv8, 0.9 over 7 events; conv5, 0.3 over 4.
    assert kept_after_events(512, 9, 10, 7) == [447, 381, 315, 250, 184, 118, 52]
    assert kept_after_events(512, 3, 10, 4)[0] == 474
    assert kept_after_events(10, 3, 10, 1) == [7]  # 0.3 exactly: not 8 from float error
    assert event_epochs(7, 276, 40) == [7, 47, 87, 127, 167, 207, 247]
    assert event_epochs(2501, 3501, 750) == [2501, 3251]


# --- hand-written layer tables ----------------------------------------------------------

VGG11_FILTERS = {f"conv{i + 1}": n for i, n in enumerate((64, 128, 256, 256, 512, 512, 512, 512))}
VGG11_ORDER = list(VGG11_FILTERS)


def resnet_block_convs(widths: tuple[int, ...], blocks: int) -> dict[str, int]:
    out = {}
    for stage, width in enumerate(widths, start=1):
        for block in range(blocks):
            for conv in (1, 2):
                out[f"layer{stage}.{block}.conv{conv}"] = width
    return out


RESNET18_FILTERS = resnet_block_convs((64, 128, 256, 512), 2)
RESNET20_FILTERS = resnet_block_convs((16, 32, 64), 3)
RESNET56_FILTERS = resnet_block_convs((16, 32, 64), 9)
FILTERS = {"vgg11_bn": VGG11_FILTERS, "resnet18": RESNET18_FILTERS, "resnet20": RESNET20_FILTERS,
           "resnet56": RESNET56_FILTERS}

# (layer, start, end, amount as (num, den)), from the paper's settings.
VGG11_PAPER = [("conv5", 4, 151, (3, 10)), ("conv6", 5, 151, (3, 10)),
               ("conv7", 6, 151, (3, 10)), ("conv8", 7, 276, (9, 10))]
RESNET18_PAPER = [("layer4.0.conv1", 8, 151, (1, 4)), ("layer4.0.conv2", 9, 151, (2, 5)),
                  ("layer4.1.conv1", 10, 171, (1, 4)), ("layer4.1.conv2", 11, 276, (19, 20))]
RESNET18_TABLE_C1 = [(n, s, e, (4, 5) if n == "layer4.0.conv2" else a) for n, s, e, a in RESNET18_PAPER]
RESNET18_B2 = [(n, s - 4, e, a) for n, s, e, a in RESNET18_PAPER]  # starts 4, 5, 6, 7


@dataclass
class Layer:
    name: str
    epochs: list[int]
    amount: tuple[int, int]


def windows(table: list[tuple[str, int, int, tuple[int, int]]], every: int) -> list[Layer]:
    return [Layer(name, event_epochs(start, end, every), amount) for name, start, end, amount in table]


def at_init(table: list[tuple[str, int, int, tuple[int, int]]]) -> list[Layer]:
    return [Layer(name, [0], amount) for name, _, _, amount in table]


def every_layer(names: dict[str, int], start: int, end: int, every: int, amount: tuple[int, int]) -> list[Layer]:
    return [Layer(name, event_epochs(start, end, every), amount) for name in names]


PRUNE = {"kind": "prune", "include_bn": True}


@dataclass
class Pruned:
    layers: list[Layer]
    scoring: str
    target: str
    mode: dict[str, Any] = field(default_factory=lambda: dict(PRUNE))


# --- settings ---------------------------------------------------------------------------

ADAM_325 = {
    "epochs": 325, "batch_size": 128, "precision": "fp32",
    "optimizer": {"name": "adam", "lr": 0.001, "weight_decay": 0.0},
    "lr_schedule": {"milestones": [150, 300], "gamma": 0.1},
}
SGD_165 = {
    "epochs": 165, "batch_size": 128, "precision": "fp32",
    "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.0001, "nesterov": False},
    "lr_schedule": {"milestones": [83, 125], "gamma": 0.1},
}
ADAM_4000 = {
    "epochs": 4000, "batch_size": 128, "precision": "fp32",
    "optimizer": {"name": "adam", "lr": 0.0001, "weight_decay": 0.0},
    "lr_schedule": {"milestones": [2000], "gamma": 0.1},
}
CIFAR10 = {"dataset": "cifar10", "augment": False}
CIFAR10_AUG = {"dataset": "cifar10", "augment": True}
CIFAR100_AUG = {"dataset": "cifar100", "augment": True}


@dataclass
class Experiment:
    arch: str
    seeds: int
    data: dict[str, Any]
    train: dict[str, Any]
    configs: dict[str, Pruned | None]  # None: an unpruned baseline
    measure: dict[str, Any] | None = None


def fig2_vgg11_configs(scoring: str = "l2") -> dict[str, Pruned | None]:
    return {
        "baseline": None,
        "prune-s-1pct": Pruned(windows(VGG11_PAPER, 4), scoring, "smallest"),
        "prune-s-13pct": Pruned(windows(VGG11_PAPER, 40), scoring, "smallest"),
        "prune-r-13pct": Pruned(windows(VGG11_PAPER, 40), scoring, "random"),
        "prune-l-13pct": Pruned(windows(VGG11_PAPER, 40), scoring, "largest"),
        "scratch": Pruned(at_init(VGG11_PAPER), scoring, "smallest"),
    }


def resnet18_fig2_like(table, scoring: str, baseline: bool = True) -> dict[str, Pruned | None]:
    out: dict[str, Pruned | None] = {"baseline": None} if baseline else {}
    out.update({
        "prune-s-1pct": Pruned(windows(table, 4), scoring, "smallest"),
        "prune-s-14pct": Pruned(windows(table, 40), scoring, "smallest"),
        "prune-l-14pct": Pruned(windows(table, 40), scoring, "largest"),
    })
    return out


def fig3_configs() -> dict[str, Pruned | None]:
    out: dict[str, Pruned | None] = {"baseline": None}
    for target in ("smallest", "random", "largest"):
        for every in (4, 20, 40, 60, 100, 200, 300):
            out[f"prune[prune.target={target},prune.schedule.every={every}]"] = Pruned(
                windows(VGG11_PAPER, every), "l2", target)
    return out


def fig4_configs(filters: dict[str, int]) -> dict[str, Pruned | None]:
    return {
        "baseline": None,
        "prune-s-3pct": Pruned(every_layer(filters, 41, 101, 30, (1, 10)), "l1", "smallest"),
        "prune-s-5pct": Pruned(every_layer(filters, 41, 101, 60, (1, 10)), "l1", "smallest"),
    }


def fig5_configs() -> dict[str, Pruned | None]:
    vgg40 = windows(VGG11_PAPER, 40)
    out: dict[str, Pruned | None] = {
        "baseline": None,
        # The authors' permanent-pruning row of Figure 5 left the BN channel unmasked.
        "prune-l-13pct": Pruned(vgg40, "l2", "largest", {"kind": "prune", "include_bn": False}),
    }
    for n in (0, 129, 1500):
        out[f"zero-{n}"] = Pruned(vgg40, "l2", "largest", {
            "kind": "zero", "duration": {"batches": n, "epochs": None}, "targets": "newest",
            "restore": "zero", "include_bn": False})
    for n in (0, 129, 1500):
        out[f"gaussian-{n}"] = Pruned(vgg40, "l2", "largest", {
            "kind": "gaussian", "duration": {"batches": n, "epochs": None}, "targets": "newest", "std": "matched"})
    return out


def figd2_configs() -> dict[str, Pruned | None]:
    out: dict[str, Pruned | None] = {"baseline": None}
    for n in (129, 750, 1500, 3000):
        out[f"zero-all-{n}"] = Pruned(windows(VGG11_PAPER, 40), "l2", "largest", {
            "kind": "zero", "duration": {"batches": n, "epochs": None}, "targets": "all",
            "restore": "trained", "include_bn": True})
    return out


def figc3_configs() -> dict[str, Pruned | None]:
    return {
        "baseline": None,
        "prune-s-total10pct": Pruned(every_layer(RESNET18_FILTERS, 25, 101, 1, (1, 10)), "l1", "smallest"),
        "prune-s-total6pct": Pruned(every_layer(RESNET18_FILTERS, 25, 101, 1, (6, 100)), "l1", "smallest"),
    }


def tablef1_configs() -> dict[str, Pruned | None]:
    late = [Layer("layer4.1.conv2", [2501, 3251], (7, 10))]
    return {
        "baseline": None,
        "prune-l-35pct": Pruned(late, "l1", "largest"),
        "prune-s-35pct": Pruned(late, "l1", "smallest"),
        "scratch": Pruned([Layer("layer4.1.conv2", [0], (7, 10))], "l1", "smallest"),
    }


FLATNESS = {"prune_eval": True, "flatness": {
    "at": [315], "samples": 512, "hessian_top": 100, "trace_probes": 100, "grad_covariance": True,
    "epsilon": {"directions": 10, "loss_increase": 0.1}}}

EXPERIMENTS: dict[str, Experiment] = {
    "fig2-vgg11.yaml": Experiment("vgg11_bn", 10, CIFAR10, ADAM_325, fig2_vgg11_configs()),
    "fig2-resnet18.yaml": Experiment("resnet18", 10, CIFAR10, ADAM_325,
                                     resnet18_fig2_like(RESNET18_PAPER, "activation_l1")),
    "fig3-vgg11.yaml": Experiment("vgg11_bn", 5, CIFAR10, ADAM_325, fig3_configs()),
    "fig4-resnet18.yaml": Experiment("resnet18", 10, CIFAR10_AUG, SGD_165, fig4_configs(RESNET18_FILTERS)),
    "fig4-resnet20.yaml": Experiment("resnet20", 10, CIFAR10_AUG, SGD_165, fig4_configs(RESNET20_FILTERS)),
    "fig4-resnet56.yaml": Experiment("resnet56", 10, CIFAR10_AUG, SGD_165, fig4_configs(RESNET56_FILTERS)),
    "fig5-vgg11-noise.yaml": Experiment("vgg11_bn", 10, CIFAR10, ADAM_325, fig5_configs()),
    "figD2-vgg11-zero-restore.yaml": Experiment("vgg11_bn", 10, CIFAR10, ADAM_325, figd2_configs()),
    "figB2-vgg11-ebn.yaml": Experiment("vgg11_bn", 10, CIFAR10, ADAM_325, {
        k: v for k, v in fig2_vgg11_configs("ebn").items() if k in ("prune-s-1pct", "prune-s-13pct", "prune-l-13pct")}),
    "figB2-resnet18-ebn.yaml": Experiment("resnet18", 10, CIFAR10, ADAM_325,
                                          resnet18_fig2_like(RESNET18_B2, "ebn_alt", baseline=False)),
    "figC3-resnet18.yaml": Experiment("resnet18", 10, CIFAR10_AUG, SGD_165, figc3_configs()),
    "tableC1-resnet18.yaml": Experiment("resnet18", 10, CIFAR10, ADAM_325,
                                        resnet18_fig2_like(RESNET18_TABLE_C1, "activation_l1")),
    "tableF1-resnet18-cifar100.yaml": Experiment("resnet18", 10, CIFAR100_AUG, ADAM_4000, tablef1_configs()),
    "fig6-vgg11-flatness.yaml": Experiment("vgg11_bn", 10, CIFAR10, ADAM_325, fig2_vgg11_configs(), FLATNESS),
}


@pytest.fixture(scope="module")
def plans() -> dict[str, Any]:
    return {name: compile_file(str(PAPER / name)) for name in EXPERIMENTS}


def test_every_paper_spec_is_checked():
    assert sorted(p.name for p in PAPER.glob("*.yaml")) == sorted(EXPERIMENTS)


def subset(actual: dict[str, Any], expected: dict[str, Any], where: str) -> None:
    for key, value in expected.items():
        assert key in actual, f"{where}: no {key!r}"
        if isinstance(value, dict):
            subset(actual[key], value, f"{where}.{key}")
        else:
            assert actual[key] == value, f"{where}.{key}: {actual[key]!r} != {value!r}"


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_paper_spec_plan_matches_the_paper(plans, name):
    exp = EXPERIMENTS[name]
    plan = plans[name]
    filters = FILTERS[exp.arch]
    order = {layer: k for k, layer in enumerate(filters)}

    assert [c.id for c in plan.configs] == list(exp.configs)
    assert len(plan.runs) == len(exp.configs) * exp.seeds
    assert [(layer.name, layer.filters) for layer in plan.layers] == list(filters.items())

    for config in plan.configs:
        want = exp.configs[config.id]
        r = config.resolved.model_dump(mode="json")
        assert (config.resolved.model.arch, config.resolved.model.width) == (exp.arch, 1.0), config.id
        subset(r["data"], exp.data, f"{config.id}: data")
        subset(r["train"], exp.train, f"{config.id}: train")
        if exp.measure is not None:
            subset(r["measure"], exp.measure, f"{config.id}: measure")
        else:
            assert r["measure"]["flatness"] is None, config.id

        runs = [run for run in plan.runs if run.config == config.id]
        assert [run.seed for run in runs] == list(range(exp.seeds)), config.id
        assert len({run.id for run in runs}) == exp.seeds
        assert all(run.epochs == exp.train["epochs"] for run in runs)

        if want is None:
            assert r["prune"] is None and config.schedules == [], config.id
            assert all(run.events == [] for run in runs), config.id
            continue

        assert [s.layer for s in config.schedules] == [layer.name for layer in want.layers], config.id
        events = []
        for s, layer in zip(config.schedules, want.layers):
            n = len(layer.epochs)
            num, den = layer.amount
            kept = kept_after_events(filters[layer.name], num, den, n)
            pruned = [a - b for a, b in zip([filters[layer.name]] + kept, kept)]
            where = f"{config.id}: {layer.name}"
            assert s.filters == filters[layer.name], where
            assert s.epochs == layer.epochs, where
            assert s.kept == kept, where
            assert s.pruned == pruned, where
            assert s.amount == pytest.approx(num / den), where
            assert s.rate == pytest.approx(num / den / n), where
            assert (s.scoring, s.target) == (want.scoring, want.target), where
            assert s.mode.model_dump(mode="json") == want.mode, where
            events += [(e, layer.name, p, k, filters[layer.name])
                       for e, p, k in zip(layer.epochs, pruned, kept) if p > 0]
        events.sort(key=lambda ev: (ev[0], order[ev[1]]))
        for run in runs:
            got = [(ev.epoch, ev.layer, ev.prune, ev.kept, ev.of) for ev in run.events]
            assert got == events, f"{config.id} seed {run.seed}"


# --- anchors and headline shapes ---------------------------------------------------------


def test_fig2_vgg11_anchor_numbers(plans):
    plan = plans["fig2-vgg11.yaml"]
    assert len(plan.configs) == 6
    s13 = {s.layer: s for s in plan.config("prune-s-13pct").schedules}
    assert (s13["conv8"].epochs[0], s13["conv8"].pruned[0], s13["conv8"].kept[0]) == (7, 65, 447)
    assert s13["conv8"].epochs == [7, 47, 87, 127, 167, 207, 247]
    assert s13["conv5"].kept[0] == 474
    first = plan.runs[[r.config for r in plan.runs].index("prune-s-13pct")].events
    assert (first[0].epoch, first[0].layer, first[0].prune, first[0].kept, first[0].of) == (4, "conv5", 38, 474, 512)
    # The legend's "13%": the largest per-layer rate of the configuration is 0.9 / 7.
    for cid in ("prune-s-13pct", "prune-r-13pct", "prune-l-13pct"):
        rate = max(s.rate for s in plan.config(cid).schedules)
        assert rate == pytest.approx(0.9 / 7)
        assert round(rate * 100) == 13
    assert round(max(s.rate for s in plan.config("prune-s-1pct").schedules) * 100) == 1
    # Scratch: one event per layer at initialization, before any training.
    scratch = plan.runs[[r.config for r in plan.runs].index("scratch")].events
    assert {e.epoch for e in scratch} == {0}
    assert [(e.layer, e.kept) for e in scratch] == [("conv5", 359), ("conv6", 359), ("conv7", 359), ("conv8", 52)]


def test_fig2_resnet18_legend_rates(plans):
    plan = plans["fig2-resnet18.yaml"]
    assert round(max(s.rate for s in plan.config("prune-s-14pct").schedules) * 100) == 14
    assert round(max(s.rate for s in plan.config("prune-s-1pct").schedules) * 100) == 1


def test_fig3_has_21_pruned_configurations_and_one_baseline(plans):
    plan = plans["fig3-vgg11.yaml"]
    pruned = [c for c in plan.configs if c.schedules]
    baselines = [c for c in plan.configs if not c.schedules]
    assert len(pruned) == 21 and [c.id for c in baselines] == ["baseline"]
    assert len({c.hash for c in plan.configs}) == 22
    assert {run.seed for run in plan.runs} == {0, 1, 2, 3, 4}
    # every 300: one-shot pruning of each layer at its start epoch.
    one_shot = plan.config("prune[prune.target=largest,prune.schedule.every=300]")
    assert [s.epochs for s in one_shot.schedules] == [[4], [5], [6], [7]]


def test_tablef1_prunes_only_at_2501_and_3251(plans):
    plan = plans["tableF1-resnet18-cifar100.yaml"]
    for cid in ("prune-l-35pct", "prune-s-35pct"):
        runs = [r for r in plan.runs if r.config == cid]
        assert {e.epoch for r in runs for e in r.events} == {2501, 3251}
        assert [(e.layer, e.prune, e.kept) for e in runs[0].events] == [
            ("layer4.1.conv2", 179, 333), ("layer4.1.conv2", 179, 154)]


def test_fig4_prunes_every_block_conv(plans):
    for name, count in (("fig4-resnet18.yaml", 16), ("fig4-resnet20.yaml", 18), ("fig4-resnet56.yaml", 54)):
        plan = plans[name]
        for cid in ("prune-s-3pct", "prune-s-5pct"):
            assert len(plan.config(cid).schedules) == count, (name, cid)


def test_baselines_shared_between_specs_have_the_same_run_ids(plans):
    """A baseline that several specs repeat is one set of runs (computed once)."""
    def baseline_ids(name: str) -> list[str]:
        return [r.id for r in plans[name].runs if r.config == "baseline"]

    vgg = baseline_ids("fig2-vgg11.yaml")
    assert vgg == baseline_ids("fig5-vgg11-noise.yaml") == baseline_ids("figD2-vgg11-zero-restore.yaml")
    assert baseline_ids("fig3-vgg11.yaml") == vgg[:5]
    assert baseline_ids("fig2-resnet18.yaml") == baseline_ids("tableC1-resnet18.yaml")
    # Figure 6 measures flatness, so its runs are not Figure 2's.
    assert not set(baseline_ids("fig6-vgg11-flatness.yaml")) & set(vgg)
