"""A scoring of this example's own, used by examples/own-scoring.yaml as `own_scoring:Taylor`.

First-order Taylor importance (Molchanov et al. 2019): |sum of g * w| over a unit's weights, the
first-order estimate of the loss change when the unit is removed. No torch import here: gstc
validates the spec without torch; `score` works on the tensors gstc hands it.
"""

from pydantic import BaseModel, ConfigDict, Field, StrictInt


class TaylorParams(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    batches: StrictInt = Field(default=1, ge=1, description="Training batches whose summed gradient is used.")


class Taylor:
    description = "taylor: |sum of g * w| over the unit's weights (Molchanov et al. 2019)."
    Params = TaylorParams
    granularities = frozenset({"filter", "weight"})

    @staticmethod
    def check(params, use):
        if 0 in use.epochs:
            return ["taylor estimates the loss change of a trained model; start its events at epoch 1 or later"]
        return []

    @staticmethod
    def score(units, params):
        grads = units.gradients(params.batches)
        return units.reduce([g * w for g, w in zip(grads, units.weights())]).abs()
