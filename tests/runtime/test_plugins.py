"""Scoring and mode plugins from outside gstc: a package installed with pip (entry points gstc.scorings and
gstc.modes) and a module next to the spec (module:attribute). Both validate without torch, show in `gstc schema`
(the installed ones), and train; a plugin that raises fails its own run, named, while the others finish."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gstc.jsonio import read_json, read_jsonl
from gstc.paths import ResultsDir
from tests.conftest import REPO

torch = pytest.importorskip("torch")

PACKAGE = REPO / "tests" / "plugins" / "gstc-example-plugins"

OWN = textwrap.dedent('''\
    """Scorings of the spec's own, next to it (module:attribute)."""
    from pydantic import BaseModel, ConfigDict, Field

    from gstc.plugins import NoParams


    class Reversed:
        description = "reversed: minus the l1 norm (ranks like l1 with the opposite target)."
        Params = NoParams
        granularities = frozenset({"filter", "weight"})

        @staticmethod
        def score(units, params):
            return -units.reduce([w.abs() for w in units.weights()])


    class Flash:
        description = "flash: targeted units are held at zero for `batches` batches, then return from zero."

        class Params(BaseModel):
            model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
            kind: str
            batches: int = Field(default=1, ge=1)

        granularities = frozenset({"filter", "weight"})

        @staticmethod
        def start(ctx, sel, params):
            ctx.hold(sel, until=ctx.batch + params.batches)


    class TwoSteps:
        description = "two-steps: a method taking the event's count in two halves, re-scored between them."
        Params = NoParams

        @staticmethod
        def apply(event, params):
            first = event.count // 2
            for count in (first, event.count - first):
                scores = event.scores()
                event.take(event.choose(scores, count), scores)


    class Broken:
        description = "broken: raises, as a plugin with a bug does."
        Params = NoParams
        granularities = frozenset({"filter"})

        @staticmethod
        def score(units, params):
            raise ZeroDivisionError("a bug in the plugin")
    ''')

SPEC = textwrap.dedent("""\
    # Which units do outside scorings prune? (a test spec)
    gstc: 1
    name: plugins
    seeds: 1
    model: {arch: vgg11_bn, width: 0.125}
    data: {dataset: digits}
    train: {epochs: 1, batch_size: 128, optimizer: {name: adam, lr: 0.002}}
    prune:
      scoring: {name: power, p: 2.5}
      granularity: weight
      schedule: {epochs: [1]}
      layers:
        - {select: conv6, amount: 0.5}
    variants:
      installed: {}
      own: {prune.scoring: "own_scorings:Reversed", prune.target: largest}
      broken: {prune.scoring: "own_scorings:Broken", prune.granularity: filter}
      pulse: {prune.mode: {kind: pulse, batches: 3}}
      flash: {prune.mode: {kind: "own_scorings:Flash", batches: 2}, prune.granularity: filter}
      two-steps: {prune.method: "own_scorings:TwoSteps"}
    """)


def gstc(*args: str, env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gstc", *args], capture_output=True, text=True, env=env, cwd=cwd)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """The example package built and installed with pip (offline, into a folder of its own), and a spec folder
    with its own scorings module."""
    root = tmp_path_factory.mktemp("plugins")
    source = root / "source"
    shutil.copytree(PACKAGE, source)  # pip builds in the source tree: keep the repository's clean
    target = root / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                          "--no-index", "--target", str(target), str(source)], capture_output=True, text=True)
    assert pip.returncode == 0, pip.stderr
    assert (next(target.glob("*.dist-info")) / "entry_points.txt").read_text().count("gstc.scorings") == 1
    (root / "own_scorings.py").write_text(OWN)
    (root / "spec.yaml").write_text(SPEC)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(target), str(REPO)]), OMP_NUM_THREADS="1")
    return root, env


def test_plugins_validate_without_torch_and_show_in_the_schema(installed, tmp_path):
    root, env = installed
    fake = tmp_path / "fake" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('gstc imported torch')\n")
    poisoned = dict(env, PYTHONPATH=os.pathsep.join([str(tmp_path / "fake"), env["PYTHONPATH"]]))
    done = gstc("validate", str(root / "spec.yaml"), env=poisoned)
    assert done.returncode == 0, done.stderr
    plan = json.loads(gstc("plan", str(root / "spec.yaml"), "--json", env=poisoned).stdout)
    scorings = {c["id"]: c["schedules"][0]["scoring"] for c in plan["configs"]}
    assert scorings == {"installed": {"name": "power", "p": 2.5}, "own": "own_scorings:Reversed",
                        "broken": "own_scorings:Broken", "pulse": {"name": "power", "p": 2.5},
                        "flash": {"name": "power", "p": 2.5}, "two-steps": {"name": "power", "p": 2.5}}
    assert {c["id"]: c["schedules"][0]["method"] for c in plan["configs"]}["two-steps"] == "own_scorings:TwoSteps"
    modes = {c["id"]: c["schedules"][0]["mode"] for c in plan["configs"]}
    assert modes["pulse"] == {"kind": "pulse", "batches": 3}
    assert modes["flash"] == {"kind": "own_scorings:Flash", "batches": 2}  # validated by its own model
    schema = json.loads(gstc("schema", env=poisoned).stdout)
    options = schema["definitions"]["PruneSpec"]["properties"]["scoring"]["anyOf"]
    power = next(o for o in options if o.get("properties", {}).get("name", {}).get("const") == "power")
    assert power["properties"]["p"]["exclusiveMinimum"] == 0 and "power" in options[0]["enum"]
    mode = schema["definitions"]["Mode"]
    assert "pulse" in mode["properties"]["kind"]["anyOf"][0]["enum"]
    assert {"$ref": "#/definitions/PulseMode"} in [branch["then"] for branch in mode["allOf"]]
    # The plugin's parameters fail its own model, and its own check: file, line and column, exit status 1.
    (tmp_path / "bad.yaml").write_text((root / "spec.yaml").read_text().replace("p: 2.5", "p: -1"))
    out = gstc("validate", str(tmp_path / "bad.yaml"), env=poisoned)
    assert out.returncode == 1 and "bad.yaml:9:29: error: prune.scoring.p: power: Input should be greater than 0" \
        in out.stdout + out.stderr, out.stdout + out.stderr
    (tmp_path / "big.yaml").write_text((root / "spec.yaml").read_text().replace("p: 2.5", "p: 9"))
    out = gstc("validate", str(tmp_path / "big.yaml"), env=poisoned)
    assert out.returncode == 1 and "big.yaml:9:12: error: prune.scoring: power: p above 8" in out.stdout + out.stderr
    unknown = (root / "spec.yaml").read_text().replace("name: power", "name: powr")
    (tmp_path / "unknown.yaml").write_text(unknown)
    out = gstc("validate", str(tmp_path / "unknown.yaml"), env=poisoned)
    assert out.returncode == 1 and "unknown scoring 'powr' (did you mean \"power\"?)" in out.stdout + out.stderr


@pytest.mark.slow  # seven runs in two processes: 12 s
def test_plugins_train_and_a_raising_plugin_fails_its_run_alone(installed):
    root, env = installed
    out = root / "results"
    done = gstc("run", str(root / "spec.yaml"), "--out", str(out), "--device", "cpu", env=env, cwd=root)
    assert done.returncode == 1, done.stderr  # one run failed
    runs = json.loads(gstc("plan", str(root / "spec.yaml"), "--json", env=env).stdout)["runs"]
    results = ResultsDir(out)
    status = {r["config"]: read_json(results.run_json(r["id"])) for r in runs}
    assert {c: s["status"] for c, s in status.items()} == {"installed": "done", "own": "done", "broken": "failed",
                                                             "pulse": "done", "flash": "done", "two-steps": "done"}
    error = status["broken"]["error"]
    assert status["broken"]["status"] == "failed" and error["epoch"] == 1
    assert "the scoring 'own_scorings:Broken' raised ZeroDivisionError: a bug in the plugin" in error["reason"]
    for config in ("installed", "own", "two-steps"):
        run = next(r["id"] for r in runs if r["config"] == config)
        (event,) = read_jsonl(results.events_jsonl(run))
        assert event["layers"][0]["prune"] == 64 * 64 * 9 // 2  # half of conv6's weights (64 filters reading 64 channels at width 0.125)
        last = read_jsonl(results.epochs_jsonl(run))[-1]
        assert last["nonzero"] == last["params"] - 64 * 64 * 9 // 2
