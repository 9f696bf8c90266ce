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
from .job import make_job
from .options import search_options
from .space import NOT_TUNABLE

DEFAULT_DB = Path("tune.sqlite")
DEFAULT_SEEDS = "100"


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


def _tune_params() -> list[click.Parameter]:
    return [
        click.Option(["--param", "param"], multiple=True, metavar="NAME=SPEC", shell_complete=complete_param,
                     help="A run option to search (repeatable): log:LO:HI (log-uniform), LO:HI[:STEP] (uniform), "
                          "int:LO:HI[:STEP], or A,B,C (one of these)."),
        click.Option(["--seeds"], default=DEFAULT_SEEDS, show_default=True,
                     help="Tuning seeds: each trial trains once per seed, the objective is their mean (one seed, a list 100,101 "
                          "or a range 100-102; a single number is a seed, not a count)."),
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
