"""What the data plugin registers, importing nothing heavy: torchvision sets and their shapes.

Registration (``stratum_plugins.data``) declares the data sets from these tables;
:mod:`.sources` loads them (torch, torchvision) when a run asks.
"""

from __future__ import annotations

# name -> (torchvision class name, folder torchvision uses under root, channel means, stds)
TORCHVISION_SETS = {
    "cifar10": ("CIFAR10", "cifar-10-batches-py", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "mnist": ("MNIST", "MNIST/raw", (0.1307,), (0.3081,)),
    "fashion-mnist": ("FashionMNIST", "FashionMNIST/raw", (0.2860,), (0.3530,)),
}

# The shape of one image of each (declared in the registry, so `stratum list model` and the
# dead-weight tests know it without the files).
TORCHVISION_SHAPES = {"cifar10": (3, 32, 32), "mnist": (1, 28, 28), "fashion-mnist": (1, 28, 28)}
