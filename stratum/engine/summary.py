"""The summary of a fit: the history turned into best/peak epochs, clocks, sizes and the
environment the run ran on (:func:`make_summary`)."""

from __future__ import annotations

import math

import torch

from .run import Run


def _score(record: dict) -> float:
    """Higher is better: validation accuracy, or minus validation loss for regression."""
    if record.get("val_acc") is not None:
        return record["val_acc"]
    val_loss = record.get("val_loss")
    return -val_loss if val_loss is not None else -math.inf


def _best_key(record: dict) -> tuple:
    """Order of epochs for "the best validation epoch": the validation score (accuracy, or minus
    the loss for regression), ties broken by the lower validation loss, then the earlier epoch.

    Validation accuracy on a small split is coarse (digits: 144 images, 0.69 points each), so
    epochs often tie on it; the loss on the same split tells them apart. Validation data only.
    """
    val_loss = record.get("val_loss")
    return _score(record), -val_loss if val_loss is not None else -math.inf, -record["epoch"]


def versions() -> dict:
    """Versions of stratum, Python, torch (``torch.__version__``, with its build tag), numpy
    and xgboost (``None`` when not installed), read from package metadata."""
    from ..environment import library_versions

    return {**library_versions(), "torch": torch.__version__}


def environment(run: Run) -> dict:
    """The run's :func:`stratum.environment.capture`, taken once per run (a multi-fit
    strategy's summaries share it)."""
    from ..environment import capture

    if "_environment" not in run.state:
        run.state["_environment"] = capture(run.pm, run.device, torch.get_num_threads())
    return run.state["_environment"]


def components_in_use(run: Run) -> dict:
    """Which plugin (and version) provides each component of ``run``.

    ``{"strategy": {"name", "plugin", "version", "dist"}, "model": ..., "dataset": ...,
    "initializer": ..., "optimizer": ..., "augmentation": ..., "schedule": ..., "profiler": [...], "extension": [...], "logger": [...]}``.
    """
    pm, config = run.pm, run.config
    out = {}
    for kind, name in (("strategy", config.strategy), ("model", config.model), ("dataset", config.dataset),
                       ("initializer", config.init), ("optimizer", config.optimizer),
                       ("augmentation", config.augment),
                       ("schedule", config.schedule)):
        out[kind] = pm.provenance(pm.registries.get(kind, name))
    out["profiler"] = [pm.provenance(pm.registries.get("profiler", name)) for name in config.profile]
    out["extension"] = [pm.provenance(pm.registries.get("extension", name))
                        for name in run.state.get("_extensions_in_use", [])]
    out["logger"] = [pm.provenance(pm.registries.get("logger", logger.name)) for logger in run.loggers]
    return out


def _data_summary(run: Run) -> dict:
    data = {**run.data.sizes(), "resident": run.data.resident}
    dropped = getattr(run.train_batches, "dropped_tail_samples", 0)
    if dropped:  # a one-sample last batch a batch-norm model cannot train on, left out of every epoch
        data["dropped_tail_samples"] = dropped
    return data


def make_summary(run: Run, *, diverged: bool, stopped_reason: str) -> dict:
    """The summary of the fit ``run`` just finished (JSON-safe): its config, history, best and
    peak epochs, clocks, sizes, environment and components, then the strategy's
    :meth:`~stratum.Strategy.summary` and whatever plugins put in ``run.summary``.
    ``diverged``/``stopped_reason``: how the fit ended."""
    history = run.history
    good = [r for r in history if not r.get("diverged")]
    best = max(good, key=_best_key) if good else None
    with_test = [r for r in good if r.get("test_acc") is not None]
    peak = max(with_test, key=lambda r: (r["test_acc"], -r["epoch"])) if with_test else None
    last = history[-1] if history else {}
    total_s = last.get("cum_s", run.setup_s)
    summary = {
        "strategy": run.config.strategy,
        "model": run.config.model,
        "dataset": run.config.dataset,
        "seed": run.config.seed,
        "config": run.config.to_dict(),
        "task": run.task.name,
        "history": history,
        "epochs_run": len(history),
        "stopped_reason": stopped_reason,
        "diverged": diverged,
        "best_val_acc": best.get("val_acc") if best else None,
        "best_val_epoch": best["epoch"] if best else None,
        "test_acc_at_best_val": best.get("test_acc") if best else None,
        "best_val_loss": min((r["val_loss"] for r in good if r.get("val_loss") is not None), default=None),
        "peak_test_acc": peak["test_acc"] if peak else None,
        "peak_epoch": peak["epoch"] if peak else None,
        "time_to_peak_s": peak["cum_s"] if peak else None,
        "time_to_peak_all_in_s": peak["cum_all_in_s"] if peak else None,
        "final_test_acc": good[-1].get("test_acc") if good else None,
        "total_s": total_s,
        "total_all_in_s": total_s + run.prior_s + run.compile_s,
        "setup_s": run.setup_s,
        "prior_s": run.prior_s,
        "compile_s": run.compile_s,
        "precision": run.precision.summary(),
        "switches": list(run.switches),
        "global_steps": run.global_step,
        "parameters": sum(p.numel() for p in run.model.parameters()),
        "dead_parameters": run.dead_parameters,
        "data": _data_summary(run),
        "device": str(run.device),
        "threads": torch.get_num_threads(),
        "versions": versions(),
        "components": components_in_use(run),
        "environment": environment(run),
    }
    summary.update(run.strategy.summary(run))
    summary.update(run.summary)
    return summary
