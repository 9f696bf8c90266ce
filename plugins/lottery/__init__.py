"""Lottery tickets (seed 002): iterative magnitude pruning with rewinding and controls.

Functional core in :mod:`.pruning` (rates, masks, magnitude pruning, random
masks) and :mod:`.report` (early-stopping point, table, plot); the strategy in
:mod:`.strategy`; this module declares options and registers ``lottery``.
"""

from __future__ import annotations

import attrs

import stratum
from stratum import option

from .strategy import LotteryStrategy


@attrs.frozen
class LotteryOptions:
    prune_fraction: float = option(
        0.8, "lottery: share p of the prunable weights removed after all rounds.",
        min=0, max=1, min_exclusive=True, max_exclusive=True,
    )
    prune_rounds: int = option(
        5, "lottery: pruning rounds n; each removes 1-(1-p)^(1/n) of the weights still remaining.", min=1, max=100,
    )
    prune_scope: str = option(
        "global", "lottery: rank weights across all layers (global) or within each layer (layer).",
        choices=("global", "layer"),
    )
    prune_output: str = option(
        "half", "lottery: the output layer is pruned at half the rate, excluded, or at the same rate.",
        choices=("half", "exclude", "same"),
    )
    rewind_iteration: int = option(
        0, "lottery: rewind survivors to their values after k dense-run iterations (0 = initialisation; "
        "k > 0 = late resetting).", min=0,
    )
    lottery_controls: tuple = option(
        ("reinit", "random-mask"), "lottery: control branches per level: reinit, random-mask, or none.",
        type=str, multiple=True, choices=("reinit", "random-mask", "none"),
    )


def _factory(run):
    return LotteryStrategy(run, run.options_for("strategy", "lottery"))


@stratum.hookimpl
def stratum_register_strategies():
    return stratum.strategy(
        "lottery", _factory,
        "Iterative magnitude pruning with rewinding (Frankle & Carbin 2019), with reinit and random-mask controls.",
        options=LotteryOptions,
    )
