"""Helpers for runtime tests: compile inline specs into plans without files, and run them through the one
driver `gstc run` uses (`gstc.runtime.driver.execute` with the in-process executor)."""

from __future__ import annotations

import textwrap

import pytest

from gstc.compile import check
from gstc.load import load_text
from gstc.manifest import ResultsDir, read_run
from gstc.plan import Plan, PlanRun

torch = pytest.importorskip("torch")

from gstc.runtime.driver import execute  # noqa: E402
from gstc.runtime.executors import Report  # noqa: E402
from gstc.runtime.executors.in_process import InProcess  # noqa: E402


def compile_text(text: str) -> Plan:
    plan, errors = check(load_text(textwrap.dedent(text), "inline.yaml"))
    assert not errors, [e.format() for e in errors]
    return plan


def run_plan(plan: Plan, results: ResultsDir, device: str = "cpu", dtype=torch.float32, pack: int | str = 1,
        runs: list[PlanRun] | None = None, progress=None) -> tuple[Report, list[dict]]:
    """What `gstc run --device DEVICE --pack PACK` does with these runs (all by default): the driver's report,
    and each run's run.json afterwards."""
    runs = plan.runs if runs is None else runs
    report = execute(plan, runs, results, InProcess(device, dtype), pack, progress)
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
