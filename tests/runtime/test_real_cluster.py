"""Against a real Slurm (scripts/slurm-cluster.sh) and a real Ray cluster (`ray start --head`): the faults their
users hit. Marked `cluster`, out of the default run; `.ci/run` brings Slurm up and runs `pytest -m cluster`.

Every test runs `gstc run` as a user does, in a subprocess, and compares with the local executor where numbers
are concerned. Both sides use one torch thread (a Slurm job and a Ray task get one CPU by default, and the
local reference runs with OMP_NUM_THREADS=1): with the same thread count the numbers are bit-identical.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gstc.compile import compile_file
from gstc.jsonio import read_jsonl
from gstc.paths import ResultsDir
from tests.conftest import REPO
from tests.runtime.test_data import write_cifar

pytestmark = pytest.mark.cluster

SCRIPT = REPO / "scripts" / "slurm-cluster.sh"
SPEC = """\
gstc: 1
name: {name}
seeds: 2
model: {{arch: vgg11_bn, width: 0.125}}
data: {data}
train: {{epochs: {epochs}, batch_size: 128, optimizer: {{name: adam, lr: 0.001}}}}
prune:
  schedule: {{start: 1}}
  layers: [{{select: conv8, amount: 0.5}}]
variants:
  baseline: {{prune: null}}
  prune: {{}}
"""


def spec(tmp_path: Path, name: str = "c", epochs: int = 2, data: str = "{dataset: digits}") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(SPEC.format(name=name, epochs=epochs, data=data))
    return path


def gstc(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gstc", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})}, timeout=timeout)


def start(*args: str, cwd: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "gstc", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=cwd, env={**os.environ, "PYTHONPATH": str(REPO)})


def epochs_of(results: ResultsDir, path: Path) -> dict[str, list[dict]]:
    """Each run's epoch records without their timings: what must agree across executors."""
    return {r.id: [{k: v for k, v in e.items() if k != "seconds"} for e in read_jsonl(results.epochs_jsonl(r.id))]
            for r in compile_file(str(path)).runs}


def claims(results: ResultsDir, run_id: str) -> list[dict]:
    path = results.run_dir(run_id) / "claims.jsonl"
    return read_jsonl(path) if path.exists() else []


