"""Speed knobs: training-step time of --precision, --channels-last and --compile against eager fp32.

Two models on synthetic 3x32x32 batches of 128: VGG11 width 0.25 (the zoo's, built by
stratum from the run options) and CIFAR ResNet-20 (``stratum_plugins.zoo.resnet.resnet20``,
built directly). For each model every variant gets its own copy of the same initial weights
and its own SGD optimiser (lr 0.005, momentum 0.9), and applies the knobs with the engine's own
code (``stratum.engine.precision.Precision``: autocast and fp16's gradient scaler;
``stratum.engine.speed.use_channels_last``; ``torch.compile`` with the inductor backend as
``--compile``). One step is what the engine's step does: zero_grad, forward and loss under
autocast, (scaled) backward, unscale and inf check, ``optimizer.step()``, scaler update.

The variants run side by side in one process, interleaved round robin (``harness.interleaved``:
each round times ``--steps`` steps of every variant in turn), so load from other processes hits
all of them alike. Warm-up rounds (untimed) include the compilation; the first call of a compiled
variant is reported separately as ``first_step_s`` (compile included). Reported per variant:
the median seconds per step and the speed-up ``eager fp32 / variant`` (median of the per-round
ratios; > 1 is faster).

    python benchmarks/speed_knobs.py --threads 2 --repeats 8 --json speed_knobs.json
"""

from __future__ import annotations

import copy
import time

import torch

import harness

# name -> (precision, channels_last, compile)
VARIANTS = {
    "eager fp32": ("fp32", False, False),
    "bf16": ("bf16", False, False),
    "fp16": ("fp16", False, False),
    "channels-last": ("fp32", True, False),
    "compile": ("fp32", False, True),
    "bf16 + channels-last": ("bf16", True, False),
    "compile + channels-last": ("fp32", True, True),
    "compile + bf16": ("bf16", False, True),
    "compile + bf16 + channels-last": ("bf16", True, True),
}


class Variant:
    """One model copy with its knobs, optimiser and step, built with the engine's own code."""

    def __init__(self, model, precision: str, channels_last: bool, compile_model: bool, x, y):
        from stratum.engine.precision import Precision
        from stratum.engine.speed import use_channels_last

        self.model = copy.deepcopy(model).train()
        if channels_last:
            use_channels_last(self.model)
        self.forward = torch.compile(self.model, backend="inductor") if compile_model else self.model
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.005, momentum=0.9)
        self.precision = Precision(precision, "cpu")
        self.x, self.y = x, y

    def step(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        with self.precision.autocast():
            loss = torch.nn.functional.cross_entropy(self.forward(self.x), self.y)
        self.precision.backward(loss)
        if self.precision.ready_to_step(self.optimizer):
            self.optimizer.step()
        self.precision.update()


def measure(name: str, model, x, y, variants: list[str], *, steps: int, repeats: int, warmup: int) -> dict:
    """Build the variants of ``model``, time them interleaved; returns per-variant results."""
    built, first = {}, {}
    for variant in variants:
        built[variant] = Variant(model, *VARIANTS[variant], x, y)
        t0 = time.perf_counter()
        built[variant].step()  # compiles a compiled variant
        first[variant] = time.perf_counter() - t0
        print(f"{name}: {variant}: first step {first[variant]:.2f} s", flush=True)

    def steps_of(v):
        return lambda: [v.step() for _ in range(steps)]

    samples = harness.interleaved({k: steps_of(v) for k, v in built.items()}, repeats=repeats, warmup=warmup)
    base = samples["eager fp32"]
    out = {}
    for variant, times in samples.items():
        per_step = [t / steps for t in times]
        out[variant] = {
            "step_s": harness.summarise(per_step),
            "first_step_s": first[variant],
            "speedup_vs_eager_fp32": harness.median_ratio(base, times),
        }
    return out


def main(argv=None) -> dict:
    parser = harness.parser(__doc__, threads=2, repeats=8)
    parser.add_argument("--steps", type=int, default=3, help="steps per variant in each interleaved round (default 3)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds after the first step (default 2)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--models", default="vgg11,resnet20", help="comma-separated: vgg11, resnet20")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="comma-separated variant names (eager fp32 is always included)")
    args = parser.parse_args(argv)
    harness.set_threads(args.threads)
    import torch._dynamo

    torch._dynamo.config.cache_size_limit = max(64, torch._dynamo.config.cache_size_limit)
    variants = ["eager fp32"] + [v.strip() for v in args.variants.split(",") if v.strip() and v.strip() != "eager fp32"]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; choose from {list(VARIANTS)}")

    run = harness.build(dict(strategy="sgd", model="vgg11", width=0.25, dataset="synthetic", synthetic_train=1000,
                             batch_size=args.batch_size, threads=args.threads, device="cpu", seed=0))
    x, y = next(run.train_batches.epoch(run.shuffle_generator))
    models = {"vgg11": run.model}
    if "resnet20" in args.models:
        from stratum_plugins.zoo.resnet import resnet20

        models["resnet20"] = resnet20(3, 10, generator=torch.Generator().manual_seed(0))
    results = {}
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        if name not in models:
            parser.error(f"unknown model {name!r}; choose from vgg11, resnet20")
        results[name] = measure(name, models[name], x, y, variants, steps=args.steps, repeats=args.repeats,
                                warmup=args.warmup)
        print(f"\n{name} (batch {args.batch_size}, {args.threads} threads): median s/step, speed-up vs eager fp32")
        for variant, r in results[name].items():
            print(f"  {variant:32s} {r['step_s']['median']:.4f}  x{r['speedup_vs_eager_fp32']:.2f}")
        best = max((v for v in results[name] if v != "eager fp32"), key=lambda v: results[name][v]["speedup_vs_eager_fp32"])
        results[name]["best"] = {"variant": best, "speedup": results[name][best]["speedup_vs_eager_fp32"]}
        print(f"  best: {best} x{results[name][best]['speedup_vs_eager_fp32']:.2f}", flush=True)
    payload = {"setup": {"batch_size": args.batch_size, "threads": args.threads, "device": "cpu", "steps_per_round": args.steps,
                         "repeats": args.repeats, "data": "synthetic 3x32x32", "vgg11": "width 0.25",
                         "resnet20": "option A shortcuts, width 1"},
               "results": results}
    return harness.finish(args, payload)


if __name__ == "__main__":
    main()
