"""Load: a 40-run bench on 4 workers (2 cores), its parent SIGKILLed mid-way, then re-run.

Every run must end up recorded exactly once, and the first bench's orphaned
workers must not linger or write duplicates.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from stratum.bench.store import Store
from tests.conftest import run_cli

RUNS = 40
ARGS = ["bench", "--strategies", "sgd", "--seeds", str(RUNS), "--dataset", "cubic", "--model", "mlp", "--hidden", "8",
        "--epochs", "40", "--workers", "4", "--no-report"]


def _counts(db):
    try:
        with Store(db, create=False) as store:
            return dict(store.conn.execute("SELECT status, COUNT(*) FROM runs GROUP BY status").fetchall())
    except Exception:
        return {}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_forty_runs_four_workers_parent_sigkilled_then_rerun_without_duplicates(tmp_path):
    db = tmp_path / "load.sqlite"
    bench = subprocess.Popen([sys.executable, "-m", "stratum", *ARGS, "--db", str(db)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while _counts(db).get("done", 0) < 8:
            assert time.monotonic() < deadline, "the bench made no progress"
            assert bench.poll() is None, "the bench finished before it could be killed; make runs longer"
            time.sleep(0.05)
        with Store(db, create=False) as store:
            owners = {row[0] for row in store.conn.execute("SELECT owner FROM runs WHERE owner IS NOT NULL")}
        bench.kill()  # SIGKILL the parent: no cleanup code runs in it
        bench.wait(timeout=30)
    finally:
        if bench.poll() is None:
            bench.kill()
    assert bench.returncode == -signal.SIGKILL
    killed_at = _counts(db)
    assert 8 <= killed_at.get("done", 0) < RUNS

    # Orphaned workers notice their parent is gone and stop.
    worker_pids = {int(owner.rsplit(":", 2)[1]) for owner in owners}
    deadline = time.monotonic() + 60
    while any(_alive(pid) for pid in worker_pids):
        assert time.monotonic() < deadline, "orphaned bench workers are still running"
        time.sleep(0.1)

    rerun = run_cli(*ARGS, "--db", db)
    assert rerun.exit_code == 0, rerun
    with Store(db, create=False) as store:
        rows = store.conn.execute("SELECT run_id, status, seed, attempts FROM runs").fetchall()
        links = store.conn.execute("SELECT COUNT(*), COUNT(DISTINCT run_id) FROM bench_runs").fetchone()
    assert len(rows) == RUNS and len({r["run_id"] for r in rows}) == RUNS
    assert sorted(r["seed"] for r in rows) == list(range(RUNS))  # each run of the matrix exactly once
    assert {r["status"] for r in rows} == {"done"}
    assert tuple(links) == (RUNS, RUNS)
    in_flight_at_kill = RUNS - killed_at.get("done", 0) - killed_at.get("pending", 0)
    assert sum(r["attempts"] for r in rows) <= RUNS + max(in_flight_at_kill, 0)  # only interrupted runs ran twice
