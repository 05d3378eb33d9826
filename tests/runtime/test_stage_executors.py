"""Every executor starts a lottery level after the levels it starts from, and a failed level stops only what
starts from it (the real Slurm and Ray head: tests/runtime/test_real_cluster.py)."""

from __future__ import annotations

import pytest

from gstc.jsonio import read_json, read_jsonl
from gstc.paths import ResultsDir

from tests.runtime.conftest import compile_text, run_plan
from tests.runtime.test_cluster import single_threaded  # noqa: F401  (a fixture)
from tests.runtime.test_stages import small

torch = pytest.importorskip("torch")

from gstc.executor_options import RayOptions, SlurmOptions  # noqa: E402
from gstc.runtime.driver import build, execute  # noqa: E402
from gstc.runtime.executors.worker_pool import WorkerPool  # noqa: E402

pytestmark = pytest.mark.slow  # worker processes, a local Ray and submitit jobs: 20-60 s each


@pytest.fixture(scope="module")
def chain():
    """2 seeds x (level 0 and 2 levels)."""
    return compile_text(small(2).replace("seeds: 1", "seeds: 2"))


@pytest.fixture(scope="module")
def reference(chain, tmp_path_factory):
    """The chain trained in this process with one thread, as the workers train (the same numbers)."""
    results = ResultsDir(tmp_path_factory.mktemp("reference"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        report, _ = run_plan(chain, results)
    finally:
        torch.set_num_threads(threads)
    assert not report.unfinished
    return results


def epochs(results: ResultsDir, run_id: str) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in read_jsonl(results.epochs_jsonl(run_id))]


def first_claim(results: ResultsDir, run_id: str) -> float:
    return read_jsonl(results.claims_jsonl(run_id))[0]["time"]


def in_order_with_the_local_numbers(plan, results: ResultsDir, reference: ResultsDir) -> None:
    for run in plan.runs:
        assert read_json(results.run_json(run.id))["status"] == "done"
        assert epochs(results, run.id) == epochs(reference, run.id)
        for need in run.needs:  # claimed after what it starts from had finished (run.json's last write)
            assert first_claim(results, run.id) >= results.run_json(need).stat().st_mtime


def break_level_1(plan, results: ResultsDir):
    """Seed 0's level 1 fails at once (its epochs.jsonl is a folder: IsADirectoryError, not retried)."""
    level1 = next(r for r in plan.runs if r.stage.level == 1 and r.seed == 0)
    level2 = next(r for r in plan.runs if r.stage.level == 2 and r.seed == 0)
    results.epochs_jsonl(level1.id).mkdir(parents=True)
    return level1, level2


def test_a_pool_of_workers_starts_each_level_after_its_input(single_threaded, chain, reference, tmp_path):  # noqa: F811
    results = ResultsDir(tmp_path / "pool")
    report = execute(chain, chain.runs, results, WorkerPool(["cpu", "cpu"]))
    assert report.errors == [] and report.unfinished == []
    in_order_with_the_local_numbers(chain, results, reference)


def test_ray_passes_levels_as_task_dependencies_and_a_failed_level_stops_only_its_own(
        ray_session, chain, reference, tmp_path):
    results = ResultsDir(tmp_path / "ray")
    level1, level2 = break_level_1(chain, results)
    report = execute(chain, chain.runs, results, build(RayOptions(device="cpu")))
    assert [r.id for r in report.unfinished] == [level1.id, level2.id]
    assert "IsADirectoryError" in report.errors[0] and len(report.errors) == 1
    assert "whose task failed" in report.stopped[level2.id]
    assert not results.run_dir(level2.id).exists()  # never started
    results.epochs_jsonl(level1.id).rmdir()
    report = execute(chain, chain.runs, results, build(RayOptions(device="cpu")))
    assert report.errors == [] and report.unfinished == []
    in_order_with_the_local_numbers(chain, results, reference)


def test_submitit_local_submits_a_level_when_its_input_succeeded(single_threaded, chain, reference, tmp_path):  # noqa: F811
    pytest.importorskip("submitit")
    results = ResultsDir(tmp_path / "slurm")
    level1, level2 = break_level_1(chain, results)
    report = execute(chain, chain.runs, results, build(SlurmOptions(device="cpu", cluster="local")))
    assert [r.id for r in report.unfinished] == [level1.id, level2.id] and len(report.errors) == 1
    assert "did not succeed" in report.stopped[level2.id]
    assert not results.run_dir(level2.id).exists()
    results.epochs_jsonl(level1.id).rmdir()
    report = execute(chain, chain.runs, results, build(SlurmOptions(device="cpu", cluster="local")))
    assert report.errors == [] and report.unfinished == []
    in_order_with_the_local_numbers(chain, results, reference)
