"""Cost of the train-only augmentation (``--augment``) against the training step it precedes.

For each setup, the augmentation of one training batch as the engine applies it
(``stratum.data.TrainAugmentation``: a seeded CPU generator per batch, then the
vectorised core: one pad and one gather) and one training step of the model on
that batch (forward, cross-entropy, backward, SGD step), both best-of tight
loops on the CPU. The share is augmentation / step.

    python benchmarks/augment_cost.py --threads 2
"""

from __future__ import annotations

import functools

import harness

SETUPS = {
    # name: (augmentation, its keyword arguments, batch shape, dtype, model builder name, width)
    "crop-flip, uint8 CIFAR batch 128, ResNet-20": ("crop_flip", {"padding": 4}, (128, 3, 32, 32), "uint8", "resnet20", 1.0),
    "crop-flip, float32 synthetic batch 128, VGG11 w0.25": ("crop_flip", {"padding": 4}, (128, 3, 32, 32), "float32", "vgg11", 0.25),
    "translate, float32 digits batch 32, VGG11 w0.25": ("translate", {"max_shift": 1}, (32, 1, 8, 8), "float32", "vgg11", 0.25),
}


def _model(name: str, shape, width: float):
    from stratum_plugins.zoo.models import build_vgg
    from stratum_plugins.zoo.resnet import resnet20

    if name == "resnet20":
        return resnet20(shape[1], 10, width, input_size=shape[-1])
    return build_vgg("vgg11", shape[1:], 10, width=width, batch_norm=True)


def measure(augmentation: str, kwargs: dict, shape, dtype: str, model_name: str, width: float, loops: int) -> dict:
    import torch

    import stratum_plugins.augment.core as core
    from stratum.data import TrainAugmentation

    g = torch.Generator().manual_seed(0)
    if dtype == "uint8":
        x = torch.randint(0, 256, shape, dtype=torch.uint8, generator=g)
    else:
        x = torch.randn(shape, generator=g)
    y = torch.randint(0, 10, (shape[0],), generator=g)
    step = [0]
    augment = TrainAugmentation(functools.partial(getattr(core, augmentation), **kwargs), 0, lambda: step[0])

    def augment_once():
        step[0] += 1
        return augment(x)

    model = _model(model_name, shape, width)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    inputs = x.float() / 255 if dtype == "uint8" else x

    def train_step():
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(inputs), y).backward()
        optimizer.step()

    augment_s = harness.best_of(augment_once, loops=max(10, loops * 10))
    step_s = harness.best_of(train_step, loops=loops)
    return {"augment_ms": 1000 * augment_s, "step_ms": 1000 * step_s, "share": augment_s / step_s}


def main(argv=None):
    parser = harness.parser(__doc__, short=True, threads=2)
    parser.add_argument("--loops", type=int, default=5, help="training steps per timed loop (default 5)")
    args = parser.parse_args(argv)
    harness.set_threads(args.threads)
    results = {"device": "cpu", "threads": args.threads, "setups": {}}
    for name, setup in SETUPS.items():
        r = measure(*setup, loops=args.loops)
        results["setups"][name] = r
        print(f"{name}: augmentation {r['augment_ms']:.3f} ms, step {r['step_ms']:.2f} ms, "
              f"{100 * r['share']:.2f}% of the step")
    return harness.finish(args, results)


if __name__ == "__main__":
    main()
