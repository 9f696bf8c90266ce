"""Strategy ``nowcast``: SGD, and every ``N`` steps a jump to where the weights are predicted to be.

Lifecycle (see docs/focus.md, "Nowcast"):

1. ``setup``: resolve the feature set (one with nowcast rows, default ``nowcast``) and
   the regressor; check the geometry: ``--nowcast-period`` a multiple of
   ``--nowcast-every`` and at least ``(window - 1) * every`` steps, so a full window
   of fresh checkpoints exists at every jump.
2. Stage ``prior`` (shared with ``focus``, :class:`~.strategy.PriorStrategy`): read
   ``--prior`` or build a nowcast prior on an SGD source run. Stage ``setup``: refuse a
   prior that cannot apply (a focus prior, another geometry: one line each; the
   architecture may differ, the rows are per element and unit-free) and fit the
   library, one regressor per parameter kind.
3. Every step is an ordinary SGD step. After the step, a checkpoint is taken every
   ``c`` steps; at every ``N``-th global step with a full window, each captured
   element is moved by its predicted displacement (:meth:`NowcastStrategy.jump`). A
   jump is not a step: the global step, and so the learning-rate schedule, do not
   move. Its time (and the guard's validation passes) falls inside the epoch's
   training clock.
"""

from __future__ import annotations

import math
import time

import torch

import stratum
from stratum.errors import ConfigError, PriorError

from .capture import CaptureConfig
from .nowcast import NowcastJumper, check_nowcast_prior, position_of
from .policies import SGD
from .prior import sources_of
from .strategy import SGD_MODE, PriorStrategy, adjust_optimizer_state
from .trajectory import NowcastSpec


def nowcast_spec_from(options) -> NowcastSpec:
    return NowcastSpec(every=options.nowcast_every, window=options.nowcast_window, horizon=options.nowcast_horizon)


def nowcast_capture_config(options, seed: int) -> CaptureConfig:
    """A nowcast capture's configuration from options with ``capture_*`` sample and ``nowcast_*`` geometry fields."""
    return CaptureConfig(layers=options.capture_layers, max_samples=options.capture_max_samples,
                         track=options.capture_track, dtype=options.capture_dtype, seed=seed,
                         nowcast=nowcast_spec_from(options))


