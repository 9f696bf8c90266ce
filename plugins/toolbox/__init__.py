"""The training toolbox of seed 004 as extensions that compose with any strategy.

* ``l1-penalty`` (``--l1-penalty LAMBDA``): adds lambda * sign(w) to weight gradients.
* ``grad-noise`` (``--grad-noise-eta ETA --grad-noise-gamma GAMMA``): annealed
  Gaussian gradient noise, sigma^2 = eta / (1 + t)^gamma.

L2 weight decay is the core ``--weight-decay`` (handed to the optimiser),
batch norm and dropout are the model switches ``--batch-norm`` / ``--dropout``,
early stopping is the core ``--patience`` and the optimisers live in the
``optimizers`` plugin.

Each extension is built at every fit start and takes part only when its option
is set. Its gradient term is added in ``stratum_add_gradient_terms``, which the
engine calls inside every ``optimizer.step()`` of an update: whoever applies the
update (plain SGD, a focus step writing predicted gradients, a lottery fit), the
term lands on ``.grad`` right before the step, after the backward pass and before
clipping and masks (the order: :mod:`stratum.engine.step`). Between the two,
extensions are called in registry order: the L1 subgradient, then the noise.
Functional core: :mod:`.regularisers`; the weight-decay groups and clipping of
``--wd-exclude`` / ``--clip-grad-*`` are in :mod:`.knobs` (the engine's).
"""

from __future__ import annotations

import attrs

import stratum
from stratum import option

# .regularisers (torch) is imported when an extension takes part in a run, not at registration.


@attrs.frozen
class L1Options:
    l1_penalty: float = option(
        0.0, "L1 penalty lambda: adds lambda*sign(w) to every weight's gradient (biases excluded; 0 = off).", min=0,
    )


@attrs.frozen
class GradNoiseOptions:
    grad_noise_eta: float = option(
        0.0, "Gradient noise: eta in sigma^2 = eta/(1+t)^gamma added to every gradient element (0 = off).", min=0,
    )
    grad_noise_gamma: float = option(0.55, "Gradient noise: annealing exponent gamma.", min=0)


class _BeforeStep:
    """Runs ``self.add(run)`` on the gradients of each update, before clipping and masks."""

    active_key = ""

    @stratum.hookimpl
    def stratum_add_gradient_terms(self, run, step):
        self.add(run)

    def add(self, run) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    @stratum.hookimpl
    def stratum_fit_end(self, run, summary):
        summary.setdefault("toolbox", {})[self.active_key] = self.describe()


class L1Penalty(_BeforeStep):
    active_key = "l1_penalty"

    def __init__(self, run, coefficient: float):
        from .regularisers import penalised

        self.coefficient = coefficient
        self.params = penalised(run.model.parameters())

    def add(self, run) -> None:
        from .regularisers import add_l1_subgradient_

        add_l1_subgradient_(self.params, self.coefficient)

    def describe(self):
        return self.coefficient


class GradientNoise(_BeforeStep):
    active_key = "grad_noise"

    def __init__(self, run, eta: float, gamma: float):
        self.eta, self.gamma = eta, gamma
        self.params = list(run.model.parameters())

    def add(self, run) -> None:
        from .regularisers import add_gradient_noise_, noise_generator, noise_std

        t = run.global_step  # updates applied so far in this fit
        add_gradient_noise_(self.params, noise_std(self.eta, self.gamma, t), noise_generator(run.config.seed, t))

    def describe(self):
        return {"eta": self.eta, "gamma": self.gamma}


def _l1(run, options: L1Options):
    return L1Penalty(run, options.l1_penalty) if options.l1_penalty > 0 else None


def _noise(run, options: GradNoiseOptions):
    return GradientNoise(run, options.grad_noise_eta, options.grad_noise_gamma) if options.grad_noise_eta > 0 else None


@stratum.hookimpl
def stratum_register_extensions():
    return [
        stratum.extension("l1-penalty", _l1, "L1 penalty on weights (--l1-penalty): lambda*sign(w) added to gradients.",
                          options=L1Options),
        stratum.extension("grad-noise", _noise,
                          "Annealed Gaussian gradient noise, sigma^2 = eta/(1+t)^gamma (--grad-noise-eta, --grad-noise-gamma).",
                          options=GradNoiseOptions),
    ]
