"""The `moving` section of a spec: sparse training whose mask moves (SET, Mocanu et al. 2018; RigL, Evci et al. 2020).

`prune` makes the first mask (typically at epoch 0, `target: random`, with `distribution:
erk` or uniform amounts); then, every `delta_t` training batches until `stop` of the
training, each pruned layer drops the `moved` active weights of smallest magnitude and
grows as many inactive ones: those of largest gradient magnitude (rigl) or at random
(set). A layer's count of active weights never changes. The fraction moved decays with a
cosine: drop / 2 x (1 + cos(pi t / T_end)) at batch t, T_end = stop x the training's
batches; a layer with n active weights moves round(fraction x n) (half up). The runtime
carries it out (gstc.runtime.moving).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, StrictInt

from gstc.base import Strict


class MovingSpec(Strict):
    rule: Literal["rigl", "set"] = Field(description="How the weights to grow are chosen: rigl (largest gradient "
                                         "magnitude of the training batch, among the inactive weights) or set "
                                         "(at random among them).")
    delta_t: StrictInt = Field(ge=1, description="Training batches between two moves of the mask.")
    drop: float = Field(default=0.3, gt=0, lt=1, description="Fraction of each layer's active weights moved at the "
                        "first move; it decays with a cosine to zero at `stop`.")
    stop: float = Field(default=0.75, gt=0, le=1, description="Fraction of the training's batches after which the "
                        "mask stays where it is.")

