"""gaussian: Gaussian noise is added to targeted units at every training batch of a window."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field

from gstc.base import Strict
from gstc.modes import Duration


class GaussianMode(Strict):
    kind: Literal["gaussian"] = Field(description="Add Gaussian noise to targeted filters at every training batch of a window.")
    duration: Duration = Field(description="`{batches: N}` or `{epochs: E}`.")
    targets: Literal["newest", "all"] = Field(default="newest", description="newest: this event's filters; all: every filter targeted so far.")
    std: Union[Literal["matched"], Annotated[float, Field(gt=0)]] = Field(
        default="matched", description="matched: the standard deviation of the layer's unperturbed weights; or a number."
    )


class Gaussian:
    description = "gaussian: noise is added to targeted units at every training batch of a window."
    Params = GaussianMode
    granularities = frozenset({"filter", "weight"})

    @staticmethod
    def check(params, use):
        coupled = [layer for layer in use.layers if layer.coupled]
        if coupled and use.granularity == "filter":
            group = sorted([coupled[0].name, *coupled[0].coupled])
            return [f"{', '.join(group)} write the same channels (a residual sum adds them): gaussian noise perturbs "
                    "one conv's filters, and these channels are written by several; use prune or zero"]
        return []

    @staticmethod
    def start(ctx, sel, params):
        sel = ctx.targeted() if params.targets == "all" else sel
        ctx.noise(sel, until=ctx.batch + params.duration.length(ctx.batches_per_epoch), std=params.std)
