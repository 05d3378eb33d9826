"""The `gstc` command line (docs/design.md, "Commands").

Bad input always ends with readable errors on stderr and exit status 1, never a
traceback. Commands that only read specs (validate, plan, layers, schema) import
neither torch nor anything that imports it.
"""

from __future__ import annotations

import json
import os
import re
import sys
from enum import Enum
from pathlib import Path
from typing import Any, List, Optional

import typer

from gstc.errors import SpecError, SpecErrors

app = typer.Typer(
    name="gstc",
    help="Compile YAML pruning-experiment specs into exact plans, run them, and compare results.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class Format(str, Enum):
    text = "text"
    json = "json"
    github = "github"


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _table(title: str):
    """A rich table in gstc's compact style (a rule under the header, no frame, one space between columns), so
    that the tables of `gstc plan`, `status` and `layers` keep their cells whole in an 80-column terminal."""
    from rich import box
    from rich.table import Table

    return Table(title=title, title_justify="left", title_style="bold", box=box.SIMPLE_HEAD, show_edge=False,
                 pad_edge=False, collapse_padding=True, padding=(0, 1, 0, 0))


def _print_tables(console, tables: list, empty: str | None = None) -> None:
    """Print (title, header, rows, caption) tables with rich, one line per row where the terminal allows."""
    from rich.markup import escape

    for title, header, rows, caption in tables:
        t = _table(title)
        for h in header:
            t.add_column(h, overflow="fold")
        for row in rows:
            t.add_row(*(escape(c) for c in row))
        if not rows and empty:
            t.add_row(empty, *[""] * (len(header) - 1))
        console.print(t)
        if caption:  # words wrapped at the terminal's width, not cut
            console.print(caption, markup=False, soft_wrap=False, style="dim")
        console.print()


def _wide(console) -> bool:
    from gstc.render import WIDE

    return console.width >= WIDE


class Correction(str, Enum):
    holm = "holm"
    bh = "bh"
    none = "none"


def _metrics(names: Optional[List[str]], also: Optional[str] = None) -> tuple[str, ...]:
    """The metrics to test: --metric values (default: the outcomes), plus --fail-if-worse's."""
    from gstc.manifest import OUTCOMES, SUMMARY_FIELDS

    chosen = list(names or OUTCOMES)
    for name in chosen:
        if name not in SUMMARY_FIELDS:
            _option_fail("--metric", f"unknown metric {name!r}: choose from {', '.join(SUMMARY_FIELDS)}")
    if also and also not in chosen:
        chosen.append(also)
    return tuple(chosen)


def _fail(errors: list[SpecError]) -> None:
    err = _console(stderr=True)
    for e in errors:
        err.print(e.format(), markup=False)
    raise typer.Exit(1)


def _option_fail(option: str, message: str) -> None:
    """Bad input on the command line: `error: --OPTION: what was expected, found what`, exit status 1."""
    text = message if not option or message.startswith((option + " ", option + ":")) else f"{option}: {message}"
    _console(stderr=True).print(f"error: {text}", markup=False)
    raise typer.Exit(1)


DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")  # what --device accepts, checked before torch is imported


def _parse_sets(sets: Optional[List[str]]) -> list[tuple[str, Any]]:
    from gstc.load import parse_scalar

    out = []
    for item in sets or []:
        path, sep, text = item.partition("=")
        if not sep or not path:
            _option_fail("--set", f"expected PATH=VALUE, found {item!r}")
        try:
            out.append((path.strip(), parse_scalar(text) if text.strip() else ""))
        except SpecErrors as exc:
            _option_fail(f"--set {item}", f"cannot parse value {text!r}: {exc.errors[0].message}")
    return out


def _compile(spec: Path, sets: Optional[List[str]] = None):
    from gstc.compile import compile_file

    try:
        return compile_file(str(spec), _parse_sets(sets))
    except SpecErrors as exc:
        _fail(exc.errors)


@app.command()
def validate(
    specs: List[Path] = typer.Argument(..., help="Spec files to check, or folders: every *.yaml and *.yml under "
                                       "them.", show_default=False),
    format: Format = typer.Option(Format.text, "--format", help="text, json, or github (::error annotations for CI)."),
) -> None:
    """Check specs: exit 0 when all are valid, 1 otherwise, listing every error."""
    from gstc.compile import check
    from gstc.load import load_file

    files = []
    for spec in specs:
        if spec.is_dir():  # a folder of specs, as CI jobs give it: walked, in a stable order
            found = sorted(p for p in spec.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
            if not found:
                _console(stderr=True).print(f"error: {spec} holds no *.yaml or *.yml file", markup=False)
                raise typer.Exit(1)
            files += found
        else:
            files.append(spec)
    results = []
    for spec in files:
        try:
            plan, errors = check(load_file(spec))
        except SpecErrors as exc:
            plan, errors = None, exc.errors
        results.append((str(spec), plan, errors))
    failed = any(errors for _, _, errors in results)
    if format is Format.json:
        doc = [
            {"file": f, "valid": not errs, "errors": [e.to_dict() for e in errs],
             **({"configs": len(plan.configs), "runs": len(plan.runs)} if plan else {})}
            for f, plan, errs in results
        ]
        typer.echo(json.dumps(doc, indent=2))
    elif format is Format.github:
        for _, _, errs in results:
            for e in errs:
                typer.echo(e.github())
    else:
        out, err = _console(), _console(stderr=True)
        for f, plan, errs in results:
            for e in errs:
                err.print(e.format(), markup=False)
            if plan is not None:
                nc, nr = len(plan.configs), len(plan.runs)
                out.print(f"{f}: ok ({nc} configuration{'s' * (nc != 1)}, {nr} run{'s' * (nr != 1)})", markup=False)
        if failed:
            n = sum(len(errs) for _, _, errs in results)
            err.print(f"{n} error{'s' if n != 1 else ''} in {sum(1 for r in results if r[2])} of {len(results)} file(s)")
    raise typer.Exit(1 if failed else 0)


def _epochs_text(epochs: list[int], limit: int = 6) -> str:
    if len(epochs) <= limit:
        return ", ".join(map(str, epochs))
    step = epochs[1] - epochs[0]
    if all(b - a == step for a, b in zip(epochs, epochs[1:])):
        return f"{epochs[0]}, {epochs[1]}, ..., {epochs[-1]} (every {step})"
    return ", ".join(map(str, epochs[:3])) + ", ..., " + str(epochs[-1])


def _reduction(before: int, after: int) -> str:
    """A count in 3 significant digits (exact ones: `gstc plan --json`), with what pruning removed."""
    unit = next(((d, u) for d, u in ((1e9, "G"), (1e6, "M"), (1e3, "k")) if after >= d), (1, ""))
    text = f"{after / unit[0]:.3g}{unit[1]}"
    return text + (f" -{100 * (1 - after / before):.0f}%" if after != before else "")


@app.command()
def plan(
    spec: Path = typer.Argument(..., help="Spec file.", show_default=False),
    json_out: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
    config: Optional[str] = typer.Option(None, "--config", help="Show only this configuration's schedule."),
    sets: Optional[List[str]] = typer.Option(None, "--set", help="Override PATH=VALUE (repeatable), e.g. train.epochs=3."),
    pack: Optional[str] = typer.Option(None, "--pack", help="Also show the packs `gstc run --pack K` would train."),
) -> None:
    """Show exactly what would run: configurations, runs, every pruning event, and packs."""
    from gstc.packs import groups, make_packs

    p = _compile(spec, sets)
    pack_size = _pack_size(pack) if pack is not None else None
    # auto sizes packs by the device's memory at run time; the plan shows the largest possible packs.
    packs = make_packs(p, p.runs, len(p.runs) if pack_size == "auto" else pack_size) if pack_size else None
    if json_out:
        if packs is None:  # pydantic's own writer: the same text as json.dumps(indent=2), several times faster
            typer.echo(p.model_dump_json(indent=2))
            return
        doc = p.model_dump(mode="json")
        doc["packs"] = [pk.model_dump(mode="json") for pk in packs]
        typer.echo(json.dumps(doc, indent=2))
        return
    from rich.markup import escape

    out = _console()
    seeds = sorted({r.seed for r in p.runs})
    out.print(f"[bold]{p.spec}[/]: {p.description}" if p.description else f"[bold]{p.spec}[/]")
    out.print(f"{len(p.configs)} configurations x {len(seeds)} seeds ({', '.join(map(str, seeds))}) = {len(p.runs)} runs")
    summary = _table(title="Configurations")
    for col in ("configuration", "epochs", "pruned layers", "pruning epochs", "max rate", "runs", "params", "MACs"):
        summary.add_column(col, overflow="fold", justify="right" if col[0] in "pM" else "left",
                           no_wrap=col == "configuration")  # names stay whole; numbers wrap at their spaces
    for c in p.configs:
        runs = [r for r in p.runs if r.config == c.id]
        if c.chain is not None:  # a lottery chain: its levels' runs, some of them another configuration's
            runs = [r for r in p.runs if r.id in {i for level in c.chain for i in level}]
        pruning_epochs = len({e.epoch for e in runs[0].events}) if runs else 0
        rate = max((s.rate for s in c.schedules if s.curve == "equal"), default=None)
        curves = sorted({s.curve for s in c.schedules if s.curve != "equal"})
        rates = ", ".join(([f"{100 * rate:.1f}%"] if rate is not None else []) + curves) or "-"
        summary.add_row(escape(c.id), str(c.resolved.train.epochs), str(len(c.schedules)), str(pruning_epochs),
                        rates, str(len(runs)),
                        *((_reduction(*c.counts.params) if c.counts.nonzero is None else
                           f"{_reduction(*c.counts.nonzero)} nonzero", _reduction(*c.counts.macs))
                          if c.counts else ("-", "-")))
    out.print(summary)
    for c in p.configs:
        if config is not None and c.id != config or not c.schedules:
            continue
        if c.chain is not None:
            out.print(_chain_table(p, c))
            continue
        t = _table(title=f"{escape(c.id)}: per-layer schedule")
        for col in ("layer", "units", "scoring/target/mode", "event epochs", "pruned per event", "kept", "rate"):
            t.add_column(col, overflow="fold", no_wrap=col in ("layer", "scoring/target/mode"))
        for s in c.schedules:
            if s.group and s.group[0] != s.layer:
                continue  # a global group: one row, its first layer's
            mode = s.mode.kind if s.mode.kind == "prune" else json.dumps(s.mode.model_dump(mode="json"), separators=(",", ":"))
            pruned = _epochs_text(s.pruned, limit=8) if len(set(s.pruned)) > 1 else f"{s.pruned[0]} x {len(s.pruned)}"
            name = f"{', '.join(s.group)} (one ranking)" if s.group else s.layer
            units = s.kept[0] + s.pruned[0]
            kind = {"filter": "filters", "weight": "weights"}.get(s.granularity, f"{s.granularity} groups")
            t.add_row(escape(name), f"{units} {kind}", escape(f"{s.scoring}/{s.target}/{mode}"), _epochs_text(s.epochs),
                      pruned, f"{s.kept[-1]} ({100 * s.amount:.0f}% off)",
                      f"{100 * s.rate:.2f}%" if s.curve == "equal" else s.curve)
        out.print(t)
    compatible = groups(p, p.runs)
    out.print(f"{len(p.runs)} runs in {len(compatible)} group(s) of compatible runs (largest: "
              f"{max(len(g) for g in compatible)}), which `gstc run --pack K` trains K at a time as one model")
    if packs is not None:
        by_id = {r.id: r for r in p.runs}
        t = _table(title=f"Packs (--pack {pack})")
        for col in ("pack", "runs", "members (configuration seed)"):
            t.add_column(col, overflow="fold")
        for pk in packs:
            t.add_row(str(pk.index), str(len(pk.runs)),
                      escape(", ".join(f"{by_id[i].config} {by_id[i].seed}" for i in pk.runs)))
        out.print(t)
    if config is not None and all(c.id != config for c in p.configs):
        _fail([SpecError(str(spec), 1, 1, "", f"no configuration {config!r}; the plan has: {', '.join(c.id for c in p.configs)}")])


def _chain_table(p, c):
    """A lottery configuration's levels: what each starts from, its sparsity, its runs (the first seed's)."""
    from rich.markup import escape

    by_id = {r.id: r for r in p.runs}
    lot = c.resolved.lottery
    t = _table(f"{escape(c.id)}: {lot.levels} levels of {100 * lot.fraction:g}%, rewind {lot.rewind}"
               + (f", control {lot.control}" if lot.control else ""))
    for col in ("level", "stage", "epochs", "start", "pruned/kept", "sparsity", "run (seed "
                f"{by_id[c.chain[0][0]].seed})", "after"):
        t.add_column(col, overflow="fold", no_wrap=col not in ("epochs", "start"))  # ids and counts stay whole
    keeps = None
    for level, ids in enumerate(c.chain):
        r = by_id[ids[0]]
        st = r.stage
        counts = ", ".join(f"{e.prune}/{e.kept}" for e in st.events) or "-"
        source = {"init": "init", "rewind": f"level 0, epoch {st.start}", "trained": f"level {level - 1}",
                  "reinit": "fresh init"}[st.weights]
        t.add_row(str(level), st.kind, f"{st.start + 1}..{r.epochs}", source if level else "init", counts,
                  f"{100 * st.sparsity:.1f}%", r.id, st.after or "-")
        keeps = keeps or st.keep
    if keeps:
        t.caption, t.caption_justify = f"level 0 keeps its weights after epochs {keeps}, which levels rewind to", "left"
    return t


@app.command()
def layers(
    target: str = typer.Argument(..., help="An architecture (vgg11_bn, torchvision.resnet18, mylab.nets:WideVGG, a "
                                 "plugin's name), or a spec file: the layers of its models.", show_default=False),
    width: float = typer.Option(1.0, "--width", help="Width multiplier (built-in architectures)."),
    args: Optional[str] = typer.Option(None, "--args", help="Builder arguments of another architecture, a YAML "
                                       "mapping such as '{width_mult: 0.5}'."),
    channels: int = typer.Option(3, "--channels", help="Image channels (another architecture's input conv)."),
    size: int = typer.Option(32, "--size", help="Image side in pixels."),
    classes: int = typer.Option(10, "--classes", help="Classes (num_classes of the builder)."),
    write: bool = typer.Option(False, "--write", help="With a spec: write the layer file(s) that its model sections "
                               "name, from the models built on its data."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List an architecture's prunable layers and their filter counts, or write a spec's layer file."""
    from gstc import archs

    if target.endswith((".yaml", ".yml")):
        return _spec_layers(Path(target), write, json_out)
    if write:
        _option_fail("--write", "--write writes a spec's layer files: give the spec "
                         f"(gstc layers SPEC.yaml --write), not an architecture ({target})")
    if not width > 0:
        _option_fail("--width", f"expected a width > 0, found {width}")
    problem = archs.check_arch(target)
    if problem:
        _option_fail("ARCH", problem)
    builder_args = _yaml_mapping(args, "--args")
    if target in archs.ARCHS:
        if builder_args:
            _option_fail("--args", f"{target} is built in and takes only --width")
        rows = [{"name": l.name, "filters": l.filters, "after": l.after, "groups": l.groups}
                for l in archs.layers(target, width)]
    else:
        if width != 1.0:
            _option_fail("--width", f"--width applies to the built-in architectures; give "
                             f"{target}'s own argument in --args")
        _need_torch(f"gstc layers {target}")
        from gstc.runtime.layer_files import layer_table

        try:
            rows = layer_table(target, builder_args, 1.0, channels, (size, size), classes)
        except ValueError as exc:
            _option_fail("ARCH", str(exc))
    _print_layers(f"{target}" + (f" (width {width:g})" if target in archs.ARCHS else ""), rows, json_out)


def _yaml_mapping(text: Optional[str], option: str) -> dict:
    if text is None:
        return {}
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        _option_fail(option, f"expected a YAML mapping such as '{{depth: 16}}': {exc}")
    if not isinstance(value, dict):
        _option_fail(option, f"expected a mapping such as '{{depth: 16}}', found {text!r}")
    return value


def _need_torch(what: str) -> None:
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        _option_fail("", f"{what} builds the model, which needs PyTorch: "
                         "pip install torch torchvision")


def _print_layers(title: str, rows: list[dict], json_out: bool) -> None:
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
        return

    refused = sum(1 for row in rows if row.get("refused"))
    t = _table(f"{title}: {len(rows) - refused} prunable layers" + (f", {refused} refused" if refused else ""))
    t.add_column("layer", overflow="fold")
    t.add_column("filters", justify="right")
    t.add_column("mask after")
    t.add_column("groups", justify="right")
    t.add_column("pruned with (coupled layers; followers) or why it cannot be pruned", overflow="fold")
    for row in rows:
        notes = "; ".join(part for part in (", ".join(row.get("coupled", [])), ", ".join(row.get("followers", [])))
                          if part)
        t.add_row(row["name"], str(row["filters"]), row["after"], str(row["groups"]),
                  f"refused: {row['refused']}" if row.get("refused") else notes, style="dim" if row.get("refused") else None)
    _console().print(t)


def _spec_layers(spec: Path, write: bool, json_out: bool) -> None:
    """`gstc layers SPEC [--write]`: build the spec's non-built-in models on its data; print or write their tables."""
    from gstc import archs
    from gstc.atomic import write_text
    from gstc.compile import CollectModels, check
    from gstc.load import load_file

    try:
        doc = load_file(str(spec))
    except SpecErrors as exc:
        _fail(exc.errors)
    collector = CollectModels()
    _, errors = check(doc, None, collector)
    if errors:
        _fail(errors)
    if not collector.models:
        typer.echo(f"{spec}: every architecture is built in; their tables are gstc's own (gstc layers ARCH lists them)")
        return
    _need_torch(f"gstc layers {spec}")
    from gstc.runtime import builders
    from gstc.runtime.data import DataError
    from gstc.runtime.layer_files import layer_files

    builders.SEARCH_PATH[:] = [str(spec.resolve().parent)]
    try:
        files = layer_files(collector.models)
    except (DataError, ValueError) as exc:
        _fail([SpecError(str(spec), 1, 1, "", str(exc))])
    for file, models in files.items():
        if write:
            write_text(Path(file), archs.layer_file_text(models))
            typer.echo(f"wrote {file}: " + "; ".join(
                f"{m['arch']} ({len(m['layers'])} convs, {sum(1 for l in m['layers'] if not l.get('refused'))} prunable)"
                for m in models))
        else:
            for m in models:
                _print_layers(f"{m['arch']} {json.dumps(m['args'])}", m["layers"], json_out)
    if write:
        _, errors = check(load_file(str(spec)))
        if errors:  # the tables are written; what the spec asks of them does not hold
            _fail(errors)


@app.command()
def schema(
    out: Optional[Path] = typer.Option(None, "--out", help="Write to this file instead of standard output."),
) -> None:
    """Print the spec's JSON Schema (draft-07, for yaml-language-server)."""
    from gstc.schema import schema_text

    text = schema_text()
    if out is None:
        typer.echo(text, nl=False)
    else:
        from gstc.atomic import write_text

        write_text(out, text)


def _pack_size(text: str):
    from gstc.packs import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        _option_fail("--pack", str(exc))


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


def _check_executor_options(executor: ExecutorKind, given: dict[str, Any]) -> None:
    """Options that only one executor reads are errors with the others (they would be silently ignored)."""
    ray, slurm = (ExecutorKind.ray,), (ExecutorKind.slurm,)
    owners = {"--gpus": (ExecutorKind.local,), "--address": ray, "--gpus-per-task": ray,
              "--cpus-per-task": (ExecutorKind.ray, ExecutorKind.slurm)}
    owners |= {f"--slurm-{o}": slurm for o in ("partition", "time", "gpus", "cluster", "mem", "account", "qos", "option")}
    for option, value in given.items():
        if value is not None and value != [] and executor not in owners[option]:
            with_ = " or ".join(f"--executor {o.value}" for o in owners[option])
            _option_fail(option, f"{option} goes with {with_}, not --executor {executor.value}")


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
    from gstc.manifest import ResultsDir

    if ResultsDir(out).root.exists() and not ResultsDir(out).root.is_dir():
        _option_fail("--out", f"{ResultsDir(out).root} is a file; the results go in a folder")
    _check_executor_options(executor, {"--gpus": gpus, "--address": address, "--gpus-per-task": gpus_per_task,
                                       "--slurm-partition": slurm_partition, "--slurm-time": slurm_time,
                                       "--slurm-gpus": slurm_gpus, "--slurm-cluster": slurm_cluster,
                                       "--cpus-per-task": cpus_per_task, "--slurm-mem": slurm_mem,
                                       "--slurm-account": slurm_account, "--slurm-qos": slurm_qos,
                                       "--slurm-option": slurm_option})
    gpu_ids = _gpu_list(gpus) if gpus is not None else None
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        _fail([SpecError(str(spec), 1, 1, "", "gstc run needs PyTorch, which is not installed: pip install torch torchvision")])
    from gstc.manifest import ResultsDir, read_run
    from gstc.runtime.data import DataError
    from gstc.runtime.driver import ExecutorError, Interrupted, make_executor
    from gstc.runtime.progress import run_with_progress

    from gstc.runtime.tracking import ENV

    trackers = track or [t.strip() for t in os.environ.get(ENV, "").split(",") if t.strip()]
    results = ResultsDir(out)
    _check_restart(spec, runs, restart or [])
    try:
        ex = make_executor(executor.value, device, gpu_ids, address, gpus_per_task, slurm_partition, slurm_time,
                           slurm_gpus, slurm_cluster, cpus=cpus_per_task,
                           slurm={"mem": slurm_mem, "account": slurm_account, "qos": slurm_qos,
                                  "options": slurm_option or []}, track=trackers)
        if restart:
            _restart(results, restart, ex)
        report = run_with_progress(plan_, runs, results, ex, pack_size)
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

    err = _console(stderr=True)
    for rid in ids:
        if not results.run_dir(rid).exists():
            continue  # nothing to set aside: it trains from scratch anyway
        with locks.claim_runs(results, [rid], wait=False) as claims:
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
    from gstc.manifest import ResultsDir
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

    from gstc.manifest import DamagedFile, ResultsDir, read_jsonl, run_state
    from gstc.locks import STALE, Lock, read_lock  # torch-free: the lock files' protocol

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


class DiffFormat(str, Enum):
    text = "text"
    md = "md"
    json = "json"


class ReportFormat(str, Enum):
    text = "text"
    md = "md"
    json = "json"
    html = "html"


class TableFormat(str, Enum):
    csv = "csv"
    parquet = "parquet"


@app.command("export")
def export_tables(
    spec: Path = typer.Argument(..., help="Spec file.", show_default=False),
    format: TableFormat = typer.Option(TableFormat.csv, "--format", help="csv, or parquet (needs pyarrow)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Results folder (default: $GSTC_RESULTS or ./results)."),
    to: Optional[Path] = typer.Option(None, "--to", help="Folder for the tables (default: <out>/specs/<name>/tables)."),
    sets: Optional[List[str]] = typer.Option(None, "--set", help="Override PATH=VALUE (repeatable)."),
) -> None:
    """The results as tables for R or a spreadsheet: runs, epochs, events, flatness (as `gstc.results` gives them)."""
    from gstc.frames import ResultsError, export, results
    from gstc.manifest import ResultsDir

    plan_ = _compile(spec, sets)
    where = ResultsDir(out)
    try:
        res = results(plan_, where.root)
        written = export(res, to or where.spec_dir(plan_.spec) / "tables", format.value)
    except ResultsError as exc:
        _fail([SpecError(str(spec), 1, 1, "", str(exc))])
    err = _console(stderr=True)
    if res.missing:
        err.print(f"partial results: {len(res.runs) - len(res.missing)} of {len(res.runs)} runs done (the runs table "
                  "lists every run with its status)", markup=False)
    for path in written:
        err.print(f"wrote {path}", markup=False)


@app.command()
def report(
    spec: Path = typer.Argument(..., help="Spec file.", show_default=False),
    out: Optional[Path] = typer.Option(None, "--out", help="Results folder (default: $GSTC_RESULTS or ./results)."),
    plots: Optional[Path] = typer.Option(None, "--plots", help="Folder for the PNGs and report.html (default: next to the manifest)."),
    format: ReportFormat = typer.Option(ReportFormat.text, "--format", help="text, md, json, or html (one self-contained file)."),
    sets: Optional[List[str]] = typer.Option(None, "--set", help="Override PATH=VALUE (repeatable)."),
    metrics: Optional[List[str]] = typer.Option(None, "--metric", help="Metric to compare with the baseline (repeatable; default: best_test_acc, gen_gap, mean_stability)."),
    correction: Correction = typer.Option(Correction.holm, "--correction", help="Multiple-comparison correction over the report's comparisons: holm, bh (Benjamini-Hochberg) or none."),
    unpaired: bool = typer.Option(False, "--unpaired", help="Compare as unpaired samples even where the seeds match (to see what pairing adds)."),
) -> None:
    """Tables (metrics with CIs, comparisons with the baseline, correlations), PNG plots and an HTML report."""
    from gstc import report as r
    from gstc.manifest import ResultsDir

    plan_ = _compile(spec, sets)
    results = ResultsDir(out)
    rep = r.build(plan_, results, _metrics(metrics), correction.value, not unpaired)
    if rep["done"] == 0:
        _fail([SpecError(str(spec), 1, 1, "", f"no finished runs in {results.root} yet: run `gstc run {spec}` first")])
    folder = plots or results.spec_dir(plan_.spec)
    written = r.plot(plan_, results, rep, folder)
    if format is ReportFormat.json:
        typer.echo(json.dumps({k: v for k, v in rep.items() if k != "manifest"} | {"plots": [str(p) for p in written]}, indent=2))
        return
    if format is ReportFormat.html:
        from gstc import report_html

        written = [report_html.write(plan_, rep, folder, written)]
    elif format is ReportFormat.md:
        typer.echo(r.markdown(rep))
    else:
        console = _console()
        if rep["partial"]:
            console.print(f"partial results: {rep['done']} of {rep['runs']} runs done", markup=False)
        _print_tables(console, r.tables(rep, wide=_wide(console)))
    err = _console(stderr=True)
    for d in rep["damaged"]:
        err.print(f"run {d['id']} ({d['config']}, seed {d['seed']}) is damaged, left out: {d.get('file')} "
                  f"{d.get('reason')}; `gstc run {spec} --restart {d['id']}` trains it again", markup=False)
    for p in written:
        err.print(f"wrote {p}", markup=False)


@app.command("diff")
def diff_cmd(
    a: Path = typer.Argument(..., help="Spec (or manifest.json) A.", show_default=False),
    b: Path = typer.Argument(..., help="Spec (or manifest.json) B.", show_default=False),
    out: Optional[Path] = typer.Option(None, "--out", help="Results folder of specs' runs (default: $GSTC_RESULTS or ./results)."),
    show_all: bool = typer.Option(False, "--all", help="Show unchanged configuration paths too."),
    precision: int = typer.Option(5, "--precision", min=1, max=17, help="Significant digits."),
    format: DiffFormat = typer.Option(DiffFormat.text, "--format", help="text, md (for pull requests) or json."),
    fail_if_worse: Optional[str] = typer.Option(None, "--fail-if-worse", help="Exit 1 when B is significantly worse on this metric (after the correction)."),
    metrics: Optional[List[str]] = typer.Option(None, "--metric", help="Metric to compare (repeatable; default: best_test_acc, gen_gap, mean_stability)."),
    correction: Correction = typer.Option(Correction.holm, "--correction", help="Multiple-comparison correction over the diff's comparisons: holm, bh (Benjamini-Hochberg) or none."),
    unpaired: bool = typer.Option(False, "--unpaired", help="Compare as unpaired samples even where the seeds match (to see what pairing adds)."),
) -> None:
    """Compare two specs: resolved configurations, plans, and results paired by seed, with CIs."""
    from gstc import diff as d
    from gstc.manifest import ResultsDir

    for path in (a, b):
        if not path.is_file():
            _fail([SpecError(str(path), 1, 1, "", "cannot read the file: no such file")])
    if fail_if_worse is not None and fail_if_worse not in d.BETTER:
        _option_fail("--fail-if-worse", f"{fail_if_worse!r} has no better direction; "
                         f"choose from {', '.join(d.BETTER)}")
    tested = _metrics(metrics, fail_if_worse)
    try:
        report = d.diff(str(a), str(b), ResultsDir(out), show_all, tested, correction.value, not unpaired)
    except SpecErrors as exc:
        _fail(exc.errors)
    except (ValueError, KeyError) as exc:  # a manifest that is not one
        _fail([SpecError(str(a), 1, 1, "", f"cannot compare: {exc}")])
    if format is DiffFormat.json:
        typer.echo(json.dumps(report, indent=2))
    elif format is DiffFormat.md:
        typer.echo(d.markdown(report, precision))
    else:
        console = _console()
        console.print(f"A: {a}", markup=False, soft_wrap=False)
        console.print(f"B: {b}", markup=False, soft_wrap=False)
        _print_tables(console, d.tables(report, precision, wide=_wide(console)), empty="(no differences)")
    if fail_if_worse:
        bad = d.worse(report, fail_if_worse)
        if bad:
            err = _console(stderr=True)
            for r in bad:
                err.print(f"{r['config']}: {fail_if_worse} is significantly worse in B ({r['diff']:+.4g}, p = {r['p']:.2g}, "
                          f"adjusted {r['p_adj']:.2g})", markup=False)
            raise typer.Exit(1)


def main() -> None:
    """Console entry point: any unexpected exception becomes one line, not a traceback."""
    try:
        app()
    except SystemExit:
        raise
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # a bug in gstc, not in the input
        if os.environ.get("GSTC_DEBUG"):
            raise
        print(f"gstc: internal error: {type(exc).__name__}: {exc} (set GSTC_DEBUG=1 for the traceback; "
              "please report it)", file=sys.stderr)
        sys.exit(2)
