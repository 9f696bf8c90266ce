"""What a run prints: a live bar on a terminal, plain lines otherwise, a table at the end.

The display is a run-scoped plugin: it learns about progress through the same
lifecycle hooks as everything else.
"""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .hookspecs import hookimpl


def epoch_label(strategy: str, mode: str, modes) -> str:
    """What an epoch line shows in brackets: the strategy, plus the mode where that tells
    something (a strategy with several modes, in a mode not named after itself):
    ``sgd``, ``sign-sgd``, ``focus``, ``focus/sgd``."""
    if mode == strategy or len(modes) <= 1:
        return strategy
    return f"{strategy}/{mode}"


def components_line(components: dict) -> str:
    """``components: strategy=sgd[sgd 0.1.0] model=mlp[zoo 0.1.0] ...`` for the run header."""
    parts = []
    for kind, entries in components.items():
        for entry in entries if isinstance(entries, list) else [entries]:
            parts.append(f"{kind}={entry['name']}[{entry['plugin']} {entry['version']}]")
    return "components: " + " ".join(parts)


def _fmt(value, spec=".2f", missing="-"):
    if value is None:
        return missing
    return format(value, spec)


class ConsoleDisplay:
    """Epoch progress with images/s (live on a TTY), and a line per epoch."""

    def __init__(self, *, quiet: bool = False, stream=None, live: bool | None = None):
        self.stream = stream or sys.stdout
        self.quiet = quiet
        self.live = (not quiet) and (self.stream.isatty() if live is None else live)
        self.console = Console(file=self.stream, highlight=False, soft_wrap=True, markup=False)
        self._progress = None
        self._task = None
        self._images = 0
        self._t0 = 0.0
        self._last_refresh = 0.0

    @hookimpl
    def stratum_fit_start(self, run):
        if self.quiet:
            return
        c = run.config
        self.console.print(
            f"stratum run: strategy={c.strategy} model={c.model} dataset={c.dataset} seed={c.seed} "
            f"device={run.device} params={sum(p.numel() for p in run.model.parameters()):,} "
            f"train/val/test={len(run.data.train)}/{len(run.data.val)}/{len(run.data.test)}"
        )
        from .engine import components_in_use

        self.console.print(components_line(components_in_use(run)))
        if self.live:
            self._progress = Progress(
                TextColumn("epoch {task.fields[epoch]} [{task.fields[label]}]"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), console=self.console, transient=True,
            )
            self._progress.start()

    @hookimpl
    def stratum_epoch_start(self, run, epoch, mode):
        self._images = 0
        self._t0 = time.perf_counter()
        if self._progress is not None:
            steps = run.strategy.steps_in_epoch(run, mode)
            if self._task is not None:
                self._progress.remove_task(self._task)
            label = epoch_label(run.config.strategy, mode, run.strategy.modes)
            self._task = self._progress.add_task("", total=steps, epoch=epoch, label=label, rate="")

    @hookimpl
    def stratum_after_train_step(self, run, step, loss):
        if self._progress is None:
            return
        self._images += run.config.batch_size
        now = time.perf_counter()
        if now - self._last_refresh > 0.1:  # keep the display cheap
            self._last_refresh = now
            rate = self._images / max(now - self._t0, 1e-9)
            self._progress.update(self._task, completed=step + 1, rate=f"{rate:,.0f} img/s")

    @hookimpl
    def stratum_epoch_end(self, run, epoch, record):
        if self.quiet:
            return
        if self._progress is not None:
            self._progress.update(self._task, completed=self._progress.tasks[-1].total)
        acc = "val_acc" if record.get("val_acc") is not None else None
        metric = (
            f"val_acc={_fmt(record.get('val_acc'))} test_acc={_fmt(record.get('test_acc'))}"
            if acc else f"val_loss={_fmt(record.get('val_loss'), '.4g')} test_loss={_fmt(record.get('test_loss'), '.4g')}"
        )
        if acc and record.get("raw_val_acc") is not None:  # --average: val/test are the average's
            metric += f" (raw {_fmt(record.get('raw_val_acc'))} / {_fmt(record.get('raw_test_acc'))})"
        self.console.print(
            f"epoch {epoch:3d} [{epoch_label(run.config.strategy, record['mode'], run.strategy.modes)}] train_loss={_fmt(record.get('train_loss'), '.4f')} {metric} "
            f"epoch_s={record['epoch_s']:.2f} cum_s={record['cum_s']:.2f}"
            + (" DIVERGED" if record.get("diverged") else "")
        )

    @hookimpl
    def stratum_fit_end(self, run, summary):
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def result_table(summary: dict) -> Table:
    table = Table(title="stratum result", show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = [
        ("strategy / model / dataset", f"{summary['strategy']} / {summary['model']} / {summary['dataset']}"),
        ("seed", str(summary["seed"])),
        ("epochs run", f"{summary['epochs_run']} ({_STOPPED.get(summary['stopped_reason'], summary['stopped_reason'])})"),
        ("best val acc", _fmt(summary.get("best_val_acc"))),
        ("test acc at best val", _fmt(summary.get("test_acc_at_best_val"))),
        ("peak test acc", _fmt(summary.get("peak_test_acc"))),
        ("time to peak (s)", _fmt(summary.get("time_to_peak_s"))),
        ("total time (s)", _fmt(summary.get("total_s"))),
    ]
    if summary.get("prior_s"):
        rows.append(("prior building (s)", _fmt(summary.get("prior_s"))))
    if summary.get("compile_s"):
        rows.append(("torch.compile (s)", _fmt(summary.get("compile_s"))))
    if summary.get("prior_s") or summary.get("compile_s"):
        rows.append(("total all-in (s)", _fmt(summary.get("total_all_in_s"))))
    if summary.get("averaging"):  # the accuracies above are the weight average's
        rows.append(("weights evaluated", f"{summary['averaging']['method'].upper()} average"))
    if summary.get("task") == "regression":
        rows.insert(3, ("best val loss", _fmt(summary.get("best_val_loss"), ".5g")))
    rows.append(("diverged", "yes" if summary.get("diverged") else "no"))
    rows.append(("device", summary.get("device", "")))
    for name, value in rows:
        table.add_row(name, value)
    return table


# How the result table words summary["stopped_reason"].
_STOPPED = {"epochs": "all --epochs", "early_stop": "early stop: no validation gain for --patience epochs",
            "diverged": "diverged", "pruned": "pruned by the tuner (stratum tune)"}


def print_result(summary: dict, stream=None) -> None:
    Console(file=stream or sys.stdout, highlight=False).print(result_table(summary))