def wait_until(what: str, condition, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout:g} s")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The local executor's numbers for the 2-epoch spec, with one thread."""
    tmp = tmp_path_factory.mktemp("reference")
    path = spec(tmp)
    out = gstc("run", str(path), "--out", str(tmp / "r"), "--device", "cpu", env={"OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    return epochs_of(ResultsDir(tmp / "r"), path)


# --- Slurm -------------------------------------------------------------------------------


def slurm_up() -> str | None:
    """The mode the test Slurm is up in ('yes'/'no' accounting), or None when no Slurm answers."""
    if shutil.which("sinfo") is None:
        return None
    state = Path(os.environ.get("GSTC_SLURM_STATE", "/var/tmp/gstc-slurm")) / "up"
    proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        return None
    return state.read_text().strip().split("=")[-1] if state.exists() else "yes"


@pytest.fixture
def slurm():
    if slurm_up() is None:
        pytest.skip("no Slurm here: scripts/slurm-cluster.sh up starts one (as root)")
    yield
    subprocess.run(["scancel", "-u", os.environ.get("USER", "root")], capture_output=True)


@pytest.fixture
def slurm_without_accounting(slurm):
    """The test Slurm restarted without accounting for the test (and as it was afterwards)."""
    mode = slurm_up()
    if mode != "no":
        if not os.access(SCRIPT, os.X_OK) or os.geteuid() != 0:
            pytest.skip("needs root and scripts/slurm-cluster.sh to restart Slurm without accounting")
        subprocess.run([str(SCRIPT), "down"], check=True, capture_output=True)
        subprocess.run([str(SCRIPT), "up", "--no-accounting"], check=True, capture_output=True)
    assert subprocess.run(["sacct"], capture_output=True).returncode != 0  # no accounting now
    yield
    if mode != "no":
        subprocess.run([str(SCRIPT), "down"], check=True, capture_output=True)
        subprocess.run([str(SCRIPT), "up"], check=True, capture_output=True)


def test_slurm_gives_the_local_numbers(slurm, reference, tmp_path):
    """Each run a Slurm job on a CPU-only partition (--device auto finds no GPU there): the local numbers."""
    path = spec(tmp_path)
    out = gstc("run", str(path), "--executor", "slurm", "--slurm-time", "10", "--out", str(tmp_path / "r"))
    assert out.returncode == 0, out.stderr
    results = ResultsDir(tmp_path / "r")
    assert epochs_of(results, path) == reference
    run = json.loads(results.run_json(compile_file(str(path)).runs[0].id).read_text())
    assert run["environment"]["threads"] == 1 and run["environment"]["host"] == socket.gethostname()


def cancel_mid_run(tmp_path: Path, name: str) -> tuple[Path, ResultsDir, list, str, float]:
    """Start a 30-epoch spec on Slurm, `scancel` every job once a run has recorded an epoch, and wait for
    `gstc run` to end: (spec, results, runs, its stderr, seconds from the cancel to its end)."""
    path = spec(tmp_path, name, epochs=30)
    results = ResultsDir(tmp_path / "r")
    runs = compile_file(str(path)).runs
    proc = start("run", str(path), "--executor", "slurm", "--slurm-time", "10", "--out", str(results.root))
    wait_until("a run records an epoch", lambda: any(results.epochs_jsonl(r.id).exists() for r in runs), 120)
    subprocess.run(["scancel", "-u", os.environ.get("USER", "root")], check=True)
    t0 = time.monotonic()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    return path, results, runs, err, time.monotonic() - t0


def test_scancel_mid_run_is_reported_and_the_next_run_resumes(slurm, tmp_path):
    path, results, runs, err, waited = cancel_mid_run(tmp_path, "cancel")
    assert waited < 90, err
    assert "ended without a result" in err or "left the queue without a result" in err, err
    assert "`gstc run` again resumes it" in err
    again = gstc("run", str(path), "--executor", "slurm", "--slurm-time", "10", "--out", str(results.root))
    assert again.returncode == 0, again.stderr
    assert any(len(claims(results, r.id)) == 2 and claims(results, r.id)[1]["from_epoch"] > 0 for r in runs)


def test_without_accounting_a_killed_job_is_reported_in_bounded_time(slurm_without_accounting, tmp_path):
    """sacct fails ("accounting storage is disabled"): gstc sees the job leave squeue without a result."""
    _, _, _, err, waited = cancel_mid_run(tmp_path, "noacct")
    assert waited < 60, (waited, err)
    assert "left the queue without a result (state CANCELLED" in err and "log: " in err, err
    assert "Bypassing sacct error" not in err and "accounting storage is disabled" not in err


def test_a_preempted_job_is_requeued_and_finishes_with_the_local_numbers(slurm, tmp_path):
    """SIGUSR2, as Slurm sends before a time limit or a preemption: the job is requeued (it had progressed),
    resumes from its checkpoint and ends with the numbers of a run never interrupted."""
    path = spec(tmp_path, "preempt", epochs=12)
    local = gstc("run", str(path), "--variant", "baseline", "--seeds", "0", "--out", str(tmp_path / "local"),
                 "--device", "cpu", env={"OMP_NUM_THREADS": "1"})
    assert local.returncode == 0, local.stderr
    results = ResultsDir(tmp_path / "r")
    run = next(r for r in compile_file(str(path)).runs if r.config == "baseline" and r.seed == 0)
    proc = start("run", str(path), "--variant", "baseline", "--seeds", "0", "--executor", "slurm", "--slurm-time",
                 "10", "--out", str(results.root))
    wait_until("two epochs", lambda: results.epochs_jsonl(run.id).exists()
               and len(read_jsonl(results.epochs_jsonl(run.id))) >= 2, 120)
    subprocess.run(["scancel", "--signal=USR2", "-u", os.environ.get("USER", "root")], check=True)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    assert len(claims(results, run.id)) == 2 and claims(results, run.id)[1]["from_epoch"] >= 2
    assert epochs_of(results, path)[run.id] == epochs_of(ResultsDir(tmp_path / "local"), path)[run.id]


def test_a_second_run_leaves_live_jobs_their_runs_status_names_the_jobs_and_ctrl_c_says_they_go_on(slurm, tmp_path):
    path = spec(tmp_path, "twice", epochs=30)
    results = ResultsDir(tmp_path / "r")
    plan = compile_file(str(path))
    first = start("run", str(path), "--executor", "slurm", "--slurm-time", "10", "--out", str(results.root))
    wait_until("a run records an epoch", lambda: any(results.epochs_jsonl(r.id).exists() for r in plan.runs), 120)
    status = gstc("status", str(path), "--out", str(results.root), env={"COLUMNS": "200"})
    assert "slurm job " in status.stdout and "running" in status.stdout, status.stdout
    arrays = {line.split("_")[0] for line in subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True,
                                                             text=True).stdout.split()}
    second = gstc("run", str(path), "--executor", "slurm", "--slurm-time", "10", "--out", str(results.root))
    assert second.returncode == 0 and second.stderr.count("submitted by an earlier gstc run: left to it") == 4, second.stderr
    assert {line.split("_")[0] for line in subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True,
                                                          text=True).stdout.split()} <= arrays  # nothing new
    first.send_signal(2)  # Ctrl-C
    _, err = first.communicate(timeout=60)
    assert first.returncode == 130 and "interrupted: the Slurm jobs go on (job array" in err, err
    assert subprocess.run(["squeue", "-h"], capture_output=True, text=True).stdout.strip()  # they do


