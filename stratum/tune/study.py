"""A tuning study on Optuna: its storage, its objective, its trials and its workers.

One trial trains the base run at the trial's values once per tuning seed, in turn, in the
process that asked for the trial (:func:`stratum.bench.runner.execute_run`). Each epoch it
reports the objective so far to Optuna (``trial.report``, step = seed index x epochs +
epoch) and, when the pruner says so (``trial.should_prune``, Optuna's
:class:`~optuna.pruners.MedianPruner`), ends the run after that epoch through
``record["stopped_reason"] = "pruned"`` (see :func:`stratum.hookspecs.stratum_epoch_end`);
the trial then ends ``PRUNED``. Every run of every trial, pruned ones too, goes into the
stratum results store (``--db``) as a run of the bench ``tune:<study>``.

The study itself lives beside that store in an Optuna journal file, ``<db>.optuna-journal``
(:class:`optuna.storages.JournalStorage` on a :class:`~optuna.storages.journal.JournalFileBackend`:
appends under a file lock, Optuna's recommended storage for several processes on one
filesystem). Workers (local processes or Dask tasks) each run ``study.optimize`` on it with a
share of the trials still to run. Resuming is re-running the same command: trials left
``RUNNING`` by a process that is gone are marked ``FAIL`` and their values asked again
(``study.enqueue_trial``), and only the trials still missing to reach ``--trials``
finished (``COMPLETE`` or ``PRUNED``) run.

Training decisions read validation metrics only: the objective is computed from
``val_acc`` (``val_loss`` for regression), never from the test split.
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import attrs

from ..errors import ConfigError, RunInterrupted, StratumError
from ..hookspecs import hookimpl
from .space import Param, space_key

OBJECTIVES = ("best-val-acc", "mean-val-acc")
SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "none")
DEFAULT_TRIALS = 20


@attrs.define
class TuneJob:
    """Everything a worker needs to run trials of one study (picklable, JSON-safe values).

    ``base``: the run options every trial starts from (canonical, without ``seed``);
    ``params``: the searched options; ``seeds``: the tuning seeds each trial trains on;
    ``bench``: the name of its runs in the results store ``db``.
    """

    db: str
    study: str
    base: dict
    params: list
    seeds: list
    objective: str = "best-val-acc"
    sampler: str = "tpe"
    sampler_seed: int = 0
    pruner: str = "median"
    startup_trials: int = 5
    trials: int = DEFAULT_TRIALS
    timeout: float | None = None
    threads: int = 1
    block: tuple = ()
    plugins: tuple = ()

    @property
    def bench(self) -> str:
        return f"tune:{self.study}"

    @property
    def epochs(self) -> int:
        from ..config import CORE_FIELDS

        return int(self.base.get("epochs", CORE_FIELDS["epochs"].default))

    def identity(self) -> dict:
        """What makes two commands the same study: a study refuses a job that differs."""
        return {"space": space_key(self.params), "base": self.base, "seeds": list(self.seeds),
                "objective": self.objective}


def journal_path(db: Path | str) -> Path:
    """The Optuna journal beside the results store ``db``."""
    db = Path(db)
    return db.with_name(db.name + ".optuna-journal")


def storage(db: Path | str):
    """The study storage of results store ``db`` (an Optuna :class:`~optuna.storages.JournalStorage`)."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(str(journal_path(db))))


def make_sampler(job: TuneJob, offset: int = 0):
    """The job's sampler, seeded with ``sampler_seed + offset`` (each worker and each resumed
    session gets its own ``offset``, so that none repeats another's proposals)."""
    import optuna

    seed = job.sampler_seed + offset
    if job.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if job.sampler == "grid":
        # One seed for every worker and session: GridSampler shuffles its points with the seed and gives
        # trial n the n-th point (later ones: a point no trial has), recording indices into that order.
        # Workers with their own seeds each had their own order, and two of them drew the same point.
        return optuna.samplers.GridSampler({p.name: p.grid for p in job.params}, seed=job.sampler_seed)
    return optuna.samplers.TPESampler(seed=seed)


