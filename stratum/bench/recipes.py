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
* ``focus-tune``, ``focus``, ``focus-spread`` (issue 3's time-to-accuracy study,
  formerly ``benchmarks/focus_study.py``), three stages on digits with VGG at
  width 0.25: ``focus-tune`` picks one SGD learning rate per model (tuning seeds
  100 and 101; the report's own table names it); ``focus`` runs every method
  (a variant: ``sgd`` or ``focus:<regressor>:<features>:<policy>``) x model x
  evaluation seed at that rate (``--lr``); ``focus-spread`` is the stability
  claim with early stopping (seeds 200 on). The report adds what each focus
  epoch did, the fit R^2 and how much sooner each method peaked.
* ``deep-vanilla-cnn`` (seed 003, formerly ``benchmarks/deep_vanilla_cnn.py``): a
  256-layer vanilla tanh CNN on digits, delta-orthogonal against Gaussian at the
  tanh critical point; the report adds accuracy and the first epoch at 90%.
* ``vanishing-gradients`` (seed 004, formerly ``benchmarks/vanishing_gradients.py``):
  a 20 x 64 MLP with five activation/initialiser pairs under ``--profile gradflow``;
  the report adds the first epoch's per-layer gradient norms and verdicts.
* ``baselines-tune``, ``baselines`` (issue 12's strong baselines): five arms
  (constant lr; cosine; warm-up + cosine; cosine + EMA; cosine + label
  smoothing) on digits (VGG11 w0.25 with batch norm) and synthetic (ResNet-20
  w0.25, 2,000 training samples), each a variant ``<task>:<arm>``.
  ``baselines-tune`` runs an lr axis on tuning seeds (100 on); its table picks
  each variant's lr by best validation accuracy. ``baselines`` runs the
  evaluation seeds (0-4) at those rates (a TOML ``[[variant]]`` per name with
  its ``lr``); its table reports steps, samples and seconds to a target every
  arm's median run reaches, and test accuracy at the best validation epoch next
  to the peak. :func:`check_seeds` refuses overlapping seeds.
* ``lottery-lenet``, ``lottery-conv`` (formerly ``benchmarks/lottery_ticket.py``):
  a lottery-ticket search per seed; the report's own table is the mean and 95%
  t-interval of each branch's accuracy and early-stop iteration per sparsity level.

``small`` runs on a laptop CPU in minutes (digits, narrow models, fewer
seeds); ``paper`` is the paper's setting (CIFAR-10 from ``--data-root``,
full-width VGG) and needs a GPU to finish in reasonable time.

:data:`RECIPES` holds the reproductions of the paper and the seeds (stability,
depth, optimizers); :data:`STUDIES` the project's own studies that used to be
scripts in ``benchmarks/`` (focus-*, lottery-*), whose ``paper`` scale is the
study's full scale on CPU; :func:`all_recipes` is both, what ``--recipe`` takes.
"""

from __future__ import annotations

import attrs

from ..errors import ConfigError
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


# The focus study (issue 3). Its method names: ``sgd`` or ``focus:<regressor>:<features>:<policy>``.
FOCUS_REGRESSORS = ("linear", "mlp", "xgboost")
FOCUS_FEATURES = ("paper", "trajectory")


def method_variant(method: str) -> dict:
    """``sgd`` or ``focus:<regressor>:<features>:<policy>[:key=value...]`` -> a variant
    ``{"name": method, "values": {run options}}``. Raises :class:`ConfigError` for any other form."""
    if method == "sgd":
        return {"name": method, "values": {"strategy": "sgd"}}
    parts = method.split(":")
    if parts[0] != "focus" or len(parts) < 4 or any("=" not in p for p in parts[4:]):
        raise ConfigError(f"bad method {method!r}: use sgd or focus:<regressor>:<features>:<policy>[:key=value...]")
    values = {"strategy": "focus", "regressor": parts[1], "features": parts[2], "policy": parts[3]}
    for item in parts[4:]:  # extra options for this method only
        key, _, value = item.partition("=")
        values[key.replace("-", "_")] = value
    return {"name": method, "values": values}


def _focus_fixed(scale: str) -> dict:
    # quick (small) is what docs/results.md ran: 15 epochs; paper is the study's full scale, 30.
    return {"dataset": "digits", "width": 0.25, "batch_size": 32, "epochs": 30 if scale == "paper" else 15,
            "prior_epochs": 3}


def _focus_models(scale: str) -> list[str]:
    return ["vgg11", "vgg13", "vgg16", "vgg19"] if scale == "paper" else ["vgg11", "vgg16"]


def focus_tune(scale: str) -> BenchSpec:
    lrs = [0.005, 0.01, 0.02, 0.05] if scale == "paper" else [0.01, 0.02, 0.05]
    fixed = {k: v for k, v in _focus_fixed(scale).items() if k != "prior_epochs"}
    return BenchSpec(name="focus-tune", recipe="focus-tune", fixed={**fixed, "strategy": "sgd"},
                     axes={"model": _focus_models(scale), "lr": lrs, "seed": [100, 101]})


def focus(scale: str) -> BenchSpec:
    methods = ["sgd"] + [f"focus:{r}:{f}:plateau" for f in FOCUS_FEATURES for r in FOCUS_REGRESSORS]
    return BenchSpec(name="focus", recipe="focus", fixed=_focus_fixed(scale),
                     axes={"model": _focus_models(scale), "seed": list(range(5))},
                     variants=[method_variant(m) for m in methods])


def focus_spread(scale: str) -> BenchSpec:
    fixed = _focus_fixed(scale)
    fixed.update(model="vgg11", patience=5, epochs=2 * fixed["epochs"])
    seeds = list(range(200, 220 if scale == "paper" else 206))
    return BenchSpec(name="focus-spread", recipe="focus-spread", fixed=fixed, axes={"seed": seeds},
                     variants=[method_variant(m) for m in ("sgd", "focus:linear:paper:plateau")])


# Lottery tickets (Frankle & Carbin's settings scaled to CPU): 20% of the remaining weights per round.
LOTTERY_SETTINGS = {
    "lottery-lenet": dict(model="lenet300", dataset="digits", optimizer="adam", lr=1.2e-3, batch_size=60, epochs=60,
                          prune_rounds=15, prune_scope="layer", prune_output="half"),
    "lottery-conv": dict(model="conv2", width=0.25, dataset="synthetic", synthetic_train=2000, optimizer="adam", lr=1e-3,
                         batch_size=60, epochs=12, prune_rounds=10, prune_scope="layer", prune_output="half"),
}


def _lottery(name: str):
    def build(scale: str) -> BenchSpec:
        fixed = dict(LOTTERY_SETTINGS[name], strategy="lottery")
        if scale != "paper":  # a look in minutes: a third of the rounds and epochs, three seeds
            fixed.update(prune_rounds=max(1, fixed["prune_rounds"] // 3), epochs=max(1, fixed["epochs"] // 3))
        fixed["prune_fraction"] = round(1 - 0.8 ** fixed["prune_rounds"], 12)
        seeds = list(range(5 if scale == "paper" else 3))
        return BenchSpec(name=name, recipe=name, fixed=fixed, axes={"seed": seeds})

    return build


def deep_vanilla_cnn(scale: str) -> BenchSpec:
    # paper: what docs/seed-systems.md measured (minutes per run); small: an eighth of the depth, half the epochs.
    depth, epochs = (256, 20) if scale == "paper" else (32, 10)
    fixed = {"model": "vanilla-cnn", "vcnn_depth": depth, "vcnn_channels": 32, "dataset": "digits", "epochs": epochs,
             "lr": 5e-4, "momentum": 0.9, "batch_size": 32}
    return BenchSpec(name="deep-vanilla-cnn", recipe="deep-vanilla-cnn", fixed=fixed,
                     axes={"init": ["delta-orthogonal", "gaussian"], "seed": [0, 1, 2]},
                     settings={"baseline": "init=gaussian"})


# (activation, initialiser, batch norm) of the vanishing-gradients comparison.
VANISHING_PAIRS = [("sigmoid", "xavier", False), ("sigmoid", "he-normal", False), ("sigmoid", "xavier", True),
                   ("tanh", "xavier", False), ("relu", "he-normal", False)]


def vanishing_gradients(scale: str) -> BenchSpec:
    fixed = {"model": "mlp", "hidden": [64] * 20, "dataset": "digits", "epochs": 5, "lr": 0.01,
             "profile": ["gradflow"], "gradflow_every": 1}
    variants = [{"name": f"{a}+{i}" + ("+batch-norm" if bn else ""),
                 "values": {"activation": a, "init": i, "batch_norm": bn}} for a, i, bn in VANISHING_PAIRS]
    return BenchSpec(name="vanishing-gradients", recipe="vanishing-gradients", fixed=fixed, variants=variants,
                     axes={"seed": list(range(10 if scale == "paper" else 3))},
                     settings={"baseline": "variant=relu+he-normal"})


# The baselines study (issue 12 item 7): five training recipes of plain SGD with momentum, each with its
# own learning rate tuned on seeds the evaluation never uses.
BASELINE_ARMS = ("constant", "cosine", "warmup+cosine", "cosine+ema", "cosine+smoothing")
BASELINE_TUNE_SEEDS = {"small": [100, 101], "paper": [100, 101, 102]}
BASELINE_EVAL_SEEDS = {"small": [0, 1, 2], "paper": [0, 1, 2, 3, 4]}
BASELINE_LRS = {"small": [0.02, 0.05, 0.1], "paper": [0.01, 0.02, 0.05, 0.1, 0.2]}
BASELINE_EPOCHS = {"small": 6, "paper": 30}  # fixed, so --epochs narrows every variant
# (task name, run options)
BASELINE_TASKS = (
    ("digits", {"dataset": "digits", "model": "vgg11", "width": 0.25, "batch_norm": True, "batch_size": 32}),
    ("synthetic", {"dataset": "synthetic", "model": "resnet20", "width": 0.25, "synthetic_train": 2000,
                   "batch_size": 64}),
)


def baseline_arm_values(arm: str, epochs: int) -> dict:
    """The run options of one baselines arm (a name in :data:`BASELINE_ARMS`) for a run of ``epochs``
    epochs: the schedule and, per arm, a linear warm-up over a tenth of the epochs, EMA weights
    (``--average ema``, decay 0.99 per step) or label smoothing 0.1. Raises ``KeyError`` for another name."""
    return {
        "constant": {"schedule": "constant"},
        "cosine": {"schedule": "cosine"},
        "warmup+cosine": {"schedule": "cosine", "warmup_epochs": round(epochs / 10, 3)},
        "cosine+ema": {"schedule": "cosine", "average": "ema"},
        "cosine+smoothing": {"schedule": "cosine", "label_smoothing": 0.1},
    }[arm]


def baseline_variants(scale: str) -> list[dict]:
    """Task x arm variants named ``<task>:<arm>`` (``digits:cosine``), each with its data set, model and
    arm options; without ``epochs`` (fixed, :data:`BASELINE_EPOCHS`) and ``lr`` (the recipe's fixed ``lr`` applies until a TOML ``[[variant]]`` of the same name
    sets the tuned one, see :meth:`BenchSpec.merged`)."""
    variants = []
    for task, options in BASELINE_TASKS:
        for arm in BASELINE_ARMS:
            variants.append({"name": f"{task}:{arm}",
                             "values": {**options, **baseline_arm_values(arm, BASELINE_EPOCHS[scale])}})
    return variants


def _baselines_fixed(scale: str) -> dict:
    return {"strategy": "sgd", "optimizer": "momentum", "momentum": 0.9, "lr": 0.05, "epochs": BASELINE_EPOCHS[scale]}


def baselines_tune(scale: str) -> BenchSpec:
    return BenchSpec(name="baselines-tune", recipe="baselines-tune", fixed=_baselines_fixed(scale),
                     axes={"lr": list(BASELINE_LRS[scale]), "seed": list(BASELINE_TUNE_SEEDS[scale])},
                     variants=baseline_variants(scale))


def baselines(scale: str) -> BenchSpec:
    return BenchSpec(name="baselines", recipe="baselines", fixed=_baselines_fixed(scale),
                     axes={"seed": list(BASELINE_EVAL_SEEDS[scale])}, variants=baseline_variants(scale))


def check_seeds(spec: BenchSpec) -> None:
    """Refuse a ``baselines`` plan whose seeds overlap the tuning seeds (100-102 at either scale), and a
    ``baselines-tune`` plan whose seeds overlap the evaluation seeds (0-4): the learning rates are chosen on
    seeds the evaluation never sees. Other recipes pass. Raises :class:`ConfigError` naming the seeds."""
    seeds = set(spec.axes.get("seed") or ([spec.fixed["seed"]] if "seed" in spec.fixed else []))
    tune = {s for v in BASELINE_TUNE_SEEDS.values() for s in v}
    held = {s for v in BASELINE_EVAL_SEEDS.values() for s in v}
    clash = {"baselines": (tune, "tuning"), "baselines-tune": (held, "evaluation")}.get(spec.recipe)
    if clash is None:
        return
    reserved, role = clash
    try:
        overlap = sorted(int(s) for s in seeds if int(s) in reserved)
    except (TypeError, ValueError):
        return  # an ill-formed seed is refused later, with its own message
    if overlap:
        raise ConfigError(f"recipe {spec.recipe!r}: seed(s) {', '.join(map(str, overlap))} are the {role} seeds "
                          f"({', '.join(map(str, sorted(reserved)))}); tune and evaluate on disjoint seeds")


# The nowcast study (issue 14 item 3): the focus family against the strong baselines, each arm's lr tuned
# on seeds 100-101 with `bench --tune` (the recipe carries no lr axis of its own).
FOCUS_STUDY_TASKS = {
    "small": [("digits", "vgg11"), ("synthetic", "vgg11")],
    "paper": [("digits", "vgg11"), ("digits", "vgg13"), ("digits", "vgg16"), ("digits", "vgg19"),
              ("synthetic", "vgg11"), ("synthetic", "vgg16"), ("synthetic", "resnet20")],
}
FOCUS_STUDY_EPOCHS = {"small": 8, "paper": 20}
FOCUS_STUDY_SEEDS = {"small": list(range(5)), "paper": list(range(10))}
FOCUS_STUDY_TUNE_SEEDS = (100, 101)
FOCUS_STUDY_DATA = {"digits": {"batch_size": 32},
                    "synthetic": {"batch_size": 64, "synthetic_train": 2000}}
OTHER_TASK = {"digits": "synthetic", "synthetic": "digits"}
# Nowcast geometry of the study: a checkpoint every 4 steps, windows of 5, a displacement 8 checkpoints
# (32 steps) ahead, a jump every 40 steps.
NOWCAST_STUDY = {"nowcast_every": 4, "nowcast_window": 5, "nowcast_horizon": 8, "nowcast_period": 40}
SGD_ARMS = ("sgd-constant", "sgd-cosine", "sgd-cosine-ema")


def focus_study_arms(scale: str) -> list[str]:
    """The arms: three tuned SGD baselines, the paper's focus method, last study's best focus variant,
    and nowcast (linear and mlp, with and without the guard, with a prior from the same task and from
    the other one; at ``small`` four of those eight)."""
    nowcast = ([f"nowcast-{r}{g}{o}" for r in ("linear", "mlp") for g in ("", "-guard") for o in ("", "-other")]
               if scale == "paper" else ["nowcast-linear", "nowcast-linear-guard", "nowcast-mlp", "nowcast-linear-other"])
    return [*SGD_ARMS, "focus-paper", "focus-best", *nowcast]


def focus_study_arm_values(arm: str, dataset: str) -> dict:
    """Run options of one arm of the nowcast study on ``dataset``. Raises ``KeyError`` for an unknown arm."""
    fixed = {
        "sgd-constant": {"strategy": "sgd", "schedule": "constant"},
        "sgd-cosine": {"strategy": "sgd", "schedule": "cosine"},
        "sgd-cosine-ema": {"strategy": "sgd", "schedule": "cosine", "average": "ema"},
        # the paper's method, faithfully: mlp regressors on the weight alone, plateau switching, constant lr
        "focus-paper": {"strategy": "focus", "regressor": "mlp", "features": "paper", "policy": "plateau",
                        "schedule": "constant"},
        # the best variant of the last study (docs/results.md)
        "focus-best": {"strategy": "focus", "regressor": "linear", "features": "denoise", "policy": "guarded",
                       "schedule": "constant"},
    }
    if arm in fixed:
        return dict(fixed[arm])
    if not arm.startswith("nowcast-"):
        raise KeyError(arm)
    parts = arm.split("-")[1:]
    regressor = parts[0]
    if regressor not in ("linear", "mlp") or not set(parts[1:]) <= {"guard", "other"}:
        raise KeyError(arm)
    values = {"strategy": "nowcast", "regressor": regressor, "schedule": "cosine", **NOWCAST_STUDY,
              "nowcast_guard": "guard" in parts}
    if "other" in parts:
        values["prior_dataset"] = OTHER_TASK[dataset]
        if dataset == "digits":  # synthetic's default 6,000 images: a third is about the synthetic task's 2,000
            values["prior_data_fraction"] = 0.33
    return values


def focus_study(scale: str) -> BenchSpec:
    variants = []
    for dataset, model in FOCUS_STUDY_TASKS[scale]:
        task = {"dataset": dataset, "model": model, "width": 0.25, "batch_norm": True, **FOCUS_STUDY_DATA[dataset]}
        for arm in focus_study_arms(scale):
            variants.append({"name": f"{dataset}/{model}:{arm}", "values": {**task, **focus_study_arm_values(arm, dataset)}})
    fixed = {"optimizer": "momentum", "momentum": 0.9, "lr": 0.02, "epochs": FOCUS_STUDY_EPOCHS[scale],
             "prior_epochs": 3}
    return BenchSpec(name="focus-study", recipe="focus-study", fixed=fixed,
                     axes={"seed": list(FOCUS_STUDY_SEEDS[scale])}, variants=variants)


RECIPES: dict[str, Recipe] = {
    "stability": Recipe("stability", "sgd vs focus, 20 seeds, early stopping at patience 5 (the focus paper's stability figure)", stability),
    "depth": Recipe("depth", "vgg11/13/16/19, sgd vs focus, time saved by depth (the focus paper's depth table)", depth),
    "optimizers": Recipe("optimizers", "SGD/Momentum/AdaGrad/RMSProp/Adam on cubic regression, loss curves", optimizers),
}

# The project's own studies, formerly scripts in benchmarks/: ``paper`` is each study's full
# scale (not the paper's CIFAR-10 setting), ``small`` the quick one.
STUDIES: dict[str, Recipe] = {
    "focus-tune": Recipe("focus-tune", "focus study stage 1: SGD learning rate per VGG depth on tuning seeds", focus_tune),
    "focus": Recipe("focus", "focus study stage 2: sgd vs focus methods x VGG depth x 5 seeds at the tuned --lr", focus),
    "focus-spread": Recipe("focus-spread", "focus study stage 3: final-accuracy spread with patience 5", focus_spread),
    "deep-vanilla-cnn": Recipe("deep-vanilla-cnn", "256-layer tanh CNN on digits, delta-orthogonal vs gaussian (Xiao et al. 2018)",
                               deep_vanilla_cnn),
    "vanishing-gradients": Recipe("vanishing-gradients", "20x64 MLP, five activation/init pairs, per-layer gradient "
                                  "norms", vanishing_gradients),
    "baselines-tune": Recipe("baselines-tune", "baselines stage 1: lr per arm (constant, cosine, warm-up, EMA, label "
                             "smoothing) on digits VGG11 and synthetic ResNet-20, tuning seeds", baselines_tune),
    "focus-study": Recipe("focus-study", "nowcast study: focus, last study's best variant and nowcast (linear/mlp, guard, "
                          "same/other-task prior) against tuned constant/cosine/cosine+EMA SGD; run with --tune lr "
                          "--tune-seeds 100,101", focus_study),
    "baselines": Recipe("baselines", "baselines stage 2: the five arms x 2 tasks x evaluation seeds; steps and samples "
                        "to a target, test acc at the best validation epoch", baselines),
    "lottery-lenet": Recipe("lottery-lenet", "lottery tickets, LeNet-300-100 on digits, per sparsity level", _lottery("lottery-lenet")),
    "lottery-conv": Recipe("lottery-conv", "lottery tickets, Conv-2 on synthetic, per sparsity level", _lottery("lottery-conv")),
}


def all_recipes() -> dict[str, Recipe]:
    """Every recipe ``stratum bench --recipe`` takes: the paper's (:data:`RECIPES`) and the studies (:data:`STUDIES`)."""
    return {**RECIPES, **STUDIES}


def recipe_spec(name: str, scale: str) -> BenchSpec:
    """The :class:`BenchSpec` of recipe ``name`` (a key of :func:`all_recipes`) at ``scale`` (``small`` or
    ``paper``). Raises ``KeyError`` for an unknown name (the CLI and the TOML reader check names first)."""
    return all_recipes()[name].build(scale)
