"""Lottery tickets (seed 002): iterative magnitude pruning with rewinding and controls.

Functional core in :mod:`.pruning` (rates, masks, magnitude pruning, random
masks) and :mod:`.report` (early-stopping point, table, plot); the strategy in
:mod:`.strategy`; the paper's Conv-2/4/6 in :mod:`.models`. This module
declares options and registers ``lottery`` and the models ``conv2``, ``conv4``, ``conv6``.
"""

from __future__ import annotations

import functools

import attrs

import stratum
from stratum import option

from stratum import ConfigError

# Only the light layout table here: the models and the strategy (torch) are imported
# by the factories when a run calls them.
from .layouts import CONV_LAYOUTS


@attrs.frozen
class LotteryOptions:
    prune_fraction: float = option(
        0.8, "lottery: share p of the prunable weights (of full-rate layers) removed after all rounds.",
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


@attrs.frozen
class ConvOptions:
    # Shared with the zoo's conv models (same flag, same meaning).
    width: float = option(1.0, "Channel-width multiplier for conv models.", min=0, min_exclusive=True, max=16)


def _conv_factory(name, spec, options: ConvOptions):
    from .models import build_conv

    try:
        return build_conv(name, spec.input_shape, spec.num_outputs, options.width)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _factory(run, options):
    from .strategy import LotteryStrategy

    return LotteryStrategy(run, options)


@stratum.hookimpl
def stratum_register_models():
    return [
        stratum.model(
            name, functools.partial(_conv_factory, name),
            f"Frankle & Carbin's Conv-{name[-1]}: {sum(1 for x in CONV_LAYOUTS[name] if x != 'M')} 3x3 convs "
            "(pool after each pair), FC 256-256; --width scales.",
            options=ConvOptions,
        )
        for name in CONV_LAYOUTS
    ]


@stratum.hookimpl
def stratum_register_strategies():
    return stratum.strategy(
        "lottery", _factory,
        "Iterative magnitude pruning with rewinding (Frankle & Carbin 2019), with reinit and random-mask controls.",
        options=LotteryOptions,
    )
