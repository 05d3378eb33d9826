"""gstc.manifest: every run's status and summary, per-configuration statistics and correlations.

Run folders are written by hand here (no torch, no training), with numbers chosen so
every summary can be checked against values computed in the test.
"""

from __future__ import annotations

import json
import math
import os
import textwrap

import pytest
from scipy import stats as st

from gstc.compile import compile_file
from gstc.jsonio import append_jsonl, read_jsonl, write_json
from gstc.manifest import BOOTSTRAP_SEED, build_manifest, write_manifest
from gstc.paths import ResultsDir
from gstc.stats import summarize
from gstc.summary import SUMMARY_FIELDS, summarize_run

SPEC = textwrap.dedent(
    """\
    gstc: 1
    name: t
    seeds: 3
    model: {arch: vgg11_bn, width: 0.25}
    data: {dataset: digits}
    train: {epochs: 6, optimizer: {name: adam, lr: 0.001}}
    prune: {schedule: {start: 2, end: 4, every: 2}, layers: [{select: conv8, amount: 0.5}]}
    variants: {baseline: {prune: null}, small: {}, large: {prune.target: largest}}
    """
)

# Per configuration, test accuracy (percent) at epochs 1..6 for seed 0 (seed s adds s),
# and stability (percent) at the pruning epochs 2 and 4 (seed s subtracts s).
# The pruned ones peak at epoch 3, before the last pruning epoch (4): that peak must not count.
TEST_ACC = {"baseline": [60, 70, 75, 80, 82, 81], "small": [60, 70, 76, 71, 74, 74], "large": [60, 70, 76, 72, 75, 73]}
STABILITY = {"small": [90.0, 94.0], "large": [70.0, 80.0]}


def train_acc(epoch: int, seed: int) -> float:
    return 80.0 + 2 * epoch + seed


def params(config: str, epoch: int) -> int:
    if config == "baseline":
        return 1000
    return 1000 - 100 * (epoch >= 2) - 100 * (epoch >= 4)


def expected_summary(config: str, seed: int) -> dict:
    """By hand: best epoch 5 everywhere (pruned runs: from epoch 4 on; ties -> first)."""
    best = TEST_ACC[config][4] + seed
    return {"best_test_acc": best, "best_epoch": 5, "gen_gap": train_acc(5, seed) - best,
            "mean_stability": 100.0 if config == "baseline" else sum(STABILITY[config]) / 2 - seed,
            "final_params": params(config, 6)}


def write_run(results: ResultsDir, run, *, status: str = "done", with_summary: bool = True,
              last_epoch: int = 6, config_name: str | None = None) -> None:
    config = run.config.split("[")[0]  # the variant: sweep points share its numbers
    for epoch in range(1, last_epoch + 1):
        append_jsonl(results.epochs_jsonl(run.id), {
            "epoch": epoch, "train_loss": 0.5, "train_acc": train_acc(epoch, run.seed), "test_loss": 0.6,
            "test_acc": TEST_ACC[config][epoch - 1] + run.seed, "lr": 0.001,
            "kept": {"conv8": 128}, "params": params(config, epoch), "seconds": 0.1})
    for epoch, stability in zip((2, 4), STABILITY.get(config, [])):
        if epoch <= last_epoch:
            stability -= run.seed
            append_jsonl(results.events_jsonl(run.id), {
                "epoch": epoch, "pre_acc": 70.0, "post_acc": 70.0 * stability / 100, "instability": 100 - stability,
                "stability": stability, "layers": [{"layer": "conv8", "prune": 32, "kept": 96, "mean_score": 0.8}]})
    info = {"id": run.id, "config": config_name or run.config, "seed": run.seed, "status": status,
            "seconds": 0.1 * last_epoch}
    if status == "done" and with_summary:
        info["summary"] = summarize_run(read_jsonl(results.epochs_jsonl(run.id)), read_jsonl(results.events_jsonl(run.id)))
    if status == "failed":
        info["error"] = {"epoch": last_epoch, "reason": "training loss is nan"}
    write_json(results.run_json(run.id), info)


