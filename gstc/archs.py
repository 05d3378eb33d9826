"""Prunable-layer tables of architectures, without torch.

The compiler resolves `select` globs and filter counts from these tables; the runtime
builds the real models and checks them against the same tables (tests/runtime).
Names follow the torch modules' names so that masks and plans line up one to one.

Four architectures are built in and their tables are written here. Any other
(`torchvision.NAME`, `module:attribute`, a plugin's name; see `classify`) has its
table in a *layer file* next to the spec, like a lock file: `gstc layers SPEC --write`
builds the models (with torch) and writes it, the compiler reads it without torch, and
`gstc run` checks that the model it builds still matches it.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from gstc.costs import Cost

# VGG11 with batch norm: eight 3x3 convs, BN after each, five max-pools, one dense layer.
_VGG11 = (64, 128, 256, 256, 512, 512, 512, 512)


@dataclass(frozen=True)
class Layer:
    name: str
    filters: int
    after: Literal["bn", "conv"] = "bn"  # where the mask sits: after the conv's BN, or after the conv itself
    groups: int = 1  # the conv's groups (depthwise: as many as its input channels)
    coupled: tuple[str, ...] = ()  # other layers writing the same channels (a residual sum): pruned together
    followers: tuple[str, ...] = ()  # other modules holding its channels, zeroed with it (depthwise convs, gates, norms)
    refused: str | None = None  # why it cannot be pruned; None: prunable


def _scaled(filters: int, width: float) -> int:
    """Filter count under a width multiplier: rounded half up, at least 1."""
    return max(1, int(filters * width + 0.5))


def _vgg11_bn() -> list[tuple[str, int]]:
    return [(f"conv{i + 1}", f) for i, f in enumerate(_VGG11)]


def _resnet(stages: tuple[int, ...], blocks: int) -> list[tuple[str, int]]:
    # Basic blocks: layer{s}.{b}.conv1 and .conv2 both have the stage's width.
    return [
        (f"layer{s + 1}.{b}.conv{c}", width)
        for s, width in enumerate(stages)
        for b in range(blocks)
        for c in (1, 2)
    ]


ARCHS = {
    "vgg11_bn": _vgg11_bn,
    "resnet18": lambda: _resnet((64, 128, 256, 512), 2),  # CIFAR variant, 3x3 stem
    "resnet20": lambda: _resnet((16, 32, 64), 3),  # option-A shortcuts
    "resnet56": lambda: _resnet((16, 32, 64), 9),
}


STEMS = {"resnet18": 64, "resnet20": 16, "resnet56": 16}  # a ResNet's first conv (never pruned), before the width


@functools.lru_cache(maxsize=64)  # a sweep's configurations share a few models
def builtin_cost(arch: str, width: float, channels: int, size: tuple[int, int], classes: int) -> Cost:
    """Parameters and MACs of a built-in architecture on `channels` x `size` images (gstc.costs)."""
    from gstc.costs import builtin

    table = [(layer.name, layer.filters) for layer in layers(arch, width)]
    return builtin(arch, table, channels, size, classes, _scaled(STEMS.get(arch, 0), width))


def layers(arch: str, width: float = 1.0) -> list[Layer]:
    """The prunable layers of `arch` in forward order, with filter counts under `width`."""
    try:
        table = ARCHS[arch]
    except KeyError:
        from gstc.errors import did_you_mean

        raise ValueError(f"unknown architecture {arch!r}{did_you_mean(arch, ARCHS)}; "
                         f"known: {', '.join(ARCHS)}") from None
    return [Layer(name, _scaled(f, width)) for name, f in table()]


# --- architectures from outside ------------------------------------------------------

ENTRY_POINT_GROUP = "gstc.architectures"
TORCHVISION_PREFIX = "torchvision."
_IDENT = r"[A-Za-z_]\w*"
IMPORT_PATTERN = re.compile(rf"^{_IDENT}(\.{_IDENT})*:{_IDENT}(\.{_IDENT})*$")
TORCHVISION_PATTERN = re.compile(rf"^torchvision\.{_IDENT}$")
PLUGIN_PATTERN = re.compile(rf"^{_IDENT}$")
ArchKind = Literal["builtin", "torchvision", "import", "plugin"]


def classify(arch: str) -> ArchKind | None:
    """builtin, torchvision (`torchvision.NAME`), import (`module:attribute`), plugin (another plain name); None: malformed."""
    if arch in ARCHS:
        return "builtin"
    if TORCHVISION_PATTERN.match(arch):
        return "torchvision"
    if IMPORT_PATTERN.match(arch):
        return "import"
    if PLUGIN_PATTERN.match(arch):
        return "plugin"
    return None


def plugin_targets() -> dict[str, str]:
    """Architecture names that installed packages register (entry-point group gstc.architectures): name -> module:attr."""
    from importlib.metadata import entry_points

    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def check_arch(arch: str) -> str | None:
    """Why `arch` names no architecture, or None (plugins are looked up; nothing is imported)."""
    kind = classify(arch)
    forms = "a built-in name, torchvision.NAME, module:attribute, or a name a plugin registers"
    if kind is None:
        return f"{arch!r} is not an architecture name: expected {forms}"
    if kind == "plugin" and arch not in (plugins := plugin_targets()):
        from gstc.errors import did_you_mean

        known = [*ARCHS, *plugins]
        return (f"unknown architecture {arch!r}{did_you_mean(arch, known)}; known: {', '.join(known)} "
                f"(or torchvision.NAME, or module:attribute)")
    return None


LAYER_FILE_FORMAT = 2  # 2: coupled layers, followers, refusals and the cost; format 1 did not follow channels


class LayerFileError(ValueError):
    """A layer file that is missing, unreadable, or lacks the model asked for."""


@dataclass(frozen=True)
class ModelTable:
    """One model of a layer file: its prunable layers and its cost (gstc.costs)."""

    layers: list[Layer]
    cost: Cost
    input: tuple[int, ...]  # channels, height, width of the images it was built for
    classes: int


def model_key(arch: str, args: dict[str, Any]) -> str:
    """How a layer file identifies a model: its architecture and builder arguments (compact, key-sorted JSON)."""
    return json.dumps({"arch": arch, "args": args}, sort_keys=True, separators=(",", ":"))


def read_layer_file(path: Path) -> dict[str, ModelTable]:
    """A layer file's tables, by `model_key`."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise LayerFileError(f"layer file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LayerFileError(f"layer file {path} is not readable JSON: {exc}") from None
    version = data.get("gstc_layers") if isinstance(data, dict) else None
    if version == 1:
        raise LayerFileError(f"layer file {path} was written by an older gstc (format 1), which did not follow a "
                             "conv's channels to every layer that reads them")
    if version != LAYER_FILE_FORMAT:
        raise LayerFileError(f"layer file {path} is not format {LAYER_FILE_FORMAT} (found {version!r})")
    try:
        return {model_key(m["arch"], m["args"]): ModelTable(
                    [Layer(l["name"], int(l["filters"]), l["after"], int(l["groups"]), tuple(l.get("coupled", ())),
                           tuple(l.get("followers", ())), l.get("refused")) for l in m["layers"]],
                    Cost.from_json(m["cost"]), tuple(m["input"]), int(m["classes"]))
                for m in data["models"]}
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise LayerFileError(f"layer file {path} is malformed ({type(exc).__name__}: {exc})") from None


