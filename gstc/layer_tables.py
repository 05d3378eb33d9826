"""Where a configuration's layer table (its prunable layers, their filters and what prunes with them) and
its model cost come from: gstc's own tables for the built-in architectures, the spec's layer file for
any other, so that checking and planning a spec never builds a model.
"""

from __future__ import annotations

import json
import pathlib

from gstc import archs
from gstc.costs import Cost
from gstc.datasets import known_shape
from gstc.errors import SpecError
from gstc.load import Document
from gstc.plan import PlanLayer
from gstc.spec import BaseConfig


class LayerTables:
    """Where configurations' layer tables come from: gstc's own for built-in architectures, the
    spec's layer file (read once, relative to the spec's folder) for any other."""

    collecting = False

    def __init__(self) -> None:
        self._files: dict[str, dict[str, archs.ModelTable] | archs.LayerFileError] = {}

    def table(self, cfg: BaseConfig, doc: Document) -> tuple[list[archs.Layer] | None, list[SpecError]]:
        model = cfg.model
        if model.arch in archs.ARCHS:
            return archs.layers(model.arch, model.width), []
        entry, errors = self._entry(cfg, doc)
        return (entry.layers if entry else None), errors

    def cost(self, cfg: BaseConfig, spec_file: str) -> Cost | None:
        """The configuration's model cost (gstc.costs): from its layer file, or for a built-in architecture on a
        dataset whose shape is known without loading it; None otherwise."""
        if cfg.model.arch in archs.ARCHS:
            shape = known_shape(cfg.data)
            return None if shape is None else archs.builtin_cost(cfg.model.arch, cfg.model.width, *shape)
        entry, _ = self._entry(cfg, Document(spec_file, {}, {}, {}))
        return entry.cost if entry else None

    def _entry(self, cfg: BaseConfig, doc: Document) -> tuple[archs.ModelTable | None, list[SpecError]]:
        model = cfg.model
        path = layer_file_path(doc.file, model.layers)
        where = ("model", "layers") if isinstance(doc.data.get("model"), dict) else ("model",)
        fix = f"write it with `gstc layers {doc.file} --write`"
        if str(path) not in self._files:
            try:
                self._files[str(path)] = archs.read_layer_file(path)
            except archs.LayerFileError as exc:
                self._files[str(path)] = exc
        tables = self._files[str(path)]
        if isinstance(tables, archs.LayerFileError):
            return None, [doc.error(where, f"{tables}: {fix}")]
        key = archs.model_key(model.arch, model.args)
        if key not in tables:
            return None, [doc.error(where, f"layer file {path} has no table for {model.arch} with args "
                                           f"{json.dumps(model.args, sort_keys=True)}: {fix} (the file is stale)")]
        return tables[key], []


class CollectModels(LayerTables):
    """Records the configurations of non-built-in architectures instead of reading their tables
    (what `gstc layers SPEC --write` builds)."""

    collecting = True

    def __init__(self) -> None:
        super().__init__()
        self.models: list[tuple[BaseConfig, str]] = []  # (configuration, its layer file)

    def table(self, cfg: BaseConfig, doc: Document) -> tuple[list[archs.Layer] | None, list[SpecError]]:
        if cfg.model.arch in archs.ARCHS:
            return super().table(cfg, doc)
        self.models.append((cfg, str(layer_file_path(doc.file, cfg.model.layers))))
        return None, []


def layer_file_path(spec_file: str, layers: str | None) -> "pathlib.Path":
    """A spec's layer file: relative paths are relative to the spec's folder."""
    path = pathlib.Path(layers or "")
    return path if path.is_absolute() else pathlib.Path(spec_file).parent / path


def plan_layers(table: list[archs.Layer]) -> list[PlanLayer]:
    """A layer table as a plan lists it."""
    return [PlanLayer(name=l.name, filters=l.filters, after=l.after, groups=l.groups, coupled=list(l.coupled),
                      followers=list(l.followers), refused=l.refused) for l in table]
