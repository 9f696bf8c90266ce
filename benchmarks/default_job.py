"""The default job: `stratum run` with no arguments, timed end to end as a user sees it.

Runs the real command in a subprocess (interpreter start, imports, data, training,
evaluation, output) once per seed and reports wall-clock seconds and test accuracy.
The goal (issue 2): under 60 s on 2 CPU cores and >= 95% test accuracy.

    python benchmarks/default_job.py --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            out = Path(tmp) / f"seed{seed}.json"
            extra = [] if seed == 0 else ["--seed", str(seed)]  # seed 0 is literally the default job
            t0 = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "stratum", "run", *extra, "--json", str(out), "--quiet"],
                                  capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if done.returncode != 0:
                sys.exit(f"seed {seed} failed: {done.stderr}")
            summary = json.loads(out.read_text())
            rows.append({"seed": seed, "wall_s": wall, "final_test_acc": summary["final_test_acc"],
                         "test_acc_at_best_val": summary["test_acc_at_best_val"], "train_s": summary["total_s"],
                         "threads": summary["threads"], "device": summary["device"]})
            print(f"seed {seed}: wall {wall:.1f}s (training clock {summary['total_s']:.1f}s), "
                  f"final test acc {summary['final_test_acc']:.2f}%, at best val {summary['test_acc_at_best_val']:.2f}%, "
                  f"threads {summary['threads']}, {summary['device']}")
    walls = [r["wall_s"] for r in rows]
    accs = [r["final_test_acc"] for r in rows]
    print(f"median wall {statistics.median(walls):.1f}s (max {max(walls):.1f}s); "
          f"final test acc median {statistics.median(accs):.2f}% (min {min(accs):.2f}%)")


if __name__ == "__main__":
    main()
