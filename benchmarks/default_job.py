"""The default job: `stratum run` with no arguments, timed end to end as a user sees it.

Runs the real command in a subprocess (interpreter start, imports, data, training,
evaluation, output) once per seed and reports wall-clock seconds, the CPU seconds
the subprocess used, and test accuracy. The goal (issues 2 and 15): under 60 s on
2 CPU cores and >= 98% test accuracy at the best validation epoch, with no dead
weights.

With ``--compare`` each seed also runs the pre-issue-15 default (VGG pooling rule
``legacy``: on 8x8 digits the deep convolutions ran on 1x1 maps, ~80% of the
weights dead), interleaved with the new default (the order alternates per seed), so
both see the same machine load. On a shared machine compare the medians, the
ratios and the CPU seconds rather than absolute wall times; the load average is
recorded with every run.

    python benchmarks/default_job.py --seeds 0 1 2 3 4 --compare
    python benchmarks/default_job.py --seeds 0 1 2 3 4 --fast   # issue 12's fast recipe vs today's default
    python benchmarks/default_job.py --step-ratio 30     # only: one training step, new vs legacy, in-process

``--step-ratio N`` times N interleaved training steps (forward, loss, backward,
SGD step; batch 32, one thread) of the default model in both geometries in one
process: a cost ratio that machine load affects far less than the wall times.

Not a bench recipe: it times the whole ``stratum run`` process as a user starts it
(interpreter, imports, output), which a run inside a bench worker does not include.
"""

from __future__ import annotations

import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import harness

# Issue 12's fast recipe for the default job (chosen on seeds 100-101 by validation accuracy): VGG11 at a
# quarter width with batch norm, cosine decay from lr 0.05 over 4 epochs. FAST_BF16 adds bf16 autocast and
# channels-last, which cost accuracy here (docs/performance.md).
FAST = ["--width", "0.25", "--batch-norm", "--schedule", "cosine", "--lr", "0.05", "--epochs", "4"]
FAST_BF16 = [*FAST, "--precision", "bf16", "--channels-last"]

# Today's default before issue 15: the legacy pooling rule and 20 epochs (the default is 12 since).
LEGACY = ["--vgg-pooling", "legacy", "--epochs", "20"]


def run_once(seed: int, extra: list[str], out: Path) -> dict:
    """One `stratum run` subprocess; wall and CPU seconds, load, and the summary's figures."""
    seed_args = [] if seed == 0 else ["--seed", str(seed)]  # seed 0 is literally the default job
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "stratum", "run", *seed_args, *extra, "--json", str(out), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    stdout, stderr = proc.stdout.read(), proc.stderr.read()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"seed {seed} {' '.join(extra)} failed: {stderr}")
    summary = json.loads(out.read_text())
    dead = summary.get("dead_parameters") or {}
    return {
        "seed": seed, "wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "train_s": summary["total_s"],
        "final_test_acc": summary["final_test_acc"], "test_acc_at_best_val": summary["test_acc_at_best_val"],
        "dead_share": dead.get("share"), "parameters": summary["parameters"], "threads": summary["threads"],
        "load": (load_before + os.getloadavg()[0]) / 2, "warning": "stratum: warning" in stderr,
        "best_val_epoch": summary["best_val_epoch"], "epochs_run": summary["epochs_run"],
        "history": [{k: r.get(k) for k in ("epoch", "val_acc", "val_loss", "test_acc", "cum_s")} for r in summary["history"]],
    }


