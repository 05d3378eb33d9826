"""Exactly-once training: one lock file per run, which at most one worker holds at a time.

A worker that trains a run holds the run's lock, `ResultsDir.lock(run_id)`
(runs/<id>/lock.json), whose content names its owner:

    {"owner": "host:pid:token", "host": ..., "boot": ..., "pidns": ..., "pid": ...,
     "token": ..., "claimed": <unix time>, "heartbeat": <unix time>}

- **Claim.** The content is written to a temporary file, which is then hard-linked to
  lock.json: `link` fails when lock.json exists, atomically, on local disks and on NFS
  alike (the classic NFS-safe lock). Where the file system has no hard links, the
  claim falls back to `open(O_CREAT | O_EXCL)` (both in `gstc.atomic.create`).
- **Heartbeat.** Its holder rewrites the heartbeat (`Lock.refresh`, atomically) after
  checking that the file is still its own; gstc.claims does it every `heartbeat` seconds
  for each set of runs a worker claims.
- **Stale locks.** A lock is stale when its owner ran on this machine (same hostname,
  boot id and pid namespace) and that process is gone, or when its heartbeat is older
  than `stale` seconds (nodes' clocks must agree to well within that: NTP does).
  A stale lock is taken over under its take-over guard (lock.json.takeover, claimed
  like a lock, held for milliseconds), so that contenders remove it one at a time: the
  guard's holder checks the lock still is the stale one it judged, removes it (renamed
  to a unique name first and checked again: a file that changed is put back), and
  claims the run as above. A contender that judged the same stale lock a moment later
  finds the guard taken, or the new holder's fresh lock: it never removes a live lock.
- **Holders elsewhere.** A lock held on another machine whose heartbeat is fresh is
  neither busy nor stale: `attempt` says WATCH, and gstc.claims watches it until its
  heartbeat moves or it goes stale.
- **Release** deletes the file when it is still the holder's, on completion or failure.

`stale` and `heartbeat` default to 60 and 10 seconds, or $GSTC_LOCK_STALE and
$GSTC_LOCK_HEARTBEAT (environment variables reach every worker: tests make them small).
This module imports neither torch nor gstc's compiler.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path

from gstc import atomic

STALE_ENV, HEARTBEAT_ENV = "GSTC_LOCK_STALE", "GSTC_LOCK_HEARTBEAT"
DEFAULT_STALE, DEFAULT_HEARTBEAT = 60.0, 10.0
ACQUIRED, BUSY, WATCH, STALE = "acquired", "busy", "watch", "stale"

_held: set[str] = set()  # tokens of the locks this process holds now
_held_lock = threading.Lock()


def stale_seconds() -> float:
    return float(os.environ.get(STALE_ENV) or DEFAULT_STALE)


def heartbeat_seconds() -> float:
    return float(os.environ.get(HEARTBEAT_ENV) or DEFAULT_HEARTBEAT)


def _read_text(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


_BOOT = _read_text("/proc/sys/kernel/random/boot_id") or ""
try:
    _PIDNS = str(os.stat("/proc/self/ns/pid").st_ino)
except OSError:
    _PIDNS = ""


def machine() -> dict:
    """What identifies this machine's processes: a pid means the same process only where these agree."""
    return {"host": socket.gethostname(), "boot": _BOOT, "pidns": _PIDNS}


def pid_alive(pid: int) -> bool:
    """Whether process `pid` runs on this machine (a zombie, killed but not reaped, counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = _read_text(f"/proc/{pid}/stat")
    return not (stat and stat.rpartition(")")[2].split()[:1] == ["Z"])


def read_lock(path: Path) -> dict | None:
    """A lock file's content; None when there is no lock; {} when it cannot be parsed."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


JOB_ENV = "GSTC_WORKER_JOB"  # set by an executor in its workers: which task or job this process is


def worker_job() -> str | None:
    """This worker's task or job, for its locks: a Slurm job (array task) or what the executor set."""
    if os.environ.get(JOB_ENV):
        return os.environ[JOB_ENV]
    if os.environ.get("SLURM_ARRAY_JOB_ID") and os.environ.get("SLURM_ARRAY_TASK_ID"):
        return f"slurm job {os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    if os.environ.get("SLURM_JOB_ID"):
        return f"slurm job {os.environ['SLURM_JOB_ID']}"
    return None


def worker_text(info: dict) -> str:
    """A lock's holder, short enough for a table: host, pid and its Slurm job or Ray task."""
    text = f"{info.get('host', '?')} pid {info.get('pid', '?')}"
    return f"{text}, {info['job']}" if info.get("job") else text


def describe(info: dict | None) -> str:
    """The holder of a lock, for messages: owner and heartbeat age."""
    if not info:
        return "an unknown worker"
    age = time.time() - float(info.get("heartbeat", 0))
    job = f", {info['job']}" if info.get("job") else ""
    return f"{info.get('owner', '?')}{job} (heartbeat {age:.0f} s ago)"


