"""`stratum bench` end to end with real worker processes: results, resume, failures, SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from stratum.bench.store import Store

from .bench_fixtures import install_test_plugin
from .conftest import run_cli

# cubic keeps worker start-up light (no scikit-learn import); runs take well under a second.
TINY = ["--dataset", "cubic", "--model", "mlp", "--hidden", "16", "--epochs", "2", "--steps-per-epoch", "4", "--batch-size", "32"]


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory):
    """The test plugin (strategies boom and sleepy), visible here and in every worker process."""
    root = install_test_plugin(tmp_path_factory.mktemp("benchtest-site"))
    saved_path, saved_env = list(sys.path), os.environ.get("PYTHONPATH")
    sys.path.insert(0, str(root))
    os.environ["PYTHONPATH"] = os.pathsep.join([str(root)] + ([saved_env] if saved_env else []))
    yield {"PYTHONPATH": os.environ["PYTHONPATH"]}
    sys.path[:] = saved_path
    if saved_env is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = saved_env


def rows(db):
    with Store(db, create=False) as store:
        return store.bench_rows()


def test_bench_records_results_failures_and_divergence_then_resumes(tmp_path, plugin_env):
    db = tmp_path / "b.sqlite"
    first = run_cli("bench", "--strategies", "sgd,boom", "--axis", "lr=0.01,1000", "--seeds", "2", *TINY,
                    "--db", db, "--workers", "2", "--no-report")
    assert first.exit_code == 0, first
    assert "8 runs (0 already done, 8 to run); 2 workers x 1 threads" in first.stdout
    assert "run(s) failed or were lost" in first.stderr
    stored = rows(db)
    assert len(stored) == 8 and all(r["attempts"] == 1 for r in stored)
    by_key = {(r["strategy"], r["values"]["lr"], r["seed"]): r for r in stored}
    for seed in (0, 1):
        good = by_key[("sgd", 0.01, seed)]
        assert good["status"] == "done" and good["diverged"] == 0
        assert good["summary"]["seed"] == seed and good["summary"]["threads"] == 1
        assert good["config"]["model"] == "mlp" and good["config"]["hidden"] == [16]
        assert good["summary"]["history"][-1]["cum_s"] > 0
        # Divergence is a result: recorded, the bench goes on.
        diverged = by_key[("sgd", 1000.0, seed)]
        assert diverged["status"] == "done" and diverged["diverged"] == 1 and diverged["summary"]["diverged"] is True
        # A plugin that fails is recorded with its error; the other runs are unaffected.
        for lr in (0.01, 1000.0):
            boom = by_key[("boom", lr, seed)]
            assert boom["status"] == "failed" and "boom: this strategy always fails" in boom["error"]
            assert boom["summary"] is None
    report = run_cli("report", db, "--failures")
    assert report.exit_code == 0 and report.stdout.count("failed   boom") == 4

    # Only sgd, one more seed: the four finished sgd runs are skipped, one new run.
    more = run_cli("bench", "--strategies", "sgd", "--axis", "lr=0.01,1000", "--seeds", "3", *TINY,
                   "--db", db, "--workers", "2")
    assert more.exit_code == 0, more
    assert "6 runs (4 already done, 2 to run)" in more.stdout
    assert "stratum report" in more.stdout  # the comparison table is printed
    stored = rows(db)
    assert len(stored) == 6 and {r["status"] for r in stored} == {"done"}
    assert all(r["attempts"] == 1 for r in stored)
    # The same bench again: nothing left to run.
    again = run_cli("bench", "--strategies", "sgd", "--axis", "lr=0.01,1000", "--seeds", "3", *TINY,
                    "--db", db, "--no-report")
    assert again.exit_code == 0 and "6 already done, 0 to run" in again.stdout


def _wait_for(predicate, timeout=90.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("timed out")


def test_a_worker_killed_with_sigkill_loses_only_its_own_run(tmp_path, plugin_env):
    db = tmp_path / "k.sqlite"
    args = ["bench", "--strategies", "sleepy", "--sleepy-ms", "60", "--seeds", "6", *TINY, "--epochs", "2",
            "--steps-per-epoch", "6", "--db", db, "--workers", "2", "--no-report"]
    result = {}
    # The bench runs in a thread of this process (its workers are real processes); this thread kills one.
    thread = threading.Thread(target=lambda: result.setdefault("first", run_cli(*args)))
    thread.start()
    try:
        def running_row():
            if not db.exists():
                return None
            try:
                with Store(db, create=False) as store:
                    row = store.conn.execute(
                        "SELECT run_id, owner, started_at FROM runs WHERE status = 'running' ORDER BY started_at LIMIT 1"
                    ).fetchone()
            except Exception:
                return None
            if row is None or time.time() - row["started_at"] < 0.2:
                return None
            return dict(row)

        victim = _wait_for(running_row)
        pid = int(victim["owner"].rsplit(":", 2)[1])
        os.kill(pid, signal.SIGKILL)
    finally:
        thread.join(timeout=120)
    first = result["first"]
    assert first.exit_code == 0, first
    stored = {r["run_id"]: r for r in rows(db)}
    assert len(stored) == 6
    not_done = [rid for rid, r in stored.items() if r["status"] != "done"]
    assert not_done == [victim["run_id"]]  # only the killed worker's run
    lost = stored[victim["run_id"]]
    assert lost["status"] == "lost" and "SIGKILL" in lost["error"]
    assert "lost" in first.stdout and "1 run(s) failed or were lost" in first.stderr

    rerun = run_cli(*args)
    assert rerun.exit_code == 0, rerun
    assert "5 already done, 1 to run" in rerun.stdout
    stored = {r["run_id"]: r for r in rows(db)}
    assert all(r["status"] == "done" for r in stored.values())
    assert stored[victim["run_id"]]["attempts"] == 2
    assert sum(r["attempts"] for r in stored.values()) == 7  # nothing ran twice except the lost run


def test_sigterm_to_the_bench_stops_it_cleanly_and_a_rerun_completes(tmp_path, plugin_env):
    db = tmp_path / "t.sqlite"
    args = ["bench", "--strategies", "sleepy", "--sleepy-ms", "100", "--seeds", "4", *TINY, "--steps-per-epoch", "6",
            "--db", str(db), "--workers", "2", "--no-report"]
    env = {**os.environ, **plugin_env, "PYTHONUNBUFFERED": "1"}
    bench = subprocess.Popen([sys.executable, "-m", "stratum", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env)
    try:
        def running():
            if not db.exists():
                return False
            try:
                with Store(db, create=False) as store:
                    return store.conn.execute("SELECT COUNT(*) FROM runs WHERE status = 'running'").fetchone()[0] > 0
            except Exception:
                return False

        _wait_for(running)
        bench.send_signal(signal.SIGTERM)
        out, err = bench.communicate(timeout=60)
    finally:
        if bench.poll() is None:
            bench.kill()
    assert bench.returncode == 128 + signal.SIGTERM, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("stratum: bench interrupted by SIGTERM"), err
    statuses = [r["status"] for r in rows(db)]
    assert "running" not in statuses and "lost" in statuses  # the store is left consistent

    rerun = run_cli(*args)
    assert rerun.exit_code == 0, rerun
    stored = rows(db)
    assert len(stored) == 4 and {r["status"] for r in stored} == {"done"}


def _dies_at_start(*args, **kwargs):
    os._exit(3)


def test_workers_that_cannot_start_end_the_bench_with_one_error(tmp_path, monkeypatch):
    import stratum.bench.local as local

    monkeypatch.setattr(local, "worker_main", _dies_at_start)
    db = tmp_path / "s.sqlite"
    result = run_cli("bench", "--strategies", "sgd", "--seeds", "2", *TINY, "--db", db, "--workers", "2", "--no-report")
    assert result.exit_code == 2
    assert "bench workers keep dying before taking a run (last one exited with code 3)" in result.stderr
    assert {r["status"] for r in rows(db)} == {"pending"}  # nothing was lost or half-written