@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    path = tmp_path_factory.mktemp("spec") / "t.yaml"
    path.write_text(SPEC)
    return compile_file(str(path))


def runs_of(plan, config: str):
    return [r for r in plan.runs if r.config == config]


# --- the manifest ------------------------------------------------------------------------


@pytest.fixture
def filled(plan, tmp_path):
    """All runs done except baseline seed 2 (pending) and large seed 2 (failed at epoch 3);
    large's run.json files have no summary (the manifest computes it from the JSONL)."""
    results = ResultsDir(tmp_path / "results")
    for run in plan.runs:
        if (run.config, run.seed) == ("baseline", 2):
            continue
        if (run.config, run.seed) == ("large", 2):
            write_run(results, run, status="failed", last_epoch=3)
        else:
            write_run(results, run, with_summary=run.config != "large")
    return results


def test_manifest_runs(plan, filled):
    m = build_manifest(plan, filled, {"torch": "2.x", "device": "cpu"})
    assert (m["spec"], m["spec_hash"], m["environment"]) == ("t", plan.spec_hash, {"torch": "2.x", "device": "cpu"})
    assert m["plan"] == json.loads(plan.model_dump_json())
    assert [r["id"] for r in m["runs"]] == [r.id for r in plan.runs]
    by = {(r["config"], r["seed"]): r for r in m["runs"]}
    assert by["baseline", 2] == {"id": runs_of(plan, "baseline")[2].id, "config": "baseline", "seed": 2,
                                 "status": "pending", "seconds": None, "summary": None}
    failed = by["large", 2]
    assert (failed["status"], failed["summary"], failed["error"]) == ("failed", None, {"epoch": 3, "reason": "training loss is nan"})
    for (config, seed), r in by.items():
        if r["status"] == "done":
            assert r["summary"] == pytest.approx(expected_summary(config, seed)), (config, seed)
            assert r["seconds"] == pytest.approx(0.6)
            assert "error" not in r
    # hand-computed spot checks
    assert by["small", 1]["summary"] == {"best_test_acc": 75, "best_epoch": 5, "gen_gap": 16.0,
                                         "mean_stability": 91.0, "final_params": 800}
    assert by["baseline", 0]["summary"]["mean_stability"] == 100.0


def test_manifest_config_aggregates(plan, filled):
    m = build_manifest(plan, filled)
    assert [c["id"] for c in m["configs"]] == ["baseline", "small", "large"]
    expected_n = {"baseline": 2, "small": 3, "large": 2}
    for c in m["configs"]:
        assert c["n"] == expected_n[c["id"]]
        assert list(c["metrics"]) == list(SUMMARY_FIELDS)
        done = [r for r in m["runs"] if r["config"] == c["id"] and r["status"] == "done"]
        for metric, agg in c["metrics"].items():
            # final_nonzero: only runs whose epochs count it (weight and N:M granularity; none here)
            values = [r["summary"][metric] for r in done if metric in r["summary"]]
            assert agg == summarize(values, seed=BOOTSTRAP_SEED)
    assert all(c["metrics"]["final_nonzero"]["n"] == 0 for c in m["configs"])
    small = {c["id"]: c for c in m["configs"]}["small"]["metrics"]
    assert small["best_test_acc"]["mean"] == pytest.approx(75.0)  # 74, 75, 76
    assert small["best_test_acc"]["std"] == pytest.approx(1.0)
    assert small["final_params"] == {"n": 3, "mean": 800.0, "std": 0.0, "ci_low": 800.0, "ci_high": 800.0}


