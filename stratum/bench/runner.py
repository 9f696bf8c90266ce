"""Running one bench run, and the loop of a local worker process."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
import traceback

from ..errors import StratumError

_PM_CACHE: dict = {}


def cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    """Split the cores between workers so that N workers never oversubscribe them."""
    cores = cpu_count() if cores is None else cores
    return max(1, cores // max(1, workers))


def limit_threads(threads: int) -> None:
    """Cap torch's (and OpenMP's) thread pools in this process."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["MKL_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # only settable before any inter-op work
        torch.set_num_interop_threads(1)


def plugin_manager(block: tuple = (), plugins: tuple = ()):
    """One plugin manager per process (and per block list and local plugins), reused across runs.

    ``plugins`` are local plugin specs (``stratum --plugin``) the bench process loaded;
    raises ConfigError when one cannot be loaded here.
    """
    key = (tuple(sorted(block)), tuple(plugins))
    if key not in _PM_CACHE:
        from ..plugin_manager import create_plugin_manager

        _PM_CACHE[key] = create_plugin_manager(block=block, plugins=plugins)
    return _PM_CACHE[key]


def execute_run(values: dict, *, threads: int, block: tuple = (), plugins: tuple = (),
                callbacks: tuple = ()) -> dict:
    """Train one run in this process. Never raises for a failed run: returns its outcome.

    ``callbacks``: ``(name, object)`` pairs registered as run-scoped plugins of this run
    (``stratum tune``'s pruning reporter), as ``stratum.fit(callbacks=...)`` does.

    Outcome: ``{"status": "done" | "failed", "summary": dict | None,
    "error": str | None, "duration_s": float}``. A diverged run is ``done``
    with ``summary["diverged"]`` set: divergence is a result, not a failure.
    """
    from ..config import make_config, plugin_option_fields
    from ..engine import Trainer

    started = time.perf_counter()
    try:
        pm = plugin_manager(block, plugins)
        config = make_config({**values, "threads": threads, "quiet": True},
                             plugin_fields=plugin_option_fields(pm.registries.all()))
        from ..io import json_safe

        summary = json_safe(Trainer(pm, extra_plugins=list(callbacks)).run(config))
        return {"status": "done", "summary": summary, "error": None, "duration_s": time.perf_counter() - started}
    except StratumError as exc:
        error = f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # a bug in a plugin or in stratum: record it, keep the bench going
        frames = traceback.extract_tb(exc.__traceback__)
        where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
        error = f"internal error {type(exc).__name__}: {exc}{where}"
    return {"status": "failed", "summary": None, "error": " ".join(error.split())[:2000],
            "duration_s": time.perf_counter() - started}


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this worker when its parent dies (no orphans finishing stale work).

    Under ``forkserver`` the parent is the fork server, which itself exits when the bench
    process does, so the chain holds."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass


def _silence_output(log_path: str | None) -> None:
    """Runs print tables and progress; in a worker that would garble the bench display."""
    target = os.open(log_path or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(target, 1)
    os.dup2(target, 2)
    os.close(target)


def worker_main(db_path: str, session: str, threads: int, block: tuple, parent: str, log_path: str | None,
                environment: dict | None = None, plugins: tuple = ()) -> None:
    """A local worker: claim the next pending run of the session, run it, store it, repeat.

    Stops when the queue is empty or the bench process (``parent``, a process token) is gone.
    """
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    os.environ.update(environment or {})
    _silence_output(log_path)
    limit_threads(threads)
    import warnings

    warnings.simplefilter("ignore")
    from .store import Store, process_token, token_alive

    store = Store(db_path, must_exist=True)  # never a new empty store: the bench's is the only queue
    owner = process_token()
    try:
        while token_alive(parent):
            claimed = store.claim(session, owner)
            if claimed is None:
                break
            run_id, values = claimed
            outcome = execute_run(values, threads=threads, block=block, plugins=plugins)
            store.finish(run_id, owner, outcome)
    finally:
        store.close()
