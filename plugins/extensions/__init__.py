"""The engine's own extensions, registered like every other built-in plugin.

* ``tensorboard``: a run's scalars to TensorBoard when ``--tensorboard DIR`` is set
  (:class:`stratum.report.tensorboard.TensorBoardLogger`).
* ``data-parallel``: under ``torchrun``, DDP with each global batch sharded across ranks
  (:class:`stratum.distributed.DataParallel`).

Entry point ``extensions`` in group ``stratum`` (pyproject.toml). Blocking it
(``--block-plugin extensions``) leaves runs without these two extensions, never
without an update rule: the ``optimizer.step()`` fallback of ``stratum_apply_update``
is core behaviour (:mod:`stratum.engine_plugin`, registered by every plugin manager).

Importing this module imports neither torch nor the report package: each factory
imports what it needs when a run calls it.
"""

from __future__ import annotations

import stratum


def tensorboard_logger(run, options):
    """Extension factory: a :class:`~stratum.report.tensorboard.TensorBoardLogger` when
    ``run.config.tensorboard`` is set, on rank 0 only; otherwise ``None`` (stays out)."""
    if run.config.tensorboard is None:
        return None
    from stratum.distributed import is_main_process

    if not is_main_process():  # under torchrun only rank 0 writes
        return None
    from stratum.report.tensorboard import TensorBoardLogger

    return TensorBoardLogger(run)


def data_parallel(run, options):
    """Extension factory: :class:`~stratum.distributed.DataParallel` in a multi-process
    (torchrun) run, ``None`` in a single process."""
    from stratum.distributed import data_parallel_extension

    return data_parallel_extension(run, options)


@stratum.hookimpl
def stratum_register_extensions():
    """``--tensorboard DIR`` logging, and data parallelism when launched by torchrun."""
    return [
        stratum.extension("tensorboard", tensorboard_logger,
                          "Log a run's scalars to TensorBoard when --tensorboard DIR is set."),
        stratum.extension("data-parallel", data_parallel,
                          "Under torchrun: DDP with each global batch sharded across ranks (gloo on CPU, nccl on CUDA)."),
    ]
