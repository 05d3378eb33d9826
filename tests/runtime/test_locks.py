"""gstc.locks: claim, release, heartbeat, stale take-over, and races between processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path


from gstc.paths import ResultsDir
from gstc import locks
from gstc.claims import claim_runs, hold
from tests.conftest import REPO


def lock_content(path: Path, **fields) -> dict:
    """A lock file as another worker would have written it (this machine's identity unless overridden)."""
    info = {**locks.machine(), "pid": 1, "token": "other", "owner": "elsewhere:1:other",
            "claimed": time.time(), "heartbeat": time.time(), **fields}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(info))
    return info


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # reaped: the pid names no process now
    return proc.pid


def leftovers(folder: Path) -> list[str]:
    """Temporary, moved-aside or guard files a claim must not leave behind."""
    return sorted(p.name for p in folder.iterdir() if p.name != "lock.json")


def test_claim_writes_the_owner_and_release_removes_it(tmp_path):
    results = ResultsDir(tmp_path)
    with claim_runs(results, ["a", "b"]) as claims:
        assert claims.held == ["a", "b"] and not claims.busy
        info = locks.read_lock(results.lock("a"))
        assert info["pid"] == os.getpid() and info["host"] == locks.machine()["host"]
        assert info["owner"] == f"{info['host']}:{os.getpid()}:{info['token']}"
        # A second claim (another worker in this process) finds both busy, with the holder named.
        with claim_runs(results, ["a", "b", "c"]) as other:
            assert other.held == ["c"] and set(other.busy) == {"a", "b"}
            assert other.busy["a"]["token"] == info["token"]
    assert not results.lock("a").exists() and not results.lock("b").exists() and not results.lock("c").exists()
    assert leftovers(results.run_dir("a")) == []
    with claim_runs(results, ["a"]) as again:  # released: free again
        assert again.held == ["a"]


def test_a_lock_whose_process_died_is_taken_over_at_once(tmp_path):
    results = ResultsDir(tmp_path)
    old = lock_content(results.lock("a"), pid=dead_pid(), token="dead")  # fresh heartbeat, but its process is gone
    with claim_runs(results, ["a"], wait=False) as claims:
        assert claims.held == ["a"]
        assert locks.read_lock(results.lock("a"))["token"] != old["token"]
    assert leftovers(results.run_dir("a")) == []


def test_a_late_take_over_leaves_the_winner_alone(tmp_path):
    # B judges a stale lock, A takes it over first, then B acts on its (now outdated)
    # judgement: B must not remove A's fresh lock (the interleaving a naive take-over,
    # "delete the stale file, then create", gets wrong).
    results = ResultsDir(tmp_path)
    path = results.lock("a")
    lock_content(path, pid=dead_pid(), token="dead")
    a, b = locks.Lock(path), locks.Lock(path)
    judged = locks.read_lock(path)
    assert b.judge(judged) == locks.STALE
    assert a.attempt() == locks.ACQUIRED
    assert b._take_over(judged) is False
    assert locks.read_lock(path)["token"] == a.token
    assert b.attempt() == locks.BUSY and b.holder["token"] == a.token
    # A contender that finds another's take-over guard in place backs off, too.
    a.release()
    lock_content(path, pid=dead_pid(), token="dead2")
    guard = lock_content(path.with_name("lock.json.takeover"), pid=os.getpid(), token="guard-holder")
    locks._held.add("guard-holder")  # the guard's holder is alive (this process)
    try:
        assert b._take_over(locks.read_lock(path)) is False
        assert locks.read_lock(path)["token"] == "dead2"
    finally:
        locks._held.discard("guard-holder")
    assert guard["token"] == "guard-holder"
    a.release()


