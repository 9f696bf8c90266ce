"""The run: what hooks, strategies and profilers see of one training run (:class:`Run`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import torch

from ..config import RunConfig, options_for
from ..data import DataSplits
from ..strategy_base import Strategy
from ..timing import NullTimer
from .precision import Precision


@attrs.define(eq=False)
class Run:
    """Everything about one training run that hooks may read (and some may change).

    Only what hooks and strategies use lives here; the engine's own bookkeeping (the
    run-scoped plugins of the fit in progress, which stages have run) stays in the
    :class:`~stratum.engine.loop.Trainer` and in ``state`` under ``_``-prefixed keys.
    """

    config: RunConfig
    pm: Any
    device: torch.device
    data: DataSplits
    task: Any
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer | None = None
    strategy: Strategy | None = None
    train_batches: Any = None
    shuffle_generator: torch.Generator | None = None
    epoch: int = 0  # epochs completed
    global_step: int = 0
    mode: str = "sgd"
    history: list = attrs.field(factory=list)
    summary: dict = attrs.field(factory=dict)
    switches: list = attrs.field(factory=list)
    timer: Any = attrs.field(factory=NullTimer)
    # The module the training forward goes through when it is not ``model`` itself
    # (a DistributedDataParallel wrapper under torchrun); None = ``model``.
    train_module: Any = None
    # Seconds spent before epoch 1 on the method itself (counted in cum_s) and on
    # building a prior (counted only in the all-in clock).
    setup_s: float = 0.0
    prior_s: float = 0.0
    # Seconds torch.compile spent compiling (--compile): reported as compile_s, counted in the
    # all-in clock only (stratum/engine/speed.py).
    compile_s: float = 0.0
    # --precision: autocast and fp16's gradient scaler (stratum/engine/precision.py).
    precision: Precision = attrs.field(factory=Precision)
    # Set by a signal handler (or a plugin) to stop at the next step boundary.
    stop_requested: str | None = None
    # Scratch space for plugins, by plugin name.
    state: dict = attrs.field(factory=dict)
    # Which fit of the run this is, for strategies that fit several times (a lottery
    # search sets "L01-ticket" ...); None for the one fit of most strategies. Loggers
    # use it to give each fit its own place (TensorBoard: DIR/<run>/<fit_tag>/).
    fit_tag: str | None = None
    # The learning rate as a function of the schedule step (stratum.engine.step.build_schedule),
    # or None for --schedule constant without warm-up (the optimizer's rate is left alone).
    schedule: Any = None
    # Added to global_step to give the schedule step: 0, except after the lottery's late
    # rewinding to iteration k, where a round's schedule resumes at k.
    schedule_offset: int = 0
    # stratum.deadweights.dead_parameters of the model on this data set's input shape
    # (None when the model's forward could not be traced on the meta device).
    dead_parameters: dict | None = None
    # The run's loggers (--log), each a stratum.engine.loggers.GuardedLogger, built once per run
    # by build_run and registered for every fit after the extensions.
    loggers: list = attrs.field(factory=list)

    @property
    def registries(self):
        return self.pm.registries

    @property
    def hooks(self):
        return _HookProxy(self.pm)

    @property
    def steps_per_data_epoch(self) -> int:
        """Optimizer steps in one pass over the training data: ``ceil(batches / --grad-accum)``,
        capped by ``--steps-per-epoch``."""
        from .step import steps_per_data_epoch

        return steps_per_data_epoch(len(self.train_batches), self.config.grad_accum, self.config.steps_per_epoch)

    def options_for(self, kind: str, name: str):
        """The options instance of a registered component, from this run's config."""
        return options_for(self.registries.get(kind, name), self.config)

    def run_dir(self) -> Path | None:
        return self.config.run_dir()


class _HookProxy:
    """``run.hooks.stratum_x(**kw)``, with plugin errors named."""

    def __init__(self, pm):
        self._pm = pm

    def __getattr__(self, name):
        def call(**kwargs):
            return self._pm.call(name, **kwargs)

        return call
