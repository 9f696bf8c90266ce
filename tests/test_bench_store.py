"""The SQLite results store: concurrent writers, atomic claims, resume, no NaN, corrupt files."""

from __future__ import annotations

import json
import multiprocessing
import os
import sqlite3
import subprocess
import sys
import time

import pytest

from stratum.bench.matrix import RunPlan, run_id
from stratum.bench.store import ResultsStoreError, Store, process_token, token_alive


def plans(n, prefix="p"):
    out = []
    for i in range(n):
        values = {"strategy": "sgd", "seed": i, "epochs": 1, "name_hint": prefix}
        out.append(RunPlan(run_id(values), i, prefix, {"strategy": "sgd"}, {"strategy": "sgd", "seed": i}, values))
    return out


def fake_outcome(values, **extra):
    return {"status": "done", "duration_s": 0.01, "error": None,
            "summary": {"strategy": "sgd", "seed": values["seed"], "diverged": False, "config": values, **extra}}


def _writer(db, prefix, n, session, out_path):
    """One of eight writer processes: add its own runs to a shared queue, then compete for
    runs of that queue (its own and the others') until none is left."""
    store = Store(db)
    store.record_bench(prefix, {"writer": prefix}, None)
    store.enqueue(prefix, plans(n, prefix), session)
    owner = process_token()
    done = []
    while True:
        claimed = store.claim(session, owner)
        if claimed is None:
            break
        rid, values = claimed
        time.sleep(0.002)  # widen the window between claim and finish
        if store.finish(rid, owner, fake_outcome(values)):
            done.append(rid)
    store.close()
    with open(out_path, "w") as fh:
        json.dump(done, fh)


def test_eight_concurrent_writer_processes_lose_and_duplicate_nothing(tmp_path):
    db = tmp_path / "r.sqlite"
    Store(db).close()
    outs = [tmp_path / f"w{k}.json" for k in range(8)]
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(db), f"w{k}", 12, "shared", str(outs[k]))) for k in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * 8

    store = Store(db)
    rows = store.conn.execute("SELECT run_id, status, attempts FROM runs").fetchall()
    expected = {p.run_id for k in range(8) for p in plans(12, f"w{k}")}
    assert {r["run_id"] for r in rows} == expected and len(rows) == 96  # nothing lost, no duplicate rows
    assert all(r["status"] == "done" and r["attempts"] == 1 for r in rows)  # each claimed once
    finished = [rid for out in outs for rid in json.loads(out.read_text())]
    assert sorted(finished) == sorted(expected)  # each finished exactly once
    assert len(store.benches()) == 8
    assert all(len(store.bench_rows(f"w{k}")) == 12 for k in range(8))
    counts = store.session_counts("shared")
    assert counts["done"] == 96 and counts["running"] == counts["pending"] == 0


def test_store_uses_wal(tmp_path):
    store = Store(tmp_path / "r.sqlite")
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_resume_skips_done_and_requeues_runs_of_dead_workers(tmp_path):
    store = Store(tmp_path / "r.sqlite")
    ps = plans(4)
    store.record_bench("b", {}, None)
    first = store.enqueue("b", ps, "s1")
    assert first == {"total": 4, "done": 0, "queued": 4, "busy": 0}
    owner = process_token()
    rid, values = store.claim("s1", owner)
    store.finish(rid, owner, fake_outcome(values))
    # A worker that died mid-run: its row stays 'running' with a dead owner.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_token = f"{process_token().rsplit(':', 2)[0]}:{int(dead.stdout)}:1"
    rid2, _ = store.claim("s1", dead_token)
    # A run held by a live process elsewhere is left alone.
    rid3, _ = store.claim("s1", owner)
    second = store.enqueue("b", ps, "s2")
    assert second == {"total": 4, "done": 1, "queued": 2, "busy": 1}
    queued = [r for r, _ in store.queued("s2")]
    assert rid2 in queued and rid not in queued and rid3 not in queued


def test_finish_only_by_the_owner(tmp_path):
    store = Store(tmp_path / "r.sqlite")
    store.record_bench("b", {}, None)
    store.enqueue("b", plans(1), "s")
    rid, values = store.claim("s", "host:1:1")
    assert not store.finish(rid, "host:2:2", fake_outcome(values))
    assert store.finish(rid, "host:1:1", fake_outcome(values))
    assert not store.finish(rid, "host:1:1", fake_outcome(values))  # never twice


def test_mark_lost_and_release_dead(tmp_path):
    store = Store(tmp_path / "r.sqlite")
    store.record_bench("b", {}, None)
    store.enqueue("b", plans(2), "s")
    rid, _ = store.claim("s", "nohost:123:4")
    assert store.release_dead("s", "gone") == [rid]
    row = store.conn.execute("SELECT status, error FROM runs WHERE run_id = ?", (rid,)).fetchone()
    assert tuple(row) == ("lost", "gone")


def test_nan_never_reaches_the_store(tmp_path):
    store = Store(tmp_path / "r.sqlite")
    store.record_bench("b", {}, None)
    store.enqueue("b", plans(1), "s")
    rid, values = store.claim("s", "h:1:1")
    store.finish(rid, "h:1:1", fake_outcome(values, best_val_loss=float("nan"), history=[{"train_loss": float("inf")}]))
    text = store.conn.execute("SELECT summary_json FROM runs").fetchone()[0]
    assert "NaN" not in text and "Infinity" not in text
    row = store.bench_rows("b")[0]
    assert row["summary"]["best_val_loss"] is None and row["summary"]["history"][0]["train_loss"] is None


def test_process_tokens():
    assert token_alive(process_token())
    assert not token_alive("otherhost:1:1")
    assert not token_alive(None)
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    token = process_token(p.pid)
    p.wait()
    assert not token_alive(token)


@pytest.mark.parametrize("content", [b"this is not a database at all" * 100, b"SQLite format 3\x00" + b"\xff" * 200])
def test_corrupt_files_are_refused_and_left_alone(tmp_path, content):
    path = tmp_path / "bad.sqlite"
    path.write_bytes(content)
    with pytest.raises(ResultsStoreError, match="not a readable stratum results database"):
        Store(path)
    assert path.read_bytes() == content


def test_foreign_sqlite_file_is_refused(tmp_path):
    path = tmp_path / "other.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE things (x)")
    conn.commit()
    conn.close()
    with pytest.raises(ResultsStoreError, match="not a stratum results database"):
        Store(path)


def test_missing_store_for_reading(tmp_path):
    with pytest.raises(ResultsStoreError, match="not found"):
        Store(tmp_path / "missing.sqlite", create=False)
    assert not (tmp_path / "missing.sqlite").exists()


def test_bench_refuses_a_corrupt_store_without_touching_it(tmp_path):
    from .conftest import assert_one_line_error, run_cli

    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"not sqlite" * 50)
    result = run_cli("bench", "--strategies", "sgd", "--seeds", "1", "--model", "mlp", "--db", bad)
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "not a readable stratum results database")
    assert bad.read_bytes() == b"not sqlite" * 50
