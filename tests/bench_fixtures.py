"""Helpers for the bench/report tests: a real (hand-installed) plugin distribution,
and synthetic run summaries for the store and the report."""

from __future__ import annotations

import importlib
import textwrap
from pathlib import Path

PLUGIN_SOURCE = textwrap.dedent('''
    """Test strategies for bench tests: one that fails, one that is slow on purpose."""
    import time

    import attrs

    import stratum
    from stratum import option


    class Boom(stratum.Strategy):
        name = "boom"

        def setup(self, run):
            raise RuntimeError("boom: this strategy always fails")


    @attrs.frozen
    class SleepyOptions:
        sleepy_ms: int = option(40, "sleepy: milliseconds slept after every step.", min=0)


    class Sleepy(stratum.Strategy):
        name = "sleepy"

        @stratum.hookimpl
        def stratum_after_train_step(self, run, step, loss):
            time.sleep(self.options.sleepy_ms / 1000.0)


    def _sleepy(run, options):
        return Sleepy(run, options)


    @stratum.hookimpl
    def stratum_register_strategies():
        return [
            stratum.strategy("boom", Boom, "Always fails in setup (bench failure tests)."),
            stratum.strategy("sleepy", _sleepy, "SGD that sleeps after each step (bench kill tests).", options=SleepyOptions),
        ]
''')


def install_test_plugin(root: Path) -> Path:
    """Write a distribution ``stratum-benchtest`` with an entry point in group ``stratum``.

    A ``*.dist-info`` directory on ``sys.path`` is all importlib.metadata needs,
    so the plugin is discovered exactly as an installed package would be, in
    this process and in every worker process that inherits ``PYTHONPATH``.
    """
    root.mkdir(parents=True, exist_ok=True)
    (root / "stratum_benchtest.py").write_text(PLUGIN_SOURCE)
    info = root / "stratum_benchtest-0.1.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: stratum-benchtest\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[stratum]\nbenchtest = stratum_benchtest\n")
    (info / "RECORD").write_text("")
    importlib.invalidate_caches()
    return root


def history(accs, epoch_s=1.0, prior_s=0.0, setup_s=0.0, losses=None):
    rows, cum = [], setup_s
    for i, acc in enumerate(accs, start=1):
        cum += epoch_s
        rows.append({"epoch": i, "mode": "sgd", "train_loss": 1.0 / i, "val_loss": 1.0 / i, "val_acc": acc,
                     "test_loss": (losses[i - 1] if losses else 1.0 / i), "test_acc": acc,
                     "epoch_s": epoch_s, "cum_s": cum, "cum_all_in_s": cum + prior_s})
    return rows


def summary(strategy, seed, accs, *, epoch_s=1.0, prior_s=0.0, model="mlp", task="classification", extra=None):
    h = history(accs, epoch_s, prior_s)
    if task == "regression":
        for r in h:
            r["val_acc"] = r["test_acc"] = None
    peak = max(h, key=lambda r: (r["test_acc"] or 0, -r["epoch"]))
    s = {
        "strategy": strategy, "model": model, "dataset": "digits", "seed": seed, "config": {"strategy": strategy},
        "task": task, "history": h, "epochs_run": len(h), "diverged": False,
        "peak_test_acc": peak["test_acc"] if task != "regression" else None,
        "time_to_peak_s": peak["cum_s"], "time_to_peak_all_in_s": peak["cum_all_in_s"],
        "final_test_acc": h[-1]["test_acc"], "best_val_loss": min(r["val_loss"] for r in h),
        "total_s": h[-1]["cum_s"], "prior_s": prior_s,
    }
    s.update(extra or {})
    return s
