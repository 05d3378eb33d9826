"""Helpers for runtime tests: compile inline specs into plans without files, and run them through the one
driver `gstc run` uses (`gstc.runtime.driver.execute` with the in-process executor)."""

from __future__ import annotations

import os
import subprocess
import tempfile
import textwrap
from pathlib import Path

import pytest

from gstc.compile import check
from gstc.load import load_text
from gstc.paths import ResultsDir
from gstc.runstate import read_run
from gstc.plan import Plan, PlanRun
from tests.conftest import REPO
from tests.runtime import fault_injection

torch = pytest.importorskip("torch")

from gstc.runtime.driver import execute  # noqa: E402
from gstc.runtime.executors import Report  # noqa: E402
from gstc.runtime.executors.in_process import InProcess  # noqa: E402
from gstc.executor_options import LocalOptions  # noqa: E402


def compile_text(text: str) -> Plan:
    plan, errors = check(load_text(textwrap.dedent(text), "inline.yaml"))
    assert not errors, [e.format() for e in errors]
    return plan


def run_plan(plan: Plan, results: ResultsDir, device: str = "cpu", dtype=torch.float32, pack: int | str = 1,
        runs: list[PlanRun] | None = None, progress=None) -> tuple[Report, list[dict]]:
    """What `gstc run --device DEVICE --pack PACK` does with these runs (all by default): the driver's report,
    and each run's run.json afterwards."""
    runs = plan.runs if runs is None else runs
    report = execute(plan, runs, results, InProcess(LocalOptions(device=device, dtype=str(dtype).removeprefix("torch."))), pack, progress)
    return report, [read_run(results, r.id) for r in runs]


def spec_text(arch: str = "vgg11_bn", width: float = 0.25, prune: str = "", epochs: int = 4, extra: str = "") -> str:
    return textwrap.dedent(f"""\
        gstc: 1
        name: t
        seeds: 1
        model: {{arch: {arch}, width: {width}}}
        data: {{dataset: digits}}
        train: {{epochs: {epochs}, batch_size: 64, optimizer: {{name: adam, lr: 0.001}}}}
        """) + textwrap.dedent(prune) + textwrap.dedent(extra)


# A CUDA device as a test parameter: marked `gpu` (left out of the default run; `pytest -m gpu`
# on a machine with one) and skipped where torch sees no CUDA device.
CUDA = pytest.param("cuda", id="cuda", marks=[
    pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")])
DEVICES = ["cpu", CUDA]


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the test session (a second `ray.init` in one process after a shutdown times out): 2 CPUs, HOME and temp files under a short /tmp folder (Ray writes an auth
    token under HOME; its socket paths must stay under 107 characters), fault injection ready in workers."""
    ray = pytest.importorskip("ray")
    home = tempfile.mkdtemp(dir="/tmp", prefix="gstc-ray-")
    saved = {k: os.environ.get(k) for k in ("HOME", "RAY_TMPDIR")}
    os.environ.update(HOME=home, RAY_TMPDIR=home)
    marker = Path(home) / "fail-once"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=home,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), fault_injection.ENV: str(marker)},
                          "worker_process_setup_hook": "tests.runtime.fault_injection.fail_once"})
    try:
        yield ray, marker
    finally:
        ray.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        subprocess.run(["rm", "-rf", home])


@pytest.fixture
def wandb_offline(tmp_path, monkeypatch):
    """No W&B account nor mode set, and every file W&B keeps outside the results folder in tmp_path."""
    wandb = pytest.importorskip("wandb")
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL", "WANDB_DIR",
                 "WANDB_SILENT", "WANDB_ERROR_REPORTING"):
        monkeypatch.setenv(name, "")  # recorded, so that what the tracker sets is undone after the test
        monkeypatch.delenv(name)
    home = tmp_path / "home"
    for name, folder in (("HOME", home), ("WANDB_CONFIG_DIR", home / "config"), ("WANDB_CACHE_DIR", home / "cache"),
                         ("WANDB_DATA_DIR", home / "data")):
        folder.mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv(name, str(folder))
    from gstc.runtime import wandb_tracker

    monkeypatch.setattr(wandb_tracker, "WANDB_OPEN", {})  # the table WandB and its exit hook read
    wandb.teardown()  # W&B reads its environment once per process setup: a fresh one for this test
    yield
    wandb.teardown()
