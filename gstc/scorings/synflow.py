"""synflow: iterative synaptic flow (Tanaka et al. 2020), data-free, meant for epoch 0.

A unit's score is |dR/dw * w| summed over its weights, R being the sum of the outputs of the model whose
parameters are all replaced by their absolute values, fed an input of ones in evaluation mode. The event's count
is removed in `iterations` rounds (round j keeps the fraction (kept / before)^(j / iterations) of the units the
event started from), each re-scored after the previous round's units were pruned: that iteration is what keeps
SynFlow from collapsing a layer.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictInt


class SynFlowParams(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    iterations: StrictInt = Field(default=100, ge=1, le=10_000, description="Rounds of scoring and pruning per event.")


class SynFlow:
    description = "synflow: |dR/dw x w| of the all-positive model on ones, in rounds (Tanaka et al. 2020); no data."
    Params = SynFlowParams
    granularities = frozenset({"filter", "weight"})

    @staticmethod
    def rounds(params):
        return params.iterations

    @staticmethod
    def check(params, use):
        if use.mode != "prune" and params.iterations > 1:
            return [f"synflow prunes in {params.iterations} rounds, each scored after the last one's units were "
                    f"removed; that needs mode prune (this entry's is {use.mode})"]
        return []

    @staticmethod
    def score(units, params):
        grads = units.synflow_gradients()
        return units.reduce([(g * w).abs() for g, w in zip(grads, units.weights())])
