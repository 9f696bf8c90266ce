"""Strategy ``focus`` (and :class:`PriorStrategy`, the prior and library every strategy of the
focus family shares): SGD epochs and data-free focus epochs, switched by a policy.

Lifecycle (see docs/focus.md):

1. ``setup``: resolve the feature set, regressor and policy (a typo must not
   cost a source run); the engine has built the optimiser already.
   Stage ``prior`` (:meth:`FocusStrategy.build_prior`, timed by the engine): load
   ``--prior`` or build one on an SGD source run (seed ``seed + prior_seed_offset``,
   ``prior_epochs`` epochs; the stage's wall clock becomes ``run.prior_s``, counted
   only in the all-in clock). Stage ``setup`` (:meth:`FocusStrategy.prepare`, timed by
   the engine): check the prior's architecture against the model and fit the focus
   library (the stage's wall clock is added to ``run.setup_s``, so it counts in ``cum_s``).
2. Mode ``sgd`` (uses data): the engine's forward/backward and optimiser step.
3. Mode ``focus`` (no data): ``stratum_apply_update`` writes predicted
   gradients to ``.grad`` and steps the same optimiser.
4. After each epoch the policy decides the next mode (validation accuracy
   only); ``guarded`` may roll a focus epoch back.
"""

from __future__ import annotations

import collections
import copy
import sys
import time

import attrs
import torch

import stratum
from stratum import Mode, Strategy, SwitchDecision
from stratum.errors import ConfigError, PriorError
from stratum.options import SEED_MAX

from .capture import CaptureConfig, architecture_signature
from .library import fit_library
from .policies import FOCUS, SGD
from .prior import Prior, check_architecture, check_focus_prior, load_prior, save_prior
from .source import build_prior as build_prior_on_source_run
from .source import source_config
from .step import FocusUpdater
from .trajectory import TrajectorySpec

FOCUS_MODE = Mode(FOCUS, uses_data=False, description="predicted gradients from the focus library; no data")
SGD_MODE = Mode(SGD, uses_data=True, description="mini-batch gradient step through the optimiser")
AUTO_PRIOR_NAME = "prior.safetensors"


AUTO_CENTER = 16  # --capture-center when 0 and the feature set needs centred averages


def capture_config_from(options, seed: int) -> CaptureConfig:
    center = options.capture_center
    if not center and getattr(options, "features", None) == "denoise":
        center = AUTO_CENTER
    return CaptureConfig(
        layers=options.capture_layers, every=options.capture_every, max_samples=options.capture_max_samples,
        track=options.capture_track, dtype=options.capture_dtype,
        trajectory=TrajectorySpec(window=options.capture_window, ema_decays=tuple(options.capture_ema)),
        seed=seed, center=center,
    )


def adjust_optimizer_state(optimizer: torch.optim.Optimizer, policy: str, factor: float) -> None:
    """What happens to optimiser state (momentum buffers) when the method switches.

    ``keep``: nothing; ``reset``: all state dropped (buffers restart from the
    next gradient); ``rescale``: first-moment buffers (``momentum_buffer``,
    ``exp_avg``) multiplied by ``factor``; second moments are left alone.
    """
    if policy in ("keep", "auto"):
        return
    if policy == "reset":
        optimizer.state = collections.defaultdict(dict)
        return
    for state in optimizer.state.values():
        for name in ("momentum_buffer", "exp_avg"):
            buf = state.get(name)
            if isinstance(buf, torch.Tensor):
                buf.mul_(factor)


