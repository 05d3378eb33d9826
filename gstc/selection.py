"""What a configuration may prune: refused layers, and coupled layers pruned as one.

A layer table marks the layers that cannot be pruned exactly (`refused`, with the
reason) and the layers that write the same channels (`coupled`: the convs a residual sum
adds). A spec that selects a refused layer is an error naming the reason; coupled layers
are pruned as a group, so a spec selects all of a group or none of it, with one
schedule (the same events, counts, scoring, target and mode), and a scoring or mode that
reads one conv's own output (activation_l1, gaussian noise) does not apply to a group: those plugins' own
checks say so (gstc.scorings.activation, gstc.modes.gaussian).
"""

from __future__ import annotations

from gstc.archs import Layer
from gstc.plan import LayerSchedule

SHOWN = 3  # layers named in one message


def _names(names: list[str]) -> str:
    return ", ".join(names[:SHOWN]) + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")


def refused(matched: list[str], table: dict[str, Layer]) -> str | None:
    """The error of a selection that matches refused layers, or None."""
    bad = [name for name in matched if table[name].refused]
    if not bad:
        return None
    if len(bad) == 1:
        return f"layer {bad[0]} cannot be pruned: {table[bad[0]].refused}"
    reasons = "; ".join(f"{name}: {table[name].refused}" for name in bad[:SHOWN])
    more = f"; and {len(bad) - SHOWN} more" if len(bad) > SHOWN else ""
    return (f"{len(bad)} of the {len(matched)} layers this selects cannot be pruned ({reasons}{more}); "
            "select only prunable layers (`gstc layers SPEC` lists them)")


def _schedule(s: LayerSchedule) -> tuple:
    return (s.epochs, s.pruned, s.scoring, s.target, s.mode)


def coupling(schedules: list[LayerSchedule], table: dict[str, Layer]) -> list[tuple[int, str]]:
    """(prune.layers entry, message) for each group of coupled layers selected wrongly."""
    by_layer = {s.layer: s for s in schedules}
    errors: list[tuple[int, str]] = []
    seen: set[str] = set()
    for s in schedules:
        layer = table[s.layer]
        if not layer.coupled or s.layer in seen:
            continue
        group = [s.layer, *layer.coupled]
        seen.update(group)
        what = f"{s.layer} writes the same channels as {_names(list(layer.coupled))} (a residual sum adds them)"
        missing = [name for name in group if name not in by_layer]
        if missing:
            errors.append((s.entry, f"{what}: they are pruned as a group, so select all {len(group)} of them with one "
                                    f"schedule; not selected: {_names(missing)}"))
            continue
        differ = [name for name in group if _schedule(by_layer[name]) != _schedule(s)]
        if differ:
            errors.append((by_layer[differ[0]].entry, f"{what}: they are pruned as a group, so they need one "
                           f"schedule (events, amounts, scoring, target, mode), but {_names(differ)} differ from "
                           f"{s.layer}"))
            continue
    return errors
