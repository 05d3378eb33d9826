"""Run ids are content hashes of the resolved run: pinned, and blind to presentation."""

from __future__ import annotations

from gstc.compile import check
from gstc.load import load_text
from tests.conftest import SMALL_SPEC


def ids(text: str) -> dict[tuple[str, int], str]:
    plan, errors = check(load_text(text, "t.yaml"))
    assert not errors, [e.format() for e in errors]
    return {(r.config, r.seed): r.id for r in plan.runs}


def test_pinned_run_ids():
    # If this fails, every stored result would be orphaned: change ids only on purpose,
    # with a note on how to migrate results folders.
    got = ids(SMALL_SPEC)
    assert got == {
        ("baseline", 0): PINNED["baseline", 0],
        ("baseline", 1): PINNED["baseline", 1],
        ("small", 0): PINNED["small", 0],
        ("small", 1): PINNED["small", 1],
        ("large", 0): PINNED["large", 0],
        ("large", 1): PINNED["large", 1],
    }


PINNED = {
    ("baseline", 0): "66e1b55fb794",
    ("baseline", 1): "88e954597f60",
    ("small", 0): "376372265585",
    ("small", 1): "65806e8677a3",
    ("large", 0): "88c248a36345",
    ("large", 1): "12427d326730",
}


def test_ids_ignore_name_description_variant_names_and_data_location():
    base = ids(SMALL_SPEC)
    renamed = SMALL_SPEC.replace("name: small", "name: other").replace("a small VGG spec", "something else")
    renamed = renamed.replace("  small: {}", "  s13: {}").replace("data: {dataset: digits}", "data: {dataset: digits, root: /elsewhere}")
    other = ids(renamed)
    assert other[("s13", 0)] == base[("small", 0)]
    assert other[("baseline", 1)] == base[("baseline", 1)]


def test_ids_ignore_how_the_schedule_is_written():
    base = ids(SMALL_SPEC)
    # The same layers and events, written as explicit names and explicit epochs, with defaults spelled out.
    text = SMALL_SPEC.replace('    - {select: "conv[78]", amount: 0.3, schedule: {start: 2, end: 6}}',
                              "    - {select: conv7, amount: 0.3, schedule: {epochs: [2, 4, 6]}}\n"
                              "    - {select: conv8, amount: 0.3, schedule: {epochs: [6, 4, 2]}, target: S}")
    text = text.replace("model: {arch: vgg11_bn, width: 0.25}", "model: {arch: vgg11_bn, width: 0.25}\nmeasure: {prune_eval: true}")
    assert ids(text)[("small", 0)] == base[("small", 0)]


def test_ids_change_with_anything_that_changes_the_numbers():
    base = ids(SMALL_SPEC)
    for old, new in [("lr: 0.001", "lr: 0.002"), ("width: 0.25", "width: 0.5"), ("batch_size: 64", "batch_size: 32"),
                     ("amount: 0.5", "amount: 0.4"), ("scoring: l2", "scoring: l1"), ("dataset: digits", "dataset: synthetic")]:
        changed = ids(SMALL_SPEC.replace(old, new))
        assert changed[("small", 0)] != base[("small", 0)], old
    assert len(set(base.values())) == len(base)  # seeds and configurations all differ
