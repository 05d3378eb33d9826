"""Pydantic models of the spec language, format 1 (docs/design.md, "The spec language").

Models are strict (no silent coercion: `epochs: "5"` or `augment: yes` are errors),
forbid unknown keys, and describe every field (the descriptions become the JSON
Schema's, which editors show on hover). Checks that need the architecture's layer
table (globs, filter counts, event ranges) live in `gstc.compile`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    field_validator,
    model_validator,
)

from gstc.archs import ARCHS, IMPORT_PATTERN, PLUGIN_PATTERN, TORCHVISION_PATTERN, check_arch
from gstc.base import Strict, as_mapping
from gstc.datasets import DATASETS
from gstc.lottery import LotterySpec
from gstc.moving import MovingSpec
from gstc.modes import Duration, ForeignMode, Mode
from gstc.modes.gaussian import GaussianMode
from gstc.modes.prune import PruneMode
from gstc.modes.zero import ZeroMode
from gstc.plugins import Choice, as_choice, choice_schema
from gstc.methods import METHODS
from gstc.scorings import SCORINGS

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"  # a spec's name names its results folder: portable, lowercase
# Variant names only name configurations (never files): capitals are fine (S, L, Prune_L, as the paper writes).
VARIANT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
ArchName = Literal["vgg11_bn", "resnet18", "resnet20", "resnet56"]
assert set(ArchName.__args__) == set(ARCHS)  # the schema and the layer tables agree
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
Epoch = Annotated[StrictInt, Field(ge=0)]


_as_mapping = as_mapping


# --- model and data ------------------------------------------------------------------


def _arch_schema(schema: dict) -> None:
    # Editors: the built-in names complete; the other forms are checked by gstc (plugins need the installed packages).
    schema.pop("type", None)
    schema["anyOf"] = [{"enum": list(ArchName.__args__)}, {"type": "string", "pattern": TORCHVISION_PATTERN.pattern},
                       {"type": "string", "pattern": IMPORT_PATTERN.pattern},
                       {"type": "string", "pattern": PLUGIN_PATTERN.pattern}]


class ModelSpec(Strict):
    arch: str = Field(
        description="Architecture: vgg11_bn, resnet18, resnet20, resnet56 (built in); torchvision.NAME (any torchvision "
        "classification model); module:attribute (your class or builder function); or a name a plugin registers "
        "(entry-point group gstc.architectures). `gstc layers ARCH` lists its prunable layers.",
        json_schema_extra=_arch_schema,
    )
    width: float = Field(
        default=1.0,
        gt=0,
        le=64,
        description="Multiplies every conv's filter count (rounded half up, at least 1), e.g. 0.25 for small fast runs. "
        "Built-in architectures only; others take their own arguments in `args`.",
    )
    args: dict[str, Any] = Field(
        default_factory=dict,
        description="Keyword arguments of the builder of a non-built-in architecture (e.g. {width_mult: 0.5}); "
        "num_classes comes from the data.",
    )
    layers: Optional[str] = Field(
        default=None,
        min_length=1,
        description="Layer file of a non-built-in architecture, relative to the spec (e.g. own-model.layers.json): "
        "its prunable layers, written by `gstc layers SPEC --write`.",
    )

    @field_validator("arch")
    @classmethod
    def _known(cls, value: str) -> str:
        problem = check_arch(value)
        if problem:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _fits_kind(self) -> "ModelSpec":
        if self.arch in ARCHS:
            if self.args:
                raise ValueError(f"args apply to non-built-in architectures; {self.arch} takes only width")
            if self.layers is not None:
                raise ValueError(f"{self.arch} is built in: its layer table is gstc's own, so give no layers file")
        else:
            if self.width != 1.0:
                raise ValueError(f"width applies to the built-in architectures; give {self.arch}'s own argument in args "
                                 "(e.g. torchvision's mobilenets take width_mult)")
            if self.layers is None:
                raise ValueError(f"{self.arch} needs a layer file: add `layers: NAME.layers.json` under model, then "
                                 "write it with `gstc layers SPEC --write`")
        return self




def _dataset_schema(schema: dict) -> None:
    schema.pop("type", None)
    schema["anyOf"] = [{"enum": list(DATASETS)}, {"type": "string", "pattern": IMPORT_PATTERN.pattern}]


class DataSpec(Strict):
    dataset: str = Field(
        description="cifar10/cifar100: the standard python archive under `root`; digits: scikit-learn's 8x8 digits "
        "at 32x32 (offline); synthetic: generated CIFAR-shaped images for tests and benchmarks; mnist, fashion_mnist, "
        "kmnist, svhn: torchvision's files under `root`; imagefolder: root/train/CLASS/*.png|jpg and root/test/CLASS/...; "
        "or module:function returning your own images (uint8, N x C x H x W) and labels.",
        json_schema_extra=_dataset_schema,
    )
    root: str = Field(default="data", min_length=1, description="Folder holding the archive (e.g. data/cifar-10-batches-py/).")
    download: StrictBool = Field(default=False, description="Fetch the archive when missing (needs a network).")
    augment: StrictBool = Field(default=False, description="Random crop with 4-pixel padding and horizontal flip, on the device.")
    image_size: Optional[Annotated[StrictInt, Field(ge=4, le=4096)]] = Field(
        default=None, description="imagefolder: every image is resized to image_size x image_size pixels once, on load.")
    channels: Optional[Literal[1, 3]] = Field(
        default=None, description="imagefolder: 3 (RGB, the default) or 1 (grayscale); images are converted on load.")
    args: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments of a module:function dataset.")

    @field_validator("dataset")
    @classmethod
    def _known(cls, value: str) -> str:
        if value in DATASETS or IMPORT_PATTERN.match(value):
            return value
        from gstc.errors import did_you_mean

        raise ValueError(f"unknown dataset {value!r}{did_you_mean(value, DATASETS)}; known: {', '.join(DATASETS)}, "
                         "or module:function for your own")

    @model_validator(mode="after")
    def _fits_kind(self) -> "DataSpec":
        folder = self.dataset == "imagefolder"
        if folder and self.image_size is None:
            raise ValueError("imagefolder needs image_size: the side in pixels that every image is resized to")
        if not folder and (self.image_size is not None or self.channels is not None):
            raise ValueError("image_size and channels apply to imagefolder; other datasets have their own")
        if self.args and not IMPORT_PATTERN.match(self.dataset):
            raise ValueError("args apply to a module:function dataset")
        return self


# --- training ------------------------------------------------------------------------


class AdamSpec(Strict):
    name: Literal["adam"] = Field(description="Adam (torch.optim.Adam).")
    lr: float = Field(gt=0, description="Learning rate.")
    weight_decay: float = Field(default=0.0, ge=0, description="L2 penalty added to the gradient (Adam's weight_decay).")
    betas: tuple[float, float] = Field(
        default=(0.9, 0.999), description="Coefficients of the running averages of the gradient and its square."
    )

    @field_validator("betas", mode="before")
    @classmethod
    def _betas_list(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value

    @field_validator("betas")
    @classmethod
    def _betas_range(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not all(0 <= b < 1 for b in value):
            raise ValueError("each beta must be in [0, 1)")
        return value


class SGDSpec(Strict):
    name: Literal["sgd"] = Field(description="Stochastic gradient descent (torch.optim.SGD).")
    lr: float = Field(gt=0, description="Learning rate.")
    momentum: float = Field(default=0.0, ge=0, lt=1, description="Momentum factor.")
    weight_decay: float = Field(default=0.0, ge=0, description="L2 penalty (weight decay).")
    nesterov: StrictBool = Field(default=False, description="Nesterov momentum; needs momentum > 0.")

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> "SGDSpec":
        if self.nesterov and self.momentum <= 0:
            raise ValueError("nesterov: true needs momentum > 0")
        return self


Optimizer = Annotated[Union[AdamSpec, SGDSpec], Field(discriminator="name")]


class LRScheduleSpec(Strict):
    milestones: list[Annotated[StrictInt, Field(ge=1)]] = Field(
        default_factory=list,
        description="Completed-epoch counts after which the LR is multiplied by gamma (as torch's MultiStepLR).",
    )
    gamma: float = Field(default=0.1, gt=0, description="Factor applied to the LR at each milestone.")

    @field_validator("milestones")
    @classmethod
    def _increasing(cls, value: list[int]) -> list[int]:
        if any(b <= a for a, b in zip(value, value[1:])):
            raise ValueError(f"milestones must be strictly increasing, found {value}")
        return value


class TrainSpec(Strict):
    epochs: StrictInt = Field(ge=1, le=100_000, description="Training epochs (epochs are 1-indexed in schedules).")
    batch_size: StrictInt = Field(default=128, ge=1, description="Training batch size.")
    optimizer: Optimizer = Field(description="`{name: adam, lr, ...}` or `{name: sgd, lr, momentum, weight_decay, nesterov}`.")
    lr_schedule: LRScheduleSpec = Field(default_factory=LRScheduleSpec, description="Step decays of the learning rate.")
    precision: Literal["fp32", "bf16"] = Field(default="fp32", description="fp32, or bf16 autocast for the forward pass.")


# --- pruning -------------------------------------------------------------------------


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
                raise ValueError("give either `epochs: [...]` or start/end/every, not both")
            if len(set(self.epochs)) != len(self.epochs):
                raise ValueError(f"epochs lists an epoch twice: {self.epochs}")
        if self.start is not None and self.end is not None and self.start > self.end:
            raise ValueError(f"start ({self.start}) is after end ({self.end})")
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
            raise ValueError("give a default `amount` or a default `rate`, not both")
        return self


# --- measurements --------------------------------------------------------------------


class EpsilonSpec(Strict):
    directions: StrictInt = Field(default=10, ge=1, description="Top Hessian eigenvectors to move along.")
    loss_increase: float = Field(default=0.1, gt=0, description="Loss rise that defines epsilon-sharpness.")


class FlatnessSpec(Strict):
    at: Union[Literal["final"], list[Epoch]] = Field(default="final", description="Epochs after which to measure, or final.")
    samples: StrictInt = Field(default=512, ge=1, description="Fixed test images used (chosen by a seeded generator).")
    hessian_top: StrictInt = Field(default=100, ge=0, description="Top Hessian eigenvalues by Lanczos on Hessian-vector products.")
    trace_probes: StrictInt = Field(default=100, ge=0, description="Hutchinson probes for Tr(H); 0 skips it.")
    grad_covariance: StrictBool = Field(default=True, description="Tr(C), the trace of the per-sample gradient covariance.")
    epsilon: Optional[EpsilonSpec] = Field(default=None, description="Epsilon-sharpness along the top eigenvectors.")

    @model_validator(mode="after")
    def _epsilon_needs_eigenvectors(self) -> "FlatnessSpec":
        if self.epsilon is not None and self.epsilon.directions > self.hessian_top:
            raise ValueError(
                f"epsilon.directions ({self.epsilon.directions}) exceeds hessian_top ({self.hessian_top}): "
                "epsilon moves along the computed top eigenvectors"
            )
        return self


class MeasureSpec(Strict):
    prune_eval: StrictBool = Field(default=True, description="Test accuracy just before and after each pruning epoch (stability).")
    flatness: Optional[FlatnessSpec] = Field(default=None, description="Flatness measurements; absent: none.")


# --- the spec ------------------------------------------------------------------------

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

    model: Annotated[ModelSpec, BeforeValidator(_as_mapping("arch"), json_schema_input_type=Union[ArchName, ModelSpec])] = Field(
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
    name: str = Field(pattern=NAME_PATTERN, max_length=100, description="Names the results folder: [a-z0-9][a-z0-9._-]*.")
    description: str = Field(default="", description="What question the experiment answers.")
    seeds: Union[Annotated[StrictInt, Field(ge=1, le=10_000)], Annotated[list[Seed], Field(min_length=1)]] = Field(
        default=1, description="n: seeds 0..n-1; or an explicit list such as [0, 3, 7]."
    )
    variants: Optional[dict[Annotated[str, Field(pattern=VARIANT_PATTERN, max_length=100)], Optional[dict[OverridePath, Any]]]] = Field(
        default=None,
        description="Named configurations ([A-Za-z0-9][A-Za-z0-9._-]*): dotted-path overrides of the base "
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

__all__ = ["Duration", "MovingSpec", "ForeignMode", "GaussianMode", "Mode", "PruneMode", "Strict", "ZeroMode"]
