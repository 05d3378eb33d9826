"""Scorings: how a pruning event ranks the units it may target (filters or weights).

A scoring is a plugin (gstc.plugins): an object with

- `description`: one line, shown by `gstc schema` and editors;
- `Params`: a Pydantic model of its parameters (`gstc.plugins.NoParams` for none);
- `granularities`: the units it can score: {"filter"}, {"weight"} or both;
- `score(units, params) -> torch.Tensor`: one score per unit, at an event (the runtime's
  `gstc.runtime.units.Units` gives the layer's weights, BN parameters, gradients, ...);
- optionally `check(params, use) -> list[str]`: compile-time problems with where it is
  used (`gstc.plugins.Use`), each a message the compiler reports at the spec's `scoring`;
- optionally `setup(units, params)`: once per pruned layer when a run starts (to record
  activations, say);
- optionally `rounds(params) -> int`: an event's count is then removed in that many
  rounds, each re-scored after the previous round's units were pruned (SynFlow).

gstc's own scorings are the modules of this package, registered below exactly as an
outside package registers its own (entry-point group `gstc.scorings`); a spec may also
name one as `module:attribute`. Adding a built-in is one module and one line here.
"""

from __future__ import annotations

from gstc.plugins import Registry

BUILTINS = {
    "l1": "gstc.scorings.norms:L1",
    "l2": "gstc.scorings.norms:L2",
    "activation_l1": "gstc.scorings.activation:ActivationL1",
    "ebn": "gstc.scorings.ebn:EBN",
    "ebn_alt": "gstc.scorings.ebn:EBNAlt",
    "snip": "gstc.scorings.snip:SNIP",
    "grasp": "gstc.scorings.grasp:GraSP",
    "synflow": "gstc.scorings.synflow:SynFlow",
    "fpgm": "gstc.scorings.fpgm:FPGM",
}

SCORINGS = Registry("scoring", "gstc.scorings", BUILTINS, required=("description", "Params", "score"))
