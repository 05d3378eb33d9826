"""The commands about runs: run (train what is not done, here or on a cluster), export-model and status."""

from __future__ import annotations

import dataclasses
import os
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from gstc.cli.common import DEVICE, _compile, _console, _fail, _need_torch, _option_fail, _pack_size, _table, app
from gstc.errors import SpecError


def _select_runs(plan, variants: Optional[List[str]], seeds: Optional[str]):
    runs = plan.runs
    if variants:
        known = {c.variant for c in plan.configs}
        unknown = [v for v in variants if v not in known]
        if unknown:
            from gstc.errors import did_you_mean

            _option_fail("--variant", f"no variant {unknown[0]!r}{did_you_mean(unknown[0], known)}; "
                             f"the plan has: {', '.join(sorted(known))}")
        chosen = {c.id for c in plan.configs if c.variant in variants}
        chains = {i for c in plan.configs if c.id in chosen and c.chain for level in c.chain for i in level}
        runs = [r for r in runs if r.config in chosen or r.id in chains]
    if seeds:
        try:
            wanted = {int(s) for s in seeds.split(",") if s.strip()}
        except ValueError:
            _option_fail("--seeds", f"expected a comma-separated list of integers, found {seeds!r}")
        runs = [r for r in runs if r.seed in wanted]
    from gstc.stages import with_inputs

    return with_inputs(plan, runs)


class ExecutorKind(str, Enum):
    local = "local"
    ray = "ray"
    slurm = "slurm"


def _gpu_list(text: str) -> list[int]:
    try:
        ids = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        ids = []
    if not ids or any(i < 0 for i in ids) or len(set(ids)) != len(ids):
        _option_fail("--gpus", f"expected distinct CUDA device numbers such as 0,1, found {text!r}")
    return ids


