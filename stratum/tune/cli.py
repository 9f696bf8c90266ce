"""The ``stratum tune`` command: a hyper-parameter search on Optuna over any run option.

Its flags: the tuner's own (``--param``, ``--seeds``, ``--trials``, the sampler, pruner,
workers, store and output), plus every ``stratum run`` option, which sets the base run
every trial starts from (``--config RUN.toml`` too; flags win over it).
"""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import ConfigError, StratumError
from ..options import PROCESSES_MAX
from ..paths import UserPath
from .space import NOT_TUNABLE

DEFAULT_DB = Path("tune.sqlite")
# Tuning seeds start here, away from the evaluation seeds a bench counts from 0.
FIRST_SEED = 100
DEFAULT_SEEDS = "1"


def complete_param(ctx, param, incomplete):
    """Shell completion of ``--param NAME=``: the run options a search can take."""
    from ..cli import complete_values, get_pm
    from ..options import option_meta
    from ..bench.matrix import known_fields

    if "=" in incomplete:
        return []
    try:
        fields = known_fields(get_pm(ctx).registries)
    except Exception:  # completion never fails loudly
        return []
    names = sorted(n for n, f in fields.items() if n not in NOT_TUNABLE and not option_meta(f)["multiple"])
    return complete_values([f"{n}=" for n in names], incomplete.replace("-", "_"))


def search_options(prefix: str = "") -> list[click.Option]:
    """The options of a search, shared by ``stratum tune`` and ``stratum bench --tune``
    (``prefix``: ``"tune-"`` for the bench's)."""
    from .study import OBJECTIVES, PRUNERS, SAMPLERS

    p = f"--{prefix}"
    n = prefix.replace("-", "_")
    return [
        click.Option([f"{p}trials", f"{n}trials"], type=click.IntRange(min=1, max=100_000), default=None,
                     help="Trials to finish (complete or pruned). [default: 20; with --sampler grid: the grid's size]"),
        click.Option([f"{p}objective", f"{n}objective"], type=click.Choice(OBJECTIVES), default="best-val-acc",
                     show_default=True,
                     help="What a trial maximises, mean over its seeds: the best or the mean validation accuracy "
                          "over the epochs (minus the validation loss for regression). Never the test set."),
        click.Option([f"{p}sampler", f"{n}sampler"], type=click.Choice(SAMPLERS), default=None,
                     help="Optuna sampler: tpe (TPESampler), random (RandomSampler), grid (GridSampler: listed values "
                          "only). [default: grid when every searched option lists its values, else tpe]"),
        click.Option([f"{p}sampler-seed", f"{n}sampler_seed"], type=click.IntRange(min=0, max=2**31 - 1), default=0,
                     show_default=True, help="Seed of the sampler (each worker and resumed session adds its own offset)."),
        click.Option([f"{p}pruner", f"{n}pruner"], type=click.Choice(PRUNERS), default="median", show_default=True,
                     help="median: Optuna's MedianPruner stops a trial whose objective so far is below the median of "
                          "earlier trials at the same epoch; none: every trial runs to the end."),
        click.Option([f"{p}startup-trials", f"{n}startup_trials"], type=click.IntRange(min=0, max=100_000), default=5,
                     show_default=True, help="Trials that finish before the median pruner prunes any."),
        click.Option([f"{p}timeout", f"{n}timeout"], type=click.FloatRange(min=0, min_open=True), default=None,
                     help="Stop starting trials after this many seconds (per worker). [default: none]"),
    ]


