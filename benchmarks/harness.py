"""What every script in ``benchmarks/`` shares: arguments, timing, environment, JSON results.

A script builds its argument parser with :func:`parser` (its module docstring
is the ``--help`` text; ``--json PATH``, ``--threads N`` and, where asked,
``--seeds N``/``--first-seed S`` and ``--repeats N`` come from here), times
with :func:`interleaved`, :func:`best_of` or :func:`time_call` and sums up with
:func:`summarise`, trains with :func:`train`, and ends with :func:`finish`,
which writes the results as JSON (atomically, with the environment from
:func:`stratum.environment.capture`) when ``--json`` was given.

Studies whose matrix ``stratum bench`` can express are bench recipes
(``stratum bench --recipe NAME``), not scripts: see docs/measurement.md (Recipes).

Run a script from the repository root (``python benchmarks/NAME.py``); it finds
this module beside itself.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Iterable

_PM = None


def _whole(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"expected a number >= {low}, got {value}")
    return value


def _positive_int(text: str) -> int:
    return _whole(text, 1)


def _non_negative_int(text: str) -> int:
    return _whole(text, 0)


def parser(doc: str, *, threads: int | None = 1, seeds: int | None = None, repeats: int | None = None,
           short: bool = False) -> argparse.ArgumentParser:
    """An argument parser with the arguments every benchmark script shares.

    ``doc``: the script's module docstring (its first paragraph only when ``short``).
    Always ``--json PATH`` (``pathlib.Path`` or ``None``). ``threads``: the default of
    ``--threads`` (torch threads, an int >= 1); ``None`` leaves the flag out. ``seeds``:
    when given, ``--seeds N`` (a count >= 1, this default) and ``--first-seed S`` (>= 0,
    default 0). ``repeats``: when given, ``--repeats N`` (timed repetitions after the
    warm-up, >= 1, this default).
    """
    description = doc.split("\n\n")[0] if short else doc
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", type=Path, default=None, metavar="PATH",
                   help="also write the results here as JSON, with the environment (atomically)")
    if threads is not None:
        p.add_argument("--threads", type=_positive_int, default=threads, help=f"torch threads (default {threads})")
    if seeds is not None:
        p.add_argument("--seeds", type=_positive_int, default=seeds, help=f"how many seeds (default {seeds})")
        p.add_argument("--first-seed", type=_non_negative_int, default=0, help="the first seed (default 0)")
    if repeats is not None:
        p.add_argument("--repeats", type=_positive_int, default=repeats,
                       help=f"timed repetitions after the warm-up (default {repeats})")
    return p


def seed_range(args: argparse.Namespace) -> range:
    """The seeds ``--first-seed`` .. ``--first-seed + --seeds - 1``."""
    return range(args.first_seed, args.first_seed + args.seeds)


def set_threads(threads: int) -> None:
    """Cap torch's intra-op threads in this process (imports torch)."""
    import torch

    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------


def time_call(fn: Callable[[], Any], *, repeats: int, warmup: int = 1) -> list[float]:
    """Seconds (``time.perf_counter``) of ``repeats`` calls of ``fn()``, after ``warmup`` untimed calls."""
    return interleaved({"fn": fn}, repeats=repeats, warmup=warmup)["fn"]


def interleaved(fns: dict[str, Callable[[], Any]], *, repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds of each of ``fns``, called in turn (round robin) ``warmup`` + ``repeats`` times.

    Interleaving makes a load from other processes hit every function alike, so their
    ratios stay meaningful on a shared machine. The warm-up rounds are not returned.
    """
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for i in range(warmup + repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            if i >= warmup:
                samples[name].append(time.perf_counter() - t0)
    return samples


def best_of(fn: Callable[[], Any], *, loops: int, rounds: int = 5) -> float:
    """Seconds per call of ``fn()``: the fastest of ``rounds`` tight loops of ``loops`` calls
    (for calls too short to time one by one; the minimum is the least disturbed by load)."""
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(loops):
            fn()
        best = min(best, (time.perf_counter() - t0) / loops)
    return best


def summarise(samples: Iterable[float]) -> dict:
    """``{"n", "median", "mean", "min", "max", "stdev"}`` of ``samples`` (``stdev`` is ``None``
    for fewer than two; every entry is ``None`` for none)."""
    values = list(samples)
    if not values:
        return {"n": 0, "median": None, "mean": None, "min": None, "max": None, "stdev": None}
    return {"n": len(values), "median": statistics.median(values), "mean": statistics.fmean(values),
            "min": min(values), "max": max(values), "stdev": statistics.stdev(values) if len(values) > 1 else None}


def median_ratio(numerators: Iterable[float], denominators: Iterable[float]) -> float:
    """The median of the pairwise ratios ``a / b`` (pairs taken at the same moment)."""
    return statistics.median(a / b for a, b in zip(numerators, denominators))


# ---------------------------------------------------------------------------
# Training runs
# ---------------------------------------------------------------------------


def plugin_manager():
    """The process's stratum plugin manager (created once, with the installed plugins)."""
    global _PM
    if _PM is None:
        from stratum.plugin_manager import create_plugin_manager

        _PM = create_plugin_manager()
    return _PM


def run_config(values: dict):
    """A validated ``RunConfig`` from run options (``stratum run`` names, plugin options too).

    Raises ``ConfigError`` for an unknown option or a bad value."""
    from stratum.api import make_run_config

    return make_run_config(values, pm=plugin_manager())


def build(values: dict):
    """A built run (model, data, optimizer, strategy) for ``values``, not trained."""
    from stratum.engine import build_run

    return build_run(run_config(values), plugin_manager())


def train(values: dict, callbacks: Iterable[object] = ()) -> dict:
    """Train one run of ``values`` (quiet unless ``quiet=False`` is in them) and return its summary.

    ``callbacks``: objects with ``@stratum.hookimpl`` methods, run-scoped for this run."""
    from stratum.engine import Trainer

    extra = [(f"callback{i}:{type(cb).__name__}", cb) for i, cb in enumerate(callbacks)]
    return Trainer(plugin_manager(), extra_plugins=extra).run(run_config({"quiet": True, **values}))


# ---------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------


def environment(threads: int | None = None) -> dict:
    """Where the figures were taken: :func:`stratum.environment.capture` (git, plugins, CPU, GPU,
    library versions) plus the load average."""
    import os

    from stratum.environment import capture

    env = capture(plugin_manager(), threads=threads)
    try:
        env["load_average"] = list(os.getloadavg())
    except OSError:  # pragma: no cover - not available
        env["load_average"] = None
    return env


def finish(args: argparse.Namespace, results: dict) -> dict:
    """Write ``results`` to ``args.json`` when it was given, with ``"arguments"`` (the parsed
    arguments) and ``"environment"`` (:func:`environment`) added, atomically (a failed write
    leaves no partial file; raises ``OutputError`` naming ``--json``). Returns ``results``."""
    if args.json is not None:
        from stratum.io import atomic_write_json

        payload = {**results, "arguments": {k: v for k, v in vars(args).items() if k != "json"},
                   "environment": environment(getattr(args, "threads", None))}
        atomic_write_json(Path(args.json), payload, "--json")
    return results
