"""``stratum bench --tune``: tune each arm of a bench on its tuning seeds, then evaluate it.

An *arm* is one configuration of the bench's plan without its seed axis (a variant, a point
of the other axes). For each arm a ``stratum tune`` study (named ``<bench>/<arm label>``, in
the bench's results store and its journal) searches the ``--tune`` options on the tuning
seeds; the chosen values are fixed and the arm is run on the evaluation seeds like any bench
run. The bench's stored settings keep what was chosen (``settings["tuned"]``), which
``stratum report`` shows as a "tuned values" table (:mod:`stratum.report.tuned`). A seed
used for tuning is never used for evaluation: such a plan is refused before anything runs.
"""

from __future__ import annotations

import sys

from ..errors import ConfigError, StratumError


def tune_texts(values) -> list[str]:
    """``--tune`` values: ``NAME=SPEC`` each, or bare names (``lr`` or ``lr,momentum``)."""
    texts: list[str] = []
    for value in values:
        if "=" in value:
            texts.append(value)
        else:
            texts += [v.strip() for v in value.split(",") if v.strip()]
    return texts


def plan_arms(spec, registries) -> list[tuple[str, dict]]:
    """The arms of a bench: ``(label, values without the seed)`` in plan order."""
    from ..bench.matrix import plan_runs

    arms: dict[str, dict] = {}
    for plan in plan_runs(spec, registries):
        arms.setdefault(plan.label, {k: v for k, v in plan.values.items() if k != "seed"})
    return list(arms.items())


def check_tuning(spec, db, pm, *, texts, seeds, options: dict, workers: int | None, executor: str,
                 block: tuple = ()) -> None:
    """Every check :func:`tune_then_evaluate` makes before its first trial (tuning seeds that are
    evaluation seeds, a tuned option that is an axis, each arm's search space and options), with
    nothing run or written: ``bench --tune --dry-run`` refuses what the real bench would refuse.
    Raises :class:`ConfigError` as :func:`tune_then_evaluate` does."""
    _plan(spec, db, pm, texts=texts, seeds=seeds, options=options, workers=workers, executor=executor, block=block)


def _plan(spec, db, pm, *, texts, seeds, options, workers, executor, block):
    """(jobs, evaluation seeds, tuning seeds, bench name, workers) of a ``--tune`` bench; checks only."""
    from ..config import CORE_FIELDS
    from .job import make_job, tuning_seeds

    texts = tune_texts(texts)
    eval_seeds = list(spec.axes.get("seed") or [spec.fixed.get("seed", CORE_FIELDS["seed"].default)])
    tune_seeds = tuning_seeds(seeds, "--tune-seeds")
    shared = sorted(set(tune_seeds) & set(int(s) for s in eval_seeds))
    if shared:
        raise ConfigError(f"--tune-seeds {','.join(map(str, shared))} {'is' if len(shared) == 1 else 'are'} also "
                          "evaluation seed(s) (--seeds): a seed used for tuning is never used for evaluation")
    name = spec.name or spec.recipe or "bench"
    from ..bench.api import resolve_workers

    workers = resolve_workers(workers, executor)
    plugins = tuple(getattr(pm, "local_plugins", {}))
    jobs = []
    for label, values in plan_arms(spec, pm.registries):
        for text in texts:
            key = text.split("=", 1)[0].strip().replace("-", "_")
            if key in spec.axes:
                raise ConfigError(f"--tune {key}: {key!r} is also an axis of the bench; tune it or list it, not both")
            values.pop(key, None)  # a recipe's or variant's own value is what the search replaces
        jobs.append((label, make_job(pm, base=values, param_texts=texts, seeds=tune_seeds, db=db,
                                     study=f"{name}/{label}", workers=workers, options=options, block=block,
                                     plugins=plugins, flag="--tune", defaults=True)))
    return jobs, eval_seeds, tune_seeds, name, workers


def tune_then_evaluate(spec, db, pm, *, texts, seeds, options: dict, workers: int | None, executor: str,
                       address: str | None, block: tuple = (), quiet: bool = False, stream=None):
    """Tune every arm of ``spec`` (a :class:`~stratum.bench.spec.BenchSpec`) and return the spec
    of the evaluation: one variant per arm, named by its label, with the chosen values, over
    the evaluation seeds. Every arm's study is checked before the first trial. Raises
    :class:`ConfigError` for a tuning seed that is also an evaluation seed, a tuned option that
    is an axis of the bench, or any bad search option; :class:`StratumError` when an arm has no
    completed trial."""
    from ..bench.spec import BenchSpec
    from .study import run_tune

    stream = stream or sys.stdout
    jobs, eval_seeds, tune_seeds, name, workers = _plan(spec, db, pm, texts=texts, seeds=seeds, options=options,
                                                        workers=workers, executor=executor, block=block)
    tuned = {}
    for label, job in jobs:
        if not quiet:
            print(f"tuning arm {label!r}: {', '.join(p.name + '=' + p.spec for p in job.params)}",
                  file=stream, flush=True)
        result = run_tune(job, workers=workers, executor=executor, address=address, quiet=quiet, stream=stream)
        best = result.best
        if best is None:
            raise StratumError(f"arm {label!r}: no tuning trial completed; see `stratum report {db} --bench "
                               f"{job.bench} --failures`")
        tuned[label] = {"values": dict(best.params), "value": best.value, "trial": best.number,
                        "trials": result.finished, "study": job.study}
        if not quiet:
            shown = ", ".join(f"{k}={v!r}" for k, v in best.params.items())
            print(f"arm {label!r}: chose {shown} ({job.objective} {best.value:.4g}, trial {best.number})",
                  file=stream, flush=True)
    first = jobs[0][1]
    settings = {**spec.settings, "tuned": tuned,
                "tune": {"params": [p.name + "=" + p.spec for p in first.params], "seeds": tune_seeds,
                         "objective": first.objective, "sampler": first.sampler, "trials": first.trials}}
    variants = [{"name": label, "values": {**job.base, **tuned[label]["values"]}} for label, job in jobs]
    fixed = {"threads": spec.fixed["threads"]} if spec.fixed.get("threads") else {}
    return BenchSpec(name=name, axes={"seed": eval_seeds}, variants=variants, fixed=fixed, settings=settings,
                     recipe=spec.recipe)
