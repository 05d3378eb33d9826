"""Parameter and MAC counts without torch: terms, their JSON form, and what a plan's events remove."""

from __future__ import annotations

from gstc import archs
from gstc.costs import Cost, Dim, Term, live_after, merged
from tests.gstc.test_compile import plan_of
from tests.conftest import SMALL_SPEC


def test_terms_count_a_chain_of_two_convs():
    # conv a: 3 -> 8 (3x3), its BN; conv b: 8 -> 4 (1x1); dense 4 -> 10; 16 pixels each
    a, b = Dim(per={"a": 1}), Dim(per={"b": 1})
    cost = Cost(params=merged([Term(k=9, out=a, inp=Dim(fixed=3)), Term(k=2, out=a), Term(k=1, out=b, inp=a),
                               Term(k=10, inp=b), Term(k=10)]),
                macs=merged([Term(k=9 * 16, out=a, inp=Dim(fixed=3)), Term(k=16, out=b, inp=a), Term(k=10, inp=b)]))
    assert cost.count({"a": 8, "b": 4}) == (216 + 16 + 32 + 40 + 10, 3456 + 512 + 40)
    assert cost.count({"a": 5, "b": 1}) == (135 + 10 + 5 + 10 + 10, 2160 + 80 + 10)
    assert Cost.from_json(cost.to_json()) == cost


def test_merged_folds_constant_dimensions_and_sums_terms_of_one_shape():
    a = Dim(per={"a": 1})
    terms = merged([Term(k=2, out=a), Term(k=3, out=a), Term(k=4, out=Dim(fixed=5)), Term(k=0, out=a, inp=a), Term(k=1)])
    assert terms == [Term(k=5, out=a), Term(k=21)]


def test_a_plan_removes_filters_only_where_a_channel_is_zero_everywhere():
    plan = plan_of(SMALL_SPEC)
    config = next(c for c in plan.configs if c.id == "small")
    live = live_after(config.layers, config.schedules)
    # width 0.25: conv5 128 -> 64 (50% off), conv7 and conv8 128 -> 90 (30% off, rounded up), conv1 16 unpruned
    assert (live["conv5"], live["conv7"], live["conv8"], live["conv1"]) == (64, 90, 90, 16)
    kept_bn = [s.model_copy(update={"mode": s.mode.model_copy(update={"include_bn": False})}) for s in config.schedules]
    assert live_after(config.layers, kept_bn) == {l.name: l.filters for l in config.layers}  # the BN shift still flows


def test_the_built_in_counts_are_the_known_ones():
    # The literature's rounded figures on CIFAR: VGG11 9.23M parameters, 153M MACs; ResNet20 0.27M, 41M; ResNet18
    # (3x3 stem) 11.17M, 0.56G. The exact ones are checked against torch's own counts in test_conformance.py.
    for arch, params, macs in [("vgg11_bn", 9_228_362, 152_769_536), ("resnet20", 269_722, 40_551_040),
                               ("resnet18", 11_173_962, 555_422_720)]:
        cost = archs.builtin_cost(arch, 1.0, 3, (32, 32), 10)
        assert cost.count({l.name: l.filters for l in archs.layers(arch)}) == (params, macs)
