"""Content hashes that survive upgrades: configuration hashes, run ids and pack keys.

A run id is a SHA-256 digest of canonical JSON of what decides the run's numbers, so the
same run in two specs is computed once and a results folder keeps being found. Ids must
therefore not move when gstc grows:

- The fields that existed when format 1's ids were fixed (`FORMAT_1_FIELDS`) are always
  hashed, defaults included, exactly as `model_dump(mode="json")` wrote them.
- A field added since is hashed only when its value differs from its default. Adding a
  field with a default to a spec model leaves every existing id unchanged; only a spec
  that sets the new field to something else gets new ids (tests/gstc/test_run_ids.py
  adds such a field and checks both).

So: a new field of a spec model needs a default (old specs do not set it), and its
default must keep the numbers as they were. `FORMAT_1_FIELDS` is frozen: never add to it.
A field that says where something is rather than what it is (`data.root`) is not hashed
at all (`LOCATION_FIELDS`).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel

from gstc.plugins import Choice

# Per spec model class, the fields its format-1 hashes included. Frozen: see the docstring.
FORMAT_1_FIELDS: dict[str, tuple[str, ...]] = {
    "BaseConfig": ("model", "data", "train", "prune", "measure"),
    "ModelSpec": ("arch", "width"),
    "DataSpec": ("dataset", "root", "download", "augment"),
    "TrainSpec": ("epochs", "batch_size", "optimizer", "lr_schedule", "precision"),
    "AdamSpec": ("name", "lr", "weight_decay", "betas"),
    "SGDSpec": ("name", "lr", "momentum", "weight_decay", "nesterov"),
    "LRScheduleSpec": ("milestones", "gamma"),
    "PruneSpec": ("scoring", "target", "mode", "schedule", "amount", "rate", "layers"),
    "PruneMode": ("kind", "include_bn"),
    "ZeroMode": ("kind", "duration", "targets", "restore", "include_bn"),
    "Duration": ("batches", "epochs"),
    "GaussianMode": ("kind", "duration", "targets", "std"),
    "ScheduleSpec": ("start", "end", "every", "epochs"),
    "LayerEntry": ("select", "amount", "rate", "schedule", "scoring", "target", "mode"),
    "MeasureSpec": ("prune_eval", "flatness"),
    "FlatnessSpec": ("at", "samples", "hessian_top", "trace_probes", "grad_covariance", "epsilon"),
    "EpsilonSpec": ("directions", "loss_increase"),
    # The spec's own keys, for spec_hash (which names no results folder, but stays put too).
    "SpecHeader": ("gstc", "name", "description", "seeds", "variants", "sweep"),
    "SweepSpec": ("zip",),
}
# Sections added since, with the fields they had when added: a spec without the section hashes as before (the
# section's absence is what old specs hash), and one with it hashes these always. Frozen per section, as
# FORMAT_1_FIELDS is: a field added to such a section later needs a default.
SECTION_FIELDS: dict[str, tuple[str, ...]] = {
    "LotterySpec": ("levels", "fraction", "rewind", "control"),
    "MovingSpec": ("rule", "delta_t", "drop", "stop"),
}
# Data fields that say where the data is, not what it is: never part of a hash.
LOCATION_FIELDS = ("root", "download")


def format_1_fields(cls: type[BaseModel]) -> set[str]:
    """The fields of `cls` (and of the spec classes it extends) that its hashes always include: format 1's, or those a
    later section had when it was added."""
    return {name for base in cls.__mro__ for table in (FORMAT_1_FIELDS, SECTION_FIELDS)
            for name in table.get(base.__name__, ())}


def _is_default(field: Any, value: Any) -> bool:
    if field.is_required():
        return False
    return value == field.get_default(call_default_factory=True)


def canonical(value: Any) -> Any:
    """`value` as `model_dump(mode="json")` writes it, without the post-format-1 fields at their defaults."""
    if isinstance(value, Choice):  # a plugin: written as the spec may write it (a bare name without parameters)
        return value.model_dump(mode="json")
    if isinstance(value, BaseModel):
        cls = type(value)
        known = format_1_fields(cls)
        out = {}
        for name, field in cls.model_fields.items():
            item = getattr(value, name)
            if name not in known and _is_default(field, item):
                continue
            out[name] = canonical(item)
        for name, item in (value.model_extra or {}).items():  # a sweep's axes
            out[name] = canonical(item)
        return out
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in value.items()}
    return value


def digest(obj: Any, length: int) -> str:
    """The first `length` hex digits of SHA-256 over compact, key-sorted JSON of `obj`."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def run_id(config_hash: str, seed: int) -> str:
    return digest({"config": config_hash, "seed": seed}, 12)


def pack_key(sections: dict[str, Any]) -> str:
    """Hash of the sections the members of a pack must share (their canonical forms); compared, never stored."""
    return digest({name: canonical(value) for name, value in sections.items()}, 12)
