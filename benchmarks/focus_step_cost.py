"""Cost of one focus step, and of one nowcast jump, against one SGD step.

Goals: a focus step <= 0.10x an SGD step for linear and mlp (issue 3); a nowcast jump
<= 1x an SGD step (issue 14).

Reference setup: VGG11 at width 0.25 on synthetic 3x32x32, batch 128, CPU,
torch threads fixed (default 1). A prior is captured from a short SGD run of
the same model, a focus library is fitted for each regressor x feature set,
and focus steps and SGD steps are timed *interleaved in one process* (so load
from other processes hits both alike); the report gives medians over
``--repeats`` rounds and their ratio. An SGD step here is what the engine does
per batch in a data mode: slice a resident batch, forward, loss, backward,
optimiser step. ``observe`` is the focus strategy's extra work on every step
(recording the trajectory window), which a focus run pays on SGD steps too.

Nowcast (``--nowcast-regressors``, empty to skip): a nowcast prior is captured from
the same short SGD run (checkpoint every step, window 5, horizon 4), the pooled
library fitted per regressor, and one *jump* (predict every captured element's
displacement from its window, add it in place, restart the window) is timed
interleaved with SGD steps; ``observe`` is then the nowcast strategy's per-step
checkpoint (a copy of the captured tensors every ``c`` steps).

    .venv/bin/python benchmarks/focus_step_cost.py            # the reference numbers
    .venv/bin/python benchmarks/focus_step_cost.py --json out.json --threads 2
"""

from __future__ import annotations

import time

import torch

import harness


def main(argv=None) -> dict:
    parser = harness.parser(__doc__, short=True, repeats=15)
    parser.add_argument("--model", default="vgg11")
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--capture-steps", type=int, default=12)
    parser.add_argument("--regressors", default="linear,mlp,xgboost")
    parser.add_argument("--features", default="paper,trajectory")
    parser.add_argument("--nowcast-regressors", default="linear,mlp")
    args = parser.parse_args(argv)
    harness.set_threads(args.threads)

    from stratum_plugins.focus.capture import Capture, CaptureConfig
    from stratum_plugins.focus.features import FEATURE_SETS
    from stratum_plugins.focus.library import fit_library
    from stratum_plugins.focus.regressors import MLPRegressor, RidgeRegressor, XGBoostRegressor
    from stratum_plugins.focus.step import FocusUpdater

    run = harness.build(dict(model=args.model, width=args.width, dataset="synthetic", batch_size=args.batch_size,
                             threads=args.threads, lr=0.01, synthetic_train=2048, synthetic_test=64, seed=0))
    model, optimizer = run.model, run.optimizer
    generator = torch.Generator().manual_seed(0)
    batches = iter(())

    def next_batch():
        nonlocal batches
        try:
            return next(batches)
        except StopIteration:
            batches = run.train_batches.epoch(generator)
            return next(batches)

    def sgd_step():
        x, y = next_batch()
        optimizer.zero_grad(set_to_none=True)
        loss = run.task.loss(model(x), y)
        loss.backward()
        optimizer.step()

    capture = Capture(CaptureConfig(layers="auto"))
    capture.attach(model)
    for step in range(args.capture_steps):
        x, y = next_batch()
        optimizer.zero_grad(set_to_none=True)
        run.task.loss(model(x), y).backward()
        capture.record(step)
        optimizer.step()
        capture.state.observe(capture._tracked_values())
    tensors = capture.tensors()
    for _ in range(3):
        sgd_step()  # warm-up

    makers = {
        "linear": lambda: RidgeRegressor(),
        "mlp": lambda: MLPRegressor(),
        "xgboost": lambda: XGBoostRegressor(threads=args.threads),
    }
    rows = []
    for feature_name in args.features.split(","):
        feature_set = FEATURE_SETS[feature_name][0]()
        for regressor_name in args.regressors.split(","):
            t0 = time.perf_counter()
            library = fit_library(tensors, feature_set, makers[regressor_name], source_lr=0.01, seed=0)
            fit_s = time.perf_counter() - t0
            updater = FocusUpdater(model, library, "auto", capture.config.trajectory)
            saved = [p.detach().clone() for p in model.parameters()]
            # One round: a focus step, an SGD step, the focus strategy's per-step observation.
            times = harness.interleaved({"focus": lambda: updater.step(optimizer), "sgd": sgd_step,
                                         "observe": updater.observe}, repeats=args.repeats, warmup=2)
            with torch.no_grad():
                for p, s in zip(model.parameters(), saved):
                    p.copy_(s)
            medians = {name: harness.summarise(t)["median"] for name, t in times.items()}
            row = {
                "features": feature_name, "regressor": regressor_name,
                "focus_ms": 1000 * medians["focus"], "sgd_ms": 1000 * medians["sgd"],
                "observe_ms": 1000 * medians["observe"], "fit_s": fit_s,
                "trajectory_mb": updater.nbytes() / 2**20,
            }
            row["ratio"] = row["focus_ms"] / row["sgd_ms"]
            rows.append(row)
            print(f"{feature_name:<11} {regressor_name:<8} focus {row['focus_ms']:7.2f} ms   sgd {row['sgd_ms']:7.2f} ms   "
                  f"ratio {row['ratio']:.3f}   observe {row['observe_ms']:5.2f} ms   fit {fit_s:5.2f} s", flush=True)
    if args.nowcast_regressors:
        rows += nowcast_rows(args, run, model, sgd_step, next_batch, makers)
    info = {
        "model": args.model, "width": args.width, "batch_size": args.batch_size, "threads": args.threads,
        "device": "cpu", "dtype": "float32", "parameters": sum(p.numel() for p in model.parameters()),
        "repeats": args.repeats, "rows": rows,
    }
    print(f"# {args.model} width {args.width}, batch {args.batch_size}, cpu, {args.threads} thread(s), "
          f"{info['parameters']:,} parameters, torch {torch.__version__}")
    return harness.finish(args, info)


