"""Profilers: ``phases`` (where an epoch's time goes), ``torch`` (a Chrome trace),
``gradflow`` (per-layer gradient norms) and ``losses`` (the per-step loss curve).

Select with ``stratum run --profile NAME`` (repeatable). Each is a run-scoped
plugin built at fit start; the functional cores are in :mod:`.timers`,
:mod:`.breakdown`, :mod:`.gradflow` and :mod:`.losses`.
"""

from __future__ import annotations

from pathlib import Path

import attrs

import stratum
from stratum import option

# The profiler classes are named by "module:attr" strings: their modules (torch) are
# imported when a run uses them, so registration stays light.


@attrs.frozen
class TorchTraceOptions:
    torch_trace_wait: int = option(2, "torch profiler: training steps to skip before the traced window.", min=0)
    torch_trace_steps: int = option(5, "torch profiler: steps recorded in the Chrome trace (bounded window).", min=1, max=200)
    torch_trace_dir: Path | None = option(None, "torch profiler: directory for the trace (default: the run directory, else stratum-traces/ relative to the working directory).", type=Path, output="dir")


@attrs.frozen
class GradFlowOptions:
    gradflow_every: int = option(5, "gradflow: sample gradient norms every N data steps.", min=1)
    gradflow_vanish_ratio: float = option(
        0.01, "gradflow: first/last layer gradient-norm ratio below which the verdict is 'vanishing' (above 1/x: 'exploding').",
        min=0, max=1, min_exclusive=True, max_exclusive=True,
    )


@attrs.frozen
class LossCurveOptions:
    losses_max_points: int = option(4000, "losses: most points kept in the loss curve (older ones are thinned).", min=10)


@stratum.hookimpl
def stratum_register_profilers():
    return [
        stratum.profiler(
            "phases", "stratum_plugins.profilers.phases:PhasesProfiler",
            "Time per phase (data, forward, loss, backward, update, focus_predict, eval, test): CUDA events or CPU wall clock.",
        ),
        stratum.profiler("torch", "stratum_plugins.profilers.torch_trace:TorchTraceProfiler", "torch.profiler Chrome trace of a bounded window of steps.", options=TorchTraceOptions),
        stratum.profiler("gradflow", "stratum_plugins.profilers.gradflow:GradFlowProfiler", "Per-layer gradient norms each epoch: the vanishing/exploding diagnostic.", options=GradFlowOptions),
        stratum.profiler("losses", "stratum_plugins.profilers.losses:LossCurve", "Per-step training loss (thinned to a bounded curve), for loss-curve plots.", options=LossCurveOptions),
    ]
