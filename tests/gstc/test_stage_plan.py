"""Lottery chains in the plan: exact level counts, stage ids that name what they start from, and shared levels."""

from __future__ import annotations

import math
import textwrap
from fractions import Fraction

import pytest

from gstc.compile import check
from gstc.load import load_text
from gstc.packs import check_size, groups
from gstc.plan import Plan
from gstc.stages import with_inputs


def plan_of(lottery: str, variants: str = "", scope: str = "global", seeds: int = 2) -> Plan:
    text = textwrap.dedent(f"""\
        gstc: 1
        name: t
        seeds: {seeds}
        model: {{arch: vgg11_bn, width: 0.25}}
        data: {{dataset: digits}}
        train: {{epochs: 4, optimizer: {{name: sgd, lr: 0.05, momentum: 0.9}}}}
        prune: {{granularity: weight, scope: {scope}, layers: [{{select: "conv*"}}]}}
        lottery: {lottery}
        """) + textwrap.dedent(variants)
    plan, errors = check(load_text(text, "t.yaml"))
    assert not errors, [e.format() for e in errors]
    return plan


def test_each_level_keeps_the_ceiling_of_what_the_last_kept_times_one_minus_the_fraction():
    plan = plan_of("{levels: 5, fraction: 0.2}", scope="layer")
    config = plan.configs[0]
    runs = {r.id: r for r in plan.runs}
    for s in config.schedules:
        kept = s.units
        for level in range(1, 6):
            event = next(e for e in runs[config.chain[level][0]].stage.events if e.layer == s.layer)
            assert event.kept == math.ceil(Fraction(4, 5) * kept) and event.prune == kept - event.kept
            kept = event.kept
    # level 5's sparsity over all the layers: what the plan's counts say
    last = runs[config.chain[5][0]].stage
    total = sum(s.units for s in config.schedules)
    assert last.sparsity == pytest.approx(1 - sum(e.kept for e in last.events) / total)
    assert config.counts.nonzero[1] == config.counts.params[1] - (total - sum(e.kept for e in last.events))


def test_a_longer_chain_shares_the_shorter_ones_levels_and_a_different_fraction_only_level_0():
    five, ten = plan_of("{levels: 5, fraction: 0.2}"), plan_of("{levels: 10, fraction: 0.2}")
    assert ten.configs[0].chain[:6] == five.configs[0].chain
    other = plan_of("{levels: 5, fraction: 0.3}")
    assert other.configs[0].chain[0] == five.configs[0].chain[0]  # level 0 trains densely: nothing of the lottery
    assert not set(sum(other.configs[0].chain[1:], [])) & set(sum(five.configs[0].chain[1:], []))


def test_stages_name_their_inputs_and_runs_come_after_them():
    plan = plan_of("{levels: 3, fraction: 0.2}", """\
        variants:
          init: {}
          epoch1: {lottery.rewind: 1}
          lr: {lottery.rewind: lr}
          reinit: {lottery.control: reinit}
          random: {lottery.control: random_mask}
        """)
    runs = {r.id: r for r in plan.runs}
    assert len(runs) == len(plan.runs)  # a shared stage is one run
    position = {r.id: i for i, r in enumerate(plan.runs)}
    assert all(position[need] < position[r.id] for r in plan.runs for need in r.needs)
    chain = {c.variant: c.chain for c in plan.configs}
    dense = chain["init"][0]
    assert all(chain[v][0] == dense for v in chain)  # one level 0 for every rewinding and control
    assert runs[dense[0]].stage.keep == [1]  # epoch1 rewinds to it
    one = runs[chain["epoch1"][1][0]].stage
    assert (one.start, one.weights, one.rewind_from, one.after) == (1, "rewind", dense[0], dense[0])
    lr = runs[chain["lr"][2][0]].stage
    assert (lr.start, lr.weights, lr.after) == (0, "trained", chain["lr"][1][0])
    # a control's level l prunes the ticket of level l-1, whose chain is the init configuration's
    for control in ("reinit", "random"):
        stage = runs[chain[control][2][0]].stage
        assert stage.after == chain["init"][1][0] and stage.kind in ("reinit", "random_mask")
        assert stage.events == runs[chain["init"][2][0]].stage.events
    assert runs[chain["reinit"][1][0]].stage.weights == "reinit"
    assert runs[chain["random"][1][0]].stage.weights == "init"
    # a plan with stages round-trips through JSON, and a run without one leaves the key out
    assert Plan.model_validate_json(plan.model_dump_json()) == plan
    assert '"stage"' in plan.model_dump_json() and '"chain"' in plan.model_dump_json()
    plain, _ = check(load_text("gstc: 1\nname: p\nmodel: vgg11_bn\ndata: {dataset: digits}\n"
                               "train: {epochs: 1, optimizer: {name: adam, lr: 0.001}}\n", "p.yaml"))
    assert '"stage"' not in plain.model_dump_json() and '"chain"' not in plain.model_dump_json()


def test_stages_train_alone_and_a_pack_of_them_is_refused():
    plan = plan_of("{levels: 2, fraction: 0.2}")
    assert all(len(g) == 1 for g in groups(plan, plan.runs))
    with pytest.raises(ValueError, match="train one at a time"):
        check_size(plan, 2)
    check_size(plan, "auto")


def test_choosing_a_level_brings_the_levels_it_starts_from():
    plan = plan_of("{levels: 3, fraction: 0.2}")
    last = [r for r in plan.runs if r.stage.level == 3 and r.seed == 1]
    chosen = with_inputs(plan, last)
    assert [(r.stage.level, r.seed) for r in chosen] == [(0, 1), (1, 1), (2, 1), (3, 1)]
