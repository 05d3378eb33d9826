"""The primitives a mode plugin's `start` works through (gstc.modes), for one layer's state at one event.

A mode decides what happens to the units an event targets; the states carry it out:
`LayerState` (filters: conv rows, BN channels and the channel mask, gstc.runtime.layer_state) and
`WeightState` (single weights, and the weights N:M groups prune, gstc.runtime.units). Both
offer the same two primitives:

- `hold(sel, until, bn, restore, cut)`: hold `sel` at zero until the training batch count
  `until` (`NEVER`: for good); `restore="trained"` brings back the values from before the
  hold when it ends (`"zero"`: they return from zero); `bn` also holds a filter's BN scale
  and shift; `cut` sets its channel's mask to 0 (a removed filter's output is exactly 0);
- `noise(sel, until, std)`: add Gaussian noise to `sel` before every training batch until
  `until`, with `std` a number or "matched" (the layer's weights' standard deviation).
"""

from __future__ import annotations

from typing import Any

import torch

from gstc.modes import MODES
from gstc.plan import ForeignMode

NEVER = 2**62  # the release batch of a permanent hold


def resolve(mode: Any) -> tuple[Any, Any]:
    """(plugin, parameters) of a plan's mode: built-in and installed modes are their own parameters; a
    module:attribute mode's are validated by its model."""
    plugin = MODES.get(mode.kind)
    if isinstance(mode, ForeignMode):
        return plugin, plugin.Params.model_validate(mode.model_dump(mode="json"))
    return plugin, mode


class ModeContext:
    """One layer's state at one event, as a mode plugin acts on it."""

    NEVER = NEVER

    def __init__(self, pruner: Any, state: Any, batches_per_epoch: int, generator: torch.Generator):
        self.pruner, self.state, self.batches_per_epoch, self.generator = pruner, state, batches_per_epoch, generator

    @property
    def granularity(self) -> str:
        """filter, or weight (single weights and N:M groups' weights)."""
        return self.state.schedule.unit

    @property
    def batch(self) -> int:
        """Training batches done so far in this run."""
        return self.pruner.batch

    def targeted(self) -> torch.Tensor:
        """Every unit targeted so far (this event's included), in the shape `sel` has."""
        return self.state.targeted.clone()

    def hold(self, sel: torch.Tensor, until: int, bn: bool = False, restore: str = "zero", cut: bool = False) -> None:
        if cut and until != NEVER:
            raise ValueError("a channel is cut only for good: cut needs until=NEVER")
        self.state.hold(sel, until, bn=bn, restore=restore, cut=cut)

    def noise(self, sel: torch.Tensor, until: int, std: float | str) -> None:
        self.state.noise(self.pruner, sel, until, std, self.generator)
