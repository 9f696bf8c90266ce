"""The results store: one SQLite file, safe for many writer processes.

Layout (schema version 1)::

    meta(key, value)                   schema version, creator
    benches(name, recipe, spec_json, created_at, updated_at)
    bench_runs(bench, run_id, ordinal, label, group_json, point_json)
    runs(run_id PRIMARY KEY, values_json, strategy, seed,
         status, session, queue_order, owner, attempts,
         started_at, finished_at, duration_s, diverged, error,
         summary_json, config_json)

``status`` moves ``pending -> running -> done | failed``; a run whose worker
died is ``lost``. ``owner`` is ``host:pid:start-time`` of the process running
it, which tells a live worker from a dead one whose pid was reused.

Concurrency: WAL journal (readers never block the writer), a busy timeout,
and every state change in one short ``BEGIN IMMEDIATE`` transaction. A run is
claimed atomically (``pending`` -> ``running`` in the same transaction that
chose it), so two workers never take the same run; a result is written in
one transaction that also checks the writer still owns the run. A killed
process loses at most its own running row, which the next bench re-queues.
Summaries are stored as JSON without NaN (``stratum.io.json_safe``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import sqlite3
import time
from pathlib import Path, PurePath
from typing import Any, Iterable

from ..errors import StratumError

SCHEMA_VERSION = 1
STATUSES = ("pending", "running", "done", "failed", "lost")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS benches (
    name TEXT PRIMARY KEY, recipe TEXT, spec_json TEXT NOT NULL,
    created_at REAL NOT NULL, updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    values_json TEXT NOT NULL,
    strategy TEXT NOT NULL,
    seed INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed', 'lost')),
    session TEXT,
    queue_order INTEGER,
    owner TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    started_at REAL,
    finished_at REAL,
    duration_s REAL,
    diverged INTEGER,
    error TEXT,
    summary_json TEXT,
    config_json TEXT
);
CREATE TABLE IF NOT EXISTS bench_runs (
    bench TEXT NOT NULL, run_id TEXT NOT NULL REFERENCES runs(run_id),
    ordinal INTEGER NOT NULL, label TEXT NOT NULL, group_json TEXT NOT NULL, point_json TEXT NOT NULL,
    PRIMARY KEY (bench, run_id)
);
CREATE INDEX IF NOT EXISTS runs_queue ON runs (session, status, queue_order);
"""

REQUIRED_TABLES = {"meta", "benches", "runs", "bench_runs"}


class ResultsStoreError(StratumError):
    """A results database that is missing, corrupt or not stratum's."""


def json_safe(value: Any) -> Any:
    """The rules of :func:`stratum.io.json_safe` (NaN/inf -> null; tensors, numpy, paths -> plain),
    duck-typed so that a process using only the store never imports torch."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, PurePath):
        return str(value)
    if hasattr(value, "tolist") and callable(value.tolist):  # tensors, numpy arrays and scalars
        return json_safe(value.tolist())
    if hasattr(value, "item") and callable(value.item):
        return json_safe(value.item())
    return value


def _dumps(data: Any) -> str:
    # allow_nan=False: anything non-finite that slipped through fails loudly instead of landing on disk
    return json.dumps(json_safe(data), allow_nan=False, sort_keys=False, separators=(",", ":"))


# ---------------------------------------------------------------------------
# Who owns a running row
# ---------------------------------------------------------------------------


def _start_time(pid: int) -> str:
    """The process start time in clock ticks since boot (Linux), or '' elsewhere."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode(errors="replace")
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def process_token(pid: int | None = None) -> str:
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{_start_time(pid)}"


def token_alive(token: str | None) -> bool:
    """Is the process that wrote this token still running? Unknown hosts count as gone."""
    if not token:
        return False
    try:
        host, pid_text, start = token.rsplit(":", 2)
        pid = int(pid_text)
    except ValueError:
        return False
    if host != socket.gethostname():
        return False
    if start:
        return _start_time(pid) == start
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---------------------------------------------------------------------------
# The store
# ---------------------------------------------------------------------------


