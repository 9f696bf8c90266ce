"""The ``stratum bench`` command.

Its flags: the bench's own (axes, workers, executor, store), plus every
``stratum run`` option, which is then fixed for all runs of the bench.
Precedence, lowest first: ``--recipe`` < ``--config BENCH.toml`` < flags.
"""

from __future__ import annotations

from pathlib import Path

import click

from ..components import KIND_TABLE
from ..config import CORE_FIELDS, plugin_option_fields
from ..errors import ConfigError
from ..options import PROCESSES_MAX, flag_name
from ..paths import UserPath, probe_output
from .matrix import RESERVED
from .spec import NAMED_AXES, BenchSpec, axis_values, parse_assignment, seeds_axis, spec_from_toml
from .store import results_db_path

DEFAULT_DB = Path("bench.sqlite")


def _bench_params() -> list[click.Parameter]:
    from ..tune.options import search_options
    from .recipes import SCALES, all_recipes

    recipes = all_recipes()

    opts = [
        click.Option(["--config", "config_file"], type=UserPath(dir_okay=False), default=None,
                     help="Bench TOML ([bench], [axes], [run], [[variant]]); flags given here win over it."),
        click.Option(["--recipe"], type=click.Choice(sorted(recipes)), default=None,
                     help="A built-in study: " + "; ".join(f"{k}: {v.summary}" for k, v in sorted(recipes.items())) + "."),
        click.Option(["--scale"], type=click.Choice(SCALES), default=None, help="Recipe scale. [default: small]"),
        # A plain string: results_db_path() sees exactly what was typed ('', ':memory:', 'dir/', '~/b.sqlite').
        click.Option(["--db"], type=click.STRING, default=None,
                     help=f"SQLite results store (a file). [default: {DEFAULT_DB}, relative to the working directory]"),
        click.Option(["--name", "bench_name"], default=None, help="Bench name inside the store. [default: the recipe or 'bench']"),
        *_kind_axes(),
        click.Option(["--seeds"], default=None, help="Axis: seeds: a count N (0..N-1), a list 0,3,7 or a range 0-9."),
        click.Option(["--axis"], multiple=True, metavar="KEY=V1,V2", help="Axis over any run option (repeatable).",
                     shell_complete=_complete_assignment(listed=True)),
        click.Option(["--set", "fixed"], multiple=True, metavar="KEY=VALUE", help="Fix any run option for every run (repeatable).",
                     shell_complete=_complete_assignment(listed=False)),
        click.Option(["--workers"], type=click.IntRange(min=1, max=PROCESSES_MAX), default=None,
                     help="Parallel runs. [default: the number of cores; each worker gets cores/workers torch threads]"),
        click.Option(["--executor"], type=click.Choice(["local", "dask", "ray"]), default=None,
                     help="local (a process pool, the default) or dask (Dask distributed; ray is not built in)."),
        click.Option(["--address"], default=None, help="Dask scheduler address (e.g. tcp://host:8786); default: a local cluster."),
        click.Option(["--dry-run"], is_flag=True, default=False, help="Print the runs of the matrix and exit."),
        click.Option(["--report/--no-report"], default=True, help="Print the comparison table at the end. [default: on]"),
        click.Option(["--baseline"], default=None, help="Report: baseline for speed-ups (KEY=VALUE or a label). [default: strategy=sgd]"),
        click.Option(["--plot", "plot_dir"], type=UserPath(file_okay=False), default=None,
                     help="Also write the report's PNG plots here. [default: none; a --recipe writes DB-STEM-plots/ "
                          "beside the store]"),
        click.Option(["--log-dir"], type=UserPath(file_okay=False), default=None,
                     help="Keep each local worker's output in this directory (default: discarded)."),
        click.Option(["--quiet", "-q"], is_flag=True, default=False, help="Only the final lines."),
        click.Option(["--tune"], multiple=True, metavar="NAME[=SPEC]",
                     help="Tune this run option per arm on --tune-seeds first (stratum tune's --param specs; a bare lr "
                          "searches 0.001-0.3 in half-decades), then run the evaluation seeds at the chosen values "
                          "(repeatable; bare names may be comma-separated)."),
        click.Option(["--tune-seeds"], default=None,
                     help="With --tune: the tuning seeds, never evaluation seeds (one seed, a list 100,101 or a range "
                          "100-102; a single number is a seed, not a count). [default: 100]"),
        *search_options("tune-"),
    ]
    return opts