def nowcast_rows(args, run, model, sgd_step, next_batch, makers) -> list[dict]:
    """Time a nowcast jump against an SGD step for each of ``--nowcast-regressors``."""
    from stratum_plugins.focus.capture import CaptureConfig
    from stratum_plugins.focus.features import FEATURE_SETS
    from stratum_plugins.focus.library import fit_library
    from stratum_plugins.focus.nowcast import NowcastCapture, NowcastJumper
    from stratum_plugins.focus.trajectory import NowcastSpec

    spec = NowcastSpec(every=1, window=5, horizon=4)
    capture = NowcastCapture(CaptureConfig(layers="auto", nowcast=spec))
    capture.attach(model)
    capture.total_steps = args.capture_steps
    for step in range(1, args.capture_steps + 1):
        sgd_step()
        capture.checkpoint(step)
    tensors = capture.tensors()
    feature_set = FEATURE_SETS["nowcast"][0]()
    rows = []
    for regressor_name in args.nowcast_regressors.split(","):
        t0 = time.perf_counter()
        library = fit_library(tensors, feature_set, makers[regressor_name], source_lr=0.01, seed=0)
        fit_s = time.perf_counter() - t0
        jumper = NowcastJumper(model, library, "auto", spec)
        step = 0

        def observe():
            nonlocal step
            step += 1
            jumper.observe(step)

        def jump():
            jumper.apply(jumper.predict(0.5))
            jumper.restart()

        for _ in range(spec.window):
            sgd_step()
            observe()
        saved = [p.detach().clone() for p in model.parameters()]
        times = harness.interleaved({"jump": jump, "sgd": sgd_step, "observe": observe},
                                    repeats=args.repeats, warmup=2)
        with torch.no_grad():
            for p, s in zip(model.parameters(), saved):
                p.copy_(s)
        medians = {name: harness.summarise(t)["median"] for name, t in times.items()}
        row = {"features": "nowcast", "regressor": regressor_name, "jump_ms": 1000 * medians["jump"],
               "sgd_ms": 1000 * medians["sgd"], "observe_ms": 1000 * medians["observe"], "fit_s": fit_s,
               "window_mb": jumper.nbytes() / 2**20, "capture_mb": capture.nbytes() / 2**20,
               "capture_bound_mb": capture.bound_bytes() / 2**20}
        row["ratio"] = row["jump_ms"] / row["sgd_ms"]
        rows.append(row)
        print(f"{'nowcast':<11} {regressor_name:<8} jump  {row['jump_ms']:7.2f} ms   sgd {row['sgd_ms']:7.2f} ms   "
              f"ratio {row['ratio']:.3f}   observe {row['observe_ms']:5.2f} ms   fit {fit_s:5.2f} s", flush=True)
    return rows


if __name__ == "__main__":
    main()
