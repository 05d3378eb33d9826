"""Schedule curves, weight granularity and global scope in the plan: exact counts, hashes that do not move."""

from __future__ import annotations

import math
import textwrap
from fractions import Fraction

import pytest

from gstc.compile import check
from gstc.load import load_text
from gstc.plan import Plan

HEAD = textwrap.dedent("""\
    gstc: 1
    name: s
    seeds: 1
    model: {arch: vgg11_bn, width: 0.25}
    data: {dataset: digits}
    train: {epochs: 10, batch_size: 64, optimizer: {name: adam, lr: 0.001}}
    """)


def plan_of(prune: str) -> Plan:
    plan, errors = check(load_text(HEAD + textwrap.dedent(prune), "t.yaml"))
    assert not errors, [e.format() for e in errors]
    return plan


def zhu_gupta(units: int, s_i: Fraction, s_f: Fraction, t0: int, n: int, dt: int, power: int = 3) -> list[int]:
    """Kept units after each event t = t0, t0 + dt, ..., t0 + n dt by Zhu & Gupta's formula, in exact rationals:
    s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (n dt))^3; kept = ceil((1 - s_t) * units)."""
    out = []
    for j in range(n + 1):
        t = t0 + j * dt
        s = s_f + (s_i - s_f) * (1 - Fraction(t - t0, n * dt)) ** power
        out.append(math.ceil((1 - s) * units))
    return out


@pytest.mark.parametrize("granularity, units", [("filter", 128), ("weight", 128 * 128 * 9)])
def test_cubic_counts_equal_zhu_and_gupta_in_exact_rationals(granularity, units):
    plan = plan_of(f"""\
        prune:
          granularity: {granularity}
          scoring: l1
          amount: 0.9
          schedule: {{start: 2, end: 10, every: 2, curve: cubic, initial: 0.1}}
          layers:
            - {{select: conv8}}
        """)
    (s,) = plan.configs[0].schedules
    assert s.epochs == [2, 4, 6, 8, 10] and s.granularity == granularity
    assert s.kept == zhu_gupta(units, Fraction(1, 10), Fraction(9, 10), t0=2, n=4, dt=2)
    assert s.pruned[0] == units - s.kept[0] and sum(s.pruned) == units - s.kept[-1]
    assert s.kept[-1] == math.ceil(units / 10)  # the final sparsity is the amount


def test_linear_curve_reaches_the_amount_in_equal_sparsity_steps():
    plan = plan_of("""\
        prune:
          amount: 0.5
          schedule: {epochs: [1, 3, 5], curve: linear}
          layers:
            - {select: conv8}
        """)
    (s,) = plan.configs[0].schedules
    assert s.kept == zhu_gupta(128, Fraction(0), Fraction(1, 2), t0=1, n=2, dt=2, power=1) == [128, 96, 64]
    assert s.pruned == [0, 32, 32]
    assert [e.epoch for e in plan.runs[0].events] == [3, 5]  # an event that prunes nothing is not an event


def test_global_scope_counts_the_groups_units_once_and_events_name_the_group():
    plan = plan_of("""\
        prune:
          granularity: weight
          scope: global
          amount: 0.75
          schedule: {epochs: [1, 2]}
          layers:
            - {select: "conv[78]"}
            - {select: conv5}
        """)
    units = 128 * 128 * 9 * 2 + 128 * 64 * 9  # conv7, conv8 read 128 channels; conv5 reads conv4's 64
    config = plan.configs[0]
    assert {s.layer: s.units for s in config.schedules} == {"conv5": 128 * 64 * 9, "conv7": 128 * 128 * 9,
                                                             "conv8": 128 * 128 * 9}
    assert all(s.kept == [math.ceil(units * Fraction(5, 8)), math.ceil(units / 4)] for s in config.schedules)
    events = plan.runs[0].events
    assert [(e.epoch, e.layer, e.group, e.of) for e in events] == [
        (1, "conv5", ["conv5", "conv7", "conv8"], units), (2, "conv5", ["conv5", "conv7", "conv8"], units)]
    assert sum(e.prune for e in events) == units - math.ceil(units / 4)
    # Nothing is removed, so params stay; the nonzero parameters drop by exactly the pruned weights.
    counts = config.counts
    assert counts.params[0] == counts.params[1] and counts.nonzero == [counts.params[0], counts.params[0] - sum(
        e.prune for e in events)]


