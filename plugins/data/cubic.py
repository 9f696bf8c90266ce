"""``cubic``: seed 004's regression toy, y = x^3 + 0.1 * noise.

Training inputs are 1,500 evenly spaced points on [-1, 1] (as in the seed);
the test set is a separate draw of x uniform on [-1, 1] with its own noise.
Inputs have shape (1,), targets (1,); the task is regression (MSE, no accuracy).
"""

from __future__ import annotations

import torch

from stratum.data import DatasetBundle, TensorSplit


def cubic_splits(points: int, test: int, noise: float, seed: int) -> tuple[TensorSplit, TensorSplit]:
    g = torch.Generator().manual_seed(seed)
    x_train = torch.linspace(-1.0, 1.0, points).unsqueeze(1)
    y_train = x_train.pow(3) + noise * torch.randn(x_train.shape, generator=g)
    x_test = torch.rand(test, 1, generator=g) * 2.0 - 1.0
    y_test = x_test.pow(3) + noise * torch.randn(x_test.shape, generator=g)
    return TensorSplit(x_train, y_train), TensorSplit(x_test, y_test)


def load_cubic(request, options) -> DatasetBundle:
    """The ``cubic`` data set from its options (``stratum_plugins.data.CubicOptions``)."""
    train, test = cubic_splits(options.cubic_points, options.cubic_test, options.cubic_noise, options.cubic_seed)
    return DatasetBundle(
        train=train, test=test, input_shape=(1,), num_outputs=1, task="regression",
        info={"source": "procedural", "formula": "y = x^3 + noise", "noise": options.cubic_noise},
    )
