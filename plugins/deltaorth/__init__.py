"""Delta-orthogonal initialisation, the tanh critical line and the vanilla CNN (seed 003).

Functional core in :mod:`.critical` (mean-field critical line), :mod:`.init`
(delta-orthogonal and Gaussian kernels) and :mod:`.vanilla_cnn` (the model);
this module declares options and registers the components:

* initialisers ``delta-orthogonal`` and ``gaussian`` (the comparison, same sigma_w);
* model ``vanilla-cnn`` (``--vcnn-depth``, ``--vcnn-channels``).

By default both initialisers sit on the tanh critical line at ``--init-q-star``
(0.026 gives sigma_w^2 ~ 1.05, sigma_b^2 ~ 2.0e-5); ``--init-sigma-w`` /
``--init-sigma-b`` override either value.
"""

from __future__ import annotations

import math

import attrs

import stratum
from stratum import ConfigError, option

# The functional core (numpy, torch) is imported by the factories when a run calls them,
# so registration stays light.


@attrs.frozen
class CriticalInitOptions:
    init_q_star: float = option(
        0.026, "delta-orthogonal/gaussian: fixed-point pre-activation variance q* that picks the point on the tanh critical line.",
        min=0, min_exclusive=True, max=10,
    )
    init_sigma_w: float | None = option(
        None, "delta-orthogonal/gaussian: weight scale sigma_w (default: critical value at q*).", type=float, min=0,
        min_exclusive=True,
    )
    init_sigma_b: float | None = option(
        None, "delta-orthogonal/gaussian: bias standard deviation sigma_b (default: critical value at q*).", type=float,
        min=0,
    )


def resolve_sigmas(options: CriticalInitOptions) -> tuple[float, float]:
    """(sigma_w, sigma_b): the critical pair at q*, unless given explicitly."""
    from .critical import critical_point

    try:
        sigma_w2, sigma_b2 = critical_point(options.init_q_star)
    except ValueError as exc:
        raise ConfigError(f"--init-q-star: {exc}") from None
    sigma_w = options.init_sigma_w if options.init_sigma_w is not None else math.sqrt(sigma_w2)
    sigma_b = options.init_sigma_b if options.init_sigma_b is not None else math.sqrt(sigma_b2)
    return sigma_w, sigma_b


def _initializer(scheme: str):
    def initialise(model, options: CriticalInitOptions, generator):
        from .init import InitShapeError, init_model_

        sigma_w, sigma_b = resolve_sigmas(options)
        try:
            init_model_(model, scheme, generator, sigma_w, sigma_b)
        except InitShapeError as exc:
            hint = " (use --init gaussian or orthogonal for this model)" if scheme == "delta-orthogonal" else ""
            raise ConfigError(f"--init {scheme}: {exc}{hint}") from None

    return initialise


@attrs.frozen
class VanillaCNNOptions:
    vcnn_depth: int = option(32, "vanilla-cnn: number d of 3x3 convolutions after the stride-1,2,2 stem.", min=1, max=100_000)
    vcnn_channels: int = option(64, "vanilla-cnn: channels c of every convolution.", min=1, max=4096)
    # Shared with the zoo's models (same flag, same meaning).
    batch_norm: bool = option(False, "Insert batch norm after each conv / hidden linear layer.")
    dropout: float = option(0.0, "Dropout probability before classifier / after hidden layers.", min=0, max=1, max_exclusive=True)


def _vanilla_cnn(spec, options: VanillaCNNOptions):
    if len(spec.input_shape) != 3:
        raise ConfigError(f"vanilla-cnn needs image input (C, H, W); this data set gives shape {tuple(spec.input_shape)}")
    from .vanilla_cnn import build_vanilla_cnn

    return build_vanilla_cnn(
        spec.input_shape, spec.num_outputs, depth=options.vcnn_depth, channels=options.vcnn_channels,
        batch_norm=options.batch_norm, dropout=options.dropout,
    )


@stratum.hookimpl
def stratum_register_initializers():
    return [
        stratum.initializer(
            "delta-orthogonal", _initializer("delta-orthogonal"),
            "Xiao et al. 2018: orthogonal centre tap, zeros elsewhere, x sigma_w; tanh-critical by default.",
            options=CriticalInitOptions,
        ),
        stratum.initializer(
            "gaussian", _initializer("gaussian"),
            "N(0, sigma_w^2/fan_in) weights, N(0, sigma_b^2) biases: delta-orthogonal's comparison.",
            options=CriticalInitOptions,
        ),
    ]


@stratum.hookimpl
def stratum_register_models():
    return stratum.model(
        "vanilla-cnn", _vanilla_cnn,
        "Xiao et al.'s tanh CNN: 3x3 stem (strides 1,2,2), --vcnn-depth convs of --vcnn-channels, avg pool, linear.",
        options=VanillaCNNOptions,
    )
