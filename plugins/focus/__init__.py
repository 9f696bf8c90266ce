"""The focus algorithm (seed 000) and weight nowcasting (issue 14) as plugins: capture, priors,
the library of regressors, policies, and the strategies ``focus`` and ``nowcast``.

Functional core in the sibling modules (:mod:`.trajectory`, :mod:`.capture`,
:mod:`.prior`, :mod:`.features`, :mod:`.regressors`, :mod:`.library`,
:mod:`.step`, :mod:`.policies`, :mod:`.source`, :mod:`.nowcast`); :mod:`.strategy`
and :mod:`.nowcast_strategy` are the strategies and :mod:`.commands` the
``stratum prior`` CLI. This module declares
options and registers components. See docs/focus.md.
"""

from __future__ import annotations

from pathlib import Path

import attrs

import stratum
from stratum import option

# Only light modules here: registration must not import torch (factories are named by
# "module:attr" strings, or import their module when called).
from .choices import (DTYPE_NAMES, FEATURE_SET_DECLARATIONS, LAYER_CHOICES, NOWCAST_MOMENTUM_CHOICES,
                      OPTIMIZER_STATE_CHOICES, UNCAPTURED_CHOICES)
from .policies import FixedPolicy, GuardedPolicy, NeverPolicy, OncePolicy, PlateauPolicy


@attrs.frozen
class CaptureSampleOptions:
    """What every capture (focus rows or nowcast windows) samples, and how much it keeps."""

    capture_layers: str = option("auto", "Layers to capture: conv (the paper), all parameterised layers, or auto (conv if the model has any, else all).", choices=LAYER_CHOICES)
    capture_max_samples: int = option(20000, "Reservoir size: capture rows kept per parameter tensor.", min=16)
    capture_track: int = option(4096, "Elements per parameter tensor whose trajectory is tracked and sampled.", min=1)
    capture_dtype: str = option("float32", "dtype of stored capture rows.", choices=DTYPE_NAMES)


@attrs.frozen
class CaptureOptions(CaptureSampleOptions):
    capture_every: int = option(1, "Capture every k-th training step.", min=1)
    capture_window: int = option(4, "Trajectory window: recent deltas recorded per element.", min=1, max=64)
    capture_ema: tuple = option((0.9, 0.99), "Decays of the trailing averages recorded per element.", type=float, multiple=True, min=0, max=1, max_exclusive=True)
    capture_center: int = option(0, "Half-width H of the centred average recorded per row (steps t-H..t+H). 0 = auto: 16 for a focus run with --features denoise, else none.", min=0, max=1000)


@attrs.frozen
class CaptureOutOptions(CaptureOptions):
    capture_out: Path | None = option(None, "Capture this run (any strategy) and write a prior file here when it ends.", type=Path, output="file")


# The two mixins below are dict-based (slots=False) so that an options class can combine them
# with a slotted chain (multiple slotted bases would conflict).
@attrs.frozen(slots=False)
class NowcastGeometryOptions:
    """The geometry of nowcast rows (stored in a nowcast prior; a run must use the prior's)."""

    nowcast_every: int = option(1, "nowcast: take a checkpoint of every captured tensor every c steps.", min=1, max=1_000_000)
    nowcast_window: int = option(5, "nowcast: checkpoints in a window (k); the inputs are their k-1 differences.", min=2, max=64)
    nowcast_horizon: int = option(4, "nowcast: predict the displacement H checkpoints (H x c steps) ahead.", min=1, max=100_000)