class Store:
    """A connection to one results file. Open one per process; do not share across forks."""

    def __init__(self, path: Path | str, *, create: bool = True, timeout: float = 120.0):
        self.path = Path(path)
        if not create and not self.path.exists():
            raise ResultsStoreError(f"results database not found: {self.path}")
        if self.path.exists() and self.path.is_dir():
            raise ResultsStoreError(f"results database path is a directory: {self.path}")
        if create:
            from ..paths import writing

            with writing(self.path, "results database"):
                self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.conn = sqlite3.connect(str(self.path), timeout=timeout, isolation_level=None)
            self.conn.row_factory = sqlite3.Row
            self.conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            if create:
                self.conn.execute("PRAGMA journal_mode = WAL")
                self.conn.execute("PRAGMA synchronous = NORMAL")
            tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if create and not tables:
                with self.transaction():
                    for statement in _SCHEMA.strip().split(";"):
                        if statement.strip():
                            self.conn.execute(statement)
                    self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                    self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('created_by', 'stratum')")
                tables = REQUIRED_TABLES
            self._check_schema(tables)
        except sqlite3.DatabaseError as exc:
            raise ResultsStoreError(f"{self.path} is not a readable stratum results database ({exc})") from None

    def _check_schema(self, tables: set) -> None:
        missing = REQUIRED_TABLES - set(tables)
        if missing:
            raise ResultsStoreError(
                f"{self.path} is an SQLite file but not a stratum results database (missing: {', '.join(sorted(missing))})"
            )
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None or row[0] != str(SCHEMA_VERSION):
            found = row[0] if row else "none"
            raise ResultsStoreError(f"{self.path}: results schema version {found}, this stratum reads {SCHEMA_VERSION}")

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @contextlib.contextmanager
    def transaction(self):
        """``BEGIN IMMEDIATE`` ... ``COMMIT``: one writer at a time, waiting politely."""
        conn = self.conn
        for attempt in range(50):
            try:
                conn.execute("BEGIN IMMEDIATE")
                break
            except sqlite3.OperationalError as exc:  # busy beyond the timeout: back off and retry
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                time.sleep(min(0.05 * (attempt + 1), 1.0))
        else:  # pragma: no cover
            raise ResultsStoreError(f"{self.path}: database stayed locked; is another program holding it?")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")

    # -- benches ---------------------------------------------------------------
    def record_bench(self, name: str, spec: dict, recipe: str | None) -> None:
        now = time.time()
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO benches (name, recipe, spec_json, created_at, updated_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET recipe = excluded.recipe, spec_json = excluded.spec_json, "
                "updated_at = excluded.updated_at",
                (name, recipe, _dumps(spec), now, now),
            )

    def benches(self) -> list[dict]:
        rows = self.conn.execute("SELECT name, recipe, spec_json, created_at, updated_at FROM benches ORDER BY updated_at")
        return [dict(r) for r in rows]

    # -- queueing --------------------------------------------------------------
    def enqueue(self, bench: str, plans: Iterable, session: str) -> dict:
        """Add the bench's runs; queue every one not done (and not running elsewhere) for ``session``."""
        counts = {"total": 0, "done": 0, "queued": 0, "busy": 0}
        with self.transaction() as conn:
            conn.execute("DELETE FROM bench_runs WHERE bench = ?", (bench,))
            for order, plan in enumerate(plans):
                counts["total"] += 1
                conn.execute(
                    "INSERT OR IGNORE INTO runs (run_id, values_json, strategy, seed, status) VALUES (?, ?, ?, ?, 'pending')",
                    (plan.run_id, _dumps(plan.values), plan.strategy, plan.seed),
                )
                conn.execute(
                    "INSERT INTO bench_runs (bench, run_id, ordinal, label, group_json, point_json) VALUES (?, ?, ?, ?, ?, ?)",
                    (bench, plan.run_id, plan.ordinal, plan.label, _dumps(plan.group), _dumps(plan.point)),
                )
                status, owner = conn.execute("SELECT status, owner FROM runs WHERE run_id = ?", (plan.run_id,)).fetchone()
                if status == "done":
                    counts["done"] += 1
                    continue
                if status == "running" and token_alive(owner):
                    counts["busy"] += 1
                    continue
                conn.execute(
                    "UPDATE runs SET status = 'pending', session = ?, queue_order = ?, owner = NULL WHERE run_id = ?",
                    (session, order, plan.run_id),
                )
                counts["queued"] += 1
        return counts

    def claim(self, session: str, owner: str) -> tuple[str, dict] | None:
        """Atomically take the next pending run of ``session``; ``None`` when there is none."""
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT run_id, values_json FROM runs WHERE session = ? AND status = 'pending' "
                "ORDER BY queue_order LIMIT 1", (session,),
            ).fetchone()
            if row is None:
                return None
            conn.execute(
                "UPDATE runs SET status = 'running', owner = ?, attempts = attempts + 1, started_at = ?, "
                "finished_at = NULL, error = NULL WHERE run_id = ?",
                (owner, time.time(), row["run_id"]),
            )
        return row["run_id"], json.loads(row["values_json"])

    def claim_specific(self, run_id: str, session: str, owner: str) -> bool:
        """Mark one queued run as running (executors that dispatch runs themselves)."""
        with self.transaction() as conn:
            cur = conn.execute(
                "UPDATE runs SET status = 'running', owner = ?, attempts = attempts + 1, started_at = ?, "
                "finished_at = NULL, error = NULL WHERE run_id = ? AND session = ? AND status = 'pending'",
                (owner, time.time(), run_id, session),
            )
        return cur.rowcount == 1

    def queued(self, session: str) -> list[tuple[str, dict]]:
        rows = self.conn.execute(
            "SELECT run_id, values_json FROM runs WHERE session = ? AND status = 'pending' ORDER BY queue_order", (session,)
        )
        return [(r["run_id"], json.loads(r["values_json"])) for r in rows]

    def finish(self, run_id: str, owner: str, outcome: dict) -> bool:
        """Store a run's outcome if ``owner`` still holds it. Returns whether it was written."""
        summary = outcome.get("summary")
        with self.transaction() as conn:
            cur = conn.execute(
                "UPDATE runs SET status = ?, finished_at = ?, duration_s = ?, diverged = ?, error = ?, "
                "summary_json = ?, config_json = ?, owner = NULL WHERE run_id = ? AND status = 'running' AND owner = ?",
                (
                    outcome["status"], time.time(), outcome.get("duration_s"),
                    None if summary is None else int(bool(summary.get("diverged"))),
                    outcome.get("error"),
                    None if summary is None else _dumps(summary),
                    None if summary is None else _dumps(summary.get("config", {})),
                    run_id, owner,
                ),
            )
        return cur.rowcount == 1

    def mark_lost(self, owner: str, reason: str) -> list[str]:
        """A worker died: its running run (if any) becomes ``lost``."""
        with self.transaction() as conn:
            ids = [r[0] for r in conn.execute("SELECT run_id FROM runs WHERE status = 'running' AND owner = ?", (owner,))]
            conn.execute(
                "UPDATE runs SET status = 'lost', error = ?, finished_at = ?, owner = NULL WHERE status = 'running' AND owner = ?",
                (reason, time.time(), owner),
            )
        return ids

    def release_dead(self, session: str, reason: str) -> list[str]:
        """Running rows of ``session`` whose owner process is gone become ``lost``."""
        rows = self.conn.execute("SELECT run_id, owner FROM runs WHERE session = ? AND status = 'running'", (session,)).fetchall()
        lost = []
        for row in rows:
            if not token_alive(row["owner"]):
                lost += self.mark_lost(row["owner"], reason) if row["owner"] else []
        return lost

    def requeue(self, session: str, run_ids: Iterable[str]) -> None:
        with self.transaction() as conn:
            for rid in run_ids:
                conn.execute("UPDATE runs SET status = 'pending', owner = NULL WHERE run_id = ? AND session = ?", (rid, session))

    # -- reading ---------------------------------------------------------------
    def session_counts(self, session: str) -> dict:
        counts = dict.fromkeys(STATUSES, 0)
        for status, n in self.conn.execute("SELECT status, COUNT(*) FROM runs WHERE session = ? GROUP BY status", (session,)):
            counts[status] = n
        return counts

    def finished_since(self, session: str, since: float) -> list[dict]:
        rows = self.conn.execute(
            "SELECT r.run_id, r.status, r.duration_s, r.diverged, r.error, r.finished_at, r.strategy, r.seed, "
            "(SELECT label FROM bench_runs b WHERE b.run_id = r.run_id LIMIT 1) AS label "
            "FROM runs r WHERE r.session = ? AND r.status IN ('done', 'failed', 'lost') AND r.finished_at > ? "
            "ORDER BY r.finished_at", (session, since),
        )
        return [dict(r) for r in rows]

    def bench_rows(self, bench: str | None = None) -> list[dict]:
        """Every run of a bench (default: the latest), joined with its place in the matrix."""
        if bench is None:
            latest = self.conn.execute("SELECT name FROM benches ORDER BY updated_at DESC LIMIT 1").fetchone()
            if latest is None:
                return []
            bench = latest[0]
        rows = self.conn.execute(
            "SELECT b.bench, b.ordinal, b.label, b.group_json, b.point_json, r.* FROM bench_runs b "
            "JOIN runs r ON r.run_id = b.run_id WHERE b.bench = ? ORDER BY b.ordinal", (bench,),
        )
        out = []
        for row in rows:
            item = dict(row)
            for key in ("group_json", "point_json", "values_json", "summary_json", "config_json"):
                text = item.pop(key)
                item[key[:-5]] = json.loads(text) if text else None
            out.append(item)
        return out
