"""stratum's own hook implementations: the fallbacks every run relies on."""

from __future__ import annotations

from .plugin_manager import hookimpl


@hookimpl(trylast=True)
def stratum_apply_update(run, step):
    """Apply the gradients in ``.grad`` with the run's optimiser."""
    run.optimizer.step()
    return "optimizer"


@hookimpl
def stratum_register_extensions():
    """``--tensorboard DIR`` logging, and data parallelism when launched by torchrun."""
    from .components import extension
    from .distributed import data_parallel_extension

    return [
        extension("tensorboard", _tensorboard_logger, "Log a run's scalars to TensorBoard when --tensorboard DIR is set."),
        extension("data-parallel", data_parallel_extension,
                  "Under torchrun: DDP with each global batch sharded across ranks (gloo on CPU, nccl on CUDA)."),
    ]


def _tensorboard_logger(run, options):
    if run.config.tensorboard is None:
        return None
    from .distributed import is_main_process

    if not is_main_process():  # under torchrun only rank 0 writes
        return None
    from .report.tensorboard import TensorBoardLogger

    return TensorBoardLogger(run)
