"""A scoring plugin as a package: `power` ranks units by sum |w|^p.

gstc finds it through the entry point in pyproject.toml (group gstc.scorings). The module
imports no torch: gstc validates specs that use it without torch; `score` runs in the
training process, on torch tensors.
"""

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