def _remove_if(path: Path, content: dict | None, token: str | None = None) -> bool:
    """Remove `path` if it still holds `content` (or, with `token`, that owner's lock): True when removed.

    The file is renamed to a unique name first (one process alone can move it), then
    checked; a file that changed in between (a heartbeat, a new claim) is put back.
    """
    aside = path.with_name(f".{path.name}.{uuid.uuid4().hex}.old")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return False
    moved = read_lock(aside)
    if (moved == content) if token is None else (moved or {}).get("token") == token:
        aside.unlink(missing_ok=True)
        return True
    try:
        os.link(aside, path)  # put back, unless a new lock took the name meanwhile
    except OSError:
        pass
    aside.unlink(missing_ok=True)
    return False


class Lock:
    """One lock file; `attempt()` claims it or says who holds it."""

    def __init__(self, path: Path, stale: float | None = None) -> None:
        self.path = Path(path)
        self.stale = stale_seconds() if stale is None else stale
        self.token = uuid.uuid4().hex[:12]
        self.info = {**machine(), "pid": os.getpid(), "token": self.token}
        if worker_job():
            self.info["job"] = worker_job()
        self.info["owner"] = f"{self.info['host']}:{self.info['pid']}:{self.token}"
        self.holder: dict | None = None  # who held it at the last attempt that failed
        self.held = False

    @property
    def owner(self) -> str:
        return self.info["owner"]

    def _content(self) -> str:
        now = time.time()
        return json.dumps({**self.info, "claimed": self.info.get("claimed", now), "heartbeat": now})

    def _create(self) -> bool:
        """Claim a free lock: True when this call made the file."""
        self.info["claimed"] = time.time()
        if not atomic.create(self.path, self._content().encode("utf-8")):
            return False
        self.held = True
        with _held_lock:
            _held.add(self.token)
        return True

    def judge(self, info: dict) -> str:
        """STALE (may be taken over), BUSY (its holder is alive) or WATCH (held elsewhere, heartbeat fresh)."""
        if not info:  # unparseable (a claim on storage without hard links, mid-write): by the file's age
            try:
                age = time.time() - self.path.stat().st_mtime
            except FileNotFoundError:
                return STALE
            return STALE if age > self.stale else WATCH
        age = time.time() - float(info.get("heartbeat", 0))
        same_machine = all(info.get(k) == v for k, v in machine().items())
        if same_machine:
            pid = int(info.get("pid", -1))
            if pid == os.getpid():
                with _held_lock:
                    mine = info.get("token") in _held
                return BUSY if mine and age <= self.stale else STALE
            return BUSY if pid_alive(pid) and age <= self.stale else STALE
        return STALE if age > self.stale else WATCH

    def _take_over(self, judged: dict) -> bool:
        """Replace the stale lock `judged` by this claim; False when another contender is at it, or it changed.

        Contenders first take the lock's take-over guard (lock.json.takeover, claimed like a
        lock), so one at a time removes a stale lock: a contender that judged the same stale
        lock a moment later finds the guard taken, or the new holder's lock, never removes it.
        """
        guard = self.path.with_name(self.path.name + ".takeover")
        if not atomic.create(guard, self._content().encode("utf-8")):
            seen = read_lock(guard)
            if seen is not None and self.judge(seen) == STALE:  # its taker died mid-way (a take-over takes ms)
                _remove_if(guard, seen)
            return False
        try:
            now = read_lock(self.path)
            if now is None:  # released meanwhile
                return self._create()
            if now != judged or not _remove_if(self.path, judged):
                return False  # its holder's heartbeat moved: alive after all
            return self._create()
        finally:
            _remove_if(guard, None, self.token)

    def attempt(self) -> str:
        """ACQUIRED, BUSY (a live holder has it) or WATCH (a holder elsewhere with a fresh heartbeat)."""
        for _ in range(8):
            if self._create():
                return ACQUIRED
            info = read_lock(self.path)
            if info is None:
                continue  # released between the two calls
            verdict = self.judge(info)
            if verdict == STALE:
                if self._take_over(info):
                    return ACQUIRED
                time.sleep(0.01)  # another contender may be taking it over: see who holds it next
                continue
            self.holder = info
            return verdict
        return BUSY

    def refresh(self) -> bool:
        """Rewrite the heartbeat; False when the lock is no longer this holder's."""
        if not self.held:
            return False
        info = read_lock(self.path)
        if info is None:  # moved aside by a contender that judged it stale: claim it back
            return self._create()
        if info.get("token") != self.token:
            return False
        atomic.write_text(self.path, self._content())
        return True

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        with _held_lock:
            _held.discard(self.token)
        _remove_if(self.path, None, self.token)
