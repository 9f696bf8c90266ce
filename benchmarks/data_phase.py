"""Share of the data phase in a training step, measured by the ``phases`` profiler.

Goal: < 5% of a step for in-memory (device-resident) data. The paper's
breakdown put data at 53% of an iteration. For contrast the same run also
goes through a torch DataLoader (``--resident never``).

"Share of a step" = data seconds / (data + forward + loss + backward + update
+ other), i.e. the training module only; the share of the whole iteration
(with validation and test) is printed too. Epoch 1 is dropped as warm-up.

    python benchmarks/data_phase.py --epochs 4 --threads 1
"""

from __future__ import annotations

import contextlib
import io

import harness

SETUPS = {
    "vgg11-w0.25-synthetic-b128": dict(model="vgg11", width=0.25, dataset="synthetic", batch_size=128),
    "mlp32-digits-b32": dict(model="mlp", hidden=[32], dataset="digits", batch_size=32),
}


def measure(values: dict) -> dict:
    from stratum_plugins.profilers.breakdown import summarise

    with contextlib.redirect_stdout(io.StringIO()):  # the profiler's own table
        summary = harness.train({**values, "profile": ["phases"]})
    epochs = [{"epoch": r["epoch"], "mode": r["mode"], "steps": r["steps"], "seconds": r["phases_s"]}
              for r in summary["history"][1:]]
    b = summarise(epochs)
    return {"data_share_of_step": b["share_of_train"]["data"], "data_share_of_iteration": b["share"]["data"],
            "data_ms_per_step": b["ms_per_step"]["data"], "step_ms": 1000 * b["train_s"] / b["steps"],
            "share_of_train": b["share_of_train"], "share": b["share"]}


def main(argv=None):
    parser = harness.parser(__doc__, short=True)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--steps-per-epoch", type=int, default=0)
    args = parser.parse_args(argv)
    harness.set_threads(args.threads)
    results = {"device": "cpu", "dtype": "float32", "setups": {}}
    for name, setup in SETUPS.items():
        for resident in ("always", "never"):
            values = {**setup, "epochs": args.epochs, "threads": args.threads, "device": "cpu",
                      "resident": resident, "steps_per_epoch": args.steps_per_epoch}
            r = measure(values)
            label = f"{name} ({'resident tensors' if resident == 'always' else 'DataLoader'})"
            results["setups"][label] = r
            print(f"{label}: data {100 * r['data_share_of_step']:.2f}% of a step "
                  f"({r['data_ms_per_step']:.3f} of {r['step_ms']:.3f} ms), {100 * r['data_share_of_iteration']:.2f}% of the iteration")
    return harness.finish(args, results)


if __name__ == "__main__":
    main()
