"""Conv-2/4/6 layouts, importing nothing heavy (registration describes the models from them).

Conv widths per model; "M" is a 2x2 max-pool. :mod:`.models` builds the nets.
"""

from __future__ import annotations

CONV_LAYOUTS = {
    "conv2": [64, 64, "M"],
    "conv4": [64, 64, "M", 128, 128, "M"],
    "conv6": [64, 64, "M", 128, 128, "M", 256, 256, "M"],
}
