"""Registries of what pruning is made of (scorings, and later modes and methods), without torch.

A plugin is an object (usually a class with class attributes) found by name in a
`Registry`, which three sources fill the same way:

- gstc's own built-ins: a name and the `module:attribute` that defines it
  (`gstc.scorings.BUILTINS`), imported only when asked for;
- installed packages, through an entry-point group (`gstc.scorings`):
  `[project.entry-points."gstc.scorings"] taylor = "mylab.scores:Taylor"`;
- a `module:attribute` written in the spec itself (searched first in the spec's folder).

The spec's folder is put on the import path only for as long as it is needed: for one
import while the compiler checks a spec (`import_target`'s `search`), or for the block
of `import_path` while a worker builds and trains a plan's runs. Importing leaves
`sys.path` as it was.

Each plugin brings a Pydantic model of its parameters (`Params`), which the compiler
validates without torch. A plugin's module must therefore import torch only inside the
functions that run on the model (gstc's built-ins do).

In a spec a plugin is written by name (`scoring: l1`) or as a mapping with its
parameters (`scoring: {name: snip, batches: 4}`); both become a `Choice`.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional, Sequence

from pydantic import BaseModel, ConfigDict, Field, model_serializer

from gstc.archs import IMPORT_PATTERN
from gstc.errors import did_you_mean


class PluginError(ValueError):
    """A plugin name that names nothing, or a plugin that cannot be loaded."""


@contextmanager
def import_path(folders: Sequence[str]) -> Iterator[None]:
    """Within the block, `folders` (a plan's `paths`: the spec's folder) and then the current folder come first on
    the import path, ahead of installed packages. Afterwards the entries it put there are taken off again, so that
    `sys.path` is as it was, whatever else the block added to it."""
    added = [*folders, os.getcwd()]
    sys.path[:0] = added
    try:
        yield
    finally:
        for entry in added:
            try:
                sys.path.remove(entry)  # the first equal entry: the one put there (equal entries are interchangeable)
            except ValueError:
                pass  # the block took it off itself


def import_target(target: str, what: str, search: Optional[Sequence[str]] = None) -> Any:
    """`module:attribute` -> the attribute; PluginError naming what could not be found.

    With `search`, the module is looked for in those folders, then the current folder, then installed packages
    (`import_path`, for this import only); without, on the import path as it stands (a worker imports inside
    `import_path(plan.paths)`).
    """
    module_name, _, attr = target.partition(":")
    try:
        with import_path(search) if search is not None else nullcontext():
            module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            where = (", ".join([*search, "the current folder", "installed packages"]) if search is not None
                     else "the import path")
            raise PluginError(f"{what} {target!r}: no module named {exc.name!r} (looked in {where})") from None
        raise
    obj = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            names = [n for n in dir(module) if not n.startswith("_")]
            raise PluginError(f"{what} {target!r}: module {module_name} has no attribute {part!r}"
                              f"{did_you_mean(part, names)}") from None
    return obj


@dataclass(frozen=True)
class UseLayer:
    """A selected layer, as a plugin's check sees it."""

    name: str
    after: str  # "bn": a BatchNorm2d follows the conv (its mask sits after it); "conv": none does
    coupled: tuple[str, ...] = ()  # other convs writing the same channels (a residual sum)


@dataclass(frozen=True)
class Use:
    """Where a plugin is used: one prune.layers entry's layers, event epochs, granularity, scope and mode."""

    layers: tuple[UseLayer, ...]
    epochs: tuple[int, ...]
    granularity: str  # filter, weight, or an N:M pattern such as "2:4"
    scope: str = "layer"  # layer, global
    mode: str = "prune"  # the entry's mode kind: prune, zero, gaussian, ...


def checks(kind: str, name: str, plugin: Any, params: BaseModel, use: Use) -> list[str]:
    """The problems of using `plugin` (a `kind` named `name`) so: its granularities, then its own checks."""
    # Undeclared: a scoring scores filters (one score per filter); a mode or method acts on whatever it is given.
    grains = getattr(plugin, "granularities", frozenset({"filter"} if kind == "scoring" else {"filter", "weight"}))
    unit = "filter" if use.granularity == "filter" else "weight"  # N:M groups are chosen and held by their weights
    if unit not in grains:
        known = " or ".join(f"{g}s" for g in sorted(grains))
        return [f"the {kind} {name} acts on {known}, and this entry prunes {use.granularity}s"]
    check = getattr(plugin, "check", None)
    return list(check(params, use)) if check is not None else []


class NoParams(BaseModel):
    """A plugin without parameters."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Choice(BaseModel):
    """A plugin as a spec names it: its name and the parameters given (validated by the compiler against the
    plugin's `Params`). Written back as the bare name when it has no parameters, as the spec may write it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(description="The plugin's name (built in, from an entry point, or module:attribute).")
    params: dict[str, Any] = Field(default_factory=dict, description="Its parameters, as given.")

    @model_serializer(mode="plain")
    def _written(self) -> Any:
        return self.name if not self.params else {"name": self.name, **self.params}

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):  # `scoring == "l1"`: a plugin without parameters is its name
            return not self.params and self.name == other
        return isinstance(other, Choice) and (self.name, self.params) == (other.name, other.params)

    def __hash__(self) -> int:
        return hash(self.name) if not self.params else hash((self.name, json.dumps(self.params, sort_keys=True)))

    def __str__(self) -> str:
        return self.name if not self.params else f"{self.name}({', '.join(f'{k}={v}' for k, v in self.params.items())})"