def _kind_of(ctx: click.Context, option: str) -> str | None:
    """The component kind a run option names (``strategy`` -> ``"strategy"``), or ``None``."""
    from ..cli import get_pm
    from ..options import option_meta
    from .matrix import known_fields

    field = known_fields(get_pm(ctx).registries).get(option)
    return (option_meta(field) or {}).get("kind") if field is not None else None


def _complete_axis_names(flag: str):
    """Shell completion of a named axis (``--strategies sgd,fo`` -> ``sgd,focus``)."""

    def complete(ctx, param, incomplete):
        from ..cli import complete_values, component_names

        kind = _kind_of(ctx, NAMED_AXES[flag])
        return complete_values(component_names(ctx, kind), incomplete, listed=True) if kind else []

    return complete


def _complete_assignment(*, listed: bool):
    """Shell completion of ``KEY=VALUE`` (``--set``) or ``KEY=V1,V2`` (``--axis``, ``listed``): run
    option names before the ``=``; after it, component names or choices for options that have them."""

    def complete(ctx, param, incomplete):
        from ..cli import complete_values, get_pm, option_completer
        from ..options import option_meta
        from .matrix import known_fields

        try:
            fields = known_fields(get_pm(ctx).registries)
        except Exception:  # completion never fails loudly
            return []
        if "=" not in incomplete:
            names = sorted(name for name in fields if name not in RESERVED)
            return complete_values([f"{name}=" for name in names], incomplete.replace("-", "_"))
        key, value = incomplete.split("=", 1)
        meta = dict(option_meta(fields[key]) or {}) if key.replace("-", "_") in fields else {}
        if not meta:
            return []
        meta["multiple"] = listed or meta.get("multiple")
        completer = option_completer(meta)
        items = completer(ctx, param, value) if completer else []
        for item in items:
            item.value = f"{key}={item.value}"
        return items

    return complete


def _kind_axes() -> list[click.Option]:
    """``--strategies``, ``--models`` ...: one axis per component kind with one in KIND_TABLE."""
    axes = []
    for row in KIND_TABLE:
        if not row.axis:
            continue
        names = row.aliases[0].replace("_", " ")
        if row.core:
            text = f"Axis: {names} (--{row.selected_by}), comma-separated."
        else:
            text = (f"Axis: {names} (--{row.selected_by.replace('_', '-')}), comma-separated; multiplies only "
                    "runs whose components read that option.")
        axes.append(click.Option([f"--{row.axis}"], default=None, help=text,
                                 shell_complete=_complete_axis_names(row.axis)))
    return axes


def add_run_options(pm, params: list, skip: tuple = ()) -> tuple[list[str], dict]:
    """Append to ``params`` a flag for every run option (core and plugin) except the reserved ones,
    those in ``skip`` and those whose flag ``params`` already has; returns ``(their names, every run
    option field by name)``. Shared by the commands that take run options (``bench``, ``tune``)."""
    from ..cli import click_option

    taken = {opt for p in params for opt in p.opts}
    own = {p.name for p in params}
    run_fields = {**CORE_FIELDS, **plugin_option_fields(pm.registries.all())}
    run_names = []
    for name, field in run_fields.items():
        if name in RESERVED or name in skip or flag_name(field) in taken or name in own:
            continue
        params.append(click_option(field))
        run_names.append(name)
    return run_names, run_fields


def build_bench_command(ctx: click.Context) -> click.Command:
    from ..cli import get_pm

    pm = get_pm(ctx)
    params = _bench_params()
    run_names, run_fields = add_run_options(pm, params)
    return _grouped_bench_command(pm, params, run_names, run_fields)


