"""Learning-rate schedules (``--schedule NAME``): constant, step, multistep, cosine, linear,
exponential and one-cycle, registered as components of kind ``schedule``.

Each factory (in :mod:`.factories`, imported when a run uses it) turns its options and the
run's :class:`stratum.engine.ScheduleSpec` into a pure function ``step -> lr`` built with
:func:`.core.make_schedule`; the engine adds the warm-up (``--warmup-steps`` /
``--warmup-epochs``) and sets the rate before every optimizer step. Options given in epochs
(``--step-size``, ``--milestones``) are converted with the run's optimizer steps per epoch.
This module imports no torch.
"""

from __future__ import annotations

import attrs

import stratum
from stratum import option


def _gamma():
    return option(0.0, "Decay factor: at each --step-size or milestone for step/multistep (0 = 0.1), "
                       "per epoch for exponential (0 = 0.9).", min=0, max=1)


def _min_lr():
    return option(0.0, "Learning rate at the end of a cosine or linear schedule (<= --lr).", min=0)


@attrs.frozen
class StepOptions:
    """Options of ``step``."""

    step_size: float = option(0.0, "step schedule: epochs between decays (0 = a third of --epochs).", min=0)
    gamma: float = _gamma()


@attrs.frozen
class MultiStepOptions:
    """Options of ``multistep``."""

    milestones: tuple = option((), "multistep schedule: epochs (from the start of training) at which the rate is "
                                   "multiplied by --gamma, comma-separated (none given = 50% and 75% of --epochs).",
                               type=float, multiple=True, min=0, min_exclusive=True)
    gamma: float = _gamma()


@attrs.frozen
class AnnealOptions:
    """Options of ``cosine`` and ``linear``."""

    min_lr: float = _min_lr()


@attrs.frozen
class ExponentialOptions:
    """Options of ``exponential``."""

    gamma: float = _gamma()


@attrs.frozen
class OneCycleOptions:
    """Options of ``one-cycle`` (torch's ``OneCycleLR`` names)."""

    pct_start: float = option(0.3, "one-cycle: share of the run spent rising to --lr.", min=0, max=1,
                              min_exclusive=True, max_exclusive=True)
    div_factor: float = option(25.0, "one-cycle: starts at --lr / div-factor.", min=0, min_exclusive=True)
    final_div_factor: float = option(1e4, "one-cycle: ends at --lr / div-factor / final-div-factor.", min=0,
                                     min_exclusive=True)


_F = "stratum_plugins.schedules.factories:"

# name: (factory, description, options)
_SCHEDULES = {
    "constant": (_F + "build_constant", "--lr at every step (the default; with a warm-up, --lr after it).", None),
    "step": (_F + "build_step", "Multiply the rate by --gamma every --step-size epochs (torch StepLR).", StepOptions),
    "multistep": (_F + "build_multistep", "Multiply the rate by --gamma at each of --milestones (epochs; torch MultiStepLR).",
                  MultiStepOptions),
    "cosine": (_F + "build_cosine", "Half a cosine from --lr to --min-lr over the run (torch CosineAnnealingLR).",
               AnnealOptions),
    "linear": (_F + "build_linear", "A straight line from --lr to --min-lr (default 0) over the run.", AnnealOptions),
    "exponential": (_F + "build_exponential", "Multiply the rate by --gamma per epoch, smoothly per step (torch ExponentialLR).",
                    ExponentialOptions),
    "one-cycle": (_F + "build_one_cycle", "Smith & Topin's one-cycle: up to --lr, then down, over the run (torch OneCycleLR; "
                  "has its own warm-up).", OneCycleOptions),
}


@stratum.hookimpl
def stratum_register_schedules():
    return [stratum.schedule(name, factory, description, options=options)
            for name, (factory, description, options) in _SCHEDULES.items()]
