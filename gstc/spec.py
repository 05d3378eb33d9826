"""The spec language, format 1 (docs/design.md, "The spec language"): a spec is its own keys (format,
name, seeds, variants, sweep) and a base configuration made of sections (`gstc.sections`,
`gstc.prune_spec`, `gstc.lottery`, `gstc.moving`), which variants and sweep points override.

Models are strict (no silent coercion), forbid unknown keys, and describe every field (the descriptions
become the JSON Schema's, which editors show on hover). Checks that need the architecture's layer table
(globs, filter counts, event ranges) live in the compiler (`gstc.compile`, `gstc.schedules`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, field_validator

from gstc.base import Strict, as_mapping
from gstc.lottery import LotterySpec
from gstc.moving import MovingSpec
from gstc.prune_spec import PruneSpec
from gstc.sections import ArchName, DataSpec, MeasureSpec, ModelSpec, TrainSpec

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"  # a spec's name names its results folder: portable, lowercase
# Variant names only name configurations (never files): capitals are fine (S, L, Prune_L, as the paper writes).
VARIANT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


def _bare(pattern: str) -> str:
    """A name pattern as descriptions and messages show it: without its anchors."""
    return pattern.removeprefix("^").removesuffix("$")


# What a name that does not match is told (gstc.translate).
NAME_RULE = f"a name matching {_bare(NAME_PATTERN)} (lowercase letters, digits, . _ -)"
VARIANT_RULE = f"a name matching {_bare(VARIANT_PATTERN)} (letters, digits, . _ -)"

Seed = Annotated[StrictInt, Field(ge=0, le=2**31 - 1)]
OverridePath = Annotated[str, Field(min_length=1)]


class SweepSpec(BaseModel):
    """Grid axes (path: [values]) plus an optional paired `zip` axis."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)
    # Every other key is a grid axis: a path with its values (typed, so errors name the axis).
    __pydantic_extra__: dict[str, Annotated[list[Any], Field(min_length=1)]]
    zip: Optional[dict[OverridePath, Annotated[list[Any], Field(min_length=1)]]] = Field(
        default=None, description="Paths whose equal-length value lists form one paired axis."
    )

    @field_validator("zip")
    @classmethod
    def _equal_lengths(cls, value: Optional[dict[str, list[Any]]]) -> Optional[dict[str, list[Any]]]:
        lengths = {p: len(v) for p, v in (value or {}).items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"zip lists must have equal lengths, found {lengths}")
        return value


class BaseConfig(Strict):
    """What one configuration resolves to: everything that decides a run but its seed."""

    model: Annotated[ModelSpec, BeforeValidator(as_mapping("arch"), json_schema_input_type=Union[ArchName, ModelSpec])] = Field(
        description="`vgg11_bn`, `{arch: vgg11_bn, width: 0.25}` or `{arch: torchvision.resnet18, layers: FILE}`."
    )
    data: DataSpec = Field(description="Dataset and augmentation.")
    train: TrainSpec = Field(description="Epochs, batch size, optimizer, LR schedule, precision.")
    prune: Optional[PruneSpec] = Field(default=None, description="Absent or null: no pruning (a baseline).")
    measure: MeasureSpec = Field(default_factory=MeasureSpec, description="What to measure besides accuracy and loss.")
    moving: Optional[MovingSpec] = Field(
        default=None,
        description="Sparse training whose mask moves (SET, RigL): after `prune` made the mask, every `delta_t` "
        "batches each pruned layer drops its smallest active weights and grows as many inactive ones, its count "
        "of active weights kept. Absent: the mask stays where pruning put it.")
    lottery: Optional[LotterySpec] = Field(
        default=None,
        description="Iterative magnitude pruning in levels (lottery tickets): level 0 trains densely, each level "
        "prunes a fraction of what remains as `prune` ranks it (its layers, granularity weight, scope, scoring and "
        "target; no schedule or amount), rewinds and trains again. Absent: one run per seed, as `prune` schedules.")


class SpecHeader(Strict):
    """The spec's own keys: format, name, seeds and how configurations are made from the base."""

    gstc: Literal[1] = Field(description="Format version of the spec language; this gstc reads format 1.")
    name: str = Field(pattern=NAME_PATTERN, max_length=100, description=f"Names the results folder: {_bare(NAME_PATTERN)}.")
    description: str = Field(default="", description="What question the experiment answers.")
    seeds: Union[Annotated[StrictInt, Field(ge=1, le=10_000)], Annotated[list[Seed], Field(min_length=1)]] = Field(
        default=1, description="n: seeds 0..n-1; or an explicit list such as [0, 3, 7]."
    )
    variants: Optional[dict[Annotated[str, Field(pattern=VARIANT_PATTERN, max_length=100)], Optional[dict[OverridePath, Any]]]] = Field(
        default=None,
        description=f"Named configurations ({_bare(VARIANT_PATTERN)}): dotted-path overrides of the base "
        "(`prune.target: largest`, `prune.layers.1.amount: 0.8`; null removes a section).",
    )
    sweep: Optional[SweepSpec] = Field(default=None, description="Grid of overrides applied on top of every variant.")

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, value: int | list[int]) -> int | list[int]:
        if isinstance(value, list):
            dup = sorted({s for s in value if value.count(s) > 1})
            if dup:
                raise ValueError(f"seeds lists {dup} more than once")
        return value

    def seed_list(self) -> list[int]:
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)


class Spec(BaseConfig, SpecHeader):
    """A gstc experiment spec (format 1): its own keys and the base configuration, which variants and
    sweep points override; each configuration must be complete after its overrides."""


CONFIG_FIELDS = tuple(BaseConfig.model_fields)  # the parts of a spec that overrides may touch
