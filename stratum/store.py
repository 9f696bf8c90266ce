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
import os
import socket
import sqlite3
import stat
import time
import urllib.parse
import warnings
from pathlib import Path
from typing import Any, Iterable

from .errors import StratumError
from .io import json_safe

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
# Every column the code reads or writes, per table: a table without one of them is damaged or not ours.
REQUIRED_COLUMNS = {
    "meta": ("key", "value"),
    "benches": ("name", "recipe", "spec_json", "created_at", "updated_at"),
    "runs": ("run_id", "values_json", "strategy", "seed", "status", "session", "queue_order", "owner", "attempts",
             "started_at", "finished_at", "duration_s", "diverged", "error", "summary_json", "config_json"),
    "bench_runs": ("bench", "run_id", "ordinal", "label", "group_json", "point_json"),
}


class ResultsStoreError(StratumError):
    """A results database that is missing, corrupt, unreadable or not stratum's."""


def results_db_path(value) -> Path:
    """Check that ``value`` names a results database *file* and return it as a :class:`Path`.

    SQLite gives some names a special meaning: ``:memory:`` and ``file:...`` URIs
    are databases only this connection sees (bench workers would each get their
    own empty one), ``''`` a temporary one. Those, names with a NUL character,
    names ending in a separator and existing directories or non-regular files
    (pipes, devices) raise :class:`ResultsStoreError`. A leading ``~`` is expanded.
    """
    text = os.fspath(value) if isinstance(value, (str, os.PathLike)) else None
    if not isinstance(text, str):
        raise ResultsStoreError(f"results database must be a file path, got {value!r}")
    hint = "; give a file path such as bench.sqlite"
    if not text.strip():
        raise ResultsStoreError(f"results database name is empty{hint}")
    if text == ":memory:" or text.lower().startswith("file:"):
        raise ResultsStoreError(
            f"results database {text!r} is not a file: SQLite keeps it in memory or reads it as a URI, "
            f"where bench workers and reports cannot share it{hint}"
        )
    if "\x00" in text:
        raise ResultsStoreError(f"results database path {text!r} contains a NUL character{hint}")
    if text.endswith(("/", os.sep)):
        raise ResultsStoreError(f"results database path {text!r} names a directory{hint}")
    path = Path(os.path.expanduser(text))  # ~ as in every other path option
    try:
        info = path.stat()
    except OSError:
        return path  # missing (or not reachable): the open that follows says which
    if stat.S_ISDIR(info.st_mode):
        raise ResultsStoreError(f"results database path is a directory: {path}{hint}")
    if not stat.S_ISREG(info.st_mode):
        raise ResultsStoreError(f"results database path is not a regular file: {path}{hint}")
    return path


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _reject_constant(name: str):
    raise ValueError(f"non-finite number {name}")


def parse_json_column(text, where: str, kind: type | tuple = dict, *, nullable: bool = False):
    """Parse one stored JSON column; ``where`` names the file, row and column in errors.

    Raises :class:`ResultsStoreError` when the text is not JSON (NaN and infinities
    included: the store never writes them) or not of ``kind``.
    """
    if text is None:
        if nullable:
            return None
        raise ResultsStoreError(f"{where} is empty")
    if not isinstance(text, (str, bytes)):
        raise ResultsStoreError(f"{where} holds a {type(text).__name__}, not JSON text")
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ResultsStoreError(f"{where} is not valid JSON ({str(exc)[:80]})") from None
    if value is None and nullable:
        return None
    if not isinstance(value, kind):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        names = names.replace("dict", "a JSON object").replace("list", "a JSON array")
        raise ResultsStoreError(f"{where} must hold {names}, got {type(value).__name__}")
    return value


# Summary fields the report reads, and their JSON types.
_SUMMARY_NUMBERS = ("peak_test_acc", "final_test_acc", "time_to_peak_s", "time_to_peak_all_in_s", "total_s",
                    "total_all_in_s", "setup_s", "prior_s", "best_val_acc", "best_val_loss", "test_acc_at_best_val")
_HISTORY_NUMBERS = ("train_loss", "val_loss", "val_acc", "test_loss", "test_acc", "train_s", "val_s", "test_s",
                    "epoch_s", "cum_s", "cum_all_in_s")


