"""The click options of a search, shared by ``stratum tune`` and ``stratum bench --tune``.

Kept apart from :mod:`.cli` so that the bench's command can take them without importing the
tune command (and so without an import cycle); imports nothing heavy.
"""

from __future__ import annotations

import click


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
