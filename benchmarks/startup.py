"""Start-up: whole-process wall time of the describing commands against ``python -c "import click"``.

Each command is a fresh ``python -m stratum ...`` process (what a user waits
for). After one warm-up round (page cache, .pyc files), the commands and the
``import click`` baseline are run in interleaved rounds, so both see the same
machine conditions; the figure per command is the median over rounds, and the
ratio is taken pair by pair (command / baseline of the same round) before the
median. The goal (issue 11): each command <= 0.3 s on 2 cores.

    python benchmarks/startup.py --rounds 15 --json startup.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "stratum --help": ["-m", "stratum", "--help"],
    "stratum list": ["-m", "stratum", "list"],
    "stratum plugins": ["-m", "stratum", "plugins"],
    "stratum run --help": ["-m", "stratum", "run", "--help"],
    "stratum run --strategy focus --help": ["-m", "stratum", "run", "--strategy", "focus", "--help"],
}
BASELINE = ["-c", "import click"]
GOAL_S = 0.3


def wall(args: list[str]) -> float:
    """Seconds from spawning ``python ARGS`` to its exit; raises when it fails."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"python {' '.join(args)} failed: {done.stderr.decode()[-500:]}")
    return elapsed


def measure(rounds: int) -> dict:
    """Median wall time per command and its median per-round ratio to the baseline."""
    for args in [BASELINE, *COMMANDS.values()]:  # warm-up
        wall(args)
    base, times = [], {name: [] for name in COMMANDS}
    for _ in range(rounds):
        for name, args in COMMANDS.items():
            b = wall(BASELINE)
            base.append(b)
            times[name].append((wall(args), b))
    results = {}
    for name, pairs in times.items():
        seconds = [t for t, _ in pairs]
        results[name] = {
            "median_s": statistics.median(seconds),
            "min_s": min(seconds),
            "ratio_to_baseline": statistics.median(t / b for t, b in pairs),
            "within_goal": statistics.median(seconds) <= GOAL_S,
        }
    return {"baseline": {"command": "python -c 'import click'", "median_s": statistics.median(base)},
            "commands": results}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="Timed rounds after the warm-up (default 15).")
    parser.add_argument("--json", default=None, help="Also write the figures to this JSON file.")
    args = parser.parse_args(argv)
    figures = measure(max(1, args.rounds))
    figures["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count(), "rounds": args.rounds,
                          "block_plugins": os.environ.get("STRATUM_BLOCK_PLUGINS", "")}
    print(f"{'command':<40} {'median s':>9} {'min s':>7} {'x click':>8}")
    print(f"{figures['baseline']['command']:<40} {figures['baseline']['median_s']:>9.3f}")
    for name, row in figures["commands"].items():
        mark = "" if row["within_goal"] else f"  (> {GOAL_S} s goal)"
        print(f"{name:<40} {row['median_s']:>9.3f} {row['min_s']:>7.3f} {row['ratio_to_baseline']:>8.2f}{mark}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(figures, fh, indent=2)
            fh.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
