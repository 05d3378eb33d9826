"""Fault injection for worker processes the tests cannot monkeypatch (Ray workers).

Ray runs `fail_once` in every worker process it starts (`worker_process_setup_hook`):
when $GSTC_TEST_FAIL_ONCE names a marker file, the first training of epoch 2 that finds
the marker deletes it and raises OSError, so exactly one task fails once, mid-run, after
a checkpoint, and its retry must resume from that checkpoint.
"""

from __future__ import annotations

import os

ENV = "GSTC_TEST_FAIL_ONCE"


def fail_once() -> None:
    marker = os.environ.get(ENV)
    if not marker:
        return
    import gstc.runtime.train as train

    original = train.Trainer.train_epoch

    def train_epoch(self, epoch):
        if epoch == 2:
            try:
                os.unlink(marker)  # atomic: one process alone gets to fail
            except FileNotFoundError:
                pass
            else:
                raise OSError(f"injected failure in epoch 2 of {[r.id for r in self.runs]}")
        return original(self, epoch)

    train.Trainer.train_epoch = train_epoch
