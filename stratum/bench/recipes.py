"""Built-in studies: ``stratum bench --recipe NAME --scale small|paper``.

Each recipe is a :class:`~.spec.BenchSpec`; flags and ``--config`` still
override any part of it (``--seeds 3`` for a quick look, ``--strategies sgd``
before the focus plugin is installed).

* ``stability`` (the paper's Fig. 4): sgd against focus over 20 seeds with
  early stopping at patience 5; the report's spread columns and box plot are
  the result.
* ``depth`` (the paper's Table 2): VGG with 8/10/13/16 conv layers
  (vgg11/13/16/19), sgd against focus; the report adds the time-saving table.
* ``optimizers`` (seed 004): SGD, Momentum, AdaGrad, RMSProp and Adam with the
  seed's settings on the ``cubic`` regression (y = x^3 + 0.1 noise, 1,500
  points, an MLP with 20 hidden units, batch 20, lr 0.01, 10 epochs); the
  result is a loss-curve plot (``--plot DIR``, default next to the store).

``small`` runs on a laptop CPU in minutes (digits, narrow models, fewer
seeds); ``paper`` is the paper's setting (CIFAR-10 from ``--data-root``,
full-width VGG) and needs a GPU to finish in reasonable time.
"""

from __future__ import annotations

import attrs

from .spec import BenchSpec

SCALES = ("small", "paper")


@attrs.frozen
class Recipe:
    name: str
    summary: str
    build: object  # scale -> BenchSpec


def stability(scale: str) -> BenchSpec:
    if scale == "paper":
        fixed = {"model": "vgg16", "dataset": "cifar10", "batch_size": 128, "epochs": 200, "patience": 5}
    else:
        fixed = {"model": "mlp", "hidden": [64], "dataset": "digits", "batch_size": 32, "epochs": 60, "patience": 5}
    return BenchSpec(name="stability", recipe="stability",
                     axes={"strategy": ["sgd", "focus"], "seed": list(range(20))}, fixed=fixed)


def depth(scale: str) -> BenchSpec:
    if scale == "paper":
        fixed = {"dataset": "cifar10", "width": 1.0, "batch_size": 128, "epochs": 100, "init": "he-normal"}
        seeds = list(range(5))
    else:
        # Batch norm: without it vgg16/vgg19 stay at chance on 8x8 digits within a small budget,
        # which would make the depth comparison empty. The paper scale keeps plain VGG.
        fixed = {"dataset": "digits", "width": 0.25, "batch_norm": True, "batch_size": 32, "epochs": 12,
                 "init": "he-normal"}
        seeds = list(range(3))
    return BenchSpec(name="depth", recipe="depth", axes={
        "strategy": ["sgd", "focus"], "model": ["vgg11", "vgg13", "vgg16", "vgg19"], "seed": seeds,
    }, fixed=fixed)


OPTIMIZER_VARIANTS = [
    # Seed 004's five optimisers with its settings (lr 0.01 for all).
    {"name": "SGD", "values": {"optimizer": "sgd", "momentum": 0.0}},
    {"name": "Momentum", "values": {"optimizer": "momentum", "momentum": 0.8}},
    {"name": "AdaGrad", "values": {"optimizer": "adagrad"}},
    {"name": "RMSProp", "values": {"optimizer": "rmsprop", "rmsprop_alpha": 0.9}},
    {"name": "Adam", "values": {"optimizer": "adam", "beta1": 0.9, "beta2": 0.99}},
]


def optimizers(scale: str) -> BenchSpec:
    fixed = {"dataset": "cubic", "model": "mlp", "hidden": [20], "init": "default", "batch_size": 20,
             "lr": 0.01, "epochs": 10, "profile": ["losses"]}
    seeds = list(range(10 if scale == "paper" else 3))
    return BenchSpec(name="optimizers", recipe="optimizers", axes={"seed": seeds}, fixed=fixed,
                     variants=[dict(v) for v in OPTIMIZER_VARIANTS], settings={"baseline": "variant=SGD"})


RECIPES: dict[str, Recipe] = {
    "stability": Recipe("stability", "sgd vs focus, 20 seeds, early stopping at patience 5 (Fig. 4)", stability),
    "depth": Recipe("depth", "vgg11/13/16/19, sgd vs focus, time saved by depth (Table 2)", depth),
    "optimizers": Recipe("optimizers", "SGD/Momentum/AdaGrad/RMSProp/Adam on cubic regression, loss curves (seed 004)", optimizers),
}


def recipe_spec(name: str, scale: str) -> BenchSpec:
    return RECIPES[name].build(scale)
