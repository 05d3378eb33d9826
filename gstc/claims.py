"""Claiming runs: the locks of a set of runs (gstc.locks), taken together and kept alive until released.

- **Claim.** `Claims.claim` attempts every run's lock; a run whose lock a live worker
  holds is left to it (`Claims.busy`).
- **Heartbeat.** One daemon thread per claim set rewrites its locks' heartbeat every
  `heartbeat` seconds (atomically), after checking that each file is still its own; a
  lock found taken by another owner is marked lost (`Claims.lost`); the worker training
  that run sees it at the next epoch boundary and stops there.
- **Holders elsewhere.** A lock held on another machine whose heartbeat is fresh is
  watched (with a pack's other such locks) until its heartbeat moves (its owner is
  alive: the run is left to it) or it goes stale (taken over): at most
  `stale + heartbeat` seconds. This is what lets a retried Ray task or a requeued Slurm
  job on another node take over the run its dead predecessor held.
- **Record.** Every claim a worker trains from is appended to the run's claims.jsonl
  (`record_claim`): who trained the run, from which epoch.

`claim_runs` holds a set of runs' locks for a block; `hold` waits for one lock (the
manifest's) for a block. This module imports neither torch nor gstc's compiler.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from gstc.jsonio import append_jsonl
from gstc.locks import ACQUIRED, STALE, WATCH, Lock, describe, heartbeat_seconds, read_lock, stale_seconds
from gstc.paths import ResultsDir


class Claims:
    """The locks of a set of runs, claimed together, kept alive by one heartbeat thread.

    `held`: run ids claimed; `busy`: run id -> the holder's lock content, for runs
    another live worker trains; `lost`: held runs whose lock another worker took over.
    """

    def __init__(self, paths: dict[str, Path], stale: float | None = None, heartbeat: float | None = None) -> None:
        self.locks = {key: Lock(path, stale) for key, path in paths.items()}
        self.stale = stale_seconds() if stale is None else stale
        self.heartbeat = heartbeat_seconds() if heartbeat is None else heartbeat
        self.held: list[str] = []
        self.busy: dict[str, dict] = {}
        self.lost: set[str] = set()
        self._stop = threading.Event()
        self._mutex = threading.Lock()
        self._thread: threading.Thread | None = None

    def claim(self, wait: bool = True) -> "Claims":
        """Claim every lock that can be claimed; with `wait`, watch those held elsewhere (module docstring)."""
        watch: dict[str, dict] = {}  # run id -> the content last seen
        for key, lock in self.locks.items():
            verdict = lock.attempt()
            if verdict == ACQUIRED:
                self._add(key)
            elif verdict == WATCH and wait:
                watch[key] = lock.holder or {}
            else:
                self.busy[key] = lock.holder or {}
        deadline = time.monotonic() + self.stale + self.heartbeat
        while watch:
            time.sleep(min(1.0, max(0.05, self.heartbeat / 4)))
            late = time.monotonic() >= deadline
            for key, seen in list(watch.items()):
                lock = self.locks[key]
                now = read_lock(lock.path)
                if now is not None and now != seen and now.get("token") == seen.get("token"):
                    self.busy[key] = now  # its heartbeat moved: the holder is alive
                    del watch[key]
                    continue
                if now == seen and lock.judge(now) != STALE and not late:
                    continue  # unchanged, not stale yet: keep watching
                verdict = lock.attempt()  # released, replaced by another claim, or stale
                if verdict == ACQUIRED:
                    self._add(key)
                    del watch[key]
                elif verdict == WATCH and not late:
                    watch[key] = lock.holder or {}  # a new holder elsewhere: watch it instead
                else:
                    self.busy[key] = lock.holder or {}
                    del watch[key]
        return self

    def _add(self, key: str) -> None:
        with self._mutex:
            self.held.append(key)
        if self._thread is None:
            self._thread = threading.Thread(target=self._beat, name="gstc-lock-heartbeat", daemon=True)
            self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            with self._mutex:
                for key in self.held:
                    try:
                        if not self.locks[key].refresh():
                            self.lost.add(key)
                    except OSError:  # a storage hiccup: the next beat tries again (staleness takes `stale` s)
                        pass

    def release(self, key: str) -> None:
        """Release one run's lock (it turned out done, or it finished)."""
        with self._mutex:
            if key in self.held:
                self.held.remove(key)
                self.locks[key].release()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for key in list(self.held):
            self.release(key)

    def __enter__(self) -> "Claims":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextmanager
def claim_runs(results: ResultsDir, run_ids: Iterable[str], wait: bool = True) -> Iterator[Claims]:
    """Claim the runs' locks for the duration of the block (released on exit, whatever happens)."""
    claims = Claims({rid: results.lock(rid) for rid in run_ids})
    try:
        yield claims.claim(wait)
    finally:
        claims.close()


def record_claim(results: ResultsDir, run_id: str, owner: str, from_epoch: int) -> None:
    """Append the claim to the run's claims.jsonl: an audit trail of who trained it, from which epoch."""
    append_jsonl(results.claims_jsonl(run_id), {"owner": owner, "time": time.time(), "from_epoch": from_epoch})


@contextmanager
def hold(path: Path, timeout: float = 600.0) -> Iterator[None]:
    """Block until the lock at `path` is this process's (taking over a stale one), for the block."""
    claims = Claims({"lock": path})
    deadline = time.monotonic() + timeout
    try:
        while True:
            claims.busy.clear()
            claims.claim(wait=False)
            if claims.held:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{path}: held by {describe(claims.busy.get('lock'))} for more than {timeout:.0f} s")
            time.sleep(0.05)
        yield
    finally:
        claims.close()
