"""The `lottery` section of a spec: iterative magnitude pruning in levels, with rewinding and its controls.

Level 0 trains the dense network. Level l (1..levels) starts from level l-1's trained
weights, prunes `fraction` of the units still unpruned (ranked as `prune` says: its
granularity, scope, layers, scoring and target), sets the surviving weights back to the
rewind point, and trains again (Frankle & Carbin 2019; rewinding to an epoch: Frankle
et al. 2020; learning-rate rewinding: Renda et al. 2020). The controls of Frankle et al.
(2021) train level l's mask with a fresh initialization (`reinit`) or a random mask of
the same per-layer sparsity (`random_mask`). The compiler turns the section into a chain
of stages (gstc.stages): one run per level and seed, each with its own content-hash id.
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import Field, StrictInt

from gstc.base import Strict

Rewind = Union[Literal["init", "lr"], Annotated[StrictInt, Field(ge=1)]]


class LotterySpec(Strict):
    levels: StrictInt = Field(ge=1, le=100, description="Pruning levels after the dense level 0; each prunes "
                              "`fraction` of what the previous one kept and trains again.")
    fraction: float = Field(gt=0, lt=1, description="Fraction of the units still unpruned that each level prunes "
                            "at its start (0.2: 20% of the remaining weights); a level keeps ceil((1 - fraction) x "
                            "the units the previous one kept).")
    rewind: Rewind = Field(
        default="init",
        description="Where each level's surviving weights start: init (their values at initialization, the lottery "
        "ticket), an epoch k >= 1 (their values after epoch k of level 0; the level trains epochs k+1..train.epochs "
        "with the LR schedule from there), or lr (learning-rate rewinding: the previous level's trained weights, "
        "trained again for train.epochs with the whole LR schedule). The optimizer starts afresh at every level.",
    )
    control: Optional[Literal["reinit", "random_mask"]] = Field(
        default=None,
        description="A control in place of the lottery ticket at each level: reinit (the level's mask with a fresh "
        "random initialization) or random_mask (random positions with the same per-layer sparsity, from the rewind "
        "point). The ticket's own chain is trained too (a control's mask comes from it) and shared with any "
        "configuration that has it.",
    )

    @property
    def start(self) -> int:
        """The epoch a level starts after: the rewind epoch, else 0."""
        return self.rewind if isinstance(self.rewind, int) else 0

    @property
    def weights(self) -> str:
        """Where a ticket's surviving weights start (gstc.plan.PlanStage.weights): init, rewind or trained."""
        return {"init": "init", "lr": "trained"}.get(self.rewind, "rewind")  # type: ignore[call-overload]
