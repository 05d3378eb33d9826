"""The trainer's contract with what plugs into it: the order its callbacks run in, and its declared state."""

from __future__ import annotations

import dataclasses

import pytest

from gstc.paths import ResultsDir
from tests.runtime.conftest import compile_text, spec_text

torch = pytest.importorskip("torch")

from gstc.runtime.callbacks import Flatness, RunFiles  # noqa: E402
from gstc.runtime.checkpoint import Checkpoints  # noqa: E402
from gstc.runtime.data import Dataset, load  # noqa: E402
from gstc.runtime.stages import RewindPoints  # noqa: E402
from gstc.runtime.tracking import Tracking  # noqa: E402
from gstc.runtime.train import CHECKPOINT, FILES, REPORT, Callback, Trainer, ordered  # noqa: E402


def test_callbacks_run_the_files_first_then_the_checkpoint_then_what_reports_elsewhere(tmp_path):
    """A kill can come between any two callbacks and a resumed call starts after the checkpoint: so the run's files
    are never behind its checkpoint, and no tracker or progress display shows an epoch that is trained again."""
    results = ResultsDir(tmp_path)
    files = [RunFiles(results), Flatness(results), RewindPoints(results)]
    checkpoint, tracking = Checkpoints(results), Tracking(results, "t", [])
    assert [cb.phase for cb in (*files, checkpoint, tracking)] == [FILES] * 3 + [CHECKPOINT, REPORT]
    assert ordered([tracking, checkpoint, *files]) == [*files, checkpoint, tracking]
    assert ordered([files[2], tracking, files[0], checkpoint, files[1]]) == [files[2], files[0], files[1], checkpoint,
                                                                             tracking]  # a phase keeps the order given


class Seen(Callback):
    def __init__(self, name: str, phase: int, seen: list[tuple[str, str]]) -> None:
        self.name, self.phase, self.seen = name, phase, seen

    def start(self, trainer, resumed_from):
        self.seen.append(("start", self.name))

    def epoch_end(self, trainer, epoch, records):
        self.seen.append(("epoch_end", self.name))

    def end(self, trainer):
        self.seen.append(("end", self.name))


def small_trainer(callbacks: list[Callback]) -> Trainer:
    plan = compile_text(spec_text("vgg11_bn", 0.125, epochs=1))
    run = plan.runs[0]
    d = load(plan.config(run.config).resolved.data)
    data = Dataset(d.train_x[:64], d.train_y[:64], d.test_x[:8], d.test_y[:8], d.mean, d.std, d.classes)
    return Trainer([run], [plan.config(run.config)], data, torch.device("cpu"), callbacks=callbacks)


def test_the_trainer_runs_its_callbacks_by_phase_whatever_order_they_come_in():
    seen: list[tuple[str, str]] = []
    given = [Seen("tracker", REPORT, seen), Seen("checkpoint", CHECKPOINT, seen), Seen("files", FILES, seen)]
    trainer = small_trainer(given)
    trainer.execute()
    order = ["files", "checkpoint", "tracker"]
    assert seen == [(hook, name) for hook in ("start", "epoch_end", "end") for name in order]


def test_every_attribute_of_the_trainer_is_a_declared_field():
    trainer = small_trainer([])
    declared = {f.name for f in dataclasses.fields(Trainer)}
    assert set(vars(trainer)) <= declared, set(vars(trainer)) - declared
    assert declared <= set(vars(trainer)), declared - set(vars(trainer))  # and __post_init__ sets each