def make_pruner(job: TuneJob):
    import optuna

    if job.pruner == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=job.startup_trials, n_warmup_steps=2)  # never on epoch 1 alone


def grid_size(params: list[Param]) -> int:
    return math.prod(len(p.choices) for p in params)


def check_sampler(job: TuneJob) -> None:
    """Refuse a grid over a range in one line: a grid needs listed values."""
    if job.sampler == "grid":
        ranges = [p.name for p in job.params if p.grid is None]
        if ranges:
            raise ConfigError(f"--sampler grid needs listed values (e.g. --param {ranges[0]}=0.01,0.02,0.05); "
                              f"{', '.join(ranges)} is a range")


def load_study(job: TuneJob, *, offset: int = 0, create: bool = False):
    """The job's Optuna study (``create``: made when missing, with the job's identity kept in
    its user attributes). Raises :class:`ConfigError` when the stored study was made with
    another search space, base run, seeds or objective."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a failed trial is one line of ours, not a traceback
    kwargs = dict(study_name=job.study, storage=storage(job.db), sampler=make_sampler(job, offset),
                  pruner=make_pruner(job))
    if not create:
        return optuna.load_study(**kwargs)
    check_journal(journal_path(job.db))
    study = optuna.create_study(direction="maximize", load_if_exists=True, **kwargs)
    stored = study.user_attrs.get("stratum")
    identity = _plain(job.identity())
    if stored is None:
        study.set_user_attr("stratum", identity)
    elif stored != identity:
        changed = [k for k in identity if stored.get(k) != identity[k]]
        raise ConfigError(f"study {job.study!r} in {journal_path(job.db)} was made with another "
                          f"{' and '.join(changed)}; give another --study name, or the same options to resume it")
    return study


def check_journal(path: Path) -> None:
    """Refuse, before anything is appended, a journal with a line that is not a JSON object. (Optuna
    skips an unreadable last line as a write cut short, then appends after it, which leaves a
    journal it can no longer read.) Raises :class:`ConfigError`."""
    import json

    if not path.exists():
        return
    try:
        with open(path, "rb") as fh:
            for number, line in enumerate(fh, 1):
                if line.strip() and not isinstance(json.loads(line), dict):
                    raise ValueError("not an object")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not a readable Optuna journal (line {number}: {exc}); move it away or give "
                          "another --db") from None
    except OSError as exc:
        raise ConfigError(f"cannot read the Optuna journal {path}: {exc.strerror or exc}") from None


def _plain(data: Any) -> Any:
    import json

    from ..io import json_safe

    return json.loads(json.dumps(json_safe(data), sort_keys=True))


def release_stale(study) -> int:
    """Trials left ``RUNNING`` by a process that is gone: mark them ``FAIL`` and ask their values
    again (``study.enqueue_trial``). Returns how many."""
    from optuna.trial import TrialState

    from ..store import token_alive

    released = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if token_alive(trial.user_attrs.get("owner")):
            continue
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        study.enqueue_trial(dict(trial.params), user_attrs={"retry_of": trial.number})
        released += 1
    return released


def finished_count(study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


# ---------------------------------------------------------------------------
# The objective
# ---------------------------------------------------------------------------


def score(history: list[dict], objective: str) -> float | None:
    """The objective of one run's ``history`` so far: its best (``best-val-acc``) or mean
    (``mean-val-acc``) validation accuracy over the epochs in percent; for a regression task
    (no accuracy) minus the lowest / mean validation loss. Diverged epochs are left out;
    ``None`` when no epoch has a value."""
    rows = [r for r in history if not r.get("diverged")]
    accs = [r["val_acc"] for r in rows if r.get("val_acc") is not None]
    values = accs or [-r["val_loss"] for r in rows if r.get("val_loss") is not None]
    if not values:
        return None
    return max(values) if objective == "best-val-acc" else sum(values) / len(values)


# The objective of a run without one epoch to show (diverged at once): below any accuracy.
WORST = -1e9


def combine(scores: list) -> float:
    """The trial's objective: the mean over its seeds (a seed without a value counts as WORST)."""
    values = [WORST if s is None else s for s in scores]
    return sum(values) / len(values)


