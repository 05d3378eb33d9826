"""The commands that read specs and never import torch: validate, plan, layers (torch only to build a model
that is not built in) and schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from gstc.cli.common import Format, _compile, _console, _fail, _need_torch, _option_fail, _pack_size, _table, app
from gstc.errors import SpecError, SpecErrors


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
        from gstc.plugins import import_path
        from gstc.runtime.layer_files import layer_table

        try:
            with import_path([]):  # a module:attribute in the current folder
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
    from gstc.compile import check
    from gstc.layer_tables import CollectModels
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
    from gstc.plugins import import_path
    from gstc.runtime.data import DataError
    from gstc.runtime.layer_files import layer_files

    try:
        with import_path([str(spec.resolve().parent)]):  # the spec's own modules: its folder first
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
