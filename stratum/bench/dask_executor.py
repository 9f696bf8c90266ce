"""Running the matrix on a Dask distributed cluster (``--executor dask``).

Without ``--address`` a ``LocalCluster`` of ``--workers`` single-threaded
worker processes is started for the bench and shut down after it. With
``--address tcp://HOST:8786`` the runs go to an existing scheduler; every
worker needs stratum (and the plugins the bench uses) installed.

Only this process writes the store: a task trains one run and returns its
outcome, so workers need no shared filesystem. At most as many runs are in
flight as the cluster has worker threads, which keeps the store's ``running``
count honest. A worker that dies makes Dask retry the task elsewhere; a task
that keeps killing workers ends as ``lost``.
"""

from __future__ import annotations

import contextlib
import io
import logging

from ..errors import ConfigError, StratumError
from ..io import json_safe
from .runner import execute_run, limit_threads
from .store import Store, process_token


def remote_run(values: dict, threads: int, block: tuple, plugins: tuple = ()) -> dict:
    """The task a Dask worker executes: one run, its output swallowed, a JSON-safe outcome."""
    import warnings

    limit_threads(threads)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        outcome = execute_run(values, threads=threads, block=block, plugins=plugins)
    return json_safe(outcome)


def _client(address: str | None, workers: int):
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError("--executor dask needs Dask distributed: pip install 'stratum[distributed]'") from None
    if address:
        try:
            return Client(address, timeout="20s"), None
        except (OSError, TimeoutError) as exc:
            raise StratumError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
        except ValueError as exc:
            raise ConfigError(f"--address {address!r}: {exc}") from None
    cluster = LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
        silence_logs=logging.ERROR,
    )
    return Client(cluster), cluster


def run_dask(store: Store, session: str, *, address: str | None, workers: int, threads: int, block: tuple, progress,
             plugins: tuple = ()) -> None:
    from distributed import as_completed

    client, cluster = _client(address, workers)
    owner = process_token()
    try:
        slots = max(1, sum(client.nthreads().values()))
        queue = store.queued(session)
        in_flight: dict = {}
        completed = as_completed()

        def submit(run_id: str, values: dict) -> None:
            if not store.claim_specific(run_id, session, owner):
                return
            future = client.submit(remote_run, values, threads, tuple(block), tuple(plugins), key=f"stratum-run-{run_id}-{session[:8]}",
                                   pure=False, retries=0)
            in_flight[future] = run_id
            completed.add(future)

        while queue and len(in_flight) < slots:
            submit(*queue.pop(0))
        progress.update(store.session_counts(session))
        last_seen = 0.0
        for future in completed:
            run_id = in_flight.pop(future)
            try:
                outcome = future.result()
            except Exception as exc:  # KilledWorker, a lost connection: the run did not finish
                outcome = {"status": "lost", "summary": None, "error": f"dask: {type(exc).__name__}: {exc}"[:2000],
                           "duration_s": None}
            store.finish(run_id, owner, outcome)
            if queue:
                submit(*queue.pop(0))
            finished = store.finished_since(session, last_seen)
            if finished:
                last_seen = max(r["finished_at"] for r in finished)
            progress.update(store.session_counts(session), finished)
    except BaseException:
        store.mark_lost(owner, "bench interrupted")
        raise
    finally:
        close_client(client, cluster)


def close_client(client, cluster) -> None:
    """Close a Dask client and the local cluster :func:`_client` started for it (if any), quietly."""
    with contextlib.suppress(Exception):
        client.close()
    if cluster is not None:
        with contextlib.suppress(Exception):
            cluster.close()
