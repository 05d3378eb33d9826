"""grasp: gradient signal preservation (Wang et al. 2020), meant for epoch 0.

GraSP removes the weights whose removal reduces the gradient flow g^T g least, those with the largest
S = -w * (H g). Here a unit's score is w * (H g) = -S (summed over a filter's weights for filters), so that
`target: smallest` removes what GraSP removes.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictInt


class GraSPParams(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    batches: StrictInt = Field(default=1, ge=1, le=10_000,
                               description="Training batches over which g and H g are taken.")


class GraSP:
    description = "grasp: w x (H g), the negative of GraSP's S (Wang et al. 2020): smallest removes what GraSP removes."
    Params = GraSPParams
    granularities = frozenset({"filter", "weight"})

    @staticmethod
    def score(units, params):
        hg = units.hessian_gradients(params.batches)
        return units.reduce([h * w for h, w in zip(hg, units.weights())])
