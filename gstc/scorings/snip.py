"""snip: connection sensitivity |dL/dw * w| on a few training batches (Lee et al. 2019), meant for epoch 0."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictInt


class SNIPParams(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    batches: StrictInt = Field(default=1, ge=1, le=10_000,
                               description="Training batches whose summed loss gradient scores the weights.")


class SNIP:
    description = "snip: |gradient x weight| of the training loss on a few batches (Lee et al. 2019)."
    Params = SNIPParams
    granularities = frozenset({"filter", "weight"})

    @staticmethod
    def score(units, params):
        grads = units.gradients(params.batches)
        return units.reduce([(g * w).abs() for g, w in zip(grads, units.weights())])