def as_choice(value: Any) -> Any:
    """`name` or `{name: ..., param: value, ...}` (as the spec and a Choice's JSON write it) -> Choice's fields."""
    if isinstance(value, str):
        return {"name": value, "params": {}}
    if isinstance(value, dict) and "name" in value:
        return {"name": value["name"], "params": {k: v for k, v in value.items() if k != "name"}}
    return value


@dataclass(frozen=True)
class Loaded:
    """A resolved plugin: its name, the object and its validated parameters."""

    name: str
    plugin: Any
    params: BaseModel

    def hash_form(self) -> Any:
        """What a run id includes: the name, and the parameters that differ from their defaults (so that a parameter
        added to a plugin with a default keeps its ids)."""
        given = {k: v for k, v in self.params.model_dump(mode="json").items()
                 if v != _default(type(self.params), k)}
        return self.name if not given else {"name": self.name, **given}


def _default(model: type[BaseModel], field: str) -> Any:
    info = model.model_fields[field]
    if info.is_required():
        return object()  # never equal: a required parameter is always hashed
    value = info.get_default(call_default_factory=True)
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


class Registry:
    """Plugins of one kind by name: built-ins, entry points of `group`, or module:attribute."""

    def __init__(self, kind: str, group: str, builtins: dict[str, str], required: tuple[str, ...]):
        self.kind, self.group, self.builtins, self.required = kind, group, dict(builtins), required
        self._cache: dict[tuple[str, tuple[str, ...]], Any] = {}

    def entry_points(self) -> dict[str, str]:
        """Names that installed packages register in this group: name -> module:attribute."""
        from importlib.metadata import entry_points

        return {ep.name: ep.value for ep in entry_points(group=self.group) if ep.name not in self.builtins}

    def names(self) -> list[str]:
        return [*self.builtins, *self.entry_points()]

    def target(self, name: str) -> str:
        """The module:attribute a name stands for; PluginError with did-you-mean for an unknown one."""
        if name in self.builtins:
            return self.builtins[name]
        if IMPORT_PATTERN.match(name):
            return name
        plugins = self.entry_points()
        if name in plugins:
            return plugins[name]
        known = self.names()
        raise PluginError(f"unknown {self.kind} {name!r}{did_you_mean(name, known)}; known: {', '.join(known)} "
                          f"(or module:attribute for your own; installed packages add names through the "
                          f"entry-point group {self.group})")

    def get(self, name: str, search: Optional[Sequence[str]] = None) -> Any:
        """The plugin object named `name` (imported once per search path; `search` as `import_target`'s)."""
        key = (name, None if search is None else tuple(search))
        if key not in self._cache:
            target = self.target(name)
            try:
                plugin = import_target(target, self.kind, search)
            except PluginError:
                raise
            except Exception as exc:  # the plugin's own module failed to import
                raise PluginError(f"{self.kind} {name!r} ({target}) failed to import: {type(exc).__name__}: {exc}") from None
            missing = [a for a in self.required if not hasattr(plugin, a)]
            if missing:
                raise PluginError(f"{self.kind} {name!r} ({target}) lacks {', '.join(missing)}: a {self.kind} plugin "
                                  f"defines {', '.join(self.required)}")
            params = getattr(plugin, "Params", None)
            if not (isinstance(params, type) and issubclass(params, BaseModel)):
                raise PluginError(f"{self.kind} {name!r} ({target}): Params must be a Pydantic model class "
                                  "(gstc.plugins.NoParams for none)")
            self._cache[key] = plugin
        return self._cache[key]

    def load(self, choice: Choice, search: Optional[Sequence[str]] = None) -> Loaded:
        """The plugin with its parameters validated; PluginError, or pydantic's ValidationError for the parameters."""
        plugin = self.get(choice.name, search)
        return Loaded(choice.name, plugin, plugin.Params.model_validate(choice.params))

    def each(self) -> Iterator[tuple[str, Any]]:
        """Every plugin that loads (for the JSON Schema and `gstc schema`); those that fail are left out."""
        for name in self.names():
            try:
                yield name, self.get(name, [])
            except PluginError:
                continue


def choice_schema(registry: Registry, what: str) -> Callable[[dict], None]:
    """A field's JSON Schema built from the registry: each plugin's name (those without parameters also as a
    bare string), a mapping with its parameters, or a module:attribute."""

    def build(schema: dict) -> None:
        bare, objects = [], []
        for name, plugin in registry.each():
            params = plugin.Params.model_json_schema()
            props = {"name": {"const": name, "description": getattr(plugin, "description", "")},
                     **params.get("properties", {})}
            objects.append({"type": "object", "properties": props, "additionalProperties": False,
                            "required": ["name", *params.get("required", [])],
                            "description": getattr(plugin, "description", "")})
            if not params.get("required"):
                bare.append(name)
        description = schema.get("description", what)
        for key in list(schema):
            del schema[key]
        schema["description"] = description
        schema["anyOf"] = [{"enum": bare}, *objects, {"type": "string", "pattern": IMPORT_PATTERN.pattern},
                           {"type": "object", "properties": {"name": {"type": "string", "pattern": IMPORT_PATTERN.pattern}},
                            "required": ["name"]}]

    return build
