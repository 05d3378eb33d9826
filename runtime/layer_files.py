"""Layer files: the prunable layers of a spec's non-built-in models, built on its data (`gstc layers SPEC --write`)."""

from __future__ import annotations

from typing import Any

import torch

from gstc.runtime.models import build_model


def layer_table(arch: str, args: dict, width: float, channels: int, size: tuple[int, int], classes: int) -> list[dict]:
    """The layers of a non-built-in architecture as `gstc layers` lists them: name, filters, after, groups, and
    where there are any, coupled layers, followers and why it is refused."""
    return layer_model(arch, args, channels, size, classes)[0]


def layer_model(arch: str, args: dict, channels: int, size: tuple[int, int], classes: int) -> tuple[list[dict], dict]:
    """The layer table and the cost (`Cost.to_json`) of a non-built-in architecture; a layer whose removal the
    model's own output shows not to be what its masks compute is refused too (`export.inexact_layers`)."""
    from gstc.runtime.export import inexact_layers

    model = build_model(arch, 1.0, classes, channels=channels, size=size, args=args)
    rows, cost = model.table(), model.cost.to_json()
    inexact = inexact_layers(model, torch.randn(2, channels, *size, generator=torch.Generator().manual_seed(0)))
    for row in rows:
        why = inexact.get(row["name"]) or next((inexact[c] for c in row.get("coupled", ()) if c in inexact), None)
        if why:
            row.update(refused=why)
            row.pop("followers", None)
    return rows, cost


def layer_files(models: list[tuple[Any, str]]) -> dict[str, list[dict]]:
    """The layer files that configurations need: {file: [model entries]}, each model built once.

    `models`: (resolved configuration, its layer file) pairs. A model whose table differs
    between two configurations of one file (it depends on the data) is an error.
    """
    from gstc.archs import model_key
    from gstc.runtime.data import describe

    shapes: dict[str, tuple[int, tuple[int, int], int]] = {}
    files: dict[str, dict[str, dict]] = {}
    for cfg, file in models:
        data_key = cfg.data.model_dump_json()
        if data_key not in shapes:
            shapes[data_key] = describe(cfg.data)
        channels, size, classes = shapes[data_key]
        key = model_key(cfg.model.arch, cfg.model.args)
        entry = files.setdefault(file, {}).get(key)
        if entry is not None and (entry["input"], entry["classes"]) == ([channels, *size], classes):
            continue
        table, cost = layer_model(cfg.model.arch, cfg.model.args, channels, tuple(size), classes)
        if entry is not None and entry["layers"] != table:
            raise ValueError(f"{cfg.model.arch} with args {cfg.model.args} has other prunable layers on "
                             f"{channels}x{size[0]}x{size[1]} images with {classes} classes than on "
                             f"{'x'.join(map(str, entry['input']))} images with {entry['classes']}: give the two "
                             "datasets' configurations separate layer files")
        files[file][key] = {"arch": cfg.model.arch, "args": cfg.model.args, "input": [channels, *size],
                            "classes": classes, "layers": table, "cost": cost}
    return {file: list(entries.values()) for file, entries in files.items()}
