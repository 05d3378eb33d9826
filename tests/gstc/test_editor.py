"""What VS Code's YAML extension shows, from the real yaml-language-server driven over LSP.

The server is Red Hat's yaml-language-server, pinned in tests/editor/package.json (`npm ci --prefix
tests/editor` installs it; .ci/run does, then runs `pytest -m editor`). Each document names the
committed schema in its `# yaml-language-server: $schema=` comment, as docs/spec.md ("Editors") tells users to.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from tests.conftest import REPO, SHIPPED
from tests.gstc.test_invalid_corpus import CORPUS_FILES
from tests.yaml_server import YamlServer, corpus_flags, missing

pytestmark = pytest.mark.editor

SCHEMA = REPO / "schema" / "gstc.schema.json"
BASE = textwrap.dedent("""\
    gstc: 1
    name: t
    seeds: 2
    model: vgg11_bn
    data: {dataset: digits}
    train:
      epochs: 10
      optimizer: {name: sgd, lr: 0.1}
    prune:
      schedule: {start: 1, end: 7, every: 2}
      layers:
        - {select: conv5, amount: 0.5}
    """)  # after the schema comment, so its line n is the document's line n + 1


def start(root: Path, schemas: dict[Path, list[str]] | None = None) -> YamlServer:
    problem = missing()
    if problem:
        pytest.fail(problem)
    return YamlServer(root, schemas)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    started = start(tmp_path_factory.mktemp("workspace"))
    yield started
    started.close()


def document(tmp_path: Path, body: str, name: str = "spec.yaml") -> tuple[Path, str]:
    path = tmp_path / name
    text = f"# yaml-language-server: $schema={SCHEMA.as_uri()}\n{body}"
    path.write_text(text)
    return path, text


def shown(diagnostics) -> list[tuple[int, str]]:
    """(1-based line, message) of each diagnostic."""
    return [(d["range"]["start"]["line"] + 1, d["message"]) for d in diagnostics]


def test_no_diagnostics_on_any_shipped_spec(server):
    """No false positive: every spec of specs/ and examples/ opens clean."""
    assert len(SHIPPED) >= 20
    found = {path.relative_to(REPO).as_posix(): shown(server.open(path)) for path in SHIPPED}
    assert not {name: d for name, d in found.items() if d}


# (text after BASE, the line of the flagged node within that text, a substring of the message)
MISTAKES = {
    "override-key-typo": ("variants:\n  L: {prune.targt: largest}\n", 2, "Property prune.targt is not allowed"),
    "override-bad-value": ("variants:\n  L: {prune.target: biggest}\n", 2, 'Valid values: "smallest", "random", "largest"'),
    "override-header-key": ("variants:\n  L: {seeds: 3}\n", 2, "Property seeds is not allowed"),
    "override-out-of-range": ("variants:\n  L: {prune.layers.0.amount: 1.5}\n", 2, "exclusive maximum of 1"),
    "variant-bad-name": ("variants:\n  Bad Name: {prune.target: largest}\n", 2, "a variant's name is letters, digits"),
    "sweep-axis-not-a-path": ("sweep: {name: [a, b]}\n", 1, "Property name is not allowed"),
    "sweep-bad-value": ("sweep:\n  prune.target: [smallest, biggest]\n", 2, "Value is not accepted"),
    "zip-bad-value": ("sweep:\n  zip:\n    prune.target: [S, huge]\n    train.optimizer.lr: [0.1, 0.2]\n", 3,
                      "Value is not accepted"),
    "mode-key-of-another-kind": ("    - {select: conv6, amount: 0.3, mode: {kind: zero, duration: {epochs: 1}, std: matched}}\n",
                                 1, "Property std is not allowed"),
    "mode-unknown-kind": ("    - {select: conv6, amount: 0.3, mode: {kind: zeroo}}\n", 1,
                          'Valid values: "prune", "zero", "gaussian"'),
    "duplicate-schedule-epochs": ("    - {select: conv6, amount: 0.3, schedule: {epochs: [2, 2]}}\n", 1, "duplicate items"),
    "duplicate-milestones": ("variants:\n  L: {train.lr_schedule: {milestones: [4, 4]}}\n", 2, "duplicate items"),
    "amount-and-rate": ("    - {select: conv6, amount: 0.3, rate: 0.1}\n", 1, "both amount and rate apply to this entry"),
    "nesterov-without-momentum": ("variants:\n  N: {train.optimizer: {name: sgd, lr: 0.1, nesterov: true}}\n", 2,
                                  "nesterov: true needs momentum > 0"),
    "schedule-epochs-and-start": ("    - {select: conv6, amount: 0.3, schedule: {epochs: [2, 4], start: 1}}\n", 1,
                                  "give either `epochs: [...]` or start/end/every, not both"),
    "duration-both": ("    - {select: conv6, amount: 0.3, mode: {kind: zero, duration: {epochs: 1, batches: 9}}}\n", 1,
                      "give exactly one of `batches` or `epochs`"),
}


@pytest.mark.parametrize("name", MISTAKES)
def test_a_mistake_is_flagged_on_its_line_with_a_readable_message(server, tmp_path, name):
    tail, line, expected = MISTAKES[name]
    path, _ = document(tmp_path, BASE + tail)
    found = shown(server.open(path))
    at = 1 + BASE.count("\n") + line  # the schema comment, BASE, then the tail's line
    assert any(n == at and expected in message for n, message in found), found
    assert not any("{0}" in message or "must be \"gaussian\"" in message for _, message in found), found


def test_duplicate_seeds_are_flagged(server, tmp_path):
    path, _ = document(tmp_path, BASE.replace("seeds: 2", "seeds: [0, 1, 1]"))
    assert (4, "Array has duplicate items.") in shown(server.open(path))


def test_overrides_that_gstc_accepts_open_clean(server, tmp_path):
    """Both index spellings, a whole section, null for no pruning, sweep axes and zip."""
    path, _ = document(tmp_path, BASE + textwrap.dedent("""\
        variants:
          S: {}
          none: {prune: null}
          L: {prune.target: L, prune.layers.0.amount: 0.8, "prune.layers[0].schedule.start": 2, train.optimizer.momentum: 0.9}
          Z: {prune.mode: {kind: zero, duration: {epochs: 1}}, prune.mode.targets: all}
        sweep:
          prune.layers.0.amount: [0.1, 0.2]
          zip: {train.optimizer.lr: [0.1, 0.2], prune.target: [S, L]}
        """))
    assert shown(server.open(path)) == []


def completion(server, tmp_path, body: str, line: int, character: int) -> list[dict]:
    path, text = document(tmp_path, body, "complete.yaml")
    answer = server.at("textDocument/completion", path, text, line, character)
    return answer["items"] if isinstance(answer, dict) else answer


def test_completion_under_a_variant_offers_override_paths(server, tmp_path):
    body = BASE + "variants:\n  L:\n    \n"
    items = completion(server, tmp_path, body, body.count("\n"), 4)  # the empty line under `L:` (0-based, after the comment)
    labels = [item["label"] for item in items]
    for path in ("prune.target", "prune.mode.kind", "train.optimizer.lr", "model.width", "measure.flatness"):
        assert path in labels, labels
    assert "property" not in labels
    target = next(item for item in items if item["label"] == "prune.target")
    assert target["insertText"].startswith("prune.target: ")


def test_completing_an_optional_field_inserts_no_null(server, tmp_path):
    body = BASE.replace("  schedule: {start: 1, end: 7, every: 2}\n", "  schedule:\n    start: 1\n    \n")
    line = body.splitlines().index("    start: 1") + 2  # the empty line below, 0-based after the comment
    items = {item["label"]: item.get("insertText", "") for item in completion(server, tmp_path, body, line, 4)}
    assert {"end", "every", "epochs"} <= set(items), items
    assert not any("null" in text for text in items.values()), items


def hover(server, tmp_path, body: str, needle: str) -> str:
    path, text = document(tmp_path, body, "hover.yaml")
    lines = text.splitlines()
    line = next(i for i, s in enumerate(lines) if needle in s)
    answer = server.at("textDocument/hover", path, text, line, lines[line].index(needle) + 1)
    return answer["contents"]["value"]


@pytest.mark.parametrize("body, needle, title, description", [
    (BASE, "amount", "LayerEntry", "Total fraction of the layer's original filters"),
    (BASE, "every", "ScheduleSpec", "Epochs between events"),
    (BASE + "variants:\n  L: {prune.target: largest}\n", "prune.target", "prune.target", "Which unpruned filters"),
    (BASE + "sweep:\n  prune.layers.0.amount: [0.1, 0.2]\n", "prune.layers.0.amount", "prune.layers[N].amount",
     "one per sweep point"),
    (BASE.replace("{select: conv5, amount: 0.5}", "{select: conv5, amount: 0.5, schedule: {epochs: [3]}}"),
     "schedule: {epochs", "ScheduleSpec", "Fields missing here come from prune.schedule"),
], ids=["optional-field", "schedule-field", "variant-path", "sweep-axis", "entry-schedule"])
def test_hover_shows_one_title_and_the_description(server, tmp_path, body, needle, title, description):
    shown_text = hover(server, tmp_path, body, needle).replace("\\[", "[").replace("\\]", "]")  # markdown escapes
    assert re.findall(r"^#### (.*)$", shown_text, re.M) == [title], shown_text
    assert "||" not in shown_text and description in shown_text, shown_text


# Invalid-corpus specs whose mistake JSON Schema cannot state, or the server does not report there; each
# needs `gstc validate`. Every other corpus spec is flagged by the server on a line its `# expect:` names.
ONLY_GSTC = {
    "base-incomplete-in-some-configurations.yaml": "an error in some configurations only",
    "cubic-with-rate.yaml": "a curve's need of an amount spans the schedule and the entry",
    "cubic-without-amount.yaml": "the server asks the entry for an amount; gstc names the curve's line",
    "dense-layer-at-filter-granularity.yaml": "needs the architecture's layers",
    "global-beside-layer-amount.yaml": "compares the scope with the entries",
    "initial-on-equal-curve.yaml": "compares two fields' values",
    "nm-n-not-below-m.yaml": "compares the two numbers of one string",
    "nm-not-a-multiple.yaml": "needs the architecture's layers",
    "scoring-of-filters-on-weights.yaml": "needs the scoring plugin's granularities",
    "weight-granularity-include-bn.yaml": "compares the mode with the granularity",
    "lr-nan.yaml": "the server compares .nan as a number that passes every bound",
    "moving-filters.yaml": "compares the moving section with the prune section",
    "erk-global.yaml": "compares the distribution with the scope",
    "lottery-level-prunes-nothing.yaml": "arithmetic over the layers' weights",
    "lottery-of-filters.yaml": "compares the lottery with the prune section",
    "lottery-rewind-past-epochs.yaml": "compares with train.epochs",
    "lottery-with-a-schedule.yaml": "compares the lottery with the prune section",
    "lottery-without-prune.yaml": "compares the lottery with the prune section",
    "milestones-beyond-epochs.yaml": "compares two fields' values",
    "milestones-not-increasing.yaml": "an ordering",
    "only-comments.yaml": "the server does not validate an empty document",
    "rate-times-events.yaml": "arithmetic over the schedule",
    "schedule-end-huge.yaml": "compares with train.epochs",
    "schedule-events-beyond-epochs.yaml": "compares with train.epochs",
    "schedule-every-missing.yaml": "depends on the merged schedule",
    "schedule-missing.yaml": "depends on the merged schedule",
    "schedule-start-after-end.yaml": "an ordering",
    "select-glob-matches-nothing.yaml": "needs the architecture's layers",
    "select-layer-twice.yaml": "needs the architecture's layers",
    "select-name-typo.yaml": "needs the architecture's layers",
    "sweep-duplicate-configuration.yaml": "compares configurations",
    "sweep-index-out-of-range.yaml": "needs the base's list length",
    "sweep-too-many-points.yaml": "counts the grid (the server flags the axes' wrong values instead)",
    "variant-dotted-index-out-of-range.yaml": "needs the base's list length",
    "variant-error-names-config.yaml": "compares with train.epochs",
    "variant-index-out-of-range.yaml": "needs the base's list length",
    "variant-override-through-null.yaml": "depends on the base's null section",
    "yaml-bad-indentation.yaml": "the server's YAML parser reports the line before",
    "zip-unequal-lengths.yaml": "compares list lengths",
}


def test_the_invalid_corpus_is_flagged_where_the_schema_can_say_it():
    association = start(CORPUS_FILES[0].parent, {SCHEMA: ["*.yaml"]})  # the corpus files carry no schema comment
    try:
        flags = corpus_flags(association, CORPUS_FILES)
    finally:
        association.close()
    assert set(ONLY_GSTC) <= set(flags)
    assert {name for name, (_, on_line) in flags.items() if on_line} == set(flags) - set(ONLY_GSTC)
