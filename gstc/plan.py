"""The execution plan: frozen, typed data that round-trips through JSON (docs/design.md, "The plan").

The runtime reads exactly this (as JSON) and never a YAML spec. Everything a run does
(which layers prune at which epoch, how many filters, how, with what scoring and
target) is decided here. A configuration's resolved sections and a schedule's mode are
the spec's own models (`gstc.spec` and its sections), so every default is defined once,
there, and the runtime reads typed fields; they are re-exported here for the runtime.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Optional

from functools import cached_property

from pydantic import BaseModel, ConfigDict, Field, model_serializer, model_validator

from gstc.plugins import Choice

from gstc.modes import Duration, ForeignMode, Mode
from gstc.modes.gaussian import GaussianMode
from gstc.modes.prune import PruneMode
from gstc.modes.zero import ZeroMode
from gstc.moving import MovingSpec
from gstc.prune_spec import Method, Scoring, Target, nm
from gstc.sections import AdamSpec, DataSpec, FlatnessSpec, MeasureSpec, ModelSpec, SGDSpec, TrainSpec
from gstc.spec import BaseConfig


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Compact(Frozen):
    """Leaves `OMITTED` fields out of the JSON where empty: fields added since the first plans, which most plans
    repeat in every run (an event's group, a run's stage, a configuration's chain)."""

    OMITTED: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _compact(self, handler: Any) -> dict[str, Any]:
        out = handler(self)
        for name in self.OMITTED:
            if not getattr(self, name):
                out.pop(name, None)
        return out


class PlanLayer(Frozen):
    name: str = Field(description="Prunable layer name, as in the torch model.")
    filters: int = Field(description="Original filter count (after the width multiplier).")
    after: Literal["bn", "conv"] = Field(default="bn", description="Where the mask sits: after the conv's BN, or after the conv.")
    groups: int = Field(default=1, description="The conv's groups (depthwise: its input channels).")
    coupled: list[str] = Field(default_factory=list, description="Other layers writing the same channels (the convs a "
                               "residual sum adds): pruned together, with one schedule.")
    followers: list[str] = Field(default_factory=list, description="Other modules holding this layer's channels, "
                                 "zeroed with it: depthwise convs, gates, norms that read them after a concatenation.")
    refused: Optional[str] = Field(default=None, description="Why this layer cannot be pruned; null: it can.")


class LayerSchedule(Frozen):
    layer: str = Field(description="Layer name.")
    filters: int = Field(description="Original filter count.")
    entry: int = Field(description="Index of the prune.layers entry that selected this layer.")
    scoring: Scoring = Field(description="The scoring, with every parameter filled in (a bare name where it has none).")
    target: Target = Field(description="smallest, random or largest.")
    mode: Mode = Field(description="The resolved mode, every default filled in, e.g. {kind: prune, include_bn: true}.")
    epochs: list[int] = Field(description="Scheduled event epochs (including any that prune 0 units).")
    amount: float = Field(description="Total fraction of the original units removed by the last event.")
    rate: float = Field(description="Iterative pruning rate: amount / number of events (the equal curve's step).")
    curve: Literal["equal", "linear", "cubic"] = Field(default="equal", description="How the amount is spread over "
                                                       "the events (gstc.prune_spec.ScheduleSpec.curve).")
    pruned: list[int] = Field(description="Units pruned at each scheduled epoch (global scope: the group's).")
    kept: list[int] = Field(description="Units kept after each scheduled epoch (global scope: the group's).")
    method: Method = Field(default=Choice(name="rank"), description="The pruning method, with every parameter "
                            "filled in (rank: the scoring's best-ranked units by the target).")
    granularity: str = Field(default="filter", description="The units: filter, weight, or N:M groups (\"2:4\").")
    units: Optional[int] = Field(default=None, description="The layer's units (weights: filters x fan-in; N:M: "
                                 "weights / M); null: its filters.")
    scope: Literal["layer", "global"] = Field(default="layer", description="global: ranked with every layer of "
                                              "`group`, and pruned/kept count the group's units together.")
    group: list[str] = Field(default_factory=list, description="Global scope: the layers ranked together.")

    @property
    def nm(self) -> tuple[int, int] | None:
        """(N, M) of an N:M granularity; None for filters and single weights."""
        return nm(self.granularity)

    @property
    def unit(self) -> str:
        """What scorings score and modes act on: filters, or weights (N:M groups are ranked and held by theirs)."""
        return "filter" if self.granularity == "filter" else "weight"


class Counts(Frozen):
    params: list[int] = Field(description="Parameters of the model: [unpruned, after the last event].")
    macs: list[int] = Field(description="Multiply-accumulates of one image (convolutions and dense layers): "
                            "[unpruned, after the last event].")
    nonzero: Optional[list[int]] = Field(default=None, description="Weight granularity: parameters not held at zero, "
                                         "[unpruned, after the last event]; null for filters (params says it).")


class PlanConfig(Compact):
    OMITTED = ("chain", "events")

    id: str = Field(description="Variant name, then [path=value,...] for a sweep point.")
    variant: str = Field(description="Variant name ('default' without variants).")
    point: dict[str, Any] = Field(description="The sweep point's path=value pairs that apply to this variant.")
    hash: str = Field(description="Content hash of the resolved configuration (seed excluded).")
    resolved: BaseConfig = Field(description="The fully resolved configuration: model, data, train, prune, measure.")
    layers: list[PlanLayer] = Field(description="The architecture's prunable layers under this configuration's width.")
    schedules: list[LayerSchedule] = Field(description="Per pruned layer, in forward order; empty for a baseline.")
    counts: Optional[Counts] = Field(default=None, description="Parameters and MACs before pruning and after the last "
                                     "event (removed filters with their readers' inputs); null where the images' shape "
                                     "is known only by loading the data.")
    chain: Optional[list[list[str]]] = Field(default=None, description="A lottery configuration: its runs by level "
                                             "(0..levels), each level's by seed; left out of the JSON otherwise.")
    events: list["PlanEvent"] = Field(default_factory=list, description="Every (epoch, layer) with prune > 0, by "
                                      "epoch then layer order: what each of its runs does (stored once here, not in "
                                      "every run); left out of the JSON when empty (a baseline, a lottery).")



class PlanEvent(Compact):
    OMITTED = ("group",)

    epoch: int = Field(description="After training this epoch (0: at initialization).")
    layer: str = Field(description="Layer name.")
    prune: int = Field(description="Units (filters or weights) targeted at this event.")
    kept: int = Field(description="Units left untargeted after it.")
    of: int = Field(description="Original unit count.")
    group: list[str] = Field(default_factory=list, description="Global scope: every layer ranked in this event "
                             "(`layer` is the first); the counts are theirs together. Left out of the JSON when empty "
                             "(a plan repeats its events in every run).")



class PlanStage(Frozen):
    """One level of a lottery chain (gstc.stages): a run that starts from earlier runs' results."""

    level: int = Field(description="0: dense training; l >= 1: the l-th pruning level.")
    kind: Literal["dense", "ticket", "reinit", "random_mask"] = Field(
        description="dense (level 0), ticket (IMP's own level), or a control (reinit, random_mask).")
    start: int = Field(default=0, description="The epoch it starts after: it trains epochs start+1..epochs (a rewind "
                       "to epoch k starts after k).")
    after: Optional[str] = Field(default=None, description="The run whose trained weights and mask this stage prunes "
                                 "at its start (the previous level's ticket); null at level 0.")
    weights: Literal["init", "rewind", "trained", "reinit"] = Field(
        default="init", description="Where the surviving weights start: init (this seed's initialization), rewind "
        "(level 0's weights after epoch `start`, from `rewind_from`), trained (`after`'s trained weights: LR "
        "rewinding), reinit (a fresh initialization).")
    rewind_from: Optional[str] = Field(default=None, description="The level-0 run whose weights after epoch `start` "
                                       "this stage starts from (weights: rewind).")
    keep: list[int] = Field(default_factory=list, description="Epochs after which this run keeps its weights for "
                            "later levels' rewinding (level 0).")
    events: list[PlanEvent] = Field(default_factory=list, description="The pruning at its start: units taken from "
                                    "`after`'s kept ones (global scope: the group's counts).")
    sparsity: float = Field(default=0.0, description="Fraction of the pruned layers' units pruned during this stage.")

    @property
    def needs(self) -> list[str]:
        """The runs whose files this stage reads at its start."""
        return list(dict.fromkeys(r for r in (self.after, self.rewind_from) if r is not None))


class PlanRun(Compact):
    OMITTED = ("stage",)

    id: str = Field(description="Content hash of the resolved configuration and seed.")
    config: str = Field(description="Configuration id.")
    seed: int = Field(description="Random seed.")
    epochs: int = Field(description="Training epochs.")
    events: list[PlanEvent] = Field(default_factory=list, exclude=True, description="Every (epoch, layer) with "
                                    "prune > 0, by epoch then layer order: its configuration's events (PlanConfig.events, "
                                    "which the JSON holds once per configuration); a plan fills them in when loaded.")
    stage: Optional[PlanStage] = Field(default=None, description="A level of a lottery chain: what it starts from; "
                                       "left out of the JSON for a run of its own.")

    @property
    def needs(self) -> list[str]:
        """The runs that must be done before this one starts (a stage's inputs)."""
        return self.stage.needs if self.stage is not None else []


class Plan(Frozen):
    gstc: int = Field(description="Format version.")
    spec: str = Field(description="Spec name.")
    spec_hash: str = Field(description="Hash of the whole validated spec, name and description included.")
    description: str = Field(default="", description="The spec's description.")
    layers: list[PlanLayer] = Field(description="Prunable layers of the base configuration's model.")
    configs: list[PlanConfig] = Field(description="Configurations: variants x sweep points.")
    runs: list[PlanRun] = Field(description="Runs: configurations x seeds.")
    paths: list[str] = Field(default_factory=list, description="Absolute folders searched first for the import paths "
                             "(module:attribute) of own architectures and datasets: the spec's folder, where it uses any.")

    @model_validator(mode="after")
    def _runs_events(self) -> "Plan":
        """Each run's events are its configuration's, stored once per configuration in the JSON: a run read from
        JSON gets its configuration's list (one list, shared by every run of the configuration)."""
        by_id = {c.id: c for c in self.configs}
        for run in self.runs:
            config = by_id.get(run.config)
            if config is None or run.stage is not None:
                continue
            if not run.events and config.events:
                run.__dict__["events"] = config.events  # frozen: filled in once, as it is validated
            elif run.events and not config.events:  # a plan written before: events in every run, none in its config
                config.__dict__["events"] = run.events
        return self

    @cached_property
    def _configs(self) -> dict[str, PlanConfig]:
        return {c.id: c for c in self.configs}

    def config(self, config_id: str) -> PlanConfig:
        return self._configs[config_id]


__all__ = ["AdamSpec", "MovingSpec", "BaseConfig", "DataSpec", "Duration", "FlatnessSpec", "ForeignMode", "Frozen", "GaussianMode", "LayerSchedule",
           "MeasureSpec", "Mode", "ModelSpec", "Plan", "PlanConfig", "PlanEvent", "PlanLayer", "PlanRun", "PlanStage", "PruneMode",
           "SGDSpec", "Scoring", "Target", "TrainSpec", "ZeroMode"]