def test_a_live_process_keeps_its_lock(tmp_path):
    results = ResultsDir(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock_content(results.lock("a"), pid=holder.pid, token="alive")
        with claim_runs(results, ["a"], wait=False) as claims:
            assert claims.held == [] and claims.busy["a"]["token"] == "alive"
    finally:
        holder.kill()
        holder.wait()
    with claim_runs(results, ["a"], wait=False) as claims:  # now dead: taken over
        assert claims.held == ["a"]


def test_an_old_heartbeat_from_another_machine_is_stale(tmp_path, monkeypatch):
    monkeypatch.setenv(locks.STALE_ENV, "30")
    results = ResultsDir(tmp_path)
    lock_content(results.lock("old"), host="node7", pid=os.getpid(), heartbeat=time.time() - 31)
    lock_content(results.lock("new"), host="node7", pid=os.getpid(), heartbeat=time.time() - 5)
    with claim_runs(results, ["old", "new"], wait=False) as claims:
        assert claims.held == ["old"] and set(claims.busy) == {"new"}  # its pid means nothing here


def test_a_holder_elsewhere_is_watched_until_its_heartbeat_moves_or_goes_stale(tmp_path, monkeypatch):
    monkeypatch.setenv(locks.STALE_ENV, "1.0")
    monkeypatch.setenv(locks.HEARTBEAT_ENV, "0.2")
    results = ResultsDir(tmp_path)
    alive = lock_content(results.lock("alive"), host="node7")
    lock_content(results.lock("dead"), host="node7")
    stop = threading.Event()

    def beat():  # a live holder on node7 refreshes its heartbeat; the dead one does not
        while not stop.wait(0.2):
            results.lock("alive").write_text(json.dumps({**alive, "heartbeat": time.time()}))

    thread = threading.Thread(target=beat)
    thread.start()
    try:
        t0 = time.monotonic()
        with claim_runs(results, ["alive", "dead"]) as claims:
            waited = time.monotonic() - t0
            assert claims.held == ["dead"] and set(claims.busy) == {"alive"}
            assert 0.9 < waited < 5.0  # the dead one went stale after ~1 s of silence
    finally:
        stop.set()
        thread.join()


def test_heartbeat_moves_and_a_lock_taken_over_is_marked_lost(tmp_path, monkeypatch):
    # (the worker then stops training that run: tests/runtime/test_worker.py)
    monkeypatch.setenv(locks.HEARTBEAT_ENV, "0.05")
    results = ResultsDir(tmp_path)
    with claim_runs(results, ["a"]) as claims:
        first = locks.read_lock(results.lock("a"))["heartbeat"]
        time.sleep(0.3)
        assert locks.read_lock(results.lock("a"))["heartbeat"] > first
        assert claims.lost == set()  # still ours
        lock_content(results.lock("a"), token="thief")  # another worker took it over
        time.sleep(0.3)
        assert claims.lost == {"a"}
    assert locks.read_lock(results.lock("a"))["token"] == "thief"  # release leaves another's lock alone


def test_hold_waits_for_the_holder_to_release(tmp_path):
    path = tmp_path / "manifest.lock"
    order = []
    with hold(path):
        def second():
            with hold(path):
                order.append("second")

        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.3)
        order.append("first")
    thread.join()
    assert order == ["first", "second"]


CONTENDER = textwrap.dedent("""\
    import sys, time
    from gstc.paths import ResultsDir
    from gstc.claims import Claims
    from pathlib import Path
    results, start, rounds, me, n = ResultsDir(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
    kept = []
    for r in range(rounds):
        while time.time() < start + 0.4 * r:
            pass  # spin: every contender attempts within microseconds of the others
        claims = Claims({str(r): results.lock(str(r))}).claim(wait=False)
        kept.append(claims)  # held to the end: a later claim of this round would be legitimate
        print(r, bool(claims.held), flush=True)
    Path(sys.argv[1], f"done-{me}").touch()
    while len(list(Path(sys.argv[1]).glob("done-*"))) < n:  # a contender slow to start must find us alive
        time.sleep(0.05)
    """)


def test_racing_processes_claim_each_lock_exactly_once(tmp_path):
    # Even rounds start free (exclusive create); odd rounds start with a stale lock whose
    # process is dead, so every contender races through the take-over path.
    results = ResultsDir(tmp_path)
    rounds, contenders = 8, 4
    for r in range(1, rounds, 2):
        lock_content(results.lock(str(r)), pid=dead_pid(), token=f"dead{r}")
    start = time.time() + 3.0  # after every contender has imported
    env = dict(os.environ, PYTHONPATH=str(REPO))
    procs = [subprocess.Popen([sys.executable, "-c", CONTENDER, str(tmp_path), str(start), str(rounds), str(i),
                               str(contenders)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for i in range(contenders)]
    wins = {r: 0 for r in range(rounds)}
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        for line in out.splitlines():
            r, won = line.split()
            wins[int(r)] += won == "True"
    assert wins == {r: 1 for r in range(rounds)}
    for r in range(rounds):  # no moved-aside, temporary or guard files left
        assert leftovers(results.run_dir(str(r))) == []
