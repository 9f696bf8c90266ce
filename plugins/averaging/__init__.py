"""Weight averaging as an extension usable with every strategy: ``--average ema`` or ``--average swa``.

* ``--average ema --ema-decay D`` (or ``--ema-half-life STEPS``; one of the two, default decay
  0.99), optionally ``--ema-warmup``: an exponential moving average of the weights **and the
  batch-norm buffers**, updated after every optimizer step.
* ``--average swa --swa-start E``: stochastic weight averaging, the arithmetic mean of the
  weights at the end of epochs E, E+1, ... (default: the last quarter of ``--epochs``), with the
  batch-norm statistics of the average recomputed by ``update_bn`` over the training data.

The averaged model is what the engine evaluates and reports (through the
``stratum_eval_model`` hook): ``val_*``/``test_*`` in the history, the best validation
epoch and early stopping are the average's; the raw model's accuracies stay in the history as
``raw_val_acc``, ``raw_test_acc`` ... The averaging work (the updates, SWA's ``update_bn``)
counts on the training clock. The average is kept in checkpoints (resume is exact) and is
``stratum.fit(...).averaged_model``. Details: docs/training.md, "Weight averaging".

Entry point ``averaging`` in group ``stratum``. Registration imports no torch: the extension
(:mod:`.extension`) and the functional core (:mod:`.core`, around ``torch.optim.swa_utils``)
are imported when a run asks for an average.
"""

from __future__ import annotations

import stratum

from .options import DEFAULT_EMA_DECAY, METHODS, AveragingOptions

__all__ = ["DEFAULT_EMA_DECAY", "METHODS", "AveragingOptions", "stratum_register_extensions"]


@stratum.hookimpl
def stratum_register_extensions():
    """The ``averaging`` extension: off unless ``--average ema|swa``."""
    return stratum.extension(
        "averaging", "stratum_plugins.averaging.extension:averaging_extension",
        "Weight averaging (--average ema|swa): the average is what is evaluated and reported; raw accuracies "
        "stay in the history as raw_*.",
        options=AveragingOptions,
    )