@app.command()
def run(
    spec: Path = typer.Argument(..., help="Spec file.", show_default=False),
    out: Optional[Path] = typer.Option(None, "--out", help="Results folder (default: $GSTC_RESULTS or ./results); "
                                       "with workers elsewhere, on storage every worker sees."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    variant: Optional[List[str]] = typer.Option(None, "--variant", help="Run only this variant (repeatable)."),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="Run only these seeds, e.g. 0,1."),
    sets: Optional[List[str]] = typer.Option(None, "--set", help="Override PATH=VALUE (repeatable), e.g. train.epochs=3."),
    pack: str = typer.Option("1", "--pack", help="Runs trained together as one packed model: K, or auto (by device memory)."),
    executor: ExecutorKind = typer.Option(ExecutorKind.local, "--executor", help="Where packs train: local (here), "
                                          "ray (a Ray cluster), slurm (a Slurm job array)."),
    gpus: Optional[str] = typer.Option(None, "--gpus", help="local: one worker process per CUDA device, e.g. 0,1."),
    address: Optional[str] = typer.Option(None, "--address", help="ray: auto or HOST:PORT of a running cluster "
                                          "(default: a local Ray started for the call)."),
    gpus_per_task: Optional[float] = typer.Option(None, "--gpus-per-task", help="ray: GPUs per pack, 1 (default) "
                                                  "or a fraction for packs of small models."),
    slurm_partition: Optional[str] = typer.Option(None, "--slurm-partition", help="slurm: the partition."),
    slurm_time: Optional[str] = typer.Option(None, "--slurm-time", help="slurm: each job's time limit, e.g. 12:00:00."),
    slurm_gpus: Optional[int] = typer.Option(None, "--slurm-gpus", help="slurm: GPUs per job (default 1; 0 with --device cpu)."),
    slurm_cluster: Optional[str] = typer.Option(None, "--slurm-cluster", help="slurm: 'local' runs the job array "
                                                "with submitit's local mode on this machine (no Slurm needed)."),
    cpus_per_task: Optional[int] = typer.Option(None, "--cpus-per-task", help="ray, slurm: CPUs per task or job "
                                                "(default 1), and the torch threads it computes with."),
    slurm_mem: Optional[str] = typer.Option(None, "--slurm-mem", help="slurm: memory per job, e.g. 16G (sbatch --mem)."),
    slurm_account: Optional[str] = typer.Option(None, "--slurm-account", help="slurm: the account to charge."),
    slurm_qos: Optional[str] = typer.Option(None, "--slurm-qos", help="slurm: the quality of service."),
    slurm_option: Optional[List[str]] = typer.Option(None, "--slurm-option", help="slurm: any other sbatch option, "
                                                     "KEY=VALUE or a flag, e.g. constraint=a100 (repeatable)."),
    restart: Optional[List[str]] = typer.Option(None, "--restart", help="Train this run again from scratch "
                                                "(repeatable): its files are moved to <out>/restarted/ first."),
    track: Optional[List[str]] = typer.Option(None, "--track", help="Also log each run to a tracker: tensorboard, "
                                              "mlflow or wandb (repeatable; default: $GSTC_TRACK, comma-separated)."),
) -> None:
    """Train every run of the plan that is not done yet; resumable at any point, here or on a cluster."""
    plan_ = _compile(spec, sets)
    runs = _select_runs(plan_, variant, seeds)
    pack_size = _pack_size(pack)
    from gstc.packs import check_size

    try:
        check_size(plan_, pack_size)
    except ValueError as exc:
        _option_fail("--pack", str(exc))
    if not DEVICE.fullmatch(device):
        _option_fail("--device", f"expected auto, cpu, cuda or cuda:N, found {device!r}")
    from gstc.paths import ResultsDir
    from gstc.runstate import read_run

    results = ResultsDir(out)
    if results.root.exists() and not results.root.is_dir():
        _option_fail("--out", f"{results.root} is a file; the results go in a folder")
    from gstc import executor_options

    given = {"--gpus": gpus, "--address": address, "--gpus-per-task": gpus_per_task,
             "--slurm-partition": slurm_partition, "--slurm-time": slurm_time, "--slurm-gpus": slurm_gpus,
             "--slurm-cluster": slurm_cluster, "--cpus-per-task": cpus_per_task, "--slurm-mem": slurm_mem,
             "--slurm-account": slurm_account, "--slurm-qos": slurm_qos, "--slurm-option": slurm_option}
    try:
        options = executor_options.build(executor.value, given, device=device)
    except executor_options.OptionError as exc:
        _option_fail(exc.option, str(exc))
    if gpus is not None:
        options = dataclasses.replace(options, gpus=tuple(_gpu_list(gpus)))
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        _fail([SpecError(str(spec), 1, 1, "", "gstc run needs PyTorch, which is not installed: pip install torch torchvision")])
    from gstc.runtime.data import DataError
    from gstc.runtime.display import Display
    from gstc.runtime.driver import build, execute
    from gstc.runtime.executors import ExecutorError, Interrupted
    from gstc.runtime.tracking import ENV

    trackers = track or [t.strip() for t in os.environ.get(ENV, "").split(",") if t.strip()]
    options = dataclasses.replace(options, track=tuple(trackers))
    _check_restart(spec, runs, restart or [])
    try:
        ex = build(options)
        if restart:
            _restart(results, restart, ex)
        with Display(results) as display:
            report = execute(plan_, runs, results, ex, pack_size, display)
        _console(stderr=True).print(f"manifest: {results.manifest_json(plan_.spec)}", markup=False)
    except ExecutorError as exc:  # each message names the option or the cluster it is about
        _console(stderr=True).print(f"error: {exc}", markup=False)
        raise typer.Exit(1)
    except Interrupted as exc:
        _console(stderr=True).print(f"interrupted: {exc}", markup=False)
        raise typer.Exit(130)
    except (DataError, ValueError) as exc:  # a missing archive, a device this machine lacks
        _fail([SpecError(str(spec), 1, 1, "", str(exc))])
    err = _console(stderr=True)
    for error in report.errors:
        err.print(error, markup=False)
    for r in report.failed:
        info = read_run(results, r.id) or {}
        e = info.get("error") or {}
        err.print(f"run {r.id} ({r.config}, seed {r.seed}) failed at epoch {e.get('epoch')}: "
                  f"{e.get('reason')}; its files are in {results.run_dir(r.id)}", markup=False)
    by_id = {r.id: r for r in runs}
    for rid, found in report.damaged.items():
        r = by_id[rid]
        err.print(f"run {rid} ({r.config}, seed {r.seed}) is damaged: {found.get('file')} {found.get('reason')}. "
                  f"It was left as it is and the other runs went on; `gstc run {spec} --restart {rid}` trains it "
                  f"again from scratch (its files are moved to {results.root / 'restarted'} first)", markup=False)
    for rid, lost in report.lost.items():
        r = by_id[rid]
        err.print(f"run {rid} ({r.config}, seed {r.seed}): another worker took over its lock ({lost.get('holder')}); "
                  f"this one stopped training it after epoch {lost.get('epoch')}", markup=False)
    for r in report.unfinished:
        if r.id in report.stopped:
            err.print(f"run {r.id} ({r.config}, seed {r.seed}) was not trained: {report.stopped[r.id]}; fix that, "
                      f"then `gstc run` again trains it", markup=False)
        else:
            err.print(f"run {r.id} ({r.config}, seed {r.seed}) did not finish; `gstc run` again resumes it from its "
                      f"last checkpoint", markup=False)
    for rid, holder in report.busy.items():
        r = by_id[rid]
        err.print(f"run {rid} ({r.config}, seed {r.seed}) is being trained by another worker, {holder}: "
                  f"left to it (`gstc status` follows it)", markup=False)
    if report.failed or report.unfinished or report.errors or report.damaged or report.lost:
        raise typer.Exit(1)