def step_ratio(rounds: int, batch: int = 32) -> dict:
    """Median seconds of one training step of the default model, new against legacy geometry, interleaved."""
    import torch
    import torch.nn.functional as F

    from stratum_plugins.zoo.models import build_vgg

    harness.set_threads(1)
    torch.manual_seed(0)
    models = {rule: build_vgg("vgg11", (1, 8, 8), 10, pooling=rule) for rule in ("live", "legacy")}
    optims = {rule: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9) for rule, m in models.items()}
    x, y = torch.randn(batch, 1, 8, 8), torch.randint(0, 10, (batch,))

    def step(rule):
        optims[rule].zero_grad()
        F.cross_entropy(models[rule](x), y).backward()
        optims[rule].step()

    times = harness.interleaved({rule: (lambda rule=rule: step(rule)) for rule in models}, repeats=rounds, warmup=3)
    med = {rule: statistics.median(t) for rule, t in times.items()}
    ratio = harness.median_ratio(times["live"], times["legacy"])
    print(f"one step, batch {batch}, 1 thread, {rounds} interleaved rounds: live {med['live'] * 1e3:.1f} ms, "
          f"legacy {med['legacy'] * 1e3:.1f} ms; ratio of medians {med['live'] / med['legacy']:.2f}x, "
          f"median per-round ratio {ratio:.2f}x; load {os.getloadavg()[0]:.1f}")
    return {"step_s": {rule: harness.summarise(t) for rule, t in times.items()}, "median_per_round_ratio": ratio}


def describe(label: str, rows: list[dict]) -> None:
    med = lambda key: statistics.median(r[key] for r in rows)  # noqa: E731
    accs = [r["test_acc_at_best_val"] for r in rows]
    print(f"{label}: median wall {med('wall_s'):.1f}s (max {max(r['wall_s'] for r in rows):.1f}s), "
          f"median CPU {med('cpu_s'):.1f}s, median training clock {med('train_s'):.1f}s; "
          f"test acc at best val median {statistics.median(accs):.2f}% (min {min(accs):.2f}%), "
          f"final median {med('final_test_acc'):.2f}%; dead share {rows[0]['dead_share']:.1%}; "
          f"load median {med('load'):.1f}")


def main(argv=None) -> dict:
    parser = harness.parser(__doc__, threads=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--compare", action="store_true", help="also run the pre-issue-15 default, interleaved")
    parser.add_argument("--args", default="", help="extra flags for the new default (to try a candidate recipe)")
    parser.add_argument("--fast", action="store_true",
                        help="compare today's default with issue 12's fast recipe (and it with bf16 and channels-last), interleaved")
    parser.add_argument("--step-ratio", type=int, default=0, metavar="N",
                        help="only time N interleaved training steps of both geometries in-process")
    args = parser.parse_args(argv)
    if args.step_ratio:
        return harness.finish(args, step_ratio(args.step_ratio))
    arms = {"new": shlex.split(args.args)}
    if args.compare:
        arms["legacy"] = LEGACY
    if args.fast:
        arms = {"default": shlex.split(args.args), "fast": FAST, "fast-bf16": FAST_BF16}
    rows: dict[str, list[dict]] = {name: [] for name in arms}
    with tempfile.TemporaryDirectory() as tmp:
        for i, seed in enumerate(args.seeds):
            order = list(arms) if i % 2 == 0 else list(reversed(arms))  # alternate who goes first
            for name in order:
                row = run_once(seed, arms[name], Path(tmp) / f"{name}-{seed}.json")
                rows[name].append(row)
                print(f"{name:>6} seed {seed}: wall {row['wall_s']:.1f}s, CPU {row['cpu_s']:.1f}s "
                      f"(training clock {row['train_s']:.1f}s), test acc at best val {row['test_acc_at_best_val']:.2f}%, "
                      f"final {row['final_test_acc']:.2f}%, dead {row['dead_share']:.1%}, load {row['load']:.1f}, "
                      f"threads {row['threads']}", flush=True)
    for name, group in rows.items():
        describe(name, group)
    if args.fast:
        for name in ("fast", "fast-bf16"):
            for key in ("wall_s", "cpu_s", "train_s"):
                ratios = [f[key] / d[key] for f, d in zip(rows[name], rows["default"])]
                print(f"{name} / default {key}: median of per-seed ratios {statistics.median(ratios):.3f}x "
                      f"(range {min(ratios):.3f}-{max(ratios):.3f})")
    if args.compare:
        for key in ("wall_s", "cpu_s", "train_s"):
            ratios = [n[key] / o[key] for n, o in zip(rows["new"], rows["legacy"])]
            print(f"new / legacy {key}: median of per-seed ratios {statistics.median(ratios):.2f}x "
                  f"(range {min(ratios):.2f}-{max(ratios):.2f})")
    return harness.finish(args, rows)


if __name__ == "__main__":
    main()