def _grouped_bench_command(pm, params, run_names: list[str], run_fields: dict) -> click.Command:
    """``stratum bench`` with help grouped like ``stratum run --help`` (:mod:`stratum.grouped_help`):
    the bench's own options, the core groups, and the components the bench's runs would use."""
    from ..grouped_help import GroupedCommand

    return GroupedCommand(
        "bench", params=params, callback=_make_callback(run_names),
        help="Run a matrix of strategies x regressors x feature sets x models x data sets x seeds in parallel, "
             "storing every result in an SQLite file (re-running resumes). Any `stratum run` option given here "
             "is fixed for every run.",
        context_settings={"max_content_width": 100},
        fields={name: run_fields[name] for name in run_names}, registries=lambda: pm.registries,
        choices=_help_choices(run_names, pm), own_title="Bench options",
    )


def _help_choices(run_names: list[str], pm):
    """For help: the name-valued options a bench command line sets, with every value its runs take
    (its recipe < its --config TOML < its flags, merged as the bench does)."""

    def choices(values: dict, fields) -> dict[str, list]:
        from ..grouped_help import name_valued
        from .matrix import known_fields
        from .recipes import recipe_spec

        explicit = {name: values[name] for name in run_names if values.get(name) not in (None, [])}
        cli = cli_spec(values, explicit)
        config_file = values.get("config_file")
        toml = spec_from_toml(Path(config_file), known_fields(pm.registries)) if config_file else BenchSpec()
        recipe = cli.recipe or toml.recipe
        scale = cli.settings.get("scale") or toml.settings.get("scale") or "small"
        spec = (recipe_spec(recipe, scale) if recipe else BenchSpec()).merged(toml).merged(cli)
        chosen: dict[str, list] = {}
        for name in name_valued(known_fields(pm.registries)):
            taken = list(spec.axes.get(name, []))
            taken += [spec.fixed[name]] if name in spec.fixed else []
            taken += [v["values"][name] for v in spec.variants if name in v["values"]]
            if taken:
                chosen[name] = list({repr(v): v for v in taken}.values())
        return chosen

    return choices


def cli_spec(params: dict, explicit_run: dict) -> BenchSpec:
    spec = BenchSpec(name=params.get("bench_name"), recipe=params.get("recipe"))
    for flag, option in NAMED_AXES.items():
        value = params.get(flag)
        if value is None:
            continue
        spec.axes[option] = seeds_axis(value, "--seeds") if option == "seed" else axis_values(value, f"--{flag}")
    named = {option: flag for flag, option in NAMED_AXES.items() if params.get(flag) is not None}
    for text in params.get("axis") or ():
        key, value = parse_assignment(text, "--axis")
        if key in named:  # one option, two axes: neither silently wins
            raise ConfigError(f"--axis {key}=... and --{named[key]} both give an axis over {key!r}; keep one")
        if key in spec.axes:
            raise ConfigError(f"--axis {key} is given twice; list every value in one --axis {key}=V1,V2")
        spec.axes[key] = seeds_axis(value, "--axis seed") if key == "seed" else axis_values(value, f"--axis {key}")
    fixed = dict(explicit_run)
    for text in params.get("fixed") or ():
        key, value = parse_assignment(text, "--set")
        fixed[key] = value
    for key in fixed:
        if key in spec.axes:
            raise ConfigError(f"option {key!r} is given both as an axis and as a fixed value")
    spec.fixed = fixed
    for key in ("workers", "executor", "address"):
        if params.get(key) is not None:
            spec.settings[key] = params[key]
    if params.get("scale") is not None:
        spec.settings["scale"] = params["scale"]
    return spec


def _plan_values(plans, key: str | None) -> set:
    """What ``key`` takes across the planned runs (as :func:`stratum.report.compare.group_values` does
    across stored configurations); with ``key=None``, the keys that exist."""
    if key is None:
        return {"strategy"} | {k for p in plans for k in (*p.group, *p.values)}
    values = (p.strategy if key == "strategy" and key not in p.group else p.group.get(key, p.values.get(key))
              for p in plans)
    return {str(v) for v in values if v is not None}