def _tune_params() -> list[click.Parameter]:
    return [
        click.Option(["--param", "param"], multiple=True, metavar="NAME=SPEC", shell_complete=complete_param,
                     help="A run option to search (repeatable): log:LO:HI (log-uniform), LO:HI[:STEP] (uniform), "
                          "int:LO:HI[:STEP], or A,B,C (one of these)."),
        click.Option(["--seeds"], default=DEFAULT_SEEDS, show_default=True,
                     help="Tuning seeds: each trial trains once per seed, the objective is their mean (a count N: seeds 100 to "
                          "100+N-1; a list 100,101; a range 100-102)."),
        *search_options(),
        click.Option(["--config", "config_file"], type=UserPath(dir_okay=False), default=None,
                     help="The base run as a TOML file (as `stratum run --config` takes); flags given here win over it."),
        click.Option(["--db"], type=click.STRING, default=None,
                     help=f"SQLite results store for every trial's runs; the Optuna study is kept beside it in "
                          f"DB.optuna-journal. [default: {DEFAULT_DB}]"),
        click.Option(["--study"], default="tune", show_default=True,
                     help="Study name (re-running with the same name and options resumes it)."),
        click.Option(["--output", "-o", "output"], type=UserPath(dir_okay=False), default=None,
                     help="Write the best configuration here as a run TOML (for `stratum run --config FILE`)."),
        click.Option(["--workers"], type=click.IntRange(min=1, max=PROCESSES_MAX), default=1, show_default=True,
                     help="Trials in parallel (processes, or Dask tasks); each gets cores/workers torch threads."),
        click.Option(["--executor"], type=click.Choice(["local", "dask"]), default="local", show_default=True,
                     help="local processes, or Dask distributed (the journal and the store must be on a filesystem "
                          "the Dask workers share)."),
        click.Option(["--address"], default=None, help="Dask scheduler address; default: a local cluster."),
        click.Option(["--quiet", "-q"], is_flag=True, default=False, help="Only the final lines."),
    ]


def build_tune_command(ctx: click.Context) -> click.Command:
    from ..bench.cli import add_run_options
    from ..cli import get_pm
    from ..grouped_help import GroupedCommand, run_choices

    pm = get_pm(ctx)
    params = _tune_params()
    run_names, run_fields = add_run_options(pm, params, skip=("seed",))  # the tuning seeds are --seeds
    return GroupedCommand(
        "tune", params=params, callback=_make_callback(run_names),
        help="Search run options with Optuna (TPE, random or grid; median pruning), training each trial on the tuning "
             "seeds and maximising a validation metric; prints the trials and writes the best run TOML. Any "
             "`stratum run` option given here sets the base run. Re-running the same command resumes.",
        context_settings={"max_content_width": 100},
        fields={name: run_fields[name] for name in run_names}, registries=lambda: pm.registries,
        choices=run_choices, own_title="Tune options",
    )


def base_values(explicit: dict, config_file: Path | None) -> dict:
    """The base run's options: the ``--config`` TOML's, then the flags'."""
    from ..config import load_toml

    values = dict(load_toml(config_file)) if config_file is not None else {}
    values = {k.replace("-", "_"): v for k, v in values.items()}
    values.update(explicit)
    return values


def tuning_seeds(value, flag: str) -> list[int]:
    """Like a bench's ``--seeds`` (:func:`stratum.bench.spec.seeds_axis`), except that a count N
    means the N seeds from :data:`FIRST_SEED` on (100, 101 ...), away from the evaluation seeds."""
    from ..bench.spec import seeds_axis

    seeds = seeds_axis(value, flag)
    counted = isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit())
    return [FIRST_SEED + s for s in seeds] if counted else seeds


