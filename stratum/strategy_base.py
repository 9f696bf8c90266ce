"""The strategy contract.

A strategy decides how parameters move. stratum builds the run's optimizer
(``run.optimizer``), constructs the strategy with ``factory(run, options)``
(``options``: the instance of the component's options class resolved from the
run's config, ``None`` when it declares none; a :class:`Strategy` subclass is
itself such a factory), calls :meth:`Strategy.setup`, then registers the instance as
a run-scoped pluggy plugin for the fit: it steers training by implementing
lifecycle hooks (``stratum_apply_update``, ``stratum_decide_switch`` ...)
as methods decorated with ``@stratum.hookimpl``.

A strategy has one or more *modes* (update methods). The engine runs data
modes as forward/loss/backward steps; in a mode with ``uses_data=False`` it
runs :meth:`Strategy.steps_in_epoch` steps with no forward or backward pass and
expects the strategy's ``stratum_apply_update`` to produce the update.
"""

from __future__ import annotations

from typing import Any

import attrs

# The engine imports this module, never the reverse (not even for type checkers, so the layers stay
# one-way for every reader): in annotations, ``Run`` is ``stratum.engine.Run`` and ``Trainer`` is
# ``stratum.engine.Trainer``.
Run = Any
Trainer = Any


@attrs.frozen
class Mode:
    """One update method of a strategy."""

    name: str
    uses_data: bool = True
    description: str = ""


@attrs.frozen
class SwitchDecision:
    """Returned by ``stratum_decide_switch`` to change the mode of the next epoch."""

    to: str
    reason: str = ""


SGD_MODE = Mode("sgd", uses_data=True, description="mini-batch gradient step through the optimiser")


class Strategy:
    """Base class: plain optimiser steps on mini-batches, one mode ``sgd``.

    Subclasses override what they need; every method has a working default.
    """

    name = "base"
    modes: dict[str, Mode] = {"sgd": SGD_MODE}
    initial_mode = "sgd"

    def __init__(self, run: "Run", options=None):
        """``run``: the run being built (model, data and ``run.optimizer`` are ready);
        ``options``: this strategy's resolved options instance, or ``None``."""
        self.options = options

    # -- construction ----------------------------------------------------------
    def setup(self, run: "Run") -> None:
        """Cheap checks and wiring, before any hook fires and before a resume. Never trains.

        ``run.optimizer`` is already built by the engine from ``--optimizer``; a strategy
        may replace it (it must leave one). Resolve the names of the components the
        strategy uses here, so that a typo fails before any work. Default: nothing.
        """

    # -- stages before epoch 1 -------------------------------------------------
    # The engine calls these once per run, after setup() and before the first fit (a
    # resumed run too), each under a timed phase of its own; a stage the strategy does
    # not override is skipped. See docs/architecture.md, "Stages before epoch 1".
    def build_prior(self, run: "Run") -> bool:
        """Stage ``prior``: obtain what the strategy learns from outside this run (focus:
        a prior, built on an SGD source run or read from a file).

        This is the one place a strategy may train before epoch 1, and only on a separate
        run it builds itself (``stratum.engine.build_run`` + ``Trainer(pm).fit``), leaving
        global random state as it found it. Return ``True`` when something was built: the
        engine then adds the stage's wall clock to ``run.prior_s`` (the all-in clock,
        ``cum_all_in_s``, not ``cum_s``); return ``False`` when nothing was (a prior read
        from a file, or found on disk by a resumed run). Default: nothing, ``False``.
        """
        return False

    def prepare(self, run: "Run") -> None:
        """Stage ``setup``: method costs paid before epoch 1 (focus fits its library here).

        The engine adds the stage's wall clock to ``run.setup_s``, which counts in ``cum_s``
        and so in time to accuracy. Must not train on the run's data. Default: nothing.
        """

    # -- driving ---------------------------------------------------------------
    def execute(self, trainer: "Trainer", run: "Run") -> dict:
        """Run the strategy to completion and return the summary (one fit by default).

        Multi-round strategies (lottery tickets) override this to call
        ``trainer.fit(run)`` repeatedly.
        """
        return trainer.fit(run)

    def steps_in_epoch(self, run: "Run", mode: str) -> int:
        """Steps in one epoch of ``mode``: by default one per training batch."""
        return run.steps_per_data_epoch

    # -- persistence -----------------------------------------------------------
    def state_dict(self) -> dict:
        """Tensors and plain values needed to resume (loaded with weights_only)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`."""

    def summary(self, run: "Run") -> dict:
        """JSON-safe entries for the run summary."""
        return {}

    def final_models(self, run: "Run") -> dict:
        """Models this strategy makes besides ``run.model``, once it has finished:
        ``{"averaged": module}`` for a weight-averaging strategy, ``{"pruned": module}``
        for a pruning one. :func:`stratum.fit` puts them on ``Result.averaged_model`` /
        ``Result.pruned_model`` (``None`` when absent); a run-scoped extension may provide
        them too (``--average``: :meth:`stratum.engine.Trainer.final_models`), a key the
        strategy gives wins. By default none."""
        return {}
