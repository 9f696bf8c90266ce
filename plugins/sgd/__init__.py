"""Strategy ``sgd``: mini-batch gradient descent, the baseline of every comparison.

The update rule itself is the configured optimiser (``--optimizer``, default
``sgd`` with ``--lr``, ``--momentum``, ``--nesterov``, ``--weight-decay``); this
strategy adds nothing on top, which is the point of a baseline.
"""

from __future__ import annotations

import stratum
from stratum import Strategy


class SGDStrategy(Strategy):
    """One mode, ``sgd``: forward, loss, backward, optimiser step, every batch."""

    name = "sgd"

    def __init__(self, run, options=None):
        super().__init__(run, options)


@stratum.hookimpl
def stratum_register_strategies():
    return stratum.strategy(
        "sgd",
        SGDStrategy,
        "Mini-batch SGD (lr, momentum, nesterov, weight decay): the default and the baseline.",
    )
