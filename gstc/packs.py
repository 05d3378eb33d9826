"""Which runs may train together as one packed model (docs/design.md, "Speed").

A pack is K runs trained as one model: grouped convolutions (groups = K), batch norm
over K x C channels and a batched dense layer, each member with its own data order,
augmentation, masks, events and files. Members must therefore share everything that
fixes the model's shape and the training step: the `model`, `data` and `train`
sections of the resolved configuration (architecture, width, dataset, batch size,
epochs, optimizer, LR schedule, precision). They may differ in seed, `prune` and
`measure`. The compiler decides membership; the runtime only carries packs out.
"""

from __future__ import annotations

from typing import Iterable, Literal, Union

from pydantic import Field

from gstc import ids
from gstc.archs import ARCHS
from gstc.plan import Frozen, Plan, PlanConfig, PlanRun

MAX_PACK = 64  # an upper bound on --pack: beyond it no device gains, and memory grows linearly
PACK_SECTIONS = ("model", "data", "train")  # what members must share, section by section

PackSize = Union[int, Literal["auto"]]


class Pack(Frozen):
    index: int = Field(description="Position of the pack in execution order, from 0.")
    key: str = Field(description="Hash of the shared model, data and train sections (equal keys: compatible runs).")
    runs: list[str] = Field(description="Member run ids, in plan order.")


def pack_key(config: PlanConfig) -> str:
    """Hash of the sections members must share."""
    return ids.pack_key({name: getattr(config.resolved, name) for name in PACK_SECTIONS})


def parse_size(text: str) -> PackSize:
    """`--pack` value: a positive integer or `auto`; ValueError with the expected form otherwise."""
    if text == "auto":
        return "auto"
    try:
        size = int(text)
    except ValueError:
        raise ValueError(f"--pack: expected a positive integer or 'auto', found {text!r}") from None
    if not 1 <= size <= MAX_PACK:
        raise ValueError(f"--pack: expected 1 to {MAX_PACK} runs per pack, found {size}")
    return size


def packable(config: PlanConfig) -> bool:
    """Packs are built for the built-in architectures only; any other trains one run at a time."""
    return config.resolved.model.arch in ARCHS


def groups(plan: Plan, runs: Iterable[PlanRun]) -> list[list[PlanRun]]:
    """Compatible runs, grouped by pack key; groups and members in plan order. A run of a
    non-built-in architecture is a group of its own."""
    by_key: dict[str, list[PlanRun]] = {}
    keys = {c.id: pack_key(c) if packable(c) else None for c in plan.configs}
    for run in runs:  # a lottery stage starts from other runs' files, at its own epoch: it trains alone
        by_key.setdefault(keys[run.config] if keys[run.config] and run.stage is None else run.id, []).append(run)
    return list(by_key.values())


def check_size(plan: Plan, size: PackSize) -> None:
    """ValueError for `--pack K` (K > 1) on a plan with a non-built-in architecture or lottery levels."""
    if size == "auto" or size == 1:
        return
    if any(r.stage is not None for r in plan.runs):
        raise ValueError(f"--pack {size}: the levels of a lottery start from other runs' files, each at its own "
                         "epoch, so they train one at a time: leave --pack at 1 (or auto, which packs only the "
                         "runs without levels)")
    others = sorted({c.resolved.model.arch for c in plan.configs if not packable(c)})
    if others:
        raise ValueError(f"--pack {size}: packs are built for the built-in architectures ({', '.join(ARCHS)}); "
                         f"{', '.join(others)} trains one run at a time: leave --pack at 1 (or auto, which packs "
                         "only the built-in ones)")


def make_packs(plan: Plan, runs: Iterable[PlanRun], size: int) -> list[Pack]:
    """Split each group of compatible runs into packs of at most `size` members.

    Members are spread as evenly as the size allows: 9 compatible runs with size 8 give
    packs of 5 and 4, not 8 and 1, since both packs take one pass over the data each.
    """
    if size < 1:
        raise ValueError(f"pack size must be at least 1, found {size}")
    packs: list[Pack] = []
    keys = {c.id: pack_key(c) for c in plan.configs}
    for group in groups(plan, runs):
        count = -(-len(group) // size)  # ceil: the fewest packs that respect the size
        base, extra = divmod(len(group), count)
        start = 0
        for i in range(count):
            n = base + (1 if i < extra else 0)
            members = group[start:start + n]
            start += n
            packs.append(Pack(index=len(packs), key=keys[members[0].config], runs=[r.id for r in members]))
    return packs