@attrs.frozen(slots=False)
class SourceOptions:
    """The prior and library options every strategy of the focus family shares."""

    prior: Path | None = option(None, "Prior file to use (from `stratum prior build`); without it a prior is built on an SGD source run first.", type=Path)
    regressor: str = option("linear", "Focus-library backend.", kind="regressor")
    focus_fit_samples: int = option(8192, "Capture rows used to fit each tensor's regressor (bounds fit time and memory).", min=16)
    focus_holdout: float = option(0.2, "Share of capture rows held out to measure each regressor's R^2.", min=0, max=0.5)
    prior_epochs: int = option(3, "Epochs of the SGD source run when the prior is built automatically.", min=1)
    prior_seed_offset: int = option(1000, "The source run uses seed + this offset (a different seed from the target).", min=1)
    prior_data_fraction: float = option(1.0, "Share of the training split the source run trains on.", min=0, max=1, min_exclusive=True)
    prior_dataset: str | None = option(None, "Data set of the automatically built prior's source run (default: the run's own). Another task's data gives a prior from a similar task; a focus prior then needs the same model shapes, a nowcast prior does not.", type=str, optional=True, kind="dataset")


@attrs.frozen
class FocusOptions(SourceOptions, CaptureOptions):
    features: str = option("paper", "Feature set of the focus library (paper = weight only).", kind="feature_set")
    policy: str = option("plateau", "Switching policy between sgd and focus epochs.", kind="policy")
    focus_steps: int = option(0, "Steps in one focus epoch (0 = as many as an SGD epoch).", min=0)
    focus_optimizer_state: str = option("auto", "Optimiser state (momentum) at a switch: keep, reset, rescale by --focus-rescale, or auto (reset for --features denoise, else keep).", choices=OPTIMIZER_STATE_CHOICES)
    focus_rescale: float = option(0.5, "Factor for --focus-optimizer-state rescale.", min=0, max=1)
    focus_uncaptured: str = option("freeze", "Parameters the library does not predict, in focus steps: freeze, or coast on momentum.", choices=UNCAPTURED_CHOICES)


@attrs.frozen
class NowcastCaptureOptions(NowcastGeometryOptions, CaptureSampleOptions):
    """What a nowcast capture reads (``stratum prior build --kind nowcast``)."""


@attrs.frozen
class NowcastOptions(SourceOptions, NowcastCaptureOptions):
    nowcast_features: str = option("nowcast", "Feature set of the nowcast library (one whose rows are nowcast windows).", kind="feature_set")
    nowcast_period: int = option(50, "Jump every N SGD steps (a multiple of --nowcast-every, at least (window-1) x every).", min=1)
    nowcast_momentum: str = option("keep", "Optimiser momentum after a jump: keep, reset, or rescale by --nowcast-rescale.", choices=NOWCAST_MOMENTUM_CHOICES)
    nowcast_rescale: float = option(0.5, "Factor for --nowcast-momentum rescale.", min=0, max=1)
    nowcast_guard: bool = option(False, "Roll back a jump that raises the validation loss by more than --nowcast-tolerance (two validation passes per jump, on the clock).")
    nowcast_tolerance: float = option(0.0, "nowcast guard: allowed relative rise of the validation loss at a jump (0.01 = 1%).", min=0)


@attrs.frozen
class RidgeOptions:
    ridge_alpha: float = option(1e-3, "linear: ridge penalty (relative to the sample count).", min=0)


@attrs.frozen
class MLPOptions:
    mlp_hidden: tuple = option((16,), "mlp: hidden layer sizes (ReLU).", type=int, multiple=True, min=1)
    mlp_max_epochs: int = option(40, "mlp: most training epochs.", min=1)
    mlp_patience: int = option(4, "mlp: early-stopping patience on held-out capture rows.", min=1)
    mlp_lr: float = option(3e-3, "mlp: Adam learning rate.", min=0, min_exclusive=True)


@attrs.frozen
class XGBoostOptions:
    xgb_trees: int = option(60, "xgboost: boosting rounds.", min=1)
    xgb_depth: int = option(4, "xgboost: tree depth.", min=1, max=16)
    xgb_lr: float = option(0.2, "xgboost: learning rate (eta).", min=0, min_exclusive=True)


# Each policy declares exactly the options it reads.
def _switch_threshold():
    return option(1.0, "plateau/guarded: switch when the val-accuracy gain over the previous epoch is below this (points).")


@attrs.frozen
class PlateauOptions:
    switch_threshold: float = _switch_threshold()