class NowcastStrategy(PriorStrategy):
    name = "nowcast"
    modes = {SGD: SGD_MODE}
    initial_mode = SGD

    def __init__(self, run, options=None):
        super().__init__(run, options)
        self.spec = nowcast_spec_from(options)
        self.jumper: NowcastJumper | None = None
        self.jumps: list[dict] = []  # one entry per jump attempted
        self.total_steps = 0
        self.sources: list[dict] = []

    def setup(self, run) -> None:
        opts = self.options
        self._resolve(run, opts.nowcast_features)
        if not getattr(self._feature_set, "nowcast", False):
            raise ConfigError(f"--nowcast-features {opts.nowcast_features!r} is not a nowcast feature set "
                              "(its rows are per-step gradients); use it with --strategy focus")
        spec = self.spec
        if opts.nowcast_period % spec.every:
            raise ConfigError(f"--nowcast-period {opts.nowcast_period} must be a multiple of --nowcast-every {spec.every}")
        shortest = (spec.window - 1) * spec.every
        if opts.nowcast_period < shortest:
            raise ConfigError(f"--nowcast-period {opts.nowcast_period} is shorter than one window of checkpoints "
                              f"((--nowcast-window - 1) x --nowcast-every = {shortest} steps)")

        # An automatic prior's source run must see at least one window and its horizon: window + horizon
        # checkpoints (the first before step 1), every --nowcast-every steps. Known before it trains when it
        # runs on this run's data.
        needed = (spec.window + spec.horizon - 1) * spec.every
        if opts.prior is None and opts.prior_dataset in (None, run.config.dataset) and not run.config.resume:
            per_epoch = run.steps_per_data_epoch
            if opts.prior_data_fraction < 1.0:
                per_epoch = max(1, int(per_epoch * opts.prior_data_fraction))
            if opts.prior_epochs * per_epoch < needed:
                raise ConfigError(f"the prior's source run ({opts.prior_epochs} epochs x {per_epoch} steps) is shorter "
                                  f"than one nowcast window and its horizon ((--nowcast-window + --nowcast-horizon - 1) x "
                                  f"--nowcast-every = {needed} steps); raise --prior-epochs or shorten the geometry")

    def source_capture_config(self, seed: int) -> CaptureConfig:
        return nowcast_capture_config(self.options, seed)

    def prepare(self, run) -> None:
        """Stage ``setup``: refuse a prior that cannot apply, fit the library (counted in ``cum_s``)."""
        prior = self._prior
        check_nowcast_prior(prior.metadata, self.spec, self.prior_label)
        self.sources = sources_of(prior.metadata)
        self.prior_dead_share = prior.metadata.get("dead_share")
        self._fit_library(run, prior)
        layers = CaptureConfig.from_dict(prior.metadata["capture"]).layers
        self.jumper = NowcastJumper(run.model, self.library, layers, self.spec)
        if not self.jumper.keys:
            raise PriorError(f"prior {self.prior_label} predicts no parameter of this model "
                             f"(its regressors cover {', '.join(sorted(self.library.models))}; layers {layers!r})")
        self.total_steps = run.config.epochs * run.steps_per_data_epoch
        self._prior = None

    # -- steps -------------------------------------------------------------------------
    @stratum.hookimpl
    def stratum_after_train_step(self, run, step, loss):
        self.jumper.observe(run.global_step)
        if run.global_step % self.options.nowcast_period == 0 and self.jumper.ready:
            self.jump(run)

    @torch.no_grad()
    def jump(self, run) -> dict:
        """Move every predicted element by its predicted displacement; with the guard, undo a jump
        that raised the validation loss by more than the tolerance. Returns the jump's log entry."""
        from stratum.engine import evaluate

        opts = self.options
        t0 = time.perf_counter()
        entry: dict = {"epoch": run.epoch + 1, "step": run.global_step}
        displacements = self.jumper.predict(position_of(run.global_step, self.total_steps))
        sums = torch.stack([d.abs().sum(dtype=torch.float64) for d in displacements])
        if not bool(torch.isfinite(sums).all()):
            entry.update(skipped="non-finite prediction", seconds=time.perf_counter() - t0)
            self.jumps.append(entry)
            return entry
        entry["mean_abs_displacement"] = float(sums.sum()) / max(1, sum(d.numel() for d in displacements))
        saved = [p.detach().clone() for p in self.jumper.params] if opts.nowcast_guard else None
        if saved is not None:
            entry["val_loss_before"] = evaluate(run, run.data.val)[0]
        self.jumper.apply(displacements)
        if saved is not None:
            after = evaluate(run, run.data.val)[0]
            entry["val_loss_after"] = after if after is not None and math.isfinite(after) else None
            before = entry["val_loss_before"]
            if before is not None and (entry["val_loss_after"] is None or after > before * (1 + opts.nowcast_tolerance)):
                for p, value in zip(self.jumper.params, saved):
                    p.copy_(value)
                entry["rolled_back"] = True
        if not entry.get("rolled_back"):
            self.jumper.restart()
            adjust_optimizer_state(run.optimizer, opts.nowcast_momentum, opts.nowcast_rescale)
        entry["seconds"] = time.perf_counter() - t0
        self.jumps.append(entry)
        return entry

    @stratum.hookimpl
    def stratum_epoch_end(self, run, epoch, record):
        """History: this epoch's jumps kept and rolled back, their mean |displacement| (weight units)
        and, with the guard, the mean change of the validation loss a jump made (before any rollback)."""
        mine = [j for j in self.jumps if j["epoch"] == epoch]
        kept = [j for j in mine if "mean_abs_displacement" in j and not j.get("rolled_back")]
        record["nowcast_jumps"] = len(kept)
        record["nowcast_rollbacks"] = sum(1 for j in mine if j.get("rolled_back"))
        record["nowcast_mean_abs_displacement"] = (sum(j["mean_abs_displacement"] for j in kept) / len(kept)
                                                   if kept else None)
        if self.options.nowcast_guard:
            changes = [j["val_loss_after"] - j["val_loss_before"] for j in mine
                       if j.get("val_loss_after") is not None and j.get("val_loss_before") is not None]
            record["nowcast_val_loss_change"] = sum(changes) / len(changes) if changes else None

    # -- persistence / reporting -------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "jumper": self.jumper.state_dict() if self.jumper is not None else {},
            "jumps": [dict(j) for j in self.jumps],
            **self._prior_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        if not state:
            return
        self.jumper.load_state_dict(state["jumper"])
        self.jumps = [dict(j) for j in state["jumps"]]
        self._load_prior_state(state)

    def summary(self, run) -> dict:
        opts = self.options
        common, report = self._library_summary()
        done = [j for j in self.jumps if "mean_abs_displacement" in j and not j.get("rolled_back")]
        return {
            **common,
            "features": opts.nowcast_features,
            "nowcast": {
                "geometry": self.spec.to_dict(),
                "period": opts.nowcast_period,
                "momentum": opts.nowcast_momentum,
                "guard": opts.nowcast_guard,
                "jumps": len(done),
                "rollbacks": sum(1 for j in self.jumps if j.get("rolled_back")),
                "skipped": sum(1 for j in self.jumps if j.get("skipped")),
                "jump_s": sum(j.get("seconds", 0.0) for j in self.jumps),
                "mean_abs_displacement": (sum(j["mean_abs_displacement"] for j in done) / len(done)) if done else None,
                "log": [dict(j) for j in self.jumps],
                "library": report,
                "predicted_tensors": list(self.jumper.keys) if self.jumper is not None else [],
                "window_bytes": self.jumper.nbytes() if self.jumper is not None else 0,
                "prior_sources": self.sources,
                "prior_build": self.prior_info,
                "prior_dead_share": self.prior_dead_share,
            },
        }
