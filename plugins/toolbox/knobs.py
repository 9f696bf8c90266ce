"""The standard training knobs (weight-decay groups, gradient clipping): re-exported from
:mod:`stratum.engine.knobs`, where the engine that applies them (``--wd-exclude``,
``--clip-grad-norm``, ``--clip-grad-value``) keeps them."""

from stratum.engine.knobs import (  # noqa: F401
    NORM_MODULES, WD_EXCLUDE_CHOICES, clip_gradients_, no_decay_names, parse_wd_exclude, weight_decay_groups,
)

__all__ = ["NORM_MODULES", "WD_EXCLUDE_CHOICES", "clip_gradients_", "no_decay_names", "parse_wd_exclude",
           "weight_decay_groups"]