def check_summary(summary: dict, where: str) -> dict:
    """Check the fields of a stored run summary that the report and plots read.

    ``where`` names the file, run and column. Raises :class:`ResultsStoreError`
    naming the first field of the wrong type; returns ``summary`` unchanged.
    """

    def fail(field: str, expected: str, value) -> None:
        raise ResultsStoreError(f"{where}: field {field!r} must be {expected}, got {json.dumps(value)[:40]}")

    def number(field: str, value, *, required: bool = False) -> None:
        if value is None and not required:
            return
        if not _is_number(value):
            fail(field, "a number" if required else "a number or null", value)

    def numbers(field: str, value) -> None:  # a list of numbers or nulls
        if not isinstance(value, list):
            fail(field, "a list", value)
        for i, item in enumerate(value):
            number(f"{field}[{i}]", item)

    def number_map(field: str, value) -> None:  # an optional object of numbers (phase seconds, shares)
        if value is None:
            return
        if not isinstance(value, dict):
            fail(field, "an object", value)
        for name, item in value.items():
            number(f"{field}.{name}", item)

    for key in _SUMMARY_NUMBERS:
        number(key, summary.get(key))
    if summary.get("task") is not None and not isinstance(summary["task"], str):
        fail("task", "a string", summary["task"])
    if summary.get("diverged") is not None and not isinstance(summary["diverged"], (bool, int)):
        fail("diverged", "true or false", summary["diverged"])
    history = summary.get("history", [])
    if not isinstance(history, list):
        fail("history", "a list of epoch records", history)
    for i, record in enumerate(history):
        if not isinstance(record, dict):
            fail(f"history[{i}]", "an epoch record (object)", record)
        epoch = record.get("epoch")
        if epoch is not None and (not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0):
            fail(f"history[{i}].epoch", "an epoch number", epoch)
        for key in _HISTORY_NUMBERS:
            number(f"history[{i}].{key}", record.get(key))
        number_map(f"history[{i}].phases_s", record.get("phases_s"))
    phases = summary.get("phases")
    if phases is not None:
        if not isinstance(phases, dict):
            fail("phases", "an object", phases)
        number_map("phases.share", phases.get("share"))
    flow = summary.get("gradflow")
    if flow is not None:
        if not isinstance(flow, dict):
            fail("gradflow", "an object", flow)
        for key in ("layers", "epochs", "mean_grad_norm", "verdict"):
            if flow.get(key) is not None and not isinstance(flow[key], list):
                fail(f"gradflow.{key}", "a list", flow[key])
        for i, row in enumerate(flow.get("mean_grad_norm") or []):
            numbers(f"gradflow.mean_grad_norm[{i}]", row)
    losses = summary.get("losses")
    if losses is not None:
        if not isinstance(losses, dict):
            fail("losses", "an object", losses)
        steps, values = losses.get("steps") or [], losses.get("loss") or []
        numbers("losses.steps", steps)
        numbers("losses.loss", values)
        if len(steps) != len(values):
            fail("losses.loss", f"as long as losses.steps ({len(steps)})", len(values))
    return summary


def _dumps(data: Any) -> str:
    # allow_nan=False: anything non-finite that slipped through fails loudly instead of landing on disk
    return json.dumps(json_safe(data), allow_nan=False, sort_keys=False, separators=(",", ":"))


def _outcome_columns(outcome: dict) -> tuple:
    """``duration_s, diverged, error, summary_json, config_json`` of a run's outcome (see
    :func:`stratum.bench.runner.execute_run`)."""
    summary = outcome.get("summary")
    return (outcome.get("duration_s"), None if summary is None else int(bool(summary.get("diverged"))),
            outcome.get("error"), None if summary is None else _dumps(summary),
            None if summary is None else _dumps(summary.get("config", {})))


