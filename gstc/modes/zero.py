"""zero: targeted units are held at zero for a window of batches or epochs, then come back."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, StrictBool

from gstc.base import Strict
from gstc.modes import Duration


class ZeroMode(Strict):
    kind: Literal["zero"] = Field(description="Hold targeted filters at zero for a while, then let them return.")
    duration: Duration = Field(description="`{batches: N}` or `{epochs: E}`; 0: only the post-pruning evaluation sees them zeroed.")
    targets: Literal["newest", "all"] = Field(default="newest", description="newest: this event's filters; all: every filter targeted so far.")
    restore: Literal["trained", "zero"] = Field(
        default="zero",
        description="trained: return with the values from before zeroing (weights, BN parameters and running "
        "statistics); zero: return from zero and keep training.",
    )
    include_bn: StrictBool = Field(default=False, description="Also hold the BN channel's scale and shift at zero (Figure D2).")


class Zero:
    description = "zero: targeted units are held at zero for a window, then return (from zero, or as trained)."
    Params = ZeroMode
    granularities = frozenset({"filter", "weight"})

    @staticmethod
    def check(params, use):
        if params.include_bn and use.granularity != "filter":
            return [f"include_bn holds a filter's BN channel, and this entry prunes {use.granularity}s, which have "
                    "none; remove include_bn"]
        return []

    @staticmethod
    def start(ctx, sel, params):
        sel = ctx.targeted() if params.targets == "all" else sel
        ctx.hold(sel, until=ctx.batch + params.duration.length(ctx.batches_per_epoch), bn=params.include_bn,
                 restore=params.restore)
