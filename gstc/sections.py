"""The spec's sections besides pruning: model, data, train and measure (what a configuration trains and
measures; `gstc.prune_spec` says what it prunes, `gstc.spec` puts the sections together).

Models are strict (no silent coercion: `epochs: "5"` or `augment: yes` are errors), forbid unknown keys,
and describe every field (the descriptions become the JSON Schema's, which editors show on hover).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import Field, StrictBool, StrictInt, field_validator, model_validator

from gstc.archs import ARCHS, IMPORT_PATTERN, PLUGIN_PATTERN, TORCHVISION_PATTERN, check_arch
from gstc.base import Strict
from gstc.datasets import DATASETS, unknown_dataset

ArchName = Literal[tuple(ARCHS)]  # the built-in architectures, as the schema offers them
Epoch = Annotated[StrictInt, Field(ge=0)]
# A rule that the JSON Schema states too (gstc.schema), in these words.
NESTEROV = "nesterov: true needs momentum > 0"


# --- model and data ------------------------------------------------------------------


def _arch_schema(schema: dict) -> None:
    # Editors: the built-in names complete; the other forms are checked by gstc (plugins need the installed packages).
    schema.pop("type", None)
    schema["anyOf"] = [{"enum": list(ARCHS)}, {"type": "string", "pattern": TORCHVISION_PATTERN.pattern},
                       {"type": "string", "pattern": IMPORT_PATTERN.pattern},
                       {"type": "string", "pattern": PLUGIN_PATTERN.pattern}]


class ModelSpec(Strict):
    arch: str = Field(
        description=f"Architecture: {', '.join(ARCHS)} (built in); torchvision.NAME (any torchvision "
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
        raise ValueError(unknown_dataset(value))

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
            raise ValueError(NESTEROV)
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
