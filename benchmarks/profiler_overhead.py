"""Overhead of the ``phases`` profiler on CPU (goal: <= 2% of the training pass).

Two measurements, both printed:

1. End to end: one run whose epochs alternate between the phases timer and
   the engine's no-op timer (epoch 1 is warm-up), so each timed epoch is
   compared with the untimed epoch just before it: same model, same data,
   same moment on the machine. The engine's own ``train_s`` per step is
   compared. Overhead = median over pairs of timed / untimed - 1.
2. Per step: the cost of one step's timer calls (begin + 6 marks) in a tight
   loop, divided by the measured step time. This bound is far less noisy on a
   shared machine than (1).

Setups: the reference one (VGG11 width 0.25, synthetic 3x32x32, batch 128)
and a worst case with tiny steps (MLP 32 on 8x8 digits, batch 32), where a
fixed per-step cost weighs most.

    python benchmarks/profiler_overhead.py --pairs 10 --steps-per-epoch 30 --threads 1
"""

from __future__ import annotations

import statistics

import harness
import stratum

SETUPS = {
    "vgg11-w0.25-synthetic-b128": dict(model="vgg11", width=0.25, dataset="synthetic", batch_size=128),
    "mlp32-digits-b32 (worst case)": dict(model="mlp", hidden=[32], dataset="digits", batch_size=32),
}


class AlternateTimer:
    """Installs the phases timer on even epochs only, so adjacent epochs of one run
    (same model, same data, same machine moment) are compared with and without it."""

    def __init__(self):
        from stratum.timing import NullTimer
        from stratum_plugins.profilers.timers import WallClockTimer

        self.timer = WallClockTimer()
        self.null = NullTimer()

    @stratum.hookimpl
    def stratum_epoch_start(self, run, epoch, mode):
        run.timer = self.timer if epoch % 2 == 0 else self.null
        self.timer.start()

    @stratum.hookimpl
    def stratum_epoch_end(self, run, epoch, record):
        record["timed"] = run.timer is self.timer
        self.timer.take()


def end_to_end(values: dict, pairs: int) -> dict:
    """Per-step training time of timed vs untimed epochs, paired by adjacency (epoch 1 is warm-up)."""
    summary = harness.train({**values, "epochs": 2 * pairs + 1}, callbacks=[AlternateTimer()])
    per_step = [r["train_s"] / r["steps"] for r in summary["history"]]
    timed = [per_step[2 * k] for k in range(1, pairs + 1)]  # epoch 2k (timed) against 2k-1 (untimed)
    plain = [per_step[2 * k - 1] for k in range(1, pairs + 1)]
    ratios = [t / p for t, p in zip(timed, plain)]
    return {"ratio_median": statistics.median(ratios), "ratios": ratios,
            "step_ms_plain": 1000 * statistics.median(plain), "step_ms_phases": 1000 * statistics.median(timed)}


def per_step_cost(loops: int = 200_000) -> float:
    """Seconds spent in one step's timer calls (begin + data, forward, loss, backward, update)."""
    from stratum_plugins.profilers.timers import WallClockTimer

    timer = WallClockTimer()
    timer.start()

    def one_step():
        timer.begin()
        timer.mark("data")
        timer.mark("forward")
        timer.mark("loss")
        timer.mark("backward")
        timer.mark("update")

    return harness.best_of(one_step, loops=loops)


def main(argv=None):
    parser = harness.parser(__doc__, short=True)
    parser.add_argument("--pairs", type=int, default=10, help="timed/untimed epoch pairs per setup")
    parser.add_argument("--steps-per-epoch", type=int, default=30, help="cap on steps per epoch (0 = full pass)")
    parser.add_argument("--loops", type=int, default=200_000, help="timer-call loops for the per-step cost")
    args = parser.parse_args(argv)
    harness.set_threads(args.threads)
    timer_cost = per_step_cost(args.loops)
    results = {"device": "cpu", "dtype": "float32", "timer_cost_us_per_step": 1e6 * timer_cost, "setups": {}}
    print(f"timer calls per step (begin + 5 marks): {1e6 * timer_cost:.2f} us")
    for name, setup in SETUPS.items():
        values = {**setup, "threads": args.threads, "device": "cpu", "steps_per_epoch": args.steps_per_epoch}
        r = end_to_end(values, args.pairs)
        r["per_step_bound"] = timer_cost / (r["step_ms_plain"] / 1000)
        results["setups"][name] = r
        print(f"{name}: step {r['step_ms_plain']:.3f} ms plain, {r['step_ms_phases']:.3f} ms with phases; "
              f"end-to-end overhead {100 * (r['ratio_median'] - 1):+.2f}% (median of {args.pairs} epoch pairs: "
              f"{', '.join(f'{100 * (x - 1):+.1f}%' for x in r['ratios'])}); "
              f"per-step bound {100 * r['per_step_bound']:.3f}%")
    return harness.finish(args, results)


if __name__ == "__main__":
    main()
