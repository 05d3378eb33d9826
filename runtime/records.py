"""The records a run writes, one JSON object a line: an epoch's (epochs.jsonl) and an event's (events.jsonl).

The trainer and its step plug-ins build them and hand them to the callbacks, which write
them (gstc.runtime.callbacks), show them (progress) and log them (gstc.runtime.tracking).
At run time they are plain dicts: these types only name their keys and what each holds.
The keys, and the order the builders write them in, are the result files' format, which
is compared across versions: a key is never renamed, and a new one is added only where
it has a value (as `nonzero`, `start` and `level` are).
"""

from __future__ import annotations

from typing import TypedDict, Union


class _EpochRecord(TypedDict):
    epoch: int  # the epoch trained, from 1
    train_loss: float  # mean cross-entropy (nats) over the epoch's training images, as augmented
    train_acc: float  # accuracy (%) on the epoch's training batches, as they were trained
    test_loss: float  # mean cross-entropy (nats) on the test images, after the epoch's events
    test_acc: float  # accuracy (%) on the test images, after the epoch's events
    lr: float  # the learning rate the epoch trained with (before the scheduler's step)
    kept: dict[str, int]  # units (filters or weights) not targeted yet, per pruned layer
    params: int  # parameters of the model with its removed filters gone
    macs: int  # multiply-accumulates per image, removed filters gone
    seconds: float  # wall-clock seconds of the epoch (the pack's: its members train together)


class EpochRecord(_EpochRecord, total=False):
    """An epochs.jsonl line."""

    nonzero: int  # weight granularity only: the parameters not held at zero


class LayerEvent(TypedDict):
    """A layer's part of a pruning event."""

    layer: str
    prune: int  # units the event took from the layer
    kept: int  # units of the layer not targeted after the event
    mean_score: float | None  # the mean score of the units taken (None: none taken)


class _PruneEvent(TypedDict):
    epoch: int  # the epoch the event ends (0: at initialization)
    pre_acc: float | None  # test accuracy (%) before the event; None where not measured (prune_eval: false)
    post_acc: float  # test accuracy (%) after it
    instability: float | None  # 100 * (pre - post) / pre, in %; None with pre_acc
    stability: float | None  # 100 - instability, in %
    layers: list[LayerEvent]


class PruneEvent(_PruneEvent, total=False):
    """An events.jsonl line of a pruning event, or of a lottery level's start (`start`, `level`)."""

    start: bool  # True: the level's start (its pruning of the ticket it rewinds)
    level: int  # the lottery level, from 1


class MoveLayer(TypedDict):
    """A layer's part of a moving mask's move."""

    layer: str
    active: int  # weights active before the move
    moved: int  # weights dropped, and as many grown
    overlap: float  # the share (0 to 1) of the active weights still active after the move


class MoveRecord(TypedDict):
    """An events.jsonl line of a moving mask's move (within an epoch, at a training batch)."""

    epoch: int  # the epoch the batch belongs to
    batch: int  # the run's training batch count at the move, from 1
    move: bool  # True: tells a move from a pruning event
    fraction: float  # the share of a layer's active weights the schedule moves at this batch
    layers: list[MoveLayer]


EventRecord = Union[PruneEvent, MoveRecord]  # what a callback's `event` gets
