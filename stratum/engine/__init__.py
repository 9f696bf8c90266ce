"""The training engine: building a run, the epoch/step loop, checkpoint state, the summary.

Data flows one way: a :class:`~stratum.config.RunConfig` is resolved against
the registries into a :class:`Run` (device, data, model, optimizer, strategy);
:meth:`Trainer.fit` loops over epochs and steps, calling lifecycle hooks; the
strategy (a run-scoped plugin) decides each update; the result is a summary
dict that :mod:`stratum.results` writes and the CLI reports.

* :mod:`.run`: :class:`Run`, what hooks see of a run.
* :mod:`.build`: :func:`build_run` (nothing trains there) and :func:`run_stages`, the
  strategy's timed stages before epoch 1.
* :mod:`.loop`: :class:`Trainer`, the epochs and steps, evaluation, signals.
* :mod:`.state`: what a checkpoint holds; writing it and reading it back.
* :mod:`.summary`: :func:`make_summary`.
* :mod:`.step`: the learning-rate schedule, gradient accumulation, the order of the gradient
  terms on a step; :mod:`.knobs`: weight-decay groups and clipping.

Clock rules (see docs/architecture.md):

* ``epoch_s`` = training steps + validation. Validation is part of the cost
  because decisions (early stopping, switching) need it; test evaluation is a
  measurement only and is timed separately (``test_s``), outside the clock.
* ``cum_s`` = ``setup_s`` (method costs paid before epoch 1, e.g. fitting a
  focus library: the strategy's ``setup`` stage) + the sum of ``epoch_s``.
  ``cum_all_in_s`` adds ``prior_s`` (building a prior on a source run: the
  strategy's ``prior`` stage).

This package re-exports the names other code imports from ``stratum.engine``.
"""

from __future__ import annotations

from .build import (
    build_optimizer,
    build_run,
    check_batch_norm_batch_size,
    check_dead_parameters,
    load_dataset,
    run_stages,
    too_large_as_config_error,
)
from .loop import Trainer, evaluate, note, run_scoped_plugins
from .run import Run
from .state import restore_state, save_state
from .step import ScheduleSpec, build_schedule
from .summary import components_in_use, environment, make_summary, versions

__all__ = [
    "Run",
    "ScheduleSpec",
    "Trainer",
    "build_optimizer",
    "build_run",
    "build_schedule",
    "check_batch_norm_batch_size",
    "check_dead_parameters",
    "components_in_use",
    "environment",
    "evaluate",
    "load_dataset",
    "make_summary",
    "note",
    "restore_state",
    "run_scoped_plugins",
    "run_stages",
    "save_state",
    "too_large_as_config_error",
    "versions",
]
