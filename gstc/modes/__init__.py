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

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, StrictInt, Tag, model_validator

from gstc.archs import IMPORT_PATTERN
from gstc.base import Strict, as_mapping
from gstc.plugins import Registry

BUILTINS = {
    "prune": "gstc.modes.prune:Prune",
    "zero": "gstc.modes.zero:Zero",
    "gaussian": "gstc.modes.gaussian:Gaussian",
}

MODES = Registry("mode", "gstc.modes", BUILTINS, required=("description", "Params", "start"))
ONE_DURATION = "give exactly one of `batches` or `epochs`"  # the JSON Schema says it too (gstc.schema)


class Duration(Strict):
    batches: Optional[Annotated[StrictInt, Field(ge=0)]] = Field(
        default=None, description="Training batches (test batches do not count)."
    )
    epochs: Optional[Annotated[StrictInt, Field(ge=0)]] = Field(default=None, description="Training epochs.")

    @model_validator(mode="after")
    def _exactly_one(self) -> "Duration":
        if (self.batches is None) == (self.epochs is None):
            raise ValueError(ONE_DURATION)
        return self

    def length(self, batches_per_epoch: int) -> int:
        """The window's length in training batches."""
        return self.batches if self.batches is not None else self.epochs * batches_per_epoch


def plugin_params() -> list[tuple[str, Any]]:
    """(kind, Params) of every mode that loads: the spec's `mode` accepts each of them."""
    return [(name, plugin.Params) for name, plugin in MODES.each()]


class ForeignMode(BaseModel):
    """A mode given as module:attribute: its parameters are checked by the compiler with the plugin's own model."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)
    kind: str = Field(pattern=IMPORT_PATTERN.pattern, description="module:attribute of your mode plugin.")


def kind(value: Any) -> Any:
    """The tag a mode is validated by: its kind; module:attribute for a mode of the spec's own."""
    found = value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)
    return "module:attribute" if isinstance(found, str) and IMPORT_PATTERN.match(found) else found


# The spec's `mode`: one of the registered modes' models, told apart by `kind` (the short form `mode: prune` for a
# mode whose keys all have defaults), or a mode of the spec's own. Built when this package is imported.
PARAMS = plugin_params()  # (kind, model) of every registered mode, in registry order
_BARE = tuple(k for k, p in PARAMS if not [f for n, f in p.model_fields.items() if n != "kind" and f.is_required()])
Mode = Annotated[
    Annotated[Union[tuple([Annotated[p, Tag(k)] for k, p in PARAMS] + [Annotated[ForeignMode, Tag("module:attribute")]])],
              Discriminator(kind)],
    BeforeValidator(as_mapping("kind"), json_schema_input_type=Union[tuple(
        [Literal[_BARE]] + [p for _, p in PARAMS] + [ForeignMode])]),
]
