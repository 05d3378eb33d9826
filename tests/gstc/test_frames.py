"""`gstc.results`: a spec's results as DataFrames with the manifest's numbers, typed columns, partial results
named; `gstc export` writes the same tables; neither imports torch."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from gstc.compile import compile_file
from gstc.jsonio import read_jsonl
from gstc.manifest import build_manifest
from gstc.paths import ResultsDir
from gstc.summary import SUMMARY_FIELDS
from tests.conftest import REPO

pd = pytest.importorskip("pandas")

SPEC = """\
gstc: 1
name: frames
seeds: 2
model: {arch: vgg11_bn, width: 0.125}
data: {dataset: digits}
train: {epochs: 2, batch_size: 256, optimizer: {name: adam, lr: 0.001}}
prune:
  scoring: l1
  schedule: {epochs: [1]}
  layers: [{select: conv8, amount: 0.5}]
variants:
  baseline: {prune: null}
  prune-s: {}
sweep:
  prune.target: [smallest, largest]
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small spec of the quickstart's shape (a baseline, a pruned variant over a sweep axis, 2 seeds), trained."""
    pytest.importorskip("torch")
    folder = tmp_path_factory.mktemp("frames")
    spec = folder / "frames.yaml"
    spec.write_text(SPEC)
    from gstc.runtime.driver import execute
    from gstc.executor_options import LocalOptions
    from gstc.runtime.executors.in_process import InProcess

    plan = compile_file(str(spec))
    report = execute(plan, plan.runs, ResultsDir(folder / "results"), InProcess(LocalOptions(device="cpu")))  # what `gstc run` runs
    assert not report.unfinished and not report.failed
    return spec, folder / "results"


@pytest.mark.slow  # trains runs: with the slow tests (the default run stays under 4 minutes)
def test_the_tables_hold_the_manifests_numbers_in_typed_columns(trained):
    import gstc

    spec, out = trained
    plan = compile_file(str(spec))
    r = gstc.results(plan, out=out)
    manifest = build_manifest(plan, ResultsDir(out))
    assert list(r.runs["id"]) == [run.id for run in plan.runs] and r.missing == []
    for row, entry in zip(r.runs.to_dict("records"), manifest["runs"]):
        assert (row["config"], row["seed"], row["status"]) == (entry["config"], entry["seed"], "done")
        for metric in SUMMARY_FIELDS:
            value = entry["summary"].get(metric)
            assert (pd.isna(row[metric]) and value is None) or row[metric] == value, metric
    assert isinstance(r.runs["config"].dtype, pd.CategoricalDtype)
    assert list(r.runs["config"].cat.categories) == [c.id for c in plan.configs]
    assert str(r.runs["seed"].dtype) == "Int64" and str(r.epochs["epoch"].dtype) == "Int64"
    # one row per run and epoch, with epochs.jsonl's numbers
    assert len(r.epochs) == 2 * len(plan.runs)
    # every sweep axis is a column of its own (a categorical of its values in plan order)
    assert list(r.runs["prune.target"].cat.categories) == ["smallest", "largest"]
    assert r.runs.loc[r.runs["config"] == "baseline", "prune.target"].isna().all()
    some = next(run for run in plan.runs if run.events)
    first = read_jsonl(ResultsDir(out).epochs_jsonl(some.id))[0]
    row = r.epochs[(r.epochs["run"] == some.id) & (r.epochs["epoch"] == 1)].iloc[0]
    assert row["test_acc"] == first["test_acc"] and row["kept.conv8"] == first["kept"]["conv8"]
    # one row per run, pruning event and layer
    pruned = [run for run in plan.runs if run.events]
    assert len(r.events) == sum(len({(e.epoch, e.layer) for e in run.events}) for run in pruned)
    assert set(r.events["kind"]) == {"prune"} and r.flatness.empty


@pytest.mark.slow  # trains runs: with the slow tests (the default run stays under 4 minutes)
def test_partial_results_are_named_and_no_results_say_where_gstc_looked(trained, tmp_path):
    import shutil

    import gstc
    from gstc.frames import ResultsError

    spec, out = trained
    plan = compile_file(str(spec))
    copy = tmp_path / "partial"
    shutil.copytree(out, copy)
    gone = plan.runs[-1].id
    shutil.rmtree(ResultsDir(copy).run_dir(gone))
    r = gstc.results(plan, out=copy)
    assert r.missing == [gone] and r.runs.set_index("id").loc[gone, "status"] == "pending"
    assert f"{len(plan.runs) - 1} of {len(plan.runs)} runs done" in repr(r)
    with pytest.raises(ResultsError, match=f"no results of spec 'frames' under {tmp_path / 'empty'}"):
        gstc.results(plan, out=tmp_path / "empty")


@pytest.mark.slow  # trains runs: with the slow tests (the default run stays under 4 minutes)
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_writes_the_same_tables(trained, tmp_path, fmt):
    import gstc

    spec, out = trained
    from typer.testing import CliRunner

    from gstc.cli import app

    proc = CliRunner().invoke(app, ["export", str(spec), "--out", str(out), "--format", fmt, "--to", str(tmp_path)])
    assert proc.exit_code == 0, proc.output
    r = gstc.results(spec, out=out)
    for name, frame in r.tables().items():
        path = tmp_path / f"{name}.{fmt}"
        assert f"wrote {path}" in proc.output
        if frame.empty:
            continue
        back = pd.read_csv(path) if fmt == "csv" else pd.read_parquet(path)
        assert list(back.columns) == list(frame.columns)
        assert back["run" if "run" in back else "id"].astype(str).tolist() == frame[
            "run" if "run" in frame else "id"].astype(str).tolist()
        if fmt == "parquet":  # types survive: categoricals and integers
            assert back.dtypes.astype(str).tolist() == frame.dtypes.astype(str).tolist()


@pytest.mark.slow  # 2 s: a process importing pandas
def test_results_need_no_torch(trained, tmp_path):
    spec, out = trained
    fake = tmp_path / "fake" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('gstc imported torch')\n")
    code = f"import gstc; print(len(gstc.results({str(spec)!r}, out={str(out)!r}).runs))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "fake"), str(REPO)])})
    assert proc.returncode == 0 and proc.stdout.strip() == "6", proc.stderr  # 3 configurations x 2 seeds


@pytest.mark.slow  # 3 s: a process importing pandas and matplotlib
def test_the_analysis_example_plots_stability_against_accuracy(trained, tmp_path):
    import shutil

    spec, out = trained
    copy = tmp_path / "r"
    shutil.copytree(out, copy)
    proc = subprocess.run([sys.executable, str(REPO / "examples" / "analysis.py"), str(spec), str(copy)],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    assert (copy / "stability_vs_accuracy.png").stat().st_size > 10_000
    assert "best_test_acc" in proc.stdout and "prune-s[prune.target=largest]" in proc.stdout
