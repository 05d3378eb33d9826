"""prune: targeted units are removed for good (held at zero; a filter's channel cut after its BN)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, StrictBool

from gstc.base import Strict


class PruneMode(Strict):
    kind: Literal["prune"] = Field(description="Permanent removal: targeted filters are masked for good.")
    include_bn: StrictBool = Field(
        default=True,
        description="Mask the following BN channel too (its output is exactly zero). The paper's Figure 5 "
        "permanent-pruning row left it unmasked: include_bn: false. Filters only: a single weight has no BN channel.",
    )


class Prune:
    description = "prune: targeted units are removed for good."
    Params = PruneMode
    granularities = frozenset({"filter", "weight"})

    @staticmethod
    def start(ctx, sel, params):
        cut = params.include_bn and ctx.granularity == "filter"
        ctx.hold(sel, until=ctx.NEVER, bn=cut, cut=cut)
