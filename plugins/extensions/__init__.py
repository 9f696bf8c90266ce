"""The engine's own extension, registered like every other built-in plugin.

* ``data-parallel``: under ``torchrun``, DDP with each global batch sharded across ranks
  (:class:`stratum.distributed.DataParallel`).

Entry point ``extensions`` in group ``stratum`` (pyproject.toml). Blocking it
(``--block-plugin extensions``) leaves runs without this extension, never
without an update rule: the ``optimizer.step()`` fallback of ``stratum_apply_update``
is core behaviour (:mod:`stratum.engine_plugin`, registered by every plugin manager).

Importing this module does not import torch: the factory imports what it needs when a run
calls it. (TensorBoard logging, an extension until issue 13, is the ``tensorboard`` logger of
:mod:`stratum_plugins.loggers`.)
"""

from __future__ import annotations

import stratum


def data_parallel(run, options):
    """Extension factory: :class:`~stratum.distributed.DataParallel` in a multi-process
    (torchrun) run, ``None`` in a single process."""
    from stratum.distributed import data_parallel_extension

    return data_parallel_extension(run, options)


@stratum.hookimpl
def stratum_register_extensions():
    """Data parallelism when launched by torchrun."""
    return [
        stratum.extension("data-parallel", data_parallel,
                          "Under torchrun: DDP with each global batch sharded across ranks (gloo on CPU, nccl on CUDA)."),
    ]