def _cannot_write(exc: sqlite3.DatabaseError) -> bool:
    """SQLite failed for want of write access (to the file, its directory or a WAL companion)."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    return name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_AUTH")) or any(
        text in str(exc) for text in ("readonly database", "unable to open database file")
    )


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
    """A connection to one results file. Open one per process; do not share across forks.

    ``create=True`` (bench, workers): open for writing, creating the file and its
    schema when missing (``must_exist=True``, bench workers: never create it).
    ``create=False`` (report, readers): the file must exist;
    it is opened without creating anything and never written (``query_only``),
    falling back to SQLite's read-only modes when the file or its directory is
    not writable: ``mode=ro``, then ``immutable=1`` when even the ``-shm``
    companion of a WAL database cannot be created there.

    Raises :class:`ResultsStoreError` for a name that is not a file (see
    :func:`results_db_path`), a missing, unreadable (saying when the cause is
    permission), corrupt or foreign file, and for missing tables or columns.
    """

    def __init__(self, path: Path | str, *, create: bool = True, timeout: float = 120.0, must_exist: bool = False):
        self.path = results_db_path(path)
        self.read_only = not create
        self.immutable = False
        if (must_exist or not create) and not self.path.exists():
            raise ResultsStoreError(f"results database not found: {self.path}")
        if not create and not os.access(self.path, os.R_OK):
            raise ResultsStoreError(f"cannot read results database {self.path}: permission denied")
        if create and self.path.exists() and not os.access(self.path, os.W_OK):
            raise ResultsStoreError(f"cannot open results database {self.path} for writing: permission denied "
                                    "(the file is read-only to this user)")
        if create and not must_exist:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ResultsStoreError(
                    f"cannot create the directory of results database {self.path}: {exc.strerror or exc}"
                ) from None
        try:
            if create:
                self.conn = self._connect(None, timeout)
                self.conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
                self.conn.execute("PRAGMA journal_mode = WAL")
                self.conn.execute("PRAGMA synchronous = NORMAL")
                tables = self._tables()
                if tables:  # a writer must be able to write: find out now, not after the first run
                    with self.transaction():  # takes the write lock, changes nothing
                        pass
            else:
                tables = self._open_for_reading(timeout)
            if create and not must_exist and not tables:
                with self.transaction():
                    for statement in _SCHEMA.strip().split(";"):
                        if statement.strip():
                            self.conn.execute(statement)
                    self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                    self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('created_by', 'stratum')")
                tables = REQUIRED_TABLES
            self._check_schema(tables)
        except sqlite3.DatabaseError as exc:
            self.close()
            raise ResultsStoreError(self._describe_failure(exc)) from None
        except ResultsStoreError:
            self.close()
            raise

    def _connect(self, mode: str | None, timeout: float) -> sqlite3.Connection:
        if mode is None:
            conn = sqlite3.connect(str(self.path), timeout=timeout, isolation_level=None)
        else:  # a URI never creates the file (mode=rw / mode=ro)
            uri = f"file:{urllib.parse.quote(str(self.path.resolve()))}?{mode}"
            conn = sqlite3.connect(uri, timeout=timeout, isolation_level=None, uri=True)
        self.conn = conn
        conn.row_factory = sqlite3.Row
        return conn

    def _tables(self) -> set:
        return {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def _open_for_reading(self, timeout: float) -> set:
        """Open without ever writing, and without leaving files behind. Returns the table names.

        Where this process may write the file and its directory, ``mode=rw`` with
        ``query_only``: SQLite then removes the WAL companions it creates when the
        connection closes. Elsewhere a plain read-only connection would create
        ``-wal``/``-shm`` files it can never remove (or fail to create them): it is
        used only when they already exist (a writer is at work: share its log);
        otherwise the file holds everything and is read ``immutable``. Each mode
        falls back to the next when SQLite lacks write access for it.
        """
        directory = self.path.parent if str(self.path.parent) else Path(".")
        companions = any(Path(f"{self.path}{suffix}").exists() for suffix in ("-wal", "-shm"))
        if os.access(self.path, os.W_OK) and os.access(directory, os.W_OK | os.X_OK):
            modes = ("mode=rw", "mode=ro", "mode=ro&immutable=1")
        elif companions:
            modes = ("mode=ro", "mode=ro&immutable=1")
        else:
            modes = ("mode=ro&immutable=1",)
        last: sqlite3.DatabaseError | None = None
        for mode in modes:
            try:
                self._connect(mode, timeout)
                self.conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
                self.conn.execute("PRAGMA query_only = 1")
                tables = self._tables()
            except sqlite3.OperationalError as exc:
                self.close()
                last = exc
                if not _cannot_write(exc):
                    raise
                continue
            if "immutable" in mode:
                self.immutable = True
                wal = Path(f"{self.path}-wal")
                if wal.exists() and wal.stat().st_size > 0:
                    warnings.warn(
                        f"{self.path} is read here without its write-ahead log {wal.name} (its directory is not "
                        "writable); results written since the last checkpoint may be missing", stacklevel=3,
                    )
            return tables
        raise last  # pragma: no cover - immutable opens need no write access

    def _describe_failure(self, exc: sqlite3.DatabaseError) -> str:
        """One line saying whether permission or the file itself is the problem."""
        if _cannot_write(exc) or not os.access(self.path.parent, os.W_OK | os.X_OK) and not self.path.exists():
            where = self.path.parent if str(self.path.parent) else Path(".")
            return (f"cannot open results database {self.path} for writing: permission denied "
                    f"(the file or its directory {where} is read-only to this user; {exc})")
        if self.path.exists() and not os.access(self.path, os.R_OK):
            return f"cannot read results database {self.path}: permission denied"
        return f"{self.path} is not a readable stratum results database ({exc})"

    def _check_schema(self, tables: set) -> None:
        missing = REQUIRED_TABLES - set(tables)
        if missing:
            raise ResultsStoreError(
                f"{self.path} is an SQLite file but not a stratum results database (missing: {', '.join(sorted(missing))})"
            )
        for table, columns in REQUIRED_COLUMNS.items():
            present = {r[1] for r in self.conn.execute(f"PRAGMA table_info({table})")}
            lacking = [c for c in columns if c not in present]
            if lacking:
                raise ResultsStoreError(
                    f"{self.path}: table {table!r} lacks column{'s' if len(lacking) > 1 else ''} {', '.join(lacking)}; "
                    "the results database is damaged or from another program"
                )
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None or row[0] != str(SCHEMA_VERSION):
            found = row[0] if row else "none"
            raise ResultsStoreError(f"{self.path}: results schema version {found}, this stratum reads {SCHEMA_VERSION}")

    def close(self) -> None:
        conn = getattr(self, "conn", None)
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

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
        """The benches in the store, oldest first; ``spec`` is the parsed ``spec_json``.

        Raises :class:`ResultsStoreError` when a name, recipe or spec is malformed."""
        rows = self.conn.execute("SELECT name, recipe, spec_json, created_at, updated_at FROM benches ORDER BY updated_at")
        out = []
        for r in rows:
            item = dict(r)
            where = f"{self.path}: bench {item['name']!r}"
            if not isinstance(item["name"], str):
                raise ResultsStoreError(f"{self.path}: table benches: column name must be text, got {item['name']!r}")
            if item["recipe"] is not None and not isinstance(item["recipe"], str):
                raise ResultsStoreError(f"{where}: column recipe must be text, got {item['recipe']!r}")
            item["spec"] = parse_json_column(item["spec_json"], f"{where}: column spec_json", dict)
            settings = item["spec"].get("settings")
            if settings is not None and not isinstance(settings, dict):
                raise ResultsStoreError(f"{where}: column spec_json: field 'settings' must be an object")
            out.append(item)
        return out

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
                status, owner, summary_json = conn.execute(
                    "SELECT status, owner, summary_json FROM runs WHERE run_id = ?", (plan.run_id,)
                ).fetchone()
                where = f"{self.path}: run {plan.run_id!r}"
                if status not in STATUSES:
                    raise ResultsStoreError(f"{where}: column status holds {status!r}, not one of {', '.join(STATUSES)}")
                if status == "done":
                    # A finished result is kept, never re-run over: it must be readable before anything trains.
                    summary = parse_json_column(summary_json, f"{where}: column summary_json", dict, nullable=True)
                    if summary is not None:
                        check_summary(summary, f"{where}: column summary_json")
                    counts["done"] += 1
                    continue
                if status == "running" and token_alive(owner):
                    counts["busy"] += 1
                    continue
                conn.execute(  # the plan's values are the run's (its id hashes them): rewrite them
                    "UPDATE runs SET status = 'pending', session = ?, queue_order = ?, owner = NULL, values_json = ? "
                    "WHERE run_id = ?",
                    (session, order, _dumps(plan.values), plan.run_id),
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
        return row["run_id"], parse_json_column(row["values_json"], f"{self.path}: run {row['run_id']!r}: column values_json")

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
        return [(r["run_id"], parse_json_column(r["values_json"], f"{self.path}: run {r['run_id']!r}: column values_json"))
                for r in rows]

    def finish(self, run_id: str, owner: str, outcome: dict) -> bool:
        """Store a run's outcome if ``owner`` still holds it. Returns whether it was written."""
        with self.transaction() as conn:
            cur = conn.execute(
                "UPDATE runs SET status = ?, finished_at = ?, duration_s = ?, diverged = ?, error = ?, "
                "summary_json = ?, config_json = ?, owner = NULL WHERE run_id = ? AND status = 'running' AND owner = ?",
                (outcome["status"], time.time(), *_outcome_columns(outcome), run_id, owner),
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

    def record_run(self, bench: str, plan, outcome: dict) -> None:
        """Store one finished run of ``bench`` that no queue handed out (a ``stratum tune`` trial's
        run): ``plan`` gives ``run_id``, ``ordinal``, ``label``, ``group``, ``point``, ``values``,
        ``strategy`` and ``seed`` (as a bench :class:`~stratum.bench.matrix.RunPlan` does), ``outcome``
        what :func:`stratum.bench.runner.execute_run` returns. Replaces an earlier row of the same id."""
        now = time.time()
        with self.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO runs (run_id, values_json, strategy, seed, status, attempts, started_at, "
                "finished_at, duration_s, diverged, error, summary_json, config_json) "
                "VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?)",
                (plan.run_id, _dumps(plan.values), plan.strategy, plan.seed, outcome["status"],
                 now - (outcome.get("duration_s") or 0.0), now, *_outcome_columns(outcome)),
            )
            conn.execute(
                "INSERT OR REPLACE INTO bench_runs (bench, run_id, ordinal, label, group_json, point_json) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (bench, plan.run_id, plan.ordinal, plan.label, _dumps(plan.group), _dumps(plan.point)),
            )

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
        """Every run of a bench (default: the latest), joined with its place in the matrix.

        Each stored JSON column is parsed and checked (see :func:`check_summary`); a
        malformed one raises :class:`ResultsStoreError` naming the file, run and field.
        """
        if bench is None:
            latest = self.conn.execute("SELECT name FROM benches ORDER BY updated_at DESC LIMIT 1").fetchone()
            if latest is None:
                return []
            bench = latest[0]
        rows = self.conn.execute(
            "SELECT b.bench, b.ordinal, b.label, b.group_json, b.point_json, r.* FROM bench_runs b "
            "JOIN runs r ON r.run_id = b.run_id WHERE b.bench = ? ORDER BY b.ordinal", (bench,),
        )
        return [self._checked_row(dict(row)) for row in rows]

    def _checked_row(self, item: dict) -> dict:
        where = f"{self.path}: run {item.get('run_id')!r}"
        if item.get("status") not in STATUSES:
            raise ResultsStoreError(f"{where}: column status holds {item.get('status')!r}, not one of {', '.join(STATUSES)}")
        if not isinstance(item.get("label"), str):
            raise ResultsStoreError(f"{where}: column label must be text, got {item.get('label')!r}")
        for column in ("seed", "ordinal"):
            if not isinstance(item.get(column), int):
                raise ResultsStoreError(f"{where}: column {column} must be an integer, got {item.get(column)!r}")
        for column in ("duration_s", "finished_at", "started_at"):
            if item.get(column) is not None and not _is_number(item[column]):
                raise ResultsStoreError(f"{where}: column {column} must be a number, got {item[column]!r}")
        for key in ("group_json", "point_json", "values_json", "summary_json", "config_json"):
            nullable = key in ("summary_json", "config_json")
            item[key[:-5]] = parse_json_column(item.pop(key), f"{where}: column {key}", dict, nullable=nullable)
        if item["summary"] is not None:
            check_summary(item["summary"], f"{where}: column summary_json")
        return item
