"""`gstc export-model RUN_ID`: a run's model, physically pruned, saved as a standard PyTorch artefact and measured.

The run is found in the results folder's manifests (each holds its spec's plan), its
model built as the plan says and loaded from its checkpoint (the last epoch it trained).
The removed channels are cut out (gstc.runtime.export) and the smaller model is saved
with `torch.export` as `model.pt2`: `torch.export.load(path).module()` gives a module
that runs without gstc, timm or the model's own code. `export.json` records what was
measured: parameters and MACs of the unpruned and the exported model (counted on the
model, and as gstc counts them), the largest difference between the masked and the
exported model's outputs (float64), and the median CPU latency of both.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from gstc.atomic import write_text
from gstc.jsonio import read_json
from gstc.paths import ResultsDir
from gstc.plan import Plan, PlanRun
from gstc.plugins import import_path
from gstc.runtime.checkpoint import load
from gstc.runtime.export import dense, latency, macs, physical, removed_channels


class ExportError(ValueError):
    """A run that cannot be exported; the message says why."""


def find_run(results: ResultsDir, run_id: str) -> tuple[Plan, PlanRun]:
    """The plan holding `run_id`, from the results folder's manifests."""
    for manifest in sorted(results.specs_dir.glob("*/manifest.json")):
        plan = Plan.model_validate(read_json(manifest)["plan"])
        for run in plan.runs:
            if run.id == run_id:
                return plan, run
    raise ExportError(f"no run {run_id} in {results.root}: no manifest under {results.specs_dir} lists it "
                      "(`gstc status SPEC` lists a spec's runs)")


def load_run_model(plan: Plan, run: PlanRun, results: ResultsDir) -> tuple[torch.nn.Module, int, tuple[int, ...]]:
    """The run's model with its checkpoint's weights and masks; the checkpoint's epoch; the input shape."""
    from gstc.runtime.data import describe
    from gstc.runtime.models import build_model

    path = results.checkpoint(run.id)
    if not path.exists():
        raise ExportError(f"run {run.id} has no checkpoint yet ({path}): train it with `gstc run SPEC` first")
    config = plan.config(run.config)
    with import_path(plan.paths):  # own architectures and datasets: the spec's folder first
        channels, size, classes = describe(config.resolved.data)
        model = build_model(config.resolved.model.arch, config.resolved.model.width, classes, layers=config.layers,
                            channels=channels, size=size, args=config.resolved.model.args)
    state = load(path, map_location="cpu")
    model.load_state_dict(state["model"])
    return model.eval(), int(state["epoch"]), (channels, *size)


def export_run(results: ResultsDir, run_id: str, batch: int = 32, repeats: int = 20) -> dict[str, Any]:
    """Export run `run_id` to its export folder; returns what export.json records."""
    plan, run = find_run(results, run_id)
    model, epoch, shape = load_run_model(plan, run, results)
    example = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(0))
    removed = removed_channels(model)
    pruned, full = physical(model, example), dense(model).eval()
    with torch.no_grad():
        difference = float((model.double()(example.double()) - pruned.double()(example.double())).abs().max())
    model.float(), pruned.float()
    counted = model.cost.count({name: p.channels - int((p.mask_values == 0).sum()) for name, p in model.prunable().items()})
    report = {
        "run": run.id, "config": run.config, "seed": run.seed, "epoch": epoch, "epochs": run.epochs,
        "removed": {name: len(idx) for name, idx in removed.items()},
        "params": {"unpruned": sum(p.numel() for p in full.parameters()),
                   "exported": sum(p.numel() for p in pruned.parameters()), "counted": counted[0]},
        "macs": {"unpruned": macs(full, example), "exported": macs(pruned, example), "counted": counted[1]},
        "max_output_difference": difference,
        "latency_s": {"batch": batch, "threads": torch.get_num_threads(), "repeats": repeats,
                      "unpruned": latency(full, example, repeats), "exported": latency(pruned, example, repeats)},
    }
    folder = results.export_dir(run.id)
    folder.mkdir(parents=True, exist_ok=True)
    report["file"] = str(_save(pruned, example, folder / "model.pt2"))
    write_text(folder / "export.json", json.dumps(report, indent=2) + "\n")
    return report


def _save(module: torch.nn.Module, example: torch.Tensor, path: Path) -> Path:
    """`torch.export` the module with a dynamic batch size, and save it."""
    batch = torch.export.Dim("batch", min=1)
    try:
        program = torch.export.export(module.eval(), (example,), dynamic_shapes=({0: batch},))
    except Exception:  # noqa: BLE001 - a model whose code fixes the batch size: exported for this one
        program = torch.export.export(module.eval(), (example,))
    torch.export.save(program, str(path))
    return path


def summary(report: dict[str, Any]) -> list[Any]:
    """What `gstc export-model` prints of an export: a table of the two models, and two lines."""
    from rich.table import Table

    r = report
    t = Table(title=f"run {r['run']} ({r['config']}, seed {r['seed']}), epoch {r['epoch']} of {r['epochs']}",
              title_justify="left")
    for col in ("", "unpruned", "exported", "ratio"):
        t.add_column(col, justify="right" if col else "left")
    for label, key in (("parameters", "params"), ("MACs per image", "macs")):
        a, b = r[key]["unpruned"], r[key]["exported"]
        t.add_row(label, f"{a:,}", f"{b:,}", f"{b / a:.3f}")
    lat = r["latency_s"]
    t.add_row(f"CPU ms per batch of {lat['batch']}", f"{1e3 * lat['unpruned']:.2f}", f"{1e3 * lat['exported']:.2f}",
              f"{lat['exported'] / lat['unpruned']:.3f}")
    return [t, f"largest output difference from the masked model (float64): {r['max_output_difference']:.1e}",
            f"wrote {r['file']} (torch.export.load(path).module() runs it) and export.json beside it"]