def test_slurm_options_reach_sbatch(slurm, tmp_path):
    path = spec(tmp_path, "options")
    out = gstc("run", str(path), "--variant", "baseline", "--seeds", "0", "--executor", "slurm", "--slurm-time", "10",
               "--cpus-per-task", "2", "--slurm-mem", "1G", "--slurm-option", "comment=gstc-test",
               "--out", str(tmp_path / "r"))
    assert out.returncode == 0, out.stderr
    script = next((tmp_path / "r" / "slurm" / "options").rglob("*_submission.sh")).read_text()
    assert "--cpus-per-task=2" in script and "--mem=1G" in script and "--comment=gstc-test" in script
    run = next(r for r in compile_file(str(path)).runs if r.config == "baseline" and r.seed == 0)
    assert json.loads(ResultsDir(tmp_path / "r").run_json(run.id).read_text())["environment"]["threads"] == 2


def test_slurm_refuses_cuda_on_a_cpu_only_partition_and_unknown_options(slurm, tmp_path):
    path = spec(tmp_path)
    out = gstc("run", str(path), "--executor", "slurm", "--slurm-time", "10", "--device", "cuda",
               "--out", str(tmp_path / "r"))
    assert out.returncode == 1 and out.stderr.startswith("error: --device cuda: the default partition has no GPUs")
    assert "<command line>" not in out.stderr
    bad = gstc("run", str(path), "--executor", "slurm", "--slurm-time", "10", "--slurm-option", "no-such-option=1",
               "--out", str(tmp_path / "r"))
    assert bad.returncode == 1 and "Slurm refused the job array" in bad.stderr


