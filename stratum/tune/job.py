"""A checked :class:`~stratum.tune.study.TuneJob` from command-line values (``stratum tune``,
``stratum bench --tune``): the base run, the space, the seeds and the search options."""

from __future__ import annotations

from ..errors import ConfigError

# The default tuning seed: away from the evaluation seeds a bench counts from 0.
DEFAULT_TUNING_SEED = 100


def tuning_seeds(value, flag: str) -> list[int]:
    """The tuning seeds, always named: one seed (``100``), a list (``100,101``) or a range
    (``100-102``). Unlike a bench's ``--seeds`` (:func:`stratum.bench.spec.seeds_axis`), a single
    number is that seed, not a count: tuning seeds are chosen to differ from evaluation seeds."""
    from ..bench.spec import seeds_axis

    if isinstance(value, int) and not isinstance(value, bool) or isinstance(value, str) and value.strip().isdigit():
        return seeds_axis([int(value)], flag)
    return seeds_axis(value, flag)


def make_job(pm, *, base: dict, param_texts, seeds, db, study: str, workers: int, options: dict,
             block: tuple = (), plugins: tuple = (), flag: str = "--param", defaults: bool = False):
    """A checked :class:`~stratum.tune.study.TuneJob` from command-line values, before any trial:
    the base run validated like a bench's runs (:func:`stratum.bench.matrix.plan_runs`), the
    space parsed and every searched option known, valid and read by the run. Raises ConfigError."""
    import warnings

    from ..bench.matrix import known_fields, plan_runs
    from ..bench.runner import threads_per_worker
    from ..bench.spec import BenchSpec
    from .space import check_read, parse_space
    from .study import DEFAULT_TRIALS, TuneJob, check_sampler, grid_size

    registries = pm.registries
    fields = known_fields(registries)
    params = parse_space(param_texts, fields, flag=flag, defaults=defaults, registries=registries)
    for p in params:
        if p.name in base:
            raise ConfigError(f"{flag} {p.name}: {p.name!r} is also given a fixed value; give one")
    seeds = tuning_seeds(seeds, "--seeds" if flag == "--param" else "--tune-seeds")
    base = dict(base)
    threads = base.pop("threads", None)
    plans = plan_runs(BenchSpec(fixed=base, axes={"seed": seeds[:1]}), registries,
                      warn=lambda m: warnings.warn(m, stacklevel=2))
    base = {k: v for k, v in plans[0].values.items() if k not in ("seed", "threads")}
    check_read(params, base, registries, flag=flag)
    sampler = options.get("sampler") or ("grid" if all(p.grid is not None for p in params) else "tpe")
    trials = options.get("trials")
    job = TuneJob(db=str(db), study=study, base=base, params=params, seeds=seeds,
                  objective=options.get("objective") or "best-val-acc", sampler=sampler,
                  sampler_seed=options.get("sampler_seed") or 0, pruner=options.get("pruner") or "median",
                  startup_trials=5 if options.get("startup_trials") is None else options["startup_trials"],
                  trials=DEFAULT_TRIALS, timeout=options.get("timeout"),
                  threads=int(threads) if threads else threads_per_worker(workers), block=tuple(block),
                  plugins=tuple(plugins))
    check_sampler(job)
    if sampler == "grid":
        size = grid_size(params)
        job.trials = size if trials is None else min(trials, size)
    elif trials is not None:
        job.trials = trials
    return job