class PriorStrategy(Strategy):
    """What the strategies of the focus family share: a prior (read, or built on an SGD source
    run) and a library of regressors fitted on it. Subclasses say which feature set they use
    (:meth:`setup` calls :meth:`_resolve`) and how an automatic source run is captured
    (:meth:`source_capture_config`)."""

    def __init__(self, run, options=None):
        super().__init__(run, options)
        self.prior_label: object = None
        self.prior_info: dict = {}
        self.prior_dead_share: float | None = None
        self.library = None
        self.fit_s = 0.0
        self.capture_s = 0.0
        self._prior: Prior | None = None  # between the prior and setup stages
        self._feature_set = None
        self._regressor_component = None
        self._regressor_options = None

    def _resolve(self, run, features: str) -> None:
        """The feature set and regressor components, by name (a typo fails before any work)."""
        registries = run.registries
        feature_component = registries.get("feature_set", features)
        self._regressor_component = registries.get("regressor", self.options.regressor)
        self._feature_set = feature_component.factory(run.options_for("feature_set", features))
        self._regressor_options = run.options_for("regressor", self.options.regressor)

    def source_capture_config(self, seed: int) -> CaptureConfig:
        """How an automatically built prior's source run is captured."""
        return capture_config_from(self.options, seed=seed)

    def build_prior(self, run) -> bool:
        """Stage ``prior``: read ``--prior`` (or the prior a resumed run built), or build one on an
        SGD source run. ``True`` when one was built (its wall clock counts in ``run.prior_s``)."""
        built = self.options.prior is None and not self._saved_prior_to_resume(run)
        self._prior = self._obtain_prior(run)
        return built

    def _fit_library(self, run, prior: Prior):
        """Fit the library on ``prior`` (seconds in ``fit_s``); PriorError when no tensor could be fitted."""
        opts = self.options
        regressor_component, regressor_options = self._regressor_component, self._regressor_options

        def make_regressor():
            regressor = regressor_component.factory(regressor_options)
            if hasattr(regressor, "seed"):
                regressor.seed = run.config.seed
            return regressor

        t0 = time.perf_counter()
        self.library = fit_library(
            prior.tensors, self._feature_set, make_regressor, source_lr=prior.source_lr,
            max_samples=opts.focus_fit_samples, holdout=opts.focus_holdout, seed=run.config.seed, device=run.device,
        )
        self.fit_s = time.perf_counter() - t0
        if not self.library.models:
            raise PriorError(f"prior {self.prior_label} has too few capture rows to fit any layer")
        return self.library

    def _prior_state(self) -> dict:
        """The prior and library facts a checkpoint keeps (a resume reuses the prior file)."""
        return {"capture_s": self.capture_s, "fit_s": self.fit_s, "prior_info": dict(self.prior_info)}

    def _load_prior_state(self, state: dict) -> None:
        self.capture_s = float(state.get("capture_s", self.capture_s))
        self.fit_s = float(state.get("fit_s", self.fit_s))
        if state.get("prior_info"):  # how the interrupted run built its prior (a resume reuses the file)
            self.prior_info = dict(state["prior_info"])

    def _library_summary(self) -> tuple[dict, dict]:
        """(summary entries every strategy of the family reports, the library's per-tensor report)."""
        report = self.library.report() if self.library is not None else {}
        return {
            "regressor": self.options.regressor,
            "prior": self.prior_label,
            "capture_s": self.capture_s,
            "fit_s": self.fit_s,
            "fit_r2": {layer: {kind: v.get("r2") for kind, v in kinds.items()} for layer, kinds in report.items()},
            # the automatic prior's source run in optimizer steps and samples (0 with a --prior file)
            "prior_steps": int(self.prior_info.get("source_steps") or 0),
            "prior_samples": int(self.prior_info.get("source_samples") or 0),
        }, report

    def _saved_prior_to_resume(self, run) -> bool:
        run_dir = run.run_dir()
        return bool(run.config.resume and run_dir is not None and (run_dir / AUTO_PRIOR_NAME).exists())

    def _obtain_prior(self, run) -> Prior:
        opts = self.options
        config = run.config
        if opts.prior is not None:
            self.prior_label = str(opts.prior)
            return load_prior(opts.prior)
        run_dir = run.run_dir()
        saved = run_dir / AUTO_PRIOR_NAME if run_dir is not None else None
        if config.resume and saved is not None and saved.exists():
            self.prior_label = str(saved)  # built by the interrupted run; prior_s comes back with the checkpoint
            return load_prior(saved)
        # Wrap around rather than leave the seed range (the same seed for every seed but the last ones).
        source_seed = (config.seed + opts.prior_seed_offset) % (SEED_MAX + 1)
        src = source_config(config, seed=source_seed, epochs=opts.prior_epochs)
        if opts.prior_dataset is not None:  # a prior from another task (the paper's "similar task")
            src = attrs.evolve(src, dataset=opts.prior_dataset)
        if not config.quiet:
            print(f"stratum: {self.name}: building a prior on an SGD source run (seed {src.seed}, {src.epochs} epochs, "
                  f"data {src.dataset})", flush=True)
        capture = self.source_capture_config(src.seed)
        prior, info = build_prior_on_source_run(src, run.pm, capture, data_fraction=opts.prior_data_fraction)
        if saved is not None:
            save_prior(saved, prior)
        self.capture_s = info["capture_s"]
        self.prior_info = info
        self.prior_label = (str(saved) if saved is not None
                            else f"built: sgd source run on {src.dataset}, seed {src.seed}")
        return prior