def test_manifest_correlations_equal_scipy(plan, filled):
    m = build_manifest(plan, filled)
    done = [r["summary"] for r in m["runs"] if r["status"] == "done"]
    assert len(done) == 7
    pruned = [c.id for c in plan.configs if c.schedules]
    assert 0 < len(pruned) < len(plan.configs)  # a baseline beside pruned configurations
    assert [(c["x"], c["y"], c["point"], c["over"]) for c in m["correlations"]] == [
        ("mean_stability", "best_test_acc", None, "all"), ("mean_stability", "gen_gap", None, "all"),
        ("mean_stability", "best_test_acc", None, "pruned"), ("mean_stability", "gen_gap", None, "pruned")]
    assert [c["configs"] for c in m["correlations"]] == [[c.id for c in plan.configs]] * 2 + [pruned] * 2
    for c in m["correlations"]:
        # the pruned entries leave out the runs of configurations that never prune
        runs = [r["summary"] for r in m["runs"] if r["status"] == "done" and r["config"] in c["configs"]]
        x, y = [s[c["x"]] for s in runs], [s[c["y"]] for s in runs]
        p, k = st.pearsonr(x, y), st.kendalltau(x, y)
        assert c["n"] == len(runs) and (c["n"] == 7) == (c["over"] == "all")
        assert c["pearson_r"] == pytest.approx(p.statistic, abs=1e-12)
        assert c["pearson_p"] == pytest.approx(p.pvalue, rel=1e-9)
        assert c["kendall_tau"] == pytest.approx(k.statistic, abs=1e-12)
        assert c["kendall_p"] == pytest.approx(k.pvalue, rel=1e-9)


def test_manifest_is_byte_identical_when_built_twice(plan, filled):
    env = {"torch": "2.x", "device": "cpu"}
    path = write_manifest(plan, filled, env)
    assert path == filled.manifest_json("t")
    first = path.read_bytes()
    assert write_manifest(plan, filled, env).read_bytes() == first
    assert json.loads(first) == build_manifest(plan, filled, env)
    assert b"NaN" not in first and b"Infinity" not in first
    assert os.listdir(path.parent) == ["manifest.json"]


def test_manifest_of_nothing_run_yet(plan, tmp_path):
    m = build_manifest(plan, ResultsDir(tmp_path))
    assert {r["status"] for r in m["runs"]} == {"pending"}
    assert all(c["n"] == 0 and c["metrics"]["best_test_acc"]["mean"] is None for c in m["configs"])
    assert all(c["n"] == 0 and c["pearson_r"] is None for c in m["correlations"])
    json.dumps(m, allow_nan=False)


def test_run_shared_with_another_spec(plan, tmp_path):
    """A run computed for another spec (same content hash) counts under this plan's config."""
    results = ResultsDir(tmp_path)
    run = runs_of(plan, "small")[0]
    write_run(results, run, config_name="prune-s-every2")
    entry = build_manifest(plan, results)["runs"][plan.runs.index(run)]
    assert (entry["config"], entry["status"]) == ("small", "done")


def test_done_run_without_epochs_is_an_error(plan, tmp_path):
    results = ResultsDir(tmp_path)
    run = plan.runs[0]
    write_json(results.run_json(run.id), {"id": run.id, "status": "done"})
    with pytest.raises(ValueError, match="cannot be summarized"):
        build_manifest(plan, results)


def test_sweep_points_get_their_own_correlations(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC.replace("name: t", "name: s") + "sweep:\n  train.optimizer.lr: [0.001, 0.01]\n")
    plan = compile_file(str(spec))
    results = ResultsDir(tmp_path / "results")
    for run in plan.runs:
        write_run(results, run)
    m = build_manifest(plan, results)
    points = [c["point"] for c in m["correlations"]]
    assert points == [None] * 4 + [{"train.optimizer.lr": 0.001}] * 2 + [{"train.optimizer.lr": 0.01}] * 2
    done = {r["id"]: r for r in m["runs"]}
    for c in m["correlations"][4:]:
        ids = {r.id for r in plan.runs if plan.config(r.config).point == c["point"]}
        x = [done[i]["summary"][c["x"]] for i in ids]
        y = [done[i]["summary"][c["y"]] for i in ids]
        assert c["n"] == 9
        assert c["pearson_r"] == pytest.approx(st.pearsonr(x, y).statistic, abs=1e-12)
        assert c["kendall_tau"] == pytest.approx(st.kendalltau(x, y).statistic, abs=1e-12)
    assert all(not math.isnan(c["pearson_r"]) for c in m["correlations"])