def layer_file_text(models: list[dict[str, Any]]) -> str:
    """A layer file's text: models as dicts with arch, args, input, classes, layers (dicts of Layer's fields, the
    empty ones left out) and cost (`Cost.to_json`)."""
    note = ("Written by `gstc layers SPEC --write`; part of every run id of the models it lists. "
            "Rewrite it with that command when a model changes.")
    compact = lambda v: json.dumps(v, sort_keys=True)  # noqa: E731
    entries = []
    for m in models:  # one line per layer: a diff of two files reads layer by layer
        layers = ",\n".join(f"    {compact(l)}" for l in m["layers"])
        head = ", ".join(f"{json.dumps(k)}: {compact(m[k])}" for k in ("arch", "args", "input", "classes"))
        cost = ",\n".join(f"    {json.dumps(part)}: [\n" + ",\n".join(f"     {compact(t)}" for t in m["cost"][part]) + "]"
                          for part in ("params", "macs"))
        for part in ("kernels", "dense"):
            if m["cost"].get(part):
                cost += f',\n    "{part}": {compact(m["cost"][part])}'
        entries.append(f"  {{{head},\n   \"layers\": [\n{layers}\n   ],\n   \"cost\": {{\n{cost}}}}}")
    return (f'{{"gstc_layers": {LAYER_FILE_FORMAT},\n "note": {json.dumps(note)},\n "models": [\n'
            + ",\n".join(entries) + "\n ]}\n")