class FocusStrategy(PriorStrategy):
    name = "focus"
    modes = {SGD: SGD_MODE, FOCUS: FOCUS_MODE}
    initial_mode = SGD

    def __init__(self, run, options=None):
        super().__init__(run, options)
        self.updater: FocusUpdater | None = None
        self.policy = None
        self.focus_steps = 0
        self.sgd_steps = 0
        self.last_mode = SGD
        self.focus_disabled = False
        self.fallback_pending: dict | None = None
        self.rollbacks: list[dict] = []
        self.fallbacks: list[dict] = []
        self.snapshot: dict | None = None
        self.snapshot_epoch = 0
        self.optimizer_state = "keep"

    # -- setup and the stages before epoch 1 -------------------------------------------
    def setup(self, run) -> None:
        """Resolve every component name and option first: a typo must not cost a source run."""
        opts = self.options
        self._resolve(run, opts.features)
        if getattr(self._feature_set, "nowcast", False):
            raise ConfigError(f"feature set {opts.features!r} predicts nowcast displacements; "
                              "use it with --strategy nowcast (--nowcast-features)")
        policy_component = run.registries.get("policy", opts.policy)
        self.policy = policy_component.factory(run.options_for("policy", opts.policy))
        self.optimizer_state = opts.focus_optimizer_state
        if self.optimizer_state == "auto":  # a feature set may need momentum dropped at switches (denoise does)
            self.optimizer_state = getattr(self._feature_set, "optimizer_state", "keep")

    def prepare(self, run) -> None:
        """Stage ``setup``: check the prior against the model, fit the focus library (counted in ``cum_s``)."""
        opts = self.options
        prior = self._prior
        self.prior_dead_share = prior.metadata.get("dead_share")  # None for priors written before issue 15
        check_focus_prior(prior.metadata, self.prior_label)
        check_architecture(prior.metadata["architecture"], architecture_signature(run.model), self.prior_label)
        self._fit_library(run, prior)
        t0 = time.perf_counter()
        capture = CaptureConfig.from_dict(prior.metadata["capture"])
        self.updater = FocusUpdater(run.model, self.library, capture.layers, capture.trajectory, opts.focus_uncaptured)
        self.fit_s += time.perf_counter() - t0
        self._prior = None  # the library holds what it needs

    # -- epochs ------------------------------------------------------------------------
    def steps_in_epoch(self, run, mode: str) -> int:
        if mode == FOCUS and self.options.focus_steps:
            return self.options.focus_steps
        return run.steps_per_data_epoch

    @stratum.hookimpl
    def stratum_epoch_start(self, run, epoch, mode):
        if mode != self.last_mode:
            adjust_optimizer_state(run.optimizer, self.optimizer_state, self.options.focus_rescale)
            self.last_mode = mode
        if mode == FOCUS and self.policy.needs_snapshot and self.snapshot_epoch != epoch:
            self.snapshot = {
                "model": {k: v.detach().clone() for k, v in run.model.state_dict().items()},
                "optimizer": copy.deepcopy(run.optimizer.state_dict()),
                "updater": copy.deepcopy(self.updater.state_dict()),
            }
            self.snapshot_epoch = epoch

    @stratum.hookimpl
    def stratum_apply_update(self, run, step):
        if run.mode != FOCUS:
            return None
        if self.focus_disabled:
            return "focus-disabled"  # after a fallback the rest of this epoch makes no move
        result = self.updater.step(run.optimizer, mark=run.timer.mark)
        for p in self.updater.params:
            p.grad = None  # predicted gradients are not measurements: hide them from later hooks
        if not result.ok:
            self.focus_disabled = True
            self.fallback_pending = {"epoch": run.epoch + 1, "step": step, "layer": result.bad_key,
                                     "reason": "non-finite predicted gradient"}
            self.fallbacks.append(dict(self.fallback_pending))
            print(f"stratum: focus: non-finite prediction for {result.bad_key} at epoch {run.epoch + 1} step {step}; "
                  "falling back to SGD", file=sys.stderr, flush=True)
            return "focus-fallback"
        self.focus_steps += 1
        return "focus"

    @stratum.hookimpl
    def stratum_after_train_step(self, run, step, loss):
        if run.mode == SGD:
            self.sgd_steps += 1
        self.updater.observe()

    @stratum.hookimpl
    def stratum_epoch_end(self, run, epoch, record):
        if record.get("mode") == FOCUS and self.fallback_pending is not None:
            record["focus_fallback"] = True
        if record.get("mode") == FOCUS and record.get("diverged") and self.snapshot is not None:
            # A guarded focus epoch blew the weights up (non-finite validation loss): undo it
            # and carry on with SGD instead of ending the run, which the guard exists to prevent.
            self._rollback(run, record, "rollback: focus epoch made the validation loss non-finite")
            del record["diverged"]
            record.pop("stopped_reason", None)

    @stratum.hookimpl
    def stratum_decide_switch(self, run, epoch, history):
        if history and history[-1].get("rolled_back"):
            # Already undone at epoch end (its validation loss went non-finite): back to SGD.
            self.fallback_pending = None
            return SwitchDecision(SGD, self.rollbacks[-1]["reason"])
        if self.fallback_pending is not None:
            reason = f"fallback: {self.fallback_pending['reason']} ({self.fallback_pending['layer']})"
            self.fallback_pending = None
            # The steps before the bad prediction were applied and may have wrecked the weights
            # (measured: a trajectory focus epoch that ends in NaN leaves weights that make the
            # next SGD epoch diverge), so a guarded policy still judges, and may undo, the epoch.
            decision = self.policy.decide(history, FOCUS)
            if decision is not None and decision.rollback:
                self._rollback(run, history[-1], f"{decision.reason}; {reason}")
            return SwitchDecision(SGD, reason)
        decision = self.policy.decide(history, run.mode)
        if decision is None:
            return None
        if decision.rollback:
            self._rollback(run, history[-1], decision.reason)
        if decision.to == FOCUS and self.focus_disabled:
            return None
        return SwitchDecision(decision.to, decision.reason)

    @stratum.hookimpl
    def stratum_fit_end(self, run, summary):
        # The engine asks for no switch after the last epoch; a guarded policy still must not
        # leave the run on a focus epoch that lowered validation accuracy.
        history = run.history
        if not history or history[-1].get("mode") != FOCUS or history[-1].get("rolled_back") or self.snapshot is None:
            return
        decision = self.policy.decide(history, FOCUS)
        if decision is not None and decision.rollback:
            self._rollback(run, history[-1], decision.reason + " (final epoch)")
            summary["rollbacks"] = list(self.rollbacks)

    def _rollback(self, run, record: dict, reason: str) -> None:
        if self.snapshot is None:
            return
        run.model.load_state_dict(self.snapshot["model"])
        run.optimizer.load_state_dict(self.snapshot["optimizer"])
        self.updater.load_state_dict(self.snapshot["updater"])
        record["rolled_back"] = True
        self.rollbacks.append({"epoch": record["epoch"], "val_acc": record.get("val_acc"), "reason": reason})
        self.snapshot = None

    # -- persistence / reporting -------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "updater": self.updater.state_dict() if self.updater is not None else {},
            "focus_steps": self.focus_steps,
            "sgd_steps": self.sgd_steps,
            "last_mode": self.last_mode,
            "focus_disabled": self.focus_disabled,
            "fallback_pending": dict(self.fallback_pending) if self.fallback_pending else None,
            "rollbacks": [dict(r) for r in self.rollbacks],
            "fallbacks": [dict(f) for f in self.fallbacks],
            "snapshot": self.snapshot,
            "snapshot_epoch": self.snapshot_epoch,
            **self._prior_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        if not state:
            return
        self.updater.load_state_dict(state["updater"])
        self.focus_steps = int(state["focus_steps"])
        self.sgd_steps = int(state["sgd_steps"])
        self.last_mode = state["last_mode"]
        self.focus_disabled = bool(state["focus_disabled"])
        self.fallback_pending = state.get("fallback_pending")
        self.rollbacks = list(state["rollbacks"])
        self.fallbacks = list(state["fallbacks"])
        self.snapshot = state.get("snapshot")
        self.snapshot_epoch = int(state.get("snapshot_epoch", 0))
        self._load_prior_state(state)

    def summary(self, run) -> dict:
        opts = self.options
        common, report = self._library_summary()
        return {
            **common,
            "features": opts.features,
            "policy": opts.policy,
            "focus_steps": self.focus_steps,
            "sgd_steps": self.sgd_steps,
            "rollbacks": list(self.rollbacks),
            "fallbacks": list(self.fallbacks),
            "focus": {
                "library": report,
                "optimizer_state": self.optimizer_state,
                "uncaptured": opts.focus_uncaptured,
                "focus_steps_per_epoch": opts.focus_steps or run.steps_per_data_epoch,
                "predicted_tensors": list(self.updater.keys) if self.updater is not None else [],
                "trajectory_bytes": self.updater.nbytes() if self.updater is not None else 0,
                "prior_build": self.prior_info,
                # share of the prior's tracked elements that never had a nonzero gradient; their rows are
                # not in the prior, so every R^2 above is over live elements only
                "prior_dead_share": self.prior_dead_share,
            },
        }
