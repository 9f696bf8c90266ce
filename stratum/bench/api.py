"""``run_bench``: plan the matrix, queue it in the store, run it with an executor."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import uuid
import warnings
from pathlib import Path

import attrs

from ..errors import ConfigError, RunInterrupted
from ..options import PROCESSES_MAX
from ..paths import expand
from .matrix import plan_runs
from .progress import BenchProgress, format_seconds
from .runner import cpu_count, threads_per_worker
from .spec import EXECUTORS, BenchSpec
from .store import Store


@attrs.define
class BenchResult:
    name: str
    db: Path
    total: int
    counts: dict  # status -> runs of this bench
    already_done: int
    ran: int
    seconds: float


def resolve_workers(workers: int | None, executor: str) -> int:
    if workers is None:
        return cpu_count()
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= PROCESSES_MAX:
        raise ConfigError(f"--workers must be an integer >= 1 and <= {PROCESSES_MAX}, got {workers!r}")
    return workers


def run_bench(spec: BenchSpec, db: Path, pm, *, workers: int | None = None, executor: str = "local",
              address: str | None = None, quiet: bool = False, stream=None, live: bool | None = None,
              log_dir: Path | None = None, block: tuple = ()) -> BenchResult:
    import time

    stream = stream or sys.stdout
    if executor not in EXECUTORS:
        raise ConfigError(f"--executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    if executor == "ray":
        raise ConfigError("--executor ray is not built in: stratum runs benches on Dask distributed "
                          "(--executor dask [--address tcp://HOST:8786]); see docs/measurement.md for why")
    if address and executor != "dask":
        raise ConfigError("--address needs --executor dask")
    workers = resolve_workers(workers, executor)
    registries = pm.registries
    plugins = tuple(getattr(pm, "local_plugins", {}))  # --plugin / STRATUM_PLUGINS: workers load them too
    plans = plan_runs(spec, registries, warn=lambda m: warnings.warn(m, stacklevel=2))
    if not plans:
        raise ConfigError("the bench matrix is empty")
    threads = int(spec.fixed["threads"]) if spec.fixed.get("threads") else threads_per_worker(workers)
    if executor == "dask" and address and not spec.fixed.get("threads"):
        threads = 1  # a remote worker's core count is unknown here: never oversubscribe it

    name = spec.name or spec.recipe or "bench"
    db = expand(db)
    check_bench_outputs(db, log_dir, plans, registries)
    store = Store(db)
    try:
        session = uuid.uuid4().hex
        queued = store.enqueue(name, plans, session)  # first: it checks the stored runs before anything is written
        store.record_bench(name, spec.to_dict(), spec.recipe)
        if not quiet:
            where = f"executor dask at {address}" if address else f"executor {executor}"
            print(
                f"bench {name!r}: {queued['total']} runs ({queued['done']} already done, {queued['queued']} to run"
                + (f", {queued['busy']} running in another bench" if queued["busy"] else "")
                + f"); {workers} workers x {threads} threads, {where}; store {db}",
                file=stream, flush=True,
            )
        started = time.perf_counter()
        if queued["queued"]:
            parallel = workers
            progress = BenchProgress(queued["queued"], parallel=parallel, stream=stream, live=live, quiet=quiet)
            try:
                with _stop_on_signals():
                    if executor == "local":
                        from .local import run_local

                        run_local(store, session, workers=workers, threads=threads, block=block, progress=progress,
                                  log_dir=log_dir, plugins=plugins)
                    else:
                        from .dask_executor import run_dask

                        run_dask(store, session, address=address, workers=workers, threads=threads, block=block,
                                 progress=progress, plugins=plugins)
            except (_Stop, KeyboardInterrupt) as exc:
                signum = exc.signum if isinstance(exc, _Stop) else signal.SIGINT
                counts = store.session_counts(session)
                raise RunInterrupted(
                    f"bench interrupted by {signal.Signals(signum).name}: {counts['done']} of {queued['queued']} runs "
                    f"done, unfinished runs are kept as lost; re-run the same command to resume", signum,
                ) from None
            finally:
                progress.close()
        seconds = time.perf_counter() - started
        rows = store.bench_rows(name)
        counts: dict = {}
        for row in rows:
            counts[row["status"]] = counts.get(row["status"], 0) + 1
        counts["diverged"] = sum(1 for r in rows if r["status"] == "done" and r["diverged"])
        result = BenchResult(name, Path(db), len(rows), counts, queued["done"], queued["queued"], seconds)
        if not quiet:
            print(describe(result), file=stream, flush=True)
        return result
    finally:
        store.close()


def check_bench_outputs(db: Path, log_dir: Path | None, plans, registries) -> None:
    """Probe, before any run, every destination a bench writes: the store ``db`` (a file),
    ``log_dir`` and the destinations among the runs' options (``--tensorboard`` and other
    options declared with ``output=``). Nothing is left behind; raises OutputError."""
    from ..config import output_targets
    from ..paths import probe_output
    from .matrix import known_fields

    probe_output(db, "file", "--db")  # an existing store is untouched; its directory must take the journal
    if log_dir is not None:
        probe_output(log_dir, "dir", "--log-dir")
    fields = known_fields(registries)
    seen = set()
    for plan in plans:
        for path, kind, flag in output_targets(plan.values, fields):
            if (path, kind) not in seen:
                seen.add((path, kind))
                probe_output(path, kind, flag)


class _Stop(BaseException):
    """SIGTERM (or SIGINT) reached the bench process: unwind, stop the workers, keep the store."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _stop_on_signals():
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def stop(signum, frame):
        raise _Stop(signum)

    previous = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        if signal.getsignal(sig) is signal.SIG_IGN:
            continue  # e.g. SIGINT in a background job: respect it
        previous[sig] = signal.signal(sig, stop)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def describe(result: BenchResult) -> str:
    c = result.counts
    parts = [f"{c.get('done', 0)} done"]
    if c.get("diverged"):
        parts[-1] += f" ({c['diverged']} diverged)"
    for status in ("failed", "lost", "pending", "running"):
        if c.get(status):
            parts.append(f"{c[status]} {status}")
    return (f"bench {result.name!r}: {result.total} runs: {', '.join(parts)}; "
            f"{result.ran} run now in {format_seconds(result.seconds)}")
