"""Bench progress: a live line on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


class BenchProgress:
    """Counts done / running / failed runs and estimates the time left."""

    def __init__(self, total: int, *, parallel: int, stream=None, live: bool | None = None, quiet: bool = False):
        self.total = total
        self.parallel = max(1, parallel)
        self.stream = stream or sys.stdout
        self.quiet = quiet
        self.live = (not quiet) and (self.stream.isatty() if live is None else live)
        self.started = time.perf_counter()
        self.durations: list[float] = []
        self.counts = {"done": 0, "running": 0, "failed": 0, "lost": 0, "pending": total}
        self._progress = None
        self._task = None
        self._lines = 0
        if self.live:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            console = Console(file=self.stream, highlight=False, markup=False)
            self._progress = Progress(
                TextColumn("bench"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(), console=console, transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task("", total=total, status="")

    def eta(self) -> float | None:
        remaining = self.total - self.counts["done"] - self.counts["failed"] - self.counts["lost"]
        if remaining <= 0:
            return 0.0
        if not self.durations:
            return None
        mean = sum(self.durations) / len(self.durations)
        return remaining * mean / self.parallel

    def status_text(self) -> str:
        c = self.counts
        lost = f" lost={c['lost']}" if c["lost"] else ""
        return (f"done={c['done']} running={c['running']} failed={c['failed']}{lost} "
                f"eta={format_seconds(self.eta())}")

    def update(self, counts: dict, finished: list[dict] = ()) -> None:
        self.counts = {k: counts.get(k, 0) for k in ("done", "running", "failed", "lost", "pending")}
        for row in finished:
            if row.get("status") == "done" and row.get("duration_s") is not None:
                self.durations.append(row["duration_s"])
        finished_count = self.counts["done"] + self.counts["failed"] + self.counts["lost"]
        if self._progress is not None:
            self._progress.update(self._task, completed=finished_count, status=self.status_text())
        for row in finished:
            self._lines += 1
            if self._progress is not None:
                if row.get("status") != "done":  # the bar shows successes; failures get a line
                    self._progress.console.print(self._line(row, self._lines))
            elif not self.quiet:
                print(self._line(row, self._lines), file=self.stream, flush=True)

    def _line(self, row: dict, finished_count: int) -> str:
        what = f"{row.get('label') or row.get('strategy')} seed={row.get('seed')}"
        took = f" in {row['duration_s']:.1f}s" if row.get("duration_s") is not None else ""
        status = row.get("status")
        if status == "done" and row.get("diverged"):
            status = "done (diverged)"
        error = f": {row['error'][:200]}" if row.get("error") and row.get("status") != "done" else ""
        return f"[{finished_count}/{self.total}] {status} {what}{took}{error} | {self.status_text()}"

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
