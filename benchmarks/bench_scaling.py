"""Bench throughput: runs per hour with ``--workers 2`` against ``--workers 1`` (goal: >= 1.7x on 2 cores).

The same matrix runs twice into fresh stores, once per worker count, with the
default thread split (each worker gets cores // workers torch threads, so
``--workers 1`` uses both cores for its one run). Two throughputs per case:

* wall: runs / wall-clock of the whole ``run_bench`` call (start-up included);
* steady: runs / (last finish - first start) from the store's timestamps.

    python benchmarks/bench_scaling.py --runs 12 --epochs 6               # vgg11 width 0.25 on digits
    python benchmarks/bench_scaling.py --runs 12 --epochs 6 --threads 1   # process scaling alone
    python benchmarks/bench_scaling.py --runs 12 --epochs 6 --model mlp   # sub-second runs
    python benchmarks/bench_scaling.py --runs 8 --sleep-ms 50             # pool parallelism without CPU work

Not a bench recipe: it compares ``--workers`` settings of the bench itself, which a
recipe (one matrix, one worker count) cannot express.

``--sleep-ms`` runs the test suite's ``sleepy`` strategy (a tiny model that sleeps after
every step, from ``tests/bench_fixtures.py``, installed as a temporary plugin
distribution): it checks that the pool runs in parallel even when the cores are busy.
"""

from __future__ import annotations

import io
import tempfile
import time
from pathlib import Path

import harness
from stratum.bench.api import run_bench
from stratum.bench.runner import cpu_count
from stratum.bench.spec import BenchSpec
from stratum.bench.store import Store


def install_sleepy_plugin() -> None:
    import os
    import sys

    repo = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(repo))
    from tests.bench_fixtures import install_test_plugin

    root = install_test_plugin(Path(tempfile.mkdtemp(prefix="stratum-sleepy-")))
    sys.path.insert(0, str(root))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))


def one(pm, spec: BenchSpec, workers: int, directory: Path) -> dict:
    db = directory / f"w{workers}.sqlite"
    t0 = time.perf_counter()
    result = run_bench(spec, db, pm, workers=workers, quiet=True, stream=io.StringIO())
    wall = time.perf_counter() - t0
    with Store(db, create=False) as store:
        first, last = store.conn.execute("SELECT MIN(started_at), MAX(finished_at) FROM runs").fetchone()
        durations = [r[0] for r in store.conn.execute("SELECT duration_s FROM runs WHERE status = 'done'")]
    done = result.counts.get("done", 0)
    return {"workers": workers, "runs": done, "wall_s": wall, "steady_s": last - first,
            "runs_per_hour_wall": 3600 * done / wall, "runs_per_hour_steady": 3600 * done / (last - first),
            "mean_run_s": sum(durations) / len(durations)}


def main(argv=None) -> dict:
    parser = harness.parser(__doc__, short=True, threads=None)
    parser.add_argument("--runs", type=int, default=12, help="seeds in the matrix (one run each)")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--threads", type=int, default=0,
                        help="fix torch threads per run in both cases (0 = the bench's default split)")
    parser.add_argument("--model", choices=("vgg11", "mlp"), default="vgg11",
                        help="vgg11 at width 0.25 (runs of a few seconds, like a real sweep) or a 256-128 MLP "
                             "(sub-second runs, where pool start-up and polling show)")
    parser.add_argument("--sleep-ms", type=int, default=0, help="use sleep-bound runs (see above) instead of sgd")
    args = parser.parse_args(argv)
    if args.sleep_ms:
        install_sleepy_plugin()
    pm = harness.plugin_manager()
    if args.sleep_ms:
        spec = BenchSpec(axes={"strategy": ["sleepy"], "seed": list(range(args.runs))},
                         fixed={"model": "mlp", "hidden": [8], "dataset": "cubic", "epochs": 2, "steps_per_epoch": 10,
                                "sleepy_ms": args.sleep_ms, "threads": 1})
    else:
        model = {"model": "vgg11", "width": 0.25} if args.model == "vgg11" else {"model": "mlp", "hidden": [256, 128]}
        spec = BenchSpec(axes={"strategy": ["sgd"], "seed": list(range(args.runs))},
                         fixed={**model, "dataset": "digits", "epochs": args.epochs, "batch_size": 32,
                                **({"threads": args.threads} if args.threads else {})})
    results = {"cores": cpu_count(), "matrix": spec.to_dict(), "cases": []}
    with tempfile.TemporaryDirectory() as tmp:
        # Warm the worker fork server once so neither case pays its start-up alone.
        run_bench(BenchSpec(axes={"seed": [0]}, fixed={"model": "mlp", "hidden": [8], "dataset": "cubic", "epochs": 1}),
                  Path(tmp) / "warm.sqlite", pm, workers=1, quiet=True, stream=io.StringIO())
        for workers in (1, 2):
            case = one(pm, spec, workers, Path(tmp))
            results["cases"].append(case)
            print(f"--workers {workers}: {case['runs']} runs in {case['wall_s']:.1f} s wall ({case['runs_per_hour_wall']:.0f} runs/h), "
                  f"steady {case['runs_per_hour_steady']:.0f} runs/h, mean run {case['mean_run_s']:.2f} s")
    a, b = results["cases"]
    results["speedup_wall"] = b["runs_per_hour_wall"] / a["runs_per_hour_wall"]
    results["speedup_steady"] = b["runs_per_hour_steady"] / a["runs_per_hour_steady"]
    print(f"throughput --workers 2 / --workers 1: {results['speedup_wall']:.2f}x wall, {results['speedup_steady']:.2f}x steady "
          f"({results['cores']} cores)")
    return harness.finish(args, results)


if __name__ == "__main__":
    main()
