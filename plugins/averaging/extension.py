"""The ``averaging`` extension: a run-scoped plugin that keeps a weight average of ``run.model``
and hands it to the engine as the model to evaluate (``stratum_eval_model``).

Built on :mod:`.core` (``torch.optim.swa_utils``): ``AveragedModel`` for both averages,
``get_ema_multi_avg_fn`` (or the warm-up rule) for EMA, ``update_bn`` for SWA.
"""

from __future__ import annotations

import itertools
import math

import stratum
from stratum.data import eval_batches, has_batch_norm

from .options import DEFAULT_EMA_DECAY, AveragingOptions
from .core import (averaged_state, decay_from_half_life, ema_model, half_life_from_decay, load_averaged_state,
                   recompute_bn, swa_model)


def averaging_extension(run, options: AveragingOptions):
    """Extension factory: a :class:`WeightAveraging` for ``--average ema|swa``, ``None`` for
    ``none``. ``run``: the fit's run (its ``model`` is copied into the average)."""
    if options.average == "none":
        return None
    return WeightAveraging(run, options)


def swa_start_epoch(options: AveragingOptions, epochs: int) -> int:
    """The first epoch whose end weights SWA averages: ``--swa-start``, or by default the start of
    the last quarter of ``epochs`` (``floor(0.75 * epochs) + 1``, Izmailov et al. 2018's 75%)."""
    return options.swa_start if options.swa_start is not None else math.floor(0.75 * epochs) + 1


class WeightAveraging:
    """An EMA or SWA of ``run.model`` (an ``AveragedModel``), evaluated in its place.

    * EMA: ``update_parameters(run.model)`` after every optimizer step (``stratum_after_train_step``,
      inside the training clock), parameters and buffers (batch-norm statistics) alike.
    * SWA: at the end of every epoch from the start epoch on, ``update_parameters`` and then
      ``update_bn`` over one epoch's worth of training batches (in order, without augmentation,
      at most ``steps_per_data_epoch`` batches), inside ``stratum_eval_model``, which the engine
      times as training. Before the start epoch the raw model is evaluated (and ``raw_*`` equal
      ``val_*``/``test_*``).

    ``state_dict``/``load_state_dict`` (tensors only: ``weights_only`` safe) make resume exact;
    ``final_models`` gives ``{"averaged": module}`` once something was averaged.
    """

    def __init__(self, run, options: AveragingOptions):
        self.method = options.average
        if self.method == "ema":
            if options.ema_half_life is not None:
                self.decay = decay_from_half_life(options.ema_half_life)
            else:
                self.decay = options.ema_decay if options.ema_decay is not None else DEFAULT_EMA_DECAY
            self.warmup = options.ema_warmup
            self.averaged = ema_model(run.model, self.decay, warmup=self.warmup)
        else:
            self.start = swa_start_epoch(options, run.config.epochs)
            self.averaged = swa_model(run.model)
            self.batch_norm = has_batch_norm(run.model)

    @property
    def updates(self) -> int:
        """How many weight snapshots the average holds (``AveragedModel.n_averaged``)."""
        return int(self.averaged.n_averaged.item())

    @stratum.hookimpl
    def stratum_after_train_step(self, run, step, loss):
        if self.method == "ema":
            self.averaged.update_parameters(run.model)

    @stratum.hookimpl
    def stratum_eval_model(self, run, epoch):
        if self.method == "ema":
            return self.averaged if self.updates else run.model
        if epoch < self.start:
            return run.model
        self.averaged.update_parameters(run.model)
        if self.batch_norm:
            data = run.data
            batches = eval_batches(data.train, run.config.batch_size, run.device, data.bundle.batch_transform,
                                   run.config.loader_workers)
            recompute_bn(itertools.islice(batches, run.steps_per_data_epoch), self.averaged)
        return self.averaged

    @stratum.hookimpl
    def stratum_fit_end(self, run, summary):
        if self.method == "ema":
            info = {"method": "ema", "decay": self.decay, "half_life_steps": half_life_from_decay(self.decay),
                    "warmup": self.warmup}
        else:
            info = {"method": "swa", "start_epoch": self.start, "update_bn": self.batch_norm}
        summary["averaging"] = {**info, "updates": self.updates}

    def final_models(self, run) -> dict:
        """``{"averaged": the averaged nn.Module}`` (same class and state_dict keys as ``run.model``,
        in eval mode) once at least one snapshot was averaged; ``{}`` before."""
        if not self.updates:
            return {}
        return {"averaged": self.averaged.module.eval()}

    def state_dict(self) -> dict:
        """The average's parameters, buffers and ``n_averaged`` (tensors only)."""
        return {"averaged": averaged_state(self.averaged)}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` (``KeyError``/``RuntimeError`` when it is not this average's)."""
        load_averaged_state(self.averaged, state["averaged"])