def test_a_new_granularity_or_scope_changes_the_ids_and_the_defaults_do_not():
    """Writing today's defaults (filter, layer, equal) out loud keeps the run ids; each new choice moves them."""
    base = """\
        prune:
          {extra}
          amount: 0.5
          schedule: {{epochs: [2, 4]{curve}}}
          layers:
            - {{select: "conv[78]"}}
        """
    ids = {}
    for name, extra, curve in [("plain", "", ""), ("explicit", "granularity: filter\n          scope: layer", ", curve: equal"),
                               ("weight", "granularity: weight", ""), ("global", "scope: global", ""),
                               ("cubic", "", ", curve: cubic")]:
        ids[name] = plan_of(base.format(extra=extra, curve=curve)).runs[0].id
    assert ids["plain"] == ids["explicit"]
    assert len({ids[k] for k in ("plain", "weight", "global", "cubic")}) == 4


def test_a_scoring_parameter_at_its_default_hashes_like_none_given():
    """Run ids include a scoring's parameters that differ from its defaults (so a parameter added to a plugin later
    keeps the ids of specs that do not set it)."""
    def run_id(scoring: str) -> str:
        return plan_of(f"prune:\n  scoring: {scoring}\n  schedule: {{epochs: [0]}}\n  layers:\n"
                       "    - {select: conv8, amount: 0.5}\n").runs[0].id

    assert run_id("snip") == run_id("{name: snip, batches: 1}") != run_id("{name: snip, batches: 2}")
    plan = plan_of("prune:\n  scoring: snip\n  schedule: {epochs: [0]}\n  layers:\n    - {select: conv8, amount: 0.5}\n")
    assert plan.configs[0].schedules[0].scoring.model_dump(mode="json") == {"name": "snip", "batches": 1}  # filled in


def test_dense_layers_count_their_weights_and_n_m_groups_along_their_inputs():
    plan = plan_of("""\
        prune:
          granularity: "2:4"
          schedule: {epochs: [1]}
          layers:
            - {select: "conv[78]"}
            - {select: fc}
        """)
    s = {x.layer: x for x in plan.configs[0].schedules}
    assert list(s) == ["conv7", "conv8", "fc"]  # table order, the dense layer last
    assert s["fc"].units == 10 * 128 // 4 and s["fc"].kept == [0]  # 10 classes x 128 features; every group
    assert s["conv8"].units == 128 * 9 * 128 // 4
    counts = plan.configs[0].counts
    assert counts.nonzero[1] == counts.params[0] - 2 * (s["fc"].units + s["conv7"].units + s["conv8"].units)


def rigl_erk(shapes: dict[str, tuple[int, ...]], sparsity: float) -> dict[str, float]:
    """RigL's Erdos-Renyi-Kernel sparsities (sparse_utils.get_sparsities_erdos_renyi, erk_power_scale 1), in floats:
    eps x sum(shape) / prod(shape) per layer, the layers whose density would pass 1 made dense first."""
    dense: set[str] = set()
    while True:
        divisor = rhs = 0.0
        raw = {}
        for name, shape in shapes.items():
            n = math.prod(shape)
            if name in dense:
                rhs -= n * sparsity
            else:
                rhs += n * (1 - sparsity)
                raw[name] = sum(shape) / n
                divisor += raw[name] * n
        eps = rhs / divisor
        top = max(raw.values())
        if top * eps <= 1:
            return {name: 0.0 if name in dense else 1 - eps * raw[name] for name in shapes}
        dense |= {name for name, p in raw.items() if p == top}


def test_erk_amounts_equal_rigls_distribution_and_keep_one_minus_the_amount():
    plan = plan_of("""\
        prune:
          granularity: weight
          target: random
          schedule: {epochs: [0]}
          amount: 0.9
          distribution: erk
          layers: [{select: "*"}]
        """)
    schedules = plan.configs[0].schedules
    inputs = {"conv1": 3, **{f"conv{i + 2}": s.filters for i, s in enumerate(schedules[:7])}}
    shapes = {s.layer: (s.filters, inputs[s.layer], 3, 3) for s in schedules if s.layer != "fc"}
    shapes["fc"] = (10, schedules[7].filters)  # a dense layer: (out, in)
    assert {s.layer: s.units for s in schedules} == {name: math.prod(shape) for name, shape in shapes.items()}
    expected = rigl_erk(shapes, 0.9)
    assert {s.layer: s.amount for s in schedules} == pytest.approx(expected, abs=1e-12)
    assert min(expected.values()) == 0.0  # the first conv (27 inputs per filter) stays dense, as in RigL
    kept = sum(s.kept[-1] for s in schedules)
    total = sum(s.units for s in schedules)
    assert 0 <= kept - 0.1 * total < len(schedules)  # ceil per layer: at most one weight over, per layer
