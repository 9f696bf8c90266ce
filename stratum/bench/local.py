"""The default executor: a pool of local worker processes sharing the store.

Workers pull runs from the store themselves (see :func:`.runner.worker_main`),
so the parent only watches: it refreshes the progress display, and when a
worker dies (SIGKILL, out of memory) it marks that worker's run ``lost`` and
starts a replacement, so the other workers and their runs are untouched.
This is why it is not a ``concurrent.futures`` pool: there, one dead worker
breaks the whole pool and every run in flight.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import time

from ..errors import StratumError
from .runner import worker_main
from .store import Store, process_token


def describe_exit(code: int | None) -> str:
    if code is None:
        return "did not exit"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


@contextlib.contextmanager
def _thread_env(threads: int):
    """Children inherit the environment at start: make OpenMP agree with torch's thread cap."""
    keys = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
    saved = {k: os.environ.get(k) for k in keys}
    for k in keys:
        os.environ[k] = str(threads)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def worker_context():
    """``forkserver`` with torch preloaded where available: the server imports torch once and
    every worker (and every replacement of a dead one) forks from it in milliseconds, without
    inheriting the parent's threads. ``spawn`` elsewhere."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        # torch._dynamo: torch.optim imports it on first use, ~3 s per process otherwise.
        ctx.set_forkserver_preload(["torch", "torch._dynamo", "stratum.engine"])
        return ctx
    return multiprocessing.get_context("spawn")


def _stratum_environment() -> dict:
    """STRATUM_* settings of this process: a forkserver's children would otherwise see the
    environment the server started with, not the current one."""
    return {k: v for k, v in os.environ.items() if k.startswith("STRATUM_")}


@contextlib.contextmanager
def _main_module_hidden():
    """Workers need nothing from ``__main__``; without this, multiprocessing re-runs the
    caller's main script in every worker (and fails outright for ``python - <script``)."""
    main = sys.modules.get("__main__")
    saved = {k: main.__dict__[k] for k in ("__spec__", "__file__") if main is not None and k in main.__dict__}
    try:
        if main is not None:
            main.__dict__["__spec__"] = None
            main.__dict__.pop("__file__", None)
        yield
    finally:
        if main is not None:
            main.__dict__.update(saved)


class WorkersFailToStart(StratumError):
    """Worker processes keep dying before they take a run."""


# Consecutive worker deaths with no run finished or lost in between before the bench gives up.
MAX_STARTUP_FAILURES = 3


def run_local(store: Store, session: str, *, workers: int, threads: int, block: tuple, progress,
              log_dir=None, poll_s: float = 0.25, plugins: tuple = ()) -> None:
    ctx = worker_context()
    parent = process_token()
    procs: dict[int, tuple] = {}
    queued = store.session_counts(session)["pending"]
    spawned = 0
    startup_failures = 0
    last_exit = ""

    def start() -> None:
        nonlocal spawned
        log_path = None
        if log_dir is not None:
            from ..paths import writing

            with writing(log_dir, "--log-dir"):
                os.makedirs(log_dir, exist_ok=True)
            log_path = os.path.join(str(log_dir), f"worker-{spawned}.log")
        with _thread_env(threads), _main_module_hidden():
            p = ctx.Process(
                target=worker_main, name=f"stratum-bench-{spawned}",
                args=(str(store.path), session, threads, tuple(block), parent, log_path, _stratum_environment(),
                      tuple(plugins)),
            )
            p.start()
        spawned += 1
        procs[p.pid] = (p, process_token(p.pid))

    for _ in range(min(workers, queued)):
        start()
    last_seen = 0.0
    try:
        while True:
            if procs:
                multiprocessing.connection.wait([p.sentinel for p, _ in procs.values()], timeout=poll_s)
            for pid, (p, token) in list(procs.items()):
                if p.is_alive():
                    continue
                p.join()
                del procs[pid]
                if p.exitcode != 0:
                    lost = store.mark_lost(token, f"worker pid {pid} {describe_exit(p.exitcode)} during the run")
                    startup_failures = 0 if lost else startup_failures + 1
                    last_exit = describe_exit(p.exitcode)
                elif store.session_counts(session)["pending"] > 0:
                    # A worker stops cleanly only when it finds the queue empty. Runs still pending
                    # mean it was not looking at this bench's store: a failed start, not a success.
                    startup_failures += 1
                    last_exit = "exited with code 0 while runs were still pending"
                if startup_failures >= MAX_STARTUP_FAILURES:
                    hint = f"; see the logs in {log_dir}" if log_dir else "; --log-dir DIR keeps their output"
                    raise WorkersFailToStart(
                        f"bench workers keep dying before taking a run (last one {last_exit}){hint}"
                    )
            counts = store.session_counts(session)
            # Keep the pool full while work remains (replaces dead workers).
            while counts["pending"] > 0 and len(procs) < min(workers, counts["pending"]):
                start()
            finished = store.finished_since(session, last_seen)
            if finished:
                last_seen = max(r["finished_at"] for r in finished)
                startup_failures = 0
            progress.update(counts, finished)
            if not procs and counts["pending"] == 0:
                break
    except BaseException:
        _stop(procs)
        for _, token in procs.values():
            store.mark_lost(token, "bench interrupted")
        raise
    # Anything still marked running belongs to a worker that is gone.
    store.release_dead(session, "worker exited without storing its result")


def _stop(procs: dict) -> None:
    for p, _ in procs.values():
        if p.is_alive():
            p.terminate()
    deadline = time.monotonic() + 5
    for p, _ in procs.values():
        p.join(timeout=max(0.1, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join()
