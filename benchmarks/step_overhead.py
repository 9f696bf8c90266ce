"""The engine's own cost per optimizer step for issue 12's step parts, in isolation.

Times, on a built run (VGG11 width 0.25, synthetic 3x32x32, ``--schedule cosine
--warmup-steps 10``), the three things the engine adds to a step: computing the
scheduled rate and writing it into the param groups (every step when a schedule
is on), installing and removing the step pre-hook that runs the gradient terms,
clipping and masks (only when one of them is in use), and that pipeline with
nothing to do (two empty hook calls). Clipping itself is the work of
``torch.nn.utils.clip_grad_*`` and costs what it costs in any loop. Compare the
sum with a step's time (``benchmarks/engine_overhead.py``).

    python benchmarks/step_overhead.py --repeats 2000
"""

from __future__ import annotations

import timeit

import harness


def main(argv=None) -> dict:
    parser = harness.parser(__doc__, threads=1, repeats=2000)
    args = parser.parse_args(argv)
    harness.set_threads(args.threads)
    from stratum.engine.step import prepare_gradients, schedule_step, set_lr

    run = harness.build(dict(model="vgg11", width=0.25, dataset="synthetic", synthetic_train=600, epochs=2,
                             schedule="cosine", warmup_steps=10, threads=args.threads, device="cpu"))
    optimizer, n = run.optimizer, args.repeats

    def hook():
        optimizer.register_step_pre_hook(lambda o, a, k: None).remove()

    result = {
        "schedule_and_set_lr_us": timeit.timeit(lambda: set_lr(optimizer, run.schedule(schedule_step(run))), number=n) / n * 1e6,
        "pre_hook_install_remove_us": timeit.timeit(hook, number=n) / n * 1e6,
        "empty_gradient_pipeline_us": timeit.timeit(lambda: prepare_gradients(run, 0), number=n) / n * 1e6,
    }
    for key, value in result.items():
        print(f"{key}: {value:.1f}")
    return harness.finish(args, result)


if __name__ == "__main__":
    main()