# --- Ray ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def processes() -> dict[int, str]:
    out = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                out[int(p.name)] = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                pass
    return out


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    """`ray start --head` with its own HOME and temp folder; stopped, and every process it started killed by
    PID, at the end."""
    if shutil.which("ray") is None:
        pytest.skip("no `ray` command: pip install 'gstc[ray]'")
    home = tmp_path_factory.mktemp("rayhome")
    port = free_port()
    before = set(processes())
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(REPO)}
    proc = subprocess.run(["ray", "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
                           f"--temp-dir={home / 'ray'}", "--disable-usage-stats"], capture_output=True, text=True,
                          cwd=home, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    started = {pid for pid, cmd in processes().items() if pid not in before and ("ray" in cmd or "raylet" in cmd)}
    yield f"127.0.0.1:{port}"
    subprocess.run(["ray", "stop", "--force"], capture_output=True, env=env, timeout=120)
    for pid in started:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass


def test_ray_gives_the_local_numbers_and_names_each_task(ray_head, reference, tmp_path):
    path = spec(tmp_path)
    out = gstc("run", str(path), "--executor", "ray", "--address", ray_head, "--device", "cpu",
               "--out", str(tmp_path / "r"))
    assert out.returncode == 0, out.stderr
    results = ResultsDir(tmp_path / "r")
    assert epochs_of(results, path) == reference  # 1 CPU per task: 1 thread, as the reference
    for r in compile_file(str(path)).runs:
        assert json.loads(results.run_json(r.id).read_text())["environment"]["threads"] == 1


def test_ray_with_two_cpus_per_task_computes_with_two_threads(ray_head, tmp_path):
    path = spec(tmp_path)
    out = gstc("run", str(path), "--executor", "ray", "--address", ray_head, "--device", "cpu", "--cpus-per-task", "2",
               "--seeds", "0", "--variant", "baseline", "--out", str(tmp_path / "r"))
    assert out.returncode == 0, out.stderr
    run = next(r for r in compile_file(str(path)).runs if r.config == "baseline" and r.seed == 0)
    assert json.loads(ResultsDir(tmp_path / "r").run_json(run.id).read_text())["environment"]["threads"] == 2


def test_a_killed_ray_worker_is_retried_and_resumes(ray_head, tmp_path):
    path = spec(tmp_path, "kill", epochs=30)
    results = ResultsDir(tmp_path / "r")
    plan = compile_file(str(path))
    proc = start("run", str(path), "--executor", "ray", "--address", ray_head, "--device", "cpu",
                 "--out", str(results.root))
    wait_until("a run records an epoch", lambda: any(results.epochs_jsonl(r.id).exists() for r in plan.runs), 120)
    victim = next(r for r in plan.runs if results.epochs_jsonl(r.id).exists())
    holder = json.loads(results.lock(victim.id).read_text())
    assert holder["job"].startswith("ray task ")  # what `gstc status` shows
    os.kill(holder["pid"], 9)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert len(claims(results, victim.id)) == 2 and claims(results, victim.id)[1]["from_epoch"] >= 1


def test_a_wrong_ray_address_fails_fast(tmp_path):
    path = spec(tmp_path)
    t0 = time.monotonic()
    out = gstc("run", str(path), "--executor", "ray", "--address", f"127.0.0.1:{free_port()}", "--device", "cpu",
               "--out", str(tmp_path / "r"), timeout=60)
    assert out.returncode == 1 and time.monotonic() - t0 < 30
    assert "no Ray cluster answers there" in out.stderr and "Traceback" not in out.stderr


def test_a_relative_data_root_is_where_gstc_run_ran_and_a_data_error_is_not_retried(ray_head, tmp_path):
    """The Ray head was started in another folder; `data.root: cifar` is the driver's ./cifar. Without the
    archive, the task fails at once: a retry would meet the same missing files."""
    path = spec(tmp_path, "cifar", data="{dataset: cifar10, root: cifar}")
    missing = gstc("run", str(path), "--executor", "ray", "--address", ray_head, "--device", "cpu",
                   "--out", str(tmp_path / "r"), cwd=tmp_path)
    assert missing.returncode == 1
    assert f"{tmp_path / 'cifar'}" in missing.stderr and "not retried" in missing.stderr
    assert "was not trained" in missing.stderr and "resumes it" not in missing.stderr
    results = ResultsDir(tmp_path / "r")
    assert all(len(claims(results, r.id)) <= 1 for r in compile_file(str(path)).runs)  # one attempt each: no retry
    write_cifar(tmp_path / "cifar")
    found = gstc("run", str(path), "--executor", "ray", "--address", ray_head, "--device", "cpu",
                 "--out", str(tmp_path / "r"), cwd=tmp_path)
    assert found.returncode == 0, found.stderr


# --- lottery chains ----------------------------------------------------------------------------

CHAIN = """\
gstc: 1
name: {name}
seeds: 1
model: {{arch: vgg11_bn, width: 0.125}}
data: {{dataset: digits}}
train: {{epochs: {epochs}, batch_size: 128, optimizer: {{name: sgd, lr: 0.05, momentum: 0.9}}}}
prune: {{granularity: weight, scope: global, layers: [{{select: "*"}}]}}
lottery: {{levels: 3, fraction: 0.5}}
"""


def chain_spec(tmp_path: Path, name: str, epochs: int) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(CHAIN.format(name=name, epochs=epochs))
    return path


def test_slurm_takes_a_chain_at_once_with_afterok_and_scancel_of_level_2_leaves_level_3_unstarted(slurm, tmp_path):
    path = chain_spec(tmp_path, "chain", epochs=20)
    dense, one, two, three = compile_file(str(path)).runs
    results = ResultsDir(tmp_path / "r")
    proc = start("run", str(path), "--executor", "slurm", "--slurm-time", "10", "--out", str(results.root))
    submitted = results.slurm_submitted("chain")
    wait_until("the chain is submitted", submitted.exists, 60)
    jobs = {runs[0]: job for job, runs in json.loads(submitted.read_text())["jobs"].items()}
    assert set(jobs) == {dense.id, one.id, two.id, three.id}  # every level at once
    queue = subprocess.run(["squeue", "-h", "-o", "%i %E"], capture_output=True, text=True).stdout
    waits = dict(line.split(" ", 1) for line in queue.splitlines() if " " in line)
    for run, before in ((one, dense), (two, one), (three, two)):  # each waits on the level before it
        assert f"afterok:{jobs[before.id]}" in waits.get(jobs[run.id], ""), queue
    wait_until("level 2 trains", lambda: results.epochs_jsonl(two.id).exists(), 240)
    subprocess.run(["scancel", jobs[two.id]], check=True)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 1, err
    assert json.loads(results.run_json(one.id).read_text())["status"] == "done"
    assert not results.run_dir(three.id).exists()  # never started
    assert f"run {three.id}" in err and f"Slurm job {jobs[two.id]}, which did not succeed" in err, err
    squeue = subprocess.run(["squeue", "-h", "-j", jobs[three.id]], capture_output=True, text=True).stdout
    assert squeue.strip() == ""  # not left pending forever (--kill-on-invalid-dep)


def test_ray_runs_a_chain_in_order_with_the_local_numbers(ray_head, tmp_path):
    path = chain_spec(tmp_path, "raychain", epochs=2)
    local = gstc("run", str(path), "--out", str(tmp_path / "local"), "--device", "cpu", env={"OMP_NUM_THREADS": "1"})
    assert local.returncode == 0, local.stderr
    out = gstc("run", str(path), "--executor", "ray", "--address", ray_head, "--device", "cpu",
               "--out", str(tmp_path / "r"))
    assert out.returncode == 0, out.stderr
    results = ResultsDir(tmp_path / "r")
    assert epochs_of(results, path) == epochs_of(ResultsDir(tmp_path / "local"), path)
    for run in compile_file(str(path)).runs:  # claimed after the level it starts from had finished
        for need in run.needs:
            assert claims(results, run.id)[0]["time"] >= results.run_json(need).stat().st_mtime
