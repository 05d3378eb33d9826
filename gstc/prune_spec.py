"""The spec's prune section: which layers lose which units, how many, when, and how they are chosen.

Its models check what one section can say alone; what needs the architecture's layer table (globs,
counts, event epochs against train.epochs, defaults merged into each entry) is `gstc.schedules`'.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import AfterValidator, BeforeValidator, Field, StrictInt, model_validator

from gstc.base import Strict
from gstc.methods import METHODS
from gstc.modes import Mode
from gstc.modes.prune import PruneMode
from gstc.plugins import Choice, as_choice, choice_schema
from gstc.scorings import SCORINGS
from gstc.sections import Epoch

# Rules that gstc.schedules (which merges prune's defaults into each entry) or the JSON Schema (gstc.schema)
# state too, in these words.
ONE_FORM = "give either `epochs: [...]` or start/end/every, not both"
DEFAULT_NOT_BOTH = "give a default `amount` or a default `rate`, not both"
NEITHER = "give `amount` (total fraction removed) or `rate` (fraction per event), here or in prune"


def start_after_end(start: int, end: int) -> str:
    return f"start ({start}) is after end ({end})"


METHOD_TEXT = ("How an event turns scores into the units it takes: rank (the default), a name an installed package "
               "registers in the entry-point group gstc.methods, `{name: NAME, PARAM: VALUE}`, or module:attribute.")
Method = Annotated[
    Choice,
    BeforeValidator(as_choice, json_schema_input_type=Union[str, dict[str, Any]]),
    Field(json_schema_extra=choice_schema(METHODS, METHOD_TEXT)),
]
SCORING_TEXT = ("How an event ranks the units it may target: a name (l1, l2, activation_l1, ebn, ebn_alt, snip, or one "
                "an installed package registers in the entry-point group gstc.scorings), `{name: NAME, PARAM: VALUE}` "
                "with its parameters, or module:attribute for your own (docs/plugins.md).")
Scoring = Annotated[
    Choice,
    BeforeValidator(as_choice, json_schema_input_type=Union[str, dict[str, Any]]),
    Field(json_schema_extra=choice_schema(SCORINGS, SCORING_TEXT)),
]


class ScheduleSpec(Strict):
    start: Optional[Epoch] = Field(default=None, description="First event epoch (0: at initialization, before training).")
    end: Optional[Epoch] = Field(default=None, description="Last possible event epoch, inclusive; defaults to start.")
    every: Optional[Annotated[StrictInt, Field(ge=1)]] = Field(default=None, description="Epochs between events.")
    epochs: Optional[list[Epoch]] = Field(
        default=None, min_length=1, description="Explicit event epochs; replaces start/end/every."
    )
    curve: Literal["equal", "linear", "cubic"] = Field(
        default="equal",
        description="How the amount is spread over the events. equal: every event removes about the same count "
        "(amount/n each). linear and cubic (Zhu & Gupta 2017): the sparsity after the event at epoch t is "
        "s_f + (s_i - s_f) * (1 - (t - t0) / (t_last - t0))^p, p = 1 or 3, from `initial` (s_i) at the first "
        "event t0 to the amount (s_f) at the last.",
    )
    initial: Optional[Annotated[float, Field(ge=0, lt=1)]] = Field(
        default=None, description="linear and cubic curves: the sparsity s_i at the first event (default 0).")

    @model_validator(mode="after")
    def _one_form(self) -> "ScheduleSpec":
        if self.epochs is not None:
            if any(v is not None for v in (self.start, self.end, self.every)):
                raise ValueError(ONE_FORM)
            if len(set(self.epochs)) != len(self.epochs):
                raise ValueError(f"epochs lists an epoch twice: {self.epochs}")
        if self.start is not None and self.end is not None and self.start > self.end:
            raise ValueError(start_after_end(self.start, self.end))
        if self.initial is not None and self.curve == "equal":
            raise ValueError("`initial` is the sparsity at the first event of a linear or cubic curve; "
                             "add `curve: cubic` (or linear), or remove `initial`")
        return self


_TARGET_ALIASES = {"S": "smallest", "R": "random", "L": "largest"}


def _target(value: Any) -> Any:
    return _TARGET_ALIASES.get(value, value) if isinstance(value, str) else value


Target = Annotated[
    Literal["smallest", "random", "largest"],
    BeforeValidator(_target, json_schema_input_type=Literal["smallest", "random", "largest", "S", "R", "L"]),
]
Fraction01 = Annotated[float, Field(gt=0, lt=1)]


class LayerEntry(Strict):
    select: str = Field(min_length=1, description="A layer name or a glob over the architecture's prunable layers (`layer4.*.conv*`).")
    amount: Optional[Fraction01] = Field(default=None, description="Total fraction of the layer's original filters removed by its last event.")
    rate: Optional[Fraction01] = Field(default=None, description="Fraction of original filters per event (amount = rate x events).")
    schedule: Optional[ScheduleSpec] = Field(default=None, description="Fields missing here come from prune.schedule.")
    scoring: Optional[Scoring] = Field(default=None, description="Overrides prune.scoring for these layers.")
    target: Optional[Target] = Field(default=None, description="Overrides prune.target for these layers.")
    mode: Optional[Mode] = Field(default=None, description="Overrides prune.mode for these layers.")


NM_PATTERN = r"^[1-9][0-9]*:[1-9][0-9]*$"


def nm(granularity: str) -> tuple[int, int] | None:
    """(N, M) of an N:M granularity such as "2:4"; None for filter and weight."""
    if ":" not in granularity:
        return None
    n, m = granularity.split(":")
    return int(n), int(m)


def _granularity(value: str) -> str:
    if value in ("filter", "weight"):
        return value
    if not re.match(NM_PATTERN, value):
        raise ValueError(f"expected filter, weight, or an N:M pattern such as \"2:4\", found {value!r}")
    n, m = nm(value)
    if n >= m:
        raise ValueError(f"an N:M pattern keeps N of every M weights, so N must be below M; found {value}")
    return value


Granularity = Annotated[str, AfterValidator(_granularity)]


class PruneSpec(Strict):
    scoring: Scoring = Field(
        default=Choice(name="l2"),
        description="l1/l2: norm of the unit's weights; activation_l1: moving average of the channel's activation "
        "L1 norm; ebn: expected post-ReLU BN output (|gamma|); ebn_alt: the same with signed gamma; snip: "
        "|gradient x weight| on a few batches ({name: snip, batches: N}); or a plugin's name.",
    )
    method: Method = Field(
        default=Choice(name="rank"),
        description="How an event takes units: rank (score them with `scoring`, take the target's count of the free "
        "ones; the paper's method and the default); or a method plugin's name (entry-point group gstc.methods) or "
        "module:attribute, with its parameters as `{name: NAME, PARAM: VALUE}`.",
    )
    granularity: Granularity = Field(
        default="filter",
        description="What an event removes: filter (whole conv filters, the default), weight (single weights, "
        "unstructured), or N:M such as \"2:4\" (semi-structured: a unit is a group of M consecutive input channels' "
        "weights at one filter and kernel position, of which an event keeps N). Amounts and counts are fractions of "
        "the layer's filters, weights or groups; N:M without amount or rate makes every group N:M.",
        json_schema_extra=lambda s: s.update(anyOf=[{"enum": ["filter", "weight"]},
                                                     {"type": "string", "pattern": NM_PATTERN}]),
    )
    scope: Literal["layer", "global"] = Field(
        default="layer",
        description="layer: each selected layer loses its own amount; global: one amount over all selected "
        "layers together, ranked across them at each event (per-layer amounts and schedules are then not allowed).",
    )
    target: Target = Field(default="smallest", description="Which unpruned filters an event removes: smallest, random or largest score (S, R, L).")
    mode: Mode = Field(default_factory=lambda: PruneMode(kind="prune"),
                       description="prune, or {kind: zero|gaussian, ...}, or a mode plugin's {kind: NAME, ...}.")
    schedule: Optional[ScheduleSpec] = Field(default=None, description="Defaults merged field by field into each layer's schedule.")
    amount: Optional[Fraction01] = Field(default=None, description="Default amount for layer entries that give neither amount nor rate.")
    rate: Optional[Fraction01] = Field(default=None, description="Default rate for layer entries that give neither amount nor rate.")
    distribution: Literal["uniform", "erk"] = Field(
        default="uniform",
        description="How the default `amount` spreads over the selected layers: uniform (each layer loses that "
        "fraction) or erk (Erdos-Renyi-Kernel, Evci et al. 2020: a layer keeps a share of its weights proportional "
        "to (the sum of its weight's dimensions) / (their product), at most all of them, the selected layers "
        "together keeping 1 - amount). erk needs weight granularity, layer scope and no per-entry amounts.")
    layers: list[LayerEntry] = Field(min_length=1, description="Which layers prune, how much and when.")

    @model_validator(mode="after")
    def _defaults_not_both(self) -> "PruneSpec":
        if self.amount is not None and self.rate is not None:
            raise ValueError(DEFAULT_NOT_BOTH)
        return self
