"""Optimisers by name: sgd, momentum, nesterov, adagrad, rmsprop, adam, adamw.

Functional core first (one builder per optimiser), then the registration.
Every builder reads ``--lr`` and ``--weight-decay`` from the run config; the
sgd family also reads ``--momentum`` / ``--nesterov`` (declared as the
component's ``reads``, so a bench axis over them skips the other optimisers);
each optimiser declares its own options class below, and an option several of
them read (``--eps``) is one shared declaration. Registering them does not
import torch: each builder imports it when it runs.

Where an optimiser has a default of its own for a core option (adamw's weight
decay 0.01, momentum's and nesterov's ``--momentum-default``), it is declared as
the component's ``defaults`` and applies only when the user did not give the
option: an explicit value always wins, even one equal to the core default
(``--optimizer adamw --weight-decay 0`` trains without decay).
"""

from __future__ import annotations

import attrs

import stratum
from stratum import ConfigError, option

ADAMW_WEIGHT_DECAY = 0.01  # torch's AdamW default

# Each optimiser declares the options it reads, so a bench axis over one (``--axis beta1=...``)
# multiplies only the runs whose optimiser reads it. An option several optimisers read is
# declared identically on each (one flag; see stratum.config.option_collision).


def _eps():
    return option(1e-8, "Adaptive optimisers' denominator epsilon.", min=0, min_exclusive=True)


@attrs.frozen
class MomentumOptions:
    """Options of ``momentum`` and ``nesterov`` (their momentum when ``--momentum`` is not given)."""

    momentum_default: float = option(0.9, "Momentum used by 'momentum'/'nesterov' when --momentum is not given.",
                                     min=0, max=1, max_exclusive=True)


@attrs.frozen
class AdagradOptions:
    """Options of ``adagrad``."""

    eps: float = _eps()
    adagrad_lr_decay: float = option(0.0, "AdaGrad learning-rate decay.", min=0)
    adagrad_initial_accumulator: float = option(0.0, "AdaGrad: starting value of the summed squared gradients.", min=0)


@attrs.frozen
class RMSpropOptions:
    """Options of ``rmsprop``."""

    eps: float = _eps()
    rmsprop_alpha: float = option(0.99, "RMSProp squared-gradient decay.", min=0, max=1, max_exclusive=True)
    rmsprop_momentum: float = option(0.0, "RMSProp momentum (0 = none; --momentum is for the sgd family).", min=0, max=1, max_exclusive=True)
    rmsprop_centered: bool = option(False, "RMSProp: normalise by the gradient's variance instead of its second moment.")


@attrs.frozen
class AdamOptions:
    """Options of ``adam`` and ``adamw``."""

    beta1: float = option(0.9, "Adam/AdamW first-moment decay.", min=0, max=1, max_exclusive=True)
    beta2: float = option(0.999, "Adam/AdamW second-moment decay.", min=0, max=1, max_exclusive=True)
    eps: float = _eps()
    amsgrad: bool = option(False, "Adam/AdamW: use the AMSGrad variant.")


def build_sgd(params, config, options):
    """Plain SGD when --momentum 0; heavy-ball or Nesterov momentum otherwise."""
    import torch

    return torch.optim.SGD(
        params, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov,
        weight_decay=config.weight_decay,
    )


def _momentum(config, options) -> float:
    """--momentum when given (even 0), else --momentum-default."""
    return config.momentum if config.is_set("momentum") else options.momentum_default


def build_momentum(params, config, options):
    """Heavy-ball SGD: ``--momentum`` when given, else ``options.momentum_default``."""
    import torch

    return torch.optim.SGD(params, lr=config.lr, momentum=_momentum(config, options), weight_decay=config.weight_decay)


def build_nesterov(params, config, options):
    """Nesterov SGD; raises ConfigError when the momentum used is 0."""
    import torch

    momentum = _momentum(config, options)
    if momentum <= 0:
        raise ConfigError("--optimizer nesterov needs --momentum > 0 (Nesterov momentum without momentum is undefined)")
    return torch.optim.SGD(params, lr=config.lr, momentum=momentum, nesterov=True, weight_decay=config.weight_decay)


def build_adagrad(params, config, options):
    """torch Adagrad from ``--lr``, ``--weight-decay`` and :class:`AdagradOptions`."""
    import torch

    return torch.optim.Adagrad(
        params, lr=config.lr, lr_decay=options.adagrad_lr_decay, eps=options.eps,
        initial_accumulator_value=options.adagrad_initial_accumulator, weight_decay=config.weight_decay,
    )


def build_rmsprop(params, config, options):
    """torch RMSprop from ``--lr``, ``--weight-decay`` and :class:`RMSpropOptions`."""
    import torch

    return torch.optim.RMSprop(
        params, lr=config.lr, alpha=options.rmsprop_alpha, eps=options.eps,
        momentum=options.rmsprop_momentum, centered=options.rmsprop_centered, weight_decay=config.weight_decay,
    )


def build_adam(params, config, options):
    """torch Adam from ``--lr``, ``--weight-decay`` and :class:`AdamOptions`."""
    import torch

    return torch.optim.Adam(
        params, lr=config.lr, betas=(options.beta1, options.beta2), eps=options.eps,
        weight_decay=config.weight_decay, amsgrad=options.amsgrad,
    )


def build_adamw(params, config, options):
    """torch AdamW from ``--lr``, :class:`AdamOptions` and ``--weight-decay`` (0.01 when not given)."""
    import torch

    # AdamW's decay is decoupled; without --weight-decay use torch's usual 0.01.
    decay = config.weight_decay if config.is_set("weight_decay") else ADAMW_WEIGHT_DECAY
    return torch.optim.AdamW(
        params, lr=config.lr, betas=(options.beta1, options.beta2), eps=options.eps,
        weight_decay=decay, amsgrad=options.amsgrad,
    )


def _momentum_defaults(options) -> dict:
    return {"momentum": options.momentum_default}


_SGD_FAMILY_READS = ("momentum", "nesterov")  # selective core options (stratum.config.SELECTIVE_CORE_OPTIONS)

# name: (builder, description, options class, defaults for core options, selective core options read)
_BUILDERS = {
    "sgd": (build_sgd, "torch SGD with --momentum, --nesterov and --weight-decay as given.", None, None,
            _SGD_FAMILY_READS),
    "momentum": (build_momentum, "Heavy-ball momentum SGD (--momentum, default --momentum-default 0.9).",
                 MomentumOptions, _momentum_defaults, ("momentum",)),
    "nesterov": (build_nesterov, "Nesterov momentum SGD.", MomentumOptions, _momentum_defaults, ("momentum",)),
    "adagrad": (build_adagrad, "AdaGrad: per-parameter rates from summed squared gradients.", AdagradOptions, None, ()),
    "rmsprop": (build_rmsprop, "RMSProp: rates from a decaying average of squared gradients.", RMSpropOptions, None, ()),
    "adam": (build_adam, "Adam: momentum plus RMSProp-style scaling, bias-corrected.", AdamOptions, None, ()),
    "adamw": (build_adamw, "AdamW: Adam with decoupled weight decay (default 0.01 unless --weight-decay is given).",
              AdamOptions, {"weight_decay": ADAMW_WEIGHT_DECAY}, ()),
}


@stratum.hookimpl
def stratum_register_optimizers():
    return [
        stratum.optimizer(name, builder, description, options=options, defaults=defaults, reads=reads)
        for name, (builder, description, options, defaults, reads) in _BUILDERS.items()
    ]
