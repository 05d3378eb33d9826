"""Plugins as a package: the scoring `power` ranks units by sum |w|^p; the mode `pulse` zeroes them briefly.

gstc finds them through the entry points in pyproject.toml (groups gstc.scorings and
gstc.modes). The module imports no torch: gstc validates specs that use it without torch;
`score` and `start` run in the training process, on torch tensors.
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class PowerParams(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    p: float = Field(default=3.0, gt=0, description="The exponent: sum |w|^p over the unit's weights.")


class Power:
    description = "power: sum |w|^p over the unit's weights."
    Params = PowerParams
    granularities = frozenset({"filter", "weight"})

    @staticmethod
    def check(params, use):
        # A plugin's own compile-time check: reported at the spec's `scoring`, with file, line and column.
        return ["power: p above 8 overflows float32 weights' scores; use p <= 8"] if params.p > 8 else []

    @staticmethod
    def score(units, params):
        return units.reduce([w.abs().pow(params.p) for w in units.weights()])


class PulseMode(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    kind: Literal["pulse"] = Field(description="Zero the targeted units for a few batches, then restore them.")
    batches: int = Field(default=2, ge=1, description="Training batches the units stay at zero.")


class Pulse:
    description = "pulse: targeted units are zeroed for a few batches, then come back as they were."
    Params = PulseMode
    granularities = frozenset({"filter", "weight"})

    @staticmethod
    def start(ctx, sel, params):
        ctx.hold(sel, until=ctx.batch + params.batches, restore="trained")
