"""Modes: what a pruning event does to the units it targets (remove them, zero them for a while, add noise).

A mode is a plugin (gstc.plugins), registered as scorings are (built-ins below, entry-point
group `gstc.modes`, or `module:attribute` as the mode's `kind`), with

- `description`: one line;
- `Params`: a Pydantic model of the mode as the spec writes it, whose `kind` field is a
  `Literal` of the mode's name (`{kind: zero, duration: {batches: 10}}`); gstc's own are
  `PruneMode`, `ZeroMode` and `GaussianMode`;
- `granularities`: the units it can act on ({"filter"}, {"weight"} or both; N:M groups act on
  the weights they prune);
- `start(ctx, sel, params)`: at an event, what happens to the targeted units `sel` (a
  boolean tensor), through the primitives of `ctx` (gstc.runtime.modes.ModeContext): hold
  them at zero until a batch count (forever: `NEVER`) and restore them or not, add noise
  until a batch count, cut a filter's channel;
- optionally `check(params, use) -> list[str]` (compile time, as for scorings).

gstc's built-ins are the modules of this package and use exactly this API.
"""

from __future__ import annotations

from typing import Annotated, Any, Optional

from pydantic import Field, StrictInt, model_validator

from gstc.base import Strict
from gstc.plugins import Registry

BUILTINS = {
    "prune": "gstc.modes.prune:Prune",
    "zero": "gstc.modes.zero:Zero",
    "gaussian": "gstc.modes.gaussian:Gaussian",
}

MODES = Registry("mode", "gstc.modes", BUILTINS, required=("description", "Params", "start"))


class Duration(Strict):
    batches: Optional[Annotated[StrictInt, Field(ge=0)]] = Field(
        default=None, description="Training batches (test batches do not count)."
    )
    epochs: Optional[Annotated[StrictInt, Field(ge=0)]] = Field(default=None, description="Training epochs.")

    @model_validator(mode="after")
    def _exactly_one(self) -> "Duration":
        if (self.batches is None) == (self.epochs is None):
            raise ValueError("give exactly one of `batches` or `epochs`")
        return self

    def length(self, batches_per_epoch: int) -> int:
        """The window's length in training batches."""
        return self.batches if self.batches is not None else self.epochs * batches_per_epoch


def plugin_params() -> list[tuple[str, Any]]:
    """(kind, Params) of every mode that loads: the spec's `mode` accepts each of them."""
    return [(name, plugin.Params) for name, plugin in MODES.each()]