def _make_callback(run_names: list[str]):
    @click.pass_context
    def callback(ctx, **params):
        from ..cli import explicit_values, get_pm
        from .api import run_bench
        from .matrix import plan_runs
        from .recipes import SCALES, all_recipes, recipe_spec

        pm = get_pm(ctx)
        cli = cli_spec(params, explicit_values(ctx, run_names))
        from .matrix import known_fields

        toml = (spec_from_toml(params["config_file"], known_fields(pm.registries),
                               choices={"recipe": tuple(sorted(all_recipes())), "scale": SCALES})
                if params.get("config_file") else BenchSpec())
        recipe = cli.recipe or toml.recipe
        scale = cli.settings.get("scale") or toml.settings.get("scale") or "small"
        spec = recipe_spec(recipe, scale) if recipe else BenchSpec()
        spec = spec.merged(toml).merged(cli)
        from .recipes import check_seeds

        check_seeds(spec)
        if not spec.axes and not spec.variants and not spec.fixed and not recipe:
            raise ConfigError("nothing to bench: give axes (e.g. --strategies sgd --seeds 5), --config FILE or --recipe NAME")
        settings = spec.settings
        db = results_db_path(params["db"] if params.get("db") is not None else settings.get("db", DEFAULT_DB))
        block = tuple(ctx.find_root().params.get("block_plugin", ()) or ())
        if params.get("tune_seeds") is not None and not params.get("tune"):
            raise ConfigError("--tune-seeds needs --tune NAME")
        if params.get("tune") and not params["dry_run"]:
            from ..tune.arms import tune_then_evaluate

            probe_output(db, "file", "--db")
            options = {k[len("tune_"):]: v for k, v in params.items() if k.startswith("tune_") and k != "tune_seeds"}
            spec = tune_then_evaluate(
                spec, db, pm, texts=params["tune"], seeds=params["tune_seeds"] or "100", options=options,
                workers=settings.get("workers"), executor=settings.get("executor", "local"),
                address=settings.get("address"), block=block, quiet=params["quiet"],
            )
        if params.get("tune") and params["dry_run"]:  # the same refusals as the real bench, nothing run
            from ..tune.arms import check_tuning

            options = {k[len("tune_"):]: v for k, v in params.items() if k.startswith("tune_") and k != "tune_seeds"}
            check_tuning(spec, db, pm, texts=params["tune"], seeds=params["tune_seeds"] or "100", options=options,
                         workers=settings.get("workers"), executor=settings.get("executor", "local"), block=block)
        if params["dry_run"]:
            plans = plan_runs(spec, pm.registries, warn=lambda m: click.echo(f"stratum: warning: {m}", err=True))
            for plan in plans:
                click.echo(f"{plan.run_id}  {plan.label:<40} seed={plan.seed}")
            click.echo(f"{len(plans)} runs")
            if params.get("tune"):
                arms = len({plan.label for plan in plans})
                click.echo(f"--tune: each of the {arms} arms is tuned first on --tune-seeds; these runs then take "
                           "the chosen values")
            return 0
        if params.get("baseline") is not None:  # a typo must not surface only after the whole bench has run
            from ..report.compare import check_baseline

            plans = plan_runs(spec, pm.registries)
            check_baseline(params["baseline"], list(dict.fromkeys(p.label for p in plans)),
                           lambda key: _plan_values(plans, key))
        plot_dir = params.get("plot_dir")
        if plot_dir is None and recipe:  # a recipe's plots are its result
            plot_dir = Path(db).parent / f"{Path(db).stem}-plots"
        if plot_dir is not None:
            probe_output(plot_dir, "dir", "--plot")  # before any run (--db, --log-dir: in run_bench)
        result = run_bench(
            spec, db, pm, workers=settings.get("workers"), executor=settings.get("executor", "local"),
            address=settings.get("address"), quiet=params["quiet"], log_dir=params.get("log_dir"), block=block,
        )
        if params["report"] or plot_dir:
            from ..report.api import bench_report

            bench_report(db, bench=result.name, baseline=params.get("baseline"), plot_dir=plot_dir,
                         show_table=params["report"], registries=pm.registries)
        bad = result.counts.get("failed", 0) + result.counts.get("lost", 0)
        if bad:
            click.echo(f"stratum: warning: {bad} run(s) failed or were lost; see `stratum report {db} --failures`; "
                       "re-run the same command to retry them", err=True)
        return 0

    return callback