def _check_restart(spec: Path, runs, ids: list[str]) -> None:
    """`--restart` names runs that this call trains (of the plan, and of --variant and --seeds)."""
    from gstc.errors import did_you_mean

    known = {r.id for r in runs}
    for rid in ids:
        if rid not in known:
            _option_fail("--restart", f"no run {rid!r} among the runs of {spec} this call "
                             f"trains{did_you_mean(rid, known)}; `gstc status` lists them")


def _restart(results, ids: list[str], executor) -> None:
    """`--restart RUN_ID`: move the run's folder aside (under the run's lock) so that it trains from scratch."""
    import time

    from gstc import locks
    from gstc.claims import claim_runs

    err = _console(stderr=True)
    for rid in ids:
        if not results.run_dir(rid).exists():
            continue  # nothing to set aside: it trains from scratch anyway
        with claim_runs(results, [rid], wait=False) as claims:
            if rid in claims.busy:
                executor.close()
                _option_fail("--restart", f"run {rid} is being trained by "
                                 f"{locks.describe(claims.busy[rid])}; stop that worker first")
            aside = results.restarted_dir(rid, time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
            aside.parent.mkdir(parents=True, exist_ok=True)
            results.run_dir(rid).rename(aside)
        err.print(f"run {rid}: its files are now in {aside}; training it from scratch", markup=False)


@app.command("export-model")
def export_model(
    run_id: str = typer.Argument(..., help="The run's id (`gstc status SPEC` lists them).", show_default=False),
    out: Path = typer.Option(Path("results"), "--out", help="Results folder."),
    batch: int = typer.Option(32, "--batch", min=1, help="Images per forward pass when timing."),
) -> None:
    """Write a run's model physically pruned (channels removed, not masked) as RUN/export/model.pt2, with its
    parameters, MACs and CPU latency against the unpruned model."""
    _need_torch("gstc export-model")
    from gstc.paths import ResultsDir
    from gstc.runtime.export_run import export_run, summary

    try:
        report = export_run(ResultsDir(out), run_id, batch=batch)
    except ValueError as exc:  # ExportError, and a model or dataset that cannot be built
        _option_fail("", str(exc))
    console = _console()
    for part in summary(report):
        console.print(part)


@app.command()
def status(
    spec: Path = typer.Argument(..., help="Spec file.", show_default=False),
    out: Optional[Path] = typer.Option(None, "--out", help="Results folder (default: $GSTC_RESULTS or ./results)."),
    sets: Optional[List[str]] = typer.Option(None, "--set", help="Override PATH=VALUE (repeatable)."),
) -> None:
    """Show which runs are done, running (with the worker that holds them), interrupted, failed or pending."""
    from rich.markup import escape

    from gstc.locks import (  # torch-free: the lock files' protocol
        STALE,
        Lock,
        read_lock,
    )
    from gstc.jsonio import DamagedFile, read_jsonl
    from gstc.paths import ResultsDir
    from gstc.runstate import run_state

    plan_ = _compile(spec, sets)
    results = ResultsDir(out)
    from gstc.locks import worker_text
    from gstc.slurm_queue import live_runs

    queued = live_runs(results.slurm_submitted(plan_.spec))  # {} without Slurm or submitted jobs
    t = _table(title=f"{plan_.spec}: runs")
    for col in ("configuration", "seed", "run", "status", "epoch", "best test acc", "worker"):
        t.add_column(col)
    counts: dict[str, int] = {}
    damaged = []
    for r in plan_.runs:
        st, info, found = run_state(results, r.id)
        holder = read_lock(results.lock(r.id)) if st in ("running", "pending") else None
        live = holder is not None and Lock(results.lock(r.id)).judge(holder) != STALE
        if st == "running" and not live:
            st = "interrupted"  # no live worker holds it: `gstc run` resumes it
        job = queued.get(r.id)
        if st in ("pending", "interrupted") and not live and job is not None and job[1] == "PENDING":
            st = "queued"  # in a Slurm job that waits for its turn
        counts[st] = counts.get(st, 0) + 1
        if st == "damaged":
            damaged.append((r, found))
        try:
            lines = read_jsonl(results.epochs_jsonl(r.id))
            last = str(lines[-1]["epoch"]) if lines else "0"
        except DamagedFile:
            last = "?"
        best = (info or {}).get("summary", {}).get("best_test_acc")
        t.add_row(escape(r.config), str(r.seed), r.id, st, f"{last}/{r.epochs}", f"{best:.2f}" if best is not None else "-",
                  escape(worker_text(holder)) if live and holder else
                  escape(f"slurm job {job[0]} ({job[1].lower()})") if job is not None else "")
    out_ = _console()
    out_.print(t)
    out_.print(", ".join(f"{n} {k}" for k, n in sorted(counts.items())) + f" of {len(plan_.runs)} runs")
    for r, found in damaged:
        out_.print(f"run {r.id} is damaged: {found.get('file')} {found.get('reason')}; `gstc run {spec} --restart "
                   f"{r.id}` trains it again from scratch (its files are kept under {results.root / 'restarted'})",
                   markup=False)