class PruningReporter:
    """A run-scoped plugin: after each epoch, report the objective so far to the trial and end
    the run (``record["stopped_reason"] = "pruned"``) when the pruner says so."""

    def __init__(self, trial, job: TuneJob, seed_index: int, previous: list):
        self.trial, self.job, self.seed_index, self.previous = trial, job, seed_index, previous
        self.pruned = False

    @hookimpl
    def stratum_epoch_end(self, run, epoch, record):
        if self.pruned:
            return
        value = combine([*self.previous, score(run.history, self.job.objective)])
        step = self.seed_index * self.job.epochs + epoch
        self.trial.report(value, step)
        if self.trial.should_prune():
            self.pruned = True
            if epoch < run.config.epochs:
                record["stopped_reason"] = "pruned"


class TrialFailed(StratumError):
    """A run of a trial failed (its error is stored with the run); the trial ends ``FAIL``."""


def trial_plan(job: TuneJob, number: int, params: dict, seed_index: int, seed: int):
    """The results-store row of one run of trial ``number`` (a :class:`~stratum.bench.matrix.RunPlan`)."""
    from ..bench.matrix import RunPlan, run_id

    values = {**job.base, **params, "seed": seed}
    shown = " ".join(f"{k}={_short(v)}" for k, v in params.items())
    group = {"trial": number, **params}
    return RunPlan(run_id({**values, "tune_study": job.study, "tune_trial": number}),
                   number * len(job.seeds) + seed_index, f"trial {number} {shown}", group, {**group, "seed": seed},
                   values)


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def make_objective(job: TuneJob, store):
    """The function ``study.optimize`` calls: train the trial's runs, store them, return the
    objective (raises ``optuna.TrialPruned`` for a pruned trial, :class:`TrialFailed` for a
    failed run)."""
    import optuna

    from ..bench.runner import execute_run
    from ..store import process_token

    owner = process_token()

    def objective(trial) -> float:
        trial.set_user_attr("owner", owner)
        params = {p.name: p.suggest(trial) for p in job.params}
        scores: list = []
        for index, seed in enumerate(job.seeds):
            reporter = PruningReporter(trial, job, index, scores)
            values = {**job.base, **params, "seed": seed}
            outcome = execute_run(values, threads=job.threads, block=job.block, plugins=job.plugins,
                                  callbacks=(("tune", reporter),))
            store.record_run(job.bench, trial_plan(job, trial.number, params, index, seed), outcome)
            if outcome["status"] != "done":
                trial.set_user_attr("error", outcome["error"])
                raise TrialFailed(f"trial {trial.number} seed {seed}: {outcome['error']}")
            scores.append(score(outcome["summary"]["history"], job.objective))
            if reporter.pruned:
                raise optuna.TrialPruned(f"pruned after seed {seed}")
        return combine(scores)

    return objective


def optimize(job: TuneJob, quota: int, offset: int = 0, callbacks: tuple = ()) -> None:
    """Run up to ``quota`` trials of the job's study in this process (``study.optimize``;
    a failed trial is recorded and the next one starts)."""
    from ..store import Store

    if quota <= 0:
        return
    study = load_study(job, offset=offset)
    store = Store(job.db, must_exist=True)
    try:
        study.optimize(make_objective(job, store), n_trials=quota, timeout=job.timeout,
                       catch=(TrialFailed,), callbacks=list(callbacks), gc_after_trial=False)
    finally:
        store.close()


