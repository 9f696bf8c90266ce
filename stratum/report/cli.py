"""The ``stratum report DB`` command."""

from __future__ import annotations


import click

from ..errors import ConfigError
from ..options import SEED_MAX
from ..paths import UserPath, probe_output
from .tables import FORMATS

# Each bootstrap draws a (resamples x seeds) index array: beyond this it only costs memory.
MAX_RESAMPLES = 100_000


def build_report_command(ctx: click.Context) -> click.Command:
    @click.command("report", help="Compare the strategy configurations of a bench stored in DB (an SQLite file from "
                                  "`stratum bench`): test accuracy at the best validation epoch and peak, time to a "
                                  "target accuracy, speed-ups over a baseline paired by seed, with bootstrap CIs; "
                                  "spread across seeds; optional PNG plots.")
    @click.argument("db", type=click.STRING)  # checked by results_db_path() as typed ('', ':memory:', 'dir/')
    @click.option("--bench", "bench_name", default=None, help="Bench inside the store. [default: the latest]")
    @click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", help="Output format. [default: table]")
    @click.option("--output", "-o", type=UserPath(dir_okay=False), default=None,
                  help="Write the report to this file instead of stdout (atomically).")
    @click.option("--tuned-toml", "tuned_path", type=UserPath(dir_okay=False), default=None,
                  help="Also write the values a tuning bench chose (baselines-tune) as a bench TOML to this file, "
                       "for `stratum bench --config FILE` (atomically).")
    @click.option("--baseline", default=None,
                  help="Baseline for speed-ups and the default target: KEY=VALUE (per context) or one configuration label. "
                       "[default: strategy=sgd]")
    @click.option("--target", type=float, default=None,
                  help="Target test accuracy (or test loss for regression). [default: --target-fraction x the baseline's "
                       "median test accuracy at its best validation epoch]")
    @click.option("--target-fraction", type=click.FloatRange(0, 1, min_open=True), default=0.99,
                  help="Default target as a fraction of the baseline's median test accuracy at its best validation epoch "
                       "(regression: its test loss there divided by the fraction). [default: 0.99]")
    @click.option("--bootstrap", "resamples", type=click.IntRange(min=100, max=MAX_RESAMPLES), default=2000,
                  help=f"Bootstrap resamples for the confidence intervals (scipy.stats.bootstrap, percentile method; "
                       f"100 to {MAX_RESAMPLES}). [default: 2000]")
    @click.option("--confidence", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.95,
                  help="Confidence level of the intervals. [default: 0.95]")
    @click.option("--seed", type=click.IntRange(min=0, max=SEED_MAX), default=0, help="Seed of the bootstrap (the same seed, the same intervals). [default: 0]")
    @click.option("--detail", is_flag=True, default=False,
                  help="Also print the detail table (table and markdown formats): peak with its interval, final accuracy "
                       "and spread, time to target on both clocks, the speed-up excluding the prior, pairs. csv and json "
                       "always hold every figure.")
    @click.option("--plot", "plot_dir", type=UserPath(file_okay=False), default=None,
                  help="Write PNG plots into this directory.")
    @click.option("--tensorboard", "tensorboard_dir", type=UserPath(file_okay=False), default=None,
                  help="Also export every stored run's history as TensorBoard scalars into this directory.")
    @click.option("--failures", is_flag=True, default=False, help="List the runs that failed or were lost, with their errors.")
    @click.pass_context
    def report_cmd(ctx, db, bench_name, fmt, output, tuned_path, baseline, target, target_fraction, resamples, confidence, seed, detail,
                   plot_dir, tensorboard_dir, failures):
        from ..cli import get_pm
        from ..io import atomic_write_bytes
        from ..store import results_db_path
        from .api import build_report, failures as list_failures, render, render_study, tuned_toml

        db = results_db_path(db)

        # Destinations first: an unwritable one fails before the (bootstrap) work. The DB is only read.
        for path, kind, flag in ((output, "file", "--output"), (tuned_path, "file", "--tuned-toml"), (plot_dir, "dir", "--plot"),
                                 (tensorboard_dir, "dir", "--tensorboard")):
            if path is not None:
                probe_output(path, kind, flag)
        report = build_report(db, bench=bench_name, baseline=baseline, target=target, target_fraction=target_fraction,
                              resamples=resamples, confidence=confidence, seed=seed)
        if not report.records:
            raise ConfigError(f"bench {report.bench!r} in {db} has no runs")
        try:
            registries = get_pm(ctx).registries
        except Exception:  # the report reads stored data; a broken plugin must not stop it
            registries = None
        tuned = None
        if tuned_path is not None:
            tuned = tuned_toml(report, registries)
            if tuned is None:
                raise ConfigError(f"--tuned-toml: bench {report.bench!r} (recipe {report.recipe or 'none'}) has no "
                                  "chosen values to write: it is not a baselines-tune bench, or a variant is undecided")
        text = render(report.rows, fmt, title=f"stratum report: bench {report.bench!r}", settings=report.settings,
                      detail=detail)
        study = render_study(report, fmt, registries) if fmt != "json" else None
        if fmt == "json":
            import json

            from ..io import json_safe

            study_json = render_study(report, "json", registries)
            payload = {"bench": report.bench, "recipe": report.recipe, "statistics": report.settings,
                       "configurations": report.rows,
                       "study": json.loads(study_json) if study_json else None}
            text = json.dumps(json_safe(payload), indent=2, allow_nan=False) + "\n"
        elif study:
            text += ("\n" if fmt != "csv" else "") + study
        if failures:
            bad = list_failures(report)
            lines = [f"{r['status']:<8} {r['label']} seed={r['seed']} run={r['run_id']}: {r.get('error') or ''}" for r in bad]
            text += ("\n".join(lines) if lines else "no failed or lost runs") + "\n"
        if output is not None:
            atomic_write_bytes(output, text.encode(), "--output")
        else:
            click.echo(text, nl=False)
        if tuned is not None:
            atomic_write_bytes(tuned_path, tuned.encode(), "--tuned-toml")
            click.echo(f"wrote the chosen values to {tuned_path}", err=True)
        if plot_dir is not None:
            from .plots import write_all

            for path in write_all(report.groups, plot_dir):
                click.echo(f"wrote {path}", err=output is None and fmt != "table")
        if tensorboard_dir is not None:
            from .tensorboard import export_histories

            count = export_histories(report.records, tensorboard_dir)
            click.echo(f"wrote TensorBoard logs of {count} runs to {tensorboard_dir}", err=fmt != "table")
        return 0

    return report_cmd