@attrs.frozen
class GuardedOptions:
    switch_threshold: float = _switch_threshold()
    guard_tolerance: float = option(0.0, "guarded: roll back a focus epoch that lowers val accuracy by more than this (points).", min=0)


@attrs.frozen
class FixedOptions:
    switch_every: int = option(2, "fixed: switch every k epochs.", min=1)


@attrs.frozen
class NeverOptions:
    """never reads no option."""


@attrs.frozen
class OnceOptions:
    switch_at: int = option(5, "once: switch to focus after this epoch.", min=1)


def _focus_factory(run, options):
    from .strategy import FocusStrategy

    return FocusStrategy(run, options)


def _nowcast_factory(run, options):
    from .nowcast_strategy import NowcastStrategy

    return NowcastStrategy(run, options)


@stratum.hookimpl
def stratum_register_strategies():
    return [
        stratum.strategy(
            "focus", _focus_factory,
            "The focus algorithm: SGD epochs and data-free focus epochs from a prior (--prior, --regressor, --features, --policy).",
            options=FocusOptions,
        ),
        stratum.strategy(
            "nowcast", _nowcast_factory,
            "Weight nowcasting (WNN/NiNo): SGD, and every --nowcast-period steps a jump to the weights predicted "
            "--nowcast-horizon checkpoints ahead, from a prior of earlier runs (--prior, --regressor).",
            options=NowcastOptions,
        ),
    ]


@stratum.hookimpl
def stratum_register_regressors():
    return [
        stratum.regressor("linear", "stratum_plugins.focus.regressors:build_linear",
                          "Closed-form ridge regression in torch.", options=RidgeOptions),
        stratum.regressor("mlp", "stratum_plugins.focus.regressors:build_mlp",
                          "Small torch MLP, early stopping on held-out capture rows.", options=MLPOptions),
        stratum.regressor("xgboost", "stratum_plugins.focus.regressors:build_xgboost",
                          "XGBoost trees: hist on CPU, device=cuda on a GPU.", options=XGBoostOptions),
    ]


@attrs.frozen
class DenoiseOptions:
    denoise_pull: float = option(0.05, "denoise: fraction of the predicted noise displacement removed per focus step.", min=0, max=1, min_exclusive=True)


@stratum.hookimpl
def stratum_register_feature_sets():
    return [
        stratum.feature_set(name, f"stratum_plugins.focus.features:{cls}", description,
                            options=DenoiseOptions if name == "denoise" else None)
        for name, (cls, description) in FEATURE_SET_DECLARATIONS.items()
    ]


@stratum.hookimpl
def stratum_register_switching_policies():
    return [
        stratum.policy("plateau", lambda o: PlateauPolicy(o.switch_threshold),
                       "The paper's rule: switch when the val gain over the previous epoch < --switch-threshold.", options=PlateauOptions),
        stratum.policy("fixed", lambda o: FixedPolicy(o.switch_every), "Switch every --switch-every epochs.", options=FixedOptions),
        stratum.policy("never", lambda o: NeverPolicy(), "Never switch: SGD only (a control).", options=NeverOptions),
        stratum.policy("once", lambda o: OncePolicy(o.switch_at), "Switch to focus once, after --switch-at epochs.", options=OnceOptions),
        stratum.policy("guarded", lambda o: GuardedPolicy(o.switch_threshold, o.guard_tolerance),
                       "Plateau, and roll back any focus epoch that lowered val accuracy.", options=GuardedOptions),
    ]


def _capture_extension(run, options: CaptureOutOptions):
    if options.capture_out is None:
        return None
    from .source import CaptureExtension
    from .strategy import capture_config_from

    return CaptureExtension(capture_config_from(options, seed=run.config.seed), options.capture_out)


@stratum.hookimpl
def stratum_register_extensions():
    return stratum.extension(
        "capture", _capture_extension,
        "Capture parameters and gradients of any run (--capture-out PRIOR) into a focus prior.",
        options=CaptureOutOptions,
    )


@stratum.hookimpl
def stratum_register_commands():
    from .commands import prior_group

    return prior_group