# ---------------------------------------------------------------------------
# Workers
# ---------------------------------------------------------------------------


def split(total: int, workers: int) -> list[int]:
    """``total`` trials shared by ``workers`` (the first ones take one more), zeros left out."""
    return [n for n in (total // workers + (1 if i < total % workers else 0) for i in range(workers)) if n]


def worker_main(job: TuneJob, quota: int, offset: int, environment: dict | None = None) -> None:
    """A local worker process: its share of the trials, its output discarded."""
    import signal
    import warnings

    from ..bench.runner import _die_with_parent, _silence_output, limit_threads

    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    os.environ.update(environment or {})
    _silence_output(None)
    limit_threads(job.threads)
    warnings.simplefilter("ignore")
    optimize(job, quota, offset)


def dask_task(job: TuneJob, quota: int, offset: int) -> int:
    """The task a Dask worker runs: its share of the trials (the journal and the store must be on
    a filesystem the worker sees). Returns the quota."""
    import contextlib
    import io
    import warnings

    from ..bench.runner import limit_threads

    limit_threads(job.threads)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        optimize(job, quota, offset)
    return quota


def _run_processes(job: TuneJob, quotas: list[int], offset: int, watch) -> None:
    import multiprocessing.connection

    from ..bench.local import _main_module_hidden, _stop, _thread_env, _stratum_environment, worker_context

    ctx = worker_context()
    procs = {}
    try:
        for index, quota in enumerate(quotas):
            with _thread_env(job.threads), _main_module_hidden():
                p = ctx.Process(target=worker_main, name=f"stratum-tune-{index}",
                                args=(job, quota, offset + index, _stratum_environment()))
                p.start()
            procs[p.pid] = (p, None)
        while any(p.is_alive() for p, _ in procs.values()):
            multiprocessing.connection.wait([p.sentinel for p, _ in procs.values()], timeout=1.0)
            watch()
    except BaseException:
        _stop(procs)
        raise
    for p, _ in procs.values():
        p.join()


def _run_dask(job: TuneJob, quotas: list[int], offset: int, address: str | None, watch) -> None:
    from distributed import wait

    from ..bench.dask_executor import _client, close_client

    client, cluster = _client(address, len(quotas))
    try:
        futures = [client.submit(dask_task, job, quota, offset + index, pure=False, key=f"stratum-tune-{job.study}-{offset + index}")
                   for index, quota in enumerate(quotas)]
        pending = set(futures)
        while pending:
            try:
                pending = set(wait(pending, timeout=1.0, return_when="FIRST_COMPLETED").not_done)
            except TimeoutError:  # distributed.wait raises when nothing finished in time
                pass
            watch()
        for future in futures:
            future.result()  # a task that raised: its error here
    finally:
        close_client(client, cluster)


@attrs.define
class TuneResult:
    study: Any
    finished: int
    ran: int
    released: int
    seconds: float

    @property
    def best(self):
        from optuna.trial import TrialState

        complete = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        return max(complete, key=lambda t: (t.value, -t.number)) if complete else None


def run_tune(job: TuneJob, *, workers: int = 1, executor: str = "local", address: str | None = None,
             stream=None, quiet: bool = False) -> TuneResult:
    """Run the study of ``job`` until ``job.trials`` trials have finished (``COMPLETE`` or
    ``PRUNED``), resuming what the journal holds. ``workers`` > 1 (or ``executor="dask"``) runs
    them in parallel. Prints one line per finished trial unless ``quiet``. Raises
    :class:`ConfigError` for a study made with other options, :class:`RunInterrupted` on
    Ctrl-C/SIGTERM (finished trials are kept; re-run to resume)."""
    from ..store import Store

    stream = stream or sys.stdout
    check_sampler(job)
    study = load_study(job, create=True)  # a damaged journal or another study's options: refused first
    with Store(job.db) as store:  # the results store (a bad one refused) before any trial
        store.record_bench(job.bench, {"name": job.bench, "recipe": None, "axes": {}, "variants": [],
                                       "fixed": job.base, "settings": {"tune": _plain(job.identity())}}, None)
    released = release_stale(study)
    before = finished_count(study)
    remaining = job.trials - before
    offset = len(study.trials) * 1000  # a resumed session samples afresh
    seen: set[int] = {t.number for t in study.trials if t.state.is_finished()}
    started = time.perf_counter()

    def watch(*_args) -> None:
        if quiet:
            return
        for trial in study.get_trials(deepcopy=False):
            if trial.state.is_finished() and trial.number not in seen:
                seen.add(trial.number)
                print(trial_line(trial), file=stream, flush=True)

    if not quiet:
        note = f" ({released} left running by a stopped process asked again)" if released else ""
        print(f"study {job.study!r}: {before} of {job.trials} trials finished, {max(remaining, 0)} to run on "
              f"{workers} worker(s), seeds {','.join(map(str, job.seeds))}{note}; journal {journal_path(job.db)}",
              file=stream, flush=True)
    if remaining > 0:
        quotas = split(remaining, workers)
        from ..bench.api import _Stop, _stop_on_signals

        try:
            with _stop_on_signals():
                if executor == "dask":
                    _run_dask(job, quotas, offset, address, watch)
                elif len(quotas) == 1:
                    from ..bench.runner import limit_threads

                    limit_threads(job.threads)
                    optimize(job, quotas[0], offset, callbacks=(watch,))
                else:
                    _run_processes(job, quotas, offset, watch)
        except (_Stop, KeyboardInterrupt) as exc:
            import signal

            signum = exc.signum if isinstance(exc, _Stop) else signal.SIGINT
            release_stale(study)
            raise RunInterrupted(f"tune interrupted by {signal.Signals(signum).name}: {finished_count(study)} of "
                                 f"{job.trials} trials finished; re-run the same command to resume", signum) from None
        release_stale(study)  # a worker that died left its trial running
        watch()
    return TuneResult(study, finished_count(study), finished_count(study) - before, released,
                      time.perf_counter() - started)


# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------


def trial_line(trial) -> str:
    value = "-" if trial.value is None else f"{trial.value:.4g}"
    params = " ".join(f"{k}={_short(v)}" for k, v in trial.params.items())
    error = f"  ({trial.user_attrs['error']})" if trial.state.name == "FAIL" and trial.user_attrs.get("error") else ""
    return f"trial {trial.number:>3}  {trial.state.name.lower():<8}  {value:>8}  {params}{error}"


def trials_table(study, best=None) -> str:
    """Every trial: number, state, objective, values; the best one marked."""
    lines = [f"{'trial':>9}  {'state':<8}  {'value':>8}  values"]
    for trial in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        mark = "  <- best" if best is not None and trial.number == best.number else ""
        lines.append(trial_line(trial) + mark)
    return "\n".join(lines) + "\n"


def toml_value(value: Any) -> str:
    """A TOML literal for a run option value (text, number, boolean or a list of them)."""
    import json

    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else json.dumps(str(value))
    if isinstance(value, int):
        return str(value)
    return json.dumps(str(value))


def best_toml(job: TuneJob, best) -> str:
    """The run TOML of the best trial: the base options with its values (``stratum run --config``)."""
    values = {**job.base, **best.params}
    lines = [f"# stratum tune: study {job.study!r}, trial {best.number}, {job.objective} {best.value:.6g} "
             f"over seeds {','.join(map(str, job.seeds))}"]
    lines += [f"{key} = {toml_value(value)}" for key, value in values.items() if value is not None]
    return "\n".join(lines) + "\n"


def write_best(path: Path, job: TuneJob, best) -> None:
    from ..io import atomic_write_bytes

    atomic_write_bytes(Path(path), best_toml(job, best).encode(), "--output")
