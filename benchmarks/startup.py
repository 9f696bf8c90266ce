"""Start-up: whole-process wall time of the describing commands against ``python -c "import click"``.

Each command is a fresh ``python -m stratum ...`` process (what a user waits
for). After one warm-up round (page cache, .pyc files), the commands and the
``import click`` baseline are run in interleaved rounds, so both see the same
machine conditions; the figure per command is the median over rounds, and the
ratio is taken pair by pair (command / baseline of the same round) before the
median. The goal (issue 11): each command <= 0.3 s on 2 cores.

    python benchmarks/startup.py --repeats 15 --json startup.json
"""

from __future__ import annotations

import subprocess
import sys

import harness

COMMANDS = {
    "stratum --help": ["-m", "stratum", "--help"],
    "stratum list": ["-m", "stratum", "list"],
    "stratum plugins": ["-m", "stratum", "plugins"],
    "stratum run --help": ["-m", "stratum", "run", "--help"],
    "stratum run --strategy focus --help": ["-m", "stratum", "run", "--strategy", "focus", "--help"],
}
BASELINE = ["-c", "import click"]
GOAL_S = 0.3


def spawn(args: list[str]):
    """A function running ``python ARGS`` to its exit; it raises SystemExit when the command fails."""

    def call() -> None:
        done = subprocess.run([sys.executable, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if done.returncode != 0:
            raise SystemExit(f"python {' '.join(args)} failed: {done.stderr.decode()[-500:]}")

    return call


def measure(repeats: int) -> dict:
    """Median wall time per command and its median per-round ratio to the baseline.

    Each command is paired with a baseline run just before it in the same round."""
    fns = {}
    for name, args in COMMANDS.items():
        fns[f"baseline before {name}"] = spawn(BASELINE)
        fns[name] = spawn(args)
    samples = harness.interleaved(fns, repeats=repeats, warmup=1)
    base = [t for name, ts in samples.items() if name.startswith("baseline before ") for t in ts]
    results = {}
    for name in COMMANDS:
        summary = harness.summarise(samples[name])
        results[name] = {**summary, "ratio_to_baseline": harness.median_ratio(samples[name], samples[f"baseline before {name}"]),
                         "within_goal": summary["median"] <= GOAL_S}
    return {"baseline": {"command": "python -c 'import click'", **harness.summarise(base)}, "commands": results}


def main(argv=None) -> int:
    parser = harness.parser(__doc__, threads=None, repeats=15)
    args = parser.parse_args(argv)
    figures = measure(args.repeats)
    print(f"{'command':<40} {'median s':>9} {'min s':>7} {'x click':>8}")
    print(f"{figures['baseline']['command']:<40} {figures['baseline']['median']:>9.3f} {figures['baseline']['min']:>7.3f}")
    for name, row in figures["commands"].items():
        mark = "" if row["within_goal"] else f"  (> {GOAL_S} s goal)"
        print(f"{name:<40} {row['median']:>9.3f} {row['min']:>7.3f} {row['ratio_to_baseline']:>8.2f}{mark}")
    harness.finish(args, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
