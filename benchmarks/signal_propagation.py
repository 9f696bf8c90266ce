"""Signal propagation through a deep vanilla tanh CNN: delta-orthogonal against Gaussian.

Builds the body of ``vanilla-cnn`` (``depth`` 3x3 convolutions of ``channels``
channels, each followed by tanh) with the deltaorth initialisers at the tanh
critical point (``--q-star``, default 0.026: sigma_w^2 ~ 1.05, sigma_b^2 ~ 2.0e-5),
feeds it activations tanh(N(0, q*)) and reports, forward only:

* the output/input activation-norm ratio ||a_L|| / ||a_0|| at several depths
  (median and range over seeds); the target is [0.5, 2] at depth 10,000;
* the singular values of the input-output Jacobian at a moderate depth
  (min, max, max/min, standard deviation, share within [0.5, 2]), for one input.

Both zero padding (what ``vanilla-cnn`` uses) and circular padding (the
setting of the mean-field theory, no boundary) are measured: on small maps
zero padding alone drains a Gaussian kernel's signal, since the taps that
fall on padding carry no energy, while a delta-orthogonal kernel only uses
its centre tap and never sees the padding.

    python benchmarks/signal_propagation.py                      # depth 10000, c=16, 4x4 maps, 5 seeds
    python benchmarks/signal_propagation.py --depth 2000 --seeds 3 --jacobian-depth 64
"""

from __future__ import annotations

import math
import statistics
import time

import torch
from torch import nn

import harness
from stratum.seeding import generator
from stratum_plugins.deltaorth.critical import critical_point
from stratum_plugins.deltaorth.init import init_model_
from stratum_plugins.deltaorth.vanilla_cnn import VanillaCNN


def build_body(depth: int, channels: int, scheme: str, seed: int, padding_mode: str, q_star: float) -> nn.Sequential:
    sigma_w2, sigma_b2 = critical_point(q_star)
    model = VanillaCNN(channels, 10, depth=depth, channels=channels)
    init_model_(model, scheme, generator(seed, "init"), math.sqrt(sigma_w2), math.sqrt(sigma_b2))
    for module in model.body:
        if isinstance(module, nn.Conv2d):
            module.padding_mode = padding_mode
    return model.body


def input_activations(batch: int, channels: int, spatial: int, seed: int, q_star: float) -> torch.Tensor:
    pre = torch.randn(batch, channels, spatial, spatial, generator=generator(seed, "x")) * math.sqrt(q_star)
    return torch.tanh(pre)


@torch.no_grad()
def norm_ratios(body: nn.Sequential, a0: torch.Tensor, checkpoints: list[int]) -> dict[int, float]:
    ratios = {}
    a = a0
    layer = 0
    for module in body:
        a = module(a)
        if isinstance(module, nn.Tanh):
            layer += 1
            if layer in checkpoints:
                ratios[layer] = (a.norm() / a0.norm()).item()
    return ratios


def jacobian_singular_values(body: nn.Sequential, a0: torch.Tensor) -> torch.Tensor:
    x = a0[:1]
    shape = x.shape

    def f(flat):
        return body(flat.view(shape)).flatten()

    jac = torch.func.jacrev(f)(x.flatten())
    return torch.linalg.svdvals(jac.double())


def main(argv=None) -> dict:
    parser = harness.parser(__doc__, seeds=5)
    parser.add_argument("--depth", type=int, default=10_000)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--spatial", type=int, default=4, help="height = width of the feature maps")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--jacobian-depth", type=int, default=128)
    parser.add_argument("--q-star", type=float, default=0.026, help="the point on the tanh critical line")
    parser.add_argument("--parts", default="norm,jacobian", help="which measurements: norm, jacobian or both")
    args = parser.parse_args(argv)
    harness.set_threads(args.threads)
    seeds = harness.seed_range(args)
    checkpoints = sorted({d for d in (10, 100, 1000, 10_000) if d <= args.depth} | {args.depth})
    report = {"dtype": "float32", "device": "cpu", "norm_ratio": {}, "jacobian": {}}
    sigma_w2, sigma_b2 = critical_point(args.q_star)
    print(f"critical point at q*={args.q_star}: sigma_w^2={sigma_w2:.4f} sigma_b^2={sigma_b2:.3e}; "
          f"depth {args.depth}, c={args.channels}, {args.spatial}x{args.spatial} maps, {args.seeds} seeds, "
          f"{args.threads} thread(s)")
    parts = set(args.parts.split(","))
    for padding in ("zeros", "circular") if "norm" in parts else ():
        for scheme in ("delta-orthogonal", "gaussian"):
            per_depth = {d: [] for d in checkpoints}
            t0 = time.perf_counter()
            for seed in seeds:
                body = build_body(args.depth, args.channels, scheme, seed, padding, args.q_star)
                ratios = norm_ratios(body, input_activations(args.batch, args.channels, args.spatial, seed, args.q_star),
                                     checkpoints)
                for d, r in ratios.items():
                    per_depth[d].append(r)
                del body
            key = f"{scheme}/{padding}"
            report["norm_ratio"][key] = {str(d): harness.summarise(v) for d, v in per_depth.items()}
            final = report["norm_ratio"][key][str(args.depth)]
            inside = sum(0.5 <= r <= 2.0 for r in per_depth[args.depth])
            cells = "  ".join(f"L={d}: {statistics.median(v):.3g}" for d, v in per_depth.items())
            print(f"norm ratio  {key:<26} {cells}  | depth {args.depth}: range [{final['min']:.3g}, {final['max']:.3g}], "
                  f"{inside}/{args.seeds} seeds in [0.5, 2]  ({time.perf_counter() - t0:.0f}s)")
    for padding in ("zeros", "circular") if "jacobian" in parts else ():
        for scheme in ("delta-orthogonal", "gaussian"):
            stats = []
            for seed in seeds:
                body = build_body(args.jacobian_depth, args.channels, scheme, seed, padding, args.q_star)
                s = jacobian_singular_values(body, input_activations(1, args.channels, args.spatial, seed, args.q_star))
                stats.append({"min": s.min().item(), "max": s.max().item(), "std": s.std().item(),
                              "mean_sq": (s**2).mean().item(),
                              "within_half_to_2": ((s >= 0.5) & (s <= 2.0)).double().mean().item()})
            key = f"{scheme}/{padding}"
            agg = {k: statistics.median(x[k] for x in stats) for k in stats[0]}
            agg["max_over_min"] = statistics.median(x["max"] / max(x["min"], 1e-300) for x in stats)
            report["jacobian"][key] = agg
            print(f"jacobian    {key:<26} depth {args.jacobian_depth}: singular values min {agg['min']:.3g} "
                  f"max {agg['max']:.3g} std {agg['std']:.3g} mean s^2 {agg['mean_sq']:.3g} max/min {agg['max_over_min']:.3g} "
                  f"share in [0.5, 2] {agg['within_half_to_2']:.2f} "
                  f"(median over seeds)")
    return harness.finish(args, report)


if __name__ == "__main__":
    main()
