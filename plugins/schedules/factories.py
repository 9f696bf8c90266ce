"""The ``schedule`` factories: ``factory(spec, options) -> step -> lr`` over the main phase.

``spec`` is the run's :class:`stratum.engine.ScheduleSpec`; its ``total_steps`` counts the
main phase (the run minus the warm-up, which the engine adds in front). Each factory converts
the options given in epochs to optimizer steps and calls :func:`.core.make_schedule`, which
checks every parameter (``ValueError``, turned into one ``stratum: error:`` line by the engine).
Options in epochs count from the start of training (warm-up included), so ``--milestones 6``
decays after epoch 6 whatever the warm-up.
"""

from __future__ import annotations

from stratum import ConfigError

from .core import gamma_per_step, make_schedule

DEFAULT_DECAY = 0.1  # step / multistep
DEFAULT_EXPONENTIAL_GAMMA = 0.9  # per epoch


def build_constant(spec, options):
    """``--lr`` throughout."""
    return make_schedule("constant", spec.base_lr)


def build_step(spec, options):
    """StepLR: decay by ``--gamma`` every ``--step-size`` epochs (default a third of ``--epochs``)."""
    size = options.step_size or spec.epochs / 3
    steps = max(1, spec.epochs_to_steps(size))
    return make_schedule("step", spec.base_lr, step_size=steps, gamma=options.gamma or DEFAULT_DECAY)


def build_multistep(spec, options):
    """MultiStepLR at ``--milestones`` epochs (default 50% and 75% of ``--epochs``)."""
    if not options.milestones:  # 50% and 75% of the run, in steps; merged when a short run rounds them together
        total = spec.total_steps + spec.warmup_steps
        steps = sorted({round(total * f) - spec.warmup_steps for f in (0.5, 0.75)} - {0})
        steps = [s for s in steps if s >= 1] or [spec.total_steps]
        return make_schedule("multistep", spec.base_lr, milestones=steps, gamma=options.gamma or DEFAULT_DECAY)
    milestones = options.milestones
    steps = [spec.epochs_to_steps(m) - spec.warmup_steps for m in milestones]
    if any(b <= a for a, b in zip(steps, steps[1:])):
        raise ConfigError(f"--milestones {','.join(f'{m:g}' for m in milestones)} must be increasing and at least "
                          f"one step apart ({spec.steps_per_epoch} steps per epoch)")
    if any(s < 1 for s in steps):
        raise ConfigError(f"--milestones {','.join(f'{m:g}' for m in milestones)}: every milestone must fall "
                          f"after the warm-up of {spec.warmup_steps} steps ({spec.steps_per_epoch} steps per epoch)")
    return make_schedule("multistep", spec.base_lr, milestones=steps, gamma=options.gamma or DEFAULT_DECAY)


def build_cosine(spec, options):
    """Cosine from ``--lr`` to ``--min-lr`` over the main phase."""
    return make_schedule("cosine", spec.base_lr, total_steps=spec.total_steps, min_lr=options.min_lr)


def build_linear(spec, options):
    """Linear from ``--lr`` to ``--min-lr`` over the main phase."""
    return make_schedule("linear", spec.base_lr, total_steps=spec.total_steps, min_lr=options.min_lr)


def build_exponential(spec, options):
    """ExponentialLR with ``--gamma`` per epoch, applied smoothly per step."""
    gamma = options.gamma or DEFAULT_EXPONENTIAL_GAMMA
    return make_schedule("exponential", spec.base_lr, gamma=gamma_per_step(gamma, spec.steps_per_epoch))


def build_one_cycle(spec, options):
    """OneCycleLR over the run; refuses an engine warm-up (one-cycle rises on its own)."""
    if spec.warmup_steps:
        raise ConfigError("--schedule one-cycle has its own warm-up (--pct-start); leave out --warmup-steps/--warmup-epochs")
    if spec.total_steps * options.pct_start <= 1:
        raise ConfigError(f"--schedule one-cycle needs more than one rising step: --pct-start {options.pct_start:g} "
                          f"x {spec.total_steps} steps in the run is <= 1")
    return make_schedule("one-cycle", spec.base_lr, total_steps=spec.total_steps, pct_start=options.pct_start,
                         div_factor=options.div_factor, final_div_factor=options.final_div_factor)
