"""Pruning methods: how an event turns its layers' scores into the units it takes.

A method is a plugin (gstc.plugins), registered as scorings and modes are (built-ins below,
entry-point group `gstc.methods`, or `module:attribute`), with

- `description`: one line;
- `Params`: a Pydantic model of its parameters (`gstc.plugins.NoParams` for none);
- `apply(event, params)`: at run time, take `event.count` units of the event's layers
  through `event` (gstc.runtime.methods.Event): their scores by the entry's scoring, the
  units still free, one ranking by the target, and taking units (which starts the mode);
- optionally `check(params, use) -> list[str]` and `granularities`, as for scorings.

gstc's built-in `rank` is the method every schedule used so far: score, take the target's
count (in rounds where the scoring asks for them). Writing `method: rank` changes no run id.
"""

from __future__ import annotations

from gstc.plugins import Registry

BUILTINS = {
    "rank": "gstc.methods.rank:Rank",
}

METHODS = Registry("method", "gstc.methods", BUILTINS, required=("description", "Params", "apply"))
