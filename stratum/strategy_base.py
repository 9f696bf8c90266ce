"""The strategy contract.

A strategy decides how parameters move. stratum constructs it with
``factory(run)``, calls :meth:`Strategy.setup`, then registers the instance as
a run-scoped pluggy plugin for the fit: it steers training by implementing
lifecycle hooks (``stratum_apply_update``, ``stratum_decide_switch`` ...)
as methods decorated with ``@stratum.hookimpl``.

A strategy has one or more *modes* (update methods). The engine runs data
modes as forward/loss/backward steps; in a mode with ``uses_data=False`` it
runs :meth:`Strategy.steps_in_epoch` steps with no forward or backward pass and
expects the strategy's ``stratum_apply_update`` to produce the update.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:  # pragma: no cover
    from .engine import Run, Trainer


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
        self.options = options

    # -- construction ----------------------------------------------------------
    def setup(self, run: "Run") -> None:
        """Build ``run.optimizer``. Runs before any hook fires and before a resume."""
        from .engine import build_optimizer

        run.optimizer = build_optimizer(run)

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
        ``Result.pruned_model`` (``None`` when absent). By default none."""
        return {}
