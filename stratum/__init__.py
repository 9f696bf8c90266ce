"""stratum: a pluggable training-strategy framework for PyTorch."""

from .version import __version__  # noqa: E402

from .hookspecs import hookimpl  # noqa: E402
from .components import (  # noqa: E402
    Component,
    LazyFactory,
    augmentation,
    dataset,
    extension,
    feature_set,
    initializer,
    logger,
    model,
    optimizer,
    policy,
    profiler,
    regressor,
    schedule,
    strategy,
)
from .options import option  # noqa: E402
from .strategy_base import Mode, Strategy, SwitchDecision  # noqa: E402
from .errors import StratumError, ConfigError  # noqa: E402
from .api import Result, fit  # noqa: E402  (imports torch only when fit() is called)

__all__ = [
    "__version__",
    "hookimpl",
    "Component",
    "LazyFactory",
    "strategy",
    "model",
    "dataset",
    "initializer",
    "optimizer",
    "schedule",
    "regressor",
    "policy",
    "profiler",
    "feature_set",
    "extension",
    "logger",
    "augmentation",
    "option",
    "Strategy",
    "Mode",
    "SwitchDecision",
    "StratumError",
    "ConfigError",
    "fit",
    "Result",
]