def make_job(pm, *, base: dict, param_texts, seeds, db, study: str, workers: int, options: dict,
             block: tuple = (), plugins: tuple = (), flag: str = "--param", defaults: bool = False):
    """A checked :class:`~stratum.tune.study.TuneJob` from command-line values, before any trial:
    the base run validated like a bench's runs (:func:`stratum.bench.matrix.plan_runs`), the
    space parsed and every searched option known, valid and read by the run. Raises ConfigError."""
    import warnings

    from ..bench.matrix import known_fields, plan_runs
    from ..bench.runner import threads_per_worker
    from ..bench.spec import BenchSpec
    from .space import check_read, parse_space
    from .study import DEFAULT_TRIALS, TuneJob, check_sampler, grid_size

    registries = pm.registries
    fields = known_fields(registries)
    params = parse_space(param_texts, fields, flag=flag, defaults=defaults, registries=registries)
    for p in params:
        if p.name in base:
            raise ConfigError(f"{flag} {p.name}: {p.name!r} is also given a fixed value; give one")
    seeds = tuning_seeds(seeds, "--seeds" if flag == "--param" else "--tune-seeds")
    base = dict(base)
    threads = base.pop("threads", None)
    plans = plan_runs(BenchSpec(fixed=base, axes={"seed": seeds[:1]}), registries,
                      warn=lambda m: warnings.warn(m, stacklevel=2))
    base = {k: v for k, v in plans[0].values.items() if k not in ("seed", "threads")}
    check_read(params, base, registries, flag=flag)
    sampler = options.get("sampler") or ("grid" if all(p.grid is not None for p in params) else "tpe")
    trials = options.get("trials")
    job = TuneJob(db=str(db), study=study, base=base, params=params, seeds=seeds,
                  objective=options.get("objective") or "best-val-acc", sampler=sampler,
                  sampler_seed=options.get("sampler_seed") or 0, pruner=options.get("pruner") or "median",
                  startup_trials=5 if options.get("startup_trials") is None else options["startup_trials"],
                  trials=DEFAULT_TRIALS, timeout=options.get("timeout"),
                  threads=int(threads) if threads else threads_per_worker(workers), block=tuple(block),
                  plugins=tuple(plugins))
    check_sampler(job)
    if sampler == "grid":
        size = grid_size(params)
        job.trials = size if trials is None else min(trials, size)
    elif trials is not None:
        job.trials = trials
    return job


def _make_callback(run_names: list[str]):
    @click.pass_context
    def callback(ctx, **params):
        from ..bench.store import results_db_path
        from ..cli import explicit_values, get_pm
        from ..paths import probe_output
        from .study import journal_path, run_tune, trials_table, write_best

        pm = get_pm(ctx)
        if params.get("address") and params["executor"] != "dask":
            raise ConfigError("--address needs --executor dask")
        db = results_db_path(params["db"] if params.get("db") is not None else DEFAULT_DB)
        base = base_values(explicit_values(ctx, run_names), params.get("config_file"))
        root = ctx.find_root()
        job = make_job(pm, base=base, param_texts=params["param"], seeds=params["seeds"], db=db,
                       study=params["study"], workers=params["workers"], options=params,
                       block=tuple(root.params.get("block_plugin", ()) or ()),
                       plugins=tuple(getattr(pm, "local_plugins", {})))
        probe_output(db, "file", "--db")
        probe_output(journal_path(db), "file", "--db (its Optuna journal)")
        if params.get("output") is not None:
            probe_output(params["output"], "file", "--output")
        result = run_tune(job, workers=params["workers"], executor=params["executor"], address=params.get("address"),
                          quiet=params["quiet"])
        best = result.best
        if not params["quiet"]:
            click.echo(trials_table(result.study, best), nl=False)
        counts = {}
        for trial in result.study.trials:
            counts[trial.state.name.lower()] = counts.get(trial.state.name.lower(), 0) + 1
        click.echo(f"study {job.study!r}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
                   + f"; {result.ran} finished now in {result.seconds:.1f} s; runs in {db} (bench {job.bench!r})")
        if best is None:
            raise StratumError(f"no trial of study {job.study!r} completed; see `stratum report {db} --bench "
                               f"{job.bench} --failures`")
        shown = ", ".join(f"{k}={v!r}" for k, v in best.params.items())
        click.echo(f"best: trial {best.number}, {job.objective} {best.value:.4g}: {shown}")
        if params.get("output") is not None:
            write_best(params["output"], job, best)
            click.echo(f"wrote {params['output']} (run it: stratum run --config {params['output']})")
        if result.finished < job.trials:
            click.echo(f"stratum: warning: {result.finished} of {job.trials} trials finished (failed ones do not "
                       "count); re-run the same command to run the rest", err=True)
        return 0

    return callback
