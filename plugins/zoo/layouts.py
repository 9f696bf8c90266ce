"""The zoo's architecture tables and option choices, importing nothing heavy.

Registration (``stratum_plugins.zoo``) declares models and options from these;
:mod:`.models` builds the networks from the same tables.
"""

from __future__ import annotations

# Conv layer widths per VGG variant; "M" is a 2x2 max-pool. 8/10/13/16 conv layers.
VGG_LAYOUTS = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}

# --activation name -> the torch.nn class name (looked up in torch.nn by .models).
ACTIVATION_CLASSES = {
    "relu": "ReLU",
    "tanh": "Tanh",
    "sigmoid": "Sigmoid",
    "leaky_relu": "LeakyReLU",
    "elu": "ELU",
    "gelu": "GELU",
}

# --vgg-pooling rules (see models.keep_pool).
POOLING_RULES = ("live", "legacy")
