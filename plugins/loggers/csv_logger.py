"""The ``csv`` logger: one row per epoch in ``<run dir>/metrics.csv``.

The columns are the history row's keys in the order the engine (and the plugins after it)
wrote them into the first row; a nested entry (``phases_s``) becomes dotted columns
(``phases_s.forward``), a list a JSON string, ``None`` an empty cell. Each epoch's row is
appended and flushed to disk (``os.fsync``) as the epoch ends, so a crash keeps every finished
epoch. A row bringing a new key (``stopped_reason`` on the last epoch) rewrites the file
atomically with the wider header (:func:`stratum.io.atomic_write_bytes`). A resumed fit keeps the
rows up to its checkpoint's epoch and goes on in the same file (no epoch twice); a fresh fit
replaces the file. A strategy that fits several times (the lottery) writes one file per fit,
``metrics-<fit tag>.csv``. Python's :mod:`csv` module writes and reads the files.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from stratum.errors import ConfigError
from stratum.hookspecs import hookimpl
from stratum.io import atomic_write_bytes
from stratum.paths import safe_join, slug

from .flat import flatten

FILENAME = "metrics.csv"


def make_csv_logger(run, options):
    """Logger factory: a :class:`CsvLogger` writing into the run directory. Raises
    :class:`ConfigError` when the run has none (no ``--out``)."""
    run_dir = run.run_dir()
    if run_dir is None:
        raise ConfigError(f"--log csv needs a run directory: give --out DIR (it writes <run dir>/{FILENAME})")
    return CsvLogger(run_dir)


def csv_path(run_dir: Path, fit_tag: str | None) -> Path:
    """``<run dir>/metrics.csv``, or ``metrics-<fit tag>.csv`` for one of several fits."""
    if not fit_tag:
        return Path(run_dir) / FILENAME
    return safe_join(Path(run_dir), f"metrics-{slug(fit_tag, fallback='fit')}.csv")


def cells_of(record: dict) -> dict:
    """A history row as CSV cells: nested dicts as dotted keys, lists as JSON, ``None`` as ``""``."""
    return {key: "" if value is None else json.dumps(value) if isinstance(value, (list, tuple)) else value
            for key, value in flatten(record).items()}


def read_rows(path: Path) -> tuple[list, list]:
    """``(columns, rows)`` of a CSV file this logger wrote (``([], [])`` when it does not exist)."""
    try:
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            return list(reader.fieldnames or []), rows
    except FileNotFoundError:
        return [], []


def _table(columns: list, rows: list) -> bytes:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue().encode()


class CsvLogger:
    """Writes the epochs of every fit of a run, one CSV file per fit (see the module docstring)."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.path: Path | None = None
        self.columns: list = []

    @hookimpl
    def stratum_fit_start(self, run):
        self.path = csv_path(self.run_dir, run.fit_tag)
        if run.epoch > 0:  # resumed: keep the epochs up to the checkpoint, drop any logged after it
            columns, rows = read_rows(self.path)
            kept = [row for row in rows if _epoch(row) is not None and _epoch(row) <= run.epoch]
            self.columns = columns
            if kept != rows:
                atomic_write_bytes(self.path, _table(columns, kept), "--log csv")
        else:  # a fresh fit starts a fresh file
            self.columns = []
            self.path.unlink(missing_ok=True)

    @hookimpl
    def stratum_epoch_end(self, run, epoch, record):
        cells = cells_of(record)
        new = [key for key in cells if key not in self.columns]
        if new or not self.path.exists():
            _, rows = read_rows(self.path)
            self.columns = self.columns + new
            atomic_write_bytes(self.path, _table(self.columns, [*rows, cells]), "--log csv")
            return
        text = io.StringIO()
        csv.DictWriter(text, fieldnames=self.columns, restval="", lineterminator="\n").writerow(cells)
        with open(self.path, "a", newline="") as fh:
            fh.write(text.getvalue())
            fh.flush()
            os.fsync(fh.fileno())  # on disk as the epoch ends: a crash keeps it

    @hookimpl
    def stratum_fit_end(self, run, summary):
        if self.path is not None and self.path.exists():
            summary["metrics_csv"] = str(self.path)


def _epoch(row: dict) -> int | None:
    try:
        return int(row.get("epoch") or "")
    except ValueError:
        return None
