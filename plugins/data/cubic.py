"""``cubic``: seed 004's regression toy, y = x^3 + 0.1 * noise.

Training inputs are 1,500 evenly spaced points on [-1, 1] (as in the seed);
the test set is a separate draw of x uniform on [-1, 1] with its own noise.
Inputs have shape (1,), targets (1,); the task is regression (MSE, no accuracy).
"""

from __future__ import annotations

import attrs
import torch

import stratum
from stratum import option
from stratum.data import DatasetBundle, TensorSplit


@attrs.frozen
class CubicOptions:
    cubic_points: int = option(1500, "cubic: training points, evenly spaced on [-1, 1].", min=10)
    cubic_test: int = option(300, "cubic: test points, drawn uniformly on [-1, 1].", min=10)
    cubic_noise: float = option(0.1, "cubic: standard deviation of the Gaussian noise on y.", min=0)
    cubic_seed: int = option(1, "cubic: seed of the noise (fixed across run seeds).", min=0)


def cubic_splits(points: int, test: int, noise: float, seed: int) -> tuple[TensorSplit, TensorSplit]:
    g = torch.Generator().manual_seed(seed)
    x_train = torch.linspace(-1.0, 1.0, points).unsqueeze(1)
    y_train = x_train.pow(3) + noise * torch.randn(x_train.shape, generator=g)
    x_test = torch.rand(test, 1, generator=g) * 2.0 - 1.0
    y_test = x_test.pow(3) + noise * torch.randn(x_test.shape, generator=g)
    return TensorSplit(x_train, y_train), TensorSplit(x_test, y_test)


def load_cubic(request, options: CubicOptions) -> DatasetBundle:
    train, test = cubic_splits(options.cubic_points, options.cubic_test, options.cubic_noise, options.cubic_seed)
    return DatasetBundle(
        train=train, test=test, input_shape=(1,), num_outputs=1, task="regression",
        info={"source": "procedural", "formula": "y = x^3 + noise", "noise": options.cubic_noise},
    )


def component():
    return stratum.dataset(
        "cubic", load_cubic, "Seed 004's regression toy: y = x^3 + 0.1*noise, 1,500 points (MSE task).",
        options=CubicOptions, info={"input_shape": (1,)},
    )
