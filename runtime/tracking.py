"""Trackers: each run's numbers also where researchers watch a sweep (`gstc run --track NAME`, or $GSTC_TRACK).

`Tracking` is a callback of the loop: per run it opens one tracked run named by the run id
(a resumed run continues it), logs every epoch's record and every pruning event (its
stability and each layer's sparsity), and closes it. Trackers are chosen at run time and
are never part of a run's identity. A tracker that raises (a server down, a full disk)
is warned about once, on stderr, and dropped for the rest of the call: training goes on,
and the run's own files are what count.

Built in (gstc.runtime.trackers, gstc.runtime.wandb_tracker): `tensorboard` (torch's
SummaryWriter; event files under <out>/tensorboard/<spec>/<configuration>/<run id>, which
`tensorboard --logdir <out>/tensorboard` shows grouped by spec and configuration),
`mlflow` (MLflow's client: an experiment per spec, a run per gstc run tagged with its
configuration) and `wandb` (Weights & Biases: a project per spec, a run per gstc run with
its id as id and name, grouped by configuration; offline under <out>/wandb unless an
account is set up, for `wandb sync` later).
"""

from __future__ import annotations

import sys
from typing import Any

from gstc.errors import did_you_mean
from gstc.paths import ResultsDir
from gstc.runtime.records import EpochRecord, EventRecord
from gstc.runtime.trackers import MLflow, TensorBoard, metrics
from gstc.runtime.train import REPORT, Callback, Member, Trainer
from gstc.runtime.wandb_tracker import WandB

ENV = "GSTC_TRACK"  # comma-separated tracker names, used where --track is not given
# name -> (the module it needs, the gstc extra that brings it)
EXTRAS = {"tensorboard": ("tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow"), "wandb": ("wandb", "wandb")}

BUILT_IN = {"tensorboard": TensorBoard, "mlflow": MLflow, "wandb": WandB}
# (results folder, tracker) pairs that failed in this process: off for its later packs too (a warning apiece)
OFF: set[tuple[str, str]] = set()


def check(names: list[str]) -> None:
    """ValueError for an unknown tracker (did-you-mean) or one whose package is not installed (the extra)."""
    import importlib.util

    for name in names:
        if name not in BUILT_IN:
            raise ValueError(f"--track: unknown tracker {name!r}{did_you_mean(name, BUILT_IN)}; known: "
                             f"{', '.join(BUILT_IN)}")
        module, extra = EXTRAS[name]
        if importlib.util.find_spec(module) is None:
            raise ValueError(f"--track {name} needs {module}, which is not installed: pip install 'gstc[{extra}]'")


class Tracking(Callback):
    """The trackers named for this call, fed by the loop; a failing one is warned about once and dropped."""

    phase = REPORT  # an epoch is logged after its checkpoint: a resumed call never trains again an epoch logged

    def __init__(self, results: ResultsDir, spec: str, names: list[str]) -> None:
        self.trackers: dict[str, Any] = {}
        self.where = str(results.root)
        for name in names:
            if (self.where, name) not in OFF:
                self._guard(name, lambda name=name: self.trackers.__setitem__(name, BUILT_IN[name](results, spec)))

    def _guard(self, name: str, action: Any) -> None:
        try:
            action()
        except Exception as exc:  # a tracker never stops training
            self.trackers.pop(name, None)
            if (self.where, name) not in OFF:
                OFF.add((self.where, name))
                print(f"warning: tracker {name} failed and is off for the rest of this call ({type(exc).__name__}: "
                      f"{exc}); the runs' own files are complete", file=sys.stderr)

    def _each(self, method: str, *args: Any) -> None:
        for name, tracker in list(self.trackers.items()):
            self._guard(name, lambda tracker=tracker: getattr(tracker, method)(*args))

    def start(self, trainer: Trainer, resumed_from: int | None) -> None:
        for m in trainer.members:
            self._each("open", m.run.id, m.config.id, m.config.resolved.model_dump(mode="json"), resumed_from)

    def epoch_end(self, trainer: Trainer, epoch: int, records: dict[int, EpochRecord]) -> None:
        for m in trainer.alive:
            # empty where the epoch has no record: a tracker holding the epoch's events back commits them here
            self._each("log", m.run.id, epoch, metrics(records[m.k]) if m.k in records else {})

    def event(self, trainer: Trainer, member: Member, record: EventRecord) -> None:
        self._each("log", member.run.id, record["epoch"], metrics(record))

    def end(self, trainer: Trainer) -> None:
        for m in trainer.members:
            status = "done" if trainer.finished(m) else "failed" if m.failure is not None else "stopped"
            self._each("close", m.run.id, status)


__all__ = ["BUILT_IN", "ENV", "Tracking", "check", "metrics"]
